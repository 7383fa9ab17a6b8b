"""Token buckets on trio's clock: one for a peer's whole upload, one for its download.

All connections of a peer share its upload bucket, as a capped access link would. A taker
reserves its tokens the moment it asks, then sleeps until its reservation is repaid: a later
taker's reservation comes on top of every earlier one, so takers pass in FIFO order by
construction, with no lock to queue on (a lock costs a task switch per take even when nobody
waits). The bucket may go into debt: a block is granted whole, and the taker that caused the
debt waits until it is repaid. While saturated the bucket never refills to its burst, so the
long-run rate is the configured rate exactly; ``burst`` only bounds how far an idle bucket can
run ahead.

A node puts its buckets on a grid of the run's clock (``set_grid``): a taker that must wait
sleeps until the first grid instant after its reservation is repaid. Every peer of a run shares
the grid, so the senders whose turn comes within the same ``WAKE_GRID`` wake together, their
blocks reach the receivers together, and the receivers' requests reach the senders together:
each process then handles several events per wake-up, and the wake-up, not the event, is what
costs a Python process (docs/capacity.md). The rate is unchanged (oversleeping credits the
elapsed time, and the step is kept under half the burst), and a send is late by less than one
step: a saturated sender's bytes leave in clumps of one step's worth (100 ms), which is below
what the analyses resolve (5 s rate windows, piece and completion times) but not below an
emulated link delay, so a peer with one uses ``WAKE_GRID_WITH_LATENCY``.

The grid's instants are the half steps of the run's clock (0.05 s, 0.15 s, ...), so that the
counters a peer logs on whole seconds fall between two clumps, never amid one: a rate taken
between two samples then counts whole clumps (512 KiB/s over one connection: every 5 s window
within 0.994-1.012 of the cap, against 0.974-1.031 with the instants shared; bench.bench_rate).
"""

from __future__ import annotations

import math

import trio

WAKE_GRID = 0.1
"""Seconds between the instants a waiting taker may wake at (see the module docstring)."""
WAKE_GRID_WITH_LATENCY = 0.02
"""The step for a peer that emulates link delays: its sends are late by under 20 ms."""


def on_grid(t: float, origin: float, step: float) -> float:
    """The first instant ``origin + k * step`` at or after ``t`` (k a whole number)."""
    return origin + math.ceil((t - origin) / step) * step


class TokenBucket:
    """``rate`` bytes/s (None = unlimited) with ``burst`` bytes of depth."""

    __slots__ = ("_grid_origin", "_grid_step", "_stamp", "_tokens", "burst", "rate", "taken")

    def __init__(self, rate: float | None, burst: float) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 or None, got {rate!r}")
        if burst <= 0:
            raise ValueError(f"burst must be > 0, got {burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst if math.isfinite(burst) else 0.0
        self._stamp: float | None = None
        self.taken = 0
        """Bytes granted so far: what the rate-fidelity benchmark compares with the cap."""
        self._grid_step = 0.0
        self._grid_origin = 0.0

    def set_grid(self, origin: float, step: float = WAKE_GRID) -> None:
        """Wake waiting takers only at ``origin + (k + 1/2) * step`` (trio's clock); ``step`` is
        capped at half the burst's worth of time, so oversleeping never runs into the burst
        cap."""
        if self.rate is not None and math.isfinite(self.burst):
            step = min(step, 0.5 * self.burst / self.rate)
        self._grid_step = step
        self._grid_origin = origin + step / 2

    @property
    def unlimited(self) -> bool:
        return self.rate is None

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: int) -> bool:
        """Wait until ``amount`` bytes may pass, in FIFO order with other takers. True if it
        slept (a checkpoint), False if the bytes passed at once (no checkpoint at all).

        Cancelled while it waits, the reservation is given back."""
        self.taken += amount
        if self.rate is None:
            return False
        now = trio.current_time()
        self._refill(now)
        self._tokens -= amount
        if self._tokens >= 0:
            return False
        # Sleep until the debt, every earlier reservation included, is repaid. Oversleeping
        # loses nothing: _refill credits the real elapsed time, capped only at the burst.
        deadline = now + (-self._tokens) / self.rate
        if self._grid_step:
            deadline = on_grid(deadline, self._grid_origin, self._grid_step)
        try:
            await trio.sleep_until(deadline)
        except trio.Cancelled:
            self.give_back(amount)
            raise
        return True

    def give_back(self, amount: int) -> None:
        """Return tokens taken for bytes that will not be sent after all (the neighbour was
        choked, or its connection closed, while they waited)."""
        self.taken -= amount
        if self.rate is not None:
            self._tokens = min(self.burst, self._tokens + amount)

    def tokens(self) -> float:
        """Current balance (negative while in debt), for tests and diagnostics."""
        if self.rate is None:
            return math.inf
        self._refill(trio.current_time())
        return self._tokens
