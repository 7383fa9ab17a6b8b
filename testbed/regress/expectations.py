"""Expectations files: what ``testbed check`` holds a results set to. Bounds on metrics
(``median_completion: {max: 20}``), ``all_complete``, and/or a baseline results set with
tolerances; the format is documented in docs/regression.md. Errors name the file, the key and
the line, as topology errors do (the reader and checks are testbed.yamlfile's)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.regress.metrics import METRICS, Tolerance, metric_of, parse_tolerance
from testbed.regress.stats import DEFAULT_ALPHA
from testbed.yamlfile import (
    FieldChecker,
    InputFileError,
    YamlDocument,
    closest_match,
    read_text_file,
    read_yaml,
)

__all__ = [
    "Bound",
    "Expectations",
    "ExpectationsError",
    "load_expectations",
    "parse_expectations",
]


class ExpectationsError(InputFileError):
    """An expectations file that cannot be used: ``file``, ``key`` and ``line`` say where."""

    unnamed = "<expectations>"


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
_EMPTY = "empty file: give bounds (e.g. median_completion: {max: 20}) and/or a baseline"


def load_expectations(path: Path) -> Expectations:
    """Read and check an expectations file; raises ``ExpectationsError`` naming file, key, line."""
    text = read_text_file(path, "an expectations file", ExpectationsError)
    return parse_expectations(text, file=str(path), base_dir=Path(path).parent)


def parse_expectations(text: str, *, file: str = "<expectations>",
                       base_dir: Path | None = None) -> Expectations:
    """Check an expectations file given as text; ``baseline`` is relative to ``base_dir``."""
    if not text.strip() or all(line.lstrip().startswith("#") or not line.strip()
                                for line in text.splitlines()):
        raise ExpectationsError(_EMPTY, file=file, line=1)
    document = read_yaml(text, file, error=ExpectationsError, empty=_EMPTY)
    return _ExpectationsChecker(document, file, base_dir).expectations(document.value)


def _metric_names_hint(name: str) -> str:
    metrics = [m for m in METRICS if m != "all_complete"]
    close = closest_match(name, [*_TOP_KEYS, *metrics])
    hint = f"did you mean '{close}'? " if close else ""
    per_group = ", ".join(f"{m.name}[GROUP]" for m in METRICS.values() if m.per_group)
    return (f"{hint}known keys: {', '.join(_TOP_KEYS)}; metrics: {', '.join(metrics)} "
            f"(per group: {per_group})")


class _ExpectationsChecker(FieldChecker):
    """Turns the plain YAML value into ``Expectations``; every complaint gets its line."""

    def __init__(self, document: YamlDocument, file: str, base_dir: Path | None) -> None:
        super().__init__(document, file, ExpectationsError)
        self.base_dir = base_dir

    def expectations(self, value: Any) -> Expectations:
        if not isinstance(value, dict):
            self.fail("", "expected a mapping of metric names to bounds at the top level")
        settings: dict[str, Callable[[Any, str], Any]] = {
            "all_complete": self.flag, "baseline": self.baseline, "tolerance": self.tolerance,
            "alpha": self.alpha}
        given: dict[str, Any] = {}
        bounds: list[Bound] = []
        tolerances: dict[str, Tolerance] = {}
        for key, item in value.items():
            if key in settings:
                given[key] = settings[key](item, key)
                continue
            bound, worse_by = self.metric(item, key)
            if worse_by is not None:
                tolerances[key] = worse_by
            if bound is not None:
                bounds.append(bound)
        baseline, tolerance = given.get("baseline"), given.get("tolerance")
        if (tolerances or tolerance is not None) and baseline is None:
            key = next(iter(tolerances), "tolerance")
            self.fail(f"{key}.worse_by" if key in tolerances else key,
                      "a tolerance needs a baseline: add 'baseline: PATH'")
        if given.get("all_complete") is None and not bounds and baseline is None:
            self.fail("", "no expectations: give bounds (e.g. median_completion: {max: 20}), "
                          "all_complete: true and/or a baseline")
        return Expectations(file=self.file, all_complete=given.get("all_complete"),
                            bounds=tuple(bounds), baseline=baseline, tolerances=tolerances,
                            tolerance=tolerance, alpha=given.get("alpha", DEFAULT_ALPHA))

    # -- settings -------------------------------------------------------------------------

    def flag(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {value!r}")
        return value

    def baseline(self, value: Any, path: str) -> Path:
        """A results set that exists, relative to the expectations file."""
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "expected the path of a results set (or run directory)")
        baseline = Path(value) if self.base_dir is None or Path(value).is_absolute() \
            else self.base_dir / value
        if not baseline.exists():
            self.fail(path, f"{baseline}: no such results set")
        return baseline

    def tolerance(self, value: Any, path: str) -> Tolerance:
        try:
            return parse_tolerance(value)
        except ValueError as exc:
            self.fail(path, str(exc))

    def alpha(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            self.fail(path, f"expected a significance level in (0, 1), got {value!r}")
        return float(value)

    # -- metrics --------------------------------------------------------------------------

    def metric(self, value: Any, name: str) -> tuple[Bound | None, Tolerance | None]:
        """``{min: X, max: Y, worse_by: T}`` for metric ``name``: its bound, if it has one,
        and its tolerance against the baseline, if given."""
        if metric_of(name) is None:
            self.fail(name, f"unknown metric '{name}'; {_metric_names_hint(name)}", key=True)
        if not isinstance(value, dict) or not value:
            self.fail(name, f"expected {{min: X}}, {{max: X}} and/or {{worse_by: 10%}}, "
                            f"got {value!r}")
        limits: dict[str, float] = {}
        worse_by = None
        for key, item in value.items():
            path = f"{name}.{key}"
            if key not in _METRIC_KEYS:
                self.fail(path, f"unknown key '{key}'; expected one of "
                                f"{', '.join(_METRIC_KEYS)}", key=True)
            if key == "worse_by":
                worse_by = self.tolerance(item, path)
            else:
                limits[key] = self.number(item, path)
        low, high = limits.get("min"), limits.get("max")
        if low is not None and high is not None and low > high:
            self.fail(name, f"min {low:g} is above max {high:g}")
        bound = Bound(name, low, high) if low is not None or high is not None else None
        return bound, worse_by

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            self.fail(path, f"expected a number, got {value!r}")
        return float(value)
