"""Figures of one run, as PNG files in RUN/figures/ (matplotlib, Agg backend: no display), or
as SVG text for the HTML report (``svg``)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis import injection, metrics
from analysis.load import Run

DPI = 110

Target = Path | IO[bytes]
"""Where a figure goes: a file (format from its suffix) or a stream (SVG)."""


def _save(fig: Figure, out: Target) -> Target:
    fig.tight_layout()
    if isinstance(out, Path):
        fig.savefig(out, dpi=DPI)
    else:
        fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    return out


def completion_cdf(run: Run, out: Target) -> Target:
    """Completion time CDF, one step curve per group and one for all leechers."""
    cdf = metrics.completion_cdf(run)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for group, sub in cdf.groupby("group", sort=True):
        if sub.empty:
            continue
        x = np.concatenate([[0.0], sub["completion_time"].to_numpy()])
        y = np.concatenate([[0.0], sub["fraction"].to_numpy()])
        style: dict[str, Any] = ({"color": "black", "linestyle": "--", "linewidth": 1.2}
                                 if group == "all" else {})
        ax.step(x, y, where="post", label=f"{group} (n={_n_group(run, group)})", **style)
    ax.set_xlabel("completion time since arrival (s)")
    ax.set_ylabel("fraction of leechers completed")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no leecher completed: no curve to name
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no leecher completed", transform=ax.transAxes, ha="center")
    ax.set_title("Completion time CDF by group")
    return _save(fig, out)


def _n_group(run: Run, group: str) -> int:
    lee = run.leechers
    return len(lee) if group == "all" else int((lee["group"] == group).sum())


def progress(run: Run, out: Target) -> Target:
    """Swarm progress (verified pieces / N·M) with seeds and leechers present over time."""
    prog = metrics.progress(run)
    pop = metrics.population(run)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(prog["t"], prog["fraction"], color="tab:blue", label="pieces done / (N·M)")
    ax.set_xlabel("run time (s)")
    ax.set_ylabel("swarm progress", color="tab:blue")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.step(pop["t"], pop["seeds"], where="post", color="tab:green", label="seeds")
    ax2.step(pop["t"], pop["leechers"], where="post", color="tab:red", label="leechers")
    ax2.set_ylabel("peers present")
    ax2.set_ylim(bottom=0)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [str(ln.get_label()) for ln in lines], loc="center right", fontsize=8)
    ax.set_title("Swarm progress")
    return _save(fig, out)


def unchoke_matrix(run: Run, out: Target) -> Target:
    """Heatmap of the clustering index between groups (regular unchokes, leecher state)."""
    mat = metrics.clustering(run)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * max(len(mat.columns), 1),
                                    1.4 + 0.9 * max(len(mat.index), 1)))
    values = mat.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    vmax = max(2.0, float(finite.max()) if finite.size else 2.0)
    # Diverging around 1 (= chance): red above (favoured), blue below.
    norm = matplotlib.colors.TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=vmax)
    im = ax.imshow(np.nan_to_num(values, nan=1.0), cmap="RdBu_r", norm=norm)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(mat.columns)), [str(c) for c in mat.columns])
    ax.set_yticks(range(len(mat.index)), [str(i) for i in mat.index])
    ax.set_xlabel("unchoked peer's group")
    ax.set_ylabel("unchoking peer's group")
    fig.colorbar(im, ax=ax, label="regular-unchoke time / chance")
    ax.set_title("Clustering index")
    return _save(fig, out)


def availability(run: Run, out: Target) -> Target:
    """Piece availability among the peers present: min and mean copies, normalised entropy."""
    av = metrics.availability(run)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.step(av["t"], av["min"], where="post", label="min copies", color="tab:red")
    ax.plot(av["t"], av["mean"], label="mean copies", color="tab:blue")
    ax.set_xlabel("run time (s)")
    ax.set_ylabel("copies of a piece")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(av["t"], av["entropy"], color="tab:gray", linestyle=":", label="entropy")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("normalised entropy")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [str(ln.get_label()) for ln in lines], loc="lower right", fontsize=8)
    ax.set_title("Piece availability")
    return _save(fig, out)


def utilisation(run: Run, out: Target) -> Target:
    """Upload utilisation over time per group, and of each initial seed."""
    step = max(2.0, run.end / 100)  # ~100 intervals: per-second rates are too noisy to read
    by_group = metrics.utilisation_over_time(run, step)
    by_peer = metrics.utilisation_over_time(run, step, by="peer")
    seeds = set(run.seeds["name"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for group in by_group.columns:
        members = set(run.peers.loc[run.peers["group"] == group, "name"])
        if members <= seeds:
            continue  # drawn below, peer by peer
        ax.plot(by_group.index, by_group[group], label=f"group {group}", linewidth=1.2)
    for seed in sorted(seeds):
        if seed in by_peer.columns:
            ax.plot(by_peer.index, by_peer[seed], color="black", linestyle="--",
                    linewidth=1.0, label=f"initial seed {seed!r}")
    top = np.nanmax(np.concatenate([by_group.to_numpy().ravel(), by_peer.to_numpy().ravel(),
                                    [1.0]]))
    ax.set_xlabel(f"run time (s), {step:g} s intervals")
    ax.set_ylabel("bytes sent / (capacity · time present)")
    # Above 1 means a bucket sent more than its rate: keep it visible, within reason.
    ax.set_ylim(0, max(1.15, min(float(top) * 1.05, 3.0)))
    ax.axhline(1.0, color="gray", linewidth=0.6)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Upload utilisation")
    return _save(fig, out)


def _steps(ax: Axes, t0: np.ndarray, t: np.ndarray, values: np.ndarray,
           **style: Any) -> None:
    """One value per interval (t0, t], drawn as a flat step across it."""
    if len(t):
        ax.step(np.append(t0, t[-1]), np.append(values, values[-1]), where="post", **style)


def utilisation_over_time(run: Run, out: Target) -> Target:
    """Per group, per interval: utilisation (top) and upload rate against capacity present."""
    table = metrics.utilisation_table(run)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.6, 6.0), sharex=True)
    for k, (group, sub) in enumerate(table.groupby("group", sort=True, observed=True)):
        colour = f"C{k % 10}"
        t0, t = sub["t0"].to_numpy(), sub["t"].to_numpy()
        _steps(top, t0, t, sub["utilisation"].to_numpy(), color=colour, label=f"{group}")
        _steps(bottom, t0, t, sub["rate"].to_numpy() / 1024, color=colour)
        _steps(bottom, t0, t, sub["capacity"].to_numpy() / 1024, color=colour,
               linestyle="--", linewidth=0.9)
    top.axhline(1.0, color="gray", linewidth=0.6)
    top.set_ylim(0, max(1.15, min(float(np.nan_to_num(table["utilisation"].to_numpy(
        float)).max(initial=0.0)) * 1.05, 3.0)))
    top.set_ylabel("bytes sent / (capacity · time)")
    top.set_title(f"Upload utilisation per group, {metrics.utilisation_step(run):g} s intervals")
    top.legend(title="group", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    # the colours are the groups' (legend above); only the line styles need saying here
    bottom.plot([], [], color="black", label="sent")
    bottom.plot([], [], color="black", linestyle="--", linewidth=0.9, label="capacity present")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    bottom.set_ylabel("upload (KiB/s)")
    bottom.set_xlabel("run time (s)")
    bottom.set_ylim(bottom=0)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _save(fig, out)


def piece_injection(run: Run, out: Target) -> Target:
    """Pieces present outside the initial seeds over time, against the seeds sending each piece
    once at full rate, with the piece events the seeds sent to (all, and already held)."""
    first = np.sort(injection.piece_injection(run)["first_t"].dropna().to_numpy())
    contrib = injection.seed_contributions(run)
    held = contrib.loc[contrib["status"] == injection.ALREADY_HELD, "t"].to_numpy()
    summary = injection.injection(run)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for times, label, colour in (
            (first, "pieces outside the initial seeds", "tab:blue"),
            (contrib["t"].to_numpy(), "pieces the initial seeds sent to", "tab:gray"),
            (held, "… of which already held elsewhere", "tab:red")):
        ax.step(np.concatenate([[0.0], times]), np.arange(len(times) + 1), where="post",
                label=label, color=colour)
    t0, f_us = summary["injection_start"], summary["f_over_u_s"]
    if f_us is not None and t0 is not None:
        ax.plot([t0, t0 + f_us], [0, run.num_pieces], color="black", linestyle="--",
                linewidth=1.0, label=f"each piece sent once at u_s (F/u_s = {f_us:.1f} s)")
    if summary["all_injected_at"] is not None:
        ax.axvline(summary["all_injected_at"], color="tab:blue", linestyle=":", linewidth=1.0)
    ax.axhline(run.num_pieces, color="gray", linewidth=0.6)
    ax.set_xlabel("run time (s)")
    ax.set_ylabel("pieces")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Piece injection by the initial seeds")
    return _save(fig, out)


def makespan_bounds(run: Run, out: Target) -> Target:
    """The makespan beside the textbook bounds D_p2p and D_cs (docs/analysis.md)."""
    eff = metrics.efficiency(run)
    bars = [("D_p2p (P2P bound)", eff["d_p2p"], "tab:green"),
            ("makespan", eff["makespan"], "tab:blue"),
            ("D_cs (client-server)", eff["d_cs"], "tab:gray")]
    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    for y, (label, value, colour) in enumerate(bars):
        if value is None or not np.isfinite(value):
            ax.text(0, y, "  none (not every leecher completed)" if label == "makespan"
                    else "  none", va="center", fontsize=9)
            continue
        ax.barh(y, value, color=colour, height=0.6)
        ax.text(value, y, f" {value:.1f} s", va="center", fontsize=9)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since t = 0")
    ax.set_xlim(0, max([b[1] for b in bars if b[1] is not None and np.isfinite(b[1])],
                       default=1.0) * 1.2)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Makespan against the textbook bounds")
    return _save(fig, out)


SATURATION_THRESHOLD = 90.0
"""The host-CPU level of the run's saturation guard (docs/run-directory.md), drawn as a line."""


def host_cpu(run: Run, out: Target) -> Target:
    """Host CPU over time (all of it, and the part used by the run's own processes), with the
    saturation guard's threshold."""
    res = run.resources
    cpus = float(((run.meta or {}).get("host") or {}).get("cpus") or 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    if not res.empty:
        by_t = res.groupby("t", sort=True)
        ax.plot(by_t["host_cpu"].first().index, by_t["host_cpu"].first().to_numpy(float),
                color="tab:red", label="host (all processes)")
        own = by_t["cpu"].sum(min_count=1) / cpus
        ax.plot(own.index, own.to_numpy(float), color="tab:blue",
                label="the run's processes")
    ax.axhline(SATURATION_THRESHOLD, color="black", linestyle="--", linewidth=0.9,
               label=f"saturation threshold {SATURATION_THRESHOLD:g} %")
    ax.set_ylim(0, 105)
    ax.set_xlim(left=0)
    ax.set_xlabel("run time (s)")
    ax.set_ylabel(f"% of all {cpus:g} cores")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Host CPU")
    return _save(fig, out)


def svg(draw: Callable[[Run, Target], Target], run: Run, prefix: str) -> str:
    """One figure as inline SVG text: no XML prolog, text as text (the browser's fonts), and
    every id prefixed with ``prefix`` so that several figures can share one HTML page."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        draw(run, buffer)
    return inline_svg(buffer.getvalue().decode("utf-8"), prefix)


def figure_svg(fig: Figure, prefix: str) -> str:
    """A figure drawn elsewhere (results sets, sweeps, comparisons) as inline SVG, closed."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        _save(fig, buffer)
    return inline_svg(buffer.getvalue().decode("utf-8"), prefix)


def inline_svg(text: str, prefix: str) -> str:
    """matplotlib's SVG document made fit to sit in HTML beside others (see ``svg``)."""
    text = text[text.index("<svg"):]
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    if ids:
        pattern = re.compile(r'(\bid="|#)(' + "|".join(map(re.escape, ids)) + r')\b')
        text = pattern.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    return text


FIGURES = {"completion_cdf": completion_cdf, "progress": progress,
           "unchoke_matrix": unchoke_matrix, "availability": availability,
           "utilisation": utilisation, "utilisation_over_time": utilisation_over_time,
           "injection": piece_injection}


def make_figures(run: Run, out_dir: Path | None = None) -> list[Path]:
    """Write every figure as ``<name>.png`` into ``out_dir`` (default RUN/figures/)."""
    out_dir = run.path / "figures" if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, draw in FIGURES.items():
        path = out_dir / f"{name}.png"
        draw(run, path)
        made.append(path)
    return made
