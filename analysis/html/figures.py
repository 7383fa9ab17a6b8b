"""Figures of several runs: a results set's repetitions, a sweep's metrics against its
parameters, and both sides of a comparison. Each returns inline SVG text (plots.figure_svg)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from analysis.plots import figure_svg


def _grid(n: int, width: float = 2.6, height: float = 2.3) -> tuple[Any, list[Any]]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 0.4, height * rows),
                             squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def side_by_side(panels: Sequence[tuple[str, Sequence[Sequence[float]], Sequence[str]]],
                 prefix: str, title: str) -> str:
    """One small panel per metric: every sample's values as dots at its x position, with its
    median as a bar. ``panels``: (metric, samples, sample labels)."""
    fig, axes = _grid(len(panels))
    for ax, (metric, samples, labels) in zip(axes, panels, strict=True):
        for x, values in enumerate(samples):
            if not values:
                continue
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
            ax.plot(np.asarray(jitter) + x, values, "o", color=f"C{x}", alpha=0.8,
                    markersize=5)
            ax.hlines(statistics.median(values), x - 0.3, x + 0.3, color="black")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return figure_svg(fig, prefix)


def completion_cdfs(curves: Mapping[str, Sequence[float]], totals: Mapping[str, int],
                    prefix: str) -> str:
    """Every repetition's completion-time CDF on one axes (non-finishers count in n)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, times in curves.items():
        n = max(totals.get(label, len(times)), 1)
        x = np.concatenate([[0.0], np.sort(np.asarray(times, float))])
        y = np.arange(len(x)) / n
        ax.step(x, y, where="post", label=f"{label} (n={n})")
    ax.set_xlabel("completion time since arrival (s)")
    ax.set_ylabel("fraction of leechers completed")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Completion time CDF, every repetition")
    return figure_svg(fig, prefix)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def metric_against_param(rows: Sequence[Mapping[str, Any]], metric: str,
                         params: Sequence[str], prefix: str) -> str:
    """``metric`` against each swept parameter (one panel each): the median over the runs at a
    value (repetitions, and every value of the other parameters for each line) with a bar from
    the minimum to the maximum. Values keep the order they were swept in."""
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params) + 0.6, 3.2),
                             squeeze=False)
    for ax, param in zip(axes[0], params, strict=True):
        values = list(dict.fromkeys(_label(r.get(param)) for r in rows))
        numeric = all(_number(r.get(param)) is not None for r in rows)
        others = [p for p in params if p != param]
        lines: dict[str, dict[str, list[float]]] = {}
        for r in rows:
            y = _number(r.get(metric))
            if y is None:
                continue
            line = ", ".join(f"{p.rsplit('.', 1)[-1]}={_label(r.get(p))}" for p in others)
            lines.setdefault(line, {}).setdefault(_label(r.get(param)), []).append(y)
        for k, (line, by_value) in enumerate(lines.items()):
            xs = [v for v in values if v in by_value]
            pos = [float(v) for v in xs] if numeric else [values.index(v) for v in xs]
            med = [statistics.median(by_value[v]) for v in xs]
            lo = [m - min(by_value[v]) for m, v in zip(med, xs, strict=True)]
            hi = [max(by_value[v]) - m for m, v in zip(med, xs, strict=True)]
            ax.errorbar(pos, med, yerr=[lo, hi], marker="o", capsize=3, color=f"C{k % 10}",
                        label=line or None)
        if numeric:  # the swept values themselves, not matplotlib's round numbers
            ax.set_xticks([float(v) for v in values], values, fontsize=8)
        else:
            ax.set_xticks(range(len(values)), values, fontsize=8)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if any(lines) and len(lines) > 1:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{metric}: median over repetitions, bars min to max", fontsize=10)
    return figure_svg(fig, prefix)


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
