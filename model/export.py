"""Export a trained language model (or classifier) for others to use, and load it back.

One folder, readable without our code (a classifier's: see :func:`export_classifier`)::

    export/
      model.keras        Keras 3 format: keras.models.load_model(path, safe_mode=True)
      saved_model/       TensorFlow SavedModel; its vocabulary and text cleaning are inside:
                           serving_default(prompts: string[batch]) -> probabilities, logits [batch, vocab]
                           next_token_ids(tokens: int32[batch, time]) -> probabilities, logits
                           vocabulary() -> tokens: string[vocab]
      vocab.json         data_pipeline.Vocabulary.to_json: token i has id i
      model_card.json    what the caller passed (config, losses, data), versions, date, signatures

A character model's (``data.tokens: char``, its vocabulary a ``CharVocabulary``) has the same
files and signatures; its ``serving_default`` splits each prompt into characters inside
(``tf.strings.unicode_split``), with no ``<start>``: see :func:`_write_char_saved_model`.

``serving_default`` answers "which word comes next?" for raw prompts, as
``lstm-sweep generate`` sees them: it cleans each prompt with TensorFlow string ops that
follow :func:`data_pipeline.clean_line` (see :func:`_clean_in_tf` for the differences), looks
the words up in a ``tf.lookup.StaticHashTable`` holding ``vocab.tokens`` (unknown words -> 1,
``<unk>``), puts ``<start>`` first, right-pads the batch with 0 and takes each row's logits at its
last real token. The model is causal, so right padding does not change them.

Example:
    >>> paths = export_model(model, vocab, "runs/demo/winner/export", {"val_loss": 2.1})  # doctest: +SKIP
    >>> serve = tf.saved_model.load(str(paths["saved_model"])).signatures["serving_default"]  # doctest: +SKIP
    >>> serve(tf.constant(["i love", "hold me"]))["probabilities"].shape  # doctest: +SKIP
    TensorShape([2, 2000])
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lstm_sweep import atomic
from lstm_sweep.data_pipeline.text import MARKS
from lstm_sweep.data_pipeline.vocab import START_ID, UNK_ID, CharVocabulary, Vocabulary
from lstm_sweep.errors import RunFolderError

FILES = {"keras": "model.keras", "saved_model": "saved_model", "vocab": "vocab.json", "card": "model_card.json"}
CLASSIFIER_FILES = {**FILES, "labels": "labels.json"}
# The model card's "task": what it is called, the command that uses it, whether its outputs are
# logits over the vocabulary (checked against vocab.json on loading).
_KINDS = {"language_model": ("language model", "generate EXPORT_DIR --prompt TEXT", True),
          "classify": ("classifier", "predict EXPORT_DIR TEXT", False)}


def export_model(model: keras.Model, vocab: Vocabulary, folder: str | Path, card: dict[str, Any]) -> dict[str, Path]:
    """Write ``model`` and ``vocab`` to ``folder`` as the four files above; return their paths.

    ``model.keras`` is an inference copy: the trained layers and weights, *not compiled*. It
    holds no optimizer slots (a third of the size of a training checkpoint such as
    ``winner/best.keras``) and no reference to our custom loss, so any Keras 3 loads it with
    ``safe_mode=True`` without this package. To train it further, compile it again with
    :func:`model.compile_language_model` (the card's ``training`` says with what). Every file (and the SavedModel folder) is written under a temporary name beside it, fsynced
    and renamed (:mod:`lstm_sweep.atomic`), so a folder never holds half a file; files already
    there are replaced.

    Args:
        model: a model from :func:`model.build_language_model`, trained.
        vocab: its vocabulary; ``len(vocab)`` must equal the model's number of logits.
        folder: the export folder, created if missing (``RUN_DIR/winner/export``).
        card: JSON-serializable facts about the model (config, losses, data); the card adds
            ``vocab_size``, ``training`` (loss, optimizer config), ``exported_at`` (UTC),
            ``versions`` (python, tensorflow, keras, numpy), ``files`` and ``signatures``.

    Returns:
        ``{"keras": ..., "saved_model": ..., "vocab": ..., "card": ...}``.

    Example:
        >>> sorted(export_model(model, vocab, tmp_path, {"trial_id": "t1"}))  # doctest: +SKIP
        ['card', 'keras', 'saved_model', 'vocab']
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model={model!r} must be a keras.Model")
    if not isinstance(vocab, Vocabulary):
        raise ValueError(f"vocab={vocab!r} must be a data_pipeline.Vocabulary")
    if model.output_shape[-1] != len(vocab):
        raise ValueError(f"the model has {model.output_shape[-1]} logits but the vocabulary "
                         f"{len(vocab)} tokens: pass the vocabulary the model was trained with")
    if not isinstance(card, dict):
        raise ValueError(f"card={card!r} must be a dict")
    try:
        json.dumps(card)
    except TypeError as e:
        raise ValueError(f"card must be JSON-serializable: {e}") from None

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / name for key, name in FILES.items()}

    copy = _inference_copy(model)
    with atomic.replacing_file(paths["keras"], suffix=".keras") as tmp:
        copy.save(tmp)
    chars = isinstance(vocab, CharVocabulary)
    with atomic.replacing_dir(paths["saved_model"]) as tmp:
        (_write_char_saved_model if chars else _write_saved_model)(copy, vocab, str(tmp))
    vocab.to_json(paths["vocab"])
    if chars:
        _write_card(paths["card"], model, {**card, "tokens": "char", "vocab_size": len(vocab)}, FILES,
                    loss="lstm_sweep>masked_cross_entropy (model.lm), nats per character", signatures={
                        "serving_default": "prompts: string[batch] -> probabilities, logits: float32[batch, vocab] "
                                           "for the character after each prompt (split into characters inside"
                                           f"{', cleaned first' if vocab.clean else ''})",
                        "next_token_ids": "tokens: int32[batch, time], right-padded with 0 -> probabilities, logits: "
                                          "float32[batch, vocab] after each row's last character",
                        "vocabulary": "() -> tokens: string[vocab], character i has id i (0 <pad>, 1 <unk>)",
                    })
        return paths
    _write_card(paths["card"], model, {**card, "vocab_size": len(vocab)}, FILES,
                loss="lstm_sweep>masked_cross_entropy (model.lm)", signatures={
                    "serving_default": "prompts: string[batch] -> probabilities, logits: float32[batch, vocab] "
                                       "for the token after each cleaned prompt",
                    "next_token_ids": "tokens: int32[batch, time], <start> first, right-padded with 0 -> "
                                      "probabilities, logits: float32[batch, vocab] after each row's last token",
                    "vocabulary": "() -> tokens: string[vocab], token i has id i",
                })
    return paths


def export_classifier(model: keras.Model, vocab: Vocabulary, labels: list[str], folder: str | Path,
                      card: dict[str, Any], seq_len: int, padding: str = "pre",
                      truncating: str = "pre") -> dict[str, Path]:
    """Write a trained classifier to ``folder``: the files of :func:`export_model` and ``labels.json``.

    ``saved_model/``'s ``serving_default`` takes raw texts (``texts: string[batch]``) and does
    what training did to them: cleans them (:func:`_clean_in_tf`), looks the words up
    (unknown: ``<unk>``), truncates and pads them to ``seq_len`` on the trained sides, and
    returns ``probabilities`` (float32 ``[batch, classes]``, a two-class sigmoid as ``[1 - p,
    p]``), ``label_ids`` (int32) and ``labels`` (string: the likeliest class). ``labels()``
    returns the class names, ``vocabulary()`` the tokens. The cleaning differs from training's
    (:func:`data_pipeline.clean_document`) as :func:`_clean_in_tf` says, and a line ending in
    ``':'`` is kept, not dropped. ``model.keras`` is the uncompiled
    Keras model (ids in, the head's output out); ``model_card.json`` adds ``task``,
    ``labels`` and ``preprocessing`` (``seq_len``, ``padding``, ``truncating``), which
    ``lstm-sweep predict`` reads.

    Example:
        >>> export_classifier(model, vocab, ["neg", "pos"], "runs/a/winner/export", card, seq_len=64)  # doctest: +SKIP
    """
    from lstm_sweep.data_pipeline.labelled import SIDES, labels_to_json
    from lstm_sweep.model.classifier import output_units

    if not isinstance(model, keras.Model) or not isinstance(vocab, Vocabulary):
        raise ValueError("model must be a keras.Model and vocab a data_pipeline.Vocabulary")
    if model.output_shape[-1] != output_units(len(labels)):
        raise ValueError(f"the model has {model.output_shape[-1]} outputs for {len(labels)} classes: "
                         "pass the labels it was trained with")
    if int(seq_len) < 1 or padding not in SIDES or truncating not in SIDES:
        raise ValueError(f"seq_len={seq_len} must be >= 1, padding={padding!r} and truncating={truncating!r} "
                         f"one of {SIDES}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / name for key, name in CLASSIFIER_FILES.items()}

    copy = _inference_copy(model)
    with atomic.replacing_file(paths["keras"], suffix=".keras") as tmp:
        copy.save(tmp)
    with atomic.replacing_dir(paths["saved_model"]) as tmp:
        _write_classifier_saved_model(copy, vocab, labels, int(seq_len), padding, truncating, str(tmp))
    vocab.to_json(paths["vocab"])
    labels_to_json(labels, paths["labels"])
    preprocessing = {"seq_len": int(seq_len), "padding": padding, "truncating": truncating}
    head = "sigmoid (probability of labels[1])" if len(labels) == 2 else "softmax"
    _write_card(paths["card"], model, {**card, "task": "classify", "vocab_size": len(vocab), "labels": list(labels),
                                       "preprocessing": preprocessing},
                CLASSIFIER_FILES, loss=f"{model.loss if isinstance(model.loss, str) else 'cross-entropy'}, {head}",
                signatures={
                    "serving_default": "texts: string[batch] -> probabilities: float32[batch, classes], "
                                       "label_ids: int32[batch], labels: string[batch] (the likeliest class)",
                    "labels": "() -> labels: string[classes], class i is labels[i]",
                    "vocabulary": "() -> tokens: string[vocab], token i has id i",
                })
    return paths


def load_classifier_export(folder: str | Path) -> tuple[keras.Model, Vocabulary, list[str], dict[str, Any]]:
    """Load ``(model, vocab, labels, card)`` from a folder written by :func:`export_classifier`.

    Raises:
        RunFolderError: the folder or a file is missing or unreadable, or it holds a language model.
    """
    from lstm_sweep.data_pipeline.labelled import labels_from_json

    folder = Path(folder)
    model, vocab, card = load_export(folder, task="classify")
    labels = labels_from_json(folder / CLASSIFIER_FILES["labels"])
    if len(labels) < 2 or "preprocessing" not in card:
        raise RunFolderError(f"{folder}: labels.json or model_card.json is not a classifier's: {_export_hint(folder)}")
    return model, vocab, labels, card


def _write_card(path: Path, model: keras.Model, card: dict[str, Any], files: dict[str, str], loss: str,
                signatures: dict[str, str]) -> None:
    """``model_card.json``: the caller's facts, then how it was trained, when, with what, and its files."""
    full_card = {
        **card,
        "training": {"loss": loss, "optimizer": _optimizer_config(model)},
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "numpy": np.__version__},
        "files": files,
        "signatures": signatures,
    }
    text = json.dumps(full_card, indent=2, ensure_ascii=False)
    atomic.write_text(path, text)


def load_export(folder: str | Path, task: str = "language_model") -> tuple[keras.Model, Vocabulary, dict[str, Any]]:
    """Load ``(model, vocab, card)`` from a folder written by :func:`export_model`.

    The model comes from ``model.keras`` with ``safe_mode=True``; it is not compiled (see
    :func:`export_model`): ready for inference and :func:`model.generation.generate`.
    ``task="classify"`` expects a classifier's export instead (:func:`load_classifier_export`).

    Raises:
        RunFolderError: the folder or one of its files is missing or unreadable, or it holds the
            other task's model; the message names it and says what to do.

    Example:
        >>> model, vocab, card = load_export("runs/demo/winner/export")  # doctest: +SKIP
    """
    folder = Path(folder)
    again = _export_hint(folder)
    for key in ("keras", "vocab", "card"):
        path = folder / FILES[key]
        if not path.is_file():
            what = "folder" if not folder.is_dir() else "file"
            missing = folder if what == "folder" else path
            raise RunFolderError(f"export {what} {missing} is missing: {again}")
    try:
        model = keras.models.load_model(folder / FILES["keras"], safe_mode=True)
        card = json.loads((folder / FILES["card"]).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError) as e:  # a torn or foreign file
        raise RunFolderError(f"cannot load the export in {folder}: {type(e).__name__}: {e}: {again}") from None
    vocab = Vocabulary.from_json(folder / FILES["vocab"])
    found = card.get("task", "language_model")
    if found != task:
        raise RunFolderError(f"{folder} holds a {_KINDS[found][0]}, not a {_KINDS[task][0]}: "
                             f"use `lstm-sweep {_KINDS[found][1]}`")
    if _KINDS[task][2] and model.output_shape[-1] != len(vocab):
        raise RunFolderError(f"{folder}: model.keras has {model.output_shape[-1]} logits, vocab.json "
                             f"{len(vocab)} tokens: {again}")
    return model, vocab, card


# ---------------------------------------------------------------- the SavedModel

def _write_saved_model(model: keras.Model, vocab: Vocabulary, path: str) -> None:
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(vocab.tokens), tf.range(len(vocab), dtype=tf.int64)),
        default_value=UNK_ID)
    tokens = tf.constant(vocab.tokens)

    def next_token(ids: tf.Tensor, lengths: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.cast(model(ids, training=False), tf.float32)
        last = tf.gather(logits, tf.maximum(lengths, 1) - 1, batch_dims=1)
        return {"probabilities": tf.nn.softmax(last), "logits": last}

    def serving_default(prompts: tf.Tensor) -> dict[str, tf.Tensor]:
        words = tf.strings.split(_clean_in_tf(prompts))
        ids = tf.cast(table.lookup(words), tf.int32)
        start = tf.fill([tf.shape(prompts)[0], 1], START_ID)
        ids = tf.concat([tf.RaggedTensor.from_tensor(start), ids], axis=1)
        # One extra padding column keeps an empty batch at >= 1 step; causal: no change to the rest.
        dense = tf.pad(ids.to_tensor(0), [[0, 0], [0, 1]])
        return next_token(dense, tf.cast(ids.row_lengths(), tf.int32))

    def next_token_ids(ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return next_token(ids, tf.math.count_nonzero(ids, axis=1, dtype=tf.int32))

    def vocabulary() -> dict[str, tf.Tensor]:
        return {"tokens": tokens}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(table)
    # The first endpoint added is also "serving_default" for TF Serving; we name it so.
    archive.add_endpoint("serving_default", serving_default, [tf.TensorSpec([None], tf.string, name="prompts")])
    archive.add_endpoint("next_token_ids", next_token_ids, [tf.TensorSpec([None, None], tf.int32, name="tokens")])
    archive.add_endpoint("vocabulary", vocabulary, [])
    archive.write_out(path, verbose=False)


def _write_char_saved_model(model: keras.Model, vocab: CharVocabulary, path: str) -> None:
    """A character model's SavedModel: prompts are split into characters inside
    (``tf.strings.unicode_split``, code points as Python's ``str`` has them), looked up (a
    character outside the vocabulary: ``<unk>``), right-padded, and each row's logits taken at
    its last character. With ``vocab.clean`` a prompt is first cleaned by :func:`_clean_in_tf`
    (one line: a newline inside a prompt becomes a space, where ``clean_text`` keeps lines)."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(vocab.tokens), tf.range(len(vocab), dtype=tf.int64)),
        default_value=UNK_ID)
    tokens, clean = tf.constant(vocab.tokens), vocab.clean

    def next_token(ids: tf.Tensor, lengths: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.cast(model(ids, training=False), tf.float32)
        last = tf.gather(logits, tf.maximum(lengths, 1) - 1, batch_dims=1)
        return {"probabilities": tf.nn.softmax(last), "logits": last}

    def serving_default(prompts: tf.Tensor) -> dict[str, tf.Tensor]:
        characters = tf.strings.unicode_split(_clean_in_tf(prompts) if clean else prompts, "UTF-8")
        ids = tf.cast(table.lookup(characters), tf.int32)
        dense = tf.pad(ids.to_tensor(0), [[0, 0], [0, 1]])  # >= 1 step even for empty prompts; causal
        return next_token(dense, tf.cast(ids.row_lengths(), tf.int32))

    def next_token_ids(ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return next_token(ids, tf.math.count_nonzero(ids, axis=1, dtype=tf.int32))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(table)
    archive.add_endpoint("serving_default", serving_default, [tf.TensorSpec([None], tf.string, name="prompts")])
    archive.add_endpoint("next_token_ids", next_token_ids, [tf.TensorSpec([None, None], tf.int32, name="tokens")])
    archive.add_endpoint("vocabulary", lambda: {"tokens": tokens}, [])
    archive.write_out(path, verbose=False)


def _write_classifier_saved_model(model: keras.Model, vocab: Vocabulary, labels: list[str], seq_len: int,
                                  padding: str, truncating: str, path: str) -> None:
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(vocab.tokens), tf.range(len(vocab), dtype=tf.int64)),
        default_value=UNK_ID)
    tokens, names = tf.constant(vocab.tokens), tf.constant(list(labels))

    def serving_default(texts: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = tf.cast(table.lookup(tf.strings.split(_clean_in_tf(texts))), tf.int32)
        out = tf.cast(model(_pad_in_tf(ids, seq_len, padding, truncating), training=False), tf.float32)
        probabilities = tf.concat([1.0 - out, out], axis=1) if len(labels) == 2 else out
        label_ids = tf.argmax(probabilities, axis=1, output_type=tf.int32)
        return {"probabilities": probabilities, "label_ids": label_ids, "labels": tf.gather(names, label_ids)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(table)
    archive.add_endpoint("serving_default", serving_default, [tf.TensorSpec([None], tf.string, name="texts")])
    archive.add_endpoint("labels", lambda: {"labels": names}, [])
    archive.add_endpoint("vocabulary", lambda: {"tokens": tokens}, [])
    archive.write_out(path, verbose=False)


def _pad_in_tf(ids: tf.RaggedTensor, seq_len: int, padding: str, truncating: str) -> tf.Tensor:
    """``keras.utils.pad_sequences`` in TensorFlow ops: ragged ids to int32 ``[batch, seq_len]``,
    cut at the ``truncating`` end, zeros on the ``padding`` side (``data_pipeline.pad_to``)."""
    ids = ids[:, -seq_len:] if truncating == "pre" else ids[:, :seq_len]
    dense = ids.to_tensor(default_value=0, shape=[None, seq_len])  # zeros after: "post"
    if padding == "post":
        return dense
    # "pre": shift each row right by its missing length.
    shift = seq_len - tf.cast(ids.row_lengths(), tf.int32)
    columns = tf.range(seq_len)[tf.newaxis, :] - shift[:, tf.newaxis]
    moved = tf.gather(dense, tf.maximum(columns, 0), batch_dims=1)
    return tf.where(columns >= 0, moved, tf.zeros_like(moved))


def _clean_in_tf(prompts: tf.Tensor) -> tf.Tensor:
    """:func:`data_pipeline.clean_line` in TensorFlow string ops, without ``<start>``/``<end>``.

    Lowercase (Unicode), a space around each of ``? . ! , ¿``, every run of other characters
    that are not letters (Unicode L*) or marks (M*) to one space, strip. The same words as
    ``clean_line`` for ordinary text; the differences: no NFC normalization (an accent typed as a
    separate combining character stays a separate code point, so such a word may look up as
    ``<unk>``); a prompt ending in ``':'`` or with nothing left is not dropped, it is predicted
    from ``<start>`` and what is left; ICU's lowercasing (TensorFlow) and Python's differ in rare
    cases such as the Turkish dotted ``'İ'``.
    """
    text = tf.strings.lower(prompts, encoding="utf-8")
    marks = "".join("\\" + m if m in ".?" else m for m in MARKS)
    text = tf.strings.regex_replace(text, f"([{marks}])", r" \1 ")
    text = tf.strings.regex_replace(text, f"[^\\p{{L}}\\p{{M}}{marks}]+", " ")
    return tf.strings.strip(text)


# ---------------------------------------------------------------- helpers

def _inference_copy(model: keras.Model) -> keras.Model:
    """The same layers and weights, not compiled: no optimizer slots, no custom objects needed."""
    copy = type(model).from_config(model.get_config())  # clone_model would compile it again
    copy.set_weights(model.get_weights())
    return copy


def _optimizer_config(model: keras.Model) -> dict[str, Any] | None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        return json.loads(json.dumps(keras.saving.serialize_keras_object(optimizer), default=str))
    except (TypeError, ValueError):  # pragma: no cover - an exotic optimizer
        return {"class_name": type(optimizer).__name__}


def _export_hint(folder: Path) -> str:
    run_dir = folder.parent.parent if folder.parent.name == "winner" else "RUN_DIR"
    return f"re-run `lstm-sweep export {run_dir}` to write it"
