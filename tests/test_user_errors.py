"""Every user error answered before work starts: one line naming what the user typed, exit 2.

Each test is one input a new user gives (issue 18's table); the commands run as a user runs
them, in a process of their own. None of them may start Ray or leave a run folder behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO

# No Ray here: a command that got as far as starting one says so on its terminal.
RAY_STARTED = ("Ray dashboard", "Started a local Ray instance", "ray.init")


def lstm_sweep(*args, cwd, timeout=300, env=None):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lstm_sweep", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env=env or os.environ | {"PYTHONPATH": str(REPO)})
    result.seconds = time.monotonic() - started
    return result


def assert_user_error(result, *needles, absent=()):
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    ours = [line for line in result.stderr.splitlines() if line.startswith("lstm-sweep:")]
    assert len(ours) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in ours[0], ours[0]
    for needle in absent:
        assert needle not in ours[0], ours[0]
    assert not any(sign in result.stdout + result.stderr for sign in RAY_STARTED), result.stdout[-2000:]
    return ours[0]


def tiny(tmp_path: Path) -> Path:
    """A sweep file whose corpus prepares in a moment."""
    path = tmp_path / "tiny.yaml"
    path.write_text("name: t\ndata: {path: builtin, builtin_lines: 1500, vocab_size: 400}\n"
                    "budget: {num_samples: 2, max_epochs: 1}\n")
    return path


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "FILE").write_text("not a folder")
    result = lstm_sweep("search", "--out", str(tmp_path / "FILE"), cwd=tmp_path)
    assert_user_error(result, f"--out {tmp_path / 'FILE'}", "is a file, not a folder")
    assert result.seconds < 30  # at once, not after Ray's start-up
    assert_user_error(lstm_sweep("search", "--out", str(tmp_path / "FILE" / "sub"), cwd=tmp_path), "is a file")


@pytest.fixture
def read_only_folder(mount_tmpfs):
    return mount_tmpfs("ro", "ro,size=1m")


def test_out_on_a_read_only_file_system(tmp_path, read_only_folder):
    result = lstm_sweep("search", "--out", str(read_only_folder / "runs"), cwd=tmp_path)
    assert_user_error(result, str(read_only_folder), "read-only file system")
    assert result.seconds < 30


@pytest.mark.parametrize("name", ["a/b", "", "..", "  "])
def test_name_is_one_folder_name_like_the_configs(tmp_path, name):
    result = lstm_sweep("search", "--name", name, "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(result, "--name", "one folder name", absent=["already holds a run"])
    assert not (tmp_path / "runs").exists()


def test_num_cpus_zero_names_the_flag(tmp_path):
    result = lstm_sweep("search", "--num-cpus", "0", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(result, "--num-cpus 0", absent=["trial_memory_gb"])


@pytest.mark.parametrize("flags, needle", [
    (["--max-epochs", "-1"], "--max-epochs -1: must be >= 1"),
    (["--samples", "0"], "--samples 0: must be >= 1"),
    (["--max-concurrent", "0"], "--max-concurrent 0: must be >= 1"),
    (["--max-minutes", "-2"], "--max-minutes -2.0: must be >= 0"),
    (["--trial-memory", "-1"], "--trial-memory -1.0: must be >= 0"),
])
def test_flag_errors_name_the_flag_typed(tmp_path, flags, needle):
    assert_user_error(lstm_sweep("search", *flags, "--out", str(tmp_path / "runs"), cwd=tmp_path), needle)


def test_a_space_nothing_of_which_fits_is_refused_before_ray_starts(tmp_path):
    result = lstm_sweep("search", "--trial-memory", "0.01", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    line = assert_user_error(result, "every config of the space is infeasible", "needs", "budget of 10 MB",
                             "--trial-memory")
    assert "MB at batch" in line
    assert not (tmp_path / "runs").exists()  # its run folder was taken away again


def test_vocab_flag_of_plan(tmp_path):
    for value in ("-5", "0"):
        assert_user_error(lstm_sweep("plan", "--vocab", value, cwd=tmp_path), f"--vocab {value}: must be >= 4")


def test_a_corpus_of_three_lines_is_refused_with_the_minimum(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("one two three\nfour five six\nseven eight\n")
    result = lstm_sweep("search", "--data", str(tmp_path / "c"), "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(result, "2 sentences for training and 1 for validation", "at least 10")
    assert not (tmp_path / "runs").exists()


def test_split_sizes_refuse_below_the_minimum_and_warn_below_few():
    from lstm_sweep.data_pipeline.checks import FEW_VALIDATION, MIN_SPLIT, check_split_sizes
    from lstm_sweep.errors import CorpusError

    with pytest.raises(CorpusError, match="at least 10"):
        check_split_sizes(MIN_SPLIT, MIN_SPLIT - 1, "c/")
    assert "say little" in check_split_sizes(100, MIN_SPLIT, "c/")
    assert check_split_sizes(1000, FEW_VALIDATION, "c/") == ""


def test_predict_refuses_a_text_that_cleans_to_nothing_as_generate_does(tmp_path):
    from lstm_sweep.data_pipeline.text import prompt_words, text_words
    from lstm_sweep.errors import CorpusError

    for text in ("!!! 123", "", "[Chorus:"):
        with pytest.raises(CorpusError, match="no words after cleaning"):
            prompt_words(text)
        with pytest.raises(CorpusError, match="no words after cleaning"):
            text_words(text)
    # Before the export is even read: the text is the problem, whatever the folder.
    result = lstm_sweep("predict", str(tmp_path / "export"), "a fine film", "!!! 123", cwd=tmp_path)
    assert_user_error(result, "text 2", "no words after cleaning")


def test_report_without_sweep_yaml_says_what_report_needs(tmp_path):
    (tmp_path / "run" / "ray").mkdir(parents=True)
    result = lstm_sweep("report", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(result, "sweep.yaml", absent=["--config"])


def test_run_refuses_an_empty_prompt_before_anything_runs(tmp_path):
    result = lstm_sweep("run", "--prompt", "", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(result, "--prompt ''", "no words")
    assert result.seconds < 30 and not (tmp_path / "runs").exists()


def test_run_checks_a_character_models_prompt_by_its_own_rules(tmp_path):
    # "123" has no words, but a character model with data.clean: false continues it as typed;
    # with data.clean: true (letters and marks kept) nothing is left of it, as `generate` says.
    from lstm_sweep.errors import ConfigError
    from lstm_sweep.search.cli import _check_prompt
    from lstm_sweep.search.config import parse_config

    raw = {"data": {"tokens": "char", "path": "builtin", "clean": False, "seq_len": 32}}
    _check_prompt("123", parse_config(raw))
    with pytest.raises(ConfigError, match="--prompt '123': has no characters after cleaning"):
        _check_prompt("123", parse_config({"data": {**raw["data"], "clean": True}}))
    with pytest.raises(ConfigError, match="--prompt '': has no characters"):
        _check_prompt("", parse_config(raw))
    with pytest.raises(ConfigError, match="no words after cleaning"):
        _check_prompt("123", parse_config({}))  # a word model


def test_an_address_where_no_cluster_listens_is_one_line_at_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}  # as a user's
    result = lstm_sweep("search", "--address", "127.0.0.1:1", "--out", str(tmp_path / "runs"), cwd=tmp_path,
                        env=env | {"PYTHONPATH": str(REPO)})
    from lstm_sweep.search.cluster import network_address

    outside = network_address()
    assert_user_error(result, "no Ray cluster answers at 127.0.0.1:1", absent=[outside] if outside else [])
    assert result.seconds < 30
    assert not (tmp_path / "runs").exists()


class Listener:
    """A TCP port that accepts connections and never answers: not a Ray cluster."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.accepted = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.socket.accept()[0])
            except OSError:
                return


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["wait", "sigterm"])
def test_joining_something_that_is_no_cluster_is_bounded_and_interruptible(tmp_path, stop):
    listener = Listener()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"} | {"PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, "-m", "lstm_sweep", "search", "--config", str(tiny(tmp_path)),
                               "--address", listener.address, "--out", str(tmp_path / "runs")], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # The CLI's check, prepare_environment's and connect's probes: then Ray's own client.
    deadline = time.monotonic() + 120
    while len(listener.accepted) < 4 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.1)
    started = time.monotonic()
    if stop == "sigterm":
        time.sleep(2)
        driver.terminate()
    try:
        out, err = driver.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        driver.kill()
        pytest.fail("lstm-sweep did not end: Ray waits for the cluster without a bound, or SIGTERM is ignored")
    ours = [line for line in err.splitlines() if line.startswith("lstm-sweep:")]
    if stop == "sigterm":
        assert driver.returncode == 130 and time.monotonic() - started < 10, err[-2000:]
        assert ours == [f"lstm-sweep: interrupted while joining the Ray cluster at {listener.address}"]
    else:
        assert driver.returncode == 2 and time.monotonic() - started < 45, err[-2000:]
        assert len(ours) == 1 and f"no Ray cluster answers at {listener.address}" in ours[0], err[-2000:]
        assert not (tmp_path / "runs").exists()


def test_loopback_clusters_keep_their_address_and_others_are_left_to_ray(monkeypatch):
    """The rule of search.cluster.prepare_environment, without a cluster: a port that answers on
    127.0.0.1 and not on the machine's network address is a cluster bound to loopback."""
    from lstm_sweep.search import cluster

    listener, real = Listener(), cluster.listens
    monkeypatch.setattr(cluster, "network_address", lambda: "192.0.2.2")
    for answers_outside, expected in [(False, "0"), (True, None)]:
        environ = {}
        monkeypatch.setattr(cluster, "listens", lambda host, port, timeout=5.0:
                            ("" if answers_outside else "refused") if host == "192.0.2.2" else real(host, port, timeout))
        cluster.prepare_environment(listener.address, environ)
        assert environ.get(cluster.LOOPBACK_SWITCH) == expected
        assert environ["RAY_py_gcs_connect_timeout_s"] == "5"
    environ = {}
    cluster.prepare_environment(None, environ)
    assert environ == {cluster.LOOPBACK_SWITCH: "0"}
