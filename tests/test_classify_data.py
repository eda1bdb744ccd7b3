"""Labelled data for `task: classify`: both input layouts, the split, the cache, padding sides, bad input.

The real task is the lyrics corpus labelled by artist (lines of Emily Dickinson against lines of
Eminem), written by the test into a CSV and into a folder per class; the synthetic labelled
verses serve where the corpus may be absent.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lstm_sweep.data_pipeline import (CorpusError, LabelledSettings, clean_document, labels_from_json, labels_to_json, pad_to,
                           prepare_labelled, synthetic_labelled)
from lstm_sweep.search.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[1]
ARTISTS = ("dickinson", "eminem")


def artist_lines(lyrics: Path, per_artist: int) -> dict[str, list[str]]:
    """The first ``per_artist`` distinct non-blank lines of each artist: a line repeated in a
    chorus would otherwise sit in both splits."""
    out = {}
    for artist in ARTISTS:
        path = lyrics / f"{artist}.txt"
        if not path.is_file():
            pytest.skip(f"{path} not found: the artist task needs {', '.join(ARTISTS)} in the lyrics corpus")
        lines = dict.fromkeys(line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                              if clean_document(line))
        out[artist] = list(lines)[:per_artist]
    return out


def write_csv(path: Path, by_label: dict[str, list[str]], text_column="text", label_column="artist") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([text_column, label_column])
        for label, texts in by_label.items():
            writer.writerows([text, label] for text in texts)
    return path


def write_folders(root: Path, by_label: dict[str, list[str]]) -> Path:
    """The IMDB archive's layout: root/<class>/<n>.txt, one example a file."""
    for label, texts in by_label.items():
        (root / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / label / f"{i:05d}.txt").write_text(text, encoding="utf-8")
    return root


def test_csv_and_class_folders_load_to_the_same_arrays(lyrics, tmp_path):
    by_artist = artist_lines(lyrics, per_artist=400)
    from_csv = prepare_labelled(LabelledSettings(path=str(write_csv(tmp_path / "artists.csv", by_artist)),
                                                 label_column="artist", vocab_size=2000), cache_dir=tmp_path / "c")
    from_folders = prepare_labelled(LabelledSettings(path=str(write_folders(tmp_path / "train", by_artist)),
                                                     vocab_size=2000), cache_dir=tmp_path / "c")
    assert from_csv.labels == from_folders.labels == ["dickinson", "eminem"]
    assert from_csv.vocab == from_folders.vocab
    for split in ("train", "val"):
        a, b = getattr(from_csv, f"{split}_ids"), getattr(from_folders, f"{split}_ids")
        assert len(a) == len(b) > 0 and all(np.array_equal(x, y) for x, y in zip(a, b))
        np.testing.assert_array_equal(getattr(from_csv, f"{split}_labels"), getattr(from_folders, f"{split}_labels"))
    assert from_csv.stats["class_counts"] == {"dickinson": 400, "eminem": 400}
    assert from_csv.stats["train"] + from_csv.stats["val"] == 800
    # The ids are the cleaned words: the first Dickinson line read back.
    first = from_csv.train_ids[0] if from_csv.train_labels[0] == 0 else None
    if first is not None:
        assert from_csv.vocab.decode(first).split() == [
            w if w in from_csv.vocab.tokens else "<unk>" for w in clean_document(by_artist["dickinson"][0])]


def test_split_is_stratified_by_seed_and_the_vocabulary_is_the_training_split(tmp_path):
    settings = LabelledSettings(builtin_examples=1000, builtin_classes=3, val_fraction=0.25, vocab_size=5000, seed=4)
    data = prepare_labelled(settings, cache_dir=tmp_path)
    counts = np.bincount(np.concatenate([data.train_labels, data.val_labels]))
    assert data.labels == ["love", "night", "road"]  # sorted names, id = index
    # Each class keeps round(n * val_fraction) of its examples for validation.
    assert np.bincount(data.val_labels).tolist() == [round(n * 0.25) for n in counts]
    train_words = {int(i) for ids in data.train_ids for i in ids}
    assert set(range(4, len(data.vocab))) <= train_words  # every word of the vocabulary comes from training
    assert data.stats["majority_share_val"] == pytest.approx(np.bincount(data.val_labels).max() / len(data.val_labels),
                                                             abs=1e-6)
    other = prepare_labelled(LabelledSettings(**{**settings.__dict__, "seed": 5}), cache_dir=tmp_path)
    assert not np.array_equal(np.concatenate(data.val_ids), np.concatenate(other.val_ids))

    again = prepare_labelled(settings, cache_dir=tmp_path)
    assert again.stats["from_cache"] is True and data.stats["from_cache"] is False
    assert again.labels == data.labels and again.vocab == data.vocab
    assert all(np.array_equal(x, y) for x, y in zip(again.train_ids, data.train_ids))


def test_a_word_seen_only_in_validation_is_unknown(tmp_path):
    # Each example has a word of its own: the training examples' words are in the vocabulary,
    # the validation examples' are <unk>.
    table = write_csv(tmp_path / "t.csv", {label: [f"common words here word{label}{chr(97 + i)}" for i in range(20)]
                                           for label in ("a", "b")})
    data = prepare_labelled(LabelledSettings(path=str(table), label_column="artist"), cache_dir=tmp_path)
    assert (len(data.train_ids), len(data.val_ids)) == (32, 8)
    assert all(1 not in ids for ids in data.train_ids)  # <unk> is id 1
    assert all(ids.tolist().count(1) == 1 for ids in data.val_ids)
    assert data.stats["unk_rate_val"] == pytest.approx(1 / 4)


def test_synthetic_labelled_is_seeded_and_labelled_by_theme():
    pairs = synthetic_labelled(300, num_classes=4, seed=1)
    assert pairs == synthetic_labelled(300, num_classes=4, seed=1) != synthetic_labelled(300, num_classes=4, seed=2)
    assert {label for _, label in pairs} == {"love", "night", "road", "fire"}
    lengths = [len(clean_document(text)) for text, _ in pairs]
    assert min(lengths) < 10 and max(lengths) > 30  # so seq_len matters
    with pytest.raises(ValueError, match="num_classes"):
        synthetic_labelled(10, num_classes=1)


@pytest.mark.parametrize("padding, truncating, expected", [
    ("pre", "pre", [[6, 7, 8], [0, 0, 9]]),
    ("pre", "post", [[5, 6, 7], [0, 0, 9]]),
    ("post", "pre", [[6, 7, 8], [9, 0, 0]]),
    ("post", "post", [[5, 6, 7], [9, 0, 0]]),
])
def test_padding_and_truncation_sides(padding, truncating, expected):
    sequences = [np.array([5, 6, 7, 8], np.int32), np.array([9], np.int32)]
    out = pad_to(sequences, 3, padding=padding, truncating=truncating)
    assert out.dtype == np.int32 and out.tolist() == expected
    assert pad_to(sequences, 4, padding, truncating)[0].tolist() == [5, 6, 7, 8]  # nothing cut at its own length


def test_the_task_pads_each_trial_to_its_own_length_and_side(tmp_path):
    from lstm_sweep.model.spec import ModelSpec
    from lstm_sweep.search.tasks import get_task

    data = prepare_labelled(LabelledSettings(builtin_examples=300), cache_dir=tmp_path)
    task = get_task("classify")
    longest = max(len(x) for x in data.val_ids)
    params = {"seq_len": 5, "padding": "post", "truncating": "post"}
    spec = ModelSpec(vocab_size=len(data.vocab), num_classes=2, **params)
    x = task.padded(data, spec)
    assert x.shape == (len(data.val_ids), 5)
    for row, ids in zip(x, data.val_ids):
        assert row[:min(5, len(ids))].tolist() == ids[:5].tolist()
    wide = task.padded(data, spec.replace(seq_len=longest + 3, padding="pre"))
    assert (wide[:, :3] == 0).all() and wide.shape[1] == longest + 3


def test_labels_json_round_trip(tmp_path):
    labels_to_json(["neg", "pos"], tmp_path / "labels.json")
    assert labels_from_json(tmp_path / "labels.json") == ["neg", "pos"]
    (tmp_path / "other.json").write_text('{"tokens": []}')
    with pytest.raises(CorpusError, match="other.json"):
        labels_from_json(tmp_path / "other.json")


# ---------------------------------------------------------------- bad input

def test_bad_labelled_data_names_the_problem(tmp_path):
    table = write_csv(tmp_path / "a.csv", {"x": ["one line", "two lines"], "y": ["three"]})
    with pytest.raises(CorpusError, match=r"a.csv has no column 'review' \(its columns: 'text', 'artist'\)"):
        prepare_labelled(LabelledSettings(path=str(table), text_column="review", label_column="artist"), tmp_path)
    one = write_csv(tmp_path / "one.csv", {"x": ["a line", "another line", "a third"]})
    with pytest.raises(CorpusError, match="label column 'artist' .* has one class"):
        prepare_labelled(LabelledSettings(path=str(one), label_column="artist"), tmp_path)
    (tmp_path / "empty.csv").write_text("text,artist\nsome words,x\nmore words,\n")
    with pytest.raises(CorpusError, match="line 3: the label column 'artist' is empty"):
        prepare_labelled(LabelledSettings(path=str(tmp_path / "empty.csv"), label_column="artist"), tmp_path)

    folders = write_folders(tmp_path / "train", {"neg": ["bad film", "awful plot"], "pos": ["good film", "great cast"]})
    (folders / "unsup").mkdir()
    with pytest.raises(CorpusError, match="class folder .*unsup is empty"):
        prepare_labelled(LabelledSettings(path=str(folders)), tmp_path)
    data = prepare_labelled(LabelledSettings(path=str(folders), classes=("pos", "neg"), val_fraction=0.5), tmp_path)
    assert data.labels == ["neg", "pos"]
    with pytest.raises(CorpusError, match="no class subfolders"):
        prepare_labelled(LabelledSettings(path=str(folders / "neg")), tmp_path)


def test_bad_classify_config_names_the_key():
    def config(**changes):
        return parse_config({"task": "classify", **changes}, source="c.yaml")

    assert config().space["seq_len"].args == (128,) and config().mode == "min"
    assert config(metric="val_accuracy").mode == "max"
    for changes, needle in [({"space": {"seq_len": 0}}, "space.seq_len: 0 is out of range"),
                            ({"space": {"seq_len": {"choice": [64, -1]}}}, "space.seq_len"),
                            ({"space": {"padding": "middle"}}, "space.padding: 'middle' is not one of pre, post"),
                            ({"space": {"bidirectional": {"choice": [0, 1]}}}, "space.bidirectional"),
                            ({"space": {"cell": {"uniform": [1, 2]}}}, "space.cell"),
                            ({"metric": "val_accuracy", "mode": "min"}, "mode: 'min' must be 'max'"),
                            ({"metric": "val_loss_padded"}, "metric: 'val_loss_padded' must be one of"),
                            ({"data": {"max_tokens": 15}}, "data.max_tokens"),
                            ({"data": {"classes": "pos"}}, "data.classes")]:
        with pytest.raises(ConfigError, match=needle):
            config(**changes)
    with pytest.raises(ConfigError, match="space.seq_len: applies to task: classify only"):
        parse_config({"space": {"seq_len": 64}}, source="c.yaml")
    round_trip = config(data={"classes": ["pos", "neg"]}, space={"cell": {"choice": ["rnn", "gru"]},
                                                                  "bidirectional": {"choice": [False, True]}})
    assert parse_config(round_trip.to_dict()) == round_trip


def lstm_sweep(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lstm_sweep", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=os.environ | {"PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("case", ["no such column", "one class", "empty class folder", "seq_len 0"])
def test_bad_classify_input_ends_with_one_line_and_status_2(tmp_path, case):
    data, space = tmp_path / "data.csv", "{}"
    if case == "no such column":
        write_csv(data, {"x": ["a line"] * 3, "y": ["b line"] * 3}, label_column="singer")
    elif case == "one class":
        write_csv(data, {"x": ["a line", "b line", "c line"]})
    elif case == "empty class folder":
        data = write_folders(tmp_path / "train", {"neg": ["bad"], "pos": ["good"]})
        (data / "unsup").mkdir()
    else:
        write_csv(data, {"x": ["a line"] * 3, "y": ["b line"] * 3})
        space = "{seq_len: 0}"
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(f"""
        task: classify
        data: {{path: {data}, label_column: artist}}
        space: {space}
    """))
    result = lstm_sweep("search", "--config", str(config), "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm-sweep: error: "), result.stderr
    needle = {"no such column": "no column 'artist'", "one class": "has one class ('x')",
              "empty class folder": "unsup is empty", "seq_len 0": "space.seq_len"}[case]
    assert needle in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing half-written
