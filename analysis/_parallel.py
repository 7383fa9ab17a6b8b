"""Reading many peer logs at once: decoding threads beside the main one, and a big run's
second half of logs in a forked process. The tables are the same whichever way they were read
(logs are joined in file order); only the time differs."""

from __future__ import annotations

import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from analysis._columns import Columns, add_log
from analysis._fastpath import decode_peer_log


def read_logs_here(logs: list[Path], threads: int) -> tuple[Columns, list[str]]:
    """The logs' columns, read in this process: while the main thread turns one log into
    columns, ``threads`` threads decode the next ones (file reads and pandas' CSV tokenizer
    release the GIL)."""
    acc = Columns()
    warnings: list[str] = []
    # In file order, so that the tables do not depend on which thread finished first.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for decoded in pool.map(decode_peer_log, logs):
            add_log(decoded, acc, warnings)
    return acc, warnings


def _read_in_child(logs: list[Path], threads: int) -> tuple[Columns, list[str]]:
    gc.disable()  # as in the parent: the child is short-lived and makes millions of objects
    return read_logs_here(logs, threads)


def read_peer_logs(logs: list[Path], warnings: list[str], *, threads: int, parallel: bool,
                   min_bytes: int) -> Columns:
    """Every peer log's columns, decoded in ``threads`` threads beside the main one. With
    ``parallel`` and at least ``min_bytes`` of logs, they are split in two by bytes: a forked
    process reads the second half while this one reads the first."""
    sizes = []
    for log in logs:
        try:
            sizes.append(log.stat().st_size)
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    if not parallel or total < min_bytes or (os.cpu_count() or 1) < 2 or \
            "fork" not in multiprocessing.get_all_start_methods():
        acc, found = read_logs_here(logs, threads)
        warnings.extend(found)
        return acc
    cut, running = len(logs), 0
    for i, size in enumerate(sizes):
        running += size
        if running >= total / 2:
            cut = i + 1
            break
    first, second = logs[:cut], logs[cut:]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_read_in_child, second, threads)
        acc, found = read_logs_here(first, threads)
        warnings.extend(found)
        try:
            other, found = future.result()
        except BrokenProcessPool:  # the child died (e.g. out of memory): read it here
            other, found = read_logs_here(second, threads)
    warnings.extend(found)
    acc.extend(other)
    return acc
