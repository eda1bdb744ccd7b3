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
   resumes where it was, not from epoch 0. With ``budget.reports_per_epoch`` above 1 it also
   reports within the epoch, at even fractions of its steps, the same figures on the fixed
   validation subset (``search.tasks.validation_subset``) and without a checkpoint: ``epoch``
   is then fractional (0.25, 0.5, ...) and ``val_on`` says ``subset`` (``full`` at an epoch's
   end), so ASHA and the baseline stop can end a hopeless trial within its first epoch.
4. From the ASHA grace period on (``asha.stop_at_baseline``), a trial
   whose metric is no better than its task's baseline (``data_pipeline.baselines``: the unigram
   model, the class frequencies; on the subset, the subset's) reports ``outcome: at_baseline``
   and stops: it has learned nothing from the context yet, unless its metric is still falling
   fast (``asha.spare_falling``: a slow starter, a small learning rate or a big batch, that has
   not left the plateau yet). Every report carries that ``baseline``.
5. Safety net: an out-of-memory error halves the batch, rebuilds the input pipeline and goes
   on from the last epoch's checkpoint, at most ``max_oom_retries`` times.

Ray Tune reuses a finished trial's worker process for the next trial with the same resources
(``resources.reuse_workers``; ``search.resources`` rounds the requests so most match): the
trial then starts by freeing what the last one left (:func:`_start_clean`), and reports
``worker_trials_before`` and ``process_baseline_mb`` so a reader can check it started as a
fresh process would.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import shutil
import sys
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
                hooks: Sequence[TrialHook] = (), deadline: float | None = None) -> None:
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
        deadline: when the sweep's time budget ends (``time.time()`` on the driver), or None:
            the falling rule spares only a trial that can finish its epochs by then.
    """
    entered = time.time()
    before = _start_clean()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint is noise
    _exit_quietly_when_stopped()
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
    reports, asha = sweep.budget.reports_per_epoch, sweep.asha
    # The subset scores the in-epoch reports, and the untrained model for the still-falling rule.
    wanted = reports > 1 or (asha.stop_at_baseline and asha.spare_falling > 0)
    subset, subset_baseline = task.val_subset(prepared, spec, sweep.searcher.seed) if wanted else (None, {})
    baseline = _Baseline(task, prepared, sweep.metric, sweep.mode,
                         sweep.asha.grace_period if sweep.asha.stop_at_baseline else 0,
                         subset_value=subset_baseline.get(sweep.metric, float("nan")),
                         spare_falling=sweep.asha.spare_falling, max_epochs=sweep.budget.max_epochs,
                         deadline=deadline if sweep.asha.spare_within_budget else None)
    reporter = _ReportToTune(plan, meter, state, started=entered, job=task, baseline=baseline, device=device,
                             reports_per_epoch=reports, subset=subset, trials_before=before)
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
            return  # the last epoch, or stopped at the baseline (at an epoch's end or within one)
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
    """Report to Tune: each epoch's figures on the whole validation split, with a checkpoint of
    the whole model; with ``reports_per_epoch`` above 1, also ``reports_per_epoch - 1`` times
    within the epoch, at even fractions of its steps, on the validation subset (``subset``),
    without a checkpoint (checkpoints stay one an epoch: a resumed trial goes on from an epoch's
    start; a checkpoint is the model and its Adam slots, 420 MB at hidden 2048, too much to write
    at every report)."""

    def __init__(self, plan, meter: PeakMemory, state: dict[str, int], started: float, job, baseline: "_Baseline",
                 device: str = "", reports_per_epoch: int = 1, subset=None, trials_before: int = 0):
        super().__init__()
        self.trials_before = trials_before  # trials this worker process ran before this one
        self.device = device  # what it trains on: trials.csv's device
        self.plan, self.meter, self.state, self.job, self.baseline = plan, meter, dict(state), job, baseline
        self.reports_per_epoch, self.subset = reports_per_epoch, subset
        self.at_baseline = False  # stopped: no better than the baseline after the grace period
        self.stopped_within = False  # ... at an in-epoch report: the epoch has no end to report
        self.node = _node()
        self.started = started  # when this process entered train_trial
        self.process_started = psutil.Process().create_time()  # when this worker process started
        self.first_step_at = 0.0  # wall clock of this process's first training step
        self.build_seconds = 0.0  # building and compiling the model
        self.folder: Path | None = None  # the last checkpoint, kept to recover from an OOM
        self._last: dict[str, Any] = {}
        self._marks: dict[int, int] = {}  # step of an epoch (1-based) -> which in-epoch report it is
        self._epoch, self._epoch_started = 0, 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        steps = int(self.params.get("steps") or 0) if self.subset is not None else 0
        self._marks = _report_steps(steps, self.reports_per_epoch)
        if self.subset is not None and not self.state["epoch"] and not self.baseline.seen and self.baseline.wants_start:
            self.baseline.start({**self.job.evaluate(self.model, self.subset), "val_on": "subset"})

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch, self._epoch_started = epoch, time.perf_counter()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if not self.first_step_at:
            self.first_step_at = time.time()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        k = self._marks.get(batch + 1)
        if not k:
            return
        figures = {**(logs or {}), **self.job.evaluate(self.model, self.subset)}
        self._last = self._figures(self._epoch + k / self.reports_per_epoch, figures,
                                   time.perf_counter() - self._epoch_started, "subset")
        self._last["measured_peak_mb"] = round(self.meter.peak_bytes() / 2**20, 1)
        if self._stop_at_baseline():
            self.stopped_within = True
        tune.report(self._last)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.stopped_within:
            return  # stopped at the baseline within this epoch: that report was the last
        logs = logs or {}
        self.state = {**self.state, "epoch": epoch + 1}
        self._last = self._figures(epoch + 1, logs, float(logs["seconds"]), "full")
        self._stop_at_baseline()
        folder = Path(tempfile.mkdtemp(prefix="lstm-sweep-ckpt-"))
        save_checkpoint(self.model, folder)  # unzipped: see save_checkpoint
        (folder / STATE_FILE).write_text(json.dumps(self.state))
        self._last["measured_peak_mb"] = round(self.meter.peak_bytes() / 2**20, 1)  # the save included
        self.close()
        self.folder = folder
        tune.report(self._last, checkpoint=tune.Checkpoint.from_directory(folder))

    def _figures(self, epoch: float, logs: dict, seconds: float, val_on: str) -> dict[str, Any]:
        """A report: ``epoch`` (fractional within an epoch), the task's figures, ``val_on``
        (``full``: the whole validation split; ``subset``: the validation subset) and the rest."""
        return {
            **self.plan.metrics(),
            "epoch": epoch,
            "val_on": val_on,
            "steps": int(self.model.optimizer.iterations.numpy()),  # optimizer steps so far
            **{name: float(logs[name]) for name in self.job.reported if name in logs},
            "epoch_seconds": float(seconds),  # in this epoch so far
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
            "reported_at": time.time(),  # Tune's `timestamp` is in whole seconds
            "build_seconds": self.build_seconds,
            "worker_trials_before": self.trials_before,  # > 0: a reused worker process
            # The process's resident set (CPU) or TensorFlow's GPU memory when the trial's model was
            # about to be built: what the planner reserves as the process baseline, reused or not.
            "process_baseline_mb": round(self.meter.baseline / 2**20, 1),
            "baseline": self.baseline.value,
        }

    def _stop_at_baseline(self) -> bool:
        """Mark the last report ``at_baseline`` and stop training if the baseline rule says so."""
        reason = self.baseline.verdict(self._last["epoch"], self._last)
        if reason:
            self._last.update(outcome="at_baseline", reason=reason)
            self.at_baseline = self.model.stop_training = True
        return bool(reason)

    def last_metrics(self) -> dict[str, Any]:
        """The last report, or the plan's figures when no epoch finished."""
        return self._last or {**self.plan.metrics(), "epoch": 0, **self.job.worst(), "node": self.node}

    def close(self) -> None:
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _report_steps(steps: int, reports_per_epoch: int) -> dict[int, int]:
    """``{step: k}`` for the in-epoch reports of an epoch of ``steps`` steps: report ``k`` of
    ``reports_per_epoch`` after ``round(k * steps / reports_per_epoch)`` steps, ``k`` from 1 to
    ``reports_per_epoch - 1`` (the epoch's end reports on its own); fewer when an epoch has fewer
    steps than that, none when its steps are unknown.

    Example:
        >>> _report_steps(40, 4)
        {10: 1, 20: 2, 30: 3}
    """
    marks: dict[int, int] = {}
    for k in range(1, reports_per_epoch):
        step = round(k * steps / reports_per_epoch)
        if 1 <= step < steps:
            marks.setdefault(step, k)
    return marks


class _Baseline:
    """The task's baseline of the sweep's metric, and whether a trial is still no better.

    ``value`` is the baseline on the whole validation split, ``subset_value`` on the validation
    subset (what in-epoch reports, ``val_on: subset``, and the untrained model are compared with).
    From ``after`` epochs on, a trial no better than it stops, unless its shortfall (how far its
    metric is on the wrong side of the baseline) shrank by more than ``spare_falling`` in the last
    epoch: it is still on its way (:meth:`falling`; bench/stop_rules.py measured the rule). With a
    ``deadline`` (the sweep's time budget, ``asha.spare_within_budget``) a falling trial is spared
    only if its ``max_epochs`` can end by then at the pace it has trained so far (:meth:`late`): a
    slow starter pays off in its last epochs, and one the budget will cut has none to pay with.

    Example:
        >>> judge = _Baseline(task, prepared, "val_loss", "min", after=0.5, spare_falling=0.5)  # doctest: +SKIP
        >>> judge.start({"val_loss": 8.52, "val_on": "subset"})  # the untrained model  # doctest: +SKIP
        >>> judge.verdict(0.5, {"val_loss": 5.70, "val_on": "subset"})  # fell 2.8 of 3.0: spared  # doctest: +SKIP
        ''
    """

    def __init__(self, job, prepared, metric: str, mode: str, after: float, subset_value: float = float("nan"),
                 spare_falling: float = 0.0, max_epochs: int = 0, deadline: float | None = None):
        self.metric, self.mode, self.after, self.name = metric, mode, after, job.baseline_name
        self.value = job.baseline(prepared).get(metric, float("nan"))  # NaN: none for this metric
        self.subset_value, self.spare_falling = subset_value, spare_falling
        self.max_epochs, self.deadline = max_epochs, deadline
        # (epoch, shortfall, wall clock) of this process's reports; epoch 0: the untrained model (start)
        self.seen: list[tuple[float, float, float]] = []

    @property
    def wants_start(self) -> bool:
        """Whether :meth:`falling` will ask for the untrained model's figures."""
        return bool(self.after and self.spare_falling) and math.isfinite(self.value)

    def start(self, report: dict[str, Any]) -> None:
        """Remember the untrained model's figures: the first epoch's fall is measured from them,
        and the trial's pace from their time (just before its first step)."""
        shortfall = self._shortfall(report)
        if math.isfinite(shortfall):
            self.seen.append((0.0, shortfall, _clock(report)))

    def verdict(self, epochs: float, report: dict[str, Any]) -> str:
        """Why the trial stops after ``epochs`` epochs with ``report``; "" to go on."""
        shortfall, now = self._shortfall(report), _clock(report)
        if math.isfinite(shortfall):
            self.seen.append((float(epochs), shortfall, now))
        if not self.after or epochs < self.after or not math.isfinite(shortfall):
            return ""  # a diverged (NaN) epoch is for ASHA and the searcher to judge
        if shortfall < 0:
            return ""
        falling = self.falling(epochs, shortfall)
        late = self.late(epochs, now) if falling else ""
        if falling and not late:
            return ""
        subset = report.get("val_on") == "subset"
        return (f"{self.metric} {report[self.metric]:.4f} after {epochs:g} epoch{'s' * (epochs != 1)} is no better "
                f"than {self.name} ({self.subset_value if subset else self.value:.4f})"
                + (" on the validation subset" if subset else "")
                + (f"; it is still falling, but {late}" if late else
                   f", and fell by less than {self.spare_falling:.0%} of its distance to it in its last epoch"
                   if self.spare_falling else ""))

    def falling(self, epochs: float, shortfall: float) -> bool:
        """Whether the shortfall at ``epochs`` is below ``(1 - spare_falling)`` times the shortfall
        one epoch earlier: its report at the same place in the previous epoch (so a subset report
        is compared with a subset report, a full one with a full one), or, in the first epoch,
        the untrained model's, the fall then scaled to the part of an epoch (``(1 - f) ** window``).
        A trial resumed in a new process has no earlier report: not falling."""
        if not self.spare_falling:
            return False
        earlier = [(e, x) for e, x, _ in self.seen[:-1] if e <= epochs - 1 + 1e-9]
        then, before = earlier[-1] if earlier else (self.seen[0][:2] if self.seen[0][0] == 0.0 else (epochs, 0.0))
        window = epochs - then
        return window > 0 and before > 0 and shortfall < before * (1 - self.spare_falling) ** min(window, 1.0)

    def late(self, epochs: float, now: float) -> str:
        """Why the trial's remaining epochs, up to ``max_epochs``, would end after the deadline
        at its pace so far (seconds an epoch since this process's first report); "" if they end
        in time, or when there is no deadline or pace to judge by."""
        if self.deadline is None or not self.max_epochs or epochs >= self.max_epochs:
            return ""
        first_epoch, _, first_time = self.seen[0]
        if epochs <= first_epoch or now <= first_time:
            return ""
        pace = (now - first_time) / (epochs - first_epoch)
        left = self.max_epochs - epochs
        over = now + left * pace - self.deadline
        if over <= 0:
            return ""
        return (f"its {left:g} epoch{'s' * (left != 1)} left, at {pace:.0f} s an epoch, would end "
                f"{over:.0f} s after the sweep's time budget")

    def _shortfall(self, report: dict[str, Any]) -> float:
        """How far ``report``'s metric is on the wrong side of its set's baseline (< 0: better)."""
        value = report.get(self.metric, float("nan"))
        baseline = self.subset_value if report.get("val_on") == "subset" else self.value
        if not (math.isfinite(value) and math.isfinite(baseline)):
            return float("nan")
        return value - baseline if self.mode == "min" else baseline - value


def _clock(report: dict[str, Any]) -> float:
    """When ``report`` was made: its ``reported_at``, else now."""
    return float(report.get("reported_at") or time.time())


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


_TRIALS_STARTED_HERE = 0  # trials this worker process has started (Ray Tune reuses workers)


def _start_clean() -> int:
    """Free what an earlier trial of this process left, and return how many trials it ran.

    Ray Tune hands a finished trial's worker process to the next trial with the same resource
    request (``resources.reuse_workers``), which saves starting Python, Ray's worker and
    TensorFlow again (bench/scale.py). That trial must start as a fresh process would, with the
    baseline the planner reserved besides its predicted peak: Keras's global state and the last
    model's variables and traced functions are released, and the C heap's free pages returned
    to the system, before the new trial measures its own peak (``model.devices.PeakMemory``).
    """
    global _TRIALS_STARTED_HERE
    # Before handing this process on, Ray Tune waits for the last trial's thread to end, 2 s by
    # default, and fails the *next* trial if it has not: on a loaded machine unwinding a stopped
    # Keras fit took longer (bench/scale.py). Read here, in the worker, when Tune resets it.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "60")
    before, _TRIALS_STARTED_HERE = _TRIALS_STARTED_HERE, _TRIALS_STARTED_HERE + 1
    if before:
        keras.backend.clear_session(free_memory=True)  # also runs the garbage collector
        _return_free_heap()
    else:
        # What the imports made (TensorFlow, Keras and Ray: some 400,000 objects) lives as long
        # as the process; moved out of the collector's sight, a reused worker's collection
        # scans only what trials made: 0.02 s instead of 0.25 s (BENCHMARKS.md, "gc.freeze").
        # Everything a trial makes comes after, and is freed as before.
        gc.freeze()
    return before


def _return_free_heap() -> None:
    # glibc keeps freed blocks in its arenas; malloc_trim gives the free pages back, so the
    # resident set (what PeakMemory and the host reservation count) drops to what is alive.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): the allocator keeps its pages
        pass


def _exit_quietly_when_stopped() -> None:
    """When Tune stops a trial (ASHA, the baseline, the time budget), Ray sends its worker SIGTERM
    and Ray's handler raises ``SystemExit`` wherever the worker is. Inside a weakref callback or
    a ``__del__`` Python cannot raise it, prints "Exception ignored in ..." and its traceback to
    the worker's log, and goes on. Such a stop is wanted: the worker ends there, quietly."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, SystemExit):
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(unraisable.exc_value.code if isinstance(unraisable.exc_value.code, int) else 1)
        previous(unraisable)

    if getattr(previous, "__name__", "") != "hook":
        sys.unraisablehook = hook


def trial_arguments(config: SweepConfig, sizer: TrialSizer) -> dict[str, Any]:
    """The fixed keyword arguments of :func:`train_trial` for a sweep: the sweep itself (its data
    path absolute), the sizer, the registered cells and the deadline of its time budget, counted
    from now: the sweep starts right after, and a resumed sweep counts it from its resume."""
    data = dataclasses.replace(config.data, **_absolute_path(dataclasses.asdict(config.data)))
    deadline = time.time() + config.budget.max_minutes * 60 if config.budget.max_minutes else None
    return {"sweep": dataclasses.replace(config, data=data), "sizer": sizer, "cells": registered_cells(),
            "deadline": deadline}


def _absolute_path(data: dict[str, Any]) -> dict[str, Any]:
    """The data settings with a relative ``path`` made absolute, on the driver: Ray Tune runs
    each trial in its own folder (it changes the worker's directory to the trial's), where
    ``artists.csv`` or ``data/lyrics`` would not be found. The cache fingerprint leaves the path
    out, so the trials still load the driver's tokenized arrays."""
    path = data.get("path")
    if not path or path == BUILTIN:
        return data
    return {**data, "path": str(Path(path).expanduser().absolute())}
