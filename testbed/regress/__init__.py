"""Regression runs: results sets, expectations files, rank statistics and verdicts.

A *results set* is one topology run K times with seeds s, s+1, … s+K−1 (``testbed run
--repeat K``). ``testbed check`` holds a results set to an *expectations file* (bounds on
metrics and/or a baseline results set with tolerances); ``testbed compare`` holds a candidate
results set to a baseline one. docs/regression.md is the user's guide.

- ``stats``: sample summaries and the exact one-sided Mann-Whitney U test;
- ``metrics``: the metric catalogue, tolerances, and one run directory's figures;
- ``results``: results sets (``load_results``) and ``testbed run --repeat`` (``run_repeated``);
- ``expectations``: expectations files;
- ``verdicts``: ``compare`` and ``check``, one ``Row`` per metric in a ``Comparison``;
- ``report``: the plain-text tables.

pandas is imported only when metrics are computed from a run directory, so ``testbed run`` and
the ``testbed`` command start quickly.
"""

from __future__ import annotations

from testbed.regress.expectations import (
    Bound,
    Expectations,
    ExpectationsError,
    load_expectations,
    parse_expectations,
)
from testbed.regress.metrics import (
    METRICS,
    Direction,
    Metric,
    RegressError,
    Tolerance,
    metric_of,
    parse_tolerance,
    run_metrics,
)
from testbed.regress.report import format_report, format_set
from testbed.regress.results import (
    RESULTS_FILE,
    RESULTS_SCHEMA,
    Repetition,
    ResultsSet,
    load_results,
    run_repeated,
)
from testbed.regress.stats import DEFAULT_ALPHA, mann_whitney_p, min_p
from testbed.regress.verdicts import Comparison, Row, Verdict, check, compare, compare_metric

__all__ = [
    "DEFAULT_ALPHA",
    "METRICS",
    "RESULTS_FILE",
    "RESULTS_SCHEMA",
    "Bound",
    "Comparison",
    "Direction",
    "Expectations",
    "ExpectationsError",
    "Metric",
    "RegressError",
    "Repetition",
    "ResultsSet",
    "Row",
    "Tolerance",
    "Verdict",
    "check",
    "compare",
    "compare_metric",
    "format_report",
    "format_set",
    "load_expectations",
    "load_results",
    "mann_whitney_p",
    "metric_of",
    "min_p",
    "parse_expectations",
    "parse_tolerance",
    "run_metrics",
    "run_repeated",
]
