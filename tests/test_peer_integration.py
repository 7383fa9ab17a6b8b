"""One tracker, one seed and three leechers as real processes on loopback; CLI bad input.

Real processes and real time (a few seconds), hence the ``integration`` marker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peer_helpers import events, make_torrent, peer_config, peer_id, read_log, write_config

from peer.config import ProtocolSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
SIZE = 2 * MiB
PIECE = 64 * 1024
LEECHERS = 3
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def spawn(args: list[str], out: Path) -> subprocess.Popen:
    with open(out, "wb") as sink:
        return subprocess.Popen([sys.executable, *args], cwd=REPO, env=ENV, stdout=sink,
                                stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{what}: process {proc.args} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> float:
    """SIGTERM and wait; return the seconds it took to exit."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - sent


def test_tracker_seed_and_three_leechers_as_processes(tmp_path):
    port_file = tmp_path / "tracker.port"
    tracker_log = tmp_path / "tracker.jsonl"
    tracker = spawn(["-m", "tracker", "--any", "--port", "0", "--port-file", str(port_file),
                     "--log", str(tracker_log), "--interval", "5"], tmp_path / "tracker.out")
    peers: list[subprocess.Popen] = []
    try:
        wait_for(port_file.exists, 10, "the tracker's port file", [tracker])
        url = f"http://127.0.0.1:{int(port_file.read_text())}/announce"
        content, torrent, metainfo = make_torrent(tmp_path, size=SIZE, piece_length=PIECE,
                                                  announce=url)
        protocol = ProtocolSettings(unchoke_when_free=True, rechoke_period=2.0,
                                    optimistic_period=6.0)
        run_start = time.monotonic()
        logs = []
        for i in range(1 + LEECHERS):
            role = "seed" if i == 0 else "leecher"
            log = tmp_path / f"p{i}.jsonl"
            config = peer_config(name=f"p{i}", index=i, torrent=torrent, role=role, log=log,
                                 content=content if role == "seed" else None,
                                 upload=2 * MiB if role == "seed" else 1 * MiB,
                                 protocol=protocol, run_start=run_start)
            path = write_config(tmp_path / f"p{i}.json", config)
            peers.append(spawn(["-m", "peer", "--config", str(path)], tmp_path / f"p{i}.out"))
            logs.append(log)

        def all_complete() -> bool:
            return all(events(read_log(log), "complete") for log in logs[1:])

        wait_for(all_complete, 30, "every leecher to complete", peers)

        for proc, log in zip(peers, logs, strict=True):
            took = stop(proc)
            assert proc.returncode == 0, (tmp_path / f"{log.stem}.out").read_text()
            assert took < 1.5, f"{log.stem} took {took:.2f} s to exit after SIGTERM"
    finally:
        for proc in peers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        took = stop(tracker)
    assert tracker.returncode == 0

    for i, log in enumerate(logs):
        records = read_log(log)
        assert records[0]["ev"] == "start" and records[-1]["ev"] == "stop"
        assert records[-1]["reason"] == "signal"
        assert records[0]["info_hash"] == metainfo.info_hash.hex()
        assert events(records, "conn_open") and events(records, "counters")
        assert events(records, "rechoke")
        if i == 0:
            assert not events(records, "piece")
            continue
        pieces = events(records, "piece")
        assert sorted(p["index"] for p in pieces) == list(range(metainfo.num_pieces))
        assert all(p["ok"] for p in pieces), [p for p in pieces if not p["ok"]]
        assert events(records, "complete")[0]["downloaded"] >= SIZE
        # Stamps share the run's clock: every event lies between start and stop.
        assert all(records[0]["t"] <= r["t"] <= records[-1]["t"] for r in records)

    announces = events(read_log(tracker_log), "announce")
    seen = {(a["peer"], a["event"]) for a in announces}
    for i in range(1 + LEECHERS):
        assert (peer_id(i), "started") in seen
        assert (peer_id(i), "stopped") in seen
    for i in range(1, 1 + LEECHERS):
        assert (peer_id(i), "completed") in seen
    assert all(a["failure"] is None for a in announces)


def run_peer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peer", *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=30)


def assert_one_line_exit_2(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize(("text", "fragment"), [
    ('{"name": "p", ', "not valid JSON"),
    ("[1, 2]", "must be an object"),
    ('{"name": "p"}', "peer_id"),
    ('{"name": "p", "peer_id": "-TB0100-000000000001", "torrent": "t", "role": "boss", '
     '"log": "l"}', "role"),
    ('{"name": "p", "peer_id": "-TB0100-000000000001", "torrent": "t", "role": "leecher", '
     '"log": "l", "colour": "red"}', "unknown key(s) colour"),
])
def test_corrupt_config_exits_2_with_one_line(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert_one_line_exit_2(run_peer("--config", str(path)), str(path), fragment)


def test_missing_config_exits_2(tmp_path):
    assert_one_line_exit_2(run_peer("--config", str(tmp_path / "nope.json")), "cannot read")


@pytest.mark.parametrize(("data", "fragment"), [
    (b"d8:announce", "not valid bencoding"),
    (b"i42e", "must be a bencoded dictionary"),
    (None, "cannot read"),
])
def test_corrupt_torrent_exits_2_with_one_line(tmp_path, data, fragment):
    torrent = tmp_path / "bad.torrent"
    if data is not None:
        torrent.write_bytes(data)
    config = peer_config(name="p", index=1, torrent=torrent, role="leecher",
                         log=tmp_path / "p.jsonl")
    result = run_peer("--config", str(write_config(tmp_path / "p.json", config)))
    assert_one_line_exit_2(result, "bad.torrent", fragment)
    assert not (tmp_path / "p.jsonl").exists() or not read_log(tmp_path / "p.jsonl")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_while_the_peer_starts_is_a_clean_stop(tmp_path, signum):
    # The orchestrator may stop a run while a slow peer is still starting: the signal must be
    # held until the peer can honour it, not kill it with a log that ends at "start".
    content, torrent, _ = make_torrent(tmp_path)
    log = tmp_path / "p.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "peer", "--torrent", str(torrent), "--role",
                             "seed", "--content", str(content), "--log", str(log)],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not log.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)  # the window is a few milliseconds wide
        proc.send_signal(signum)  # the log exists before the peer listens or logs "start"
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    records = read_log(log)
    assert [r["ev"] for r in records][0::len(records) - 1] == ["start", "stop"], records
    assert records[-1]["reason"] == "signal"
