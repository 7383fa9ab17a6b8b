"""CPU seconds per MiB delivered with and without link delays (issue 14, item 5).

One seed sends a file to N leechers, every peer at the same upload cap (the swarm's regime: the
cost per MiB compared at the same throughput), once per delay and repetition, the delays
interleaved (0, d, 0, d, ...) so that the host's load drifts into both alike. A delay is the
one-way delay every peer adds to what it sends (``LinkDelays.default``); 0 runs no delay line.

    .venv/bin/python -m bench.latency_cost [--delays 0ms,100ms] [--size-mib 32] [--leechers 2]
        [--upload 4MiB/s] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.swarm_util import PY, cpu_seconds, read_events, start_peer, stop_all
from peer.config import LinkDelays, PeerConfig, ProtocolSettings, RateLimit
from peer.metainfo import make_synthetic_torrent
from peer.units import parse_rate
from testbed.experiment import peer_id_for


def start_tracker(work: Path, run_start: float) -> tuple[subprocess.Popen[bytes], str]:
    """swarm_util's tracker, waited for up to two minutes (a saturated host takes longer than
    its ten seconds to start a Python process) and stopped if it never comes up."""
    port_file = work / "tracker.port"
    proc = subprocess.Popen(
        [PY, "-m", "tracker", "--any", "--port", "0", "--port-file", str(port_file),
         "--log", str(work / "tracker.jsonl"), "--interval", "5", "--run-start", repr(run_start)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not port_file.exists() or not port_file.read_text().strip():
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_all([proc])
            raise RuntimeError("tracker did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}/announce"


def one_run(delay: float, size_mib: int, leechers: int, upload: float | None) -> float:
    """CPU seconds per MiB delivered, start-up excluded."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_start = time.monotonic()
        tracker, url = start_tracker(work, run_start)
        content, torrent, _ = make_synthetic_torrent(work, size=size_mib << 20, seed=1,
                                                     announce=url)
        common = dict(torrent=str(torrent), run_start=run_start, upload=RateLimit(rate=upload),
                      protocol=ProtocolSettings(unchoke_when_free=True),
                      delays=LinkDelays(default=delay))
        names = ["seed"] + [f"l{i}" for i in range(1, leechers + 1)]
        procs = [start_peer(work, PeerConfig(
            name=name, peer_id=peer_id_for(i), role="seed" if i == 0 else "leecher",
            log=str(work / f"{name}.jsonl"), content=str(content) if i == 0 else None, seed=i,
            **common)) for i, name in enumerate(names)]  # type: ignore[arg-type]
        base = 0.0
        for proc, name in zip(procs, names, strict=True):
            while not any(e["ev"] == "start" for e in read_events(work / f"{name}.jsonl")):
                time.sleep(0.01)
            base += cpu_seconds(proc.pid)  # start-up (imports, the torrent) is not transfer
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(
                any(e["ev"] == "complete" for e in read_events(work / f"{name}.jsonl"))
                for name in names[1:]):
            time.sleep(0.2)
        cpu = sum(cpu_seconds(p.pid) for p in procs) - base
        stop_all([*procs, tracker])
        return cpu / (size_mib * leechers)


def retried(delay: float, size_mib: int, leechers: int, upload: float | None) -> float:
    """``one_run``, started again (up to three times) when the tracker did not come up in time:
    on a saturated host its start-up alone can take longer than swarm_util waits."""
    for attempt in range(3):
        try:
            return one_run(delay, size_mib, leechers, upload)
        except RuntimeError as exc:
            print(f"  {exc}: again ({attempt + 1})", flush=True)
    return one_run(delay, size_mib, leechers, upload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delays", default="0ms,100ms",
                        help="one-way delays, comma-separated (ms or s)")
    parser.add_argument("--size-mib", type=int, default=32)
    parser.add_argument("--leechers", type=int, default=2)
    parser.add_argument("--upload", default="4MiB/s", help="every peer's upload cap")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    delays = [float(d[:-2]) / 1000 if d.endswith("ms") else float(d.rstrip("s"))
              for d in args.delays.split(",")]
    upload = parse_rate(args.upload)
    results: dict[float, list[float]] = {d: [] for d in delays}
    for _ in range(args.repeat):
        for delay in delays:
            results[delay].append(retried(delay, args.size_mib, args.leechers, upload))
            print(f"  {delay * 1000:g} ms: {results[delay][-1]:.4f} CPU s/MiB", flush=True)
    base = statistics.median(results[delays[0]])
    for delay, runs in results.items():
        median = statistics.median(runs)
        print(f"one-way {delay * 1000:g} ms: median {median:.4f} CPU s per MiB "
              f"({median / base:.2f}x of {delays[0] * 1000:g} ms; runs "
              f"{', '.join(f'{r:.4f}' for r in runs)})")


if __name__ == "__main__":
    main()
