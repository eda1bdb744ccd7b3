"""The device side of the memory model: cap TensorFlow's GPU memory, measure real peaks.

``model.memory`` predicts a training step's peak; this module makes the prediction hold on
a shared GPU (a hard cap per trial) and measures what a trial really used, so the two can be
compared in ``trials.csv`` and in ``bench/memory.py``.
"""

from __future__ import annotations

import resource
import sys

import tensorflow as tf

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


class PeakMemory:
    """The peak memory of this process's training, above what it held when created.

    On a GPU it is TensorFlow's own peak (``get_memory_info``); on the CPU, the process's
    peak resident set (``ru_maxrss``) above its resident set at creation. Create it after
    the input pipeline is built and before the model is, to measure what the memory model
    predicts.

    Example:
        >>> meter = PeakMemory()
        >>> meter.peak_bytes() >= 0
        True
    """

    def __init__(self) -> None:
        self.on_gpu = bool(tf.config.list_logical_devices("GPU"))
        self.baseline = 0 if self.on_gpu else _current_rss_bytes()

    def peak_bytes(self) -> int:
        if self.on_gpu:
            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        return max(0, _max_rss_bytes() - self.baseline)


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # no /proc (macOS): the high-water mark is the best we have
        return _max_rss_bytes()
