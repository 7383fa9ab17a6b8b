"""The flash crowd, measured: makespan / D_p2p and CPU seconds per MiB delivered, per seed.

    .venv/bin/python bench/flash_crowd.py                        # seeds 1-3, this tree
    .venv/bin/python bench/flash_crowd.py --tree /tmp/old-tree   # the same with another checkout
    .venv/bin/python bench/flash_crowd.py --runs DIR --analyze-only

Runs ``topologies/flash_crowd.yaml`` one after the other (one at a time: a 41-peer swarm at
512 KiB/s uses most of a core) with the ``testbed`` of ``--tree`` (default: this checkout), so
two versions of the code can be compared on the same host in one sitting: ``git worktree add
/tmp/old-tree <commit>`` gives the other one. CPU per MiB: the CPU time of every peer process
(resources.jsonl samples, each covering the second before it) over the MiB the leechers
downloaded. Medians are printed with the per-seed values and each run's saturation flag.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def peer_cpu_seconds(run_dir: Path) -> float:
    """Σ over samples and peer processes of cpu% / 100 x the sample's interval."""
    total, previous = 0.0, 0.0
    with open(run_dir / "resources.jsonl", encoding="utf-8") as f:
        for line in f:
            sample = json.loads(line)
            span = max(0.0, sample["t"] - previous)
            previous = sample["t"]
            for name, proc in sample["procs"].items():
                if name not in ("orchestrator", "forkserver", "tracker") and proc["cpu"]:
                    total += proc["cpu"] / 100.0 * span
    return total


def measure(run_dir: Path) -> dict[str, float | bool]:
    """One run's makespan, makespan / D_p2p, peer CPU per MiB delivered and saturation flag.
    Delivered: the content size for every leecher that completed (as flash_crowd's do)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    experiment = json.loads((run_dir / "experiment.json").read_text())
    delivered = int(summary.get("completed") or 0) * experiment["content"]["size"]
    return {"makespan": summary.get("makespan") or float("nan"),
            "ratio": summary.get("makespan_over_d_p2p") or float("nan"),
            "cpu_per_mib": peer_cpu_seconds(run_dir) / (delivered / MIB) if delivered
            else float("nan"),
            "saturated": bool((summary.get("cpu") or {}).get("saturated"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose testbed runs")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "flash-crowd")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--analyze-only", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for seed in args.seeds:
        out = args.runs.resolve() / f"s{seed}"
        if not args.analyze_only and not (out / "summary.json").exists():
            subprocess.run([sys.executable, "-m", "testbed.cli", "run",
                            str(args.tree / "topologies" / "flash_crowd.yaml"), "--seed",
                            str(seed), "--out", str(out), "--quiet", "--no-analyze"],
                           cwd=args.tree, check=False)
        rows.append((seed, measure(out)))
    for seed, m in rows:
        print(f"seed {seed}: makespan {m['makespan']:.1f} s, makespan / D_p2p {m['ratio']:.2f}, "
              f"CPU {m['cpu_per_mib']:.4f} s per MiB"
              f"{' (host CPU saturated)' if m['saturated'] else ''}")
    ratios = [float(m["ratio"]) for _, m in rows]
    cpu = [float(m["cpu_per_mib"]) for _, m in rows]
    print(f"median makespan / D_p2p {statistics.median(ratios):.2f}, "
          f"median CPU {statistics.median(cpu):.4f} s per MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
