"""The tracker server: real loopback sockets in-process, memory streams for timeouts, and one
real ``python -m tracker`` process (integration)."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
import trio
import trio.testing

from peer import bencode
from peer.eventlog import EventLog, RunClock
from tracker.server import _serve_connection, serve_tracker
from tracker.swarm import Swarm

INFO_HASH = bytes(range(0x70, 0x84))  # half of it printable, so clients would send it mixed
REPO = Path(__file__).resolve().parent.parent


def pid(n: int) -> bytes:
    return b"-TB0100-%012d" % n


def announce_target(n: int, **extra: str) -> bytes:
    params = {"info_hash": quote_from_bytes(INFO_HASH), "peer_id": pid(n).decode(),
              "port": str(6000 + n), "uploaded": "0", "downloaded": "0", "left": "100", **extra}
    return b"/announce?" + "&".join(f"{k}={v}" for k, v in params.items()).encode()


def get(target: bytes, *, close: bool = True) -> bytes:
    headers = b"Host: 127.0.0.1\r\nUser-Agent: test\r\n"
    if close:
        headers += b"Connection: close\r\n"
    return b"GET " + target + b" HTTP/1.1\r\n" + headers + b"\r\n"


def parse_response(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines[1:])}
    length = int(headers[b"content-length"])
    return status, headers, rest[:length]


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    while chunk := await stream.receive_some(65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def read_response(stream: trio.abc.ReceiveStream) -> bytes:
    """Read exactly one response from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    _, headers, _ = parse_response(data)
    head_len = data.index(b"\r\n\r\n") + 4
    need = head_len + int(headers[b"content-length"])
    while len(data) < need:
        data += await stream.receive_some(65536)
    return data


def make_swarm(**kw) -> Swarm:
    return Swarm([INFO_HASH], rng=random.Random(0), **kw)


async def exchange(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        return await read_all(stream)


# --- real loopback sockets, in process ---------------------------------------------------------

async def test_announce_and_scrape_over_loopback(nursery):
    log = EventLog(None, RunClock())
    port = await nursery.start(lambda task_status: serve_tracker(
        swarm=make_swarm(), log=log, task_status=task_status))
    assert port > 0

    reply = await exchange(port, get(announce_target(1, event="started")))
    status, _, body = parse_response(reply)
    assert status == 200
    assert bencode.decode(body) == {b"complete": 0, b"incomplete": 1, b"interval": 30,
                                    b"min interval": 15, b"peers": b""}

    status, _, body = parse_response(await exchange(port, get(announce_target(2, compact="0"))))
    assert status == 200
    assert bencode.decode(body)[b"peers"] == [
        {b"ip": b"127.0.0.1", b"peer id": pid(1), b"port": 6001}]

    status, _, body = parse_response(await exchange(port, get(announce_target(3))))
    peers = bencode.decode(body)[b"peers"]
    assert len(peers) == 12 and b"\x7f\x00\x00\x01\x17\x71" in (peers[:6], peers[6:])

    status, _, body = parse_response(await exchange(port, get(b"/scrape")))
    assert bencode.decode(body) == {b"files": {INFO_HASH: {
        b"complete": 0, b"downloaded": 0, b"incomplete": 3}}}

    evs = [r["ev"] for r in log.records]
    assert evs == ["start", "announce", "announce", "announce", "scrape"]
    assert log.records[0]["listen"] == f"127.0.0.1:{port}"
    assert log.records[0]["info_hashes"] == [INFO_HASH.hex()]
    assert log.records[1]["peer"] == pid(1).decode()
    assert log.records[1]["addr"] == "127.0.0.1:6001"
    assert log.records[3]["returned"] == 2
    nursery.cancel_scope.cancel()


async def test_stop_is_logged_on_cancel():
    log = EventLog(None, RunClock())
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve_tracker(
            swarm=make_swarm(), log=log, task_status=task_status))
        nursery.cancel_scope.cancel()
    assert [r["ev"] for r in log.records] == ["start", "stop"]


async def test_keep_alive_serves_several_requests(nursery):
    log = EventLog(None, RunClock())
    port = await nursery.start(lambda task_status: serve_tracker(
        swarm=make_swarm(), log=log, task_status=task_status))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(get(announce_target(1), close=False))
        status, headers, _ = parse_response(await read_response(stream))
        assert status == 200 and headers.get(b"connection") != b"close"
        await stream.send_all(get(announce_target(2), close=False))
        status, _, body = parse_response(await read_response(stream))
        assert bencode.decode(body)[b"incomplete"] == 2
    nursery.cancel_scope.cancel()


async def test_failure_404_and_bad_http_leave_the_tracker_running(nursery):
    log = EventLog(None, RunClock())
    port = await nursery.start(lambda task_status: serve_tracker(
        swarm=make_swarm(), log=log, task_status=task_status))

    status, _, body = parse_response(await exchange(port, get(announce_target(1, port="0"))))
    assert status == 200
    assert b"port" in bencode.decode(body)[b"failure reason"]

    status, _, _ = parse_response(await exchange(port, get(b"/nowhere")))
    assert status == 404

    # Garbage instead of a request line: 400, and the connection is closed by the tracker.
    status, headers, _ = parse_response(await exchange(port, b"\x13BitTorrent protocol\r\n\r\n"))
    assert status == 400 and headers[b"connection"] == b"close"

    # Raw bytes outside printable ASCII in the target are not HTTP/1.1 (h11 refuses them).
    raw = b"/announce?info_hash=" + b"\xff" * 20 + b"&peer_id=x"
    assert parse_response(await exchange(port, get(raw)))[0] == 400

    # A client that connects and leaves at once.
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.aclose()

    status, _, body = parse_response(await exchange(port, get(announce_target(2))))
    assert status == 200 and bencode.decode(body)[b"incomplete"] == 1
    failures = [r["failure"] for r in log.records if r["ev"] == "announce"]
    assert failures[0] is not None and failures[1] is None
    nursery.cancel_scope.cancel()


# --- timeouts and flushing on trio's mock clock ------------------------------------------------

async def test_stalled_client_is_dropped_after_timeout(autojump_clock):
    client, server = trio.testing.memory_stream_pair()
    log = EventLog(None, RunClock())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _serve_connection(server, swarm=make_swarm(), log=log,
                                                     timeout=10.0))
        start = trio.current_time()
        await client.send_all(b"GET /announce?info_hash=")  # and nothing more
        assert await read_all(client) == b""
        assert trio.current_time() - start == pytest.approx(10.0)
    assert log.records == []


async def test_idle_keep_alive_connection_is_closed_after_timeout(autojump_clock):
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _serve_connection(server, swarm=make_swarm(),
                                                     log=EventLog(None, RunClock()), timeout=5.0))
        await client.send_all(get(announce_target(1), close=False))
        assert parse_response(await read_response(client))[0] == 200
        answered = trio.current_time()
        assert await read_all(client) == b""
        assert trio.current_time() - answered == pytest.approx(5.0)


async def test_log_is_flushed_periodically_and_at_stop(autojump_clock):
    sink = io.StringIO()
    log = EventLog(None, RunClock(), stream=sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve_tracker(
            swarm=make_swarm(), log=log, flush_period=0.5, task_status=task_status))
        assert '"ev":"start"' in sink.getvalue()
        log.emit("probe")
        await trio.sleep(0.3)
        assert "probe" not in sink.getvalue()
        await trio.sleep(0.3)
        assert "probe" in sink.getvalue()
        nursery.cancel_scope.cancel()
    assert sink.getvalue().splitlines()[-1].endswith('"ev":"stop"}')


# --- the real process ----------------------------------------------------------------------------

def run_cli(*args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.mark.integration
def test_tracker_process_announce_and_sigterm(tmp_path):
    import http.client

    port_file, log_path = tmp_path / "tracker.port", tmp_path / "tracker.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", "--port", "0", "--port-file", str(port_file),
         "--log", str(log_path), "--info-hash", INFO_HASH.hex(), "--interval", "7",
         "--min-interval", "2", "--peer-timeout", "400", "--run-start", str(time.monotonic())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no port file"
            time.sleep(0.02)
        port = int(port_file.read_text())
        assert proc.stdout.readline().strip() == f"listening on 127.0.0.1:{port}"

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", announce_target(1, event="started").decode())
        response = conn.getresponse()
        assert response.status == 200
        answer = bencode.decode(response.read())
        assert (answer[b"interval"], answer[b"min interval"]) == (7, 2)
        conn.close()

        time.sleep(0.7)  # the periodic flush, before any stop
        lines = [json.loads(line) for line in log_path.read_text().splitlines()]
        assert [r["ev"] for r in lines] == ["start", "announce"]

        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - sent < 1.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["ev"] for r in lines] == ["start", "announce", "stop"]
    assert lines[1]["event"] == "started" and lines[1]["failure"] is None
    assert (lines[0]["interval"], lines[0]["min_interval"], lines[0]["peer_timeout"]) == (7, 2, 400)
    assert all(lines[i]["t"] <= lines[i + 1]["t"] for i in range(2))


@pytest.mark.parametrize(("args", "text"), [
    ([], "--torrent, --info-hash or --any"),
    (["--info-hash", "zz"], "40 hex digits"),
    (["--info-hash", "ab" * 19], "40 hex digits"),
    (["--torrent", "/nonexistent/x.torrent"], "/nonexistent/x.torrent"),
    (["--any", "--info-hash", "ab" * 20], "do not combine"),
    (["--any", "--interval", "0.5"], "whole number of seconds"),
    (["--any", "--port", "70000"], "0..65535"),
    (["--any", "--interval", "30", "--min-interval", "31"], "longer than the interval"),
    (["--any", "--peer-timeout", "0"], "seconds > 0"),
    (["--any", "--peer-timeout", "nan"], "seconds > 0"),
    (["--any", "--log", "/nonexistent/dir/t.jsonl"], "cannot open the log"),
])
def test_cli_bad_arguments_exit_2_with_one_line(args, text, capsys):
    from tracker.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err and "Traceback" not in err


def test_cli_reads_info_hash_from_torrent(tmp_path, capsys):
    metainfo = pytest.importorskip("peer.metainfo")
    from tracker.__main__ import main

    torrent = tmp_path / "t.torrent"
    built = metainfo.build_metainfo(announce="http://127.0.0.1:1/announce", name="f",
                                    length=1, piece_length=16384, piece_hashes=[b"\0" * 20])
    metainfo.write_torrent(torrent, built)
    (tmp_path / "bad.torrent").write_bytes(b"d4:spam")
    with pytest.raises(SystemExit) as info:
        main(["--torrent", str(tmp_path / "bad.torrent")])
    assert info.value.code == 2 and "bad.torrent" in capsys.readouterr().err

    # Bind to a port that is taken: the torrent was read fine, the start-up problem is reported.
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["--torrent", str(torrent), "--port", str(busy)])
    assert info.value.code == 2
    assert f"cannot listen on 127.0.0.1:{busy}" in capsys.readouterr().err


@pytest.mark.integration
def test_tracker_does_not_import_pandas_or_numpy():
    code = ("import sys, tracker, tracker.server, tracker.__main__, tracker.http; "
            "bad = [m for m in ('pandas', 'numpy', 'matplotlib') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, check=True)
    assert out.stdout.strip() == "[]"
