"""Surviving faults, with real processes: a trial's worker killed, the driver killed at any
moment, Ctrl-C, SIGTERM, the disk filling up.

Each test runs ``lstm-sweep search`` as its own process (its own local Ray on 127.0.0.1, in
its own session so that killing it touches nothing else) and watches the run folder that Ray
Tune writes: each trial's ``result.json`` (one line per epoch, with the ``pid`` of the process
that trained it) and its ``checkpoint_*`` folders.

The moments the driver is killed at are drawn from ``$LSTM_SWEEP_FAULT_SEED`` (default 18), so a
failure can be replayed: the seed is in the test's name.
"""

from __future__ import annotations

import json
import os
import random
import shutil
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


def start_driver(*args: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    """``lstm-sweep`` in a new session (Ray's own processes follow it into that session)."""
    return subprocess.Popen([sys.executable, "-m", "lstm_sweep", *args], cwd=REPO, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env=None if env is None else os.environ | env)


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
    said = log.read_text()
    retried = [line for line in said.splitlines() if "retry 1 of 2, from its last checkpoint" in line]
    assert len(retried) == 1 and "failed (The actor" in retried[0] and killed in retried[0], said
    assert "already reported" not in said  # Optuna's warning when a resumed trial reports a step again


FAULT_SEED = int(os.environ.get("LSTM_SWEEP_FAULT_SEED", "18"))
OUTPUTS = ("sweep.yaml", "vocab.json", "trials.csv", "curves.csv", "val_loss.png", "best.json", "report.html")


def write_slow_corpus(folder: Path) -> Path:
    """5,000 short lines to train on and 120,000 of 60 words that the length filter drops: a corpus
    that takes seconds to prepare (clean, count, filter) and an epoch a second or two to train."""
    rng = random.Random(0)
    words = [f"w{letters}" for letters in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n")]
    words = [a + b for a in words for b in ("", "o", "u")]
    folder.mkdir(parents=True)
    short = "\n".join(" ".join(rng.choices(words, k=rng.randint(3, 8))) for _ in range(5000))
    long = "\n".join(" ".join(rng.choices(words, k=60)) for _ in range(120000))
    (folder / "a.txt").write_text(short + "\n" + long + "\n")
    return folder


def assert_outputs_whole(run_dir: Path, required: bool) -> None:
    """Every output file there is whole (``required``: and none is missing); no temporary is left."""
    for name in OUTPUTS:
        path = run_dir / name
        if not path.exists():
            assert not required, f"{name} is missing"
            continue
        if name.endswith(".csv"):
            pd.read_csv(path)
        elif name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".yaml"):
            assert yaml.safe_load(path.read_text())
        elif name.endswith(".png"):
            data = path.read_bytes()
            assert data.startswith(b"\x89PNG") and data.rstrip().endswith(b"IEND\xaeB`\x82"), f"{name} is torn"
        else:
            assert path.read_text().rstrip().endswith("</html>"), f"{name} is torn"
    if required:
        assert not [p.name for p in run_dir.iterdir() if p.name.endswith((".tmp", ".tmp.keras"))]


@pytest.mark.parametrize("point", ["data", "training", "results"],
                         ids=lambda point: f"{point}-seed{FAULT_SEED}")
def test_a_driver_killed_at_any_moment_loses_nothing(tmp_path, tiny_sweep, point):
    """SIGKILL (the driver and its local Ray at once) while the corpus is prepared, while trials
    train, or while the results are written; then `--resume`: the sweep completes, every trial
    is in trials.csv once, every output is whole, and a resume of the finished sweep has nothing
    left to do."""
    rng = random.Random(f"{FAULT_SEED}-{point}")
    samples, epochs = (3, 5) if point == "training" else (2, 3)
    config = tiny_sweep(tmp_path / "runs", samples=samples, epochs=epochs, concurrent=1,
                        space={"hidden_size": 32, "batch_size": 32},
                        data={"path": str(write_slow_corpus(tmp_path / "corpus")), "vocab_size": 400, "seed": 0},
                        asha={"grace_period": epochs, "reduction_factor": 2},
                        resources={"cpus_per_trial": 1, "trial_memory_gb": 1})
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    run_dir, log = tmp_path / "runs" / "run", tmp_path / "driver.log"
    env = {"LSTM_SWEEP_CACHE": str(tmp_path / "cache")}  # a cold cache: the corpus is prepared for real
    driver = start_driver("search", "--config", str(config_file), "--name", "run", "--num-cpus", "2",
                          log=log, env=env)

    if point == "data":
        wait_for(lambda: (run_dir / "sweep.yaml").is_file(), driver, log, "the run folder", timeout=120)
        time.sleep(rng.uniform(0.05, 1.0))
        assert not list((tmp_path / "cache").glob("*.npz")), "the corpus was prepared before the kill"
    elif point == "training":
        def one_finished_one_running():
            done = [t for t in trial_dirs(run_dir) if any(r.get("epoch") == epochs for r in reports(t))]
            running = running_with_checkpoint(run_dir, epochs)
            return (done[0], running[0]) if done and running else None

        finished, interrupted = wait_for(one_finished_one_running, driver, log, "a finished and a running trial")
        time.sleep(rng.uniform(0.0, 0.5))
        finished_reports = reports(finished)
    else:
        deadline = time.monotonic() + 400
        while not (run_dir / "trials.csv").exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        assert not (run_dir / "report.html").exists(), "the results were all written before the kill"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its whole local Ray, at once
    driver.wait()
    assert_outputs_whole(run_dir, required=False)  # what was there is whole

    log2 = tmp_path / "resume.log"
    resumed = start_driver("search", "--resume", str(run_dir), "--num-cpus", "2", log=log2, env=env)
    assert finish(resumed, log2) == 0, log2.read_text()[-3000:]

    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == samples and trials.trial_id.is_unique, trials
    assert set(trials.status) == {"completed"}, trials[["trial_id", "status"]]
    curves = pd.read_csv(run_dir / "curves.csv")
    assert not curves.duplicated(["trial_id", "epoch"]).any() and len(curves) == samples * epochs
    assert_outputs_whole(run_dir, required=True)
    if point == "training":
        assert reports(finished) == finished_reports  # the finished trial was not run again
        assert_resumed_not_restarted(reports(interrupted), epochs)
    if point == "results":
        assert "nothing left to do" in log2.read_text()

    log3 = tmp_path / "again.log"
    started = time.monotonic()
    assert finish(start_driver("search", "--resume", str(run_dir), log=log3, env=env), log3) == 0
    text = log3.read_text()
    assert "nothing left to do" in text and "Ray dashboard" not in text, text[-3000:]
    assert time.monotonic() - started < 90
    assert pd.read_csv(run_dir / "trials.csv").trial_id.tolist() == trials.trial_id.tolist()


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
    assert "Tuner.restore" not in text  # Ray Tune's own resume hint is not shown beside ours
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


@pytest.fixture
def small_disk(mount_tmpfs):
    """A 32 MB file system of its own (tmpfs), for a run folder that fills it."""
    return mount_tmpfs("disk", "size=32m")


def fill(folder: Path, leave: int) -> Path:
    """Fill ``folder``'s file system up to ``leave`` bytes free; returns the filler file."""
    filler = folder / "filler.bin"
    block = b"\0" * 2**20
    with open(filler, "wb") as f:
        try:
            while True:
                room = shutil.disk_usage(folder).free - leave
                if room <= 0:
                    break
                f.write(block[:room])
                f.flush()
        except OSError:  # ENOSPC: full
            pass
    return filler


@pytest.mark.parametrize("left", [2**20, 0], ids=["nearly-full", "full"])
def test_a_disk_that_fills_midway_stops_the_sweep_in_one_line_and_resume_completes(tmp_path, tiny_sweep,
                                                                                   small_disk, left):
    epochs = 4
    config = write_config(tmp_path, tiny_sweep, samples=3, epochs=epochs)
    run_dir, log = small_disk / "run", tmp_path / "driver.log"
    driver = start_driver("search", "--config", str(config), "--out", str(small_disk), "--name", "run",
                          "--num-cpus", "2", log=log)
    wait_for(lambda: running_with_checkpoint(run_dir, epochs), driver, log, "a checkpoint")
    filler = fill(small_disk, leave=left)

    assert finish(driver, log, timeout=180) == 2, log.read_text()[-3000:]
    ours = [line for line in log.read_text().splitlines() if line.startswith("lstm-sweep:")]
    assert len(ours) == 1 and "--resume" in ours[0] and str(run_dir) in ours[0], ours
    assert "Traceback" not in log.read_text()
    assert_outputs_whole(run_dir, required=False)  # what was written before is intact
    assert (run_dir / "sweep.yaml").is_file() and (run_dir / "vocab.json").is_file()

    filler.unlink()  # space freed
    log2 = tmp_path / "resume.log"
    assert finish(start_driver("search", "--resume", str(run_dir), "--num-cpus", "2", log=log2), log2) == 0, \
        log2.read_text()[-3000:]
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3 and trials.trial_id.is_unique and set(trials.status) == {"completed"}, trials
    assert_outputs_whole(run_dir, required=True)
