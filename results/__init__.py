"""Results of a sweep: ``trials.csv``, ``curves.csv``, ``val_loss.png`` and ``best.json``.

Example:
    >>> from results import write_results
    >>> paths = write_results("runs/quick-20261122-101500", records)  # doctest: +SKIP
"""

from results.io import atomic_write_csv, atomic_write_json, atomic_write_text, write_results
from results.plots import plot_val_loss
from results.records import TrialRecord
from results.tables import best_trial, curves_table, format_leaderboard, trials_table

from results.experiment import load_experiment
from results.report import write_report

__all__ = [
    "TrialRecord",
    "trials_table",
    "curves_table",
    "best_trial",
    "format_leaderboard",
    "plot_val_loss",
    "write_results",
    "atomic_write_text",
    "atomic_write_csv",
    "atomic_write_json",
    "load_experiment",
    "write_report",
]
