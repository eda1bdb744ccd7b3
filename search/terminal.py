"""A sweep's progress on the terminal, in Ray Tune's place (``--verbose`` brings Tune's back).

:class:`ProgressView`, a Ray Tune callback: one line per finished trial (how it ended, its metric,
the best so far, the time left), and on a terminal a status line redrawn in place. The C++ log
lines are kept off the terminal by :mod:`lstm_sweep.console`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

from ray.tune import Callback

from lstm_sweep.console import clock
from lstm_sweep.results.experiment import FAILED_OUTCOMES, epochs_reported
from lstm_sweep.search.budget import BudgetWatch

_SCHEDULER_NAMES = {"asha": "ASHA", "hyperband": "HyperBand", "median": "the median rule"}


class ProgressView(Callback):
    """A sweep's progress, in Ray Tune's place: a line per finished trial and a live status line.

    A finished trial's line::

        [1:54]  5/12  cce7970c  stopped by ASHA at epoch 4   val_loss 2.1757   best 1.9022 (65ca9c1a)   ~2:10 left

    A trial whose process died, started again (``resources.max_failures``)::

        [2:21]         3ee5f91f  failed (The actor is dead because its worker process has died): retry 1 of 2, from the start

    On a terminal a last line, redrawn once a second, says what runs now::

        [2:03]  running 2 · finished 5/12 · best val_loss 1.9022 (65ca9c1a)

    It is pickled with the Tuner (Ray Tune saves its callbacks for a resume): it holds no file
    or thread, and :meth:`setup` starts its counts afresh.
    """

    def __init__(self, metric: str, mode: str, max_epochs: int, num_samples: int, max_minutes: float = 0.0,
                 scheduler: str = "asha", budget: Any = None) -> None:
        self.metric, self.mode, self.max_epochs = metric, mode, max_epochs
        self.num_samples, self.max_minutes, self.scheduler = num_samples, max_minutes, scheduler
        self.budget = budget  # search.budget.SweepBudget: says when the time budget ended the trials
        self._reset()

    def _reset(self) -> None:
        self.started = time.monotonic()
        self.finished: dict[str, str] = {}  # trial id -> how it ended
        self.best: tuple[float, str] | None = None  # (value, trial id)
        self._status_shown = False
        self._drawn_at = 0.0
        # Ray ends the trials the time budget cut without on_trial_complete: the watch says which.
        self._watch = BudgetWatch(self.budget) if self.budget is not None else None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")} | {"_status_shown": False}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self._reset()
        self.num_samples = total_num_samples or num_samples or self.num_samples

    # ------------------------------------------------------------------ Ray Tune's events

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        value = result.get(self.metric)
        if result.get("val_on", "full") != "full" or not _finite(value):
            return  # a subset's value is noisier and not comparable: the best is a full validation's
        if self.best is None or (value < self.best[0] if self.mode == "min" else value > self.best[0]):
            self.best = (float(value), trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self._watch:
            self._watch.ended(trial)
        self._finished(trial, self._how_it_ended(trial.last_result or {}))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finished(trial, "failed: " + _error_line(trial))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        # Tune starts a trial whose process died again (resources.max_failures); Ray only says,
        # on a line of its own, that a worker died.
        start = "its last checkpoint" if trial.checkpoint is not None else "the start"
        why = _error_line(trial).split(". ")[0].rstrip(".")
        retry = f"retry {trial.num_failures}" + (f" of {trial.max_failures}" if trial.max_failures >= 0 else "")
        self._clear_status()
        print(f"[{clock(self.elapsed)}]  {' ' * len(self._count())}  {trial.trial_id}  "
              f"failed ({why}): {retry}, from {start}", flush=True)

    def on_step_end(self, iteration, trials, **info) -> None:
        self._say_cuts(trials)
        if not _is_terminal() or time.monotonic() - self._drawn_at < 1.0:
            return
        self._drawn_at = time.monotonic()
        running = sum(t.status == "RUNNING" for t in trials)
        line = f"[{clock(self.elapsed)}]  running {running} · finished {len(self.finished)}/{self.num_samples}"
        if self.best:
            line += f" · best {self.metric} {self.best[0]:.4f} ({self.best[1]})"
        sys.stdout.write("\r\x1b[K" + line[: _width() - 1])
        sys.stdout.flush()
        self._status_shown = True

    def on_experiment_end(self, trials, **info) -> None:
        self._say_cuts(trials)
        self._clear_status()

    # ------------------------------------------------------------------ the lines

    def _say_cuts(self, trials) -> None:
        for trial in self._watch.cut(trials) if self._watch else []:
            self._finished(trial, self._how_it_ended(trial.last_result or {}))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _finished(self, trial, how: str) -> None:
        self.finished[trial.trial_id] = how
        result = trial.last_result or {}
        value = result.get(self.metric)
        shown = f"{self.metric} {value:.4f}" if _finite(value) and not how.startswith(("failed", "infeasible")) else ""
        best = f"best {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
        parts = [f"[{clock(self.elapsed)}]", self._count(), trial.trial_id,
                 f"{how:<27}", f"{shown:<17}" if shown else "", best, self.time_left()]
        self._clear_status()
        print("  ".join(p for p in parts if p).rstrip(), flush=True)

    def _count(self) -> str:
        """The finished-trials column of a trial's line: `` 5/12``."""
        return f"{len(self.finished):>2}/{self.num_samples}"

    def _how_it_ended(self, result: dict) -> str:
        # With budget.reports_per_epoch above 1 a trial may stop within an epoch: epoch 0.5, 2.25.
        outcome, epochs = result.get("outcome") or "", epochs_reported(result)
        at = f"epoch {epochs:g}" if epochs else "the start"
        if outcome == "infeasible":
            return "infeasible: " + str(result.get("reason", ""))
        if outcome in FAILED_OUTCOMES:
            return "failed: " + str(result.get("reason", outcome))
        if outcome == "at_baseline":
            return f"at baseline, {at}"
        if epochs >= self.max_epochs:
            return f"completed {epochs:g} epoch{'s' * (epochs != 1)}"
        if self.budget is not None and self.budget.spent:
            return f"cut by the time budget at {at}"
        return f"stopped by {_SCHEDULER_NAMES.get(self.scheduler, self.scheduler)} at {at}"

    def time_left(self) -> str:
        """About how long the sweep still runs, when its trials or minutes bound it; "" when unknown."""
        done = len(self.finished)
        estimates = []
        if self.num_samples and 0 < done < self.num_samples:
            estimates.append(self.elapsed * (self.num_samples - done) / done)
        if self.max_minutes:
            estimates.append(self.max_minutes * 60 - self.elapsed)
        if not estimates or done >= self.num_samples:
            return ""
        return f"~{clock(max(0.0, min(estimates)))} left"

    def _clear_status(self) -> None:
        if self._status_shown:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self._status_shown = False


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _error_line(trial: Any) -> str:
    """The last line of a failed trial's error, as trials.csv keeps it (while Ray runs, from its
    session's copy of error.txt)."""
    from lstm_sweep.results.experiment import error_line, last_line

    return last_line(getattr(trial, "error_file", None)) or error_line(trial) or "its error.txt says why"


def _is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _width() -> int:
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 120
