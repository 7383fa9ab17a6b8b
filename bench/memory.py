"""Memory and scale of testbed swarms (issue 13, items 4 and 3), through ``testbed run``.

    .venv/bin/python -m bench.memory memory   [--tree DIR] [--keep DIR]   # 100 peers, 1 GiB
    .venv/bin/python -m bench.memory full     [--tree DIR]               # 2 leechers get 1 GiB
    .venv/bin/python -m bench.memory crowd    [--peers 300] [--size 2MiB] [--piece 32KiB]
    .venv/bin/python -m bench.memory thousand [--tree DIR]               # 1,000 peers
    .venv/bin/python -m bench.memory regen    [--leechers 12] [--cache 8]  # regeneration cost
    .venv/bin/python -m bench.memory report RUN_DIR                       # any finished run

- memory: 1 seed (1 MiB/s) and 99 leechers (64 KiB/s) of a 1 GiB content in 256 KiB pieces,
  for 120 s (nobody completes: the point is what a peer holds, not the makespan). Prints each
  role's peak RSS (the largest of resources.jsonl's once-a-second samples), the MiB each peer
  downloaded, and the slope of RSS against downloaded bytes: a peer that holds its content in
  memory grows by what it downloads, one that regenerates it does not.
- full: 1 seed and 2 leechers of the same 1 GiB content at 8 MiB/s each, until both complete:
  the peak RSS of leechers that downloaded the whole content.
- crowd: N peers (1 seed at 256 KiB/s, N - 1 leechers at 64 KiB/s), 2 MiB in 32 KiB pieces
  (as bench/bench_scale.py's size experiment; --size, --piece), completed? CPU flagged
  saturated? Small pieces cost CPU per MiB: each one is announced to every neighbour (a have),
  so 32 KiB pieces send 8x the haves of the protocol's default 256 KiB.
- thousand: the same with 1,000 peers; also how long after invoking ``testbed run`` the last
  peer had started (its ``start`` line).

- regen: what regenerating pieces costs. An in-process swarm (one process, trio, real loopback
  connections) of synthetic peers, 1 seed at 1 MiB/s and L leechers at 512 KiB/s (the flash
  crowd's rates), 8 MiB in 256 KiB pieces, until every leecher completes; prints the pieces
  each role regenerated per piece it sent (the LRU cache's misses) and their SHAKE-128 time
  (measured here per piece) per MiB sent, beside the process's CPU per MiB delivered.

``--tree`` is the checkout whose ``testbed`` runs (cwd of the run), so the same benchmark
measures a snapshot of an older commit. Run it niced and alone: it is a paper-scale swarm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.idle_cost import PEER_SKIP, read_samples
from bench.swarm_util import read_events

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
MIB = 1 << 20


def topology(name: str, *, leechers: int, size: str, piece: str, seed_upload: str,
             upload: str, time_limit: float, all_complete: bool,
             dial_rate: float | None = None) -> str:
    pacing = "" if dial_rate is None else f", dial_rate: {dial_rate:g}"
    return f"""\
name: {name}
seed: 1
max_peers: {leechers + 1}
content: {{size: {size}, piece_size: {piece}}}
protocol: {{unchoke_when_free: true{pacing}}}
groups:
  - {{name: seed, role: seed, upload: {seed_upload}}}
  - {{name: leecher, count: {leechers}, upload: {upload}}}
end: {{all_complete: {str(all_complete).lower()}, time_limit: {time_limit:g}}}
"""


def run(tree: Path, yaml_text: str, out: Path) -> float:
    """Run the topology with ``tree``'s testbed into ``out``; returns the invocation's
    monotonic time (for start-up figures)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = out.parent / f"{out.name}.yaml"
    spec.write_text(yaml_text)
    invoked = time.monotonic()
    subprocess.run([sys.executable, "-m", "testbed.cli", "run", str(spec), "--out", str(out),
                    "--no-analyze", "--quiet"], cwd=tree, check=False,
                   stdout=subprocess.DEVNULL)
    return invoked


def peak_rss(run_dir: Path) -> dict[str, int]:
    """Each process's largest RSS sample (bytes)."""
    peaks: dict[str, int] = {}
    for sample in read_samples(run_dir):
        for name, proc in sample["procs"].items():
            peaks[name] = max(peaks.get(name, 0), proc.get("rss") or 0)
    return peaks


def peer_facts(run_dir: Path) -> dict[str, dict]:
    """Per testbed peer: role, storage (None before it was logged), downloaded bytes, start t."""
    facts = {}
    for log in sorted((run_dir / "peers").glob("*.jsonl")):
        events = read_events(log)
        start = next((e for e in events if e["ev"] == "start"), None)
        if start is None:
            continue
        down = max((e.get("down", 0) for e in events if e["ev"] in ("counters", "stop")),
                   default=0)
        facts[log.stem] = {"role": start["role"], "storage": start.get("storage"),
                           "down": down, "start_t": start["t"]}
    return facts


def report(run_dir: Path, invoked: float | None = None) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    meta = json.loads((run_dir / "meta.json").read_text())
    peaks = peak_rss(run_dir)
    facts = peer_facts(run_dir)
    content = run_dir / "content"
    result: dict = {
        "status": summary["status"], "peers": summary["peers"], "started": summary["started"],
        "completed": summary["completed"], "leechers": summary["leechers"],
        "verified": summary["verified"], "makespan": summary.get("makespan"),
        "makespan_over_d_p2p": summary.get("makespan_over_d_p2p"), "cpu": summary["cpu"],
        "content_files": sorted(p.name for p in content.iterdir()) if content.exists() else [],
        "storage": sorted({str(f["storage"]) for f in facts.values()}),
    }
    for role in ("seed", "leecher"):
        names = [n for n, f in facts.items() if f["role"] == role and n in peaks]
        if names:
            rss = [peaks[n] / MB for n in names]
            down = [facts[n]["down"] / MIB for n in names]
            result[role] = {"n": len(names), "rss_max_mb": round(max(rss), 1),
                            "rss_median_mb": round(statistics.median(rss), 1),
                            "down_median_mib": round(statistics.median(down), 1),
                            "down_max_mib": round(max(down), 1),
                            "mb_per_mib": _slope(down, rss)}
    others = {n: round(v / MB, 1) for n, v in peaks.items() if n in PEER_SKIP}
    result["others_rss_mb"] = others
    if invoked is not None and facts and meta.get("run_start_monotonic"):
        last_start = max(f["start_t"] for f in facts.values())
        result["all_started_after_invoke_s"] = round(
            meta["run_start_monotonic"] - invoked + last_start, 2)
    result["load_average"] = os.getloadavg()
    return result


def _slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares MB of RSS per MiB downloaded (None when x does not vary)."""
    if len(x) < 2 or max(x) - min(x) < 1:
        return None
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    return round(sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx, 3)


def regen(leechers: int, cache: int | None) -> dict:
    """Run the in-process synthetic swarm; the regeneration figures (see the module doc)."""
    import random
    from functools import partial

    import trio

    from peer.config import (
        PeerConfig,
        ProtocolSettings,
        RateLimit,
        StorageSpec,
        default_cache_pieces,
    )
    from peer.content import synthetic_piece
    from peer.eventlog import EventLog, RunClock
    from peer.metainfo import make_synthetic_torrent
    from peer.node import Node
    from peer.storage import SyntheticStorage
    from tracker.server import serve_tracker
    from tracker.swarm import Swarm

    size, piece = 8 * MIB, 256 * 1024
    work = Path(tempfile.mkdtemp(prefix="bench-regen-"))
    content, torrent, _ = make_synthetic_torrent(work, size=size, seed=1, piece_length=piece,
                                                 announce="http://127.0.0.1:1/announce")
    content.unlink()
    spec = StorageSpec(kind="synthetic", content_seed=1, cache_pieces=cache)
    settings = ProtocolSettings(unchoke_when_free=True)

    def node(index: int, role: str, rate: int, url: str) -> Node:
        config = PeerConfig(name=f"p{index}", peer_id=f"-TB0100-{index:012d}",
                            torrent=str(torrent), role=role, log="-", tracker=url, seed=index,
                            upload=RateLimit(rate=rate), protocol=settings, storage=spec)
        clock = RunClock()
        return Node(config, clock=clock, log=EventLog(None, clock))

    at_start: dict[str, int] = {}

    async def swarm() -> list[Node]:
        async with trio.open_nursery() as outer:
            port = await outer.start(partial(
                serve_tracker, swarm=Swarm(None, rng=random.Random(0)),
                log=EventLog(None, RunClock()), flush_period=0.5))
            url = f"http://127.0.0.1:{port}/announce"
            nodes = [node(0, "seed", MIB, url)]
            nodes += [node(i, "leecher", 512 * 1024, url) for i in range(1, leechers + 1)]
            async with trio.open_nursery() as peers:
                for n in nodes:
                    await peers.start(n.run)
                # Before any block is sent: what the start-up check regenerated.
                for n in nodes:
                    storage = n.pieces.storage
                    assert isinstance(storage, SyntheticStorage)
                    at_start[n.config.name] = storage.regenerated
                for n in nodes[1:]:
                    await n.completed.wait()
                peers.cancel_scope.cancel()
            outer.cancel_scope.cancel()
        return nodes

    cpu0 = time.process_time()
    nodes = trio.run(swarm)
    cpu = time.process_time() - cpu0
    t0 = time.process_time()
    for i in range(64):
        synthetic_piece(1, i, piece, 64 * piece)
    shake = (time.process_time() - t0) / 64
    cached = default_cache_pieces(piece) if cache is None else cache
    result: dict = {"cache_pieces": cached, "shake_ms_per_piece": round(shake * 1e3, 3),
                    "cpu_s_per_mib_delivered": round(cpu / (leechers * size / MIB), 4)}
    for role, group in (("seed", nodes[:1]), ("leecher", nodes[1:])):
        sent = sum(n.session.uploaded for n in group) / piece
        regenerated = 0
        for n in group:
            storage = n.pieces.storage
            assert isinstance(storage, SyntheticStorage)
            regenerated += storage.regenerated - at_start[n.config.name]
        per_piece = regenerated / sent if sent else float("nan")
        result[role] = {"pieces_sent": round(sent, 1), "regenerated": regenerated,
                        "regenerated_per_piece_sent": round(per_piece, 3),
                        "shake_s_per_mib_sent": round(per_piece * shake * MIB / piece, 5)}
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment",
                    choices=("memory", "full", "crowd", "thousand", "regen", "report"))
    ap.add_argument("run_dir", nargs="?", type=Path, help="for report: a finished run")
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose testbed runs")
    ap.add_argument("--keep", type=Path, help="directory for the runs (default: a temp dir)")
    ap.add_argument("--peers", type=int, default=300, help="crowd: peers in all")
    ap.add_argument("--seconds", type=float, default=120.0, help="memory: run length")
    ap.add_argument("--leechers", type=int, default=12, help="regen: leechers")
    ap.add_argument("--cache", type=int, default=None,
                    help="regen: cache_pieces (default: 4 MiB worth, peer.config.CACHE_BYTES)")
    ap.add_argument("--size", default="2MiB", help="crowd, thousand: content size")
    ap.add_argument("--piece", default="32KiB", help="crowd, thousand: piece size")
    ap.add_argument("--dial-rate", type=float, default=None,
                    help="crowd, thousand: the protocol's dial_rate (dials a second per peer)")
    args = ap.parse_args(argv)
    if args.experiment == "regen":
        print(json.dumps(regen(args.leechers, args.cache), indent=1))
        return 0
    if args.experiment == "report":
        if args.run_dir is None:
            ap.error("report needs RUN_DIR")
        print(json.dumps(report(args.run_dir), indent=1))
        return 0
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-memory-"))
    if args.experiment == "memory":
        text = topology("memory", leechers=99, size="1GiB", piece="256KiB",
                        seed_upload="1MiB/s", upload="64KiB/s", time_limit=args.seconds,
                        all_complete=False)
    elif args.experiment == "full":
        text = topology("full", leechers=2, size="1GiB", piece="256KiB", seed_upload="8MiB/s",
                        upload="8MiB/s", time_limit=900, all_complete=True)
    else:
        peers = 1000 if args.experiment == "thousand" else args.peers
        text = topology(f"crowd{peers}", leechers=peers - 1, size=args.size, piece=args.piece,
                        seed_upload="256KiB/s", upload="64KiB/s", time_limit=900,
                        all_complete=True, dial_rate=args.dial_rate)
    out = work / args.experiment
    invoked = run(args.tree.resolve(), text, out)
    print(json.dumps(report(out, invoked), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
