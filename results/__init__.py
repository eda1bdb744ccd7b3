"""Results of a sweep: ``trials.csv``, ``curves.csv``, ``val_loss.png`` and ``best.json``.

Example:
    >>> from lstm_sweep.results import write_results
    >>> paths = write_results("runs/quick-20261122-101500", records)  # doctest: +SKIP
"""

from lstm_sweep.results.io import atomic_write_csv, atomic_write_json, atomic_write_text, write_results
from lstm_sweep.results.plots import plot_val_loss
from lstm_sweep.results.records import TrialRecord
from lstm_sweep.results.tables import best_trial, curves_table, format_leaderboard, trials_table

from lstm_sweep.results.experiment import load_experiment
from lstm_sweep.results.report import write_report

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
