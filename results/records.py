"""One trial of a sweep as plain data, and the small rules every table and plot share.

A :class:`TrialRecord` is what ``results`` needs to know about a trial, with no Ray object in
it: its parameters, its per-epoch history and how it ended. ``results.experiment`` builds them
from a Ray Tune experiment folder; tests build them by hand.

The shared rules live here so that ``trials.csv``, the plot legend, ``best.json`` and the
leaderboard can never disagree about which trial is best:

* a trial's best value is the min (``mode="min"``) or max (``mode="max"``) over the *finite*
  values of the metric in its history's full-validation rows; NaN and +-inf (a diverged epoch)
  never win, nor does an in-epoch report on the validation subset (``val_on: subset``: other,
  fewer sentences, so noisier and not comparable with the whole split);
* trials are ranked by that value, trials with no finite value last, ties broken by
  ``trial_id`` so the order is the same on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

STATUSES = ("completed", "early_stopped", "failed", "infeasible")
MODES = ("min", "max")
# Columns every history has (when it has any row); curves.csv starts with them, in this order.
HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "val_loss_padded", "seconds")
# Which sentences a history row was scored on: "full" (the whole validation split, every epoch's
# end) or "subset" (an in-epoch report, budget.reports_per_epoch); a history without it is all full.
VAL_ON = "val_on"


@dataclass(eq=False)  # eq=False: comparing DataFrames with == has no single truth value
class TrialRecord:
    """Everything ``results`` knows about one trial: parameters, per-epoch history, outcome.

    Args:
        trial_id: Ray Tune's id of the trial, unique within a sweep.
        status: ``completed`` | ``early_stopped`` (ASHA, or the baseline rule, stopped it) | ``failed`` (it raised, or
            the sweep ended before it did) | ``infeasible`` (refused before training, e.g. it
            cannot fit in memory).
        params: the trial's hyperparameters, e.g. ``{"hidden_size": 64, "learning_rate": 3e-3}``.
        history: one row per report with columns ``epoch`` (1-based; fractional for an
            in-epoch report), ``loss``, ``val_loss``, ``val_loss_padded``, ``seconds`` (spent in
            that epoch), possibly more (``val_on``: ``full`` or ``subset``); empty for a trial that
            ended before its first report.
        seconds: wall time of the whole trial.
        node: the node it ran on (hostname or IP).
        error: one line saying why a failed or infeasible trial ended.
        extra: further per-trial values, written to ``trials.csv`` after the parameters, in
            insertion order (e.g. ``batch_size_used``, ``oom_retries``).

    Example:
        >>> history = pd.DataFrame({"epoch": [1, 2], "loss": [5.1, 4.2], "val_loss": [5.0, 4.4],
        ...                         "val_loss_padded": [4.1, 3.6], "seconds": [12.0, 11.5]})
        >>> record = TrialRecord("t0", "completed", {"hidden_size": 64}, history, seconds=24.0)
        >>> record.epochs
        2
    """

    trial_id: str
    status: str
    params: dict[str, Any]
    history: pd.DataFrame = field(repr=False)  # a frame in a repr buries the rest
    seconds: float
    node: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.trial_id, str) or not self.trial_id:
            raise ValueError(f"trial_id={self.trial_id!r} must be a non-empty string")
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} of trial {self.trial_id} must be one of {STATUSES}")
        if not isinstance(self.params, dict):
            raise ValueError(f"params of trial {self.trial_id} must be a dict, got {type(self.params).__name__}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra of trial {self.trial_id} must be a dict, got {type(self.extra).__name__}")
        if not isinstance(self.history, pd.DataFrame):
            raise ValueError(f"history of trial {self.trial_id} must be a pandas DataFrame "
                             f"(empty if it ran no epoch), got {type(self.history).__name__}")
        if len(self.history) and "epoch" not in self.history.columns:
            raise ValueError(f"history of trial {self.trial_id} has rows but no 'epoch' column "
                             f"(columns: {list(self.history.columns)})")

    @property
    def epochs(self) -> int:
        """Number of epochs the trial finished (its full-validation reports)."""
        return len(full_validation(self.history))

    def __repr__(self) -> str:
        return (f"TrialRecord(trial_id={self.trial_id!r}, status={self.status!r}, params={self.params!r}, "
                f"epochs={self.epochs}, seconds={self.seconds!r}, node={self.node!r}, error={self.error!r})")


def check_metric_mode(metric: str, mode: str) -> None:
    """Raise ``ValueError`` unless ``metric`` is a non-empty string and ``mode`` is min or max."""
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric={metric!r} must be a non-empty column name of the history, e.g. 'val_loss'")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} must be 'min' (lower is better) or 'max' (higher is better)")


def check_records(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """``records`` as a list, after checking each is a :class:`TrialRecord` and ids are unique."""
    if isinstance(records, (TrialRecord, str, bytes, pd.DataFrame)):
        raise ValueError(f"records must be a sequence of TrialRecord, got a single {type(records).__name__}")
    records = list(records)
    seen: set[str] = set()
    for i, record in enumerate(records):
        if not isinstance(record, TrialRecord):
            raise ValueError(f"records[{i}] is a {type(record).__name__}, not a TrialRecord")
        if record.trial_id in seen:
            # Two rows for one trial would make every count and join downstream wrong.
            raise ValueError(f"trial_id {record.trial_id!r} appears twice in records: ids must be unique")
        seen.add(record.trial_id)
    return records


def full_validation(history: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``history`` scored on the whole validation split: all but the in-epoch
    reports (``val_on: subset``)."""
    if VAL_ON not in history.columns:
        return history
    return history[history[VAL_ON].astype(str) != "subset"]


def metric_values(record: TrialRecord, metric: str, full_only: bool = False) -> np.ndarray:
    """The metric per report as floats, in history order; NaN where missing or not finite.
    ``full_only``: the full-validation rows alone (:func:`full_validation`)."""
    history = full_validation(record.history) if full_only else record.history
    if metric not in history.columns:
        return np.full(len(history), np.nan)
    values = pd.to_numeric(history[metric], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def epoch_numbers(record: TrialRecord, full_only: bool = False) -> np.ndarray:
    """The history's epoch column as floats (NaN where missing); empty for an empty history."""
    history = full_validation(record.history) if full_only else record.history
    if not len(history):
        return np.empty(0)
    return pd.to_numeric(history["epoch"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def best_value(record: TrialRecord, metric: str = "val_loss", mode: str = "min") -> tuple[float, int | None]:
    """``(best value, epoch it was reached)`` of one trial; ``(nan, None)`` if it has no finite value.

    The first epoch reaching the best value wins, as Keras' ``EarlyStopping`` and Ray's
    checkpoint ranking would keep it.
    """
    values = metric_values(record, metric, full_only=True)
    if not np.isfinite(values).any():
        return math.nan, None
    i = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values))
    epoch = epoch_numbers(record, full_only=True)[i]
    return float(values[i]), (int(epoch) if np.isfinite(epoch) else i + 1)


def last_value(record: TrialRecord, metric: str = "val_loss") -> float:
    """The metric at the trial's last finished epoch (NaN if none, or if it diverged there)."""
    values = metric_values(record, metric, full_only=True)
    return float(values[-1]) if len(values) else math.nan


def rank_records(records: Sequence[TrialRecord], metric: str = "val_loss",
                 mode: str = "min") -> list[tuple[TrialRecord, float, int | None]]:
    """``(record, best value, best epoch)`` for every record, best first, no-value trials last.

    Ties (and the no-value trials among themselves) are ordered by ``trial_id``.
    """
    check_metric_mode(metric, mode)
    scored = [(record, *best_value(record, metric, mode)) for record in check_records(records)]
    sign = 1.0 if mode == "min" else -1.0

    def key(item: tuple[TrialRecord, float, int | None]) -> tuple[bool, float, str]:
        record, value, _ = item
        reported = math.isfinite(value)
        return (not reported, sign * value if reported else 0.0, record.trial_id)

    return sorted(scored, key=key)


def status_counts(records: Sequence[TrialRecord]) -> dict[str, int]:
    """How many trials ended in each status, in the order of :data:`STATUSES`, zeros left out."""
    counts = {status: 0 for status in STATUSES}
    for record in records:
        counts[record.status] += 1
    return {status: n for status, n in counts.items() if n}
