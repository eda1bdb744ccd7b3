"""The classifier, its memory model and the SavedModel's padding: no Ray, no sweep."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lstm_sweep.data_pipeline import pad_to
from lstm_sweep.model import build_classifier, class_probabilities, compile_classifier
from lstm_sweep.model.export import _pad_in_tf
from lstm_sweep.model.memory import count_parameters, estimate_memory, estimate_peak_bytes, largest_batch_that_fits
from lstm_sweep.search.config import parse_config
from lstm_sweep.search.resources import GiB, TrialSizer, make_sizer, NodeInfo

CLASSIFIER = dict(vocab_size=10000, embedding_size=64, hidden_size=128, num_layers=1, batch_size=64, seq_len=512,
                  num_classes=2)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers, classes", [(1, 2), (2, 5)])
def test_parameter_count_matches_keras(cell, bidirectional, layers, classes):
    model = build_classifier(vocab_size=50, num_classes=classes, embedding_size=8, hidden_size=12, num_layers=layers,
                             cell=cell, bidirectional=bidirectional)
    assert count_parameters(50, 8, 12, layers, cell, num_classes=classes, bidirectional=bidirectional) \
        == model.count_params()


def test_heads_give_class_probabilities():
    ids = np.array([[0, 0, 5, 6], [7, 8, 9, 3]], np.int32)
    binary = build_classifier(vocab_size=20, num_classes=2, embedding_size=4, hidden_size=8)
    assert binary.output_shape == (None, 1)
    p = binary(ids).numpy()[:, 0]
    both = class_probabilities(binary, ids)
    np.testing.assert_allclose(both, np.stack([1 - p, p], axis=1), rtol=1e-6)
    multi = build_classifier(vocab_size=20, num_classes=4, embedding_size=4, hidden_size=8, num_layers=2,
                             cell="gru", bidirectional=True, dropout=0.1)
    assert multi.output_shape == (None, 4)
    np.testing.assert_allclose(class_probabilities(multi, ids).sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="num_classes"):
        build_classifier(vocab_size=20, num_classes=1, embedding_size=4, hidden_size=8)


def test_a_classifier_learns_a_token_that_decides_the_class():
    # Label 1 exactly when token 5 is in the row: a few epochs must find it.
    rng = np.random.default_rng(0)
    x = rng.integers(6, 30, size=(256, 8)).astype(np.int32)
    y = rng.integers(0, 2, size=256).astype(np.int32)
    x[y == 1, rng.integers(0, 8, size=int(y.sum()))] = 5
    from lstm_sweep.model.train import set_seed

    set_seed(0)
    model = compile_classifier(build_classifier(30, 2, 8, 16), learning_rate=2e-2)
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0, validation_data=(x, y))
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    assert history.history["val_accuracy"][-1] > 0.9


def test_memory_model_covers_classifiers():
    base = estimate_memory(CLASSIFIER)
    # Only the last step reaches the head: its outputs are B x 1, not the language model's B x T x V.
    as_lm = estimate_memory({**CLASSIFIER, "num_classes": 0})
    assert base.activations < as_lm.activations / 10
    assert base.parameters == count_parameters(10000, 64, 128, num_classes=2)
    # Bidirectional doubles the recurrent activations (an LSTM keeps 10 H values a step) and
    # adds a layer's fixed cost.
    bi = estimate_memory({**CLASSIFIER, "bidirectional": True})
    assert bi.activations - base.activations == 64 * 512 * 10 * 128 * 4
    assert bi.workspace > base.workspace
    for name, small, big in [("seq_len", 64, 1024), ("hidden_size", 64, 512), ("batch_size", 32, 256)]:
        assert estimate_peak_bytes({**CLASSIFIER, name: small}) < estimate_peak_bytes({**CLASSIFIER, name: big}), name
    assert estimate_peak_bytes({**CLASSIFIER, "cell": "rnn"}) < estimate_peak_bytes(CLASSIFIER) \
        < estimate_peak_bytes({**CLASSIFIER, "cell": "lstm", "bidirectional": True})
    fits = largest_batch_that_fits(CLASSIFIER, GiB)
    assert estimate_peak_bytes({**CLASSIFIER, "batch_size": fits}) <= GiB < estimate_peak_bytes(
        {**CLASSIFIER, "batch_size": fits + 1})


def test_the_sizer_plans_each_classifier_trial_at_its_own_length():
    config = parse_config({"task": "classify", "space": {"seq_len": {"choice": [64, 1024]},
                                                         "bidirectional": {"choice": [False, True]}}})
    sizer = make_sizer(config, 10000, [NodeInfo(cpus=2, memory_bytes=8 * GiB)], num_classes=2)
    assert isinstance(sizer, TrialSizer) and sizer.num_classes == 2 and sizer.seq_len == 1024
    trial = {"embedding_size": 64, "hidden_size": 512, "num_layers": 1, "batch_size": 4096, "dropout": 0.0,
             "learning_rate": 1e-3, "padding": "pre", "truncating": "pre"}
    short = sizer.plan({**trial, "seq_len": 64, "bidirectional": False})
    long = sizer.plan({**trial, "seq_len": 1024, "bidirectional": False})
    both_ways = sizer.plan({**trial, "seq_len": 1024, "bidirectional": True})
    assert short.batch_size_used > long.batch_size_used > both_ways.batch_size_used > 0
    assert long.predicted_peak_bytes == estimate_peak_bytes(
        sizer.spec({**trial, "seq_len": 1024, "bidirectional": False}).with_batch(long.batch_size_used))


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_the_saved_model_pads_as_training_does(padding, truncating):
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, 50, size=n).astype(np.int32) for n in (0, 1, 3, 7, 8, 12)]
    ragged = tf.ragged.constant([s.tolist() for s in sequences], dtype=tf.int32)
    in_tf = _pad_in_tf(ragged, 7, padding, truncating).numpy()
    np.testing.assert_array_equal(in_tf, pad_to(sequences, 7, padding, truncating))


def test_the_packaged_classify_sweep_loads_and_plans(capsys):
    from lstm_sweep.search.cli import main
    from lstm_sweep.search.config import load_config

    config = load_config("sweeps/classify.yaml")
    assert config.task == "classify" and config.metric == "val_loss" and config.data.label_column == "artist"
    assert {"cell", "bidirectional", "seq_len", "padding"} <= set(config.searched())
    assert parse_config(config.to_dict()) == config
    assert main(["plan", "--config", "sweeps/classify.yaml", "--classes", "3", "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "a classifier of 3 classes" in out and {"cell", "bidir", "seq"} <= set(out.splitlines()[1].split())


def test_trials_read_a_relative_data_path_from_the_drivers_folder(tmp_path, monkeypatch):
    # Ray Tune runs each trial in its own folder: `path: artists.csv` must reach it as absolute.
    from lstm_sweep.search.trainable import trial_arguments

    monkeypatch.chdir(tmp_path)
    config = parse_config({"task": "classify", "data": {"path": "artists.csv"}})
    assert trial_arguments(config, sizer=None)["sweep"].data.path == str(tmp_path / "artists.csv")
    assert trial_arguments(parse_config({}), sizer=None)["sweep"].data.path == "builtin"
