"""Shared test set-up: every Ray node on 127.0.0.1, a private data cache, quiet TensorFlow."""

import os
import tempfile
from pathlib import Path

# Read when `ray` is first imported: keeps every local Ray process on the loopback address.
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
    """One local Ray (2 CPUs, 127.0.0.1) for the whole session: starting Ray costs seconds."""
    import ray

    from search.sweep import start_ray

    start_ray(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
