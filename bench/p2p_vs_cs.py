"""P2P against client-server, measured: distribution time against N beside the textbook bounds.

    .venv/bin/python bench/p2p_vs_cs.py [--n 5,10,20,30,40] [--repeat 1] [--out DIR]
    .venv/bin/python bench/p2p_vs_cs.py --from runs/p2p_vs_cs-sweep-...   # re-plot a sweep

Runs ``testbed sweep`` on topologies/p2p_vs_cs.yaml over the leecher count N and the leechers'
choker: ``tit_for_tat`` (P2P: leechers re-upload what they have) and ``free_rider`` (client-
server: leechers upload nothing, the seed serves everyone). Plots the measured distribution time
(the makespan: the last leecher's completion since t = 0) of both modes against N, beside
D_cs(N) = N·F/u_s and D_p2p(N) = max(F/u_s, N·F/(u_s + N·u)) from testbed.bounds, into
docs/figures/p2p_vs_cs.png (and the sweep directory), and prints measured / bound per N.
Runs during which the host CPU was saturated are drawn hollow and flagged in the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from testbed.bounds import client_server_time, p2p_time
from testbed.sweep import SWEEP_JSON, Param, gather, parse_param, run_sweep
from testbed.topology import Topology, load_topology

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "topologies" / "p2p_vs_cs.yaml"
FIGURE = ROOT / "docs" / "figures" / "p2p_vs_cs.png"
COUNT = "groups[leecher].count"
CHOKER = "groups[leecher].choker"
MODES = {"tit_for_tat": "P2P", "free_rider": "client-server"}


def capacities(topology: Topology) -> tuple[float, float, float]:
    """(F, u_s, u) of the topology: file size, the seeds' total upload, a leecher's upload."""
    seeds = [g for g in topology.groups if g.role == "seed"]
    leecher = next(g for g in topology.groups if g.name == "leecher")
    if any(g.upload.rate is None for g in seeds) or leecher.upload.rate is None:
        raise SystemExit("p2p_vs_cs: the seed and leecher uploads must be finite for the bounds")
    u_s = sum(float(g.upload.rate) * g.count for g in seeds)  # type: ignore[arg-type]
    return float(topology.content_size), u_s, float(leecher.upload.rate)


def bounds_at(n: int, f: float, u_s: float, u: float) -> tuple[float, float]:
    """(D_cs, D_p2p) for n leechers (download unlimited)."""
    return (client_server_time(f, u_s, [None] * n), p2p_time(f, u_s, [u] * n, [None] * n))


def by_mode(rows: list[dict[str, Any]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    out: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        out[MODES.get(row[CHOKER], row[CHOKER])][int(row[COUNT])].append(row)
    return out


def ratio_table(rows: list[dict[str, Any]], f: float, u_s: float, u: float) -> str:
    modes = by_mode(rows)
    lines = [f"{'N':>3}  {'D_p2p':>6}  {'P2P':>6}  {'P2P/D_p2p':>9}  {'D_cs':>6}  {'C-S':>6}  "
             f"{'C-S/D_cs':>8}  {'C-S/P2P':>7}  cpu saturated"]
    for n in sorted({int(r[COUNT]) for r in rows}):
        d_cs, d_p2p = bounds_at(n, f, u_s, u)
        p2p = _median(modes["P2P"].get(n, []))
        cs = _median(modes["client-server"].get(n, []))
        sat = [MODES.get(r[CHOKER], r[CHOKER]) for r in rows
               if int(r[COUNT]) == n and r["cpu_saturated"]]
        lines.append(f"{n:>3}  {d_p2p:6.1f}  {_s(p2p)}  {_r(p2p, d_p2p):>9}  {d_cs:6.1f}  "
                     f"{_s(cs)}  {_r(cs, d_cs):>8}  {_r(cs, p2p):>7}  "
                     f"{', '.join(sat) or 'no'}")
    return "\n".join(lines)


def _median(rows: list[dict[str, Any]]) -> float | None:
    times = [r["makespan"] for r in rows if r["makespan"] is not None]
    return statistics.median(times) if times else None


def _s(x: float | None) -> str:
    return f"{'-':>6}" if x is None else f"{x:6.1f}"


def _r(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def plot(rows: list[dict[str, Any]], f: float, u_s: float, u: float, paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted({int(r[COUNT]) for r in rows})
    grid = list(range(1, max(ns) + 1))
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    ax.plot(grid, [bounds_at(n, f, u_s, u)[0] for n in grid], "--", color="tab:red",
            label=r"$D_{cs} = N F / u_s$ (bound)")
    ax.plot(grid, [bounds_at(n, f, u_s, u)[1] for n in grid], "--", color="tab:blue",
            label=r"$D_{p2p} = \max(F/u_s,\ N F / (u_s + \Sigma u_i))$ (bound)")
    colours = {"client-server": "tab:red", "P2P": "tab:blue"}
    saturated_any = False
    for mode, per_n in sorted(by_mode(rows).items()):
        colour = colours.get(mode, "tab:grey")
        xs = sorted(per_n)
        ax.plot(xs, [_median(per_n[n]) for n in xs], "-", color=colour, lw=1.5,
                label=f"{mode}, measured (median)")
        for n in xs:
            for r in per_n[n]:
                if r["makespan"] is None:
                    continue
                hollow = bool(r["cpu_saturated"])
                saturated_any |= hollow
                ax.plot([n], [r["makespan"]], "o", ms=6, color=colour,
                        mfc="white" if hollow else colour)
    ax.set_xlabel("N (leechers)")
    ax.set_ylabel("distribution time (s): last completion since t = 0")
    mib = 1024 * 1024
    ax.set_title(f"P2P vs client-server: F = {f / mib:g} MiB, u_s = {u_s / mib:g} MiB/s, "
                 f"u_i = {u / 1024:g} KiB/s", fontsize=10)
    ax.set_xlim(0, max(ns) + 2)
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    note = "hollow: host CPU saturated during the run" if saturated_any else \
        "host CPU not saturated in any run"
    ax.plot([], [], "o", color="grey", mfc="white", label=note)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="5,10,20,30,40", help="leecher counts (default 5,10,20,30,40)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per (N, mode), seeds 1..K")
    ap.add_argument("--out", type=Path, help="the sweep directory (default runs/...)")
    ap.add_argument("--from", dest="sweep", type=Path, help="re-plot this sweep, run nothing")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    args = ap.parse_args(argv)
    topology = load_topology(TOPOLOGY)
    f, u_s, u = capacities(topology)
    if args.sweep is not None:
        sweep_dir = args.sweep
        if not (sweep_dir / SWEEP_JSON).is_file():
            print(f"p2p_vs_cs: {sweep_dir}: not a sweep directory", file=sys.stderr)
            return 2
        rows = gather(sweep_dir)
    else:
        params: list[Param] = [parse_param(f"{COUNT}={args.n}"),
                               parse_param(f"{CHOKER}=tit_for_tat,free_rider")]
        result = run_sweep(topology, params, repeat=args.repeat, out=args.out, quiet=True,
                           command=("bench/p2p_vs_cs.py", *(argv or sys.argv[1:])))
        sweep_dir, rows = result.sweep_dir, result.rows
    plot(rows, f, u_s, u, [args.figure, sweep_dir / "p2p_vs_cs.png"])
    print(f"\nsweep {sweep_dir}; figure {args.figure}")
    print("distribution time (median over repetitions, s) and measured / bound:")
    print(ratio_table(rows, f, u_s, u))
    bad = [r for r in rows if r["status"] != "completed"]
    for r in bad:
        print(f"not completed: N={r[COUNT]} {r[CHOKER]} seed {r['seed']}: {r['status']}",
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
