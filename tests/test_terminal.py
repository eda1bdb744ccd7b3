"""What a person sees: no C++ log lines, a line per finished trial, no tracebacks for stopped trials.

The end-to-end test runs the installed command in a fresh process with the environment a user
has: no ``TF_CPP_MIN_LOG_LEVEL`` (conftest sets one for the test processes), its own local Ray.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lstm_sweep.console import NATIVE_LOG

# Lines seen on this machine's terminal before the filter (TensorFlow 2.21, Ray 2.60).
NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796165551.691578    1787 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796165551.693532    1787 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI FMA, in other "
    "operations, rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796165829.869356    5501 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "\x1b[36m(train_trial pid=2250)\x1b[0m E0000 00:00:1796165569.564127    2326 cuda_platform.cc:52] failed "
    "call to cuInit: INTERNAL: CUDA error",
    "\x1b[36m(pid=2250)\x1b[0m I0000 00:00:1796165564.665750    2250 port.cc:153] oneDNN custom operations are on.",
    "2026-12-01 22:52:43.293537: W tensorflow/core/util/util.cc:131] oneDNN supports DT_INT32 only on platforms "
    "with AVX-512.",
]
KEPT = [
    "lstm-sweep: error: data folder 'nowhere' does not exist",
    "F0000 00:00:1796165551.691578    1787 check.cc:12] Check failed: x == y",  # fatal: before an abort
    "Traceback (most recent call last):",
    "[0:18]   1/12  b6df3dbd  stopped by ASHA at epoch 1   val_loss 4.5230",
    "I love you",
]


@pytest.mark.parametrize("line", NATIVE)
def test_native_log_lines_are_recognised(line):
    assert NATIVE_LOG.match(line)


@pytest.mark.parametrize("line", KEPT)
def test_other_lines_are_kept(line):
    assert not NATIVE_LOG.match(line)


def test_the_filter_drops_native_lines_of_the_process_and_its_children_and_keeps_the_rest():
    code = f"""
import os, subprocess, sys
from lstm_sweep.console import NativeLogFilter
with NativeLogFilter():
    os.write(2, {NATIVE[1]!r}.encode() + b"\\n")
    print("first", file=sys.stderr, flush=True)
    subprocess.run(["sh", "-c", "echo '{NATIVE[2]}' >&2; echo child >&2"])
    os.write(2, b"last, no newline")
print("after", file=sys.stderr)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["first", "child", "last, no newlineafter"]


def test_importing_tensorflow_under_the_filter_prints_nothing():
    code = "from lstm_sweep.console import NativeLogFilter\nwith NativeLogFilter():\n    import tensorflow as tf\n" \
           "    tf.constant(1) + 1\n"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stderr == ""


def test_ray_s_failed_state_sync_is_one_line_without_its_traceback():
    """When the disk fills, Tune logs "Saving experiment state ... failed" with a pyarrow
    traceback; quieted, it is that message and the error's last line."""
    code = """
import logging
from lstm_sweep.console import quiet_libraries
quiet_libraries(); quiet_libraries()
log = logging.getLogger("ray.tune.execution.experiment_state")
try:
    raise OSError("[Errno 28] Error writing bytes to file.\\nDetail: No space left on device")
except OSError:
    log.error("Saving experiment state to storage at '%s' failed with exception: ", "/r", exc_info=True)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "Saving experiment state to storage at '/r' failed with exception: OSError: Detail: No space left on device"]


def test_a_trial_stopped_before_its_first_report_is_no_warning_but_other_fetch_failures_are():
    """A trial the time budget stopped before it reported has no result files: Tune's ResultGrid
    warns that it could not fetch its metrics, which trials.csv says better (no epochs)."""
    code = """
import logging
from lstm_sweep.console import quiet_libraries
quiet_libraries(); quiet_libraries()
log = logging.getLogger("ray.tune.analysis.experiment_analysis")
missing = "FileNotFoundError('Could not fetch metrics for t1: both result.json and progress.csv were not found')"
log.warning(f"Failed to fetch metrics for 1 trial(s):\\n- t1: {missing}")
log.warning(f"Failed to fetch metrics for 2 trial(s):\\n- t1: {missing}\\n- t2: JSONDecodeError('Expecting value')")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stderr.splitlines()[0] == "Failed to fetch metrics for 2 trial(s):", done.stderr
    assert "Failed to fetch metrics for 1 trial" not in done.stderr


def lstm_sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command as a user runs it: a fresh process, no TF_CPP_MIN_LOG_LEVEL, its own Ray."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    return subprocess.run([sys.executable, "-m", "lstm_sweep", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.slow
def test_a_sweep_prints_a_line_per_trial_then_retrain_and_generate_print_no_native_line(tmp_path, tiny_sweep):
    samples = 4
    config = tiny_sweep(tmp_path / "runs", samples=samples, epochs=3,
                        space={"learning_rate": {"loguniform": [1e-4, 3e-2]}})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))

    done = lstm_sweep("search", "--config", str(path), "--name", "run", "--num-cpus", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert done.stderr == "", done.stderr  # warnings and errors only; there were none
    assert not [line for line in lines if NATIVE_LOG.match(line)]
    assert not any(mark in done.stdout for mark in ("Traceback", "SystemExit", "╭", "Trial status:",
                                                    "Tuner.restore"))
    finished = [line for line in lines if re.match(rf"^\[\d+:\d\d\]\s+\d+/{samples}\s+\w{{8}}\s+", line)]
    assert len(finished) == samples, done.stdout
    assert all(re.search(r"(completed \d+ epochs?|stopped by ASHA at epoch \d|at baseline, epoch \d)", line)
               for line in finished), finished
    assert "best val_loss" in done.stdout and len(lines) < 40, done.stdout
    _no_traceback_in_the_workers_logs()

    run_dir = tmp_path / "runs" / "run"
    done = lstm_sweep("retrain", str(run_dir), "--epochs", "1", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "\r" not in done.stdout  # a log file gets one line an epoch, not a progress bar's frames
    done = lstm_sweep("generate", str(run_dir / "winner" / "export"), "--prompt", "i love", "--num", "2",
                      cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "" and len(done.stdout.splitlines()) == 2

    verbose = lstm_sweep("generate", str(run_dir / "winner" / "export"), "--prompt", "i love", "--verbose",
                         cwd=tmp_path)
    assert verbose.returncode == 0 and any(NATIVE_LOG.match(line) for line in verbose.stderr.splitlines())


def _no_traceback_in_the_workers_logs() -> None:
    """The sweep's Ray session (the latest on this machine): no worker wrote a traceback, the
    trials ASHA stopped included."""
    logs = Path("/tmp/ray/session_latest/logs")
    if not logs.is_dir():
        return
    written = {p.name: p.read_text(errors="replace") for p in logs.glob("worker-*") if p.is_file()}
    assert written, "no worker log in the session"
    assert not [name for name, text in written.items() if "Traceback" in text]


def _commands():
    from lstm_sweep.search.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command")
    return sub.choices


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_subcommand_helps_with_metavars_defaults_and_examples(name):
    command = _commands()[name]
    for action in command._actions:
        if not action.option_strings or action.nargs == 0 or action.required:
            continue  # positionals, flags, --help
        flag = action.option_strings[-1]
        assert action.metavar and action.metavar.upper() == action.metavar, f"{name} {flag}: metavar"
        assert "default" in (action.help or ""), f"{name} {flag}: its default is not said"
    text = command.format_help()
    assert "example" in text and f"lstm-sweep {name}" in text.split("example", 1)[1]


def test_a_stopped_trials_systemexit_in_a_weakref_callback_ends_the_worker_without_a_traceback():
    # Ray's SIGTERM handler raises SystemExit wherever the worker is; in a weakref callback Python
    # printed "Exception ignored in ..." and a traceback to the worker's log (seen in CI).
    code = """
import gc, weakref
from lstm_sweep.search.trainable import _exit_quietly_when_stopped
_exit_quietly_when_stopped()
class Thing: pass
def stopped(_): raise SystemExit(1)
thing = Thing(); ref = weakref.ref(thing, stopped); del thing; gc.collect()
print("went on")
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
