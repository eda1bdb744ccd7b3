"""Correct the memory model within a sweep, from the sweep's own measured peaks.

The memory model's calibration may be wrong for the device a sweep runs on (a GPU no one has
calibrated, a new TensorFlow). Every trial reports, each epoch, its predicted peak and the peak
it measured (``predicted_peak_mb``, ``measured_peak_mb``). The planner keeps a headroom for the
model's error (``resources.memory_headroom``): a trial may measure up to ``1 / (1 - headroom)``
times its prediction and still fit. When a trial measures more than that, the model is wrong
here, and the trials not yet started are planned with their predictions scaled by the factor
that would have predicted the worst measurement::

    trial result ──► measured / predicted > 1 / (1 - headroom) ?
                 ──► factor := factor x measured / predicted       (never lowered)
                 ──► every later suggestion's config carries memory_correction: factor
                 ──► the sizer scales its predicted peaks by it (driver and trial alike)
                 ──► RUN_DIR/memory_correction.json: the factor and the measurements behind it

The factor travels in the trial's config, so Ray's resource request (made on the driver) and the
trial's own plan (made in its worker) read the same value; ``trials.csv`` shows it per trial
(``memory_correction``). It is a Ray Tune ``Searcher`` wrapping the sweep's searcher, as Ray's
own ``ConcurrencyLimiter`` does: every result reaches it, and every suggestion leaves through it.

Example:
    >>> searcher = MemoryCorrectingSearcher(make_searcher(config, run_dir), headroom=0.1,
    ...                                     run_dir=run_dir)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from lstm_sweep.search.resources import CORRECTION_KEY

log = logging.getLogger("lstm_sweep.search")

CORRECTION_FILE = "memory_correction.json"


class MemoryCorrectingSearcher(Searcher):
    """Wraps ``searcher``: adds ``memory_correction`` to its suggestions once trials measured more
    than their predictions allow (see the module docstring).

    Args:
        searcher: the sweep's searcher (``search.searcher.make_searcher``).
        headroom: the planner's share of a budget kept for the model's error, in [0, 1).
        run_dir: where ``memory_correction.json`` is written; None writes nothing.
    """

    def __init__(self, searcher: Searcher, headroom: float, run_dir: str | Path | None = None):
        if not isinstance(searcher, Searcher):
            raise ValueError(f"searcher={searcher!r} must be a ray.tune.search.Searcher")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom={headroom} must be in [0, 1)")
        self.searcher, self.headroom = searcher, headroom
        self.run_dir = None if run_dir is None else str(Path(run_dir).resolve())
        self.factor = 1.0
        self.measurements: list[dict[str, Any]] = []  # the ones that raised the factor
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def observe(self, trial_id: str, result: dict) -> bool:
        """Take one trial report; True when it raised the factor."""
        predicted, measured = result.get("predicted_peak_mb"), result.get("measured_peak_mb")
        if not (_positive(predicted) and _positive(measured)):
            return False
        ratio = float(measured) / float(predicted)  # predicted already carries the trial's factor
        if ratio <= 1 / (1 - self.headroom):
            return False
        trial_factor = float(result.get(CORRECTION_KEY, 1.0) or 1.0)
        factor = round(trial_factor * ratio, 4)
        if factor <= self.factor:
            return False
        self.factor = factor
        self.measurements.append({"trial_id": trial_id, "epoch": result.get("epoch"),
                                  "predicted_peak_mb": float(predicted), "measured_peak_mb": float(measured),
                                  "factor": factor})
        # Said once a trial (its peak grows over its first epochs); correction.json keeps every rise.
        said = {m["trial_id"] for m in self.measurements[:-1]}
        (log.info if trial_id in said else log.warning)(
            "trial %s measured %.0f MB against %.0f MB predicted: the trials still to start are planned with "
            "their predictions x %.3g", trial_id, measured, predicted, factor)
        self._write()
        return True

    def _write(self) -> None:
        if self.run_dir is None:
            return
        from lstm_sweep.results import atomic_write_json

        atomic_write_json(Path(self.run_dir) / CORRECTION_FILE, {
            "factor": self.factor, "headroom": self.headroom,
            "rule": "a trial measured above predicted / (1 - headroom): later trials' predictions x factor",
            "measurements": self.measurements})

    # ---------------------------------------------------------------- the Searcher interface

    def suggest(self, trial_id: str) -> dict | None:
        suggestion = self.searcher.suggest(trial_id)
        if isinstance(suggestion, dict) and self.factor > 1:
            suggestion = {**suggestion, CORRECTION_KEY: self.factor}
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.observe(trial_id, result)
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result:
            self.observe(trial_id, result)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def add_evaluated_point(self, *args, **kwargs):
        return self.searcher.add_evaluated_point(*args, **kwargs)

    def get_state(self) -> dict:
        """The factor and its measurements, saved with Tune's experiment state (a resume keeps them)."""
        return {"factor": self.factor, "measurements": list(self.measurements), "headroom": self.headroom,
                "run_dir": self.run_dir}

    def set_state(self, state: dict) -> None:
        self.factor, self.measurements = float(state["factor"]), list(state["measurements"])
        self.headroom, self.run_dir = float(state["headroom"]), state["run_dir"]

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)

    @property
    def metric(self) -> str:
        return self.searcher.metric

    @property
    def mode(self) -> str:
        return self.searcher.mode


def _positive(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False
