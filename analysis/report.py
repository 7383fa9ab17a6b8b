"""Headline figures of a run: one dict (``--json``), a text report, and ``testbed analyze``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import injection, metrics
from analysis.load import Run, load_run
from peer.errors import TestbedError
from peer.units import format_size


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
    headline: dict[str, Any] = _clean({
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
        "utilisation_over_time": utilisation_series(run),
        "injection": injection.injection(run),
        "seed_redundancy": injection.seed_redundancy(run),
        "cpu": summary.get("cpu"),
        "warnings": list(run.warnings),
    })
    return headline


def utilisation_series(run: Run) -> dict[str, Any]:
    """``metrics.utilisation_table`` as JSON: the interval bounds once, then per group the
    lists peers, up, budget and utilisation, one value per interval."""
    table = metrics.utilisation_table(run)
    groups = {str(g): sub for g, sub in table.groupby("group", sort=True, observed=True)}
    any_group = next(iter(groups.values()), table)
    return {"step": metrics.utilisation_step(run), "t0": any_group["t0"].tolist(),
            "t": any_group["t"].tolist(),
            "by_group": {g: {col: sub[col].tolist()
                             for col in ("peers", "up", "budget", "utilisation")}
                         for g, sub in groups.items()}}


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
    out.append(_utilisation_text(h["utilisation_over_time"]))
    out.append(_injection_text(h["injection"], h["seed_redundancy"]))
    cpu = h.get("cpu") or {}
    if cpu:
        flag = "SATURATED" if cpu.get("saturated") else "ok"
        out.append(f"host CPU: mean {_fmt(cpu.get('host_mean'), 0)} %, p95 "
                   f"{_fmt(cpu.get('host_p95'), 0)} %: {flag}"
                   + (f" ({cpu['warning']})" if cpu.get("warning") else ""))
    for w in h["warnings"]:
        out.append(f"warning: {w}")
    return "\n".join(out)


def _seconds(value: float) -> str:
    """``8``, ``8.1``: one decimal at most, none when it is 0."""
    return f"{value:.1f}".removesuffix(".0")


def _utilisation_text(series: dict[str, Any], max_rows: int = 12) -> str:
    """The per-group utilisation table, its intervals merged k at a time to fit ``max_rows``
    (a merged value is Σ up / Σ budget, not a mean of ratios)."""
    by_group, t0, t = series["by_group"], series["t0"], series["t"]
    if not by_group or not t:
        return "\nupload utilisation over time: –"
    k = -(-len(t) // max_rows)
    rows = []
    for i in range(0, len(t), k):
        cells = []
        for g in by_group.values():
            up, budget = sum(g["up"][i:i + k]), sum(g["budget"][i:i + k])
            cells.append(_fmt(up / budget) if budget else "–")
        rows.append([f"{_seconds(t0[i])}–{_seconds(t[min(i + k, len(t)) - 1])}", *cells])
    return _grid(f"\nupload utilisation per group over time (bytes sent / (capacity × time "
                 f"present); {series['step'] * k:g} s intervals)", rows, ["t (s)", *by_group])


def _injection_text(inj: dict[str, Any], red: dict[str, Any]) -> str:
    """Piece injection and the initial seeds' redundant upload, in two sentences."""
    f_us = f"F/u_s {_fmt(inj['f_over_u_s'], 1)} s" if inj["f_over_u_s"] is not None \
        else "F/u_s – (unlimited seed upload)"
    if inj["all_injected_at"] is None:
        done = (f"never ({inj['never_injected']} of {inj['pieces']} pieces never left the "
                f"initial seeds; half were out at {_fmt(inj['half_at'], 1)} s)")
    else:
        done = (f"{_fmt(inj['all_injected_at'], 1)} s (half at {_fmt(inj['half_at'], 1)} s); "
                f"{_fmt(inj['injection_time'], 1)} s after injection could start at "
                f"{_fmt(inj['injection_start'], 1)} s = {_fmt(inj['ratio'])} × {f_us}")
    lines = [f"\nevery piece in the swarm (outside the initial seeds) at {done}"]
    if red["contributions"]:
        share = f"{100 * red['share']:.0f} %"
        split = f"{100 * red['share_split']:.0f} %"
        lines.append(
            f"initial seeds' piece contributions: {red['contributions']}, new "
            f"{red['new']}, already held elsewhere {red['already_held']} ({share}; {split} "
            f"with each piece's blocks split evenly among its senders; "
            f"{red['holder_present']} by a peer still present; "
            f"{red['requested_after_first_copy']} requested after the first copy was complete, "
            f"median {_fmt(red['median_delay'], 1)} s later)")
    lines.append(f"initial seeds uploaded {format_size(red['seed_up'])} = "
                 f"{_fmt(red['copies_sent'])} × F")
    return "\n".join(lines)


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
