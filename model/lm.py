"""The word-level language model: Embedding -> N recurrent layers -> Dense(vocab) logits.

The shape is the one of the lyricist notebooks, with two deliberate differences:

* no ``mask_zero`` on the embedding. Padding is always on the right, the recurrence is
  causal, so the outputs at real positions never see a padded step; the loss masks the
  padded targets instead. Dropping the mask keeps Keras on its fast fused kernels
  (cuDNN on a GPU, no per-step masking on a CPU).
* the loss ignores padding: :func:`masked_cross_entropy` is the mean cross-entropy over
  real target tokens only, so a batch padded to 14 steps and the same batch padded to 40
  give the same loss.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from lstm_sweep.model.cells import get_cell


def build_language_model(
    vocab_size: int,
    embedding_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    cell: str = "lstm",
) -> keras.Model:
    """Build an uncompiled next-token model mapping ``(batch, time)`` ids to logits.

    Args:
        vocab_size: number of token ids, ``<pad>`` (0) and ``<unk>`` (1) included; >= 2.
        embedding_size: width of the token embedding; >= 1.
        hidden_size: units of each recurrent layer; >= 1.
        num_layers: stacked recurrent layers, each returning its whole sequence; >= 1.
        dropout: rate of the dropout after each recurrent layer, in [0, 1).
        cell: a registered cell (``model.cells``): ``"lstm"`` (default), ``"gru"``, ``"rnn"``
            (Keras ``SimpleRNN``), ...

    Returns:
        A functional ``keras.Model`` whose output is float32 logits of shape
        ``(batch, time, vocab_size)``.

    Example:
        >>> model = build_language_model(vocab_size=100, embedding_size=8, hidden_size=16)
        >>> tuple(model(tf.zeros((2, 5), tf.int32)).shape)
        (2, 5, 100)
    """
    check_recurrent_arguments(vocab_size, embedding_size, hidden_size, num_layers, dropout, cell)

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embedding_size, name="embedding")(tokens)
    for i in range(num_layers):
        x = get_cell(cell).make_layer(hidden_size, return_sequences=True, name=f"{cell}_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    # float32 logits even under a mixed-precision policy: the softmax needs the range.
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(x)
    return keras.Model(tokens, logits, name=f"{cell}_language_model")


@keras.saving.register_keras_serializable(package="lstm_sweep")
def masked_cross_entropy(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over real target tokens; targets equal to 0 (``<pad>``) are ignored.

    Example:
        >>> logits = tf.zeros((1, 3, 4))
        >>> float(masked_cross_entropy(tf.constant([[2, 3, 0]]), logits))  # ln 4
        1.386...
    """
    total, real, _ = token_cross_entropy_sums(targets, logits)
    return total / tf.maximum(real, 1.0)


def token_cross_entropy_sums(targets: tf.Tensor, logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(sum of cross-entropy over real tokens, number of real tokens, number of positions).

    The three sums let an epoch's figures be exact token-weighted means rather than
    a mean of per-batch means (batches differ in how many real tokens they hold).
    """
    targets = tf.cast(targets, tf.int32)
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=tf.cast(logits, tf.float32))
    real = tf.cast(tf.not_equal(targets, 0), tf.float32)
    return (tf.reduce_sum(per_token * real), tf.reduce_sum(real),
            tf.cast(tf.size(targets), tf.float32))


def check_recurrent_arguments(vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
                              dropout: float, cell: str) -> None:
    """The checks every recurrent model builder makes (the language model, the classifier)."""
    _check_positive(vocab_size=vocab_size, embedding_size=embedding_size,
                    hidden_size=hidden_size, num_layers=num_layers)
    if vocab_size < 2:
        raise ValueError(f"vocab_size={vocab_size} must be at least 2 (<pad> and <unk>)")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout} must be in [0, 1)")
    get_cell(cell)  # registered, or a ValueError naming the registered cells


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
