"""The Ray Tune trainable: one trial = one model trained epoch by epoch, reported to Tune.

Thin on purpose: it wires a config to ``data_pipeline`` and ``model`` and reports to Ray.
:func:`train_trial` reads as its steps: plan, configure the device, read the data, build the
spec, resume, train.

1. Plan: the trial's batch is cut to what fits its memory budget (``search.resources``); a
   config that fits at no batch reports ``outcome: infeasible`` and ends before training.
2. On a GPU, TensorFlow is capped at the trial's share of it.
3. Each epoch it reports its task's figures (``search.tasks``: ``val_loss`` and
   ``val_loss_padded``, or ``val_loss`` and ``val_accuracy``; the sweep's ``metric`` is what
   ASHA and the searcher read) with a checkpoint of the whole Keras model (weights and
   optimizer state), so ASHA can stop it between epochs and a trial whose worker died
   resumes where it was, not from epoch 0.
4. From the ASHA grace period on (``asha.stop_at_baseline``), a trial
   whose metric is no better than its task's baseline (``data_pipeline.baselines``: the unigram
   model, the class frequencies) reports ``outcome: at_baseline`` and stops: it has learned
   nothing from the context yet. Every report carries that ``baseline``.
5. Safety net: an out-of-memory error halves the batch, rebuilds the input pipeline and goes
   on from the last epoch's checkpoint, at most ``max_oom_retries`` times.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import keras
import psutil
import ray
import tensorflow as tf
from ray import tune

from lstm_sweep.data_pipeline.dataset import BUILTIN
from lstm_sweep.model import configure_threads, save_checkpoint, set_seed
from lstm_sweep.model.cells import Cell, register_cell, registered_cells
from lstm_sweep.model.devices import PeakMemory, configure_gpu, describe_error, device_name, is_out_of_memory
from lstm_sweep.model.train import CHECKPOINT_DIR
from lstm_sweep.search.config import SweepConfig
from lstm_sweep.search.resources import TrialPlan, TrialSizer
from lstm_sweep.search.tasks import get_task

STATE_FILE = "state.json"  # epoch, batch size and OOM retries, beside the model


class TrialHook(Protocol):
    """Something that adds Keras callbacks to each training attempt of a trial (fault injection
    in tests: :class:`InjectOutOfMemory`). Hooks travel to the trials with the sweep, so they
    must be picklable; they never change what a trial reports."""

    def callbacks(self, batch_size: int) -> list[keras.callbacks.Callback]: ...


def train_trial(config: dict[str, Any], *, sweep: SweepConfig, sizer: TrialSizer, cells: Sequence[Cell] = (),
                hooks: Sequence[TrialHook] = ()) -> None:
    """Train one configuration; used as ``tune.with_parameters(train_trial, ...)``.

    Args:
        config: the trial's hyperparameters from Tune (the searched and fixed values of the
            sweep's space); :class:`model.spec.ModelSpec` reads them.
        sweep: the validated sweep (its data path made absolute on the driver); the tokenized
            arrays come from the node's cache.
        sizer: plans the trial's batch and memory (the same object Ray sized it with).
        cells: the cells registered on the driver (``model.cells``), registered here too, so a
            plug-in cell needs no import in the workers.
        hooks: add Keras callbacks to each training attempt (tests inject faults with them).
    """
    entered = time.time()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint is noise
    for cell in cells:
        register_cell(cell, replace=True)
    task = get_task(sweep.task)
    plan = sizer.plan(config)
    if not plan.feasible:
        # The searcher reads a worst value as "do not come back here"; nothing is trained.
        tune.report({**plan.metrics(), "epoch": 0, **task.worst(), "oom_retries": 0,
                     "outcome": "infeasible", "reason": plan.reason, "node": _node()})
        return
    device = _configure_device(plan, sweep)
    if plan.gpu and device == "CPU" and not sweep.resources.allow_cpu_fallback:
        tune.report({**plan.metrics(), "epoch": 0, **task.worst(), "oom_retries": 0, "outcome": "no_gpu",
                     "device": device, "node": _node(),
                     "reason": f"planned for {plan.gpu:g} of a GPU, but TensorFlow sees no GPU on this node "
                               "(check `nvidia-smi`, and install the GPU build: pip install '.[gpu]'); set "
                               "resources.allow_cpu_fallback: true to train on the CPU instead"})
        return
    set_seed(sweep.searcher.seed)
    prepared = task.prepare(task.settings(dataclasses.asdict(sweep.data), config))
    meter = PeakMemory()  # after the data, before the model: what the memory model predicts
    spec = task.spec(config, prepared, sweep, batch_size=plan.batch_size_used)
    model, state = _resume(plan)
    baseline = _Baseline(task, prepared, sweep.metric, sweep.mode,
                         sweep.asha.grace_period if sweep.asha.stop_at_baseline else 0)
    reporter = _ReportToTune(plan, meter, state, started=entered, job=task, baseline=baseline, device=device)
    if state["batch_size"] != plan.batch_size_used:  # resumed after an out-of-memory halving
        reporter.plan = sizer.plan(config, batch_size=state["batch_size"])
    try:
        _train(task, prepared, spec, model, reporter, sweep, hooks, lambda batch: sizer.plan(config, batch))
    finally:
        reporter.close()


def _configure_device(plan: TrialPlan, sweep: SweepConfig) -> str:
    """Threads as the CPUs Ray gave the trial; on a GPU, TensorFlow capped at the trial's share
    (less the process's reserve: ``plan.budget_bytes``) and mixed precision if asked. Before
    TensorFlow runs its first op. Returns the device it trains on (``model.devices.device_name``)."""
    configure_threads(max(1, int(plan.cpu)))
    on_gpu = configure_gpu(plan.budget_bytes if plan.gpu and plan.gpu < 1 else None)
    if sweep.model.precision == "mixed_float16" and on_gpu:
        keras.mixed_precision.set_global_policy("mixed_float16")
    return device_name() if on_gpu else "CPU"


def _resume(plan: TrialPlan) -> tuple[keras.Model | None, dict[str, int]]:
    """The model and state of the checkpoint Tune restarts this trial from, or none and a fresh state."""
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            return _load(Path(folder))
    return None, {"epoch": 0, "batch_size": plan.batch_size_used, "oom_retries": 0}


def _train(task, prepared, spec, model, reporter: "_ReportToTune", sweep: SweepConfig,
           hooks: Sequence[TrialHook], plan_at: Callable[[int], TrialPlan]) -> None:
    """Fit epoch by epoch up to ``budget.max_epochs``; an out-of-memory error halves the batch
    and goes on from the last finished epoch (the safety net under the memory model).

    After an out-of-memory error the failed attempt's model is released before the last
    checkpoint is loaded (its weights and Adam slots would otherwise stay in the pool), the plan
    is re-made at the new batch (``plan_at``) so ``predicted_peak_mb`` is the new batch's, and
    the peak is measured afresh so ``measured_peak_mb`` leaves the failed attempt out.
    """
    seed, max_epochs, started_from = sweep.searcher.seed, sweep.budget.max_epochs, tune.get_checkpoint()
    while reporter.state["epoch"] < max_epochs:
        if model is None:
            built = time.perf_counter()
            model = task.build(spec)
            reporter.build_seconds += time.perf_counter() - built
        batch = reporter.state["batch_size"]
        callbacks = [reporter, *(callback for hook in hooks for callback in hook.callbacks(batch))]
        failure = ""
        try:
            task.fit(model, *task.datasets(prepared, spec.with_batch(batch), seed), epochs=max_epochs,
                     initial_epoch=reporter.state["epoch"], callbacks=callbacks)
            return  # the last epoch, or stopped at the baseline
        except Exception as e:  # noqa: BLE001 -- only a device out of memory is caught
            if not is_out_of_memory(e):
                raise
            failure = describe_error(e)
        # Out of the except block: the traceback, and fit's frames that hold the model, are gone.
        retries = reporter.state["oom_retries"] + 1
        if retries > sweep.resources.max_oom_retries or batch // 2 < 1:
            tune.report({**reporter.last_metrics(), "oom_retries": retries, "outcome": "out_of_memory",
                         "reason": f"out of memory at batch {batch} after {retries - 1} halvings ({failure})"})
            return
        for callback in callbacks:  # drop every reference to the failed attempt's model, then free it
            callback.set_model(None)
        model = None
        keras.backend.clear_session(free_memory=True)  # also runs the garbage collector
        reporter.state = {**reporter.state, "batch_size": batch // 2, "oom_retries": retries}
        reporter.plan = plan_at(batch // 2)
        reporter.meter.restart()
        logging.getLogger("lstm_sweep.search").warning("out of memory at batch %d (%s): going on at batch %d",
                                                       batch, failure, batch // 2)
        model = _restore(reporter.folder, started_from)
        if model is None:
            set_seed(seed)  # no epoch finished yet: the same initial weights as the first try


class _ReportToTune(keras.callbacks.Callback):
    """Report each epoch's figures to Tune, with a checkpoint of the whole model."""

    def __init__(self, plan, meter: PeakMemory, state: dict[str, int], started: float, job, baseline: "_Baseline",
                 device: str = ""):
        super().__init__()
        self.device = device  # what it trains on: trials.csv's device
        self.plan, self.meter, self.state, self.job, self.baseline = plan, meter, dict(state), job, baseline
        self.at_baseline = False  # stopped: no better than the baseline after the grace period
        self.node = _node()
        self.started = started  # when this process entered train_trial
        self.process_started = psutil.Process().create_time()  # when this worker process started
        self.first_step_at = 0.0  # wall clock of this process's first training step
        self.build_seconds = 0.0  # building and compiling the model
        self.folder: Path | None = None  # the last checkpoint, kept to recover from an OOM
        self._last: dict[str, Any] = {}

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if not self.first_step_at:
            self.first_step_at = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.state = {**self.state, "epoch": epoch + 1}
        self._last = {
            **self.plan.metrics(),
            "epoch": epoch + 1,
            **{name: float(logs[name]) for name in self.job.reported},
            "epoch_seconds": float(logs["seconds"]),
            "batch_size_used": self.state["batch_size"],
            "oom_retries": self.state["oom_retries"],
            "outcome": "",
            "reason": "",
            "node": self.node,
            "device": self.device,
            "trial_started": self.started,  # with Tune's `timestamp`: which trials ran at once
            # A trial's start-up cost: its worker process started, it trained its first step,
            # less building the model (bench/scale.py).
            "process_started_at": self.process_started,
            "first_step_at": self.first_step_at,
            "build_seconds": self.build_seconds,
            "baseline": self.baseline.value,
        }
        reason = self.baseline.verdict(epoch + 1, self._last)
        if reason:
            self._last.update(outcome="at_baseline", reason=reason)
            self.at_baseline = self.model.stop_training = True
        folder = Path(tempfile.mkdtemp(prefix="lstm-sweep-ckpt-"))
        save_checkpoint(self.model, folder)  # unzipped: see save_checkpoint
        (folder / STATE_FILE).write_text(json.dumps(self.state))
        self._last["measured_peak_mb"] = round(self.meter.peak_bytes() / 2**20, 1)  # the save included
        self.close()
        self.folder = folder
        tune.report(self._last, checkpoint=tune.Checkpoint.from_directory(folder))

    def last_metrics(self) -> dict[str, Any]:
        """The last epoch's report, or the plan's figures when no epoch finished."""
        return self._last or {**self.plan.metrics(), "epoch": 0, **self.job.worst(), "node": self.node}

    def close(self) -> None:
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class _Baseline:
    """The task's baseline of the sweep's metric, and whether a trial is still no better."""

    def __init__(self, job, prepared, metric: str, mode: str, after: int):
        self.metric, self.mode, self.after, self.name = metric, mode, after, job.baseline_name
        self.value = job.baseline(prepared).get(metric, float("nan"))  # NaN: none for this metric

    def verdict(self, epochs: int, report: dict[str, Any]) -> str:
        """Why the trial stops after ``epochs`` epochs with ``report``; "" to go on."""
        value = report.get(self.metric, float("nan"))
        if not self.after or epochs < self.after or not math.isfinite(self.value) or not math.isfinite(value):
            return ""  # a diverged (NaN) epoch is for ASHA and the searcher to judge
        better = value < self.value if self.mode == "min" else value > self.value
        if better:
            return ""
        return (f"{self.metric} {value:.4f} after {epochs} epoch{'s' * (epochs > 1)} is no better than "
                f"{self.name} ({self.value:.4f})")


# The errors a real device gives when it runs out of memory (model.devices.is_out_of_memory), as
# InjectOutOfMemory raises them: TensorFlow's allocator, and cuDNN's RNN workspace (tensorflow#35950).
FAULTS = {
    "resource_exhausted": (tf.errors.ResourceExhaustedError,
                           "OOM when allocating tensor with shape[{batch},2048] and type float on "
                           "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc"),
    "cudnn": (tf.errors.InternalError,
              "Failed to call ThenRnnForward with model config: [rnn_mode, rnn_input_mode, rnn_direction_mode]: "
              "2, 0, 0 , [num_layers, input_size, num_units, dir_count, max_seq_length, batch_size, "
              "cell_num_units]: [1, 256, 2048, 1, 14, {batch}, 2048] [Op:CudnnRNNV3]"),
}


@dataclasses.dataclass(frozen=True)
class InjectOutOfMemory:
    """A :class:`TrialHook` that fails training as a GPU out of memory would: every training
    step with a batch larger than ``above`` raises the real error of ``fault`` (:data:`FAULTS`:
    TensorFlow's ``ResourceExhaustedError``, or cuDNN's ``InternalError``), from epoch
    ``from_epoch`` (0-based) on. For tests of the OOM safety net, and for trying it on a machine.

    Example:
        >>> run_sweep(config, trial_hooks=[InjectOutOfMemory(above=32, from_epoch=1)])  # doctest: +SKIP
    """

    above: int
    from_epoch: int = 0
    fault: str = "resource_exhausted"

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"fault={self.fault!r} must be one of {', '.join(FAULTS)}")

    def callbacks(self, batch_size: int) -> list[keras.callbacks.Callback]:
        return [_FailSteps(self, batch_size)] if batch_size > self.above else []


class _FailSteps(keras.callbacks.Callback):
    def __init__(self, fault: InjectOutOfMemory, batch_size: int):
        super().__init__()
        self.fault, self.batch_size, self.epoch = fault, batch_size, 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.epoch >= self.fault.from_epoch:
            error, message = FAULTS[self.fault.fault]
            raise error(None, None, message.format(batch=self.batch_size))


def _restore(folder: Path | None, checkpoint: tune.Checkpoint | None) -> keras.Model | None:
    """The model as of the last finished epoch: this process's last checkpoint, else the one
    the trial started from, else None (start afresh)."""
    if folder:
        return _load(folder)[0]
    if checkpoint:
        with checkpoint.as_directory() as started_from:
            return _load(Path(started_from))[0]
    return None


def _load(folder: Path) -> tuple[keras.Model, dict[str, int]]:
    model = keras.models.load_model(folder / CHECKPOINT_DIR)
    return model, json.loads((folder / STATE_FILE).read_text())


def _node() -> str:
    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


def trial_arguments(config: SweepConfig, sizer: TrialSizer) -> dict[str, Any]:
    """The fixed keyword arguments of :func:`train_trial` for a sweep: the sweep itself (its data
    path absolute), the sizer and the registered cells."""
    data = dataclasses.replace(config.data, **_absolute_path(dataclasses.asdict(config.data)))
    return {"sweep": dataclasses.replace(config, data=data), "sizer": sizer, "cells": registered_cells()}


def _absolute_path(data: dict[str, Any]) -> dict[str, Any]:
    """The data settings with a relative ``path`` made absolute, on the driver: Ray Tune runs
    each trial in its own folder (it changes the worker's directory to the trial's), where
    ``artists.csv`` or ``data/lyrics`` would not be found. The cache fingerprint leaves the path
    out, so the trials still load the driver's tokenized arrays."""
    path = data.get("path")
    if not path or path == BUILTIN:
        return data
    return {**data, "path": str(Path(path).expanduser().absolute())}
