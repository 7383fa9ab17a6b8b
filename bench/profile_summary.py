"""Where a peer's CPU goes: the top functions of cProfile dumps or py-spy raw recordings.

    BT_TESTBED_PROFILE=/tmp/prof .venv/bin/testbed run topologies/flash_crowd.yaml
    .venv/bin/python -m bench.profile_summary /tmp/prof/leecher-*.prof [--top 25]
    py-spy record --pid PID --nonblocking --format raw -o leecher.txt
    .venv/bin/python -m bench.profile_summary leecher.txt [--inclusive]

cProfile dumps (``*.prof``, one per peer: ``BT_TESTBED_PROFILE``, see peer/__main__.py) are
merged and ranked by own time (``tottime``), each with its share of the total. py-spy's raw
format (collapsed stacks, one ``frame;frame;... count`` line per stack) is ranked by own samples
(the stack's last frame), or with ``--inclusive`` by samples in which the function appears at
all. cProfile's per-call overhead inflates functions called very often; py-spy samples without
it, so the two together say what is expensive and how often it is called.
"""

from __future__ import annotations

import argparse
import pstats
import sys
from collections import Counter
from pathlib import Path


def cprofile_rows(paths: list[Path]) -> tuple[float, list[tuple[str, int, float, float]]]:
    """Total own time, and (function, calls, own seconds, cumulative seconds) by own time."""
    stats = pstats.Stats(*[str(p) for p in paths])
    rows = []
    total = 0.0
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in \
            stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        rows.append((f"{_short(filename)}:{line}({name})", calls, tottime, cumtime))
    rows.sort(key=lambda r: r[2], reverse=True)
    return total, rows


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    parts = Path(filename).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else filename


def pyspy_counts(path: Path, inclusive: bool) -> tuple[int, Counter[str]]:
    """Total samples, and samples per function (own, or anywhere in the stack)."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        total += int(n)
        if inclusive:
            for f in set(frames):
                counts[f] += int(n)
        else:
            counts[frames[-1]] += int(n)
    return total, counts


def _frame(frame: str) -> str:
    """py-spy's ``function (path/file.py:line)`` without the line (one entry per function)."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0] if where else ""
    return f"{name} ({_short(file)})" if file else name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--inclusive", action="store_true", help="py-spy: count the whole stack")
    args = ap.parse_args(argv)
    profs = [p for p in args.files if p.suffix == ".prof"]
    spies = [p for p in args.files if p.suffix != ".prof"]
    if profs:
        total, rows = cprofile_rows(profs)
        print(f"cProfile, {len(profs)} dump(s): {total:.2f} s of own time")
        print(f"{'share':>6} {'own s':>8} {'cum s':>8} {'calls':>10}  function")
        for name, calls, own, cum in rows[:args.top]:
            print(f"{100 * own / total:5.1f}% {own:8.2f} {cum:8.2f} {calls:10d}  {name}")
    for path in spies:
        total, counts = pyspy_counts(path, args.inclusive)
        print(f"py-spy {path.name}: {total} samples ({'inclusive' if args.inclusive else 'own'})")
        for name, n in counts.most_common(args.top):
            print(f"{100 * n / total:5.1f}% {n:8d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
