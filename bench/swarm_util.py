"""Small helpers for benchmarks that start a tracker and peers by hand (no orchestrator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from peer.config import PeerConfig

PY = sys.executable


def start_tracker(workdir: Path, run_start: float) -> tuple[subprocess.Popen, str]:
    port_file = workdir / "tracker.port"
    proc = subprocess.Popen(
        [PY, "-m", "tracker", "--any", "--port", "0", "--port-file", str(port_file),
         "--log", str(workdir / "tracker.jsonl"), "--interval", "5",
         "--run-start", repr(run_start)],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "tracker.out", "w"))  # noqa: SIM115
    deadline = time.monotonic() + 10
    while not port_file.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("tracker did not start")
        time.sleep(0.02)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}/announce"


def start_peer(workdir: Path, config: PeerConfig) -> subprocess.Popen:
    path = workdir / f"{config.name}.json"
    path.write_text(json.dumps(config.to_json()))
    return subprocess.Popen([PY, "-m", "peer", "--config", str(path)],
                            stdout=subprocess.DEVNULL,
                            stderr=open(workdir / f"{config.name}.out", "w"))


def read_events(path: Path) -> list[dict]:
    events: list[dict] = []
    if not path.exists():
        return events
    with open(path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return events


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc, no psutil needed)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
