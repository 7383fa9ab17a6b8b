"""Token buckets on trio's clock: one for a peer's whole upload, one for its download.

All connections of a peer share its upload bucket, as a capped access link would. Takers queue
in FIFO order (trio.Lock is fair), so no connection starves another. The bucket may go into
debt by one take: a 16 KiB block is sent whole, then the taker that caused the debt waits until
it is repaid. While saturated the bucket never refills to its burst, so the long-run rate is the
configured rate exactly; ``burst`` only bounds how far an idle bucket can run ahead.
"""

from __future__ import annotations

import math

import trio


class TokenBucket:
    """``rate`` bytes/s (None = unlimited) with ``burst`` bytes of depth."""

    def __init__(self, rate: float | None, burst: float) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 or None, got {rate!r}")
        if burst <= 0:
            raise ValueError(f"burst must be > 0, got {burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst if math.isfinite(burst) else 0.0
        self._stamp: float | None = None
        self._lock = trio.Lock()
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

    async def take(self, amount: int) -> None:
        """Wait until ``amount`` bytes may pass, in FIFO order with other takers."""
        self.taken += amount
        if self.rate is None:
            return
        async with self._lock:
            now = trio.current_time()
            self._refill(now)
            self._tokens -= amount
            if self._tokens < 0:
                # Sleep until the debt is repaid. Oversleeping loses nothing: _refill credits
                # the real elapsed time, capped only at the burst.
                await trio.sleep_until(now + (-self._tokens) / self.rate)

    def tokens(self) -> float:
        """Current balance (negative while in debt), for tests and diagnostics."""
        if self.rate is None:
            return math.inf
        self._refill(trio.current_time())
        return self._tokens
