"""Token buckets on trio's clock: one for a peer's whole upload, one for its download.

All connections of a peer share its upload bucket, as a capped access link would. A taker
reserves its tokens the moment it asks, then sleeps until its reservation is repaid: a later
taker's reservation comes on top of every earlier one, so takers pass in FIFO order by
construction, with no lock to queue on (a lock costs a task switch per take even when nobody
waits). The bucket may go into debt: a block is granted whole, and the taker that caused the
debt waits until it is repaid. While saturated the bucket never refills to its burst, so the
long-run rate is the configured rate exactly; ``burst`` only bounds how far an idle bucket can
run ahead.
"""

from __future__ import annotations

import math

import trio


class TokenBucket:
    """``rate`` bytes/s (None = unlimited) with ``burst`` bytes of depth."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate", "taken")

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
        try:
            await trio.sleep_until(now + (-self._tokens) / self.rate)
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
