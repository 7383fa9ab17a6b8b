"""Rate fidelity: does a saturated peer upload at exactly its cap?

For each cap and number of connections sharing the upload bucket, one seed capped at the rate
serves that many leechers (download unlimited, every one unchoked at once) through
``testbed run``. From the seed's ``counters`` events we take the achieved upload over every
window of 5 s (below 128 KiB/s: every window of 40 blocks) while the seed is saturated (after a
2 s warm-up, until the first leecher completes), and report the lowest and highest ratio of
achieved to configured rate. Target (issue 2): every window within 0.97-1.03.

    .venv/bin/python -m bench.bench_rate [--caps 32KiB/s,128KiB/s,...] [--conns 1,4,30]
        [--seconds 20] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.swarm_util import read_events
from peer.config import BLOCK_SIZE
from peer.units import format_rate, parse_rate

WARM_UP = 2.0
WINDOW_SECONDS = 5.0
WINDOW_BLOCKS = 40
SMALL_CAP = 128 * 1024


def topology(cap: float, conns: int, seconds: float) -> str:
    size_mib = max(1, math.ceil(cap * seconds * 1.3 / conns / 2**20))
    return f"""\
name: rate_{int(cap)}_{conns}
seed: 1
content: {{size: {size_mib}MiB, piece_size: 256KiB}}
protocol: {{unchoke_when_free: true, regular_slots: {max(conns, 1)}, optimistic_slots: 0}}
groups:
  - {{name: seed, role: seed, upload: {int(cap)}, download: unlimited}}
  - {{name: leecher, count: {conns}, upload: 16KiB/s, download: unlimited}}
end: {{all_complete: true, time_limit: {seconds + 15}}}
"""


def windows(samples: list[tuple[float, int]], cap: float) -> list[float]:
    """Achieved / configured rate over every window that starts at a sample."""
    ratios = []
    for i, (t0, up0) in enumerate(samples):
        for t1, up1 in samples[i + 1:]:
            if cap < SMALL_CAP:
                if up1 - up0 >= WINDOW_BLOCKS * BLOCK_SIZE:
                    ratios.append((up1 - up0) / (t1 - t0) / cap)
                    break
            elif t1 - t0 >= WINDOW_SECONDS:
                ratios.append((up1 - up0) / (t1 - t0) / cap)
                break
    return ratios


def measure(cap: float, conns: int, seconds: float, keep: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-rate-"))
    (work / "t.yaml").write_text(topology(cap, conns, seconds))
    out = work / "run"
    subprocess.run([sys.executable, "-m", "testbed.cli", "run", str(work / "t.yaml"),
                    "--out", str(out), "--no-analyze", "--quiet"], check=False)
    seed_events = read_events(out / "peers" / "seed-0.jsonl")
    first_done = min((e["t"] for p in (out / "peers").glob("leecher-*.jsonl")
                      for e in read_events(p) if e["ev"] == "complete"), default=math.inf)
    start = next(e["t"] for e in seed_events if e["ev"] == "start")
    samples = [(e["t"], e["up"]) for e in seed_events
               if e["ev"] == "counters" and start + WARM_UP <= e["t"] <= first_done]
    ratios = windows(samples, cap)
    summary = json.loads((out / "summary.json").read_text())
    if not keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return {"cap": cap, "conns": conns, "windows": len(ratios),
            "min": min(ratios, default=math.nan), "max": max(ratios, default=math.nan),
            "cpu_saturated": summary.get("cpu", {}).get("saturated"), "dir": str(work)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--caps", default="32KiB/s,128KiB/s,512KiB/s,2MiB/s,8MiB/s")
    parser.add_argument("--conns", default="1,4,30")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    print(f"{'cap':>12} {'conns':>5} {'windows':>7} {'min':>6} {'max':>6}  verdict")
    for cap_text in args.caps.split(","):
        cap = parse_rate(cap_text)
        assert cap is not None
        for conns in (int(c) for c in args.conns.split(",")):
            seconds = args.seconds * (3 if cap < SMALL_CAP else 1)
            r = measure(cap, conns, seconds, args.keep)
            ok = r["min"] >= 0.97 and r["max"] <= 1.03
            note = " (host CPU saturated)" if r["cpu_saturated"] else ""
            print(f"{format_rate(cap):>12} {conns:>5} {r['windows']:>7} {r['min']:6.3f} "
                  f"{r['max']:6.3f}  {'ok' if ok else 'OUT'}{note}", flush=True)


if __name__ == "__main__":
    main()
