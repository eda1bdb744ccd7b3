"""Size every trial from the memory model before it runs: its batch, its GPU share, its memory.

The flow, for one trial's config::

    config ──► model.memory.estimate_peak_bytes ──► budget (GPU share, host share, or --trial-memory)
           ──► batch_size_used = min(requested, largest batch whose peak fits (1 - headroom) x budget)
           ──► Ray resources {cpu, gpu: share rounded up to 1/grid, memory: host reservation}
           ──► infeasible when even resources.min_batch_size does not fit

:class:`TrialSizer` does this for one config. It is a small frozen value, built once on the
driver from the cluster's nodes (:func:`make_sizer`), handed to Ray Tune as the resource
function of ``tune.with_resources`` and to each trial, which re-derives its own plan, so the
driver and the trial never disagree about the batch a trial trains with.

The headroom (``resources.memory_headroom``, 10% by default) covers the memory model's
error: its calibration predicts trial peaks from 10% below to 25% above what they measure
(``bench/memory.py``), so a trial planned within 90% of its budget stays within the budget.
Its *need* is its predicted peak ``/ (1 - headroom)``.

On a GPU node a trial gets the share of one GPU its need calls for (several small trials
share a GPU; a hidden-2048 trial gets the whole of it), and TensorFlow inside the trial is
capped at that share less the process's own reserve (``resources.gpu_process_reserve_mb``: the
CUDA context, cuDNN and cuBLAS handles that live outside TensorFlow's allocator), so the caps and
reserves of the trials on a GPU add up to at most its usable memory (``search.trainable``). On every node the trial reserves Ray's
``memory`` resource — its need plus the process's own baseline on CPU nodes (rounded up to an
eighth of its budget, so that similar trials ask alike and Ray Tune can reuse their worker
processes), the baseline alone on GPU nodes — so Ray never co-schedules trials whose peaks
exceed the node. Trials with the same request also get the same GPU cap, which is what lets a
reused process, whose TensorFlow keeps the cap it was first given, be handed on.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from lstm_sweep.errors import ConfigError
from lstm_sweep.model.procfs import read_proc_bytes
from lstm_sweep.model.memory import (CPU_CALIBRATION, HEADROOM, PROCESS_BASELINE_BYTES, Calibration,
                                     estimate_peak_bytes, largest_batch_that_fits)
from lstm_sweep.model.spec import ModelSpec

MiB, GiB = 2**20, 2**30
# Every TensorFlow process on a GPU holds a CUDA context, cuDNN and cuBLAS handles and loaded
# kernels outside TensorFlow's allocator (get_memory_info does not see them). Typically 0.3-1 GiB
# with CUDA 12 (the figure grows with the GPU's SM count and with lazy loading off); the default is
# the top of that range, so full packing never fails to create a cuDNN handle. Not measured here
# (no GPU): bench/gpu_acceptance.py measures a user's (nvidia-smi's per-process use less
# TensorFlow's peak) and resources.gpu_process_reserve_mb sets it.
GPU_PROCESS_RESERVE_BYTES = 1024 * MiB
# A trial config key the sweep sets when its trials measured above their predictions: the factor
# every predicted peak of that trial is scaled by (search.correction).
CORRECTION_KEY = "memory_correction"
# A CPU trial's host reservation is rounded up to a multiple of 1/MEMORY_STEPS of its most
# (TrialSizer._host_reservation): at most 8 distinct requests, so workers can be reused.
MEMORY_STEPS = 8
# Ray gives its `memory` resource what is left of available memory after the object store
# (30% by default); a plan made without a running Ray assumes the same split.
RAY_MEMORY_SHARE = 0.7


@dataclass(frozen=True)
class NodeInfo:
    """What the planner needs to know of one node: its CPUs, Ray ``memory`` and GPUs."""

    cpus: float
    memory_bytes: float
    gpus: float = 0.0


@dataclass(frozen=True)
class TrialPlan:
    """How one trial runs: the batch it uses, its predicted peak and the resources it gets."""

    batch_size_requested: int
    batch_size_used: int  # 0 when infeasible
    predicted_peak_bytes: int  # at batch_size_used; at the smallest batch when infeasible
    budget_bytes: int  # the memory the trial may use (its GPU grant, or its host share)
    need_bytes: int  # the predicted peak plus the headroom for the model's error: what is planned for
    cpu: float
    gpu: float  # share of one GPU; 0 on CPU
    memory_bytes: int  # Ray `memory` reservation on the node (host RAM)
    reason: str = ""  # why it is infeasible
    correction: float = 1.0  # the factor its predicted peaks were scaled by (CORRECTION_KEY)

    @property
    def feasible(self) -> bool:
        return self.batch_size_used > 0

    def resources(self) -> dict[str, float]:
        """A ``tune.with_resources`` resource dict."""
        return {"cpu": self.cpu, "gpu": self.gpu, "memory": float(self.memory_bytes)}

    def metrics(self) -> dict[str, Any]:
        """The plan's figures as reported by a trial and written to ``trials.csv``."""
        return {
            "batch_size_requested": self.batch_size_requested,
            "batch_size_used": self.batch_size_used,
            "predicted_peak_mb": round(self.predicted_peak_bytes / MiB, 1),
            "budget_mb": round(self.budget_bytes / MiB, 1),
            "gpu_share": self.gpu,
            CORRECTION_KEY: self.correction,
        }


@dataclass(frozen=True)
class TrialSizer:
    """Plans trials (:meth:`plan`) and tells Ray what each needs (:meth:`placement`).

    Args:
        vocab_size: the corpus vocabulary, for trials that do not search ``vocab_size``.
        seq_len: time steps of the longest batch (``max_tokens - 1``), for trials that do not
            set their own ``seq_len`` (a classifier's).
        cell, precision: as in the sweep's ``model`` section (a trial's ``cell`` wins).
        num_classes: 0 for the language model; a classifier's number of classes.
        cpus_per_trial: CPUs every trial reserves.
        gpus_per_trial: 0 for CPU trials; else the largest share of one GPU a trial may get.
        gpu_memory_bytes: usable memory of each GPU (GPU trials only): what the driver reports
            less its own reserve.
        gpu_share_grid: GPU shares are rounded up to multiples of ``1 / gpu_share_grid``.
        host_budget_bytes: the memory a CPU trial may use when ``trial_memory_bytes`` is 0.
        trial_memory_bytes: the user's per-trial budget (``--trial-memory``); 0 for automatic.
        min_batch_size: the smallest batch worth training; a config that does not fit at it
            is infeasible.
        process_baseline_bytes: a trial process's own memory (TensorFlow, data), reserved on
            top of the predicted peak.
        headroom: the share of a budget kept free for the memory model's error: a trial's batch
            is the largest whose predicted peak is within ``(1 - headroom)`` of its budget, and
            it reserves its peak ``/ (1 - headroom)``. The default is the calibration's worst
            under-prediction (``model.memory.HEADROOM``).
        calibration: the memory model's constants for the device the trials run on
            (``model.memory.CPU_CALIBRATION`` by default).
        gpu_process_reserve_bytes: what every TensorFlow process holds on its GPU outside its
            allocator (CUDA context, cuDNN and cuBLAS handles, kernels): it comes off each GPU
            trial's cap and counts in its share.

    Example:
        >>> sizer = TrialSizer(vocab_size=7000, seq_len=14, host_budget_bytes=4 * GiB)
        >>> plan = sizer.plan({"embedding_size": 256, "hidden_size": 2048, "num_layers": 2,
        ...                    "batch_size": 1024})
        >>> plan.batch_size_used < 1024 <= plan.batch_size_requested
        True
    """

    vocab_size: int
    seq_len: int
    cell: str = "lstm"
    precision: str = "float32"
    num_classes: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    gpu_memory_bytes: int = 0
    gpu_share_grid: int = 8
    host_budget_bytes: int = 0
    trial_memory_bytes: int = 0
    min_batch_size: int = 8
    process_baseline_bytes: int = PROCESS_BASELINE_BYTES
    headroom: float = HEADROOM
    calibration: Calibration = CPU_CALIBRATION
    gpu_process_reserve_bytes: int = GPU_PROCESS_RESERVE_BYTES

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "gpu_share_grid", "min_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0 <= self.headroom < 1:
            raise ValueError(f"headroom={self.headroom} must be in [0, 1)")
        if not 0 <= self.gpus_per_trial <= 1:
            raise ValueError(f"gpus_per_trial={self.gpus_per_trial} must be in [0, 1]")
        if self.gpu_process_reserve_bytes < 0:
            raise ValueError(f"gpu_process_reserve_bytes={self.gpu_process_reserve_bytes} must be >= 0")
        if self.on_gpu and self.gpu_memory_bytes <= 0:
            raise ValueError(f"gpu_memory_bytes={self.gpu_memory_bytes} must be > 0 for GPU trials")
        if not self.on_gpu and self.host_budget_bytes <= 0 and self.trial_memory_bytes <= 0:
            raise ValueError("CPU trials need host_budget_bytes > 0 or trial_memory_bytes > 0")

    @property
    def on_gpu(self) -> bool:
        return self.gpus_per_trial > 0

    def spec(self, config: Mapping[str, Any]) -> ModelSpec:
        """The model spec of a trial config under this sweep's fixed settings, at the precision
        it trains in here (mixed precision on GPUs only)."""
        return ModelSpec.from_config(config, vocab_size=self.vocab_size, seq_len=self.seq_len, cell=self.cell,
                                     precision=self.precision if self.on_gpu else "float32",
                                     num_classes=self.num_classes)

    def plan(self, config: Mapping[str, Any], batch_size: int | None = None) -> TrialPlan:
        """The batch, predicted peak, budget and resources of the trial with ``config``; with
        ``batch_size``, of that trial at that batch (after an out-of-memory retry halved it).

        A config's ``memory_correction`` (:data:`CORRECTION_KEY`, set by the sweep when its trials
        measured above their predictions) scales every predicted peak.
        """
        spec = self.spec(config)
        correction = float(config.get(CORRECTION_KEY, 1.0))
        requested = spec.batch_size
        budget = self._budget()
        fits = largest_batch_that_fits(spec, int(budget * (1 - self.headroom) / correction),
                                       calibration=self.calibration) if budget > 0 else 0
        used = min(requested, fits) if batch_size is None else min(int(batch_size), requested)
        if used < min(self.min_batch_size, requested):
            smallest = min(self.min_batch_size, requested)
            peak = self._peak(spec.with_batch(smallest), correction)
            need = self._need(peak)
            reserve = (f" ({self.gpu_process_reserve_bytes / MiB:,.0f} MB of its GPU share go to the process's "
                       "CUDA context and libraries)" if self.on_gpu else "")
            return TrialPlan(requested, 0, peak, budget, need, cpu=self.cpus_per_trial, gpu=0.0, memory_bytes=0,
                             correction=correction,
                             reason=f"needs {need / MiB:,.0f} MB at batch {smallest} (a predicted peak of "
                                    f"{peak / MiB:,.0f} MB and {self.headroom:.0%} headroom), "
                                    f"over its budget of {max(budget, 0) / MiB:,.0f} MB{reserve}")
        peak = self._peak(spec.with_batch(used), correction)
        need = self._need(peak)
        if not self.on_gpu:
            return TrialPlan(requested, used, peak, budget, need, cpu=self.cpus_per_trial, gpu=0.0,
                             memory_bytes=self._host_reservation(need, budget), correction=correction)
        # A GPU trial holds its TensorFlow cap plus the process's own reserve; shares of the
        # usable memory add up to at most one GPU, so caps and reserves together never exceed it.
        grant = (budget if self.trial_memory_bytes else need) + self.gpu_process_reserve_bytes
        share = min(self.gpus_per_trial, _round_up(grant / self.gpu_memory_bytes, self.gpu_share_grid))
        cap = int(share * self.gpu_memory_bytes) - self.gpu_process_reserve_bytes
        return TrialPlan(requested, used, peak, max(need, cap), need,
                         cpu=self.cpus_per_trial, gpu=share, memory_bytes=self.process_baseline_bytes,
                         correction=correction)

    def _host_reservation(self, need: int, budget: int) -> int:
        """A CPU trial's Ray ``memory``: its need and the process's baseline, rounded up to a
        multiple of 1/:data:`MEMORY_STEPS` of its budget and baseline. Trials of similar size then
        ask for the same resources, so Ray Tune can hand one's worker process to the next
        (``resources.reuse_workers``); and since ``need <= budget`` the rounded reservation never
        exceeds the trial's share of the node, so it never cuts how many trials run at once."""
        most = budget + self.process_baseline_bytes
        return min(most, math.ceil((need + self.process_baseline_bytes) * MEMORY_STEPS / most - 1e-9) * most
                   // MEMORY_STEPS)

    def _budget(self) -> int:
        """What a trial's model may use: the user's budget, else its most of a GPU less the
        process's reserve (at most that on a GPU), or its share of host memory."""
        if not self.on_gpu:
            return self.trial_memory_bytes or self.host_budget_bytes
        most = int(self.gpus_per_trial * self.gpu_memory_bytes) - self.gpu_process_reserve_bytes
        return min(self.trial_memory_bytes, most) if self.trial_memory_bytes else most

    def _peak(self, spec: ModelSpec, correction: float) -> int:
        return math.ceil(estimate_peak_bytes(spec, calibration=self.calibration) * correction)

    def _need(self, peak: int) -> int:
        return math.ceil(peak / (1 - self.headroom))

    def placement(self, config: Mapping[str, Any]):
        """The resource function for ``tune.with_resources``: a placement group per trial."""
        from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

        return resource_dict_to_pg_factory(self.plan(config).resources())


def make_sizer(config, vocab_size: int, nodes: Sequence[NodeInfo], num_classes: int = 0,
               calibration: Calibration = CPU_CALIBRATION) -> TrialSizer:
    """The :class:`TrialSizer` of a sweep (a ``SweepConfig``) on a cluster of ``nodes``; a
    classifier needs its ``num_classes``. ``calibration`` is the memory model's for the
    device the trials run on.

    A CPU trial's share of host memory is its CPUs' share of the Ray ``memory`` of the
    smallest node, less a process's baseline; GPU trials need the GPUs' memory, from the
    config or from ``nvidia-smi`` on this machine.
    """
    from lstm_sweep.search.tasks import get_task

    res = config.resources
    gpu_memory = int(res.gpu_memory_gb * GiB)
    if res.gpus_per_trial > 0 and gpu_memory == 0:
        gpu_memory = local_gpu_memory_bytes()
        if gpu_memory == 0:
            raise ConfigError("resources.gpu_memory_gb: GPU trials need each GPU's usable memory and this "
                              "machine has no nvidia-smi to read it from: set it (--gpu-memory GB), e.g. 14.7 "
                              "for a 16 GB T4")
    shares = [n.memory_bytes * min(1.0, res.cpus_per_trial / n.cpus) for n in nodes if n.cpus > 0]
    host_budget = int(max(0.0, min(shares, default=0.0) - PROCESS_BASELINE_BYTES))
    if res.gpus_per_trial == 0 and res.trial_memory_gb == 0 and host_budget <= 0:
        raise ConfigError("resources.trial_memory_gb: the cluster's nodes report no memory to share "
                          "between trials: set a per-trial budget, e.g. trial_memory_gb: 4")
    seq_len, num_classes = get_task(config.task).fixed_sizes(config, num_classes)
    return TrialSizer(
        vocab_size=vocab_size, seq_len=int(seq_len), cell=config.model.cell, num_classes=num_classes,
        precision=config.model.precision, cpus_per_trial=res.cpus_per_trial,
        gpus_per_trial=res.gpus_per_trial, gpu_memory_bytes=gpu_memory, gpu_share_grid=res.gpu_share_grid,
        host_budget_bytes=host_budget, trial_memory_bytes=int(res.trial_memory_gb * GiB),
        min_batch_size=res.min_batch_size, headroom=res.memory_headroom, calibration=calibration,
        gpu_process_reserve_bytes=int(res.gpu_process_reserve_mb * MiB),
    )


def sweep_calibration(config) -> tuple[Calibration, str]:
    """The memory model's calibration for the device a sweep's trials run on (a GPU's when
    ``resources.gpus_per_trial`` > 0, else the CPU's), measured by ``lstm-sweep calibrate``, or the
    built-in one; and a line saying which (``model.calibration.load_calibration``)."""
    from lstm_sweep.model.calibration import device_key, load_calibration

    return load_calibration(device_key(gpus=config.resources.gpus_per_trial > 0))


def ray_nodes() -> list[NodeInfo]:
    """The alive nodes of the Ray cluster this process is connected to."""
    import ray

    return [NodeInfo(cpus=n["Resources"].get("CPU", 0.0), memory_bytes=n["Resources"].get("memory", 0.0),
                     gpus=n["Resources"].get("GPU", 0.0))
            for n in ray.nodes() if n.get("Alive")]


def this_machine() -> list[NodeInfo]:
    """This machine as a one-node cluster, as a local Ray would see it (for ``lstm-sweep plan``)."""
    available = read_proc_bytes("/proc/meminfo", "MemAvailable") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return [NodeInfo(cpus=float(os.cpu_count() or 1), memory_bytes=RAY_MEMORY_SHARE * available)]


def local_gpu_memory_bytes() -> int:
    """Usable memory of the smallest GPU on this machine, or 0 when there is none: what
    ``nvidia-smi`` reports as ``memory.total`` less ``memory.reserved`` (the driver's own; drivers
    that do not report it count it as 0), in bytes."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = _nvidia_smi("--query-gpu=memory.total,memory.reserved")
    except (OSError, subprocess.SubprocessError):
        try:  # an older driver without memory.reserved
            out = _nvidia_smi("--query-gpu=memory.total")
        except (OSError, subprocess.SubprocessError):
            return 0
    sizes = []
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        try:
            total = float(fields[0])
        except ValueError:
            continue
        reserved = float(fields[1]) if len(fields) > 1 and _is_number(fields[1]) else 0.0
        sizes.append(int((total - reserved) * MiB))
    return min(sizes, default=0)


def _nvidia_smi(query: str) -> str:
    return subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                          timeout=20, check=True).stdout


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _round_up(share: float, grid: int) -> float:
    return max(1, math.ceil(share * grid - 1e-9)) / grid
