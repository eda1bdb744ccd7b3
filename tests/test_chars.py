"""Character-level language models (issue 19): windows, the block split, the per-character loss,
the string-in SavedModel, stateful generation, samples while retraining, and the bad inputs."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import tensorflow as tf
import yaml

from lstm_sweep.data_pipeline import CharVocabulary, DataSettings, Vocabulary, lm_dataset, prepare
from lstm_sweep.data_pipeline.baselines import unigram_loss
from lstm_sweep.data_pipeline.chars import corpus_stream, split_blocks, window_starts
from lstm_sweep.errors import ConfigError, CorpusError
from lstm_sweep.model import (build_language_model, compile_language_model, evaluate_language_model, export_model,
                              generate, generate_by_rerunning_prefix)
from lstm_sweep.search.cli import main
from lstm_sweep.search.config import parse_config

CHARS = {"tokens": "char", "path": "builtin", "builtin_lines": 300, "vocab_size": 60, "clean": False,
         "seq_len": 20, "stride": 5}


@pytest.fixture(scope="module")
def data():
    return prepare(DataSettings(**CHARS))


@pytest.fixture(scope="module")
def model(data):
    """A tiny character model, trained one short epoch so its predictions are not uniform."""
    tf.keras.utils.set_random_seed(0)
    model = compile_language_model(build_language_model(len(data.vocab), 8, 16), 1e-2)
    model.fit(lm_dataset(data.train[:512], 64, buckets=False), epochs=1, verbose=0)
    return model


# ---------------------------------------------------------------- windows and the block split

def test_windows_are_the_stream_cut_inside_blocks_and_no_window_crosses_the_split(data):
    settings = DataSettings(**CHARS)
    stream, _ = corpus_stream(settings, None)
    block, is_val = split_blocks(len(stream), settings.val_fraction, settings.seed)
    assert int(is_val.sum()) == round(len(is_val) * 0.2) and not is_val.all()
    width = settings.seq_len + 1
    train_starts = window_starts(len(stream), block, np.flatnonzero(~is_val), width, settings.stride)
    val_starts = window_starts(len(stream), block, np.flatnonzero(is_val), width, settings.seq_len)
    ids = np.asarray(data.vocab.encode(stream))
    # Each row is the stream's characters at its start: train every `stride`, validation side by side.
    np.testing.assert_array_equal(data.train, ids[train_starts[:, None] + np.arange(width)])
    np.testing.assert_array_equal(data.val, ids[val_starts[:, None] + np.arange(width)])
    assert data.train.shape[1] == width and data.train.min() >= 1  # no padding: every position a target
    for starts, want_val in ((train_starts, False), (val_starts, True)):
        first, last = starts // block, (starts + width - 1) // block
        assert (first == last).all()  # no window crosses a block, so none crosses the split
        assert (is_val[first] == want_val).all()
    # No validation character is inside any training window.
    covered = np.zeros(len(stream), bool)
    for s in train_starts:
        covered[s:s + width] = True
    assert not any(covered[s:s + width].any() for s in val_starts)
    in_first_block = train_starts[train_starts // block == train_starts[0] // block]
    assert len(in_first_block) > 1 and (np.diff(in_first_block) == settings.stride).all()


def test_window_starts_and_blocks_by_hand():
    assert window_starts(20, 10, np.array([0, 1]), width=4, stride=3).tolist() == [0, 3, 6, 10, 13, 16]
    assert window_starts(20, 10, np.array([1]), width=11, stride=1).tolist() == []  # longer than its block
    block, is_val = split_blocks(100_000, 0.2, seed=0)
    assert block == 1000 and len(is_val) == 100 and is_val.sum() == 20
    assert split_blocks(100_000, 0.2, seed=1)[1].tolist() != is_val.tolist()  # the seed picks the blocks


def test_vocabulary_is_characters_of_the_training_blocks_and_round_trips(data, tmp_path):
    vocab = data.vocab
    assert isinstance(vocab, CharVocabulary) and vocab.tokens[:2] == ["<pad>", "<unk>"]
    assert " " in vocab.tokens and "\n" in vocab.tokens and "I" in vocab.tokens  # case kept: clean false
    assert vocab.decode(data.train[0]) == corpus_stream(DataSettings(**CHARS), None)[0][:21]
    vocab.to_json(tmp_path / "vocab.json")
    loaded = Vocabulary.from_json(tmp_path / "vocab.json")
    assert isinstance(loaded, CharVocabulary) and loaded == vocab and not loaded.clean
    assert len(prepare(DataSettings(**{**CHARS, "vocab_size": 10})).vocab) == 10  # capped: the rest <unk>


def test_cached_and_keyed_by_the_settings(data):
    again = prepare(DataSettings(**CHARS))
    assert again.stats["from_cache"] and again.fingerprint == data.fingerprint
    np.testing.assert_array_equal(again.train, data.train)
    other = prepare(DataSettings(**{**CHARS, "seq_len": 10}))
    assert other.fingerprint != data.fingerprint and other.train.shape[1] == 11
    assert other.vocab == data.vocab  # the blocks do not depend on seq_len: one vocabulary for a sweep
    cleaned = prepare(DataSettings(**{**CHARS, "clean": True}))
    assert cleaned.vocab.clean and "I" not in cleaned.vocab.tokens


def test_a_searched_seq_len_cuts_its_own_windows(tmp_path):
    from lstm_sweep.search.tasks import get_task

    config = parse_config({"data": CHARS, "space": {"seq_len": {"choice": [10, 20]}, "hidden_size": 8}})
    task = get_task("language_model")
    settings = task.settings(dict(config.data.__dict__), {"seq_len": 10, "hidden_size": 8})
    prepared = task.prepare(settings)
    assert prepared.train.shape[1] == 11
    assert task.fixed_sizes(config, 0) == (20, 0)  # the sizer plans the space's longest window
    spec = task.spec({"seq_len": 10, "hidden_size": 8}, prepared, config)
    assert spec.seq_len == 10  # the memory model's T: the trial's own window
    # A word sweep keeps its sentences' length and refuses a searched window.
    with pytest.raises(ConfigError, match="space.seq_len: applies to task: classify only, or to character data"):
        parse_config({"space": {"seq_len": 40}})


# ---------------------------------------------------------------- the loss

def test_val_loss_is_the_mean_cross_entropy_over_every_character(data, model):
    windows = data.val[:5]
    figures = evaluate_language_model(model, lm_dataset(windows, 2, shuffle=False))
    logits = model(windows[:, :-1]).numpy().astype(np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    targets = windows[:, 1:]
    by_hand = -np.take_along_axis(log_p, targets[..., None], -1).mean()  # every position of every window
    assert figures["val_loss"] == pytest.approx(by_hand, rel=1e-5)
    assert figures["val_loss_padded"] == pytest.approx(by_hand, rel=1e-5)  # no padding in a window
    # The unigram baseline counts the same targets.
    counts = np.bincount(data.train[:, 1:].ravel(), minlength=len(data.vocab)).astype(float)
    counts[targets.ravel()] = np.maximum(counts[targets.ravel()], 1)
    assert unigram_loss(data.train, windows) == pytest.approx(-np.log(counts[targets.ravel()] / counts.sum()).mean())


# ---------------------------------------------------------------- export and generation

def test_saved_model_takes_strings_and_splits_characters_inside(data, model, tmp_path):
    from lstm_sweep.model.export import load_export

    export_model(model, data.vocab, tmp_path, {"trial_id": "t"})
    loaded, vocab, card = load_export(tmp_path)
    assert isinstance(vocab, CharVocabulary) and card["tokens"] == "char"
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    prompts = ["I love the", "Hé~"]  # é and ~ are not in the vocabulary: <unk>
    out = served.signatures["serving_default"](prompts=tf.constant(prompts))
    ids = [data.vocab.encode(p) for p in prompts]
    assert ids[1][1:] == [1, 1]
    dense = np.zeros((2, max(map(len, ids))), np.int32)
    for row, row_ids in zip(dense, ids):
        row[:len(row_ids)] = row_ids
    expected = model(dense).numpy()
    for i, row_ids in enumerate(ids):
        np.testing.assert_allclose(out["logits"][i].numpy(), expected[i, len(row_ids) - 1], rtol=1e-4, atol=1e-5)
    tokens = served.signatures["vocabulary"]()["tokens"].numpy()
    assert [t.decode() for t in tokens] == data.vocab.tokens


@pytest.mark.parametrize("temperature, stop_at", [(0.0, "limit"), (1.0, "limit"), (1.2, "newline")])
def test_stateful_generation_equals_rerunning_the_prefix(data, model, temperature, stop_at):
    kwargs = dict(max_tokens=40, temperature=temperature, top_k=len(data.vocab), num=3, seed=5, stop_at=stop_at)
    stateful = generate(model, data.vocab, "I love the ", **kwargs)
    rerun = generate_by_rerunning_prefix(model, data.vocab, "I love the ", **kwargs)
    assert stateful == rerun
    assert all(line.startswith("I love the ") for line in stateful)  # the prompt as typed, case kept
    new = [line[len("I love the "):] for line in stateful]
    assert all(len(text) <= 40 for text in new)
    if stop_at == "newline":
        assert not any("\n" in text for text in new)


def test_samples_every_epoch_at_each_temperature(data, model, tmp_path, capsys):
    from lstm_sweep.model.generation import SampleEveryEpochs, sample_prompt

    prompt = sample_prompt(data.vocab, data.val, seed=0)
    assert prompt == sample_prompt(data.vocab, data.val, seed=0) and len(prompt) == 20
    callback = SampleEveryEpochs(data.vocab, prompt, 1, (0.2, 0.5, 1.0, 1.2), tmp_path / "samples.txt",
                                 max_tokens=30)
    callback.set_model(model)
    callback.on_epoch_end(0)
    text = (tmp_path / "samples.txt").read_text()
    assert [f"--- temperature {t}" in text for t in ("0.2", "0.5", "1", "1.2")] == [True] * 4
    assert "epoch 1" in text and prompt in text and "temperature 0.2" in capsys.readouterr().out


# ---------------------------------------------------------------- bad input: one line, exit 2

def _sweep_file(tmp_path, data=None, task=None, **extra):
    raw = {"name": "c", "output": str(tmp_path / "runs"), "data": {**CHARS, **(data or {})},
           "budget": {"num_samples": 1, "max_epochs": 1}, **extra}
    if task:
        raw["task"] = task
    path = tmp_path / "chars.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("data, task, problem", [
    ({"seq_len": 0}, None, "seq_len=0 must be an int >= 1"),
    ({"stride": 0}, None, "stride=0 must be an int >= 1"),
    ({}, "classify", "data.tokens: a classifier reads words only"),
    ({"max_tokens": 15}, None, "data.max_tokens: applies to tokens: word"),
    ({"tokens": "word"}, None, "data.clean: applies to tokens: char only"),
    ({"tokens": "chars"}, None, "tokens='chars' must be one of word, char"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, data, task, problem):
    assert main(["plan", "--config", _sweep_file(tmp_path, data, task)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lstm-sweep: error:") and problem in err[0], err


def test_a_stride_past_the_window_is_allowed_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_sweep.search"):
        config = parse_config({"data": {**CHARS, "stride": 25}})
        config.with_overrides(**{"budget.max_epochs": 2})  # parsed again: not warned again
    assert config.data.stride == 25
    assert caplog.text.count("data.stride 25 > seq_len 20: the windows skip 5 characters") == 1


def test_plan_shows_character_trials(tmp_path, capsys):
    config = _sweep_file(tmp_path, space={"seq_len": {"choice": [10, 20]}, "hidden_size": 8})
    assert main(["plan", "--config", config, "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "character windows of up to 20 steps" in out and out.splitlines()[1].split()[0] == "seq"


def test_word_models_sample_while_retraining_too(tmp_path, capsys):
    from lstm_sweep.model.generation import SampleEveryEpochs, sample_prompt

    words = prepare(DataSettings(builtin_lines=300, vocab_size=100))
    model = compile_language_model(build_language_model(len(words.vocab), 8, 8), 1e-2)
    prompt = sample_prompt(words.vocab, words.val, seed=0)
    assert 2 <= len(prompt.split()) <= 3
    callback = SampleEveryEpochs(words.vocab, prompt, 2, (0.5, 1.0), tmp_path / "samples.txt")
    callback.set_model(model)
    callback.on_epoch_end(0)  # epoch 1 of every 2: nothing
    assert not (tmp_path / "samples.txt").exists()
    callback.on_epoch_end(1)
    lines = (tmp_path / "samples.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in lines[-2:]] == ["  temperature 0.5", "  temperature 1"]
    assert all(line.split(": ", 1)[1].startswith(prompt.split()[0]) for line in lines[-2:])


def test_a_corpus_shorter_than_a_window_per_split_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "short.txt").write_text("hello there\n" * 30)  # 360 characters: 2 blocks, windows of 101
    config = _sweep_file(tmp_path, {"path": str(tmp_path / "short.txt"), "seq_len": 100})
    assert main(["search", "--config", config]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "each split needs >= 1" in err[0] and "data.seq_len" in err[0], err
    with pytest.raises(CorpusError, match="0 validation windows"):
        prepare(DataSettings(**{**CHARS, "path": str(tmp_path / "short.txt"), "seq_len": 100}))


@pytest.mark.parametrize("argv, problem", [
    (["retrain", "RUN", "--temperatures", "0.5,0"], "--temperatures 0.5,0: must be numbers > 0"),
    (["retrain", "RUN", "--temperatures", "hot"], "--temperatures hot"),
    (["retrain", "RUN", "--samples-every", "-1"], "--samples-every -1: must be >= 0"),
    (["run", "--samples-every", "-2"], "--samples-every -2"),
])
def test_bad_sample_flags_are_one_line_and_exit_2(tmp_path, capsys, argv, problem):
    assert main([a.replace("RUN", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0], err


# ---------------------------------------------------------------- the whole job

@pytest.mark.slow
def test_a_character_sweep_runs_retrains_with_samples_exports_and_generates(tmp_path, capsys):
    import pandas as pd

    config = _sweep_file(tmp_path, {"builtin_lines": 200, "stride": 10},
                         space={"embedding_size": 8, "hidden_size": {"choice": [16, 24]}, "num_layers": 1,
                                "dropout": 0.0, "learning_rate": 1e-2, "batch_size": 64},
                         budget={"num_samples": 2, "max_epochs": 1, "max_concurrent": 2})
    code = main(["run", "--config", config, "--name", "run", "--epochs", "2", "--samples-every", "1",
                 "--num-cpus", "2"])
    assert code == 0, capsys.readouterr().err[-3000:]
    run = tmp_path / "runs" / "run"
    trials = pd.read_csv(run / "trials.csv")
    finished = trials.dropna(subset=["best_val_loss"])
    assert len(finished) and np.allclose(finished.bits_per_char, finished.best_val_loss / math.log(2))
    samples = (run / "winner" / "samples.txt").read_text()
    assert samples.count("--- temperature") == 4 * 2  # four temperatures, each of two epochs
    assert "samples (temperature 0.8" in samples  # then the exported model's own three lines
    card = json.loads((run / "winner" / "export" / "model_card.json").read_text())
    assert card["tokens"] == "char" and card["best_bits_per_char"] == pytest.approx(card["best_val_loss"] / math.log(2))
    assert "bits per character" in (run / "report.html").read_text()
    capsys.readouterr()
    export = str(run / "winner" / "export")
    assert main(["generate", export, "--prompt", "I love", "--max-tokens", "30", "--stop-at", "limit",
                 "--num", "2", "--seed", "1"]) == 0
    lines = capsys.readouterr().out
    assert lines.startswith("I love") and len(lines) <= 2 * (len("I love") + 30 + 1)
