"""Start-up of a flash crowd: from ``testbed run`` to every peer announced.

    .venv/bin/python bench/bench_startup.py [--peers 100] [--launcher fork local] [--repeat 1]

For each launcher, runs ``testbed run`` on a generated flash crowd (1 seed and N-1 leechers, all
arriving at t = 0, 16 MiB in 256 KiB pieces, 64 KiB/s uploads), waits until the tracker has
logged N ``started`` announces, then stops the run with SIGTERM. It reports, on the shared
monotonic clock:

- ``to t=0``: from invoking ``testbed run`` to the run's t = 0 (imports, run directory,
  content and torrent, the fork server's preloading);
- ``starts``: from t = 0 until every peer's log has its ``start`` line (listening);
- ``announced``: from t = 0 until the tracker logged the N-th ``started`` announce;
- ``total``: from invoking ``testbed run`` to the N-th announce (the issue's target: <= 5 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TOPOLOGY = """\
# Start-up benchmark: {n} peers arrive at once.
name: startup_{n}
seed: 1
content: {{size: 16MiB, piece_size: 256KiB}}
groups:
  - name: seed
    role: seed
    upload: 1MiB/s
  - name: leecher
    count: {leechers}
    upload: 64KiB/s
end: {{all_complete: true, time_limit: 120}}
"""


def _lines(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            out.append(json.loads(line))
    return out


def measure(n: int, launcher: str, workdir: Path, timeout: float = 60.0) -> dict[str, float]:
    topology = workdir / f"startup_{n}.yaml"
    topology.write_text(TOPOLOGY.format(n=n, leechers=n - 1))
    out = workdir / f"run-{launcher}-{time.monotonic_ns()}"
    invoked = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "run", str(topology), "--out", str(out),
         "--quiet", "--no-analyze", "--launcher", launcher],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = invoked + timeout
        announced_at = None
        starts: list[float] = []
        while time.monotonic() < deadline:
            starts = [e["t"] for e in _lines(out / "tracker.jsonl")
                      if e.get("ev") == "announce" and e.get("event") == "started"]
            if len(starts) >= n:
                announced_at = sorted(starts)[n - 1]
                break
            if proc.poll() is not None:
                raise RuntimeError(f"testbed run exited early: {proc.stderr.read()}")  # type: ignore[union-attr]
            time.sleep(0.1)
        if announced_at is None:
            raise RuntimeError(f"{n} announces not seen within {timeout} s (saw {len(starts)}; "
                               f"{out})")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    run_start = json.loads((out / "meta.json").read_text())["run_start_monotonic"]
    peer_starts = []
    for log in (out / "peers").glob("*.jsonl"):
        first = _lines(log)[:1]
        if first and first[0].get("ev") == "start":
            peer_starts.append(first[0]["t"])
    return {"to_t0": run_start - invoked,
            "starts": max(peer_starts) if len(peer_starts) == n else float("nan"),
            "announced": announced_at,
            "total": run_start - invoked + announced_at}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--launcher", nargs="+", default=["fork", "local"],
                        choices=("fork", "local"))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"{args.peers}-peer flash crowd, {args.repeat} run(s) per launcher; seconds")
    print(f"{'launcher':8}  {'to t=0':>7}  {'starts':>7}  {'announced':>9}  {'total':>7}")
    with tempfile.TemporaryDirectory(prefix="bench_startup-") as tmp:
        for launcher in args.launcher:
            results = [measure(args.peers, launcher, Path(tmp)) for _ in range(args.repeat)]
            for r in results:
                print(f"{launcher:8}  {r['to_t0']:7.2f}  {r['starts']:7.2f}  "
                      f"{r['announced']:9.2f}  {r['total']:7.2f}", flush=True)
            if args.repeat > 1:
                median = statistics.median(r["total"] for r in results)
                print(f"{launcher:8}  median total {median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
