"""Analyses of a run directory: pandas tables, the metrics of docs/analysis.md, figures, reports.

    from analysis import load_run, metrics
    run = load_run("runs/flash_crowd-20250101-120000")
    metrics.completion_by_group(run)

See docs/analysis.md for every table's columns and every metric's formula.
"""

from analysis import metrics
from analysis.load import EXTERNAL, AnalysisError, Run, load_run
from analysis.metrics import jain
from analysis.report import cli_analyze, format_text, headline, write_analysis

__all__ = ["EXTERNAL", "AnalysisError", "Run", "cli_analyze", "format_text", "headline", "jain",
           "load_run", "metrics", "write_analysis"]
