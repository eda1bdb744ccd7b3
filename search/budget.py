"""The sweep's time budget (``budget.max_minutes``) as Ray Tune's stopper, and the trials it cut.

Ray Tune ends every running trial when the budget is spent
(``TuneController._stop_experiment_if_needed``), but without ``on_trial_complete``: callbacks
only see those trials TERMINATED at the next ``on_step_end``, and Ray's records then hold
nothing that tells them from a trial ASHA stopped; a winner the budget cut mid-way would
read "stopped by ASHA". So the budget is :class:`SweepBudget`, Ray's own ``TimeoutStopper``
(what ``TuneConfig(time_budget_s=...)`` builds, with the same accounting: the seconds between
the controller's steps, kept across a resume) that also notes the moment it was spent; and
:class:`BudgetCuts`, a Tune callback, which knows the trials that were running at the end of
each step while there was budget left, and at the step that spent it keeps those that Ray
ended there short of ``budget.max_epochs`` in ``RUN_DIR/budget_cuts.json``::

    {"budget_s": 300.0, "spent_at": 1796314031.6, "trials": {"51a32d1e": 3.0, "b7d049e2": 3.5}}

which ``results.experiment.load_experiment`` reads: such a trial is ``early_stopped`` in
``trials.csv`` with the reason "cut by the sweep's time budget at epoch 3", and the report and
the terminal say "cut by the time budget". A trial that ended on its own in that same step
(ASHA, the baseline stop, its last epoch) came through ``on_trial_complete`` first and is no
cut. Both objects go into the Tuner's run config together, so a resumed sweep's pickled
copies still share one stopper.

Example:
    >>> budget = SweepBudget(300)  # doctest: +SKIP
    >>> tune.RunConfig(stop=budget, callbacks=[BudgetCuts(budget, run_dir, max_epochs=4)])  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.stopper import TimeoutStopper

from lstm_sweep.results.experiment import BUDGET_CUTS_FILE, FAILED_OUTCOMES, epochs_reported, read_budget_cuts


class SweepBudget(TimeoutStopper):
    """Ray Tune's ``TimeoutStopper`` for ``seconds`` that remembers when it stopped the sweep
    (``spent_at``, ``time.time()``; None while there is budget left)."""

    def __init__(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds) \
                or seconds <= 0:
            raise ValueError(f"seconds={seconds!r} must be a positive number of seconds")
        super().__init__(float(seconds))
        self.spent_at: float | None = None

    @property
    def seconds(self) -> float:
        return float(self._timeout_seconds)

    @property
    def spent(self) -> bool:
        return self.spent_at is not None

    def stop_all(self) -> bool:
        spent = super().stop_all()
        if spent and self.spent_at is None:
            self.spent_at = time.time()
        return spent


class BudgetWatch:
    """Which trials ``budget`` ended, for a Tune callback: Ray ends them without
    ``on_trial_complete`` (see the module's docstring). The callback passes on its
    ``on_trial_complete`` (:meth:`ended`) and ``on_step_end`` (:meth:`cut`); :meth:`cut` returns
    the trials the budget ended once, at the step that spent it, and [] at every other."""

    def __init__(self, budget: SweepBudget) -> None:
        if not isinstance(budget, SweepBudget):
            raise ValueError(f"budget must be a SweepBudget, got {type(budget).__name__}")
        self.budget = budget
        self._running: set[str] = set()  # at the last step's end, while there was budget left
        self._ended: set[str] = set()  # through on_trial_complete: ASHA, the baseline stop, the last epoch
        self._told = False

    def ended(self, trial: Trial) -> None:
        self._ended.add(trial.trial_id)

    def cut(self, trials: list[Trial]) -> list[Trial]:
        if not self.budget.spent:
            self._running = {t.trial_id for t in trials if t.status in (Trial.RUNNING, Trial.PAUSED)}
            return []
        if self._told:
            return []
        self._told = True
        return [t for t in trials if t.trial_id in self._running and t.trial_id not in self._ended
                and t.status == Trial.TERMINATED]


class BudgetCuts(Callback):
    """Keeps, in ``run_dir/budget_cuts.json``, each trial that ``budget`` stopped before its
    ``max_epochs``: those running when it was spent that did not end on their own."""

    ENDED_ON_THEIR_OWN = ("at_baseline", "infeasible", *FAILED_OUTCOMES)

    def __init__(self, budget: SweepBudget, run_dir: str | Path, max_epochs: int) -> None:
        self.watch, self.path, self.max_epochs = BudgetWatch(budget), Path(run_dir) / BUDGET_CUTS_FILE, max_epochs
        self.cuts: dict[str, float] = {}

    def setup(self, **info: Any) -> None:
        self.cuts = read_budget_cuts(self.path.parent)  # a resumed sweep's earlier ones stay

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.watch.ended(trial)

    def on_step_end(self, iteration, trials, **info) -> None:
        cut = self.watch.cut(trials)
        for trial in cut:
            result = trial.last_result or {}
            epoch = epochs_reported(result)
            if epoch < self.max_epochs and result.get("outcome") not in self.ENDED_ON_THEIR_OWN:
                self.cuts[trial.trial_id] = epoch
        if cut and self.cuts:
            from lstm_sweep.results.io import atomic_write_json

            budget = self.watch.budget
            atomic_write_json(self.path, {"budget_s": budget.seconds, "spent_at": budget.spent_at, "trials": self.cuts})

    def on_experiment_end(self, trials, **info) -> None:
        self.on_step_end(iteration=None, trials=trials)  # a last step Ray ended without its on_step_end
