"""The delay line's due times and order (sans-I/O), the peer-id table, and the trio stream that
releases messages at their due times (MockClock: exact virtual times, no real sleeping)."""

import itertools
import random

import pytest
import trio
import trio.testing

from peer.config import LinkDelays
from peer.delayed import DelayedStream, Links, releasing
from peer.delayline import DelayLine, DelayTable


def test_due_is_handover_plus_delay():
    line = DelayLine(delay=0.05)
    assert line.push(b"a", 1.0) == pytest.approx(1.05)
    assert line.push(b"b", 1.2) == pytest.approx(1.25)
    assert line.next_due == pytest.approx(1.05)


def test_jitter_never_reorders_and_stays_within_bounds():
    line = DelayLine(delay=0.1, jitter=0.05, rng=random.Random(3))
    dues = [line.push(bytes([i % 256]), i * 0.001) for i in range(2000)]
    assert dues == sorted(dues)
    # Each due is at least its own earliest (now + delay - jitter) and at most the latest of
    # the messages handed over before it.
    for i, due in enumerate(dues):
        assert i * 0.001 + 0.05 - 1e-12 <= due <= i * 0.001 + 0.15 + 1e-12
    # The jitter really varies the gaps (a line that ignored it would space them evenly).
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(dues)}
    assert len(gaps) > 100


def test_jitter_larger_than_delay_never_goes_back_in_time():
    line = DelayLine(delay=0.0, jitter=0.01, rng=random.Random(1))
    assert all(line.push(b"x", 5.0) >= 5.0 for _ in range(100))


def test_pop_due_releases_in_order_only_what_is_due():
    line = DelayLine(delay=0.2)
    line.push(b"first", 0.0)
    line.push(b"second", 0.1)
    assert line.pending_bytes == 11
    assert line.pop_due(0.19) == []
    assert line.pop_due(0.2) == [b"first"]
    assert line.pop_due(10.0) == [b"second"]
    assert line.next_due is None and len(line) == 0 and line.pending_bytes == 0


def test_a_later_delay_change_keeps_order():
    line = DelayLine(delay=0.3)
    first = line.push(b"a", 0.0)
    line.set_link(0.0, 0.0)
    assert line.push(b"b", 0.1) == first  # not before the message already in flight


def test_table_finds_ranges_and_falls_back_to_the_default():
    delays = LinkDelays(default=0.01, jitter=0.002, tracker=0.03, peers=(
        ("-TB0100-000000000000", "-TB0100-000000000000", 0.1, 0.0),
        ("-TB0100-000000000002", "-TB0100-000000000040", 0.05, 0.01)))
    table = DelayTable(delays)
    assert table.lookup(b"-TB0100-000000000000") == (0.1, 0.0)
    assert table.lookup(b"-TB0100-000000000001") == (0.01, 0.002)
    assert table.lookup(b"-TB0100-000000000002") == (0.05, 0.01)
    assert table.lookup(b"-TB0100-000000000040") == (0.05, 0.01)
    assert table.lookup(b"-TB0100-000000000041") == (0.01, 0.002)
    assert table.lookup(b"-qB4650-\xff\x00abcdefghij") == (0.01, 0.002)


def test_no_delays_means_inactive():
    assert not LinkDelays().active
    assert LinkDelays(tracker=0.01).active
    assert LinkDelays(peers=(("a", "b", 0.0, 0.0),)).active is False


async def test_stream_releases_each_message_at_its_due_time(autojump_clock):
    left, right = trio.testing.memory_stream_pair()
    stream = DelayedStream(left, DelayLine(delay=0.2))
    arrivals: list[tuple[float, bytes]] = []
    start = trio.current_time()

    async def receive() -> None:
        while True:
            data = await right.receive_some(1000)
            arrivals.append((trio.current_time() - start, data))

    async def guard(task) -> None:
        await task()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        async with releasing(stream, guard):
            await stream.send_all(b"one")
            await trio.sleep(0.05)
            await stream.send_all(b"two")
            await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert arrivals == [(pytest.approx(0.2), b"one"), (pytest.approx(0.25), b"two")]


async def test_stream_holds_the_sender_back_past_its_in_flight_bound(autojump_clock):
    left, right = trio.testing.memory_stream_pair()
    stream = DelayedStream(left, DelayLine(delay=1.0), max_in_flight=100)

    async def drain() -> None:
        while True:
            await right.receive_some(1000)

    async def guard(task) -> None:
        await task()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        async with releasing(stream, guard):
            start = trio.current_time()
            await stream.send_all(b"x" * 100)
            assert trio.current_time() == start  # within the bound: handed over at once
            await stream.send_all(b"y" * 10)
            # The line held 100 bytes: the next waits until the first is released at 1 s.
            assert trio.current_time() - start == pytest.approx(1.0)
        nursery.cancel_scope.cancel()


async def test_links_hold_the_initiators_handshake_and_answer_a_round_trip_later(
        autojump_clock):
    links = Links(LinkDelays(default=0.07), seed=1)
    left, right = trio.testing.memory_stream_pair()
    stream = links.wrap(left)
    start = trio.current_time()

    async def guard(task) -> None:
        await task()

    async with releasing(stream, guard):
        delay = await links.handshake(stream, b"-TB0100-000000000009", answer=b"hello")
        assert delay == 0.07 and stream.line.delay == 0.07
        # Their handshake is held for one way; ours arrives one more way later.
        assert trio.current_time() - start == pytest.approx(0.07)
        assert await right.receive_some(100) == b"hello"
        assert trio.current_time() - start == pytest.approx(0.14)


async def test_links_delay_a_tracker_exchange_both_ways(autojump_clock):
    links = Links(LinkDelays(tracker=0.1), seed=1)
    seen: list[float] = []
    start = trio.current_time()

    async def exchange() -> str:
        seen.append(trio.current_time() - start)
        return "answer"

    assert await links.tracker_exchange(exchange, round_trips=2) == "answer"
    # Two round trips (TCP's handshake, then the request and its answer): the tracker sees the
    # request after one and a half, the answer is back after two.
    assert seen == [pytest.approx(0.3)]
    assert trio.current_time() - start == pytest.approx(0.4)
