"""The terminal, kept for people: TensorFlow's and CUDA's C++ log lines filtered out of stderr.

TensorFlow 2.21 logs through absl, which writes everything logged before ``absl::InitializeLog()``
to stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says (``I0000 00:00:... port.cc:153] oneDNN custom
operations are on ...``, six lines per process). :class:`NativeLogFilter` takes those lines out of
the process's file descriptor 2 itself: a pipe stands in for it, and a thread passes every other
line on. Subprocesses (the retrain) inherit the pipe. Fatal lines (``F...``) pass: they come
before an abort. ``--verbose`` leaves stderr alone.

No Ray and no TensorFlow here: the CLI enters the filter before either is imported.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from typing import Any

# A C++ log line of absl or TensorFlow's own logging, I/W/E level, with Ray's worker prefix and
# colours if forwarded: ``I0000 00:00:1796165551.691578    1787 port.cc:153] ...`` and
# ``2026-12-01 22:52:43.293537: W tensorflow/...cc:30] ...``. The second line of
# cpu_feature_guard's message, and absl's note that it logs to stderr, go with them.
NATIVE_LOG = re.compile(
    r"^(?:\x1b\[\d+m)?(?:\((?:\w+ )?pid=\d+(?:, ip=[\d.]+)?\)\s*)?(?:\x1b\[0m)?\s*"
    r"(?:[IWE]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [\w./-]+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)

_SENTINEL = b"\x00lstm-sweep: drained\x00\n"
_active: list["NativeLogFilter"] = []  # the filters entered, innermost last


def write_now(text: str) -> None:
    """Write ``text`` to the terminal's stderr at once, past any filter: for a last line before
    ``os._exit``, which would leave it in the filter's pipe."""
    fd = _active[-1]._saved if _active and _active[-1]._saved >= 0 else 2
    os.write(fd, text.encode())


class NativeLogFilter:
    """While entered, lines on file descriptor 2 that :data:`NATIVE_LOG` matches are dropped.

    Example:
        >>> with NativeLogFilter():  # doctest: +SKIP
        ...     import tensorflow  # its C++ start-up lines do not reach the terminal
    """

    def __init__(self) -> None:
        self._saved = self._write = -1
        self._drained = threading.Event()
        self.dropped = 0

    def __enter__(self) -> "NativeLogFilter":
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no file descriptor 2 (a closed or odd stderr): nothing to filter
            return self
        read, self._write = os.pipe()
        self._saved = saved
        os.dup2(self._write, 2)
        _active.append(self)
        threading.Thread(target=self._pass_on, args=(read, saved), name="native-log-filter", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved < 0:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        if self in _active:
            _active.remove(self)
        os.dup2(self._saved, 2)  # the terminal again; what is still in the pipe is passed on first
        os.write(self._write, _SENTINEL)
        os.close(self._write)
        self._drained.wait(timeout=2.0)
        self._saved = self._write = -1

    def _pass_on(self, read: int, out: int) -> None:
        # Runs on after __exit__ while a child process (a local Ray's) still holds the pipe.
        pending = b""
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._line(line + b"\n", out)
            if pending:
                self._line(pending, out)
        self._drained.set()
        os.close(out)

    def _line(self, line: bytes, out: int) -> None:
        drained = line.endswith(_SENTINEL)  # after a last line with no newline, if there was one
        line = line[: -len(_SENTINEL)] if drained else line
        if line and NATIVE_LOG.match(line.decode("utf-8", "replace")):
            self.dropped += 1
        elif line:
            try:
                os.write(out, line)
            except OSError:
                pass
        if drained:
            self._drained.set()


def quiet_libraries() -> None:
    """Python loggers of Ray's that repeat what our own lines say better, kept to errors:
    its token notice on every local start, and Tune's ``Tuner.restore(...)`` hint on Ctrl-C
    (ours names ``lstm-sweep search --resume``)."""
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    _add_filter("ray.tune.tune", _DropResumeHint())
    # "Saving experiment state ... failed with exception:" and a pyarrow traceback, when the disk
    # fills: one line is enough, the run's own error line says what to do.
    _add_filter("ray.tune.execution.experiment_state", _OneLine())
    # "Failed to fetch metrics for 1 trial(s): ... FileNotFoundError" for a trial the time budget
    # stopped before its first report: it has no metrics; trials.csv lists it with none.
    _add_filter("ray.tune.analysis.experiment_analysis", _DropUnreported())


def _add_filter(name: str, new: logging.Filter) -> None:
    log = logging.getLogger(name)
    if not any(type(f) is type(new) for f in log.filters):
        log.addFilter(new)


class _DropResumeHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Resume experiment with" not in record.getMessage()


class _DropUnreported(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        lines = record.getMessage().splitlines()
        if not lines or not lines[0].startswith("Failed to fetch metrics"):
            return True
        failures = [line for line in lines[1:] if line.startswith("- ")]
        return not failures or not all("FileNotFoundError" in line for line in failures)


class _OneLine(logging.Filter):
    """A record's traceback folded into its last line: ``... failed with exception: OSError: ...``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            detail = str(error).strip().splitlines()
            record.msg = f"{record.getMessage().rstrip()} {type(error).__name__}: {detail[-1] if detail else ''}"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


def clock(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
