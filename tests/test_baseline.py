"""The baseline a trial must beat (a model that ignores the context) and the sweep's stop at it.

The baselines are checked against real Keras models that predict the frequencies and nothing
else, scored the way trials are scored; the stop runs in a real sweep on a local Ray.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from lstm_sweep.data_pipeline import DataSettings, LabelledSettings, lm_dataset, prepare, prepare_labelled
from lstm_sweep.data_pipeline.baselines import prior_baselines, unigram_loss
from lstm_sweep.model import evaluate_language_model
from lstm_sweep.search.config import ConfigError, parse_config
from lstm_sweep.search.sweep import run_sweep
from lstm_sweep.search.tasks import get_task
from lstm_sweep.search.trainable import _Baseline


def test_the_unigram_loss_is_the_val_loss_of_a_model_that_predicts_training_frequencies():
    prepared = prepare(DataSettings(builtin_lines=1500, vocab_size=400, seed=0))
    targets = prepared.train[:, 1:]
    counts = np.bincount(targets[targets != 0], minlength=len(prepared.vocab))
    unseen = sorted(set(prepared.val[:, 1:].ravel()) - set(np.flatnonzero(counts)) - {0})
    counts[unseen] = 1  # <unk> here: every training word fit in the vocabulary
    # Every position gets the same logits: log frequency, and "never" for <pad> and <start>.
    logits = np.where(counts > 0, np.log(np.maximum(counts, 1) / counts.sum()), -1e9).astype("float32")
    model = keras.Sequential([keras.Input((None,), dtype="int32"),
                              keras.layers.Embedding(len(prepared.vocab), len(prepared.vocab),
                                                     embeddings_initializer=keras.initializers.Constant(
                                                         np.tile(logits, (len(prepared.vocab), 1))))])
    scored = evaluate_language_model(model, lm_dataset(prepared.val, 64, shuffle=False))
    assert unigram_loss(prepared.train, prepared.val) == pytest.approx(scored["val_loss"], rel=1e-5)
    # A model that learned nothing at all (uniform over the vocabulary) is worse than it.
    assert unigram_loss(prepared.train, prepared.val) < np.log(len(prepared.vocab))


def test_the_class_prior_baselines_are_the_loss_and_accuracy_of_predicting_the_frequencies():
    prepared = prepare_labelled(LabelledSettings(builtin_examples=600, builtin_classes=3, seed=0))
    prior = np.bincount(prepared.train_labels) / len(prepared.train_labels)
    predicted = np.tile(prior, (len(prepared.val_labels), 1))
    scores = prior_baselines(prepared.train_labels, prepared.val_labels)
    expected = keras.losses.SparseCategoricalCrossentropy()(prepared.val_labels, predicted)
    assert scores["val_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert scores["val_accuracy"] == pytest.approx(np.mean(prepared.val_labels == prior.argmax()))
    assert scores["val_accuracy"] == pytest.approx(prepared.stats["majority_share_val"], abs=1e-6)


@pytest.mark.parametrize("train, val", [(np.zeros((2, 3), "int32"), np.array([[2, 4, 3]])),
                                        (np.array([[2, 4, 3]]), np.zeros((1, 3), "int32"))])
def test_a_split_without_real_targets_has_no_unigram_loss(train, val):
    with pytest.raises(ValueError, match="at least one real target"):
        unigram_loss(train, val)


def test_a_trial_stops_from_the_grace_period_on_when_no_better_than_the_baseline():
    prepared = prepare_labelled(LabelledSettings(builtin_examples=600, builtin_classes=2, seed=0))
    job = get_task("classify")
    accuracy = _Baseline(job, prepared, "val_accuracy", "max", after=2)
    majority = accuracy.value
    assert accuracy.verdict(1, {"val_accuracy": majority}) == ""  # still in the grace period
    assert "no better than the class frequencies" in accuracy.verdict(2, {"val_accuracy": majority})
    assert accuracy.verdict(2, {"val_accuracy": majority + 0.01}) == ""
    assert accuracy.verdict(3, {"val_accuracy": float("nan")}) == ""  # diverged: ASHA's call
    loss = _Baseline(job, prepared, "val_loss", "min", after=1)
    assert loss.verdict(1, {"val_loss": loss.value}) and not loss.verdict(1, {"val_loss": loss.value - 1e-3})
    assert _Baseline(job, prepared, "val_loss", "min", after=0).verdict(5, {"val_loss": 99.0}) == ""


def test_stop_at_baseline_must_be_true_or_false():
    assert parse_config({"asha": {"stop_at_baseline": False}}).asha.stop_at_baseline is False
    with pytest.raises(ConfigError, match="asha.stop_at_baseline: expected true or false, got 'no'"):
        parse_config({"asha": {"stop_at_baseline": "no"}})


@pytest.mark.slow
def test_a_sweep_stops_trials_that_learn_nothing_and_keeps_them_when_asked(tmp_path, local_ray, tiny_sweep):
    # A learning rate this small leaves the model near its uniform start, worse than the unigram model.
    stuck = {"learning_rate": 1e-7, "embedding_size": 8, "hidden_size": 8}
    config = tiny_sweep(tmp_path, samples=1, epochs=3, concurrent=1, space=stuck)
    run_sweep(config, name="on")
    trials = pd.read_csv(tmp_path / "on" / "trials.csv")
    assert (trials.status.tolist(), trials.epochs.tolist()) == (["early_stopped"], [1])
    prepared = prepare(config.data)
    baseline = unigram_loss(prepared.train, prepared.val)
    assert trials.baseline[0] == pytest.approx(baseline)
    assert trials.best_val_loss[0] > baseline
    last = [json.loads(line) for line in next((tmp_path / "on" / "ray").glob("*/result.json")).read_text().splitlines()][-1]
    assert last["outcome"] == "at_baseline"
    assert last["reason"].startswith("val_loss ") and "no better than the unigram model" in last["reason"]

    kept = config.with_overrides(**{"asha.stop_at_baseline": False, "budget.max_epochs": 2})
    run_sweep(kept, name="off")
    trials = pd.read_csv(tmp_path / "off" / "trials.csv")
    assert (trials.status.tolist(), trials.epochs.tolist()) == (["completed"], [2])
