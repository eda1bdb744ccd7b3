"""``lstm-sweep run --time 30m``: one wall-clock budget for the whole job, split in two.

The split, said before anything runs::

    whole budget T ──► start-up (corpus, Ray)  +  sweep  ──►  retrain  +  export, samples, report
                       └────── SWEEP_SHARE of T less the reserve ──┘  └─ the rest, what is left ─┘

The sweep gets ``SWEEP_SHARE`` of the budget left after a fixed reserve (Ray's start, the export,
the samples and the report: :data:`RESERVE_S`, measured on this 2-core machine at 35-50 s in
all); it ends there (``budget.max_minutes``: Ray Tune stops the running trials) or sooner when
its trials are done. The retrain then gets what is left until the deadline, less the export's
part of the reserve. Its epochs are planned from the seconds an epoch the winner took in its
trial (``curves.csv``), and a Keras callback (:func:`deadline_callback`) stops it after any
epoch when the next one would not end in time, so a slower retrain stops early rather than late.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from lstm_sweep.errors import ConfigError

SWEEP_SHARE = 0.6  # of the budget after the reserve: the search finds the config, the retrain trains it
RESERVE_S = 60.0  # start-up (corpus, Ray: ~15 s here) and the export, samples and report (~30 s)
AFTER_RETRAIN_S = 30.0  # of the reserve: the export, the samples and the report after the retrain (5-20 s here)
MIN_BUDGET_S = 120.0  # below this nothing useful fits: the reserve and a one-epoch trial

_UNITS = {"h": 3600, "m": 60, "s": 1}


def parse_duration(text: str, flag: str = "--time") -> float:
    """Seconds in ``30m``, ``1h30m``, ``90s``, ``2h`` or a bare number of minutes (``45``).

    Example:
        >>> parse_duration("1h30m"), parse_duration("90s"), parse_duration("45")
        (5400.0, 90.0, 2700.0)
    """
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value) * 60
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", value)
    if not parts or re.sub(r"\s|(\d+(?:\.\d+)?)\s*[hms]", "", value):
        raise ConfigError(f"{flag} {text}: not a duration: write it as 30m, 1h30m, 90s or 2h")
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units):
        raise ConfigError(f"{flag} {text}: a unit appears twice: write it as 1h30m")
    return float(sum(float(number) * _UNITS[unit] for number, unit in parts))


def clock_text(seconds: float) -> str:
    """``1834`` -> ``30 min 34 s``; ``75`` -> ``1 min 15 s``; ``42`` -> ``42 s``."""
    seconds = int(round(max(0.0, seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")
    return f"{seconds} s"


@dataclass(frozen=True)
class TimePlan:
    """How ``run --time`` spends ``total_s`` seconds from ``started`` (``time.time()``)."""

    total_s: float
    started: float
    sweep_s: float

    @property
    def deadline(self) -> float:
        return self.started + self.total_s

    @property
    def sweep_minutes(self) -> float:
        return self.sweep_s / 60

    def left(self) -> float:
        return self.deadline - time.time()

    def describe(self) -> str:
        rest = self.total_s - self.sweep_s - RESERVE_S
        return (f"time budget {clock_text(self.total_s)}, to end by {time.strftime('%H:%M:%S', time.localtime(self.deadline))}: "
                f"the sweep {clock_text(self.sweep_s)} at most, the retrain what is left (about {clock_text(rest)} "
                f"or more), {clock_text(RESERVE_S)} kept for starting, exporting and the report")


def plan_time(total_s: float, started: float | None = None, given: str | None = None) -> TimePlan:
    """The split of ``total_s`` seconds; refuses a budget too short for a sweep and a retrain
    (``given``: the flag's value as typed, for the message)."""
    if not math.isfinite(total_s) or total_s < MIN_BUDGET_S:
        raise ConfigError(f"--time {given or clock_text(total_s)}: too short for a sweep and a retrain: give at least "
                          f"{clock_text(MIN_BUDGET_S)} (e.g. --time 5m)")
    return TimePlan(total_s=total_s, started=time.time() if started is None else started,
                    sweep_s=round(SWEEP_SHARE * (total_s - RESERVE_S), 1))


def retrain_epochs(plan: TimePlan, run_dir: str | Path, trial_id: str, most: int) -> tuple[int, float, float]:
    """About how many epochs of the retrain fit before the deadline: ``(epochs, seconds left for
    it, seconds an epoch)``, at least 1 and at most ``most``. The seconds an epoch are the median
    of the winner's epochs in its trial (``curves.csv``: full-validation rows). That trial shared
    the machine with others, so the retrain, alone, is usually faster (on the quick sweep here, 2
    to 5 times): the figure is for the plan the terminal shows; :func:`deadline_callback`, which
    times the retrain's own epochs, decides when it stops."""
    import pandas as pd

    left = plan.left() - AFTER_RETRAIN_S
    curves = pd.read_csv(Path(run_dir) / "curves.csv", dtype={"trial_id": str})
    rows = curves[curves.trial_id == str(trial_id)]
    if "val_on" in rows:
        rows = rows[rows.val_on.fillna("full") == "full"]
    seconds = pd.to_numeric(rows.get("seconds", pd.Series(dtype=float)), errors="coerce").dropna()
    per_epoch = float(seconds.median()) if len(seconds) else math.nan
    if not math.isfinite(per_epoch) or per_epoch <= 0:
        return most, left, math.nan
    # The first epoch also builds the model and compiles its graph: about one epoch more.
    return max(1, min(most, int(left / per_epoch) - 1)), left, per_epoch


def deadline_callback(deadline: float, after_s: float = AFTER_RETRAIN_S):
    """A Keras callback that stops training after an epoch when the next would end later than
    ``deadline - after_s`` (wall clock), judged by the slowest epoch so far."""
    import keras

    class StopBeforeDeadline(keras.callbacks.Callback):
        def on_train_begin(self, logs=None) -> None:
            self.started, self.slowest, self.stopped_at = time.time(), 0.0, 0

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self.epoch_started = time.time()

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            self.slowest = max(self.slowest, time.time() - self.epoch_started)
            if time.time() + self.slowest > deadline - after_s:
                self.model.stop_training = True
                self.stopped_at = epoch + 1

    return StopBeforeDeadline()
