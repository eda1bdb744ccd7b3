"""Shared test set-up: every Ray node on 127.0.0.1, a private data cache, quiet TensorFlow."""

import os
import tempfile
from pathlib import Path

# Read when `ray` is first imported: keeps every local Ray process on the loopback address, as
# the CLI does for a local run (search.cluster.prepare_environment) and tests that start Ray in
# this process need. Tests of a driver joining a cluster (test_cluster.py, test_user_errors.py)
# take it out of the driver's environment: a user's has none.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests never read or fill the user's ~/.cache; Ray workers inherit this too.
os.environ["LSTM_SWEEP_CACHE"] = tempfile.mkdtemp(prefix="lstm-sweep-test-cache-")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def lyrics_dir() -> Path:
    """The real lyrics corpus: $LSTM_SWEEP_LYRICS, else ../shared/data/lyrics beside the repo."""
    return Path(os.environ.get("LSTM_SWEEP_LYRICS", REPO.parent / "shared" / "data" / "lyrics"))


@pytest.fixture(scope="session")
def lyrics() -> Path:
    path = lyrics_dir()
    if not path.is_dir():
        pytest.skip(f"lyrics corpus not found at {path}: set LSTM_SWEEP_LYRICS to a folder of lyric .txt files")
    return path


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray (2 CPUs, 1 fake GPU, 127.0.0.1) for the whole session: starting Ray costs seconds."""
    import ray

    from lstm_sweep.search.sweep import start_ray

    # One fake GPU: Ray schedules GPU shares by its count; TensorFlow finds no GPU and trains
    # on the CPU. CPU-only sweeps ignore it.
    start_ray(num_cpus=2, num_gpus=1, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_sweep():
    """Make a sweep small enough for a test: ``tiny_sweep(out, samples=4, epochs=3, ...)``.

    Its learning-rate range is wide enough that some trials clearly lag (so ASHA has
    something to stop); ``space`` entries replace the defaults, ``sections`` add or replace
    whole config sections.
    """
    from lstm_sweep.search.config import parse_config

    def make(out, samples=4, epochs=3, concurrent=2, space=None, **sections):
        return parse_config({
            "name": "t", "output": str(out),
            "data": {"path": "builtin", "builtin_lines": 1500, "vocab_size": 400, "seed": 0},
            "space": {"embedding_size": {"choice": [8, 16]}, "hidden_size": {"choice": [8, 24]},
                      "num_layers": 1, "dropout": 0.0,
                      "learning_rate": {"loguniform": [1e-4, 3e-2]}, "batch_size": 64} | (space or {}),
            "budget": {"num_samples": samples, "max_epochs": epochs, "max_concurrent": concurrent},
            "asha": {"grace_period": 1, "reduction_factor": 2},
            "searcher": {"seed": 3, "n_startup_trials": 2},
        } | sections)

    return make


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount small file systems of their own (tmpfs) under ``tmp_path``: ``mount_tmpfs("disk", "size=32m")``;
    the test is skipped where none can be mounted (not root, or no mount in this container)."""
    import subprocess

    mounted = []

    def mount(name: str, options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs ({options}) here ({done.stderr.strip() or 'not root'})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=False)

