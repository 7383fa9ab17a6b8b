"""Benchmark: load and analyse a synthetic 100-peer run of about a million events.

    .venv/bin/python bench/bench_analysis.py [--peers 100] [--neighbours 20] [--duration 6500]
                                             [--pieces 2000] [--repeat 3] [--keep DIR]

The synthetic run has the event mix a real one has (docs/log-schema.md, as peer/session.py writes
it): one ``counters`` line per peer per second naming the neighbours whose counts changed since
the previous line (five of its twenty, each second), a ``rechoke`` every 10 s (plus as many
interest-triggered ones) listing every connected neighbour, one ``piece`` line per verified
piece, connections and announces. Leechers of three capacity groups complete at different
times and stay as seeds. Prints the event count, the log size, and the median of ``--repeat``
timings of ``load_run`` and of every metric.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from analysis import load_run, metrics
from peer.config import RateLimit
from testbed.experiment import ContentSpec, Experiment, PeerPlan, peer_id_for

GROUPS = (("slow", 20_000), ("medium", 50_000), ("fast", 200_000))
BLOCK = 16 * 1024


def generate(root: Path, *, peers: int, neighbours: int, duration: float, pieces: int,
             seed: int = 1) -> int:
    """Write a synthetic run directory; returns the number of events written."""
    rng = random.Random(seed)
    plans = [PeerPlan(name="seed", group="seed", index=0, role="seed", peer_id=peer_id_for(0),
                      seed=0, arrival=0.0, upload=RateLimit(rate=400_000))]
    for i in range(1, peers):
        group, up = GROUPS[(i - 1) % len(GROUPS)]
        plans.append(PeerPlan(name=f"p{i:03d}", group=group, index=i, role="leecher",
                              peer_id=peer_id_for(i), seed=i, arrival=0.0,
                              upload=RateLimit(rate=up)))
    exp = Experiment(name="bench", seed=seed,
                     content=ContentSpec(size=pieces * BLOCK, piece_length=BLOCK),
                     peers=tuple(plans))
    root.mkdir(parents=True)
    (root / "experiment.json").write_text(json.dumps(exp.to_json()))
    (root / "peers").mkdir()
    ids = [p.peer_id for p in plans]
    events = 0
    finish = {"slow": 0.7, "medium": 0.45, "fast": 0.25}
    for me, plan in enumerate(plans):
        out: list[str] = []
        ev = out.append
        others = [j for j in range(peers) if j != me]
        nbrs = rng.sample(others, min(neighbours, len(others)))
        connect_t = sorted(rng.uniform(0.1, 30.0) for _ in nbrs)
        have = "list(range(0))" if plan.role == "leecher" else None
        start = {"t": 0.0, "ev": "start", "schema": 1, "name": plan.name, "group": plan.group,
                 "peer_id": plan.peer_id, "role": plan.role, "pid": 1000 + me,
                 "info_hash": "00" * 20, "length": pieces * BLOCK, "piece_length": BLOCK,
                 "pieces": pieces, "listen": f"127.0.0.1:{7000 + me}",
                 "upload": {"rate": plan.upload.rate, "burst": None},
                 "download": {"rate": None, "burst": None},
                 "choker": {"name": "tit_for_tat", "params": {}},
                 "picker": {"name": "rarest_first", "params": {}}, "protocol": {}, "seed": me,
                 "have": pieces if have is None else []}
        ev(json.dumps(start, separators=(",", ":")))
        done_t = None if plan.role == "seed" else duration * finish[plan.group] * \
            rng.uniform(0.9, 1.1)
        timeline: list[tuple[float, str]] = []
        for j, t in zip(nbrs, connect_t, strict=True):
            timeline.append((t, f'{{"t":{t:.4f},"ev":"conn_open","peer":"{ids[j]}",'
                                f'"addr":"127.0.0.1:{7000 + j}","dir":"out"}}'))
        if done_t is not None:
            order = rng.sample(range(pieces), pieces)
            for k, idx in enumerate(order):
                t = 1.0 + (done_t - 1.0) * (k + 1) / pieces
                frm = ids[rng.choice(nbrs)]
                timeline.append((t, f'{{"t":{t:.4f},"ev":"piece","index":{idx},"from":["{frm}"],'
                                    f'"size":{BLOCK},"start":{t - 0.8:.4f},"ok":true,'
                                    f'"blame":[]}}'))
            timeline.append((done_t, f'{{"t":{done_t:.4f},"ev":"complete",'
                                      f'"downloaded":{pieces * BLOCK},"elapsed":{done_t:.4f}}}'))
        for k in range(int(duration / 30)):
            t = 30.0 * k + 0.05
            timeline.append((t, f'{{"t":{t:.4f},"ev":"announce","event":"","ok":true,'
                                f'"peers":50,"interval":30,"complete":1,"incomplete":99,'
                                f'"error":null}}'))
        rnd = 0
        t = 10.0
        while t < duration:
            for tt in (t, t + rng.uniform(0.5, 9.5)):
                connected = [j for j, ct in zip(nbrs, connect_t, strict=True) if ct < tt]
                unchoked = set(rng.sample(connected, min(5, len(connected))))
                parts = []
                for n, j in enumerate(connected):
                    dec = ("optimistic" if n == 0 else "regular") if j in unchoked else "choke"
                    parts.append(f'{{"peer":"{ids[j]}","down_rate":{rng.uniform(0, 9e4):.1f},'
                                 f'"up_rate":{rng.uniform(0, 9e4):.1f},"interested":true,'
                                 f'"choking_us":false,"snubbed":false,"decision":"{dec}",'
                                 f'"reason":"rank {n}","rate":null}}')
                trig = "timer" if tt == t else "interest"
                seed_state = "true" if done_t is None or tt > done_t else "false"
                timeline.append((tt, f'{{"t":{tt:.4f},"ev":"rechoke","round":{rnd},'
                                     f'"trigger":"{trig}","seed":{seed_state},'
                                     f'"optimistic_rotated":false,"nbrs":[{",".join(parts)}]}}'))
                rnd += 1
            t += 10.0
        cum = {j: [0, 0] for j in nbrs}
        up = down = 0
        for sec in range(1, int(duration)):
            connected = [j for j, ct in zip(nbrs, connect_t, strict=True) if ct < sec]
            if not connected:
                continue
            moved = set(rng.sample(connected, min(5, len(connected))))
            for j in moved:
                if rng.random() < 0.5:
                    cum[j][0] += BLOCK
                    up += BLOCK
                else:
                    cum[j][1] += BLOCK
                    down += BLOCK
            # Only the neighbours whose counts moved since the previous line (peer/session.py).
            n = ",".join(f'"{ids[j]}":[{cum[j][0]},{cum[j][1]}]' for j in sorted(moved))
            timeline.append((float(sec), f'{{"t":{sec:.4f},"ev":"counters","up":{up},'
                                         f'"down":{down},"n":{{{n}}}}}'))
        timeline.sort(key=lambda x: x[0])
        out.extend(line for _, line in timeline)
        ev(f'{{"t":{duration:.4f},"ev":"stop","reason":"signal","up":{up},"down":{down}}}')
        events += len(out)
        (root / "peers" / f"{plan.name}.jsonl").write_text("\n".join(out) + "\n")
    with (root / "resources.jsonl").open("w") as f:
        for sec in range(int(duration)):
            procs = {p.name: {"pid": 1000 + i, "cpu": 1.0, "rss": 30_000_000}
                     for i, p in enumerate(plans)}
            f.write(json.dumps({"t": float(sec), "host_cpu": 50.0, "cpus": 2,
                                "procs": procs}) + "\n")
    return events


def _cpu() -> float:
    """CPU seconds of this process and its finished children (load_run forks one)."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def analyse(root: Path) -> dict[str, float]:
    timings = {}
    cpu0 = _cpu()
    t0 = time.perf_counter()
    run = load_run(root)
    timings["load_run"] = time.perf_counter() - t0
    steps = {
        "completion": lambda: (metrics.completion_by_group(run), metrics.completion_cdf(run),
                               metrics.makespan(run)),
        "bounds": lambda: metrics.efficiency(run),
        "fairness": lambda: (metrics.fairness(run), metrics.share_by_group(run)),
        "clustering": lambda: metrics.clustering(run),
        "reciprocation": lambda: metrics.reciprocation(run),
        "optimistic": lambda: metrics.optimistic_share(run),
        "availability": lambda: metrics.availability(run),
        "population+progress": lambda: (metrics.population(run), metrics.progress(run)),
        "utilisation": lambda: (metrics.utilisation_by_group(run),
                                metrics.utilisation_over_time(run)),
    }
    for name, step in steps.items():
        t = time.perf_counter()
        step()
        timings[name] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    timings["cpu"] = _cpu() - cpu0
    timings["load"] = os.getloadavg()[0]
    timings["rows"] = float(len(run.transfers) + len(run.chokes) + len(run.pieces))
    return timings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=int, default=100)
    ap.add_argument("--neighbours", type=int, default=20)
    ap.add_argument("--duration", type=float, default=6500.0)
    ap.add_argument("--pieces", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the synthetic run here and keep it")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep if args.keep else Path(tmp) / "run"
        t = time.perf_counter()
        events = generate(root, peers=args.peers, neighbours=args.neighbours,
                          duration=args.duration, pieces=args.pieces)
        size = sum(p.stat().st_size for p in (root / "peers").glob("*.jsonl"))
        print(f"synthetic run: {args.peers} peers, {events} events, {size / 1e6:.0f} MB of "
              f"peer logs (generated in {time.perf_counter() - t:.1f} s)")
        runs = [analyse(root) for _ in range(args.repeat)]
    for key in runs[0]:
        values = [r[key] for r in runs]
        if key == "rows":
            print(f"  table rows (transfers+chokes+pieces): {int(values[0])}")
            continue
        if key == "load":
            print(f"  host load average (1 min) after each: "
                  f"{', '.join(f'{v:.1f}' for v in values)} on {os.cpu_count()} cores")
            continue
        if key == "cpu":
            print(f"  CPU time (all processes) median {statistics.median(values):6.2f} s   "
                  f"({', '.join(f'{v:.2f}' for v in values)})")
            continue
        print(f"  {key:<22} median {statistics.median(values):6.2f} s   "
              f"({', '.join(f'{v:.2f}' for v in values)})")
    total = statistics.median(r["total"] for r in runs)
    print(f"load_run + all metrics: median of {args.repeat} = {total:.2f} s "
          f"({'under' if total < 10 else 'OVER'} the 10 s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
