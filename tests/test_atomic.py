"""The one atomic writer (lstm_sweep.atomic) and every writer that goes through it: whole files,
fsynced, the temporary removed on failure, ordinary permissions; run folders claimed atomically."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from lstm_sweep import atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_text_is_whole_fsynced_and_ordinary(tmp_path, monkeypatch, umask_022):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = atomic.write_text(tmp_path / "deep" / "a.txt", "hello\n")
    assert target.read_text() == "hello\n" and mode(target) == 0o644
    assert len(synced) >= 2  # the file, then its folder
    assert os.listdir(tmp_path / "deep") == ["a.txt"]


@pytest.mark.parametrize("failing", ["write", "replace", "interrupt"])
def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch, failing):
    target = tmp_path / "x.json"
    atomic.write_text(target, "old")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt if failing == "interrupt" else OSError(28, "No space left on device")

    if failing == "write":
        with pytest.raises(OSError), atomic.replacing_file(target) as tmp:
            tmp.write_text("half")
            boom()
    else:
        monkeypatch.setattr(os, "replace", boom)
        with pytest.raises((OSError, KeyboardInterrupt)):
            atomic.write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.json"]


def test_replacing_dir_swaps_a_whole_folder_with_ordinary_modes(tmp_path, umask_022):
    target = tmp_path / "saved_model"
    with atomic.replacing_dir(target) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1" and mode(target) == 0o755
    with pytest.raises(RuntimeError), atomic.replacing_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("the writer failed")
    assert sorted(os.listdir(target)) == ["a"] and os.listdir(tmp_path) == ["saved_model"]
    with atomic.replacing_dir(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(os.listdir(target)) == ["b"] and os.listdir(tmp_path) == ["saved_model"]


def test_remove_leftovers_clears_temporaries_of_dead_writers_only(tmp_path):
    dead = multiprocessing.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()
    mine = tmp_path / f".trials.csv.{os.getpid()}.0123abcd.tmp"
    theirs = tmp_path / f".trials.csv.{dead.pid}.0123abcd.tmp"
    keras = tmp_path / f".best.keras.{dead.pid}.89abcdef.tmp.keras"
    for path in (mine, theirs, keras, tmp_path / "trials.csv"):
        path.write_text("x")
    assert sorted(atomic.remove_leftovers(tmp_path)) == sorted([theirs, keras])
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, "trials.csv"])


def test_vocab_and_labels_json_are_readable_by_other_users(tmp_path, umask_022):
    from lstm_sweep.data_pipeline import Vocabulary
    from lstm_sweep.data_pipeline.labelled import labels_to_json

    Vocabulary(["<pad>", "<unk>", "<start>", "<end>", "love"]).to_json(tmp_path / "vocab.json")
    labels_to_json(["neg", "pos"], tmp_path / "labels.json")
    assert mode(tmp_path / "vocab.json") == 0o644 and mode(tmp_path / "labels.json") == 0o644
    assert json.loads((tmp_path / "labels.json").read_text())["labels"] == ["neg", "pos"]


def test_labels_to_json_leaves_no_temporary_when_it_fails(tmp_path, monkeypatch):
    from lstm_sweep.data_pipeline.labelled import labels_to_json

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        labels_to_json(["neg", "pos"], tmp_path / "labels.json")
    assert os.listdir(tmp_path) == []


def test_save_npz_is_fsynced_and_ordinary(tmp_path, monkeypatch, umask_022):
    from lstm_sweep.data_pipeline.cache import save_npz

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    save_npz(tmp_path / "f.npz", x=np.arange(3))
    assert synced and mode(tmp_path / "f.npz") == 0o644
    assert np.load(tmp_path / "f.npz")["x"].tolist() == [0, 1, 2]


def test_no_writer_of_the_project_calls_mkstemp_or_writes_in_place():
    """Every file goes through lstm_sweep.atomic (results/io's writers are thin wrappers)."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("common", "data_pipeline", "results", "search", "model"):
        for file in (root / folder).rglob("*.py"):
            text = file.read_text()
            if file.name != "atomic.py" and ("mkstemp" in text or "mkdtemp(dir=" in text):
                offenders.append(str(file.relative_to(root)))
    assert not offenders, offenders


# ---------------------------------------------------------------- run folders, claimed atomically

def _claim(args):
    out, name, barrier = args
    from lstm_sweep.errors import ConfigError
    from lstm_sweep.search.config import parse_config
    from lstm_sweep.search.sweep import new_run_dir

    barrier.wait()
    try:
        return str(new_run_dir(parse_config({"name": "t", "output": out}), name))
    except ConfigError as e:
        return f"refused: {e}"


@pytest.mark.parametrize("name", [None, "fixed"], ids=["timestamped", "named"])
def test_sweeps_started_at_once_never_share_a_run_folder(tmp_path, name):
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        barrier = manager.Barrier(6)
        with context.Pool(6) as pool:
            got = pool.map(_claim, [(str(tmp_path / "runs"), name, barrier)] * 6)
    folders = [g for g in got if not g.startswith("refused")]
    assert len(folders) == len(set(folders))
    if name is None:
        assert len(folders) == 6  # each its own folder: the timestamp, then -2, -3, ...
    else:
        assert len(folders) == 1 and all("already holds a run" in g for g in got if g.startswith("refused"))
    for folder in folders:
        assert (Path(folder) / "ray").is_dir()
