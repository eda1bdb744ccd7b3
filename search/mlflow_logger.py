"""The Ray Tune callback that logs a sweep's trials to MLflow (:mod:`search.tracking` makes it).

A module of its own: importing Ray's MLflow logger imports MLflow, which takes seconds, and
only a sweep with ``tracking.mlflow`` set needs it.
"""

from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback


class EpochsToMLflow(MLflowLoggerCallback):
    """Ray Tune's :class:`MLflowLoggerCallback`, with a trial's epochs as the steps of its metrics.

    A trial reports once an epoch, and also when it ends without a new epoch (infeasible, no
    GPU, out of memory after its last halving): those reports repeat the last epoch, or carry
    worst values for epoch 0, and are left out, so each metric's history has one value an epoch.
    The config Tune echoes in every result is left out too: it is the run's params already.

    Example:
        >>> tune.RunConfig(callbacks=[EpochsToMLflow("sqlite:///mlruns.db", experiment_name="quick")])  # doctest: +SKIP
    """

    def setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)
        self._epochs_logged: dict[Any, int] = {}

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        from ray.tune.result import TIMESTEPS_TOTAL

        epoch = int(result.get("epoch") or 0)
        if epoch <= self._epochs_logged.get(trial, 0):
            return
        self._epochs_logged[trial] = epoch
        metrics = {k: v for k, v in result.items() if k != "config"}
        # Ray's callback logs at result[TIMESTEPS_TOTAL] when set, else at Tune's report count.
        super().log_trial_result(iteration, trial, {**metrics, TIMESTEPS_TOTAL: epoch})
