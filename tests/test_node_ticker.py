"""The node's one periodic task (peer/node.py ``_ticker``) on MockClock: log lines reach the file
within FLUSH_DELAY of being queued, and an idle peer wakes once per counters period, not every
half second."""

from __future__ import annotations

import json

import trio
from peer_helpers import TrioRunClock, make_torrent, peer_config

from peer.eventlog import EventLog
from peer.node import FLUSH_DELAY, Node


def file_node(tmp_path):
    _, torrent, _ = make_torrent(tmp_path, size=256 * 1024, piece_length=64 * 1024)
    clock = TrioRunClock()
    log_path = tmp_path / "p1.jsonl"
    config = peer_config(name="p1", index=1, torrent=torrent, role="leecher", log=log_path)
    return Node(config, clock=clock, log=EventLog(log_path, clock)), log_path


def lines_on_disk(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_log_line_reaches_the_file_within_the_flush_delay(autojump_clock, tmp_path):
    node, log_path = file_node(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await trio.sleep(3.2 - trio.current_time())
        for i in range(5):
            node.log.emit("probe")
            await trio.sleep(FLUSH_DELAY + 0.001)
            assert [r["ev"] for r in lines_on_disk(log_path)].count("probe") == i + 1
            await trio.sleep(1.3)
        nursery.cancel_scope.cancel()


async def test_an_idle_peer_ticks_once_per_counters_period(autojump_clock, tmp_path,
                                                          monkeypatch):
    node, _ = file_node(tmp_path)
    ticks: list[float] = []
    flushes: list[float] = []
    housekeeping, flush = node.session.housekeeping, node.log.flush
    monkeypatch.setattr(node.session, "housekeeping",
                        lambda now: (ticks.append(now), housekeeping(now))[1])
    monkeypatch.setattr(node.log, "flush",
                        lambda: (flushes.append(trio.current_time()), flush())[0])
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    # counters_period is 1 s (19 when the announcer's failed connect, in a thread, lets the
    # autojump clock run past the last tick before the cancel lands)
    assert len(ticks) in (19, 20)
    # One flush per tick, no 0.5 s wake-ups in between; the (failing) announces' lines and the
    # start line add their own.
    announces = [r for r in lines_on_disk(tmp_path / "p1.jsonl") if r["ev"] == "announce"]
    assert len(flushes) <= len(ticks) + len(announces) + 2


async def test_a_peer_started_ahead_of_the_run_only_listens_until_t_0(autojump_clock, tmp_path):
    """The orchestrator starts a flash crowd's peers ahead of t = 0 (testbed/run.py): a peer
    then listens at once but logs, announces and dials nothing before t = 0."""
    node, log_path = file_node(tmp_path)
    node.clock.run_start = trio.current_time() + 5.0
    async with trio.open_nursery() as nursery:
        port = await nursery.start(node.run)
        assert port > 0
        with trio.socket.socket() as probe:  # the kernel queues a neighbour's early dial
            await probe.connect(("127.0.0.1", port))
        await trio.sleep(4.9)
        assert log_path.read_text() == ""
        await trio.sleep(1.0)
        records = lines_on_disk(log_path)
        assert records[0]["ev"] == "start" and 0 <= records[0]["t"] < 0.01
        nursery.cancel_scope.cancel()


def test_run_time_zero_on_trios_clock_ignores_a_preempted_reading():
    from peer.eventlog import clock_offset

    # trio's clock reads 100 + run time. The first reading of run time comes 20 ms late (the
    # process was preempted after reading trio's clock): its bracket alone would give 99.99.
    readings = iter([10.000, 10.0201, 10.0202, 10.0203, 10.0204, 10.0205, 10.0206, 10.0207,
                     10.0208, 10.0209])
    clock = iter([-89.980, -89.9798, -89.9796, -89.9794, -89.9792])
    run_time_offset, _ = clock_offset(lambda: next(readings), lambda: next(clock), rounds=5)
    offset = -run_time_offset  # trio's time at run time 0
    assert abs(offset - 100.0) < 1e-3
