"""Regression runs: results sets, expectations files, rank statistics and verdicts.

A *results set* is one topology run K times with seeds s, s+1, … s+K−1 (``testbed run
--repeat K``): a directory with ``rep-<i>/`` (each a normal run directory) and ``results.json``,
which gathers every repetition's headline metrics. ``testbed check`` holds a results set to an
*expectations file* (bounds on metrics and/or a baseline results set with tolerances);
``testbed compare`` holds a candidate results set to a baseline one.

Why a rank test: real processes on a shared machine make every figure noisy, and with a handful
of repetitions nothing is known about the shape of the noise. The one-sided Mann-Whitney U test
(exact, by enumerating every split of the pooled values) assumes nothing about it. A change is
called *worse* only when the test says the candidate is worse (p ≤ alpha) AND the medians differ
by more than the metric's tolerance: a statistically clear but practically negligible change is
never a regression. docs/regression.md is the user's guide.

pandas is imported only when metrics are computed from a run directory, so ``testbed run`` and
the ``testbed`` command start quickly.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import math
import random
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from peer.errors import TestbedError
from testbed.topology import TopologyError, read_text_file

RESULTS_SCHEMA = 1
RESULTS_FILE = "results.json"
DEFAULT_ALPHA = 0.05

Direction = Literal["lower", "higher", "bool"]

__all__ = [
    "DEFAULT_ALPHA",
    "METRICS",
    "Bound",
    "Comparison",
    "Expectations",
    "ExpectationsError",
    "Metric",
    "RegressError",
    "Repetition",
    "ResultsSet",
    "Row",
    "Tolerance",
    "check",
    "compare",
    "compare_metric",
    "format_report",
    "format_set",
    "load_expectations",
    "load_results",
    "mann_whitney_p",
    "metric_of",
    "min_p",
    "parse_expectations",
    "parse_tolerance",
    "run_metrics",
    "run_repeated",
]


class RegressError(TestbedError, ValueError):
    """A results set or run directory that cannot be read or compared; the message says which."""


class ExpectationsError(TopologyError):
    """An expectations file that cannot be used: ``file``, ``key`` and ``line`` say where."""


# ---------------------------------------------------------------------------------------------
# Metrics


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How much worse a median may get before it counts: ``value`` × baseline median if
    ``relative``, else ``value`` in the metric's own unit."""

    value: float
    relative: bool = True

    def limit(self, baseline: float, direction: Direction) -> float:
        """The worst candidate median still within tolerance of ``baseline``."""
        step = abs(baseline) * self.value if self.relative else self.value
        return baseline + step if direction == "lower" else baseline - step

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    direction: Direction
    """Which way is better: ``lower`` (times), ``higher`` (ratios, indices), ``bool``."""
    unit: str
    tolerance: Tolerance | None
    """The default practical-significance tolerance of ``compare``."""
    description: str
    per_group: bool = False
    """Also reported per leecher group as ``name[group]`` when there are several groups."""


_METRIC_LIST = (
    Metric("all_complete", "bool", "", None,
           "every leecher completed and the run ended with status completed"),
    Metric("median_completion", "lower", "s", Tolerance(0.15),
           "median over leechers of completion time since arrival", per_group=True),
    Metric("p90_completion", "lower", "s", Tolerance(0.15),
           "0.9 quantile (linear) over leechers of completion time"),
    Metric("mean_completion", "lower", "s", Tolerance(0.15),
           "mean over leechers of completion time"),
    Metric("makespan", "lower", "s", Tolerance(0.15),
           "t = 0 to the last leecher's completion"),
    Metric("efficiency", "higher", "", Tolerance(0.15),
           "D_p2p / makespan (1 = the textbook bound)"),
    Metric("jain_share", "higher", "", Tolerance(0.15),
           "Jain's index over the leechers' share ratios U_i/D_i"),
    Metric("jain_rate", "higher", "", Tolerance(0.10),
           "Jain's index over download rate / upload capacity"),
    Metric("share_ratio", "higher", "", Tolerance(0.20),
           "the leechers' ΣU / ΣD (how much they served each other rather than the seeds)",
           per_group=True),
    Metric("reciprocation", "higher", "", Tolerance(0.20),
           "mean over leechers of the share of upload sent to neighbours that sent back in "
           "the same rechoke period (tit-for-tat at work)"),
    Metric("clustering", "higher", "", Tolerance(0.20),
           "mean over leecher groups of the same-group clustering index I_jj (only with "
           "several groups)"),
)
METRICS: dict[str, Metric] = {m.name: m for m in _METRIC_LIST}
"""Every metric a results set records, by name (see docs/regression.md)."""

_GROUP_METRIC = re.compile(r"^([a-z0-9_]+)\[([A-Za-z0-9_.\-]+)\]$")


def metric_of(name: str) -> Metric | None:
    """The ``Metric`` for ``name`` (``median_completion`` or ``median_completion[fast]``)."""
    if name in METRICS:
        return METRICS[name]
    match = _GROUP_METRIC.match(name)
    if match and match.group(1) in METRICS and METRICS[match.group(1)].per_group:
        return METRICS[match.group(1)]
    return None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run_metrics(run_dir: Path) -> dict[str, Any]:
    """One run directory's regression figures: ``{"status", "saturated", "host_cpu_mean",
    "metrics": {name: float | bool | None}}`` (None: undefined, e.g. no makespan)."""
    from analysis import load_run, metrics  # pandas: only here

    try:
        run = load_run(run_dir)
    except OSError as exc:
        raise RegressError(f"{run_dir}: cannot read: {exc.strerror or exc}") from None
    summary = run.summary or {}
    cpu = summary.get("cpu") or {}
    by_group = metrics.completion_by_group(run)
    lee = run.leechers
    groups = sorted(str(g) for g in lee["group"].unique())
    m: dict[str, Any] = {}
    m["all_complete"] = bool(summary.get("status") == "completed" and len(lee) > 0
                             and int(lee["complete"].notna().sum()) == len(lee))
    every = by_group.loc["all"]
    m["median_completion"] = _num(every["median"])
    m["p90_completion"] = _num(every["p90"])
    m["mean_completion"] = _num(every["mean"])
    eff = metrics.efficiency(run)
    m["makespan"] = _num(eff["makespan"])
    m["efficiency"] = _num(eff["efficiency"])
    fair = metrics.fairness(run)
    m["jain_share"] = _num(fair["jain_share_ratio"])
    m["jain_rate"] = _num(fair["jain_rate_per_capacity"])
    sr = metrics.share_ratios(run)
    sr = sr[sr["role"] == "leecher"]
    down = float(sr["down"].astype(float).sum())
    m["share_ratio"] = _num(float(sr["up"].astype(float).sum()) / down) if down > 0 else None
    recip = metrics.reciprocation(run)
    m["reciprocation"] = _num(recip.loc[recip["role"] == "leecher", "share"].mean())
    if len(groups) > 1:
        cl = metrics.clustering(run)
        diag = [cl.loc[g, g] for g in cl.index if g in cl.columns]
        m["clustering"] = _num(statistics.fmean(d for d in diag if not math.isnan(d))) \
            if any(not math.isnan(d) for d in diag) else None
        share = metrics.share_by_group(run)
        for g in groups:
            m[f"median_completion[{g}]"] = _num(by_group.loc[g, "median"]) \
                if g in by_group.index else None
            m[f"share_ratio[{g}]"] = _num(share.loc[g, "ratio"]) if g in share.index else None
    return {"status": summary.get("status"), "saturated": bool(cpu.get("saturated")),
            "host_cpu_mean": cpu.get("host_mean"), "metrics": m}


# ---------------------------------------------------------------------------------------------
# Results sets


@dataclass(frozen=True, slots=True)
class Repetition:
    index: int
    seed: int | None
    run_dir: str
    """Relative to the results set for a set; the run directory itself for a lone run."""
    status: str | None
    saturated: bool
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResultsSet:
    path: Path
    name: str | None
    repetitions: tuple[Repetition, ...]

    def values(self, metric: str) -> list[float]:
        """The metric's defined values, one per repetition that has it."""
        out = []
        for rep in self.repetitions:
            v = rep.metrics.get(metric)
            if v is not None and not isinstance(v, bool):
                out.append(float(v))
        return out

    def flags(self, metric: str) -> list[bool]:
        return [bool(rep.metrics.get(metric)) for rep in self.repetitions]

    @property
    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for rep in self.repetitions:
            names.update(dict.fromkeys(rep.metrics))
        return list(names)

    @property
    def saturated(self) -> int:
        return sum(rep.saturated for rep in self.repetitions)


def _rep_from_json(data: Any, where: str, i: int) -> Repetition:
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise RegressError(f"{where}: repetitions[{i}] has no 'metrics' object")
    try:
        return Repetition(index=int(data.get("index", i)), seed=data.get("seed"),
                          run_dir=str(data.get("run_dir", "")), status=data.get("status"),
                          saturated=bool(data.get("saturated")), metrics=dict(data["metrics"]))
    except (TypeError, ValueError) as exc:
        raise RegressError(f"{where}: repetitions[{i}]: {exc}") from None


def load_results(path: Path) -> ResultsSet:
    """A results set: a directory with results.json, a results.json file, or a single run
    directory (one repetition, its metrics computed from the logs)."""
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if path.is_dir() and not file.exists():
        if (path / "summary.json").exists():
            rep = run_metrics(path)
            name = None
            with contextlib.suppress(OSError, ValueError):
                name = json.loads((path / "experiment.json").read_text()).get("name")
            return ResultsSet(path, name, (Repetition(0, None, str(path), rep["status"],
                                                      rep["saturated"], rep["metrics"]),))
        raise RegressError(f"{path}: neither a results set ({RESULTS_FILE}) nor a run "
                           "directory (summary.json)")
    if not file.exists():
        raise RegressError(f"{path}: no such results set or run directory")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegressError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise RegressError(f"{file}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "results_set":
        raise RegressError(f"{file}: not a results set (no \"kind\": \"results_set\")")
    if data.get("schema") != RESULTS_SCHEMA:
        raise RegressError(f"{file}: results schema {data.get('schema')!r} is not known "
                           f"(known: {RESULTS_SCHEMA})")
    reps = data.get("repetitions")
    if not isinstance(reps, list) or not reps:
        raise RegressError(f"{file}: no repetitions")
    root = file.parent
    return ResultsSet(root, data.get("name"),
                      tuple(_rep_from_json(r, str(file), i) for i, r in enumerate(reps)))


def _make_root(name: str, repeat: int, out: Path | None, runs_root: Path) -> Path:
    from testbed.rundir import create_fresh_dir, timestamp

    return create_fresh_dir(f"{name}-{timestamp()}-x{repeat}", out=out, runs_root=runs_root,
                            what="results set")


def run_repeated(topology: Path, *, repeat: int, seed: int | None, out: Path | None,
                 runs_root: Path, time_limit: float | None = None, quiet: bool = False,
                 launcher: str = "fork", command: Sequence[str] = ()) -> tuple[Path, int]:
    """``testbed run TOPOLOGY --repeat K``: K runs with seeds s … s+K−1 into one results set.

    Every topology/seed is validated before anything starts (a TopologyError then). results.json
    is rewritten after every repetition, so an interrupted set keeps what it finished. Returns
    (results set directory, exit status: 0 when every run exited 0, else the first non-zero
    run status; an interrupted run stops the set).
    """
    from testbed.run import RunOptions, execute_run, exit_status, format_summary
    from testbed.rundir import utc_now_iso, write_json_atomic
    from testbed.topology import expand, load_topology

    if repeat < 1:
        raise RegressError(f"--repeat must be at least 1, got {repeat}")
    topo = load_topology(topology)
    first = topo.seed if seed is None else seed
    experiments = [expand(topo, first + i) for i in range(repeat)]
    # Absolute: the fork launcher opens a process's output file after chdir-ing into the run
    # directory, so a relative run directory (runs/…) would not be found.
    root = _make_root(topo.name, repeat, out.absolute() if out is not None else None,
                      runs_root.absolute())
    data: dict[str, Any] = {"schema": RESULTS_SCHEMA, "kind": "results_set", "name": topo.name,
                            "topology": str(topology), "seeds": [first + i for i in range(repeat)],
                            "repeat": repeat, "started_at": utc_now_iso(),
                            "command": list(command), "repetitions": []}
    status = 0
    for i, experiment in enumerate(experiments):
        options = RunOptions(out=root / f"rep-{i}", time_limit=time_limit, quiet=quiet,
                             launcher=launcher,  # type: ignore[arg-type]
                             command=tuple(command))
        print(f"repetition {i + 1}/{repeat} (seed {experiment.seed})", flush=True)
        result = execute_run(experiment, topo.text, options)
        print(format_summary(result.summary, result.run_dir), flush=True)
        rep_status = exit_status(result.summary)
        status = status or rep_status
        if result.summary["status"] == "interrupted":
            if data["repetitions"]:
                write_json_atomic(root / RESULTS_FILE, data)
            return root, rep_status
        try:
            figures = run_metrics(result.run_dir)
        except Exception as exc:  # an analysis bug must not lose the runs
            message = str(exc) if isinstance(exc, TestbedError) else f"{exc!r}"
            print(f"testbed run: analysis of {result.run_dir} failed: {message}",
                  file=sys.stderr)
            status = status or 1
            # No metrics: check and compare then report every metric as missing.
            figures = {"status": result.summary["status"], "metrics": {},
                       "analysis_error": message,
                       "saturated": bool(result.summary["cpu"].get("saturated")),
                       "host_cpu_mean": result.summary["cpu"].get("host_mean")}
        data["repetitions"].append({"index": i, "seed": experiment.seed,
                                    "run_dir": f"rep-{i}", "exit_status": rep_status,
                                    **figures})
        write_json_atomic(root / RESULTS_FILE, data)
    rs = load_results(root)
    print(format_set(rs), flush=True)
    return root, status


def _describe(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "values": []}
    return {"n": len(values), "median": statistics.median(values), "min": min(values),
            "max": max(values), "values": list(values)}


def format_set(rs: ResultsSet) -> str:
    """A results set's metrics: median [min – max] over the repetitions."""
    rows = []
    for name in rs.metric_names:
        metric = metric_of(name)
        if metric is not None and metric.direction == "bool":
            flags = rs.flags(name)
            rows.append([name, f"{sum(flags)}/{len(flags)} true", "", ""])
            continue
        d = _describe(rs.values(name))
        rows.append([name, _fmt(d["median"]), f"[{_fmt(d['min'])} – {_fmt(d['max'])}]",
                     f"n={d['n']}"])
    head = f"results set {rs.path}: {len(rs.repetitions)} repetition(s)"
    if rs.saturated:
        head += f"; WARNING: host CPU saturated in {rs.saturated} of them"
    return _grid([head, "", "", ""], rows, ["metric", "median", "range", ""])


# ---------------------------------------------------------------------------------------------
# Statistics


_EXACT_LIMIT = 200_000
_MONTE_CARLO = 20_000


def _midranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney_p(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value of the Mann-Whitney U test for "x tends to be larger than y".

    U = pairs (x_i, y_j) with x_i > y_j, ties counting one half = (rank sum of x) − n(n+1)/2
    with mid-ranks. Exact: the share of all C(n+m, n) ways of splitting the pooled values into
    groups of n and m whose U is at least the observed one (conditional on the pooled values,
    so ties keep it exact). Above 200 000 splits, 20 000 random splits with a fixed seed.
    1.0 when either sample is empty.
    """
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return 1.0
    ranks = _midranks([*x, *y])
    # U and the rank sum differ by a constant: compare rank sums directly.
    observed = sum(ranks[:n]) - 1e-9
    total = math.comb(n + m, n)
    if total <= _EXACT_LIMIT:
        hits = sum(sum(c) >= observed for c in itertools.combinations(ranks, n))
        return hits / total
    rng = random.Random(0)
    hits = sum(sum(rng.sample(ranks, n)) >= observed for _ in range(_MONTE_CARLO))
    return (hits + 1) / (_MONTE_CARLO + 1)


def min_p(n: int, m: int) -> float:
    """The smallest p-value ``mann_whitney_p`` can give for samples of n and m (no ties)."""
    return 1.0 / math.comb(n + m, n) if n and m else 1.0


# ---------------------------------------------------------------------------------------------
# Expectations files


@dataclass(frozen=True, slots=True)
class Bound:
    metric: str
    min: float | None = None
    max: float | None = None

    def __str__(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"≥ {self.min:g}")
        if self.max is not None:
            parts.append(f"≤ {self.max:g}")
        return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class Expectations:
    file: str
    all_complete: bool | None = None
    bounds: tuple[Bound, ...] = ()
    baseline: Path | None = None
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    """Per-metric ``worse_by`` (overrides the default tolerance) when comparing to the baseline."""
    tolerance: Tolerance | None = None
    """``tolerance:``: replaces every metric's default tolerance for the baseline comparison."""
    alpha: float = DEFAULT_ALPHA


_TOP_KEYS = ("baseline", "tolerance", "alpha", "all_complete")
_METRIC_KEYS = ("min", "max", "worse_by")
_TOLERANCE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%\s*$")


def parse_tolerance(value: Any) -> Tolerance:
    """``10%`` (relative to the baseline median) or a number ≥ 0 (in the metric's unit)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like 10% or a number, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a tolerance must be a number >= 0, got {value!r}")
        return Tolerance(float(value), relative=False)
    if isinstance(value, str):
        match = _TOLERANCE.match(value)
        if match:
            return Tolerance(float(match.group(1)) / 100, relative=True)
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number >= 0:
            return Tolerance(number, relative=False)
    raise ValueError(f"expected a percentage like 10% or a number >= 0, got {value!r}")


def _metric_names_hint(name: str) -> str:
    valid = [*_TOP_KEYS, *[m for m in METRICS if m != "all_complete"]]
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (f"{hint}known keys: {', '.join(_TOP_KEYS)}; metrics: "
            f"{', '.join(m for m in METRICS if m != 'all_complete')} "
            f"(per group: {', '.join(f'{m.name}[GROUP]' for m in _METRIC_LIST if m.per_group)})")


def parse_expectations(text: str, *, file: str = "<expectations>",
                       base_dir: Path | None = None) -> Expectations:
    """Check an expectations file given as text; ``baseline`` is relative to ``base_dir``."""
    from testbed.topology import _read_yaml  # the YAML reader that keeps every line

    if not text.strip() or all(line.lstrip().startswith("#") or not line.strip()
                                for line in text.splitlines()):
        raise ExpectationsError("empty file: give bounds (e.g. median_completion: {max: 20}) "
                                "and/or a baseline", file=file, line=1)
    try:
        value, lines, key_lines = _read_yaml(text, file)
    except TopologyError as exc:
        raise ExpectationsError(exc.message, file=file, key=exc.key, line=exc.line) from None

    def fail(key: str, message: str, *, at_key: bool = False) -> ExpectationsError:
        line = key_lines.get(key) if at_key else lines.get(key, key_lines.get(key))
        return ExpectationsError(message, file=file, key=key or None, line=line)

    if not isinstance(value, dict):
        raise fail("", "expected a mapping of metric names to bounds at the top level")
    all_complete = None
    bounds: list[Bound] = []
    tolerances: dict[str, Tolerance] = {}
    baseline = None
    tolerance = None
    alpha = DEFAULT_ALPHA
    for key, item in value.items():
        if key == "all_complete":
            if not isinstance(item, bool):
                raise fail(key, f"expected true or false, got {item!r}")
            all_complete = item
        elif key == "baseline":
            if not isinstance(item, str) or not item.strip():
                raise fail(key, "expected the path of a results set (or run directory)")
            baseline = Path(item) if base_dir is None or Path(item).is_absolute() \
                else base_dir / item
            if not baseline.exists():
                raise fail(key, f"{baseline}: no such results set")
        elif key == "tolerance":
            try:
                tolerance = parse_tolerance(item)
            except ValueError as exc:
                raise fail(key, str(exc)) from None
        elif key == "alpha":
            if isinstance(item, bool) or not isinstance(item, int | float) \
                    or not 0 < item < 1:
                raise fail(key, f"expected a significance level in (0, 1), got {item!r}")
            alpha = float(item)
        else:
            metric = metric_of(key)
            if metric is None:
                raise fail(key, f"unknown metric '{key}'; {_metric_names_hint(key)}",
                           at_key=True)
            if not isinstance(item, dict) or not item:
                raise fail(key, "expected {min: X}, {max: X} and/or {worse_by: 10%}, "
                           f"got {item!r}")
            low = high = None
            for sub, v in item.items():
                path = f"{key}.{sub}"
                if sub not in _METRIC_KEYS:
                    raise fail(path, f"unknown key '{sub}'; expected one of "
                               f"{', '.join(_METRIC_KEYS)}", at_key=True)
                if sub == "worse_by":
                    try:
                        tolerances[key] = parse_tolerance(v)
                    except ValueError as exc:
                        raise fail(path, str(exc)) from None
                    continue
                if isinstance(v, bool) or not isinstance(v, int | float) \
                        or not math.isfinite(v):
                    raise fail(path, f"expected a number, got {v!r}")
                if sub == "min":
                    low = float(v)
                else:
                    high = float(v)
            if low is not None and high is not None and low > high:
                raise fail(key, f"min {low:g} is above max {high:g}")
            if low is not None or high is not None:
                bounds.append(Bound(key, low, high))
    if (tolerances or tolerance is not None) and baseline is None:
        key = next(iter(tolerances), "tolerance")
        raise fail(f"{key}.worse_by" if key in tolerances else key,
                   "a tolerance needs a baseline: add 'baseline: PATH'")
    if all_complete is None and not bounds and baseline is None:
        raise fail("", "no expectations: give bounds (e.g. median_completion: {max: 20}), "
                   "all_complete: true and/or a baseline")
    return Expectations(file=file, all_complete=all_complete, bounds=tuple(bounds),
                        baseline=baseline, tolerances=tolerances, tolerance=tolerance,
                        alpha=alpha)


def load_expectations(path: Path) -> Expectations:
    """Read and check an expectations file; raises ``ExpectationsError`` naming file, key, line."""
    text = read_text_file(path, "an expectations file", ExpectationsError)
    return parse_expectations(text, file=str(path), base_dir=Path(path).parent)


# ---------------------------------------------------------------------------------------------
# Verdicts

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
    bd, cd = _describe(base), _describe(cand)
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
                *_saturation_warnings("candidate", cand)]
    return Comparison(command, str(base.path), str(cand.path), alpha, tuple(rows),
                      tuple(warnings))


def check(cand: ResultsSet, expect: Expectations) -> Comparison:
    """Bounds on the medians over repetitions (``all_complete``: every repetition), then, if
    the file names a baseline, ``compare`` against it with the file's tolerances."""
    rows: list[Row] = []
    names = set(cand.metric_names)
    if expect.all_complete is not None:
        flags = cand.flags("all_complete")
        ok = all(flags) if expect.all_complete else True
        rows.append(Row("all_complete", "bound", {"bound": str(expect.all_complete).lower()},
                        {"true": sum(flags), "n": len(flags)}, None, None, None,
                        "pass" if ok else "violated",
                        "" if ok else f"{len(flags) - sum(flags)} run(s) did not complete"))
    for bound in expect.bounds:
        if bound.metric not in names and "[" in bound.metric:
            groups = sorted({m[m.index("[") + 1:-1] for m in names if "[" in m})
            hint = f" (groups in the results: {', '.join(groups)})" if groups else \
                " (per-group metrics exist only with several leecher groups)"
            raise RegressError(f"{expect.file}: {bound.metric}: not a metric of "
                               f"{cand.path}{hint}")
        values = cand.values(bound.metric)
        d = _describe(values)
        note = ""
        if not values:
            verdict: Verdict = "missing"
            note = "no run has a value"
        else:
            med = d["median"]
            ok = (bound.min is None or med >= bound.min) and \
                (bound.max is None or med <= bound.max)
            verdict = "pass" if ok else "violated"
            if len(values) < len(cand.repetitions):
                note = f"{len(cand.repetitions) - len(values)} run(s) without a value"
        rows.append(Row(bound.metric, "bound", {"bound": str(bound)}, d, None, None, None,
                        verdict, note))
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


# ---------------------------------------------------------------------------------------------
# Output


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _side(d: dict[str, Any]) -> str:
    if "bound" in d:
        return str(d["bound"])
    if "true" in d:
        return f"{d['true']}/{d['n']} true"
    if not d.get("n"):
        return "–"
    if d["n"] == 1:
        return _fmt(d["median"])
    return f"{_fmt(d['median'])} [{_fmt(d['min'])}–{_fmt(d['max'])}]"


def _grid(title: list[str], rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [title[0]] if title[0] else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows)
    return "\n".join(lines)


def format_report(result: Comparison) -> str:
    """The table metric | baseline | candidate | change | verdict, warnings, and the outcome."""
    rows = []
    for r in result.rows:
        change = "" if r.change is None else f"{r.change * 100:+.1f}%"
        verdict = r.verdict.upper() if r.regression else r.verdict
        detail = []
        if r.p_value is not None:
            detail.append(f"p={r.p_value:.3g}")
        if r.tolerance is not None and r.kind == "baseline":
            detail.append(f"tol {r.tolerance}")
        if r.note:
            detail.append(r.note)
        rows.append([r.metric, _side(r.baseline), _side(r.candidate), change, verdict,
                     ", ".join(detail)])
    title = (f"{result.command}: candidate {result.candidate}"
             + (f" against baseline {result.baseline}" if result.baseline else "")
             + f" (one-sided Mann-Whitney U, alpha {result.alpha:g})")
    out = [_grid([title], rows, ["metric", "baseline/bound", "candidate", "change", "verdict", ""])]
    out.extend(f"WARNING: {w}" for w in result.warnings)
    bad = [r.metric for r in result.rows if r.regression]
    out.append(f"REGRESSION: {', '.join(bad)}" if bad else "pass: no regression")
    return "\n".join(out)
