"""A results set's page (every repetition side by side, medians and ranges, check verdicts) and
a comparison's page (the verdict table with both sides' distributions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analysis.html import figures
from analysis.html._render import figure, render, write_page
from analysis.html.run_page import REPORT
from testbed.regress import (
    Comparison,
    ResultsSet,
    check,
    load_expectations,
    load_results,
    metric_of,
)
from testbed.regress.stats import summarize


def _numeric(rs: ResultsSet) -> list[str]:
    out = []
    for name in rs.metric_names:
        metric = metric_of(name)
        if (metric is None or metric.direction != "bool") and rs.values(name):
            out.append(name)
    return out


def _metric_rows(rs: ResultsSet) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in rs.metric_names:
        metric = metric_of(name)
        cells = [rep.metrics.get(name) for rep in rs.repetitions]
        if metric is not None and metric.direction == "bool":
            flags = rs.flags(name)
            rows.append({"metric": name, "cells": cells, "median": f"{sum(flags)}/{len(flags)}"
                         " true", "range": "", "better": "true"})
            continue
        d = summarize(rs.values(name))
        rows.append({"metric": name, "cells": cells, "median": d["median"],
                     "range": (d["min"], d["max"]) if d["n"] else None,
                     "better": metric.direction if metric else ""})
    return rows


def _completion_curves(rs: ResultsSet) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Each repetition's completion times, from its summary.json (no logs to load)."""
    curves, totals = {}, {}
    for rep, run_dir in zip(rs.repetitions, rs.run_dirs, strict=True):
        try:
            summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        label = f"rep-{rep.index} (seed {rep.seed})"
        curves[label] = [float(t) for t in (summary.get("completion_times") or {}).values()
                         if t is not None]
        totals[label] = int(summary.get("leechers") or len(curves[label]))
    return curves, totals


def set_context(rs: ResultsSet, verdicts: Comparison | None,
                expect: Path | None) -> dict[str, Any]:
    reps = [{"index": rep.index, "seed": rep.seed, "status": rep.status,
             "saturated": rep.saturated,
             "report": (f"{rep.run_dir}/{REPORT}" if (run_dir / REPORT).exists() else None)}
            for rep, run_dir in zip(rs.repetitions, rs.run_dirs, strict=True)]
    numeric = _numeric(rs)
    labels = [f"rep-{rep.index}" for rep in rs.repetitions]
    panels = [(name, [[v] if (v := _value(rep.metrics.get(name))) is not None else []
                      for rep in rs.repetitions], labels) for name in numeric]
    curves, totals = _completion_curves(rs)
    figs = {"metrics": figure("metrics", "Each metric, one dot per repetition (the black bar: "
                              "the median over the set).",
                              lambda: figures.side_by_side(panels, "metrics",
                                                           "every repetition")),
            "cdf": figure("completion_cdfs", "Completion time CDF of every repetition.",
                          lambda: figures.completion_cdfs(curves, totals, "cdfs"))}
    return {"title": f"results set {rs.name or rs.path.name}", "path": str(rs.path),
            "reps": reps, "rows": _metric_rows(rs), "figures": figs,
            "saturated": rs.saturated, "verdicts": verdicts,
            "expect": str(expect) if expect else None}


def _value(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def write_set_report(path: Path, expect: Path | None = None, *,
                     run_reports: bool = True) -> Path:
    """Write ``SET/report.html`` (and, with ``run_reports``, each repetition's own page first,
    so that the set's page links to them). Raises RegressError / TestbedError / OSError."""
    from analysis.html.run_page import write_run_report

    rs = load_results(path)
    if run_reports:
        for run_dir in rs.run_dirs:
            if (run_dir / "summary.json").exists():
                write_run_report(run_dir)
    verdicts = check(rs, load_expectations(expect)) if expect is not None else None
    return write_page(rs.path / REPORT, render("set.html.j2", **set_context(rs, verdicts,
                                                                          expect)))


def comparison_html(result: Comparison) -> str:
    """``testbed compare --html``: the verdict table and each metric's two distributions."""
    panels = [(r.metric, [r.baseline.get("values") or [], r.candidate.get("values") or []],
               ["baseline", "candidate"])
              for r in result.rows if "values" in r.baseline or "values" in r.candidate]
    fig = figure("distributions", "Each metric's values on both sides, one dot per repetition "
                 "(the black bar: the median).",
                 lambda: figures.side_by_side(panels, "cmp", "baseline against candidate"))
    return render("compare.html.j2", title=f"{result.command}: {Path(result.candidate).name}",
                  path=result.candidate, result=result, figure=fig if panels else None)
