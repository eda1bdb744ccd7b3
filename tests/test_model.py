"""The language model, its padding-masked loss and its exact validation figures."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lstm_sweep.model import (build_language_model, compile_language_model, evaluate_language_model,
                   masked_cross_entropy, set_seed)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_output_shape_is_batch_time_vocab(cell, num_layers):
    model = build_language_model(vocab_size=50, embedding_size=4, hidden_size=6,
                                 num_layers=num_layers, dropout=0.1, cell=cell)
    logits = model(tf.zeros((3, 7), tf.int32))
    assert tuple(logits.shape) == (3, 7, 50)
    assert logits.dtype == tf.float32
    assert sum(layer.name.startswith(cell) for layer in model.layers) == num_layers


@pytest.mark.parametrize("kwargs, match", [
    ({"vocab_size": 1}, "vocab_size"),
    ({"embedding_size": 0}, "embedding_size"),
    ({"hidden_size": -3}, "hidden_size"),
    ({"num_layers": 0}, "num_layers"),
    ({"dropout": 1.0}, "dropout"),
    ({"cell": "transformer"}, "cell"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    args = dict(vocab_size=10, embedding_size=4, hidden_size=4) | kwargs
    with pytest.raises(ValueError, match=match):
        build_language_model(**args)


def test_masked_loss_ignores_padding():
    rng = np.random.default_rng(0)
    targets = np.array([[5, 3, 9, 0, 0], [2, 7, 0, 0, 0]], np.int32)
    logits = rng.normal(size=(2, 5, 12)).astype(np.float32)
    # Same batch padded further, with arbitrary logits at the new padded steps.
    wider_targets = np.pad(targets, ((0, 0), (0, 6)))
    wider_logits = np.concatenate([logits, rng.normal(size=(2, 6, 12)).astype(np.float32) * 50], axis=1)
    narrow = float(masked_cross_entropy(targets, logits))
    wide = float(masked_cross_entropy(wider_targets, wider_logits))
    assert narrow == pytest.approx(wide, rel=1e-6)

    # ...and it is the plain mean over the 5 real tokens.
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = [(b, t) for b in range(2) for t in range(5) if targets[b, t]]
    expected = -np.mean([log_probs[b, t, targets[b, t]] for b, t in real])
    assert narrow == pytest.approx(expected, rel=1e-5)


def test_uniform_model_has_loss_log_vocab():
    assert float(masked_cross_entropy(tf.constant([[2, 3, 0]]), tf.zeros((1, 3, 4)))) == pytest.approx(math.log(4))


def test_validation_figures_are_token_weighted_and_padding_free():
    set_seed(0)
    model = build_language_model(vocab_size=20, embedding_size=4, hidden_size=8)
    rng = np.random.default_rng(1)
    source = rng.integers(1, 20, size=(6, 8)).astype(np.int32)
    target = rng.integers(1, 20, size=(6, 8)).astype(np.int32)
    target[:, 5:] = 0
    target[0, 2:] = 0  # batches with very different real-token counts
    # Two uneven batches, and the same data as one batch: an exact token mean is equal.
    split = tf.data.Dataset.from_tensor_slices((source, target)).batch(4)
    whole = tf.data.Dataset.from_tensor_slices((source, target)).batch(6)
    a, b = evaluate_language_model(model, split), evaluate_language_model(model, whole)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    real = (target != 0).sum()
    assert a["val_loss_padded"] == pytest.approx(a["val_loss"] * real / target.size, rel=1e-6)


def test_training_lowers_the_loss_on_a_learnable_sequence():
    set_seed(0)
    # Each token predicts the next: a pattern a small LSTM learns in a few epochs.
    rows = np.array([[(i + j) % 9 + 1 for j in range(10)] for i in range(64)], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((rows[:, :-1], rows[:, 1:])).batch(16)
    model = compile_language_model(build_language_model(10, 8, 16), learning_rate=1e-2)
    before = evaluate_language_model(model, ds)["val_loss"]
    model.fit(ds, epochs=8, verbose=0)
    after = evaluate_language_model(model, ds)["val_loss"]
    assert after < 0.5 * before


def test_a_one_cpu_trial_still_gets_two_inter_op_threads():
    # TensorFlow's thread pools are per process and fixed at the first op: a fresh process.
    code = ("from model import configure_threads; import tensorflow as tf; configure_threads(1); "
            "print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.stdout.split()[-2:] == ["1", "2"]  # one inter-op thread doubles an LSTM step's peak
