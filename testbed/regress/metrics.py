"""The metrics a results set records, which way each is better, its default tolerance, and how
one run directory's figures are computed (docs/regression.md lists them).

pandas is imported only inside ``run_metrics``, so ``testbed run`` and the ``testbed`` command
start quickly.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from peer.errors import TestbedError

__all__ = [
    "METRICS",
    "Direction",
    "Metric",
    "RegressError",
    "Tolerance",
    "metric_of",
    "parse_tolerance",
    "run_metrics",
]

Direction = Literal["lower", "higher", "bool"]


class RegressError(TestbedError, ValueError):
    """A results set or run directory that cannot be read or compared; the message says which."""


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


METRICS: dict[str, Metric] = {m.name: m for m in (
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
           "several groups)", per_group=True),
    Metric("injection_ratio", "lower", "", Tolerance(0.20),
           "time until every piece existed outside the initial seeds over F / u_s (1: the seeds "
           "sent each piece once at full rate)"),
    Metric("sharing_incentive", "higher", "", Tolerance(0.20),
           "median completion of the leecher group with the lowest upload capacity over that "
           "of the group with the highest (> 1: faster classes finish sooner; only with "
           "groups of different capacities)"),
)}
"""Every metric a results set records, by name, in report order (see docs/regression.md)."""

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
    from analysis import injection, load_run, metrics  # pandas: only here

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
    m["injection_ratio"] = _num(injection.injection(run)["ratio"])
    recip = metrics.reciprocation(run)
    m["reciprocation"] = _num(recip.loc[recip["role"] == "leecher", "share"].mean())
    if len(groups) > 1:
        m.update(_group_metrics(run, by_group, groups))
    return {"status": summary.get("status"), "saturated": bool(cpu.get("saturated")),
            "host_cpu_mean": cpu.get("host_mean"), "metrics": m}


def _group_metrics(run: Any, by_group: Any, groups: list[str]) -> dict[str, Any]:
    """The figures of a run with several leecher groups: clustering (mean and per group),
    per-group completion and share ratio, and the sharing incentive."""
    from analysis import metrics

    cl = metrics.clustering(run)
    diag = {str(g): float(cl.loc[g, g]) for g in cl.index if g in cl.columns}
    known = [d for d in diag.values() if not math.isnan(d)]
    m: dict[str, Any] = {"clustering": _num(statistics.fmean(known)) if known else None}
    share = metrics.share_by_group(run)
    for g in groups:
        m[f"median_completion[{g}]"] = _num(by_group.loc[g, "median"]) \
            if g in by_group.index else None
        m[f"share_ratio[{g}]"] = _num(share.loc[g, "ratio"]) if g in share.index else None
        m[f"clustering[{g}]"] = _num(diag.get(g))
    m["sharing_incentive"] = _sharing_incentive(run.leechers, by_group)
    return m


def _sharing_incentive(leechers: Any, by_group: Any) -> float | None:
    """Median completion of the lowest-capacity leecher group / the highest-capacity one's."""
    capacity = leechers.assign(rate=leechers["upload_rate"].astype(float)) \
        .groupby("group", observed=True)["rate"].mean().dropna()
    if capacity.nunique() < 2:
        return None
    slowest, fastest = str(capacity.idxmin()), str(capacity.idxmax())
    if slowest not in by_group.index or fastest not in by_group.index:
        return None
    return _num(by_group.loc[slowest, "median"] / by_group.loc[fastest, "median"])
