"""Real ``testbed run`` processes: an end-to-end run, and nothing outliving the orchestrator.

These start the real tracker and peers on loopback, so they take seconds: marked integration.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from peer.metainfo import read_torrent

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
CI_SMALL = ROOT / "topologies" / "ci_small.yaml"
TESTBED = [sys.executable, "-m", "testbed.cli"]


def start_testbed(out: Path, *extra: str) -> subprocess.Popen[str]:
    # Its own session, like a shell job: a signal to the group reaches only the orchestrator
    # unless the children share its group (they must not).
    return subprocess.Popen([*TESTBED, "run", str(CI_SMALL), "--out", str(out), "--quiet",
                             "--no-analyze", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_peers(out: Path, count: int, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = list((out / "peers").glob("*.jsonl")) if (out / "peers").exists() else []
        started = [p for p in logs if '"ev":"start"' in p.read_text()]
        if len(started) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"peers did not start within {timeout} s")


def recorded_pids(out: Path) -> set[int]:
    """Every child pid the run recorded: resource samples and the peers' start lines."""
    pids: set[int] = set()
    if (out / "resources.jsonl").exists():
        for line in (out / "resources.jsonl").read_text().splitlines():
            if line.endswith("}"):
                pids |= {p["pid"] for name, p in json.loads(line)["procs"].items()
                         if name != "orchestrator"}
    for log in (out / "peers").glob("*.jsonl"):
        first = log.read_text().split("\n", 1)[0]
        if first.endswith("}"):
            pids.add(json.loads(first)["pid"])
    return pids


def alive(pids: set[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_gone(pids: set[int], timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize(("signum", "code", "to_group"), [
    (signal.SIGINT, 130, True),   # Ctrl-C in a terminal: the whole foreground group
    (signal.SIGTERM, 143, False),
])
def test_signal_mid_run_stops_every_child_and_marks_the_run_interrupted(tmp_path, signum, code,
                                                                        to_group):
    out = tmp_path / "run"
    proc = start_testbed(out)
    try:
        wait_for_peers(out, 6, proc)
        pids = recorded_pids(out)
        assert len(pids) >= 6
        if to_group:
            import os

            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["signal"] == signal.Signals(signum).name
    assert summary["crashes"] == {}  # the peers were stopped by us, not crashed
    assert "interrupted" in stdout
    pids |= recorded_pids(out)
    assert not alive(pids), f"left running: {alive(pids)}"
    # The peers stopped cleanly and their logs are whole.
    for log in (out / "peers").glob("*.jsonl"):
        lines = log.read_text().splitlines()
        assert json.loads(lines[-1])["ev"] == "stop", log


@pytest.mark.parametrize("launcher", ["fork", "local"])
def test_sigkilled_orchestrator_takes_its_children_with_it(tmp_path, launcher):
    out = tmp_path / "run"
    proc = start_testbed(out, "--launcher", launcher)
    try:
        wait_for_peers(out, 6, proc)
        time.sleep(1.2)  # one resource sample, which records the fork server's pid too
        pids = recorded_pids(out)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(pids) >= 7
    assert not wait_gone(pids), "children outlived a SIGKILLed orchestrator"


def test_end_to_end_ci_small(tmp_path):
    """The CI topology for real: every leecher completes, every piece verified by SHA-1.

    Run as a user would, from another directory with the default relative ``runs/``: the
    processes of a run work inside the run directory, so relative paths must not leak to them.
    """
    result = subprocess.run([*TESTBED, "run", str(CI_SMALL), "--quiet", "--no-analyze"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (out,) = (tmp_path / "runs").iterdir()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["completed"] == summary["leechers"] == 5
    assert summary["verified"] == 5 and summary["hash_failures"] == 0
    assert summary["crashes"] == {} and set(summary["exit_codes"].values()) == {0}
    assert summary["makespan"] > summary["bounds"]["d_p2p"] > 0
    # Content verified from the logs themselves: each leecher has a hash-checked piece event
    # for every piece of the torrent.
    pieces = read_torrent(out / "content.bin.torrent").num_pieces
    for name in summary["completion_times"]:
        events = [json.loads(line) for line in
                  (out / "peers" / f"{name}.jsonl").read_text().splitlines()]
        ok = {e["index"] for e in events if e["ev"] == "piece" and e["ok"]}
        assert ok == set(range(pieces)), name
    tracker = [json.loads(line) for line in (out / "tracker.jsonl").read_text().splitlines()]
    assert sum(e["ev"] == "announce" and e["event"] == "started" for e in tracker) == 6
    assert "makespan" in result.stdout and "D_p2p" in result.stdout
