"""How far the testbed scales on this machine (issue 3's scale figures).

Three experiments, each a flash crowd run through ``testbed run`` with generated topologies:

1. throughput: 1 seed + 20 leechers, every upload capped at C, for rising C; prints the
   swarm's aggregate payload rate, the host CPU and whether the run was flagged saturated. The
   last unsaturated rate is the testbed's throughput ceiling here (target >= 30 MiB/s).
2. size: flash crowds of N peers uploading at 64 KiB/s for rising N; the largest N whose run is
   not flagged CPU-saturated (target >= 200).
3. efficiency: makespan / D_p2p for N = 10, 20, 40, 80, 160 at 64 KiB/s uploads.

    .venv/bin/python -m bench.bench_scale [throughput|size|efficiency ...] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.swarm_util import read_events


def flash_crowd(name: str, leechers: int, upload: str, seed_upload: str, size: str,
                time_limit: float, piece_size: str = "256KiB") -> str:
    return f"""\
name: {name}
seed: 1
content: {{size: {size}, piece_size: {piece_size}}}
protocol: {{unchoke_when_free: true}}
groups:
  - {{name: seed, role: seed, upload: {seed_upload}}}
  - {{name: leecher, count: {leechers}, upload: {upload}}}
end: {{all_complete: true, time_limit: {time_limit}}}
"""


def run(yaml_text: str, keep: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    (work / "t.yaml").write_text(yaml_text)
    out = work / "run"
    subprocess.run([sys.executable, "-m", "testbed.cli", "run", str(work / "t.yaml"),
                    "--out", str(out), "--no-analyze", "--quiet"], check=False,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    down = 0
    for log in (out / "peers").glob("leecher-*.jsonl"):
        counters = [e for e in read_events(log) if e["ev"] == "counters"]
        if counters:
            down += counters[-1]["down"]
    duration = summary.get("makespan") or summary.get("duration") or 1.0
    result = {"status": summary["status"], "makespan": summary.get("makespan"),
              "ratio": summary.get("makespan_over_d_p2p"),
              "d_p2p": summary.get("bounds", {}).get("d_p2p"),
              "rate_mib": down / duration / 2**20,
              "host_cpu": summary.get("cpu", {}).get("host_mean"),
              "saturated": summary.get("cpu", {}).get("saturated"), "dir": str(work)}
    if not keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return result


def throughput(keep: bool) -> None:
    print("throughput: 1 seed + 20 leechers, every upload capped at C")
    print(f"{'C':>10} {'swarm MiB/s':>12} {'host CPU %':>10} {'saturated':>9} "
          f"{'makespan/D_p2p':>15}")
    for cap_mib in (0.5, 1, 1.5, 2, 3):
        r = run(flash_crowd(f"tp{cap_mib}", 20, f"{cap_mib}MiB/s", f"{cap_mib}MiB/s",
                            f"{max(8, int(cap_mib * 16))}MiB", 300), keep)
        print(f"{cap_mib:>7} MiB/s {r['rate_mib']:12.1f} {r['host_cpu'] or 0:10.0f} "
              f"{r['saturated']!s:>9} {r['ratio'] or float('nan'):15.2f}", flush=True)


def size(keep: bool) -> None:
    print("size: flash crowds at 64 KiB/s uploads (seed 256 KiB/s), 2 MiB in 32 KiB pieces")
    print(f"{'N':>5} {'status':>10} {'host CPU %':>10} {'saturated':>9} {'makespan/D_p2p':>15}")
    for n in (50, 100, 150, 200, 250):
        r = run(flash_crowd(f"size{n}", n, "64KiB/s", "256KiB/s", "2MiB", 400, "32KiB"), keep)
        print(f"{n:>5} {r['status']:>10} {r['host_cpu'] or 0:10.0f} {r['saturated']!s:>9} "
              f"{r['ratio'] or float('nan'):15.2f}", flush=True)


def efficiency(keep: bool) -> None:
    print("efficiency: makespan / D_p2p as N grows (64 KiB/s uploads, seed 256 KiB/s, 2 MiB in "
          "32 KiB pieces: at these rates a 256 KiB piece takes 4 s a hop)")
    print(f"{'N':>5} {'makespan':>9} {'D_p2p':>7} {'ratio':>6} {'saturated':>9}")
    for n in (10, 20, 40, 80, 160):
        r = run(flash_crowd(f"eff{n}", n, "64KiB/s", "256KiB/s", "2MiB", 400, "32KiB"), keep)
        print(f"{n:>5} {r['makespan'] or float('nan'):9.1f} {r['d_p2p'] or float('nan'):7.1f} "
              f"{r['ratio'] or float('nan'):6.2f} {r['saturated']!s:>9}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("experiments", nargs="*", default=["throughput", "size", "efficiency"])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    for name in args.experiments:
        {"throughput": throughput, "size": size, "efficiency": efficiency}[name](args.keep)


if __name__ == "__main__":
    main()
