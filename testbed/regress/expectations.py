"""Expectations files: what ``testbed check`` holds a results set to. Bounds on metrics
(``median_completion: {max: 20}``), ``all_complete``, and/or a baseline results set with
tolerances; the format is documented in docs/regression.md."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

from testbed.regress.metrics import METRICS, Tolerance, metric_of, parse_tolerance
from testbed.regress.stats import DEFAULT_ALPHA
from testbed.topology import TopologyError, read_text_file

__all__ = [
    "Bound",
    "Expectations",
    "ExpectationsError",
    "load_expectations",
    "parse_expectations",
]


class ExpectationsError(TopologyError):
    """An expectations file that cannot be used: ``file``, ``key`` and ``line`` say where."""


@dataclass(frozen=True, slots=True)
class Bound:
    metric: str
    min: float | None = None
    max: float | None = None

    def __str__(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"≥ {self.min:g}")
        if self.max is not None:
            parts.append(f"≤ {self.max:g}")
        return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class Expectations:
    file: str
    all_complete: bool | None = None
    bounds: tuple[Bound, ...] = ()
    baseline: Path | None = None
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    """Per-metric ``worse_by`` (overrides the default tolerance) when comparing to the baseline."""
    tolerance: Tolerance | None = None
    """``tolerance:``: replaces every metric's default tolerance for the baseline comparison."""
    alpha: float = DEFAULT_ALPHA


_TOP_KEYS = ("baseline", "tolerance", "alpha", "all_complete")
_METRIC_KEYS = ("min", "max", "worse_by")


def _metric_names_hint(name: str) -> str:
    valid = [*_TOP_KEYS, *[m for m in METRICS if m != "all_complete"]]
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    per_group = ", ".join(f"{m.name}[GROUP]" for m in METRICS.values() if m.per_group)
    return (f"{hint}known keys: {', '.join(_TOP_KEYS)}; metrics: "
            f"{', '.join(m for m in METRICS if m != 'all_complete')} (per group: {per_group})")


def parse_expectations(text: str, *, file: str = "<expectations>",
                       base_dir: Path | None = None) -> Expectations:
    """Check an expectations file given as text; ``baseline`` is relative to ``base_dir``."""
    from testbed.topology import _read_yaml  # the YAML reader that keeps every line

    if not text.strip() or all(line.lstrip().startswith("#") or not line.strip()
                                for line in text.splitlines()):
        raise ExpectationsError("empty file: give bounds (e.g. median_completion: {max: 20}) "
                                "and/or a baseline", file=file, line=1)
    try:
        value, lines, key_lines = _read_yaml(text, file)
    except TopologyError as exc:
        raise ExpectationsError(exc.message, file=file, key=exc.key, line=exc.line) from None

    def fail(key: str, message: str, *, at_key: bool = False) -> ExpectationsError:
        line = key_lines.get(key) if at_key else lines.get(key, key_lines.get(key))
        return ExpectationsError(message, file=file, key=key or None, line=line)

    if not isinstance(value, dict):
        raise fail("", "expected a mapping of metric names to bounds at the top level")
    all_complete = None
    bounds: list[Bound] = []
    tolerances: dict[str, Tolerance] = {}
    baseline = None
    tolerance = None
    alpha = DEFAULT_ALPHA
    for key, item in value.items():
        if key == "all_complete":
            if not isinstance(item, bool):
                raise fail(key, f"expected true or false, got {item!r}")
            all_complete = item
        elif key == "baseline":
            if not isinstance(item, str) or not item.strip():
                raise fail(key, "expected the path of a results set (or run directory)")
            baseline = Path(item) if base_dir is None or Path(item).is_absolute() \
                else base_dir / item
            if not baseline.exists():
                raise fail(key, f"{baseline}: no such results set")
        elif key == "tolerance":
            try:
                tolerance = parse_tolerance(item)
            except ValueError as exc:
                raise fail(key, str(exc)) from None
        elif key == "alpha":
            if isinstance(item, bool) or not isinstance(item, int | float) \
                    or not 0 < item < 1:
                raise fail(key, f"expected a significance level in (0, 1), got {item!r}")
            alpha = float(item)
        else:
            metric = metric_of(key)
            if metric is None:
                raise fail(key, f"unknown metric '{key}'; {_metric_names_hint(key)}",
                           at_key=True)
            if not isinstance(item, dict) or not item:
                raise fail(key, "expected {min: X}, {max: X} and/or {worse_by: 10%}, "
                           f"got {item!r}")
            low = high = None
            for sub, v in item.items():
                path = f"{key}.{sub}"
                if sub not in _METRIC_KEYS:
                    raise fail(path, f"unknown key '{sub}'; expected one of "
                               f"{', '.join(_METRIC_KEYS)}", at_key=True)
                if sub == "worse_by":
                    try:
                        tolerances[key] = parse_tolerance(v)
                    except ValueError as exc:
                        raise fail(path, str(exc)) from None
                    continue
                if isinstance(v, bool) or not isinstance(v, int | float) \
                        or not math.isfinite(v):
                    raise fail(path, f"expected a number, got {v!r}")
                if sub == "min":
                    low = float(v)
                else:
                    high = float(v)
            if low is not None and high is not None and low > high:
                raise fail(key, f"min {low:g} is above max {high:g}")
            if low is not None or high is not None:
                bounds.append(Bound(key, low, high))
    if (tolerances or tolerance is not None) and baseline is None:
        key = next(iter(tolerances), "tolerance")
        raise fail(f"{key}.worse_by" if key in tolerances else key,
                   "a tolerance needs a baseline: add 'baseline: PATH'")
    if all_complete is None and not bounds and baseline is None:
        raise fail("", "no expectations: give bounds (e.g. median_completion: {max: 20}), "
                   "all_complete: true and/or a baseline")
    return Expectations(file=file, all_complete=all_complete, bounds=tuple(bounds),
                        baseline=baseline, tolerances=tolerances, tolerance=tolerance,
                        alpha=alpha)


def load_expectations(path: Path) -> Expectations:
    """Read and check an expectations file; raises ``ExpectationsError`` naming file, key, line."""
    text = read_text_file(path, "an expectations file", ExpectationsError)
    return parse_expectations(text, file=str(path), base_dir=Path(path).parent)
