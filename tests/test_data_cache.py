"""data_pipeline's cache and module layout: pinned fingerprints, load_npz/save_npz, the light import, re-exports.

The fingerprints below were computed by the code before the cache moved to ``data_pipeline.cache``:
a change to them makes every cache file on every machine miss, so it must be a deliberate
format bump, never a side effect of a refactor.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_sweep.data_pipeline import DataSettings, LabelledSettings, prepare, prepare_labelled

# Computed with the code of commit 62812cf (data_pipeline/dataset.py and labelled.py each
# hashing their own corpus), for the corpora written by the helpers below.
PINNED = {
    "words builtin": "eda6813445f2fb3aa1e240b5d2148de4d5d86a28e77f04a6115e3a8262d86e13",
    "words folder": "958dd0b99e4f1ebc761b71cfb170ee86b743ec213a5702d3edf7ce09d17c1be1",
    "labelled builtin": "47711bcb175121a73b835d664bac0ec996b7b362ae1622b302411e0ec3d7fa04",
    "labelled csv": "cd94d1acac0f90a838e78456c16caf49e5b392cbae17881d5ae2d1a4b65225db",
    "labelled folders": "da682eabaed89648e48507870478cc0f439399b75162e004805707c01a0f56a0",
}


def words_folder(root):
    """Two files, one in a subfolder, one with non-ASCII bytes: the names and bytes are hashed."""
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("the cat sat on the mat\na dog ran far away\n" * 20, encoding="utf-8")
    (root / "sub" / "b.txt").write_text("über die brücke gehen wir\nthe night is long\n" * 20, encoding="utf-8")
    return root


def labelled_csv(file):
    rows = ["text,label"] + [f"love is all you need {i % 7},love" for i in range(30)] + \
           [f"the night is dark and cold {i % 5},night" for i in range(30)]
    file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return file


def labelled_folders(root):
    for label, text in (("pos", "a fine film full of joy"), ("neg", "a dull film full of gloom"), ("mid", "so so")):
        (root / label).mkdir(parents=True)
        for i in range(12):
            (root / label / f"{i:02d}.txt").write_text(f"{text} number {'x' * i}\n", encoding="utf-8")
    return root


def fingerprints(tmp_path):
    cache = tmp_path / "cache"
    return {
        "words builtin": prepare(DataSettings(builtin_lines=300, vocab_size=50, max_tokens=12, val_fraction=0.25,
                                              seed=3), cache_dir=cache),
        "words folder": prepare(DataSettings(path=str(words_folder(tmp_path / "words")), vocab_size=30,
                                             max_tokens=9, seed=1), cache_dir=cache),
        "labelled builtin": prepare_labelled(LabelledSettings(builtin_examples=200, builtin_classes=3, vocab_size=80,
                                                              seed=2), cache_dir=cache),
        "labelled csv": prepare_labelled(LabelledSettings(path=str(labelled_csv(tmp_path / "t.csv")),
                                                          val_fraction=0.3), cache_dir=cache),
        "labelled folders": prepare_labelled(LabelledSettings(path=str(labelled_folders(tmp_path / "classes")),
                                                              classes=("pos", "neg")), cache_dir=cache),
    }


def test_fingerprints_are_pinned(tmp_path):
    prepared = fingerprints(tmp_path)
    assert {kind: data.fingerprint for kind, data in prepared.items()} == PINNED
    names = sorted(p.name for p in (tmp_path / "cache").glob("*.npz"))
    assert names == sorted(f"{fp[:16]}.npz" for fp in PINNED.values())


def test_a_cache_file_hits_after_a_move_and_keeps_its_layout(tmp_path):
    """The file names and the arrays in them are what older code wrote and reads."""
    cache = tmp_path / "cache"
    words = prepare(DataSettings(path=str(words_folder(tmp_path / "w")), vocab_size=30, max_tokens=9, seed=1),
                    cache_dir=cache)
    moved = (tmp_path / "w").rename(tmp_path / "moved")
    again = prepare(DataSettings(path=str(moved), vocab_size=30, max_tokens=9, seed=1), cache_dir=cache)
    assert again.stats["from_cache"] is True and again.fingerprint == words.fingerprint == PINNED["words folder"]
    assert np.array_equal(again.train, words.train) and again.vocab.tokens == words.vocab.tokens
    with np.load(cache / f"{words.fingerprint[:16]}.npz") as npz:
        assert npz.files == ["train", "val", "tokens", "fingerprint", "stats"]

    labelled = prepare_labelled(LabelledSettings(path=str(labelled_csv(tmp_path / "t.csv")), val_fraction=0.3),
                                cache_dir=cache)
    with np.load(cache / f"{labelled.fingerprint[:16]}.npz") as npz:
        assert npz.files == ["train_tokens", "train_offsets", "val_tokens", "val_offsets", "train_labels",
                             "val_labels", "tokens", "labels", "fingerprint", "stats"]
    hit = prepare_labelled(LabelledSettings(path=str(tmp_path / "t.csv"), val_fraction=0.3), cache_dir=cache)
    assert hit.stats["from_cache"] is True and hit.labels == labelled.labels == ["love", "night"]
    assert all(np.array_equal(a, b) for a, b in zip(hit.train_ids, labelled.train_ids))
    assert {k: v for k, v in hit.stats.items() if k not in ("from_cache", "seconds")} == \
           {k: v for k, v in labelled.stats.items() if k not in ("from_cache", "seconds")}


def test_fingerprint_hashes_header_corpus_and_recipe():
    from lstm_sweep.data_pipeline.cache import fingerprint

    files = [("a.txt", b"one two\n", None), ("sub/b.txt", b"three\n", None)]
    base = fingerprint("format 1", files, {"seed": 0, "vocab_size": 10})
    assert base == fingerprint("format 1", files, {"vocab_size": 10, "seed": 0})  # key order is not hashed
    assert len({base, fingerprint("format 2", files, {"seed": 0, "vocab_size": 10}),
                fingerprint("format 1", files[:1], {"seed": 0, "vocab_size": 10}),
                fingerprint("format 1", [("a.txt", b"one two\nthree\n", None)], {"seed": 0, "vocab_size": 10}),
                fingerprint("format 1", [("a.txt", b"one", None), ("two\n", b"", None)], {"seed": 0, "vocab_size": 10}),
                fingerprint("format 1", "builtin 10 version 1", {"seed": 0, "vocab_size": 10}),
                fingerprint("format 1", files, {"seed": 1, "vocab_size": 10})}) == 7
    for bad in ({"header": ""}, {"corpus": 3}, {"recipe": [1]}):
        args = {"header": "format 1", "corpus": files, "recipe": {}} | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            fingerprint(**args)


def test_load_npz_rebuilds_what_it_cannot_read(tmp_path, caplog):
    from lstm_sweep.data_pipeline.cache import load_npz, save_npz

    file = tmp_path / "ab.npz"
    assert load_npz(file, "ab", dict) is None  # no file: a quiet miss
    save_npz(file, fingerprint=np.array("ab"), x=np.arange(3))
    read = lambda npz: {"x": npz["x"].tolist(), "stats": {}}  # noqa: E731
    loaded = load_npz(file, "ab", lambda npz: type("D", (), {"stats": {}, "x": npz["x"].tolist()})())
    assert loaded.x == [0, 1, 2] and loaded.stats == {"from_cache": True}
    with caplog.at_level(logging.WARNING, logger="lstm_sweep.data"):
        assert load_npz(file, "cd", read) is None  # another corpus's file
        assert load_npz(file, "ab", lambda npz: npz["missing"]) is None  # a reader that fails
        file.write_bytes(b"not a zip")
        assert load_npz(file, "ab", read) is None  # a torn or foreign file
    assert caplog.text.count("rebuilding it") == 3


def test_save_npz_is_atomic_and_never_fatal(tmp_path, caplog):
    from lstm_sweep.data_pipeline.cache import save_npz

    save_npz(tmp_path / "deep" / "f.npz", x=np.arange(2))
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["f.npz"]  # no temporary file left
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="lstm_sweep.data"):
        save_npz(blocker / "f.npz", x=np.arange(2))
    assert "going on without it" in caplog.text


def test_load_or_build_builds_once_and_times_both(tmp_path):
    import time
    from types import SimpleNamespace

    from lstm_sweep.data_pipeline.cache import load_or_build

    fp, built = "ab" * 32, []

    def build():
        built.append(1)
        return SimpleNamespace(x=np.arange(3), stats={"n": 1, "from_cache": False})

    def call():
        return load_or_build(tmp_path, fp, build=build, started=time.perf_counter(),
                             to_arrays=lambda data: {"x": data.x},
                             from_arrays=lambda npz, stats: SimpleNamespace(x=npz["x"], stats=stats))

    first, second = call(), call()
    assert built == [1] and [p.name for p in tmp_path.iterdir()] == [f"{fp[:16]}.npz"]
    assert first.stats["from_cache"] is False and first.stats["seconds"] >= 0
    assert second.stats == {"n": 1, "from_cache": True, "seconds": second.stats["seconds"]}
    assert second.x.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="fingerprint='ab' must be a hex digest"):
        load_or_build(tmp_path, "ab", build=build, to_arrays=dict, from_arrays=dict, started=0.0)


def test_cache_folder_default_env_and_bad_value(tmp_path, monkeypatch):
    from lstm_sweep.data_pipeline.cache import cache_folder

    monkeypatch.setenv("LSTM_SWEEP_CACHE", str(tmp_path / "env"))
    assert cache_folder(None) == tmp_path / "env"
    monkeypatch.delenv("LSTM_SWEEP_CACHE")
    assert cache_folder(None) == Path.home() / ".cache" / "lstm-sweep"
    assert cache_folder(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(ValueError, match=r"cache_dir=3 must be a folder path or None"):
        cache_folder(3)


def test_checks_name_the_value_and_the_rule():
    from lstm_sweep.data_pipeline.checks import check_fraction, check_int

    check_int("n", np.int64(3), 3, "why")
    for bad in (2, True, 3.0, "3"):
        with pytest.raises(ValueError, match=r"^n=.* must be an int >= 3 \(why\)$"):
            check_int("n", bad, 3, "why")
    assert check_fraction("f", 0.5) == 0.5 and type(check_fraction("f", np.float64(0.5))) is float
    for bad in (0, 1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"^f=.* must be a number strictly between 0 and 1$"):
            check_fraction("f", bad)


def test_check_path_takes_a_path_or_a_string():
    from lstm_sweep.data_pipeline.checks import check_path

    assert check_path("path", Path("a") / "b", "a folder") == os.path.join("a", "b")
    for bad in ("", "  ", None, 3):
        with pytest.raises(ValueError, match=r"^path=.* must be a folder$"):
            check_path("path", bad, "a folder")
    assert DataSettings(path=Path("x")).path == LabelledSettings(path=Path("x")).path == "x"


def test_importing_the_package_does_not_import_tensorflow():
    code = ("import sys, lstm_sweep.data_pipeline as dp, lstm_sweep.data_pipeline.dataset, "
            "lstm_sweep.data_pipeline.labelled, lstm_sweep.data_pipeline.batching, lstm_sweep.data_pipeline.cache\n"
            "dp.DataSettings(); dp.LabelledSettings()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_names_stay_importable_from_where_they_were():
    """Other packages (search, model, bench) and older code import these from the task modules."""
    import lstm_sweep.data_pipeline as dp
    from lstm_sweep.data_pipeline import batching, cache, checks, dataset, labelled

    assert sorted(dp.__all__) == sorted([
        "CorpusError", "DataSettings", "END", "LabelledData", "LabelledSettings", "PAD", "PreparedData", "START",
        "UNK", "Vocabulary", "CharVocabulary", "classify_dataset", "clean_document", "clean_line", "labels_from_json",
        "labels_to_json", "lm_dataset", "pad_to", "prepare", "prepare_labelled", "read_lines",
        "synthetic_labelled", "synthetic_lines"])
    assert all(hasattr(dp, name) for name in dp.__all__)
    moved = {"lm_dataset": batching, "batch_count": batching, "row_order": batching, "_shift_and_trim": batching,
             "cache_folder": cache, "load_npz": cache, "save_npz": cache, "check_int": checks,
             "check_fraction": checks}
    for name, home in moved.items():
        assert getattr(dataset, name) is getattr(home, name), name
    for name in ("pad_to", "classify_dataset", "SIDES"):
        assert getattr(labelled, name) is getattr(batching, name), name
    assert dataset.BUILTIN == labelled.BUILTIN == "builtin" and labelled.SIDES == ("pre", "post")
    assert dataset.CACHE_FORMAT == labelled.LABELLED_CACHE_FORMAT == 1
    for name in ("check_int", "check_fraction", "labels_to_json", "labels_from_json"):
        assert callable(getattr(labelled, name)), name
