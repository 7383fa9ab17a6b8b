"""Transfer rates between the testbed and Transmission / ctorrent, both ways, with and without
the client's own rate cap (docs/real-clients.md).

    python bench/real_clients/rates.py [--size 4MiB] [--cap 512KiB/s] [--queue-time 1s] [--out DIR]

For each client and direction runs a two-peer swarm through the testbed's tracker:
- client seed -> testbed leecher: the rate is the leecher's, from its piece events (first
  request to last piece), the client's upload capped at ``--cap`` or unlimited;
- testbed seed (8 MiB/s) -> client leecher: the rate is what the seed sent the client, from the
  seed's counters (1 s resolution), the client's download capped or unlimited.
Prints one line per case: measured KiB/s and, when capped, measured / cap.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from peer.units import parse_rate
from testbed.run import RunOptions, execute_run
from testbed.topology import expand, parse_topology

TRANSMISSION = ("{python} {repo}/bench/real_clients/transmission_client.py --torrent {torrent}"
                " --dir {dir} --port {port} --upload-kb {upload_rate_kb}"
                " --download-kb {download_rate_kb}")
CTORRENT = ("ctorrent -I 127.0.0.2 -p {port} -s {file} -b {dir}/ctorrent.bf"
            " -U {upload_rate_kib} -D {download_rate_kib} {torrent}")
CLIENTS = {"transmission": ("transmission-cli", TRANSMISSION, "-TR3000-"),
           "ctorrent": ("ctorrent", CTORRENT, "hex:" + b"-CD0303-".hex())}


def topology(size: str, client_seeds: bool, command: str, cap: str, queue: str) -> str:
    head = f"""
content: {{size: {size}, piece_size: 64KiB}}
protocol: {{unchoke_when_free: true, short_announce_interval: 2s, request_queue_time: {queue}}}
tracker: {{announce_interval: 2}}
end: {{time_limit: 120}}
groups:
"""
    if client_seeds:
        return head + f"""
  - {{name: client, role: seed, upload: {cap}, command: "{command}"}}
  - {{name: leecher, upload: 1MiB/s}}
"""
    return head + f"""
  - {{name: seed, role: seed, upload: 8MiB/s}}
  - {{name: client, download: {cap}, command: "{command}"}}
"""


def _events(run: Path, peer: str, ev: str) -> list[dict]:
    lines = (run / "peers" / f"{peer}.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["ev"] == ev]


def leecher_rate(run: Path, prefix: str) -> float:
    mine = [r for r in _events(run, "leecher-0", "piece")
            if r["ok"] and len(r["from"]) == 1 and r["from"][0].startswith(prefix)]
    if not mine:
        return float("nan")
    span = max(r["t"] for r in mine) - min(r["start"] for r in mine)
    return sum(r["size"] for r in mine) / span


def seed_rate(run: Path, prefix: str) -> float:
    """What the seed sent the client after its first counters line showing bytes, up to the
    first line showing all of them, over that time (counters lines come about every second,
    only when something changed, and list changed neighbours only)."""
    latest: dict[str, int] = {}
    points: list[tuple[float, int]] = [(0.0, 0)]
    for record in _events(run, "seed-0", "counters"):
        for peer, (up, _down) in record["n"].items():
            if peer.startswith(prefix):
                latest[peer] = up
        points.append((record["t"], sum(latest.values())))
    total = points[-1][1]
    if not total:
        return float("nan")
    start, sent_then = next((t, sent) for t, sent in points if sent > 0)
    done = next(t for t, sent in points if sent >= total)
    return (total - sent_then) / (done - start) if done > start else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4MiB")
    parser.add_argument("--cap", default="512KiB/s")
    parser.add_argument("--queue-time", default="1s",
                        help="the testbed peers' request_queue_time (issue 17 item 2)")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args(argv)
    cap = parse_rate(args.cap) or 0.0
    out = Path(args.out or tempfile.mkdtemp(prefix="real-rates-"))
    print(f"{'client':<13} {'direction':<26} {'cap':>10} {'KiB/s':>8} {'/cap':>6}  status")
    for name, (program, command, prefix) in CLIENTS.items():
        if shutil.which(program) is None:
            print(f"{name:<13} skipped: {program} not installed")
            continue
        for client_seeds in (True, False):
            for limit in (args.cap, "unlimited"):
                text = topology(args.size, client_seeds, command, limit, args.queue_time)
                run = out / f"{name}-{'seed' if client_seeds else 'leech'}-{limit.replace('/', '')}"
                experiment = expand(parse_topology(text, default_name=run.name))
                summary = execute_run(experiment, text, RunOptions(
                    out=run, quiet=True, launcher="local")).summary
                rate = leecher_rate(run, prefix) if client_seeds else seed_rate(run, prefix)
                direction = ("client seed -> testbed" if client_seeds
                             else "testbed seed -> client")
                ratio = f"{rate / cap:6.3f}" if limit != "unlimited" else "     -"
                print(f"{name:<13} {direction:<26} {limit:>10} {rate / 1024:8.0f} {ratio}  "
                      f"{summary['status']}", flush=True)
    print(f"runs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
