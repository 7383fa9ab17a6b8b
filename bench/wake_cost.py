"""What one wake-up costs a trio process, against the same system calls without trio.

    .venv/bin/python -m bench.wake_cost            # ~20 s, one core
    .venv/bin/python -m bench.wake_cost --rounds 5

A peer spends most of its time blocked in ``epoll_wait``; every message, bucket refill and
timer wakes it. docs/capacity.md explains why that, not the bytes, is what a peer's CPU goes
on; this script measures it in one process, CPU time of the thread (``time.thread_time``), the
best of ``--rounds`` rounds of N cycles each:

- warm: a byte written to a socket pair, ``trio.lowlevel.wait_readable`` on the other end, the
  byte read; the loop never blocks, so the process keeps its caches.
- after a sleep: the same cycle after a 1 ms ``time.sleep`` (whose own CPU is not counted): the
  process gave up its CPU, as a peer does between events.
- blocking: ``wait_readable`` while another thread writes a byte every millisecond, so trio
  really blocks in ``epoll_wait`` and is woken; beside it, a bare ``select.epoll`` loop.
- timer: ``trio.sleep(0.001)`` (a cancel-scope deadline, delivered as a cancellation) against
  ``time.sleep(0.001)``.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import threading
import time
from collections.abc import Callable

import trio

CYCLES = 2000
PERIOD = 0.001


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def trio_cycle(after_sleep: bool) -> float:
    """us of CPU per write / wait_readable / read cycle in trio."""
    a, b = _pair()

    async def main() -> float:
        start, slept = time.thread_time(), 0.0
        for _ in range(CYCLES):
            if after_sleep:
                before = time.thread_time()
                time.sleep(PERIOD)
                slept += time.thread_time() - before
            os.write(a.fileno(), b"x")
            await trio.lowlevel.wait_readable(b.fileno())
            os.read(b.fileno(), 16)
        return (time.thread_time() - start - slept) / CYCLES * 1e6

    try:
        return trio.run(main)
    finally:
        a.close()
        b.close()


def _ticking_writer(fd: int, stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(PERIOD)
        try:
            os.write(fd, b"x")
        except OSError:
            return


def blocking(use_trio: bool) -> float:
    """us of CPU per wake-up of a reader blocked until another thread writes."""
    a, b = _pair()
    stop = threading.Event()
    writer = threading.Thread(target=_ticking_writer, args=(a.fileno(), stop))
    writer.start()

    async def with_trio() -> float:
        start = time.thread_time()
        for _ in range(CYCLES):
            await trio.lowlevel.wait_readable(b.fileno())
            os.read(b.fileno(), 256)
        return (time.thread_time() - start) / CYCLES * 1e6

    def bare() -> float:
        poller = select.epoll()
        poller.register(b.fileno(), select.EPOLLIN)
        start = time.thread_time()
        for _ in range(CYCLES):
            poller.poll(1.0)
            os.read(b.fileno(), 256)
        poller.close()
        return (time.thread_time() - start) / CYCLES * 1e6

    try:
        return trio.run(with_trio) if use_trio else bare()
    finally:
        stop.set()
        writer.join()
        a.close()
        b.close()


def timer(use_trio: bool) -> float:
    """us of CPU per 1 ms sleep."""
    if not use_trio:
        start = time.thread_time()
        for _ in range(CYCLES):
            time.sleep(PERIOD)
        return (time.thread_time() - start) / CYCLES * 1e6

    async def main() -> float:
        start = time.thread_time()
        for _ in range(CYCLES):
            await trio.sleep(PERIOD)
        return (time.thread_time() - start) / CYCLES * 1e6

    return trio.run(main)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds per case (the best is kept)")
    args = ap.parse_args()
    cases: list[tuple[str, Callable[[], float]]] = [
        ("trio cycle, warm", lambda: trio_cycle(False)),
        ("trio cycle after a 1 ms sleep", lambda: trio_cycle(True)),
        ("trio wait_readable, blocking", lambda: blocking(True)),
        ("bare epoll, blocking", lambda: blocking(False)),
        ("trio.sleep(1 ms)", lambda: timer(True)),
        ("time.sleep(1 ms)", lambda: timer(False)),
    ]
    print(f"us of CPU per wake-up, best of {args.rounds} rounds of {CYCLES}:")
    for name, case in cases:
        best = min(case() for _ in range(args.rounds))
        print(f"  {name:32s} {best:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
