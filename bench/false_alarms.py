"""False-alarm rate of ``testbed compare`` / ``testbed check`` over identical runs.

Runs the same topology N times as results sets of K repetitions (same code, same seeds: only the
machine's noise differs), then
- compares every ordered pair of sets (``testbed compare A B`` for A != B): each is a
  comparison of identical code, so every exit 1 is a false alarm;
- checks every set against the expectations file (``testbed check``), if one is given.

    .venv/bin/python bench/false_alarms.py                       # 10 sets x 3 of ci_small
    .venv/bin/python bench/false_alarms.py --sets 6 --load 2     # with 2 busy-looping processes
    .venv/bin/python bench/false_alarms.py --reuse bench/results/false_alarms-*/set-*

Results (the sets and a JSON summary) go to bench/results/false_alarms-<stamp>/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed import regress  # noqa: E402  (after the path fix, for a plain `python bench/...`)


def make_sets(args: argparse.Namespace, out: Path) -> list[Path]:
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(args.load):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        paths = []
        for i in range(args.sets):
            path = out / f"set-{i}"
            cmd = [sys.executable, "-m", "testbed.cli", "run", str(args.topology), "--repeat",
                   str(args.repeat), "--quiet", "--out", str(path)]
            if args.vary_seeds:
                cmd += ["--seed", str(1 + i * args.repeat)]
            t0 = time.monotonic()
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            print(f"set {i}: exit {done.returncode} in {time.monotonic() - t0:.0f} s",
                  flush=True)
            if not (path / regress.RESULTS_FILE).exists():
                print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"set {i} wrote no results.json")
            paths.append(path)
        return paths
    finally:
        for hog in hogs:  # only the processes started here, by their own handles
            hog.kill()
            hog.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", type=Path, default=ROOT / "topologies/ci_small.yaml")
    parser.add_argument("--expect", type=Path, default=ROOT / "topologies/ci_small.expect.yml",
                        help="expectations file for the check part ('' to skip)")
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=regress.DEFAULT_ALPHA)
    parser.add_argument("--load", type=int, default=0,
                        help="busy-looping processes to run alongside (a loaded machine)")
    parser.add_argument("--vary-seeds", action="store_true",
                        help="give each set its own seeds instead of the topology's")
    parser.add_argument("--reuse", type=Path, nargs="+", metavar="SET",
                        help="existing results sets: skip the runs")
    args = parser.parse_args()

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results" / f"false_alarms-{stamp}"
    out.mkdir(parents=True)
    paths = list(args.reuse) if args.reuse else make_sets(args, out)
    sets = [regress.load_results(p) for p in paths]

    flagged: Counter[str] = Counter()
    significant: Counter[str] = Counter()  # p <= alpha, whatever the tolerance says
    alarms = 0
    test_alarms = 0
    pairs = list(itertools.permutations(range(len(sets)), 2))
    for a, b in pairs:
        result = regress.compare(sets[a], sets[b], alpha=args.alpha)
        alarms += result.regression
        flagged.update(r.metric for r in result.rows if r.regression)
        hits = [r.metric for r in result.rows if r.verdict in ("worse", "within tolerance")]
        significant.update(hits)
        test_alarms += bool(hits)
    check_fail: Counter[str] = Counter()
    checks = 0
    if str(args.expect):
        expect = regress.load_expectations(args.expect)
        for rs in sets:
            result = regress.check(rs, expect)
            checks += result.regression
            check_fail.update(r.metric for r in result.rows if r.regression)
    saturated = sum(rs.saturated for rs in sets)
    runs = sum(len(rs.repetitions) for rs in sets)
    summary = {
        "topology": str(args.topology), "sets": [str(p) for p in paths],
        "repeat": args.repeat, "load": args.load, "alpha": args.alpha,
        "compare": {"pairs": len(pairs), "false_alarms": alarms,
                    "rate": alarms / len(pairs) if pairs else None,
                    "by_metric": dict(flagged),
                    "rank_test_alone": {"false_alarms": test_alarms,
                                        "by_metric": dict(significant)}},
        "check": {"sets": len(sets), "failed": checks,
                  "rate": checks / len(sets) if sets else None, "by_metric": dict(check_fail)},
        "saturated_runs": saturated, "runs": runs,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(sets)} results sets of {args.repeat} identical runs ({saturated}/{runs} runs "
          f"with the host CPU saturated, {args.load} busy loops alongside)")
    print(f"compare, every ordered pair: {alarms}/{len(pairs)} false alarms"
          + (f" ({alarms / len(pairs):.1%}); by metric: {dict(flagged) or 'none'}"
             if pairs else ""))
    print(f"  the rank test alone (no tolerance) would flag {test_alarms}/{len(pairs)}; "
          f"by metric: {dict(significant) or 'none'}")
    if str(args.expect):
        print(f"check against {args.expect.name}: {checks}/{len(sets)} sets failed"
              + (f"; by metric: {dict(check_fail)}" if check_fail else ""))
    for rs in sets:
        print(f"  {rs.path.name}: " + ", ".join(
            f"{m} {statistics.median(v):.3g}" for m in
            ("median_completion", "makespan", "efficiency", "share_ratio", "reciprocation",
             "jain_rate") if (v := rs.values(m))))
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
