"""The task-CPU instrument (peer/taskcpu.py): steps charged to where the peer's code resumed."""

from __future__ import annotations

import gc
import json

import trio

from peer.bucket import TokenBucket
from peer.taskcpu import AFTER_RUN, BEFORE_RUN, SCHEDULER, WAKING, TaskCpu, gc_key


def test_steps_are_charged_to_the_peer_code_they_resume_in(tmp_path):
    instrument = TaskCpu()

    async def main() -> None:
        bucket = TokenBucket(1_000_000, 1.0)
        for _ in range(3):
            await bucket.take(10_000)  # each waits 10 ms in the bucket's own sleep

    trio.run(main, instruments=[instrument])
    bucket_steps = {where: steps for where, (_, steps) in instrument.totals.items()
                    if where in ("sleep_until", "TokenBucket.take")}
    assert sum(bucket_steps.values()) == 3  # one resumption per sleep
    assert instrument.totals[WAKING][1] >= 3  # each sleep came back from the I/O wait
    assert SCHEDULER in instrument.totals
    out = tmp_path / "p.json"
    instrument.dump(out)
    data = json.loads(out.read_text())
    assert data["process_cpu"] > 0 and set(data["by_step"]) == set(instrument.totals)
    # The process's CPU before and after the run, outside every step, is charged on its own.
    before, after = data["by_step"][BEFORE_RUN][0], data["by_step"][AFTER_RUN][0]
    assert 0 < before <= data["process_cpu"] and 0 <= after <= data["process_cpu"] - before
    assert not list(tmp_path.glob("*.part"))


def test_garbage_collections_are_timed_by_generation_during_the_run_only():
    instrument = TaskCpu()

    async def main() -> None:
        gc.collect(0)
        gc.collect(2)
        await trio.sleep(0)

    trio.run(main, instruments=[instrument])
    assert instrument.totals[gc_key(0)][1] >= 1
    assert instrument.totals[gc_key(2)][1] >= 1
    assert instrument._on_gc not in gc.callbacks
    collections = instrument.totals[gc_key(2)][1]
    gc.collect(2)  # after the run: not counted
    assert instrument.totals[gc_key(2)][1] == collections
