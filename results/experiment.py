"""Read a Ray Tune experiment folder back into :class:`TrialRecord` objects.

Works from the files alone (Ray Tune's ``experiment_state-*.json`` and each trial's
``result.json``), with no Ray cluster running, so ``lstm-sweep report`` can rebuild the
tables of a finished, crashed or copied run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from lstm_sweep.results.records import TrialRecord, full_validation

# Columns of a trial's history, from what the trainable reports each epoch (and within one:
# ``val_on`` says which reports were scored on the validation subset, ``steps`` counts optimizer steps).
HISTORY_COLUMNS = {"epoch": "epoch", "val_on": "val_on", "steps": "steps", "loss": "loss", "val_loss": "val_loss",
                   "val_loss_padded": "val_loss_padded", "epoch_seconds": "seconds",
                   "accuracy": "accuracy", "val_accuracy": "val_accuracy"}  # the last two: a classifier's
# The factor a sweep scaled a trial's predicted peaks by, once its trials measured above their
# predictions (search.resources.CORRECTION_KEY): in the trial's config, shown beside the plan's
# figures rather than among the hyperparameters.
CORRECTION_COLUMN = "memory_correction"
# Per-trial figures of the memory model and the OOM safety net, and the metric's baseline
# (search.trainable: what a model that ignores the context scores), from the trial's last report.
MEMORY_COLUMNS = ("batch_size_requested", "batch_size_used", "predicted_peak_mb", "measured_peak_mb",
                  "budget_mb", "gpu_share", "oom_retries", "baseline", "device", CORRECTION_COLUMN)
# The trials the sweep's time budget ended before budget.max_epochs (search.budget.BudgetCuts
# writes it), and the words their reason starts with, which results.analysis looks for.
BUDGET_CUTS_FILE = "budget_cuts.json"
BUDGET_CUT_WORDS = "cut by the sweep's time budget"
# A trial's last report says why it failed: out of memory after its retries, or planned for a
# GPU that its node's TensorFlow does not see.
FAILED_OUTCOMES = ("out_of_memory", "no_gpu")


def load_experiment(experiment_dir: str | Path, max_epochs: int) -> list[TrialRecord]:
    """One :class:`TrialRecord` per trial of the Ray Tune experiment in ``experiment_dir``,
    in the order the trials were proposed.

    A trial's status is ``infeasible`` when it reported that it fits in memory at no batch
    size (it never trained), ``failed`` when Ray recorded an error or the trial gave up after
    out-of-memory errors, ``completed`` when it finished ``max_epochs`` epochs, and
    ``early_stopped`` when it ended sooner (ASHA stopped it, it was no better than its
    baseline: ``asha.stop_at_baseline``, or the time budget ended it: ``budget_cuts.json``
    beside ``experiment_dir``; the last two say so in ``error``).

    Example:
        >>> records = load_experiment("runs/quick-20261122-101500/ray", max_epochs=4)  # doctest: +SKIP
        >>> records[0].status  # doctest: +SKIP
        'completed'
    """
    from ray.tune import ExperimentAnalysis

    if max_epochs < 1:
        raise ValueError(f"max_epochs={max_epochs} must be >= 1")
    # Absolute: Ray reads a relative path as a URI without a scheme and fails.
    analysis = ExperimentAnalysis(str(Path(experiment_dir).resolve()))
    frames = analysis.trial_dataframes
    cuts = read_budget_cuts(Path(experiment_dir).parent)  # the run folder's
    return [_record(trial, frames.get(trial.trial_id, pd.DataFrame()), max_epochs, cuts.get(trial.trial_id))
            for trial in sorted(analysis.trials, key=_start_order)]


def read_budget_cuts(run_dir: str | Path) -> dict[str, float]:
    """``{trial_id: epoch}`` of the trials the time budget ended in ``run_dir`` (its
    ``budget_cuts.json``); {} when none did: no budget, the sweep ended first, or a folder from
    before this record (whose budget-cut trials read as stopped by the scheduler).

    Example:
        >>> read_budget_cuts("runs/quick-20261122-101500")  # doctest: +SKIP
        {'51a32d1e': 3.0}
    """
    path = Path(run_dir) / BUDGET_CUTS_FILE
    if not path.is_file():
        return {}
    trials = json.loads(path.read_text()).get("trials") or {}
    return {str(k): float(v) for k, v in trials.items()}


def budget_cut_reason(epoch: float) -> str:
    """A budget-cut trial's reason: ``"cut by the sweep's time budget at epoch 2.5"``."""
    return f"{BUDGET_CUT_WORDS} at epoch {round(epoch, 2):g}" if epoch else f"{BUDGET_CUT_WORDS} before its first report"


def epochs_reported(result: dict) -> float:
    """How far a trial's last result took it, in epochs, to two places: 2.5 within an epoch
    (``budget.reports_per_epoch`` above 1), Tune's iteration count for a result without an
    ``epoch``, 0.0 for none or a value that is not a finite number.

    Example:
        >>> epochs_reported({"epoch": 2.5000001}), epochs_reported({"training_iteration": 3}), epochs_reported({})
        (2.5, 3.0, 0.0)
    """
    value = result.get("epoch", result.get("training_iteration", 0))
    try:
        epochs = float(value or 0)
    except (TypeError, ValueError):
        return 0.0
    return round(epochs, 2) if math.isfinite(epochs) else 0.0


def _start_order(trial: Any) -> tuple[int, str]:
    # Tune tags trials "<n>_<params>" in the order the searcher proposed them; the trial
    # ids themselves are random, so they would shuffle the rows from one run to the next.
    number = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return (int(number) if number.isdigit() else 1 << 30, trial.trial_id)


def _record(trial: Any, frame: pd.DataFrame, max_epochs: int, cut_at: float | None = None) -> TrialRecord:
    history = _history(frame)
    epochs = len(full_validation(history))  # finished epochs: in-epoch reports do not count
    error = error_line(trial)
    last = frame.iloc[-1] if len(frame) else pd.Series(dtype=object)
    outcome = str(last.get("outcome", "") or "") if len(frame) else ""
    if outcome == "nan":
        outcome = ""
    if trial.status == "ERROR":
        status = "failed"
    elif outcome == "infeasible":
        status, error = "infeasible", str(last.get("reason", ""))
    elif outcome in FAILED_OUTCOMES:
        status, error = "failed", str(last.get("reason", ""))
    elif epochs >= max_epochs:
        status = "completed"
    elif trial.status == "TERMINATED":
        status = "early_stopped"  # by ASHA, the baseline stop or the time budget: the latter two say so
        if outcome == "at_baseline":
            error = str(last.get("reason", ""))
        elif cut_at is not None:
            error = budget_cut_reason(cut_at)
    else:  # PENDING / RUNNING / PAUSED: the driver stopped before the trial ended
        status = "failed"
        error = error or f"unfinished ({trial.status.lower()}) when the sweep stopped"
    return TrialRecord(
        trial_id=trial.trial_id,
        status=status,
        params={k: v for k, v in trial.config.items() if k != CORRECTION_COLUMN},
        history=history,
        seconds=float(last.get("time_total_s", 0.0)) if len(frame) else 0.0,
        node=str(last.get("node", "")) if len(frame) else "",
        error=error,
        extra={c: last[c] for c in MEMORY_COLUMNS if c in last.index and pd.notna(last[c])},
    )


def _history(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty or "val_loss" not in frame:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS.values()))
    frame = frame[frame["epoch"] > 0] if "epoch" in frame else frame  # an infeasible trial's report
    history = frame[[c for c in HISTORY_COLUMNS if c in frame]].rename(columns=HISTORY_COLUMNS)
    # A trial restored from a checkpoint may repeat an epoch it had reported before the
    # crash; the later report is the one its checkpoint continues from.
    return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def error_line(trial: Any) -> str:
    """The last line of a failed trial's error.txt, "" when there is none."""
    # From the trial's folder in the run folder: Trial.error_file points into the Ray session's
    # staging folder, and asks for a running Ray (`lstm-sweep report` has none).
    name = trial.run_metadata.error_filename
    if not name or not trial.path:
        return ""
    return last_line(Path(trial.path, name))


def last_line(path: str | Path | None) -> str:
    """The last non-blank line of the file at ``path`` (300 characters at most); "" when there is
    no such file or line."""
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except (OSError, TypeError):
        return ""
    return lines[-1][:300] if lines else ""
