"""The sweep's time budget (``budget.max_minutes``) as Ray Tune's stopper, and the trials it cut.

Ray Tune ends every running trial when the budget is spent, and tells its callbacks and
scheduler so in the same ``on_trial_complete`` it uses for a trial ASHA stopped
(``TuneController._stop_experiment_if_needed``): from Ray's records the two cannot be told
apart, and a winner the budget cut mid-way would read "stopped by ASHA". So the budget is
:class:`SweepBudget`, Ray's own ``TimeoutStopper`` (what ``TuneConfig(time_budget_s=...)``
builds, with the same accounting: the seconds between the controller's steps, kept across a
resume) that also notes the moment it was spent; and :class:`BudgetCuts`, a Tune callback,
keeps each trial that ended after that moment short of ``budget.max_epochs`` in
``RUN_DIR/budget_cuts.json``::

    {"budget_s": 300.0, "spent_at": 1796314031.6, "trials": {"51a32d1e": 3.0, "b7d049e2": 3.5}}

which ``results.experiment.load_experiment`` reads: such a trial is ``early_stopped`` in
``trials.csv`` with the reason "cut by the sweep's time budget at epoch 3", and the report and the terminal say
"cut by the time budget". Both objects go into the Tuner's run config together, so a resumed
sweep's pickled copies still share one stopper.

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
from ray.tune.stopper import TimeoutStopper

from lstm_sweep.results.experiment import BUDGET_CUTS_FILE, read_budget_cuts


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


class BudgetCuts(Callback):
    """Keeps, in ``run_dir/budget_cuts.json``, each trial that ``budget`` stopped before its
    ``max_epochs``: those that end after the budget was spent (Ray ends them all at once then)."""

    def __init__(self, budget: SweepBudget, run_dir: str | Path, max_epochs: int) -> None:
        if not isinstance(budget, SweepBudget):
            raise ValueError(f"budget must be a SweepBudget, got {type(budget).__name__}")
        self.budget, self.path, self.max_epochs = budget, Path(run_dir) / BUDGET_CUTS_FILE, max_epochs
        self.cuts: dict[str, float] = {}

    def setup(self, **info: Any) -> None:
        self.cuts = read_budget_cuts(self.path.parent)  # a resumed sweep's earlier ones stay

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if not self.budget.spent:
            return
        result = trial.last_result or {}
        epoch = float(result.get("epoch", result.get("training_iteration", 0)) or 0)
        if epoch >= self.max_epochs or result.get("outcome") in ("at_baseline", "infeasible", "out_of_memory", "no_gpu"):
            return  # it had ended on its own: the budget only caught its last report
        self.cuts[trial.trial_id] = epoch
        from lstm_sweep.results.io import atomic_write_json

        atomic_write_json(self.path, {"budget_s": self.budget.seconds, "spent_at": self.budget.spent_at,
                                      "trials": self.cuts})
