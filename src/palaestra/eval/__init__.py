"""Evaluation: confidence intervals, normalised scores and run summaries."""

from palaestra.eval.stats import bootstrap_ci
from palaestra.eval.summary import RunSummary, summarize, summarize_run

__all__ = ["RunSummary", "bootstrap_ci", "summarize", "summarize_run"]
