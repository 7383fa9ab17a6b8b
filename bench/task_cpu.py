"""Where the peers' CPU goes, by what woke them: runs of a topology with peer/taskcpu.py on.

    .venv/bin/python -m bench.task_cpu [--topology topologies/flash_crowd.yaml] [--runs 2]
        [--tree DIR ...] [--top 20] [--peers PREFIX]

Each run sets ``BT_TESTBED_TASK_CPU``, so every peer writes its thread CPU by task step (the
innermost coroutine of the peer's code that the step resumed in), trio's scheduler between
steps, and the wake-ups from ``epoll_wait``. Summed over the peers whose names start with
``--peers`` (default ``l``: the flash crowd's leechers), per run, then the median over runs.
With several ``--tree`` (checkouts of other commits), their runs alternate, run by run, so
versions are compared in one sitting on the same host; the table gives each one's medians.

The figures are CPU time (not samples), so nothing is counted for a process that waits for a
core: the machine's other load moves them less than it moves a run's wall-clock time. A
peer's total CPU (``process_cpu``) is printed beside the sum of the steps (the instrument's own
cost, a few microseconds a step, is in both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOTAL = "(process total)"


def one_run(tree: Path, topology: Path, seed: int, work: Path) -> Path:
    """Run the topology with the instrument on; the directory of the peers' JSON files."""
    out, cpu_dir = work / "run", work / "task_cpu"
    cpu_dir.mkdir(parents=True)
    env = {**os.environ, "BT_TESTBED_TASK_CPU": str(cpu_dir)}
    subprocess.run([sys.executable, "-m", "testbed.cli", "run", str(topology), "--seed",
                    str(seed), "--out", str(out), "--quiet", "--no-analyze"],
                   cwd=tree, env=env, stdout=subprocess.DEVNULL, check=True)
    return cpu_dir


def summed(cpu_dir: Path, prefix: str) -> dict[str, tuple[float, int]]:
    """Seconds and steps by activity, summed over the peers named ``prefix...``."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for path in sorted(cpu_dir.glob(f"{prefix}*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        totals[TOTAL][0] += data["process_cpu"]
        for where, (seconds, steps) in data["by_step"].items():
            totals[where][0] += seconds
            totals[where][1] += steps
    return {k: (v[0], int(v[1])) for k, v in totals.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topology", type=Path, default=Path("topologies/flash_crowd.yaml"))
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--tree", type=Path, action="append", default=[])
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--peers", default="l", help="peer name prefix (default: l)")
    args = ap.parse_args(argv)
    trees = [t.resolve() for t in args.tree] or [ROOT]
    for tree in trees:
        if not (tree / "peer" / "taskcpu.py").is_file():
            raise SystemExit(f"bench.task_cpu: --tree {tree}: no peer/taskcpu.py there")
    runs: dict[Path, list[dict[str, tuple[float, int]]]] = {t: [] for t in trees}
    with tempfile.TemporaryDirectory(prefix="task-cpu-") as tmp:
        for run in range(1, args.runs + 1):
            for i, tree in enumerate(trees):
                topology = args.topology if args.topology.is_absolute() else \
                    tree / args.topology
                cpu_dir = one_run(tree, topology, run, Path(tmp) / f"{run}-{i}")
                result = summed(cpu_dir, args.peers)
                runs[tree].append(result)
                print(f"run {run} {tree.name}: {result[TOTAL][0]:.2f} s of CPU over "
                      f"{len(list(cpu_dir.glob(f'{args.peers}*.json')))} peers", flush=True)
    medians = {tree: {k: (statistics.median(r.get(k, (0.0, 0))[0] for r in rs),
                          statistics.median(r.get(k, (0.0, 0))[1] for r in rs))
                      for k in set().union(*rs)} for tree, rs in runs.items()}
    everything = set().union(*medians.values())
    keys = sorted(everything, key=lambda k: -max(m.get(k, (0.0, 0))[0]
                                                for m in medians.values()))[:args.top + 1]
    header = "".join(f" | {t.name[:22]:>22} s  steps   us/step" for t in trees)
    print(f"{'median over ' + str(args.runs) + ' runs':<48}{header}")
    for key in keys:
        row = ""
        for tree in trees:
            seconds, steps = medians[tree].get(key, (0.0, 0))
            per = f"{1e6 * seconds / steps:9.1f}" if steps else " " * 9
            row += f" | {seconds:24.2f} {steps:6.0f} {per}"
        print(f"{key[:48]:<48}{row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
