"""Link delays on trio: a stream whose sends reach the socket at their due times, the task that
releases them, and the delays of handshakes and tracker exchanges.

Only a peer with delays configured (``PeerConfig.delays``, topology ``latency``) uses any of
this; without, the node writes to its sockets directly, with no extra task or await. The due
times are ``peer.delayline``'s.

Each peer delays what it sends by the whole one-way delay of the link (its access delay plus
its neighbour's, or the topology's ``links`` override), so a round trip is twice that. A
neighbour's delay is known once its handshake names its peer id; until then nothing but our
own handshake is sent, and the initiator's handshake, which went out before the initiator knew
whom it had dialled, is held by the receiver for the delay instead (``Links.handshake``). The
TCP connection itself opens at once (its three-way handshake is not delayed).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

from peer.config import LinkDelays
from peer.delayline import DelayLine, DelayTable

__all__ = ["MAX_IN_FLIGHT", "DelayedStream", "Links", "releasing"]

MAX_IN_FLIGHT = 8 * 1024 * 1024
"""Bytes a connection may have on its delay line before the writer waits, as a TCP window
bounds what is in flight; well above any bucket's burst and a pipeline of 250 blocks."""

T = TypeVar("T")


class DelayedStream(trio.abc.Stream):
    """``stream`` with a delay line in front of its sends; receives pass straight through."""

    def __init__(self, stream: trio.abc.Stream, line: DelayLine, *,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.stream = stream
        self.line = line
        self.max_in_flight = max_in_flight
        self._pushed = trio.Event()
        self._released = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Hand ``data`` to the line (at once, unless the line is full); it reaches the socket
        at its due time, in order."""
        while self.line.pending_bytes >= self.max_in_flight:
            self._released = trio.Event()
            await self._released.wait()
        self.line.push(bytes(data), trio.current_time())
        self._pushed.set()
        await trio.lowlevel.checkpoint()  # a send is a checkpoint, as a socket's is

    def pushed(self) -> None:
        """Something was put on the line directly: wake the release task."""
        self._pushed.set()

    async def release(self) -> None:
        """The release task: write each message to the socket at its due time."""
        line, stream = self.line, self.stream
        while True:
            due = line.next_due
            if due is None:
                self._pushed = trio.Event()
                await self._pushed.wait()
                continue
            await trio.sleep_until(due)
            parts = line.pop_due(trio.current_time())
            self._released.set()
            await stream.send_all(parts[0] if len(parts) == 1 else b"".join(parts))

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def releasing(stream: trio.abc.Stream,
                    guard: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]
                    ) -> AsyncIterator[None]:
    """Run a ``DelayedStream``'s release task (under ``guard``, which turns a broken socket
    into the connection's close) for the body's duration; nothing for a plain stream. What is
    still in flight when the connection ends is dropped."""
    if not isinstance(stream, DelayedStream):
        yield
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(guard, stream.release)
        yield
        nursery.cancel_scope.cancel()


class Links:
    """A peer's link delays: wraps its connections' streams and delays its handshakes and
    tracker exchanges. ``seed`` seeds the jitter of every connection."""

    def __init__(self, delays: LinkDelays, *, seed: int) -> None:
        self.delays = delays
        self.table = DelayTable(delays)
        self._rng = random.Random(f"links {seed}")

    def wrap(self, stream: trio.abc.Stream) -> DelayedStream:
        # Undelayed until the handshake names the neighbour: only our handshake goes before.
        return DelayedStream(stream, DelayLine(rng=random.Random(self._rng.getrandbits(64))))

    async def handshake(self, stream: trio.abc.Stream, peer_id: bytes, *,
                        answer: bytes | None = None) -> float:
        """The neighbour ``peer_id`` has sent its handshake: set the link's delay and return
        it. With ``answer`` (our handshake, on a connection we accepted), hold their handshake
        for the delay, the time it would have taken to arrive (from when we read it, so a
        round trip is never shorter than configured), and send ours from then on: it is on the
        line at once, so the two waits overlap and add no scheduling to the round trip."""
        delay, jitter = self.table.lookup(peer_id)
        assert isinstance(stream, DelayedStream)
        line = stream.line
        line.set_link(delay, jitter)
        if answer is not None:
            arrived = line.due(trio.current_time())
            line.push(answer, arrived)
            stream.pushed()
            await trio.sleep_until(arrived)
        return delay

    async def tracker_exchange(self, exchange: Callable[[], Awaitable[T]], *,
                               round_trips: int) -> T:
        """Await ``exchange`` as if the tracker were ``delays.tracker`` away each way and the
        exchange took ``round_trips`` round trips: the tracker sees the request after all but
        the last half round trip, the answer comes back after that."""
        one_way = self.delays.tracker
        await trio.sleep(one_way * (2 * round_trips - 1))
        result = await exchange()
        await trio.sleep(one_way)
        return result
