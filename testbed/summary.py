"""A run's summary: completion statistics, the textbook bounds, the printed report and the exit
status (docs/run-directory.md, ``summary.json``)."""

from __future__ import annotations

import math
import signal
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed import bounds
from testbed.experiment import Experiment

if TYPE_CHECKING:
    from testbed.run import Orchestrator, Status

SUMMARY_SCHEMA = 1


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


def final_status(o: Orchestrator) -> tuple[Status, str]:
    """The run's status and reason; a peer that crashed fails an otherwise completed run
    unless the topology tolerates crashes (a crash is not a departure; the tracker's death is
    recorded, not fatal)."""
    status, reason = o.status or "failed", o.reason
    peers_crashed = {k: v for k, v in o.crashes.items() if k != "tracker"}
    if status == "completed" and peers_crashed and not o.experiment.end.tolerate_crashes:
        crashed = ", ".join(f"{name} (exit {code})" for name, code in peers_crashed.items())
        return "failed", (f"crashed: {crashed}; {reason} (end: {{tolerate_crashes: true}} "
                          "accepts crashes)")
    return status, reason


def _group_stats(o: Orchestrator, completion: dict[str, float]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for p in o.leechers:
        g = groups.setdefault(p.plan.group, {"leechers": 0, "times": []})
        g["leechers"] += 1
        if p.plan.name in completion:
            g["times"].append(completion[p.plan.name])
    return {name: {"leechers": g["leechers"], "completed": len(g["times"]),
                   **time_stats(g["times"])} for name, g in groups.items()}


def build_summary(o: Orchestrator) -> dict[str, Any]:
    """summary.json of a run that ended (docs/run-directory.md)."""
    from testbed.resources import summarize_cpu

    leechers = o.leechers
    completion = {p.plan.name: round(p.complete_t - p.plan.arrival, 4)
                  for p in leechers if p.complete_t is not None}
    makespan = None
    if leechers and len(completion) == len(leechers):
        makespan = round(max(p.complete_t for p in leechers if p.complete_t is not None), 4)
    d_p2p, d_cs = topology_bounds(o.experiment)
    verified = sum(1 for p in leechers if p.complete_t is not None
                   and o.num_pieces is not None and len(p.ok_pieces) == o.num_pieces)
    duration = o.end_t if o.end_t is not None else (
        o.now() if o.run_start is not None else 0.0)
    exit_codes: dict[str, int | None] = {}
    if o.tracker.handle is not None:
        exit_codes["tracker"] = o.tracker.handle.returncode
    for p in o.peers:
        if p.handle is not None:
            exit_codes[p.plan.name] = p.handle.returncode
    status, reason = final_status(o)
    return {
        "schema": SUMMARY_SCHEMA,
        "status": status,
        "reason": reason,
        "started_at": o.meta.get("started_at"),
        "duration": round(duration, 3),
        "peers": len(o.peers),
        "started": sum(p.handle is not None for p in o.peers),
        "leechers": len(leechers),
        "completed": len(completion),
        "verified": verified,
        "hash_failures": sum(p.failed_pieces for p in o.peers),
        "completion_times": completion,
        "completion_stats": time_stats(list(completion.values())),
        "groups": _group_stats(o, completion),
        "makespan": makespan,
        "bounds": {"d_p2p": rounded_or_none(d_p2p), "d_cs": rounded_or_none(d_cs)},
        "makespan_over_d_p2p": (round(makespan / d_p2p, 3)
                                if makespan is not None and d_p2p and math.isfinite(d_p2p)
                                else None),
        "cpu": summarize_cpu(o.sampler.times, o.sampler.host_cpu, duration).to_json(),
        "exit_codes": exit_codes,
        "crashes": dict(o.crashes),
        "crashes_tolerated": o.experiment.end.tolerate_crashes,
        "signal": (signal.Signals(o.signal_received).name
                   if o.signal_received is not None else None),
        "stall": o.stall.to_json() if o.stall is not None else None,
        "tracker": o.tracker.to_json(o.tracker_outages),
    }


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
    tracker_events = (summary.get("tracker") or {}).get("events") or []
    if tracker_events:
        told = ", ".join(f"{e['event']} at {e['t']:.1f} s" for e in tracker_events)
        lines.append(f"  tracker: {told}")
    cpu = summary["cpu"]
    if cpu["warning"]:
        lines.append(f"  WARNING: {cpu['warning']}")
    return "\n".join(lines)


def exit_status(summary: dict[str, Any]) -> int:
    """0 completed cleanly (crashes only where the topology tolerates them); 1 timed out,
    stalled, failed or a process crashed; 128+signal interrupted."""
    if summary["status"] == "interrupted":
        sig = summary.get("signal")
        return 128 + (signal.Signals[sig].value if sig else signal.SIGINT.value)
    if summary["status"] == "completed" and (not summary["crashes"]
                                             or summary.get("crashes_tolerated")):
        return 0
    return 1
