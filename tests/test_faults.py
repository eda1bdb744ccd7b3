"""Surviving faults, with real processes: a trial's worker killed, the driver killed, Ctrl-C, SIGTERM.

Each test runs ``lstm-sweep search`` as its own process (its own local Ray on 127.0.0.1, in
its own session so that killing it touches nothing else) and watches the run folder that Ray
Tune writes: each trial's ``result.json`` (one line per epoch, with the ``pid`` of the process
that trained it) and its ``checkpoint_*`` folders.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, tiny_sweep, samples: int, epochs: int, lines: int = 4000) -> Path:
    """A sweep with no early stopping (grace period = max epochs), one trial at a time, epochs of
    a second or two: slow enough to kill a process mid-trial, fast enough for a test."""
    config = tiny_sweep(tmp_path / "runs", samples=samples, epochs=epochs, concurrent=1,
                        space={"hidden_size": 32, "batch_size": 32},
                        data={"path": "builtin", "builtin_lines": lines, "vocab_size": 400, "seed": 0},
                        asha={"grace_period": epochs, "reduction_factor": 2},
                        resources={"cpus_per_trial": 1, "trial_memory_gb": 1})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def start_driver(*args: str, log: Path) -> subprocess.Popen:
    """``lstm-sweep`` in a new session (Ray's own processes follow it into that session)."""
    return subprocess.Popen([sys.executable, "-m", "lstm_sweep", *args], cwd=REPO, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"lstm-sweep did not finish in {timeout} s:\n{log.read_text()[-3000:]}")


def reports(trial_dir: Path) -> list[dict]:
    """The trial's reports so far (``result.json``: one JSON object a line)."""
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return out


def trial_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / "ray").glob("train_trial_*") if p.is_dir())


def wait_for(condition, process: subprocess.Popen, log: Path, what: str, timeout: float = 180):
    """Poll ``condition()`` until it returns something truthy; fail if the driver exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"lstm-sweep exited ({process.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def running_with_checkpoint(run_dir: Path, epochs: int):
    """A trial that saved a checkpoint and has epochs left: (its folder, its reports)."""
    for trial in trial_dirs(run_dir):
        seen = reports(trial)
        if seen and list(trial.glob("checkpoint_*")) and 1 <= seen[-1].get("epoch", 0) <= epochs - 2:
            return trial, seen
    return None


def assert_resumed_not_restarted(seen: list[dict], epochs: int) -> None:
    """One report per epoch 1..epochs, from two processes, the second starting after epoch 1."""
    pids = list(dict.fromkeys(r["pid"] for r in seen))
    assert len(pids) == 2, f"expected the trial in two processes, got pids {pids}"
    first_after = next(r for r in seen if r["pid"] == pids[1])
    assert first_after["epoch"] >= 2, "the trial started again from epoch 1 instead of its checkpoint"
    assert sorted({r["epoch"] for r in seen}) == list(range(1, epochs + 1))


def test_a_killed_trial_resumes_from_its_checkpoint_and_the_sweep_completes(tmp_path, tiny_sweep):
    epochs = 6
    config = write_config(tmp_path, tiny_sweep, samples=2, epochs=epochs)
    run_dir, log = tmp_path / "runs" / "run", tmp_path / "driver.log"
    driver = start_driver("search", "--config", str(config), "--name", "run", "--num-cpus", "2", log=log)

    trial, seen = wait_for(lambda: running_with_checkpoint(run_dir, epochs), driver, log, "a checkpoint")
    os.kill(seen[-1]["pid"], signal.SIGKILL)  # the trial's worker process, as if its node were lost

    assert finish(driver, log) == 0, log.read_text()[-3000:]
    assert_resumed_not_restarted(reports(trial), epochs)
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 2 and set(trials.status) == {"completed"}
    curves = pd.read_csv(run_dir / "curves.csv")
    killed = next(t for t in trials.trial_id if t in trial.name)
    assert curves[curves.trial_id == killed].epoch.tolist() == list(range(1, epochs + 1))  # each epoch once


def test_a_killed_driver_resumes_with_every_trial_once(tmp_path, tiny_sweep):
    epochs = 5
    config = write_config(tmp_path, tiny_sweep, samples=3, epochs=epochs)
    run_dir, log = tmp_path / "runs" / "run", tmp_path / "driver.log"
    driver = start_driver("search", "--config", str(config), "--name", "run", "--num-cpus", "2", log=log)

    def one_finished_one_running():
        done = [t for t in trial_dirs(run_dir) if any(r.get("epoch") == epochs for r in reports(t))]
        running = running_with_checkpoint(run_dir, epochs)
        return (done[0], running[0]) if done and running else None

    finished, interrupted = wait_for(one_finished_one_running, driver, log, "a finished and a running trial")
    finished_reports = reports(finished)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its whole local Ray, at once
    driver.wait()

    log2 = tmp_path / "resume.log"
    resumed = start_driver("search", "--resume", str(run_dir), "--num-cpus", "2", log=log2)
    assert finish(resumed, log2) == 0, log2.read_text()[-3000:]

    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3 and trials.trial_id.is_unique, trials
    assert set(trials.status) == {"completed"}, trials[["trial_id", "status"]]
    assert reports(finished) == finished_reports  # the finished trial was not run again
    assert_resumed_not_restarted(reports(interrupted), epochs)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_cleanly_writes_results_and_says_how_to_resume(tmp_path, tiny_sweep, stop):
    epochs = 6
    config = write_config(tmp_path, tiny_sweep, samples=2, epochs=epochs)
    run_dir, log = tmp_path / "runs" / "run", tmp_path / "driver.log"
    driver = start_driver("search", "--config", str(config), "--name", "run", "--num-cpus", "2", log=log)

    wait_for(lambda: running_with_checkpoint(run_dir, epochs), driver, log, "a checkpoint")
    driver.send_signal(stop)
    assert finish(driver, log, timeout=120) == 130
    text = log.read_text()
    assert f"lstm-sweep search --resume {run_dir}" in text
    trials = pd.read_csv(run_dir / "trials.csv")  # the results so far
    assert (trials.status == "failed").any() and trials.epochs.ge(1).any()
    deadline = time.monotonic() + 20
    while any(_alive(reports(p)) for p in trial_dirs(run_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(reports(p)) for p in trial_dirs(run_dir)), "a trial's process outlived the sweep"

    log2 = tmp_path / "resume.log"
    assert finish(start_driver("search", "--resume", str(run_dir), "--num-cpus", "2", log=log2), log2) == 0
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 2 and set(trials.status) == {"completed"}


def _alive(seen: list[dict]) -> bool:
    """Whether the process of a trial's last report still runs."""
    if not seen:
        return False
    try:
        os.kill(seen[-1]["pid"], 0)
    except ProcessLookupError:
        return False
    return True
