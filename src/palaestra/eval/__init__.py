"""Evaluation: confidence intervals, normalised scores, run summaries and averages over tasks."""

from palaestra.eval.stats import bootstrap_ci
from palaestra.eval.suite import TaskAverage, average_score, task_averages
from palaestra.eval.summary import RunSummary, summarize, summarize_run

__all__ = ["RunSummary", "TaskAverage", "average_score", "bootstrap_ci", "summarize", "summarize_run", "task_averages"]
