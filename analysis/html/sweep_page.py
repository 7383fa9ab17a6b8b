"""A sweep's page: the table, and each metric against each swept parameter with its spread
over the repetitions."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from analysis.html import figures
from analysis.html._render import figure, render, write_page
from analysis.html.run_page import REPORT
from testbed.sweep import SWEEP_JSON, SweepError, gather

COLUMNS = ("repetition", "seed", "status", "completed", "leechers", "makespan", "d_p2p", "d_cs",
           "makespan_over_d_p2p", "makespan_over_d_cs", "completion_median", "completion_max",
           "efficiency", "jain_share_ratio", "jain_rate_per_capacity", "host_cpu_mean",
           "cpu_saturated")
PLOTTED = ("makespan", "makespan_over_d_p2p", "makespan_over_d_cs", "completion_median",
           "completion_max", "efficiency", "jain_share_ratio", "jain_rate_per_capacity",
           "host_cpu_mean")


def sweep_context(sweep_dir: Path) -> dict[str, Any]:
    try:
        header = json.loads((sweep_dir / SWEEP_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepError(f"{sweep_dir}: cannot read {SWEEP_JSON}: {exc}") from None
    rows = gather(sweep_dir)
    params = list(header.get("params") or {})
    for row, entry in zip(rows, header["runs"], strict=True):
        row["report"] = (f"{entry['dir']}/{REPORT}"
                         if (sweep_dir / entry["dir"] / REPORT).exists() else None)
    plotted = [m for m in PLOTTED
               if any(isinstance(r.get(m), int | float) and not isinstance(r.get(m), bool)
                      for r in rows)]
    figs = [figure(f"sweep-{m}", f"{m} against "
                   f"{' and '.join(params)}; each point the median of its runs, the bar their "
                   "range.", partial(figures.metric_against_param, rows, m, params, f"sw-{m}"))
            for m in plotted]
    saturated = sum(bool(r.get("cpu_saturated")) for r in rows)
    return {"title": f"sweep {header.get('name') or sweep_dir.name}", "path": str(sweep_dir),
            "header": header, "params": params, "rows": rows,
            "columns": [c for c in COLUMNS if any(r.get(c) is not None for r in rows)],
            "figures": figs, "saturated": saturated}


def write_sweep_report(sweep_dir: Path) -> Path:
    """Write ``SWEEP/report.html``. Raises SweepError / OSError."""
    return write_page(sweep_dir / REPORT, render("sweep.html.j2", **sweep_context(sweep_dir)))
