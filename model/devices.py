"""The device side of the memory model: cap TensorFlow's GPU memory, measure real peaks.

``model.memory`` predicts a training step's peak; this module makes the prediction hold on
a shared GPU (a hard cap per trial) and measures what a trial really used, so the two can be
compared in ``trials.csv`` and in ``bench/memory.py``.
"""

from __future__ import annotations

import resource
import sys

import tensorflow as tf

from lstm_sweep.model.procfs import read_proc_bytes

MiB = 2**20


def configure_gpu(memory_limit_bytes: int | None) -> bool:
    """Cap TensorFlow at ``memory_limit_bytes`` of the first visible GPU; grow on demand if None.

    Call before TensorFlow runs its first op. By default TensorFlow maps nearly all of a
    GPU's memory at start, so a second trial on the same GPU fails (ray-project/ray#13680);
    a logical device with a memory limit makes the trial's allocator stop at its grant.
    TensorFlow does not allow memory growth together with a limit, so growth is used only
    for a trial that has the GPU to itself. Returns False when there is no GPU.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    try:
        if memory_limit_bytes:
            tf.config.set_logical_device_configuration(
                gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=int(memory_limit_bytes // MiB))])
        else:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # TensorFlow already initialized its devices: keep what it has
        return True
    return True


# What a GPU out of memory looks like besides ResourceExhaustedError. cuDNN's RNN kernels report
# a failed workspace allocation as an InternalError ("Failed to call ThenRnnForward ... [Op:CudnnRNNV3]",
# tensorflow/tensorflow#35950), a handle that cannot be created for want of memory as "could not
# create cudnn handle: CUDNN_STATUS_INTERNAL_ERROR" or "failed to create cublas handle", and a
# copy into an allocation that failed as "Dst tensor is not initialized".
_OUT_OF_MEMORY_MESSAGES = ("thenrnnforward", "thenrnnbackward", "cudnn_status_alloc_failed",
                           "could not create cudnn handle", "failed to create cublas handle",
                           "cublas_status_alloc_failed", "cuda_error_out_of_memory", "out of memory",
                           "oom when allocating", "failed to allocate", "dst tensor is not initialized")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a device running out of memory: TensorFlow's ``ResourceExhaustedError``,
    Python's ``MemoryError``, or an ``InternalError``/``UnknownError`` with a message that cuDNN,
    cuBLAS or CUDA gives when an allocation fails.

    Example:
        >>> is_out_of_memory(tf.errors.InternalError(None, None, "Failed to call ThenRnnForward with model "
        ...                                          "config: [rnn_mode, ...] [Op:CudnnRNNV3]"))
        True
        >>> is_out_of_memory(tf.errors.InternalError(None, None, "Graph execution error"))
        False
    """
    if isinstance(error, (tf.errors.ResourceExhaustedError, MemoryError)):
        return True
    if isinstance(error, (tf.errors.InternalError, tf.errors.UnknownError)):
        message = str(getattr(error, "message", "") or error).lower()
        return any(needle in message for needle in _OUT_OF_MEMORY_MESSAGES)
    return False


def describe_error(error: BaseException, limit: int = 300) -> str:
    """The error's class and the first line of its message (where TensorFlow names the tensor
    shape that did not fit), cut at ``limit`` characters."""
    message = str(getattr(error, "message", "") or error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0] if message else ''}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def device_name() -> str:
    """What this process trains on: ``GPU:0 (NVIDIA H100 80GB HBM3)``, or ``CPU``."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
    except (RuntimeError, ValueError):  # pragma: no cover - a driver that reports nothing
        details = {}
    name = details.get("device_name")
    return f"GPU:0 ({name})" if name else "GPU:0"


class PeakMemory:
    """The peak memory of this process's training, above what it held when created.

    On a GPU it is TensorFlow's own peak (``get_memory_info``). On the CPU it is the
    kernel's resident high-water mark (``VmHWM``) above the resident set at creation: on
    Linux the mark is first reset to the current resident set (``/proc/self/clear_refs``),
    so an earlier spike (loading data, say) does not count; elsewhere ``ru_maxrss`` serves,
    which can only over-state. Create it after the input pipeline is built and before the
    model is: that is what the memory model predicts.

    Example:
        >>> meter = PeakMemory()
        >>> meter.peak_bytes() >= 0
        True
    """

    def __init__(self) -> None:
        self.on_gpu = bool(tf.config.list_logical_devices("GPU"))
        if self.on_gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
            self.baseline = int(tf.config.experimental.get_memory_info("GPU:0")["current"])
        else:
            self.baseline = _current_rss_bytes()
            _reset_high_water_mark()

    def restart(self) -> None:
        """Measure the peak afresh from now on (after a failed attempt), above the same baseline.
        On a GPU the failed attempt's tensors are gone from TensorFlow's peak; on the CPU the mark
        starts at the resident set, which may still hold memory the allocator has not returned."""
        if self.on_gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
        else:
            _reset_high_water_mark()

    def peak_bytes(self) -> int:
        if self.on_gpu:
            return max(0, int(tf.config.experimental.get_memory_info("GPU:0")["peak"]) - self.baseline)
        return max(0, _high_water_mark_bytes() - self.baseline)


def _current_rss_bytes() -> int:
    return read_proc_bytes("/proc/self/status", "VmRSS") or _max_rss_bytes()


def _high_water_mark_bytes() -> int:
    return read_proc_bytes("/proc/self/status", "VmHWM") or _max_rss_bytes()


def _reset_high_water_mark() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux >= 4.0: VmHWM := VmRSS
    except OSError:
        pass


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB
