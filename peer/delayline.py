"""Propagation delay on a link, sans-I/O: when each message to a neighbour reaches the socket.

A message's due time is the time it was handed over (after the upload token bucket: first
serialisation, then propagation, as on a real access link) plus the link's one-way delay and a
jitter sample, but never earlier than the due time of the message before it on the same
connection: TCP delivers a stream in order, so jitter stretches gaps and never reorders.

No clock and no I/O here: times are passed in. ``peer/delayed.py`` releases the messages on
trio's clock; ``DelayTable`` finds a neighbour's delay from its peer id (``LinkDelays``).
"""

from __future__ import annotations

import bisect
import random
from collections import deque

from peer.config import LinkDelays

__all__ = ["DelayLine", "DelayTable"]


class DelayLine:
    """The messages in flight on one connection, in order, each with its due time."""

    def __init__(self, delay: float = 0.0, jitter: float = 0.0,
                 rng: random.Random | None = None) -> None:
        self.delay = delay
        self.jitter = jitter
        self._rng = rng or random.Random(0)
        self._queue: deque[tuple[float, bytes]] = deque()
        self._last_due = float("-inf")
        self.pending_bytes = 0
        """Bytes handed over and not yet due and released."""

    def set_link(self, delay: float, jitter: float) -> None:
        """The link's delay from now on (known once the neighbour's handshake names it)."""
        self.delay = delay
        self.jitter = jitter

    def due(self, now: float) -> float:
        """The due time of a message handed over at ``now``; later messages come no earlier."""
        delay = self.delay
        if self.jitter:
            delay = max(0.0, delay + self._rng.uniform(-self.jitter, self.jitter))
        due = max(now + delay, self._last_due)
        self._last_due = due
        return due

    def push(self, data: bytes, now: float) -> float:
        """Put ``data`` on the line at ``now``; returns its due time."""
        due = self.due(now)
        self._queue.append((due, data))
        self.pending_bytes += len(data)
        return due

    @property
    def next_due(self) -> float | None:
        """When the oldest message is due (None: nothing in flight)."""
        return self._queue[0][0] if self._queue else None

    def pop_due(self, now: float) -> list[bytes]:
        """Every message due at ``now`` or earlier, oldest first, taken off the line."""
        queue, out = self._queue, []
        while queue and queue[0][0] <= now:
            out.append(queue.popleft()[1])
        self.pending_bytes -= sum(len(data) for data in out)
        return out

    def __len__(self) -> int:
        return len(self._queue)


class DelayTable:
    """A neighbour's one-way delay and jitter from its peer id (``LinkDelays.peers``)."""

    def __init__(self, delays: LinkDelays) -> None:
        self.delays = delays
        self._firsts = [first for first, _, _, _ in delays.peers]

    def lookup(self, peer_id: bytes) -> tuple[float, float]:
        """(delay, jitter) in seconds to the peer with ``peer_id``; the default if no range
        names it."""
        text = peer_id.decode("latin-1")
        i = bisect.bisect_right(self._firsts, text) - 1
        if i >= 0:
            _, last, delay, jitter = self.delays.peers[i]
            if text <= last:
                return delay, jitter
        return self.delays.default, self.delays.jitter
