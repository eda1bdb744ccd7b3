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

    def peak_bytes(self) -> int:
        if self.on_gpu:
            return max(0, int(tf.config.experimental.get_memory_info("GPU:0")["peak"]) - self.baseline)
        return max(0, _high_water_mark_bytes() - self.baseline)


def read_proc_bytes(path: str, key: str) -> int:
    """The ``key:  N kB`` line of a Linux ``/proc`` file, in bytes; 0 without it (or without /proc).

    Example:
        >>> read_proc_bytes("/proc/meminfo", "MemTotal") > 0  # doctest: +SKIP
        True
    """
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


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
