"""Idle cost: N testbed peers connected in one swarm with nothing to transfer (issue 13, item 2).

    .venv/bin/python -m bench.idle_cost [--peers 200] [--settle 30] [--window 60] [--keep DIR]
        [--profile DIR]     # a cProfile dump per peer (BT_TESTBED_PROFILE): CPU is inflated

Runs ``testbed run`` on a generated topology: N leechers of a 16 MiB torrent whose only seed
arrives half a second before the run's end, so the leechers find each other through the
tracker, connect (up to ``max_neighbours`` each) and then hold their connections with nothing
to exchange. This
is the idle state that costs something: seeds close connections to seeds ("both seeds"), so N
seeds would hold no connections at all, while leechers waiting for content keep every
connection, their rechoke timers, keep-alives and announces running. The run lasts
``settle + window`` seconds; the figures are over the last ``window`` seconds:

- CPU of all peer processes together, in % of one core (target < 20 % for 200 peers), from
  resources.jsonl; the tracker's and the orchestrator's separately;
- connections held (from the peers' logs: opened minus closed before the window) and the
  connection events inside the window, by kind: each periodic announce hands a peer new
  addresses, and a peer below its neighbour cap dials them, to be refused by those at theirs;
- memory per peer at the end of the window: RSS (resources.jsonl) and PSS (read here from
  /proc/<pid>/smaps_rollup: forked peers share the pre-imported pages copy-on-write, which RSS
  counts in every peer and PSS divides among them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.swarm_util import read_events

ROOT = Path(__file__).resolve().parent.parent
PEER_SKIP = ("orchestrator", "forkserver", "tracker")


def idle_topology(peers: int, time_limit: float) -> str:
    return f"""\
name: idle_cost
seed: 1
content: {{size: 16MiB, piece_size: 256KiB}}
groups:
  # Arrives half a second before the end (validation refuses an arrival after it): until
  # then nobody has anything to give, and no leecher learns of it before its next announce.
  - {{name: seed, role: seed, upload: 1MiB/s, arrival: {time_limit - 0.5:g}}}
  - {{name: leecher, count: {peers}, upload: 512KiB/s}}
end: {{all_complete: false, time_limit: {time_limit:g}}}
"""


def cpu_in_window(samples: list[dict], start: float, end: float) -> dict[str, float]:
    """Percent of one core over [start, end] for the peers together and for each other
    process (tracker, orchestrator, forkserver). A sample's ``cpu`` covers the span since the
    previous sample; only samples ending inside the window count."""
    busy = {"peers": 0.0}
    previous = None
    covered = 0.0
    for s in samples:
        if previous is not None and start < s["t"] <= end:
            span = s["t"] - previous
            covered += span
            for name, proc in s["procs"].items():
                key = name if name in PEER_SKIP else "peers"
                busy[key] = busy.get(key, 0.0) + (proc["cpu"] or 0.0) / 100.0 * span
        previous = s["t"]
    return {k: 100.0 * v / covered for k, v in busy.items()} if covered else {}


def connections(logs: list[list[dict]], start: float,
                end: float) -> tuple[list[int], Counter[str]]:
    """Connections each peer held at ``start`` (opened minus closed before it), and the
    connection events inside [start, end] by kind (``open``, or the close reason; shutdown
    excluded)."""
    held: list[int] = []
    events: Counter[str] = Counter()
    for log in logs:
        n = 0
        for e in log:
            if e["ev"] not in ("conn_open", "conn_close") or e.get("reason") == "shutdown":
                continue
            if e["t"] < start:
                n += 1 if e["ev"] == "conn_open" else (-1 if e.get("peer") else 0)
            elif e["t"] <= end:
                events["open" if e["ev"] == "conn_open" else e.get("reason") or "?"] += 1
        held.append(n)
    return held, events


def pss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")),
              None)
    return None if kb is None else kb / 1024


def read_samples(run_dir: Path) -> list[dict]:
    path = run_dir / "resources.jsonl"
    if not path.exists():
        return []
    samples = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                samples.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line being written
    return samples


def run(work: Path, peers: int, settle: float, window: float,
        profile: Path | None) -> tuple[Path, list[float]]:
    """Run the swarm; near the end of the window read every peer's PSS. Returns the run
    directory and the PSS values (MB)."""
    time_limit = settle + window
    (work / "idle.yaml").write_text(idle_topology(peers, time_limit))
    out = work / "run"
    env = dict(os.environ)
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        env["BT_TESTBED_PROFILE"] = str(profile.resolve())
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "run", str(work / "idle.yaml"),
                             "--out", str(out), "--quiet", "--no-analyze"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL)
    pss: list[float] = []
    while proc.poll() is None:
        samples = read_samples(out)
        if not pss and samples and samples[-1]["t"] >= time_limit - 3:
            last = samples[-1]["procs"]
            pss = [v for name, p in last.items() if name not in PEER_SKIP
                   if (v := pss_mb(p["pid"])) is not None]
        time.sleep(0.5)
    return out, pss


def report(out: Path, peers: int, window: float, pss: list[float]) -> None:
    summary = json.loads((out / "summary.json").read_text())
    samples = read_samples(out)
    end = max(s["t"] for s in samples)
    start = end - window
    cpu = cpu_in_window(samples, start, end)
    logs = [read_events(p) for p in sorted((out / "peers").glob("*.jsonl"))]
    held, events = connections(logs, start, end)
    last = [s for s in samples if s["t"] <= end][-1]["procs"]
    rss = sorted(p["rss"] / 1e6 for name, p in last.items() if name not in PEER_SKIP)
    print(f"{peers} idle peers, window t = {start:.0f}-{end:.0f} s (run {summary['status']}, "
          f"host CPU mean {(summary.get('cpu') or {}).get('host_mean')} %, "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"  peers' CPU: {cpu.get('peers', float('nan')):.1f} % of one core in total "
          f"({cpu.get('peers', float('nan')) / peers:.3f} % per peer); "
          f"target < 20 %")
    others = ", ".join(f"{k} {v:.1f} %" for k, v in cpu.items() if k != "peers")
    print(f"  others: {others}")
    print(f"  connections held per peer: median {statistics.median(held):.0f} "
          f"(min {min(held)}, max {max(held)}); connection events in the window: "
          f"{sum(events.values())} ({', '.join(f'{k} {v}' for k, v in events.most_common())})")
    print(f"  RSS per peer: median {statistics.median(rss):.1f} MB (max {rss[-1]:.1f}); "
          + (f"PSS median {statistics.median(pss):.1f} MB (max {max(pss):.1f}), "
             f"sum {sum(pss):.0f} MB" if pss else "PSS not read"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, default=200)
    ap.add_argument("--settle", type=float, default=30.0, help="seconds to connect")
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured")
    ap.add_argument("--keep", type=Path, help="keep the run directory under DIR")
    ap.add_argument("--profile", type=Path, help="write a cProfile dump per peer into DIR")
    args = ap.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="idle-cost-", dir=args.keep))
    try:
        out, pss = run(work, args.peers, args.settle, args.window, args.profile)
        report(out, args.peers, args.window, pss)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
