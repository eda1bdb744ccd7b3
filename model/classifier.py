"""The sequence classifier: Embedding -> N recurrent layers (optionally bidirectional) -> class probabilities.

The shape of the IMDB sentiment notebooks (SimpleRNN or LSTM over padded reviews, the last
step's output read out), with the cells and depth of the language model:

* the recurrent layers are the language model's (a registered cell, ``model.cells``); all but the last return
  their whole sequence, the last only its final output, which the head reads;
* ``bidirectional`` wraps each layer in ``keras.layers.Bidirectional`` (a forward and a
  backward copy, outputs concatenated: twice the units after it);
* the head is one sigmoid unit for two classes (probability of class 1, binary
  cross-entropy) and one softmax unit a class otherwise (sparse categorical cross-entropy);
  float32 even under a mixed-precision policy;
* no ``mask_zero``, as in the language model: Keras keeps its fused kernels, and the
  padding side is a choice the sweep can search (``pre`` padding puts the last real token at
  the last step, where the forward layer is read; with ``post`` padding the state runs over
  the zeros first, as in the notebooks' comparison).

Training is Keras' own: ``model.fit`` with the validation split as ``validation_data``, so each
epoch's logs hold ``loss``, ``accuracy``, ``val_loss`` and ``val_accuracy`` (Keras weights its
batch means by batch size: exact means over the examples), and ``seconds``.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from lstm_sweep.model.cells import get_cell
from lstm_sweep.model.lm import check_recurrent_arguments


def output_units(num_classes: int) -> int:
    """Units of the head: 1 (a sigmoid) for two classes, else one softmax unit a class."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be an int >= 2")
    return 1 if num_classes == 2 else int(num_classes)


def build_classifier(
    vocab_size: int,
    num_classes: int,
    embedding_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    cell: str = "lstm",
    bidirectional: bool = False,
) -> keras.Model:
    """Build an uncompiled classifier mapping ``(batch, time)`` ids to class probabilities.

    Args:
        vocab_size: number of token ids, ``<pad>`` (0) and ``<unk>`` (1) included; >= 2.
        num_classes: >= 2; two classes get one sigmoid unit, more a softmax over them.
        embedding_size: width of the token embedding; >= 1.
        hidden_size: units of each recurrent layer (each direction); >= 1.
        num_layers: stacked recurrent layers; >= 1.
        dropout: rate of the dropout after each recurrent layer, in [0, 1).
        cell: a registered cell (``model.cells``): ``"lstm"`` (default), ``"gru"``, ``"rnn"``, ...
        bidirectional: run each layer forwards and backwards (``keras.layers.Bidirectional``).

    Returns:
        A functional ``keras.Model`` whose output is float32 ``(batch, 1)`` (the probability
        of class 1) for two classes, ``(batch, num_classes)`` otherwise.

    Example:
        >>> model = build_classifier(vocab_size=100, num_classes=3, embedding_size=8, hidden_size=16)
        >>> tuple(model(tf.zeros((2, 5), tf.int32)).shape)
        (2, 3)
    """
    check_recurrent_arguments(vocab_size, embedding_size, hidden_size, num_layers, dropout, cell)
    units = output_units(num_classes)

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embedding_size, name="embedding")(tokens)
    for i in range(num_layers):
        layer = get_cell(cell).make_layer(hidden_size, return_sequences=i < num_layers - 1, name=f"{cell}_{i}")
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{i}")
        x = layer(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    probabilities = keras.layers.Dense(units, activation="sigmoid" if units == 1 else "softmax",
                                       dtype="float32", name="probabilities")(x)
    return keras.Model(tokens, probabilities, name=f"{'bi' if bidirectional else ''}{cell}_classifier")


def compile_classifier(model: keras.Model, learning_rate: float) -> keras.Model:
    """Compile with Adam at ``learning_rate``, the cross-entropy of the head, and ``accuracy``.

    Labels are class ids, int ``(batch,)``; Keras matches them to a ``(batch, 1)`` sigmoid.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate} must be > 0")
    if model.output_shape[-1] == 1:
        loss, accuracy = "binary_crossentropy", keras.metrics.BinaryAccuracy(name="accuracy")
    else:
        loss, accuracy = "sparse_categorical_crossentropy", keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=[accuracy])
    return model


class EpochSeconds(keras.callbacks.Callback):
    """Add ``seconds`` (training and validation) to each epoch's logs; put it first in the list."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self._started


def fit_classifier(
    model: keras.Model,
    train_dataset: tf.data.Dataset,
    val_dataset: tf.data.Dataset,
    epochs: int,
    initial_epoch: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: Any = 0,
) -> keras.callbacks.History:
    """Train a compiled classifier for epochs ``initial_epoch+1 .. epochs``, validating after each.

    Each epoch's logs hold ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and ``seconds``.
    """
    if epochs < 1 or not 0 <= initial_epoch < epochs:
        raise ValueError(f"need 0 <= initial_epoch ({initial_epoch}) < epochs ({epochs})")
    return model.fit(train_dataset, validation_data=val_dataset, epochs=epochs, initial_epoch=initial_epoch,
                     callbacks=[EpochSeconds(), *callbacks], shuffle=False, verbose=verbose)


def evaluate_classifier(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    """``val_loss`` (mean cross-entropy over the examples) and ``val_accuracy`` of ``model`` on
    ``dataset``'s ``(ids, label id)`` batches, as Keras' own validation computes them.

    For in-epoch reports (``search.trainable``): ``model.evaluate`` inside ``fit`` would reset
    the running training metrics of the epoch.
    """
    total = correct = count = 0.0
    for ids, labels in dataset:
        probabilities = model(ids, training=False)
        if probabilities.shape[-1] == 1:
            losses = keras.losses.binary_crossentropy(tf.cast(labels[:, None], probabilities.dtype), probabilities)
            predicted = tf.cast(probabilities[:, 0] > 0.5, labels.dtype)
        else:
            losses = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            predicted = tf.cast(tf.argmax(probabilities, axis=-1), labels.dtype)
        total += float(tf.reduce_sum(losses))
        correct += float(tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32)))
        count += int(labels.shape[0])
    if not count:
        raise ValueError("the validation set holds no examples")
    return {"val_loss": total / count, "val_accuracy": correct / count}


def class_probabilities(model: keras.Model, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities of every class, float32 ``(examples, classes)``; a sigmoid head's ``p`` becomes ``[1 - p, p]``.

    Example:
        >>> class_probabilities(model, pad_to(data.val_ids, 64)).sum(axis=1)  # doctest: +SKIP
        array([1., 1., ...], dtype=float32)
    """
    ids = np.asarray(ids, np.int32)
    if ids.ndim != 2:
        raise ValueError(f"ids of shape {ids.shape} must be (examples, seq_len)")
    if not len(ids):
        return np.zeros((0, max(2, model.output_shape[-1])), np.float32)
    out = np.concatenate([model(ids[i:i + batch_size], training=False).numpy()
                          for i in range(0, len(ids), batch_size)]).astype(np.float32)
    return np.concatenate([1.0 - out, out], axis=1) if out.shape[1] == 1 else out


def classify_texts(model: keras.Model, vocab, texts: Sequence[str], seq_len: int, padding: str = "pre",
                   truncating: str = "pre") -> np.ndarray:
    """Class probabilities ``(len(texts), classes)`` of raw texts, prepared exactly as in training.

    Each text is cleaned (:func:`data_pipeline.clean_document`), its words looked up in
    ``vocab`` (unknown: ``<unk>``), and the ids padded and truncated (:func:`data_pipeline.pad_to`).

    Raises:
        CorpusError: a text has no word left after cleaning (marks alone are none); the message says which.

    Example:
        >>> classify_texts(model, vocab, ["I love you"], seq_len=32)  # doctest: +SKIP
        array([[0.12, 0.88]], dtype=float32)
    """
    from lstm_sweep.data_pipeline import pad_to
    from lstm_sweep.data_pipeline.text import text_words

    sequences = []
    for i, text in enumerate(texts, 1):
        words = text_words(text, i)  # marks alone are no text, as generate refuses such a prompt
        sequences.append(np.array([vocab.id_of(w) for w in words], np.int32))
    return class_probabilities(model, pad_to(sequences, seq_len, padding, truncating))
