"""Verdicts: a candidate results set held to a baseline set (``compare``) or to an expectations
file (``check``), one row per metric.

A change is called *worse* only when the one-sided rank test says the candidate is worse
(p ≤ alpha) AND the medians differ by more than the metric's tolerance: a statistically clear
but practically negligible change is never a regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from testbed.provenance import different_policy_sources
from testbed.regress.expectations import Bound, Expectations
from testbed.regress.metrics import Direction, RegressError, Tolerance, metric_of
from testbed.regress.results import ResultsSet, load_results
from testbed.regress.stats import DEFAULT_ALPHA, mann_whitney_p, min_p, summarize

__all__ = ["Comparison", "Row", "Verdict", "check", "compare", "compare_metric"]

Verdict = Literal["pass", "worse", "better", "within tolerance", "violated", "missing", "n/a"]
_REGRESSIONS = frozenset({"worse", "violated", "missing"})


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    kind: Literal["bound", "baseline"]
    baseline: dict[str, Any]
    """For a bound: {"bound": text}; for a baseline: median/min/max/n/values."""
    candidate: dict[str, Any]
    change: float | None
    """Relative change of the medians (candidate / baseline − 1); None for bounds and flags."""
    p_value: float | None
    tolerance: str | None
    verdict: Verdict
    note: str = ""

    @property
    def regression(self) -> bool:
        return self.verdict in _REGRESSIONS

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "kind": self.kind, "baseline": self.baseline,
                "candidate": self.candidate, "change": self.change, "p_value": self.p_value,
                "tolerance": self.tolerance, "verdict": self.verdict,
                "regression": self.regression, "note": self.note}


@dataclass(frozen=True, slots=True)
class Comparison:
    command: str
    baseline: str | None
    candidate: str
    alpha: float
    rows: tuple[Row, ...]
    warnings: tuple[str, ...]

    @property
    def regression(self) -> bool:
        return any(r.regression for r in self.rows)

    @property
    def exit_status(self) -> int:
        return 1 if self.regression else 0

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "baseline": self.baseline, "candidate": self.candidate,
                "alpha": self.alpha, "regression": self.regression,
                "exit_status": self.exit_status, "warnings": list(self.warnings),
                "rows": [r.to_json() for r in self.rows]}


def _flag_row(metric: str, base: ResultsSet, cand: ResultsSet) -> Row:
    b, c = base.flags(metric), cand.flags(metric)
    worse = all(b) and not all(c)
    better = all(c) and not all(b)
    return Row(metric, "baseline", {"true": sum(b), "n": len(b)}, {"true": sum(c), "n": len(c)},
               None, None, None, "worse" if worse else "better" if better else "pass",
               f"{len(c) - sum(c)} candidate run(s) false" if worse else "")


def compare_metric(metric: str, base: Sequence[float], cand: Sequence[float], *,
                   direction: Direction, tolerance: Tolerance, alpha: float) -> Row:
    """The verdict on one numeric metric: worse only if the one-sided rank test gives p ≤ alpha
    AND the candidate median is beyond the tolerance from the baseline median."""
    bd, cd = summarize(base), summarize(cand)
    if not base:
        return Row(metric, "baseline", bd, cd, None, None, str(tolerance), "n/a",
                   "no baseline value")
    if not cand:
        return Row(metric, "baseline", bd, cd, None, None, str(tolerance), "missing",
                   "no candidate run has a value")
    mb, mc = bd["median"], cd["median"]
    change = (mc / mb - 1.0) if mb else None
    # "x larger than y": for lower-is-better metrics a larger candidate is worse.
    if direction == "lower":
        p_worse, p_better = mann_whitney_p(cand, base), mann_whitney_p(base, cand)
        beyond = mc > tolerance.limit(mb, "lower")
        beyond_better = mc < tolerance.limit(mb, "higher")
    else:
        p_worse, p_better = mann_whitney_p(base, cand), mann_whitney_p(cand, base)
        beyond = mc < tolerance.limit(mb, "higher")
        beyond_better = mc > tolerance.limit(mb, "lower")
    if p_worse <= alpha:
        verdict: Verdict = "worse" if beyond else "within tolerance"
        p = p_worse
    elif p_better <= alpha and beyond_better:
        verdict, p = "better", p_better
    else:
        verdict, p = "pass", p_worse
    return Row(metric, "baseline", bd, cd, change, p, str(tolerance), verdict)


def _saturation_warnings(label: str, rs: ResultsSet) -> list[str]:
    if not rs.saturated:
        return []
    return [f"{label} {rs.path}: host CPU saturated in {rs.saturated}/{len(rs.repetitions)} "
            "run(s): times reflect the machine as much as the code"]


def _power_warning(base: ResultsSet, cand: ResultsSet, alpha: float) -> list[str]:
    n, m = len(base.repetitions), len(cand.repetitions)
    if min_p(n, m) > alpha:
        return [f"{n} vs {m} repetitions can never give p <= {alpha:g} (smallest possible "
                f"p = {min_p(n, m):.3g}): no metric can be called worse; use --repeat 3 or "
                "more on both sides"]
    return []


def compare(base: ResultsSet, cand: ResultsSet, *, alpha: float = DEFAULT_ALPHA,
            tolerance: Tolerance | None = None,
            tolerances: dict[str, Tolerance] | None = None,
            command: str = "compare") -> Comparison:
    """Every metric the two sets share. ``tolerance`` replaces every metric's default; a metric
    in ``tolerances`` uses its own."""
    tolerances = tolerances or {}
    rows = []
    for name in base.metric_names:
        metric = metric_of(name)
        if metric is None:
            continue  # a metric of a newer testbed: nothing to compare it with
        if metric.direction == "bool":
            rows.append(_flag_row(name, base, cand))
            continue
        tol = tolerances.get(name) or tolerance or metric.tolerance or Tolerance(0.0)
        rows.append(compare_metric(name, base.values(name), cand.values(name),
                                   direction=metric.direction, tolerance=tol, alpha=alpha))
    warnings = [*_power_warning(base, cand, alpha), *_saturation_warnings("baseline", base),
                *_saturation_warnings("candidate", cand),
                *different_policy_sources(base.run_dirs, cand.run_dirs)]
    return Comparison(command, str(base.path), str(cand.path), alpha, tuple(rows),
                      tuple(warnings))


def _all_complete_row(cand: ResultsSet, expected: bool) -> Row:
    """``all_complete: true`` holds only when every repetition completed."""
    flags = cand.flags("all_complete")
    ok = all(flags) if expected else True
    return Row("all_complete", "bound", {"bound": str(expected).lower()},
               {"true": sum(flags), "n": len(flags)}, None, None, None,
               "pass" if ok else "violated",
               "" if ok else f"{len(flags) - sum(flags)} run(s) did not complete")


def _bound_row(cand: ResultsSet, bound: Bound, file: str) -> Row:
    """A bound holds for the median over the repetitions that have the metric."""
    names = set(cand.metric_names)
    if bound.metric not in names and "[" in bound.metric:
        groups = sorted({m[m.index("[") + 1:-1] for m in names if "[" in m})
        hint = f" (groups in the results: {', '.join(groups)})" if groups else \
            " (per-group metrics exist only with several leecher groups)"
        raise RegressError(f"{file}: {bound.metric}: not a metric of {cand.path}{hint}")
    values = cand.values(bound.metric)
    d = summarize(values)
    note = ""
    if not values:
        verdict: Verdict = "missing"
        note = "no run has a value"
    else:
        med = d["median"]
        ok = (bound.min is None or med >= bound.min) and (bound.max is None or med <= bound.max)
        verdict = "pass" if ok else "violated"
        if len(values) < len(cand.repetitions):
            note = f"{len(cand.repetitions) - len(values)} run(s) without a value"
    return Row(bound.metric, "bound", {"bound": str(bound)}, d, None, None, None, verdict, note)


def check(cand: ResultsSet, expect: Expectations) -> Comparison:
    """Bounds on the medians over repetitions (``all_complete``: every repetition), then, if
    the file names a baseline, ``compare`` against it with the file's tolerances."""
    rows: list[Row] = []
    if expect.all_complete is not None:
        rows.append(_all_complete_row(cand, expect.all_complete))
    rows.extend(_bound_row(cand, bound, expect.file) for bound in expect.bounds)
    warnings = _saturation_warnings("candidate", cand)
    baseline = None
    if expect.baseline is not None:
        base = load_results(expect.baseline)
        baseline = str(base.path)
        cmp = compare(base, cand, alpha=expect.alpha, tolerance=expect.tolerance,
                      tolerances=expect.tolerances, command="check")
        rows.extend(cmp.rows)
        warnings = list(cmp.warnings)
    return Comparison("check", baseline, str(cand.path), expect.alpha, tuple(rows),
                      tuple(warnings))
