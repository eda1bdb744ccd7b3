"""The Ray Tune trainable: one trial = one model trained epoch by epoch, reported to Tune.

Thin on purpose: it wires a config to ``data_pipeline`` and ``model`` and reports to Ray.

1. Plan: the trial's batch is cut to what fits its memory budget (``search.resources``); a
   config that fits at no batch reports ``outcome: infeasible`` and ends before training.
2. On a GPU, TensorFlow is capped at the trial's share of it.
3. Each epoch it reports its task's figures (``search.tasks``: ``val_loss`` and
   ``val_loss_padded``, or ``val_loss`` and ``val_accuracy``; the sweep's ``metric`` is what
   ASHA and the searcher read) with a checkpoint of the whole Keras model (weights and
   optimizer state), so ASHA can stop it between epochs and a trial whose worker died
   resumes where it was, not from epoch 0.
4. From epoch ``baseline_after`` on (the ASHA grace period; ``asha.stop_at_baseline``), a trial
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
from typing import Any

import keras
import psutil
import ray
import tensorflow as tf
from ray import tune

from lstm_sweep.data_pipeline.dataset import BUILTIN
from lstm_sweep.model import configure_threads, save_checkpoint, set_seed
from lstm_sweep.model.devices import PeakMemory, configure_gpu
from lstm_sweep.model.train import CHECKPOINT_DIR
from lstm_sweep.search.resources import TrialSizer
from lstm_sweep.search.tasks import get_task

STATE_FILE = "state.json"  # epoch, batch size and OOM retries, beside the model
OUT_OF_MEMORY = (tf.errors.ResourceExhaustedError, MemoryError)


def train_trial(config: dict[str, Any], *, data: dict[str, Any], max_epochs: int, seed: int,
                sizer: TrialSizer, task: str = "language_model", metric: str = "val_loss", mode: str = "min",
                baseline_after: int = 0, cell: str = "lstm", precision: str = "float32",
                max_oom_retries: int = 3, inject_oom_above: int = 0, inject_oom_from_epoch: int = 0) -> None:
    """Train one configuration; used as ``tune.with_parameters(train_trial, ...)``.

    Args:
        config: the trial's hyperparameters (``embedding_size``, ``hidden_size``,
            ``num_layers``, ``dropout``, ``learning_rate``, ``batch_size``, maybe
            ``vocab_size`` and ``cell``; a classifier's ``seq_len``, ``padding``,
            ``truncating``, ``bidirectional``), from Tune.
        data: the data settings' fields; the tokenized arrays come from the node's cache.
        max_epochs: the last epoch, when ASHA lets the trial run to the end.
        seed: seeds weights and shuffling, so the same config trains the same way.
        sizer: plans the trial's batch and memory (the same object Ray sized it with).
        task: ``language_model`` or ``classify`` (``search.tasks``).
        metric, mode: the sweep's metric and its direction.
        baseline_after: from this epoch on, stop when ``metric`` is no better than the task's
            baseline; 0: never.
        cell: the recurrent cell (``lstm``, ``gru``, ``rnn``) unless the trial searches it.
        precision: ``float32``, or ``mixed_float16`` on a GPU.
        max_oom_retries: out-of-memory errors survived by halving the batch.
        inject_oom_above, inject_oom_from_epoch: tests only: raise an out-of-memory error in
            every training step with a batch larger than ``inject_oom_above`` from epoch
            ``inject_oom_from_epoch`` (0-based) on.
    """
    entered = time.time()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint is noise
    job = get_task(task)
    plan = sizer.plan(config)
    if not plan.feasible:
        # The searcher reads a worst value as "do not come back here"; nothing is trained.
        tune.report({**plan.metrics(), "epoch": 0, **job.worst(), "oom_retries": 0,
                     "outcome": "infeasible", "reason": plan.reason, "node": _node()})
        return

    configure_threads(max(1, int(plan.cpu)))
    on_gpu = configure_gpu(plan.budget_bytes if plan.gpu and plan.gpu < 1 else None)
    if precision == "mixed_float16" and on_gpu:
        keras.mixed_precision.set_global_policy("mixed_float16")
    set_seed(seed)
    prepared = job.prepare(job.settings(data, config))
    meter = PeakMemory()

    state = {"epoch": 0, "batch_size": plan.batch_size_used, "oom_retries": 0}
    model = None
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            model, state = _load(Path(folder))
    baseline = _Baseline(job, prepared, metric, mode, baseline_after)
    reporter = _ReportToTune(plan, meter, state, started=entered, job=job, baseline=baseline)
    try:
        while state["epoch"] < max_epochs:
            if model is None:
                built = time.perf_counter()
                model = job.build(prepared, config, cell=cell, dropout=float(config["dropout"]))
                reporter.build_seconds += time.perf_counter() - built
            batch = state["batch_size"]
            callbacks = [reporter]
            if batch > inject_oom_above > 0:
                callbacks.append(_InjectedOOM(inject_oom_above, inject_oom_from_epoch))
            try:
                job.fit(model, *job.datasets(prepared, config, batch, seed), epochs=max_epochs,
                        initial_epoch=state["epoch"], callbacks=callbacks)
            except OUT_OF_MEMORY as e:
                # Back to the last finished epoch, with half the batch.
                state = {**reporter.state, "oom_retries": reporter.state["oom_retries"] + 1}
                if state["oom_retries"] > max_oom_retries or batch // 2 < 1:
                    tune.report({**reporter.last_metrics(), "oom_retries": state["oom_retries"],
                                 "outcome": "out_of_memory",
                                 "reason": f"out of memory at batch {batch} after {state['oom_retries'] - 1} "
                                           f"halvings ({type(e).__name__})"})
                    return
                state["batch_size"] = batch // 2
                reporter.state = state
                model = _restore(reporter.folder, checkpoint)
                if model is None:
                    set_seed(seed)  # no epoch finished yet: the same initial weights as the first try
            else:
                state = reporter.state
                if reporter.at_baseline:
                    break
    finally:
        reporter.close()


class _ReportToTune(keras.callbacks.Callback):
    """Report each epoch's figures to Tune, with a checkpoint of the whole model."""

    def __init__(self, plan, meter: PeakMemory, state: dict[str, int], started: float, job, baseline: "_Baseline"):
        super().__init__()
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


class _InjectedOOM(keras.callbacks.Callback):
    """Tests only: fail the first training step as a GPU out of memory would."""

    def __init__(self, above: int, from_epoch: int):
        super().__init__()
        self.above, self.from_epoch, self.epoch = above, from_epoch, 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.epoch >= self.from_epoch:
            raise tf.errors.ResourceExhaustedError(None, None, f"injected OOM at batch size > {self.above}")


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


def trial_arguments(config, sizer: TrialSizer) -> dict[str, Any]:
    """The fixed keyword arguments of :func:`train_trial` for a ``SweepConfig``."""
    return {
        "data": _absolute_path(dataclasses.asdict(config.data)),
        "max_epochs": config.budget.max_epochs,
        "seed": config.searcher.seed,
        "sizer": sizer,
        "task": config.task,
        "metric": config.metric,
        "mode": config.mode,
        "baseline_after": config.asha.grace_period if config.asha.stop_at_baseline else 0,
        "cell": config.model.cell,
        "precision": config.model.precision,
        "max_oom_retries": config.resources.max_oom_retries,
    }


def _absolute_path(data: dict[str, Any]) -> dict[str, Any]:
    """The data settings with a relative ``path`` made absolute, on the driver: Ray Tune runs
    each trial in its own folder (it changes the worker's directory to the trial's), where
    ``artists.csv`` or ``data/lyrics`` would not be found. The cache fingerprint leaves the path
    out, so the trials still load the driver's tokenized arrays."""
    path = data.get("path")
    if not path or path == BUILTIN:
        return data
    return {**data, "path": str(Path(path).expanduser().absolute())}
