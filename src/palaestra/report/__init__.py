"""Reports about stored runs: a self-contained HTML file (``palaestra report``), and the plots and views the
dashboard shares with it."""

from palaestra.report.compare import PairedComparison, paired_comparison
from palaestra.report.html import RunData, build_report, load_run, write_report

__all__ = ["PairedComparison", "RunData", "build_report", "load_run", "paired_comparison", "write_report"]
