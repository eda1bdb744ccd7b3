"""The searcher: Ray Tune's ``OptunaSearch`` (TPE) with its study kept in SQLite in the run folder.

The study in ``RUN_DIR/optuna.db`` is what ``optuna-dashboard sqlite:///RUN_DIR/optuna.db``
shows while the sweep runs and after it. Ray Tune still owns the searcher's state for a
resume: it pickles the searcher (the storage reconnects by its URL) with every experiment
checkpoint.

Its own module so that the class can be unpickled from ``tuner.pkl`` when a sweep resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger("lstm_sweep.search")

STUDY_FILE = "optuna.db"


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that lets a trial report again after its study trial has finished.

    After the driver is killed, the SQLite study can be ahead of the searcher state that Ray
    Tune checkpointed (every 10 s or so): a trial that finished in between is resumed from its
    checkpoint, and its next report would raise ``UpdateFinishedTrialError`` in Optuna and
    stop the whole sweep. The study already holds that trial's result; the report is dropped.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.debug("trial %s: its Optuna trial has already finished; report not recorded", trial_id)


def make_searcher(run_dir: str | Path, seed: int, n_startup_trials: int) -> ResumableOptunaSearch:
    """A seeded TPE searcher whose study lives in ``run_dir/optuna.db``, named after the run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial is noise
    path = (Path(run_dir) / STUDY_FILE).resolve()  # absolute: the URL is kept as given
    return ResumableOptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials),
        storage=optuna.storages.RDBStorage(f"sqlite:///{path}"),
        study_name=Path(run_dir).name,
    )
