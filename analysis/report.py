"""Headline figures of a run: one dict (``--json``), a text report, and ``testbed analyze``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import metrics
from analysis.load import Run, load_run
from peer.errors import TestbedError


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _table(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(i): {str(c): frame.loc[i, c] for c in frame.columns} for i in frame.index}


def headline(run: Run) -> dict[str, Any]:
    """Every headline figure of the run as plain JSON-able data."""
    summary = run.summary or {}
    util_group = metrics.utilisation_by_group(run)
    util = metrics.utilisation(run)
    recip = metrics.reciprocation(run)
    recip_lee = recip[recip["role"] == "leecher"]
    opt = metrics.optimistic_share(run)
    return _clean({
        "run": str(run.path), "name": run.experiment.get("name"),
        "status": summary.get("status"),
        "peers": int((run.peers["role"] != "external").sum()),
        "leechers": len(run.leechers),
        "completed": int(run.leechers["complete"].notna().sum()),
        "completion": _table(metrics.completion_by_group(run)),
        "efficiency": metrics.efficiency(run),
        "bounds": metrics.bounds(run),
        "fairness": {**metrics.fairness(run),
                     "share_by_group": _table(metrics.share_by_group(run)),
                     "jain_optimistic_time": metrics.jain(opt["time"])},
        "clustering": _table(metrics.clustering(run)),
        "reciprocation": {"by_group": recip_lee.groupby("group")["share"].mean().to_dict(),
                          "mean": float(recip_lee["share"].mean())},
        "utilisation": {"by_group": util_group["utilisation"].to_dict(),
                        "initial_seeds": dict(zip(util.loc[util["role"] == "seed", "name"],
                                                  util.loc[util["role"] == "seed",
                                                           "utilisation"], strict=True))},
        "cpu": summary.get("cpu"),
        "warnings": list(run.warnings),
    })


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _grid(title: str, rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    body = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    return "\n".join([title, line, *body])


def format_text(h: dict[str, Any]) -> str:
    """The headline dict as the tables ``testbed analyze`` prints."""
    out = [f"run {h['name']} ({h['run']}): status {h['status'] or 'unknown'}, "
           f"{h['completed']}/{h['leechers']} leechers completed"]
    comp = h["completion"]
    out.append(_grid("\ncompletion time since arrival (s)",
                     [[g, str(r["leechers"]), str(r["completed"]), _fmt(r["mean"], 1),
                       _fmt(r["median"], 1), _fmt(r["p90"], 1)] for g, r in comp.items()],
                     ["group", "leechers", "done", "mean", "median", "p90"]))
    e = h["efficiency"]
    out.append(f"\nmakespan {_fmt(e['makespan'], 1)} s; bounds D_p2p {_fmt(e['d_p2p'], 1)} s, "
               f"D_cs {_fmt(e['d_cs'], 1)} s; efficiency D_p2p/makespan "
               f"{_fmt(e['efficiency'])}, speed-up D_cs/makespan {_fmt(e['speedup'])}")
    f = h["fairness"]
    out.append(f"\nfairness: Jain over share ratios {_fmt(f['jain_share_ratio'], 3)}, over "
               f"download rate / upload capacity {_fmt(f['jain_rate_per_capacity'], 3)}, over "
               f"optimistic-unchoke time {_fmt(f['jain_optimistic_time'], 3)}")
    sg = f["share_by_group"]
    if sg:
        out.append(_grid("share ratio U/D by group",
                         [[g, _fmt(r["ratio"]), _fmt(r["mean_ratio"])] for g, r in sg.items()],
                         ["group", "ΣU/ΣD", "mean U_i/D_i"]))
    cl = h["clustering"]
    if cl:
        cols = list(next(iter(cl.values())).keys())
        out.append(_grid("\nclustering index (regular-unchoke time / chance; row gives to column)",
                         [[g, *[_fmt(r[c]) for c in cols]] for g, r in cl.items()],
                         ["from \\ to", *cols]))
    rg = h["reciprocation"]["by_group"]
    if rg:
        out.append("reciprocation (share of upload to peers that sent back, same rechoke "
                   "period): " + ", ".join(f"{g} {_fmt(v)}" for g, v in rg.items()))
    u = h["utilisation"]
    out.append("\nupload utilisation U/(C·τ): " + ", ".join(
        f"{g} {_fmt(v)}" for g, v in u["by_group"].items()) + "; initial seed(s): " + (
        ", ".join(f"{n} {_fmt(v)}" for n, v in u["initial_seeds"].items()) or "–"))
    cpu = h.get("cpu") or {}
    if cpu:
        flag = "SATURATED" if cpu.get("saturated") else "ok"
        out.append(f"host CPU: mean {_fmt(cpu.get('host_mean'), 0)} %, p95 "
                   f"{_fmt(cpu.get('host_p95'), 0)} %: {flag}"
                   + (f" ({cpu['warning']})" if cpu.get("warning") else ""))
    for w in h["warnings"]:
        out.append(f"warning: {w}")
    return "\n".join(out)


def write_analysis(run_dir: Path, *, figures: bool = True) -> dict[str, Any]:
    """Load ``run_dir``, write its figures (unless ``figures=False``) and ``analysis.json``;
    returns the headline dict. Raises ``TestbedError`` (AnalysisError) or ``OSError``."""
    run = load_run(run_dir)
    h = headline(run)
    made = []
    if figures:
        from analysis.plots import make_figures  # matplotlib only when figures are made

        made = make_figures(run)
    h["figures"] = [str(p) for p in made]
    try:
        (run.path / "analysis.json").write_text(json.dumps(h, indent=1) + "\n")
    except OSError as exc:
        h["warnings"].append(f"cannot write analysis.json: {exc.strerror}")
    return h


def cli_analyze(run_dir: Path, as_json: bool) -> int:
    """``testbed analyze RUN [--json]``: print the headline, write figures and analysis.json.

    Returns 0, or 2 after one line on stderr when the directory cannot be analysed.
    """
    try:
        h = write_analysis(run_dir)
    except TestbedError as exc:
        print(f"testbed analyze: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"testbed analyze: {run_dir}: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(h))
    else:
        print(format_text(h))
        print(f"\nfigures: {Path(h['run']) / 'figures'}")
    return 0
