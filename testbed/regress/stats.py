"""Statistics of a handful of repetitions: a summary of each sample, and the exact one-sided
Mann-Whitney U test that verdicts rest on.

Why a rank test: real processes on a shared machine make every figure noisy, and with a handful
of repetitions nothing is known about the shape of the noise. The Mann-Whitney U test (exact, by
enumerating every split of the pooled values) assumes nothing about it. It is a few lines here
rather than a scipy dependency.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_ALPHA", "mann_whitney_p", "midranks", "min_p", "summarize"]

DEFAULT_ALPHA = 0.05
"""The significance level of the rank test unless an expectations file or --alpha says."""

_EXACT_LIMIT = 200_000
_MONTE_CARLO = 20_000


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """``{"n", "median", "min", "max", "values"}`` of a sample (None for an empty one): the
    form in which reports and JSON verdicts show each side of a comparison."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "values": []}
    return {"n": len(values), "median": statistics.median(values), "min": min(values),
            "max": max(values), "values": list(values)}


def midranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney_p(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value of the Mann-Whitney U test for "x tends to be larger than y".

    U = pairs (x_i, y_j) with x_i > y_j, ties counting one half = (rank sum of x) − n(n+1)/2
    with mid-ranks. Exact: the share of all C(n+m, n) ways of splitting the pooled values into
    groups of n and m whose U is at least the observed one (conditional on the pooled values,
    so ties keep it exact). Above 200 000 splits, 20 000 random splits with a fixed seed.
    1.0 when either sample is empty.
    """
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return 1.0
    ranks = midranks([*x, *y])
    # U and the rank sum differ by a constant: compare rank sums directly.
    observed = sum(ranks[:n]) - 1e-9
    total = math.comb(n + m, n)
    if total <= _EXACT_LIMIT:
        hits = sum(sum(c) >= observed for c in itertools.combinations(ranks, n))
        return hits / total
    rng = random.Random(0)
    hits = sum(sum(rng.sample(ranks, n)) >= observed for _ in range(_MONTE_CARLO))
    return (hits + 1) / (_MONTE_CARLO + 1)


def min_p(n: int, m: int) -> float:
    """The smallest p-value ``mann_whitney_p`` can give for samples of n and m (no ties)."""
    return 1.0 / math.comb(n + m, n) if n and m else 1.0
