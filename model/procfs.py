"""Figures from Linux's ``/proc``, without TensorFlow: the driver sizes trials by them before
it imports TensorFlow (:mod:`search.resources`), and :class:`model.devices.PeakMemory` reads a
process's resident set by them."""

from __future__ import annotations


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
