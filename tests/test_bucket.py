"""Token bucket timing under trio's MockClock: exact virtual times, no real sleeping."""

import pytest
import trio

from peer.bucket import TokenBucket


async def test_full_bucket_passes_burst_at_once(autojump_clock):
    bucket = TokenBucket(rate=1000, burst=4000)
    start = trio.current_time()
    await bucket.take(4000)
    assert trio.current_time() == start


async def test_saturated_rate_is_exact(autojump_clock):
    bucket = TokenBucket(rate=16384, burst=16384)
    start = trio.current_time()
    for _ in range(11):
        await bucket.take(16384)
    # The first block spends the initial burst; ten more take exactly ten seconds.
    assert trio.current_time() - start == pytest.approx(10.0)


async def test_debt_is_repaid_before_the_next_take(autojump_clock):
    bucket = TokenBucket(rate=1000, burst=1000)
    start = trio.current_time()
    await bucket.take(3000)  # 2000 bytes of debt: two seconds
    assert trio.current_time() - start == pytest.approx(2.0)
    assert bucket.tokens() == pytest.approx(0.0)


async def test_idle_bucket_refills_only_to_burst(autojump_clock):
    bucket = TokenBucket(rate=1000, burst=2000)
    await bucket.take(2000)
    await trio.sleep(100)
    assert bucket.tokens() == pytest.approx(2000)
    start = trio.current_time()
    await bucket.take(3000)
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_shared_bucket_is_fair_and_exact(autojump_clock):
    bucket = TokenBucket(rate=10_000, burst=1000)
    sent = [0, 0, 0, 0]

    async def connection(i: int) -> None:
        while True:
            await bucket.take(1000)
            sent[i] += 1000

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(connection, i)
        await trio.sleep_until(start + 10.0)
        nursery.cancel_scope.cancel()
    total = sum(sent)
    # 10 s at 10 kB/s plus the initial burst, give or take one block in flight.
    assert abs(total - (100_000 + 1000)) <= 1000
    # FIFO order: every connection gets the same share to within one block.
    assert max(sent) - min(sent) <= 1000


async def test_unlimited_never_waits(autojump_clock):
    bucket = TokenBucket(rate=None, burst=float("inf"))
    start = trio.current_time()
    for _ in range(1000):
        await bucket.take(1 << 20)
    assert trio.current_time() == start
    assert bucket.taken == 1000 << 20


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=10)
    with pytest.raises(ValueError):
        TokenBucket(rate=10, burst=0)
