"""CPU seconds per MiB delivered, and an idle peer's RSS.

One seed sends a file to N leechers, everything unlimited, so the swarm runs as fast as the CPU
allows; CPU time of every peer process (sender and receiver side both count) is divided by the
payload delivered. Then an idle peer's RSS. Target (issue 2): <= 0.1 CPU s per MiB, RSS < 40 MB.

    .venv/bin/python -m bench.bench_cost [--size-mib 64] [--leechers 1] [--repeat 3]
        [--upload 2MiB/s]   # every peer capped: many small receives, the swarm's real regime
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.swarm_util import cpu_seconds, read_events, start_peer, start_tracker, stop_all
from peer.config import PeerConfig, ProtocolSettings, RateLimit
from peer.metainfo import make_synthetic_torrent
from peer.units import parse_rate
from testbed.experiment import peer_id_for

KEEP = False


def one_run(size_mib: int, leechers: int,
            upload: float | None = None) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if not KEEP else Path(tempfile.mkdtemp(prefix="bench-cost-"))
        run_start = time.monotonic()
        tracker, url = start_tracker(work, run_start)
        content, torrent, _meta = make_synthetic_torrent(work, size=size_mib << 20, seed=1,
                                                        announce=url)
        proto = ProtocolSettings(unchoke_when_free=True)
        cap = RateLimit(rate=upload)
        procs = [start_peer(work, PeerConfig(
            name="seed", peer_id=peer_id_for(0), torrent=str(torrent), role="seed",
            log=str(work / "seed.jsonl"), content=str(content), run_start=run_start,
            protocol=proto, upload=cap))]
        for i in range(1, leechers + 1):
            procs.append(start_peer(work, PeerConfig(
                name=f"l{i}", peer_id=peer_id_for(i), torrent=str(torrent), role="leecher",
                log=str(work / f"l{i}.jsonl"), run_start=run_start, seed=i, protocol=proto,
                upload=cap)))
        # Start-up (imports, reading the torrent) is not transfer cost: subtract what each
        # process had used when it logged its start line (the transfer begins after it).
        base = 0.0
        for p, name in zip(procs, ["seed"] + [f"l{i}" for i in range(1, leechers + 1)],
                           strict=True):
            while not any(e["ev"] == "start" for e in read_events(work / f"{name}.jsonl")):
                time.sleep(0.01)
            base += cpu_seconds(p.pid)
        t0 = time.monotonic()
        deadline = t0 + 120
        while time.monotonic() < deadline:
            done = sum(any(e["ev"] == "complete" for e in read_events(work / f"l{i}.jsonl"))
                       for i in range(1, leechers + 1))
            if done == leechers:
                break
            time.sleep(0.2)
        cpu = sum(cpu_seconds(p.pid) for p in procs) - base
        ends = [next(e["t"] for e in read_events(work / f"l{i}.jsonl") if e["ev"] == "complete")
                for i in range(1, leechers + 1)]
        starts = [next(e["t"] for e in read_events(work / f"l{i}.jsonl") if e["ev"] == "start")
                  for i in range(1, leechers + 1)]
        elapsed = max(ends) - min(starts)
        print(f"  base {base:.2f} cpu {cpu:.2f} elapsed {elapsed:.2f}")
        stop_all([*procs, tracker])
        mib = size_mib * leechers
        return cpu / mib, mib / elapsed, cpu / elapsed


def idle_rss() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_start = time.monotonic()
        tracker, url = start_tracker(work, run_start)
        _, torrent, _ = make_synthetic_torrent(work, size=16 << 20, seed=1, announce=url)
        proc = start_peer(work, PeerConfig(name="idle", peer_id=peer_id_for(1),
                                           torrent=str(torrent), role="leecher",
                                           log=str(work / "idle.jsonl"), run_start=run_start))
        time.sleep(2)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_kb = int(next(line.split()[1] for line in status.splitlines()
                          if line.startswith("VmRSS")))
        stop_all([proc, tracker])
        return rss_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--leechers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--upload", default="unlimited", help="every peer's upload cap")
    args = parser.parse_args()
    upload = parse_rate(args.upload)
    results = [one_run(args.size_mib, args.leechers, upload) for _ in range(args.repeat)]
    per_mib = statistics.median(r[0] for r in results)
    rate = statistics.median(r[1] for r in results)
    cores = statistics.median(r[2] for r in results)
    print(f"CPU s per MiB delivered: median {per_mib:.4f} "
          f"(runs: {', '.join(f'{r[0]:.4f}' for r in results)}); target <= 0.1")
    print(f"throughput: median {rate:.1f} MiB/s using {cores:.2f} cores")
    print(f"idle leecher RSS: {idle_rss():.1f} MB (16 MiB torrent held in memory; target < 40 MB)")


if __name__ == "__main__":
    main()
