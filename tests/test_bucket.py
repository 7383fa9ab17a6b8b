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
            # take() is a checkpoint only when it sleeps: a taker that got its bytes at once
            # lets the others run, as the connection writer does.
            if not await bucket.take(1000):
                await trio.lowlevel.checkpoint()
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


async def test_takers_pass_in_the_order_they_asked_without_a_lock(autojump_clock):
    bucket = TokenBucket(rate=1000, burst=1000)
    await bucket.take(1000)  # spend the burst
    start = trio.current_time()
    passed: list[tuple[str, float]] = []

    async def taker(name: str, amount: int) -> None:
        await bucket.take(amount)
        passed.append((name, trio.current_time() - start))

    async with trio.open_nursery() as nursery:
        for name, amount in (("a", 2000), ("b", 500), ("c", 1500)):
            nursery.start_soon(taker, name, amount)
            await trio.sleep(0.001)
    # Each reservation comes on top of every earlier one: a small one never jumps the queue.
    assert [name for name, _ in passed] == ["a", "b", "c"]
    assert [t for _, t in passed] == pytest.approx([2.0, 2.5, 4.0])


async def test_a_cancelled_taker_gives_its_reservation_back(autojump_clock):
    bucket = TokenBucket(rate=1000, burst=1000)
    await bucket.take(1000)
    with trio.move_on_after(0.5):
        await bucket.take(4000)
    assert bucket.taken == 1000
    # Half a second refilled 500 bytes; the cancelled 4000 are not owed.
    assert bucket.tokens() == pytest.approx(500)


async def test_give_back_returns_tokens_up_to_the_burst(autojump_clock):
    bucket = TokenBucket(rate=1000, burst=2000)
    await bucket.take(2000)
    bucket.give_back(1500)
    assert bucket.tokens() == pytest.approx(1500)
    assert bucket.taken == 500
    bucket.give_back(5000)
    assert bucket.tokens() == pytest.approx(2000)


async def test_long_run_rate_is_exact_with_batches_of_any_size(autojump_clock):
    rate = 512 * 1024
    bucket = TokenBucket(rate=rate, burst=2 * 16384)
    sent = [0, 0, 0]

    async def writer(i: int, batch: int) -> None:
        while True:
            if not await bucket.take(batch * 16384):
                await trio.lowlevel.checkpoint()
            sent[i] += batch * 16384
            await trio.sleep(0.0003 * i)  # a little scheduling jitter, different per writer

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i, batch in enumerate((1, 3, 4)):
            nursery.start_soon(writer, i, batch)
        await trio.sleep_until(start + 60.0)
        nursery.cancel_scope.cancel()
    # 60 s at the rate plus the burst, give or take the batches granted but not yet counted.
    assert abs(sum(sent) - (60 * rate + 2 * 16384)) <= 8 * 16384


async def test_on_a_grid_takers_wake_only_at_grid_instants_and_the_rate_stays_exact(
        autojump_clock):
    # 16 KiB blocks at 48 KiB/s: each repaid 1/3 s after the last, between grid instants.
    bucket = TokenBucket(rate=3 * 16384, burst=2 * 16384)
    origin = trio.current_time() + 0.013  # run time 0 need not be trio's 0
    bucket.set_grid(origin, step=0.02)
    woke = []
    for _ in range(2 + 300):  # the burst's two blocks pass at once
        if await bucket.take(16384):
            woke.append(trio.current_time())
    # On the half steps: the counters logged on whole seconds fall between two wake-ups.
    steps = [(t - origin) / 0.02 - 0.5 for t in woke]
    assert all(abs(k - round(k)) < 1e-6 for k in steps)
    # Late by less than one step each time, and never cumulatively: 300 blocks in 100 s.
    assert woke[-1] - woke[0] == pytest.approx(299 / 3, abs=0.02)
    assert bucket.taken == 302 * 16384


async def test_the_grid_step_stays_under_half_the_burst(autojump_clock):
    bucket = TokenBucket(rate=1_000_000, burst=16384)  # a 16 ms burst
    bucket.set_grid(trio.current_time(), step=0.02)
    start = trio.current_time()
    for _ in range(1 + 100):
        await bucket.take(16384)
    # Oversleeping past the burst would lose tokens and the rate with them.
    assert trio.current_time() - start == pytest.approx(100 * 16384 / 1_000_000, abs=0.01)
