"""A run's summary: completion statistics, the textbook bounds, the printed report and the exit
status (docs/run-directory.md, ``summary.json``)."""

from __future__ import annotations

import math
import signal
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testbed import bounds
from testbed.experiment import Experiment


def rounded_or_none(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


def time_stats(times: Sequence[float]) -> dict[str, float | None]:
    if not times:
        return {"min": None, "median": None, "max": None}
    return {"min": round(min(times), 3), "median": round(statistics.median(times), 3),
            "max": round(max(times), 3)}


def topology_bounds(exp: Experiment) -> tuple[float, float]:
    """(D_p2p, D_cs) for the experiment: the initial seeds together are the server. The inputs
    come from its ``experiment.json`` form, as the analysis reads them (testbed.bounds)."""
    inputs = bounds.bound_inputs(exp.to_json())
    return inputs.d_p2p(), inputs.d_cs()


def format_summary(summary: dict[str, Any], run_dir: Path) -> str:
    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f} s"

    lines = [f"{run_dir}: {summary['status']} after {summary['duration']:.1f} s "
             f"({summary['reason']})"]
    stats = summary["completion_stats"]
    lines.append(f"  leechers complete {summary['completed']}/{summary['leechers']} "
                 f"(content verified: {summary['verified']}); completion time "
                 f"min {s(stats['min'])}  median {s(stats['median'])}  max {s(stats['max'])}")
    if len(summary["groups"]) > 1:
        for name, g in summary["groups"].items():
            lines.append(f"    {name}: {g['completed']}/{g['leechers']}  min {s(g['min'])}  "
                         f"median {s(g['median'])}  max {s(g['max'])}")
    b = summary["bounds"]
    ratio = summary["makespan_over_d_p2p"]
    lines.append(f"  makespan {s(summary['makespan'])}   D_p2p {s(b['d_p2p'])}   "
                 f"D_cs {s(b['d_cs'])}   makespan/D_p2p "
                 f"{'-' if ratio is None else f'{ratio:.2f}'}")
    if summary["crashes"]:
        crashed = ", ".join(f"{k} ({v})" for k, v in summary["crashes"].items())
        lines.append(f"  crashed: {crashed}")
    cpu = summary["cpu"]
    if cpu["warning"]:
        lines.append(f"  WARNING: {cpu['warning']}")
    return "\n".join(lines)


def exit_status(summary: dict[str, Any]) -> int:
    """0 completed cleanly (crashes only where the topology tolerates them); 1 timed out,
    failed or a process crashed; 128+signal interrupted."""
    if summary["status"] == "interrupted":
        sig = summary.get("signal")
        return 128 + (signal.Signals[sig].value if sig else signal.SIGINT.value)
    if summary["status"] == "completed" and (not summary["crashes"]
                                             or summary.get("crashes_tolerated")):
        return 0
    return 1
