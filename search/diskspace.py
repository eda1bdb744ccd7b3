"""A sweep stops, resumable, before the run folder's file system fills.

A full disk midway through a sweep would fail a trial's checkpoint (the trial restarts and
fails again), then Ray Tune's own state, then ``trials.csv``. Instead :class:`StopWhenDiskFull`,
a Ray Tune callback on the driver, looks at the free space of the run folder's file system at
most once a second and, when it falls below what the running trials will write next, stops
the sweep as Ctrl-C does (Tune saves its state and stops the trials; ``--resume`` goes on).
``search.sweep`` then writes the results it can and ends with one line naming the folder.

What the trials write next: each running trial's next checkpoint, as large as the largest so
far, twice (Tune keeps the best and the latest of each trial), and a floor of
:data:`MIN_FREE_BYTES` for Tune's state and the results.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from ray import tune

log = logging.getLogger("lstm_sweep.search")

MiB = 2**20
MIN_FREE_BYTES = 4 * MiB  # Tune's experiment state, trials.csv, curves.csv, the plots, report.html
CHECK_EVERY_S = 1.0


class StopWhenDiskFull(tune.Callback):
    """Stop the sweep cleanly (as SIGUSR1, Tune's own "stop and save", does) when the file system
    of ``run_dir`` has less free space than the running trials need next.

    ``stopped`` (a class attribute: Tune restores its callbacks from its pickled state, so this
    process's instance may not be the one it was given) says why, once it stopped one.

    Example:
        >>> tune.RunConfig(callbacks=[StopWhenDiskFull("runs/quick-20261122-101500")])  # doctest: +SKIP
    """

    stopped: str = ""  # why the last sweep of this process was stopped; "" if it was not

    def __init__(self, run_dir: str | Path, min_free_bytes: int = MIN_FREE_BYTES):
        if min_free_bytes < 0:
            raise ValueError(f"min_free_bytes={min_free_bytes} must be >= 0")
        self.run_dir = str(Path(run_dir).resolve())
        self.min_free_bytes = int(min_free_bytes)
        self.largest_checkpoint = 0
        self._checked_at = 0.0
        self._fired = False

    def setup(self, **info: Any) -> None:
        StopWhenDiskFull.stopped = ""
        self._fired = False

    def need_bytes(self, running: int) -> int:
        """Free space the next round of writes needs with ``running`` trials."""
        return self.min_free_bytes + 2 * max(1, running) * self.largest_checkpoint

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        path = getattr(getattr(checkpoint, "checkpoint", checkpoint), "path", None)
        if path:
            self.largest_checkpoint = max(self.largest_checkpoint, folder_bytes(path))

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if self._fired or now - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = now
        try:
            free = shutil.disk_usage(self.run_dir).free
        except OSError:
            return
        running = sum(1 for t in trials if getattr(t, "status", "") == "RUNNING")
        need = self.need_bytes(running)
        if free >= need:
            return
        self._fired = True
        StopWhenDiskFull.stopped = _words(self.run_dir, free, f"the running trials' next checkpoints need about "
                                                              f"{need / MiB:,.1f} MB")
        if callable(signal.getsignal(signal.SIGUSR1)):  # Tune's handler: stop, save, return from fit()
            log.warning("%s: stopping the sweep", StopWhenDiskFull.stopped)
            os.kill(os.getpid(), signal.SIGUSR1)


def full_disk(run_dir: str | Path) -> str:
    """Why the file system of ``run_dir`` counts as full (under :data:`MIN_FREE_BYTES` free), or "":
    what the sweep says when a write failed there without telling it so (Ray reading back a file
    that the full disk let it write half)."""
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return ""
    return _words(run_dir, free) if free < MIN_FREE_BYTES else ""


def _words(run_dir: str | Path, free: int, need: str = "") -> str:
    state = "full" if free < MiB / 16 or not need else "nearly full"
    return f"the file system of {run_dir} is {state} ({free / MiB:,.1f} MB free{', ' + need if need else ''})"


def folder_bytes(path: str | Path) -> int:
    """The bytes of the files under ``path``."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total
