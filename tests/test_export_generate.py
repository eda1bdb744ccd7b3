"""model.export and model.generation: the exported files, the SavedModel's signature, text generation.

One tiny LSTM is trained once (module fixture) on a few hand-made sentences, so its greedy
continuations are known ("i love" -> "you ."). Untrained models, whose next-token distribution is
nearly flat, serve where randomness must show (seeds) or where only equality matters.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from lstm_sweep.data_pipeline import CorpusError, Vocabulary, clean_line, lm_dataset
from lstm_sweep.errors import RunFolderError
from lstm_sweep.data_pipeline.vocab import END_ID, UNK_ID
from lstm_sweep.model import (build_language_model, compile_language_model, encode_prompt, export_model, generate,
                   generate_by_rerunning_prefix, load_export, set_seed)
from lstm_sweep.model.export import _clean_in_tf

SENTENCES = ["I love you.", "You love me.", "Hold me tight.", "We dance all night.",
             "I miss you so.", "Hold on, baby!", "We love the night."]
PROMPTS = ["I love", "hold me tight, I miss you so!", "I love zorglub", "¿You?"]  # zorglub: unknown


@pytest.fixture(scope="module")
def trained():
    """(model, vocab): a 1-layer LSTM that has learnt SENTENCES by heart."""
    set_seed(0)
    lines = [clean_line(s) for s in SENTENCES] * 16
    vocab = Vocabulary.build(lines, vocab_size=100)
    width = max(len(line.split()) for line in lines)
    rows = np.array([ids + [0] * (width - len(ids)) for ids in map(vocab.encode, lines)], np.int32)
    model = compile_language_model(build_language_model(len(vocab), 16, 32), learning_rate=2e-2)
    model.fit(lm_dataset(rows, batch_size=16, seed=0), epochs=25, shuffle=False, verbose=0)
    return model, vocab


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model, vocab = trained
    folder = tmp_path_factory.mktemp("run") / "winner" / "export"
    paths = export_model(model, vocab, folder, {"trial_id": "t1", "best_val_loss": 0.5})
    return folder, paths


def untrained(cell: str = "lstm", vocab_size: int = 30, num_layers: int = 1, dropout: float = 0.0):
    set_seed(1)
    vocab = Vocabulary(["<pad>", "<unk>", "<start>", "<end>", ",", "."]
                       + [f"w{chr(97 + i % 26)}{i // 26 or ''}" for i in range(vocab_size - 6)])
    return build_language_model(len(vocab), 8, 16, num_layers=num_layers, dropout=dropout, cell=cell), vocab


def next_token_probabilities(model, vocab, prompt: str) -> np.ndarray:
    """The in-memory reference: softmax of the logits after the prompt's last token."""
    _, ids = encode_prompt(vocab, prompt)
    return tf.nn.softmax(model(np.array([ids], np.int32))[0, -1]).numpy()


def set_bias(model, token_id: int, value: float = 100.0) -> None:
    """Make ``token_id`` the argmax of every step by the logits layer's bias."""
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    bias[token_id] = value
    dense.set_weights([kernel, bias])


# ---------------------------------------------------------------- export

def test_export_writes_the_four_files_and_a_card(exported):
    folder, paths = exported
    assert sorted(p.name for p in folder.iterdir()) == ["model.keras", "model_card.json", "saved_model", "vocab.json"]
    assert {key: p.name for key, p in paths.items()} == {
        "keras": "model.keras", "saved_model": "saved_model", "vocab": "vocab.json", "card": "model_card.json"}
    card = json.loads(paths["card"].read_text())
    assert card["trial_id"] == "t1" and card["best_val_loss"] == 0.5
    assert set(card["versions"]) == {"python", "tensorflow", "keras", "numpy"}
    assert card["versions"]["tensorflow"] == tf.__version__
    assert card["exported_at"][:4].isdigit() and "serving_default" in card["signatures"]
    assert card["training"]["optimizer"]["class_name"] == "Adam"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left


def test_every_exported_file_has_the_ordinary_mode(exported):
    """A model server running as another user reads the export: no file of it is 0600 (as
    tempfile.mkstemp made vocab.json), no folder 0700 (mkdtemp)."""
    folder, _ = exported
    umask = os.umask(0)
    os.umask(umask)
    for name in ("vocab.json", "model_card.json", "model.keras"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE((folder / "saved_model").stat().st_mode) == 0o777 & ~umask


@pytest.mark.slow  # ~5 s: a fresh Python process imports TensorFlow
def test_saved_model_in_a_fresh_process_matches_the_keras_model(trained, exported):
    model, vocab = trained
    folder, paths = exported
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        loaded = tf.saved_model.load({str(paths["saved_model"])!r})
        out = loaded.signatures["serving_default"](tf.constant({PROMPTS!r}))
        vocab = loaded.signatures["vocabulary"]()["tokens"].numpy()
        print(json.dumps({{"probabilities": out["probabilities"].numpy().tolist(),
                          "logits_shape": out["logits"].shape.as_list(),
                          "tokens": [t.decode() for t in vocab]}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["tokens"] == vocab.tokens
    assert served["logits_shape"] == [len(PROMPTS), len(vocab)]
    # PROMPTS are of different lengths in one batch and one holds an unknown word.
    expected = np.stack([next_token_probabilities(model, vocab, p) for p in PROMPTS])
    np.testing.assert_allclose(np.array(served["probabilities"]), expected, atol=1e-5)


def test_saved_model_signatures_in_this_process(trained, exported):
    model, vocab = trained
    _, paths = exported
    loaded = tf.saved_model.load(str(paths["saved_model"]))
    expected = np.stack([next_token_probabilities(model, vocab, p) for p in PROMPTS])
    served = loaded.signatures["serving_default"](prompts=tf.constant(PROMPTS))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(tf.nn.softmax(served["logits"]).numpy(), expected, atol=1e-5)
    # next_token_ids: the same prompts as right-padded ids.
    ids = [encode_prompt(vocab, p)[1] for p in PROMPTS]
    padded = np.array([row + [0] * (12 - len(row)) for row in ids], np.int32)
    out = loaded.signatures["next_token_ids"](tokens=tf.constant(padded))["probabilities"].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # An empty batch, and a prompt with nothing left after cleaning (predicted from <start>).
    assert loaded.signatures["serving_default"](prompts=tf.constant([], tf.string))["logits"].shape == (0, len(vocab))
    start_only = tf.nn.softmax(model(np.array([[2]], np.int32))[0, -1]).numpy()
    nothing_left = loaded.signatures["serving_default"](prompts=tf.constant(["123 #"]))["probabilities"]
    np.testing.assert_allclose(nothing_left.numpy()[0], start_only, atol=1e-5)


@pytest.mark.parametrize("raw", ["This @_is ;;;sample        sentence.", "¿Qué pasa?", "24 hours, 7 days",
                                 "HELLO     World\t!", "Can't stop", "Oh...", "  Señor Straße  ", "I said: go"])
def test_tensorflow_cleaning_matches_clean_line_on_ordinary_text(raw):
    words = _clean_in_tf(tf.constant([raw])).numpy()[0].decode().split()
    assert ["<start>", *words, "<end>"] == clean_line(raw).split()


def test_model_keras_loads_with_safe_mode_and_gives_the_same_logits(trained, exported):
    model, vocab = trained
    folder, _ = exported
    loaded, loaded_vocab, card = load_export(folder)
    assert loaded_vocab == vocab and card["trial_id"] == "t1"
    ids = np.array([encode_prompt(vocab, p)[1] + [0] * 3 for p in ["I love you", "I love zorglub"]], np.int32)
    np.testing.assert_allclose(loaded(ids).numpy(), model(ids).numpy(), atol=1e-6)
    import keras
    again = keras.models.load_model(folder / "model.keras", safe_mode=True)
    np.testing.assert_allclose(again(ids).numpy(), model(ids).numpy(), atol=1e-6)


@pytest.mark.parametrize("missing", ["model.keras", "vocab.json", "model_card.json"])
def test_load_export_names_a_missing_file(exported, tmp_path, missing):
    folder = tmp_path / "winner" / "export"
    shutil.copytree(exported[0], folder)
    (folder / missing).unlink()
    with pytest.raises(RunFolderError, match=rf"{missing}.*lstm-sweep export {tmp_path}"):
        load_export(folder)


def test_load_export_names_a_missing_folder(tmp_path):
    with pytest.raises(RunFolderError, match="nowhere.*lstm-sweep export"):
        load_export(tmp_path / "nowhere")


def test_export_rejects_a_vocabulary_of_another_size(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match="logits"):
        export_model(model, untrained()[1], tmp_path, {})


# ---------------------------------------------------------------- generate

def test_greedy_generation_continues_the_prompt_and_stops_at_end(trained):
    model, vocab = trained
    assert generate(model, vocab, "I love", temperature=0) == ["i love you."]
    assert generate(model, vocab, "We dance", temperature=0, num=2) == ["we dance all night."] * 2


def test_greedy_generation_is_deterministic(trained):
    model, vocab = trained
    runs = [generate(model, vocab, "hold", temperature=0, max_tokens=8, num=2) for _ in range(2)]
    assert runs[0] == runs[1] and runs[0][0] == runs[0][1]


def test_sampling_is_deterministic_for_a_seed_and_differs_across_seeds():
    model, vocab = untrained(vocab_size=60)  # nearly flat: any two seeds disagree
    kwargs = dict(temperature=1.0, top_k=40, max_tokens=12, num=3)
    a = generate(model, vocab, "wa wb", seed=1, **kwargs)
    assert len(a) == 3 and all(line.startswith("wa wb") for line in a)
    assert a == generate(model, vocab, "wa wb", seed=1, **kwargs)
    assert a != generate(model, vocab, "wa wb", seed=2, **kwargs)
    assert len(set(a)) > 1  # the rows of one batch are different samples
    # The notebooks' method draws the same tokens for the same seed.
    assert a == generate_by_rerunning_prefix(model, vocab, "wa wb", seed=1, **kwargs)


def test_top_k_1_and_a_tiny_temperature_are_greedy():
    model, vocab = untrained()
    greedy = generate(model, vocab, "wa", temperature=0, max_tokens=10)
    assert generate(model, vocab, "wa", temperature=1.5, top_k=1, max_tokens=10, seed=3) == greedy
    assert generate(model, vocab, "wa", temperature=1e-30, max_tokens=10, seed=3) == greedy


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_stateful_greedy_equals_rerunning_the_prefix(cell):
    model, vocab = untrained(cell, num_layers=2, dropout=0.3)  # dropout must be off in both
    set_bias(model, END_ID, -100.0)  # never <end>: all 25 tokens are compared
    for prompt in ["wa", "wc wd, we wf wg"]:
        stateful = generate(model, vocab, prompt, temperature=0, max_tokens=25, num=2)
        rerun = generate_by_rerunning_prefix(model, vocab, prompt, temperature=0, max_tokens=25, num=2)
        assert [clean_line(s).split() for s in stateful] == [clean_line(s).split() for s in rerun]
        assert len(clean_line(stateful[0]).split()) == len(clean_line(prompt).split()) + 25


def test_stateful_greedy_equals_rerunning_the_prefix_on_the_trained_model(trained):
    model, vocab = trained
    for prompt in PROMPTS:
        assert (generate(model, vocab, prompt, temperature=0, max_tokens=15)
                == generate_by_rerunning_prefix(model, vocab, prompt, temperature=0, max_tokens=15))


def test_end_stops_generation_and_max_tokens_limits_it():
    model, vocab = untrained()
    set_bias(model, END_ID)
    assert generate(model, vocab, "wa, wb", temperature=0) == ["wa, wb"]
    assert generate(model, vocab, "wa, wb", temperature=1.0, seed=0, num=2) == ["wa, wb"] * 2
    set_bias(model, END_ID, 0.0)
    set_bias(model, vocab.id_of("wk"))
    assert generate(model, vocab, "wa", temperature=0, max_tokens=3) == ["wa wk wk wk"]
    set_bias(model, vocab.id_of("wk"), 0.0)
    for line in generate(model, vocab, "wa", temperature=1.0, max_tokens=3, num=4, seed=0):
        assert 1 <= len(line.replace(",", " ,").replace(".", " .").split()) <= 4


def test_unk_pad_and_start_are_never_generated_unless_unk_is_allowed():
    model, vocab = untrained()
    for token_id in (0, 2, UNK_ID):
        set_bias(model, token_id, 50.0)
    for temperature in (0, 1.0):
        for line in generate(model, vocab, "wa", temperature=temperature, max_tokens=6, num=3, seed=0):
            assert not {"<pad>", "<start>", "<unk>"} & set(line.split())
    assert "<unk>" in generate(model, vocab, "wa", temperature=0, max_tokens=3, allow_unk=True)[0]


def test_unknown_prompt_words_are_shown_as_typed(trained):
    model, vocab = trained
    assert generate(model, vocab, "Zorglub LOVE", temperature=0, max_tokens=1)[0].startswith("zorglub love")


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": -0.1}, "temperature=-0.1"),
    ({"top_k": 0}, "top_k=0"),
    ({"max_tokens": 0}, "max_tokens=0"),
    ({"num": 0}, "num=0"),
    ({"seed": -1}, "seed=-1"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    model, vocab = untrained()
    with pytest.raises(ValueError, match=match):
        generate(model, vocab, "wa", **kwargs)
    with pytest.raises(ValueError, match=match):
        generate_by_rerunning_prefix(model, vocab, "wa", **kwargs)


@pytest.mark.parametrize("prompt", ["", "   ", "!!!", "[Chorus:", "123 456", "?¿"])
def test_a_prompt_without_words_is_a_corpus_error(prompt):
    model, vocab = untrained()
    with pytest.raises(CorpusError, match="no words after cleaning"):
        generate(model, vocab, prompt)


def test_a_vocabulary_of_another_size_is_rejected(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="vocab"):
        generate(model, untrained()[1], "wa")
