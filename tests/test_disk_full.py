"""Write errors (a full disk) in the logs: nothing ends mid-line, and the writer says so.

Unit tests inject the failure (a file descriptor whose writes fail with ENOSPC after a budget);
the end-to-end test on a real small filesystem lives in test_disk_full_run.py (root only).
"""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import pytest

from peer.eventlog import EventLog, LineFile, LogWriteError, RunClock


class DiskBudget:
    """Patches ``os.write`` so that writes to files under ``root`` fail with ENOSPC once
    ``budget`` bytes were written (the last write that fits only partly is a short write, as
    the kernel does when a filesystem fills)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, budget: int) -> None:
        self.root = str(root)
        self.left = budget
        self._write = os.write
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if not path.startswith(self.root):
            return self._write(fd, data)
        if self.left <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._write(fd, bytes(data[: self.left]))
        self.left -= written
        return written


def test_line_file_cuts_a_failed_write_back_to_the_last_complete_line(tmp_path, monkeypatch):
    path = tmp_path / "x.jsonl"
    lines = LineFile(path)
    lines.write(b'{"a":1}\n')
    DiskBudget(monkeypatch, tmp_path, budget=5)
    with pytest.raises(OSError) as caught:
        lines.write(b'{"b":2}\n{"c":3}\n')
    assert caught.value.errno == errno.ENOSPC
    lines.close()
    assert path.read_bytes() == b'{"a":1}\n'


def test_event_log_on_a_full_disk_keeps_whole_lines_and_stays_failed(tmp_path, monkeypatch):
    path = tmp_path / "peer.jsonl"
    log = EventLog(path, RunClock(0.0))
    log.emit("start", name="p")
    log.flush()
    DiskBudget(monkeypatch, tmp_path, budget=30)
    for i in range(20):
        log.emit("piece", index=i, ok=True)
    with pytest.raises(LogWriteError) as caught:
        log.flush()
    assert caught.value.errno == errno.ENOSPC
    assert "peer.jsonl" in str(caught.value) and "No space left" in str(caught.value)
    log.emit("stop", reason="signal")
    with pytest.raises(LogWriteError):  # a swallowed first error is raised again
        log.flush()
    log.close()  # quiet: the error was reported
    text = path.read_text()
    assert text.endswith("\n")
    assert [json.loads(line)["ev"] for line in text.splitlines()] == ["start"]


def test_event_log_first_failure_at_close_is_raised(tmp_path, monkeypatch):
    log = EventLog(tmp_path / "t.jsonl", RunClock(0.0))
    log.emit("start")
    DiskBudget(monkeypatch, tmp_path, budget=0)
    with pytest.raises(LogWriteError):
        log.close()
    assert (tmp_path / "t.jsonl").read_text() == ""


def test_event_log_to_a_stream_reports_a_failing_stream():
    class Full(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    log = EventLog(None, RunClock(0.0), stream=Full())
    log.emit("x")
    with pytest.raises(LogWriteError):
        log.flush()


@pytest.mark.integration
def test_a_peer_whose_log_cannot_be_written_stops_with_one_line_and_exit_74(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full filesystem does."""
    import subprocess
    import sys

    from peer.eventlog import EXIT_WRITE_FAILED
    from peer.metainfo import make_synthetic_torrent

    _, torrent, _ = make_synthetic_torrent(tmp_path, size=64 * 1024, seed=1,
                                           piece_length=16 * 1024,
                                           announce="http://127.0.0.1:9/announce")
    result = subprocess.run(
        [sys.executable, "-m", "peer", "--torrent", str(torrent), "--log", "/dev/full"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == EXIT_WRITE_FAILED
    assert result.stderr.splitlines() == [
        "peer: stopped: cannot write /dev/full: No space left on device; the log was cut back "
        "to its last complete line"]



@pytest.mark.integration
def test_a_tracker_whose_log_cannot_be_written_stops_with_one_line_and_exit_74():
    import subprocess
    import sys

    from peer.eventlog import EXIT_WRITE_FAILED

    result = subprocess.run([sys.executable, "-m", "tracker", "--any", "--log", "/dev/full"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == EXIT_WRITE_FAILED, result.stderr
    assert result.stderr.splitlines() == [
        "python -m tracker: stopped: cannot write /dev/full: No space left on device; the log "
        "was cut back to its last complete line"]


# Like a real peer, it takes SIGTERM as a request to stop between writes: with the default
# action, the orchestrator's stop could land between a short write and the truncation that
# undoes it, and leave a partial line no real peer leaves.
FILLING_PEER = """
import json, signal, sys, time
from peer.eventlog import EXIT_WRITE_FAILED, EventLog, LogWriteError, RunClock
stopping = False
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
config = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
log = EventLog(config["log"], RunClock(config["run_start"]))
try:
    log.emit("start", name=config["name"], role=config["role"])
    while not stopping:  # a peer logging far more than the disk holds
        for i in range(200):
            log.emit("counters", pad="x" * 200, i=i)
        log.flush()
        time.sleep(0.01)
except LogWriteError:
    sys.exit(EXIT_WRITE_FAILED)
"""


@pytest.mark.integration
def test_a_run_on_a_small_filesystem_ends_failed_with_whole_logs_and_a_summary(tmp_path):
    """A real full disk (a 1 MiB tmpfs): root only, skipped elsewhere."""
    import subprocess
    import sys

    from testbed.diskspace import SummaryReserve
    from testbed.run import Commands, RunOptions, execute_run
    from testbed.summary import exit_status
    from tests.test_orchestrator import FAKE_TRACKER, experiment

    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root and tmpfs mounts")
    try:
        (tmp_path / "tracker.py").write_text(FAKE_TRACKER)
        (tmp_path / "filling_peer.py").write_text(FILLING_PEER)
        commands = Commands(python=sys.executable, peer=(str(tmp_path / "filling_peer.py"),),
                            tracker=(str(tmp_path / "tracker.py"),))
        out = mount / "run"
        options = RunOptions(out=out, quiet=True, launcher="local", stop_grace=1.0,
                             poll_period=0.05)
        summary = execute_run(experiment(("leecher", 2, {}), time_limit=10.0), "name: x\n",
                              options, commands).summary
        assert summary["status"] == "failed", summary
        assert "disk full" in summary["reason"] or "could not write" in summary["reason"]
        assert summary["duration"] < 5 and exit_status(summary) == 1
        assert json.loads((out / "summary.json").read_text())["status"] == "failed"
        assert not (out / SummaryReserve.NAME).exists()
        for log in [out / "resources.jsonl", *sorted((out / "peers").glob("*.jsonl"))]:
            data = log.read_bytes()
            assert data == b"" or data.endswith(b"\n"), log
            for line in data.splitlines():
                json.loads(line)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
