"""A run's page: how it ended, the topology, completion, bounds, fairness, clustering,
availability, utilisation, host CPU (with the saturation banner), warnings and meta."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from analysis import plots
from analysis.html._render import figure, render, write_page
from analysis.load import Run, load_run
from analysis.report import headline

REPORT = "report.html"

STATUS_CLASS = {"completed": "good", "timed_out": "bad", "stalled": "bad", "failed": "bad",
                "interrupted": "warn"}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def external_clients(run: Run) -> list[str]:
    """Real clients in the run: configured ones (peers/<name>.json of kind external) and peer
    ids the experiment does not list."""
    found = []
    for config in sorted((run.path / "peers").glob("*.json")):
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == "external":
            program = (data.get("command") or ["?"])[0]
            found.append(f"{data.get('name', config.stem)}: external client {program} "
                         f"(its chokes and per-neighbour bytes are not logged)")
    unknown = run.peers.loc[run.peers["role"] == "external", "name"]
    found.extend(f"{name}: a peer id the experiment does not list (a real client?)"
                 for name in unknown)
    return found


def warnings(run: Run, summary: dict[str, Any]) -> list[str]:
    """Everything a reader should not miss, one line each."""
    out = [f"skipped or damaged log data: {w}" for w in run.warnings]
    for proc, code in (summary.get("crashes") or {}).items():
        out.append(f"{proc} crashed (exit {code})"
                   + (" (tolerated by the topology)" if summary.get("crashes_tolerated") else ""))
    stall = summary.get("stall")
    if stall:
        out.append(f"stalled since {stall.get('since')} s: pieces "
                   f"{', '.join(map(str, stall.get('missing') or []))} held by no live peer")
    for event in (summary.get("tracker") or {}).get("events") or []:
        if event.get("event") in ("died", "restart_failed"):
            out.append(f"tracker {event['event']} at {event.get('t')} s "
                       f"(exit {event.get('code')})")
    if summary.get("hash_failures"):
        out.append(f"{summary['hash_failures']} piece(s) failed their hash check")
    out.extend(external_clients(run))
    return out


def _figures(run: Run) -> dict[str, dict[str, Any]]:
    specs = [
        ("completion_cdf", plots.completion_cdf,
         "Fraction of each group's leechers completed against time since arrival."),
        ("makespan_bounds", plots.makespan_bounds,
         "Makespan (t = 0 to the last completion) beside D_p2p and D_cs."),
        ("progress", plots.progress, "Verified pieces over N·M, and the peers present."),
        ("unchoke_matrix", plots.unchoke_matrix,
         "Clustering index I_jk: regular-unchoke time group j gives group k, over chance."),
        ("availability", plots.availability,
         "Copies of a piece among the peers present (min, mean) and normalised entropy."),
        ("utilisation_over_time", plots.utilisation_over_time,
         "Bytes sent over capacity × time present, per group and interval."),
        ("injection", plots.piece_injection,
         "Pieces outside the initial seeds against each piece sent once at u_s."),
        ("host_cpu", plots.host_cpu,
         "Host CPU and the run's own processes, against the saturation guard's threshold."),
    ]
    return {name: figure(name, caption, partial(plots.svg, draw, run, name))
            for name, draw, caption in specs}


def run_context(run: Run) -> dict[str, Any]:
    summary = run.summary or {}
    h = headline(run)
    cpu = summary.get("cpu") or {}
    status = summary.get("status") or "unknown (no summary.json)"
    return {
        "title": f"run {h['name']}", "path": str(run.path), "h": h, "summary": summary,
        "status": status, "status_class": STATUS_CLASS.get(status, "warn"),
        "reason": summary.get("reason"), "cpu": cpu, "saturated": bool(cpu.get("saturated")),
        "topology": _read_text(run.path / "topology.yaml"),
        "figures": _figures(run),
        "warnings": warnings(run, summary), "meta": run.meta or {},
        "clustering_cols": list(next(iter(h["clustering"].values()), {}).keys()),
    }


def write_run_report(run_dir: Path, run: Run | None = None) -> Path:
    """Write ``RUN/report.html``; returns its path. Raises what ``load_run`` raises."""
    run = load_run(run_dir) if run is None else run
    return write_page(run.path / REPORT, render("run.html.j2", **run_context(run)))
