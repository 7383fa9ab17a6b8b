"""CPU seconds per MiB delivered in the flash crowd: the testbed against libtorrent, side by side.

    .venv/bin/python -m bench.capacity [--runs 3] [--leechers 40] [--size 16MiB]
        [--only testbed|libtorrent] [--keep DIR] [--tree DIR ...]

Issue 13, item 1. Each round runs the same swarm twice, interleaved (testbed, then libtorrent):
1 seed uploading at 1 MiB/s, N leechers uploading at 512 KiB/s (download unlimited), 256 KiB
pieces, everyone arriving at once and staying until every leecher is done.

- testbed: ``testbed run topologies/flash_crowd.yaml --seed <round>`` (a generated topology of
  the same shape when --leechers or --size differ). CPU: every peer process's user + system
  time, read from /proc while the run goes on (each peer's last reading before it stops; a
  forked peer's counters start at its fork) minus what it had used at t = 0 (read 30 ms before
  it: the fork, the config, listening; flash-crowd peers are started ahead of t = 0 and
  announce, dial and log nothing before it) and minus what it used after the first reading at
  or after the last leecher's completion (the shutdown: closing, the stopped announce); so both
  swarms are counted from their start instant to the first reading after their last
  completion (every 0.25 s here, 0.2 s for libtorrent). The figure bench/flash_crowd.py takes from
  resources.jsonl (psutil percentages, once a second) is printed beside it.
- libtorrent: one process per peer, each a libtorrent session (bench/lt_swarm_peer.py) with the
  testbed's tracker (``python -m tracker``). Every address is put in libtorrent's global peer
  class so the rate limits hold on loopback; the benchmark checks them: each peer's upload over
  every 10 s window against its cap (libtorrent updates its payload totals once a second, so a
  5 s window can hold six seconds' worth). CPU: each peer process's user + system time (psutil,
  read while it is alive, just before it is stopped) minus what it had used when the swarm started
  (imports and session set-up). Both sides thus count from the swarm's start instant.

With ``--tree DIR`` (repeatable) the testbed runs with each checkout in turn (``git worktree
add`` or ``git archive`` of another commit), interleaved within each round, so two versions are
compared in one sitting on the same host, and each against libtorrent.

Context switches per MiB, for both (every thread of every peer process, voluntary and not,
from ``/proc/<pid>/task/*/status``; libtorrent's include its start-up): how often a peer is
woken, beside what it costs.

Delivered: the content size for every leecher that completed. Makespan: from the start instant
to the last leecher's completion; D_p2p from testbed.bounds. Prints each run, the medians and
the ratio testbed / libtorrent of the medians; the host's load average is printed per run
(the machine is shared: quote medians).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.bench_scale import flash_crowd
from bench.flash_crowd import measure
from bench.idle_cost import PEER_SKIP, read_samples
from bench.swarm_util import start_tracker
from peer.metainfo import make_synthetic_torrent
from peer.units import parse_size
from testbed.bounds import p2p_time
from testbed.rundir import cpu_model

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
SEED_UPLOAD_KIB = 1024
LEECHER_UPLOAD_KIB = 512
PIECE = 256 * 1024
TIME_LIMIT = 600.0
RATE_WINDOW = 10.0
START_READING_AHEAD = 0.03
"""Seconds before t = 0 at which the testbed peers' start-up CPU is read."""


@dataclass
class RunResult:
    client: str
    makespan: float
    d_p2p: float
    cpu_seconds: float
    delivered_mib: float
    completed: int
    leechers: int
    load: tuple[float, float]
    """The host's 1-minute load average at the start and at the end of the run."""
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_per_mib(self) -> float:
        return self.cpu_seconds / self.delivered_mib if self.delivered_mib else float("nan")

    @property
    def ratio(self) -> float:
        return self.makespan / self.d_p2p


def max_window_rate(samples: list[tuple[float, int]], window: float = RATE_WINDOW) -> float:
    """Highest average rate (bytes/s) over any span of at least ``window`` seconds between two
    samples of a cumulative byte counter ``(t, total)``; 0.0 with fewer than two samples."""
    best = 0.0
    j = 0
    for i in range(len(samples)):
        t_i, total_i = samples[i]
        j = max(j, i + 1)
        while j < len(samples) and samples[j][0] - t_i < window:
            j += 1
        if j >= len(samples):
            break
        t_j, total_j = samples[j]
        best = max(best, (total_j - total_i) / (t_j - t_i))
    return best


@dataclass
class LtPeerLog:
    """What bench/lt_swarm_peer.py printed: start CPU and instant, counters, completion."""

    go_cpu: float | None = None
    go_t: float | None = None
    complete_t: float | None = None
    down: list[tuple[float, int]] = field(default_factory=list)
    up: list[tuple[float, int]] = field(default_factory=list)


def parse_lt_peer_output(text: str) -> LtPeerLog:
    log = LtPeerLog()
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "go" and len(parts) == 3:
            log.go_cpu, log.go_t = float(parts[1]), float(parts[2])
        elif parts[0] == "complete" and len(parts) == 2 and log.complete_t is None:
            log.complete_t = float(parts[1])
        elif parts[0] == "s" and len(parts) == 4:
            t = float(parts[1])
            log.down.append((t, int(parts[2])))
            log.up.append((t, int(parts[3])))
    return log


def d_p2p(size: int, leechers: int) -> float:
    return p2p_time(size, SEED_UPLOAD_KIB * 1024.0, [LEECHER_UPLOAD_KIB * 1024.0] * leechers,
                    [None] * leechers)


# -- testbed ---------------------------------------------------------------------------------

def run_testbed(work: Path, round_no: int, leechers: int, size: int,
                tree: Path = ROOT) -> RunResult:
    if leechers == 40 and size == 16 * MIB:
        topology = tree / "topologies" / "flash_crowd.yaml"
    else:
        topology = work / "flash_crowd.yaml"
        topology.write_text(flash_crowd("flash_crowd", leechers, f"{LEECHER_UPLOAD_KIB}KiB/s",
                                        f"{SEED_UPLOAD_KIB}KiB/s", f"{size}B", TIME_LIMIT))
    out = work / "run"
    load0 = os.getloadavg()[0]
    proc = subprocess.Popen([sys.executable, "-m", "testbed.cli", "run", str(topology),
                             "--seed", str(round_no), "--out", str(out), "--quiet",
                             "--no-analyze"], cwd=tree, stdout=subprocess.DEVNULL)
    # Besides resources.jsonl (psutil percentages, once a second), read every peer's own CPU
    # counters from /proc while it runs: user and system apart, from its fork on.
    last: dict[int, tuple[float, float]] = {}
    switches: dict[int, int] = {}
    # What every process had used at t = 0, read just before it: start-up (fork, config,
    # listening), which is not counted, as libtorrent's imports and session set-up are not.
    at_start: dict[int, tuple[float, float]] | None = None
    run_start: float | None = None
    readings: list[tuple[float, dict[int, tuple[float, float]]]] = []
    """(monotonic time, CPU by pid) of every reading: the swarm's end is known afterwards."""
    while proc.poll() is None:
        run_start = run_start or run_start_of(out)
        if at_start is None and run_start is not None:
            if time.monotonic() < run_start - START_READING_AHEAD:
                time.sleep(min(0.25, max(0.0, run_start - START_READING_AHEAD
                                         - time.monotonic())))
                continue
            at_start = descendants_cpu(proc.pid) if time.monotonic() < run_start else {}
        samples = read_samples(out)
        reading: dict[int, tuple[float, float]] = {}
        for name, p in (samples[-1]["procs"] if samples else {}).items():
            if name not in PEER_SKIP and (times := proc_cpu_times(p["pid"])) is not None:
                reading[p["pid"]] = last[p["pid"]] = times
                switches[p["pid"]] = proc_switches(p["pid"]) or switches.get(p["pid"], 0)
        readings.append((time.monotonic(), reading))
        time.sleep(0.25)
    m = measure(out)
    summary = json.loads((out / "summary.json").read_text())
    completed = int(summary.get("completed") or 0)
    delivered = completed * size / MIB
    notes = [f"status {summary['status']}"]
    if m["saturated"]:
        notes.append("host CPU saturated")
    peak = [max((s["procs"].get(name, {}).get("rss") or 0)
                for s in _resources(out)) for name in summary["completion_times"]]
    if peak:
        notes.append(f"peak RSS per leecher median {statistics.median(peak) / 1e6:.0f} MB")
    user, system = (sum(t[i] for t in last.values()) for i in (0, 1))
    start_up = sum(sum((at_start or {}).get(pid, (0.0, 0.0))) for pid in last)
    at_end = first_reading_after(readings, run_start + float(m["makespan"])
                                  if run_start is not None and completed == leechers else None)
    stop = sum(sum(times) - sum(at_end.get(pid, times)) for pid, times in last.items())
    notes.append(f"user {user:.1f} s, system {system:.1f} s (/proc), of which not counted: "
                 f"start-up {start_up:.1f} s" + ("" if at_start else
                                                 " (not read: t = 0 passed between readings)")
                 + f", after the last completion {stop:.1f} s; from resources.jsonl "
                 f"{float(m['cpu_per_mib']):.4f} s/MiB")
    if delivered:
        notes.append(f"context switches per MiB {sum(switches.values()) / delivered:.0f}")
    return RunResult("testbed", float(m["makespan"]), d_p2p(size, leechers),
                     user + system - start_up - stop,
                     delivered, completed, leechers, (load0, os.getloadavg()[0]), notes)


def run_start_of(run_dir: Path) -> float | None:
    """t = 0 of a run on the system-wide monotonic clock, once meta.json records it."""
    try:
        return float(json.loads((run_dir / "meta.json").read_text())["run_start_monotonic"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def first_reading_after(readings: list[tuple[float, dict[int, tuple[float, float]]]],
                         instant: float | None) -> dict[int, tuple[float, float]]:
    """The CPU by pid of the first reading taken at or after ``instant`` (the last leecher's
    completion), so that the peers' shutdown is not counted, as libtorrent's is not; {} when
    the instant is unknown (the last reading then counts)."""
    if instant is None:
        return {}
    return next((cpu for t, cpu in readings if t >= instant), {})


def descendants_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """User and system CPU seconds of every live process under ``pid``, by pid."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    return {c.pid: times for c in children if (times := proc_cpu_times(c.pid)) is not None}


def proc_cpu_times(pid: int) -> tuple[float, float] | None:
    """User and system CPU seconds of a live process, from /proc (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def proc_switches(pid: int) -> int:
    """Context switches (voluntary and not) of a live process, all its threads: how many times
    it was put to sleep or off the CPU, i.e. woken again; 0 once it is gone."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    except OSError:
        return 0
    return total


def _resources(run_dir: Path) -> list[dict[str, Any]]:
    with open(run_dir / "resources.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# -- libtorrent ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_lt_peer(work: Path, name: str, torrent: Path, directory: Path, upload_kib: int,
                  index: int, go: Path, seed: bool) -> subprocess.Popen[bytes]:
    directory.mkdir(exist_ok=True)
    argv = [sys.executable, str(ROOT / "bench" / "lt_swarm_peer.py"), "--torrent", str(torrent),
            "--dir", str(directory), "--port", str(free_port()), "--upload-kib",
            str(upload_kib), f"--peer-id=-LT2110-{index:012d}", "--go", str(go)]
    if seed:
        argv.append("--seed")
    with open(work / f"{name}.out", "wb") as out, open(work / f"{name}.err", "wb") as err:
        return subprocess.Popen(argv, stdout=out, stderr=err)


def read_lt_logs(work: Path, names: list[str]) -> dict[str, LtPeerLog]:
    return {n: parse_lt_peer_output((work / f"{n}.out").read_text()) for n in names}


def run_libtorrent(work: Path, leechers: int, size: int) -> RunResult:
    load0 = os.getloadavg()[0]
    tracker, url = start_tracker(work, time.monotonic())
    content, torrent, _ = make_synthetic_torrent(work / "seed", size=size, seed=1,
                                                 piece_length=PIECE, announce=url)
    go = work / "go"
    names = ["seed"] + [f"l{i}" for i in range(1, leechers + 1)]
    caps = {n: (SEED_UPLOAD_KIB if n == "seed" else LEECHER_UPLOAD_KIB) for n in names}
    procs = {n: start_lt_peer(work, n, torrent, content.parent if n == "seed" else work / n,
                              caps[n], i, go, n == "seed") for i, n in enumerate(names)}
    try:
        # Every session is up and waiting (imports done) before the start instant.
        _wait_until(lambda: all(_started_session(work, n) for n in names), procs, 120)
        go.touch()
        _wait_until(lambda: all(log.go_t is not None
                                for log in read_lt_logs(work, names).values()), procs, 30)
        leecher_names = names[1:]
        _wait_until(lambda: all(read_lt_logs(work, leecher_names)[n].complete_t is not None
                                for n in leecher_names), procs, TIME_LIMIT, fail=False)
        cpu_now = {n: _cpu(p) for n, p in procs.items()}
        switches = sum(proc_switches(p.pid) for p in procs.values())
        peak_rss = [_peak_rss_mb(p.pid) for n, p in procs.items() if n != "seed"]
    finally:
        for p in [*procs.values(), tracker]:
            if p.poll() is None:
                p.terminate()
        for p in [*procs.values(), tracker]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    logs = read_lt_logs(work, names)
    start = min(log.go_t for log in logs.values() if log.go_t is not None)
    cpu = sum(sum(cpu_now[n]) - (logs[n].go_cpu or 0.0) for n in names)
    user, system = (sum(t[i] for t in cpu_now.values()) for i in (0, 1))
    done = [t for n in leecher_names if (t := logs[n].complete_t) is not None]
    delivered = len(done) * size / MIB
    makespan = max(done) - start if len(done) == leechers else float("nan")
    start_up = sum(log.go_cpu or 0.0 for log in logs.values())
    return RunResult("libtorrent", makespan, d_p2p(size, leechers), cpu, delivered, len(done),
                     leechers, (load0, os.getloadavg()[0]),
                     [f"user {user:.1f} s, system {system:.1f} s, of which start-up (not "
                      f"counted) {start_up:.1f} s",
                      f"peak RSS per leecher median {statistics.median(peak_rss):.0f} MB",
                      f"context switches per MiB {switches / delivered:.0f} (start-up "
                      "included)" if delivered else "no context switches per MiB",
                      *_rate_notes(
                         logs, caps, start, size)])


def _started_session(work: Path, name: str) -> bool:
    out = work / f"{name}.out"
    return out.exists() and out.read_text().startswith("ready")


def _cpu(proc: subprocess.Popen[bytes]) -> tuple[float, float]:
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user), float(times.system)


def _peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def _wait_until(condition: Callable[[], bool], procs: dict[str, subprocess.Popen[bytes]],
                timeout: float, fail: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"libtorrent peer {dead[0]} exited ({procs[dead[0]].returncode})")
        if time.monotonic() > deadline:
            if fail:
                raise RuntimeError("libtorrent swarm: timed out waiting for its peers")
            return
        time.sleep(0.2)


def _rate_notes(logs: dict[str, LtPeerLog], caps: dict[str, int], start: float,
                size: int) -> list[str]:
    """The check that libtorrent's caps held on loopback: each peer's highest 10 s upload rate
    over its cap, and the leechers' mean download rates."""
    over_cap = {n: max_window_rate(log.up) / (caps[n] * 1024) for n, log in logs.items()}
    worst = max(over_cap, key=over_cap.__getitem__)
    rates = sorted(size / (log.complete_t - start) / 1024 for n, log in logs.items()
                   if n != "seed" and log.complete_t is not None)
    notes = [f"upload over any {RATE_WINDOW:g} s / cap: max {over_cap[worst]:.3f} ({worst}), "
             f"median {statistics.median(over_cap.values()):.3f}"]
    if rates:
        notes.append(f"leecher mean download KiB/s: min {rates[0]:.0f} median "
                     f"{statistics.median(rates):.0f} max {rates[-1]:.0f}")
    return notes


# -- the benchmark ---------------------------------------------------------------------------

def show(r: RunResult) -> str:
    return (f"{r.client:>10}: CPU {r.cpu_per_mib:.4f} s/MiB ({r.cpu_seconds:.1f} s over "
            f"{r.delivered_mib:.0f} MiB), makespan {r.makespan:.1f} s, makespan / D_p2p "
            f"{r.ratio:.2f}, completed {r.completed}/{r.leechers}, load {r.load[0]:.1f}->"
            f"{r.load[1]:.1f}; " + "; ".join(r.notes))


def one(client: str, keep: Path | None, round_no: int, leechers: int, size: int,
        trees: dict[str, Path]) -> RunResult:
    work = Path(tempfile.mkdtemp(prefix="capacity-", dir=keep))
    try:
        if client in trees:
            result = run_testbed(work, round_no, leechers, size, trees[client])
            result.client = client
            return result
        return run_libtorrent(work, leechers, size)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--leechers", type=int, default=40)
    ap.add_argument("--size", default="16MiB")
    ap.add_argument("--only", choices=("testbed", "libtorrent"))
    ap.add_argument("--keep", type=Path, help="keep every run's directory under DIR")
    ap.add_argument("--tree", type=Path, action="append", default=[],
                    help="run the testbed of this checkout (repeat to interleave several)")
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    trees = tree_clients(args.tree)
    clients = [*trees, "libtorrent"]
    if args.only:
        clients = [c for c in clients if (c in trees) == (args.only == "testbed")]
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    print(f"flash crowd: 1 seed at {SEED_UPLOAD_KIB} KiB/s, {args.leechers} leechers at "
          f"{LEECHER_UPLOAD_KIB} KiB/s, {size / MIB:g} MiB in 256 KiB pieces; D_p2p "
          f"{d_p2p(size, args.leechers):.1f} s; {os.cpu_count()} CPUs ({cpu_model()}), load "
          f"average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, list[RunResult]] = {c: [] for c in clients}
    for round_no in range(1, args.runs + 1):
        for client in clients:
            r = one(client, args.keep, round_no, args.leechers, size, trees)
            results[client].append(r)
            print(f"run {round_no} {show(r)}", flush=True)
    medians = {}
    for client, rs in results.items():
        medians[client] = statistics.median(r.cpu_per_mib for r in rs)
        print(f"{client:>10}: median CPU {medians[client]:.4f} s/MiB "
              f"({', '.join(f'{r.cpu_per_mib:.4f}' for r in rs)}); median makespan / D_p2p "
              f"{statistics.median(r.ratio for r in rs):.2f} "
              f"({', '.join(f'{r.ratio:.2f}' for r in rs)})")
    for client in trees:
        if client in medians and "libtorrent" in medians:
            print(f"CPU per MiB, {client} / libtorrent: "
                  f"{medians[client] / medians['libtorrent']:.2f} (target <= 1.3)")
    return 0


def tree_clients(trees: list[Path]) -> dict[str, Path]:
    """The testbed clients to run, by name: ``testbed`` (this checkout) without ``--tree``,
    else ``testbed@<directory name>`` per tree."""
    if not trees:
        return {"testbed": ROOT}
    for tree in trees:
        if not (tree / "testbed" / "cli.py").is_file():
            raise SystemExit(f"bench.capacity: --tree {tree}: not a bt-testbed checkout")
    return {f"testbed@{tree.resolve().name}": tree.resolve() for tree in trees}


if __name__ == "__main__":
    sys.exit(main())
