"""The flash crowd against link latency (issue 14, item 4): a table and a figure from a sweep.

    .venv/bin/testbed sweep topologies/flash_crowd.yaml --out /tmp/lat \\
        --param network.latency=0ms,5ms,25ms,75ms \\
        --param protocol.request_queue_time=0.25,1
    .venv/bin/python -m bench.latency_sweep /tmp/lat [/tmp/lat2] --figure docs/figures/latency.png

Every group's access delay is ``network.latency``, so the round trip between two peers is four
times it (0, 20, 100, 300 ms above). For each run: makespan / D_p2p (sweep.csv) and the time
to first piece, each leecher's first verified piece after its start (median over leechers,
from the peers' logs); runs of the same setting (repetitions, several sweeps) are summed up by
their median and range.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from testbed.sweep import gather

LATENCY = "network.latency"
QUEUE = "protocol.request_queue_time"


def first_piece_times(run_dir: Path) -> list[float]:
    """Seconds from each leecher's start to its first verified piece."""
    times = []
    for log in sorted((run_dir / "peers").glob("*.jsonl")):
        start = first = None
        role = None
        with open(log) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                if record["ev"] == "start":
                    start, role = record["t"], record["role"]
                elif record["ev"] == "piece" and record["ok"]:
                    first = record["t"]
                    break
        if role == "leecher" and start is not None and first is not None:
            times.append(first - start)
    return times


def rtt_ms(latency: str) -> float:
    """The peer-to-peer round trip of an access delay written like ``25ms``: four of it."""
    value = float(latency.rstrip("ms")) if latency.endswith("ms") else float(latency) * 1000
    return 4 * value


def rows(sweep_dir: Path) -> list[dict[str, Any]]:
    out = []
    for row in gather(sweep_dir):
        first = first_piece_times(Path(row["run_dir"]))
        out.append({"rtt_ms": rtt_ms(str(row[LATENCY])), "queue": row.get(QUEUE, 1.0),
                    "makespan": row["makespan"], "d_p2p": row["d_p2p"],
                    "ratio": row["makespan_over_d_p2p"], "status": row["status"],
                    "saturated": row.get("cpu_saturated"),
                    "first_piece": statistics.median(first) if first else None})
    return sorted(out, key=lambda r: (r["queue"], r["rtt_ms"]))


def settings(found: list[dict[str, Any]]) -> dict[tuple[float, float], list[dict[str, Any]]]:
    """The runs of each (request_queue_time, RTT), completed ones only."""
    by: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for r in found:
        if r["status"] == "completed" and r["ratio"] is not None:
            by.setdefault((r["queue"], r["rtt_ms"]), []).append(r)
    return dict(sorted(by.items()))


def spread(values: list[float], unit: str = "") -> str:
    """``median (min-max)``, or the value alone for one run."""
    middle = f"{statistics.median(values):.2f}{unit}"
    if len(values) == 1:
        return middle
    return f"{middle} ({min(values):.2f}-{max(values):.2f})"


def table(found: list[dict[str, Any]]) -> str:
    lines = ["| request_queue_time | RTT | runs | makespan / D_p2p | time to first piece "
             "(median over leechers) | host CPU saturated |", "|---|---|---|---|---|---|"]
    for (queue, rtt), runs in settings(found).items():
        firsts = [r["first_piece"] for r in runs if r["first_piece"] is not None]
        saturated = sum(bool(r["saturated"]) for r in runs)
        lines.append(f"| {queue:g} s | {rtt:g} ms | {len(runs)} | "
                     f"{spread([r['ratio'] for r in runs])} | {spread(firsts, ' s')} | "
                     f"{saturated}/{len(runs)} |")
    return "\n".join(lines)


def plot(found: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    by = settings(found)
    for queue in sorted({q for q, _ in by}):
        label = f"request_queue_time {queue:g} s"
        for ax, key in ((left, "ratio"), (right, "first_piece")):
            points = [(rtt, [r[key] for r in runs if r[key] is not None])
                      for (q, rtt), runs in by.items() if q == queue]
            xs = [rtt for rtt, values in points if values]
            mids = [statistics.median(values) for _, values in points if values]
            low = [m - min(v) for m, (_, v) in zip(mids, [p for p in points if p[1]],
                                                     strict=True)]
            high = [max(v) - m for m, (_, v) in zip(mids, [p for p in points if p[1]],
                                                      strict=True)]
            ax.errorbar(xs, mids, yerr=[low, high], fmt="o-", capsize=3, label=label)
    left.axhline(1.0, color="grey", lw=0.8, ls=":")
    left.set(xlabel="round trip between peers (ms)", ylabel="makespan / D_p2p",
             title="Flash crowd: makespan", ylim=(0, None))
    right.set(xlabel="round trip between peers (ms)", ylabel="seconds",
              title="Time to first piece (median)", ylim=(0, None))
    left.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", type=Path, nargs="+",
                        help="sweep directories (testbed sweep --out)")
    parser.add_argument("--figure", type=Path, help="write the figure here (PNG)")
    args = parser.parse_args()
    found = [r for sweep in args.sweeps for r in rows(sweep)]
    print(table(found))
    if args.figure:
        plot(found, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
