"""RateMeter's running total gives exactly the rate of a plain sum over the window's bins."""

from __future__ import annotations

import random

import pytest

from peer.neighbour import RateMeter


def plain_rate(meter: RateMeter, now: float, window: float) -> float:
    horizon = now - window
    total = sum(amount for second, amount in meter.bins if second + 1 > horizon)
    return total / max(1.0, min(window, now - meter.start))


@pytest.mark.parametrize("seed", range(5))
def test_the_rate_equals_the_sum_over_the_window_at_any_time(seed):
    rng = random.Random(seed)
    meter = RateMeter(window=20.0, now=0.3)
    now = 0.3
    for _ in range(2000):
        now += rng.choice((0.001, 0.05, 0.4, 1.0, 3.7, 25.0))
        if rng.random() < 0.7:
            meter.add(rng.choice((1, 16384, 3 * 16384)), now)
        for window in (None, 3.0, 20.0, 30.0):
            expected = plain_rate(meter, now, meter.window if window is None else window)
            assert meter.rate(now, window) == expected
        assert meter.total == sum(amount for _, amount in meter.bins)
