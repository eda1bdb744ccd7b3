"""From token arrays to ``tf.data`` batches, for the language model and the classifier.

The flow, top to bottom::

    language model:  PreparedData.train / .val      int32 (sentences, max_tokens)
      -> row_order(n, shuffle, seed)                 row numbers, a new seeded order each pass
      -> lm_dataset(tokens, batch_size)              (source, target), each batch cut to its longest
                                                     sentence (_shift_and_trim); batch_count steps
    classifier:      LabelledData.train_ids / .val_ids   ragged int32 ids
      -> pad_to(ids, seq_len, padding, truncating)   int32 (examples, seq_len), per trial
      -> classify_dataset(x, y, batch_size)          (ids, label id) batches, in row_order

TensorFlow and Keras are imported inside the functions that need them, never at the top, so
``import lstm_sweep.data_pipeline`` (to parse a config, to print an error) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .checks import check_int

if TYPE_CHECKING:
    import tensorflow as tf

SIDES = ("pre", "post")  # where keras.utils.pad_sequences pads and truncates


def lm_dataset(tokens: np.ndarray, batch_size: int, shuffle: bool = True, seed: int = 0,
               drop_remainder: bool = False, buckets: bool = False) -> tf.data.Dataset:
    """Batches of language-model pairs: predict each token from the ones before it.

    For a row ``[<start>, w1, w2, <end>, 0, 0]`` the source is the row without its last id and
    the target the row without its first: ``source[t]`` is followed by ``target[t]``. Each batch
    is cut to its longest sentence (``max(length) - 1`` steps), so short sentences are padded
    only as far as the batch needs. A target of 0 is padding, to be masked out of the loss.

    The rows are kept in memory as one tensor; with ``shuffle`` they are read in a random
    order over the whole array, seeded, different each pass over the dataset (each epoch), the
    same sequence of orders for the same seed.

    Args:
        tokens: int array ``(sentences, max_tokens)`` from :class:`PreparedData`; >= 1 row,
            >= 2 columns; right-padded with 0.
        batch_size: sentences per batch; >= 1.
        shuffle: shuffle the rows (training) or keep their order (validation).
        seed: seed of the shuffle; >= 0.
        drop_remainder: drop a last batch smaller than ``batch_size``.
        buckets: batch sentences of one length together (``Dataset.bucket_by_sequence_length``),
            so a batch holds no padding; each length's last batch of a pass may be smaller.

    Returns:
        A ``tf.data.Dataset`` of ``(source, target)``, both int32 ``(batch, steps)`` with
        ``steps <= max_tokens - 1``.

    Example:
        >>> ds = lm_dataset(np.array([[2, 7, 8, 3, 0], [2, 9, 3, 0, 0]]), batch_size=2, shuffle=False)
        >>> source, target = next(iter(ds))
        >>> source.numpy().tolist(), target.numpy().tolist()
        ([[2, 7, 8], [2, 9, 3]], [[7, 8, 3], [9, 3, 0]])
    """
    array = np.asarray(tokens)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 2:
        raise ValueError(f"tokens of shape {array.shape} must be 2-D with >= 1 row and >= 2 columns")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"tokens of dtype {array.dtype} must hold integer token ids")
    check_int("batch_size", batch_size, 1, "sentences per batch")
    check_int("seed", seed, 0, "a seed for tf.data")
    import tensorflow as tf  # here, not at the top: `import data_pipeline` must stay light

    rows = tf.constant(array.astype(np.int32, copy=False))
    indices = row_order(len(array), shuffle, seed)
    if buckets:
        # One bucket per sentence length (<start> and <end> included): rows are right-padded
        # with 0, so a row's length is its count of non-zero ids.
        width = array.shape[1]
        ds = indices.map(lambda i: tf.gather(rows, i)).bucket_by_sequence_length(
            element_length_func=lambda row: tf.cast(tf.math.count_nonzero(row), tf.int32),
            bucket_boundaries=list(range(2, width + 1)), bucket_batch_sizes=[batch_size] * width,
            drop_remainder=drop_remainder, no_padding=True)
    else:
        ds = indices.batch(batch_size, drop_remainder=drop_remainder).map(lambda i: tf.gather(rows, i))
    # Declared, so Keras knows an epoch's steps from the first one: a progress bar with its end,
    # and no "Your input ran out of data" warning when the first pass ends.
    count = batch_count(array, batch_size, drop_remainder, buckets)
    return _one_batch_ahead(ds.map(_shift_and_trim).apply(tf.data.experimental.assert_cardinality(count)))


def batch_count(tokens: np.ndarray, batch_size: int, drop_remainder: bool = False, buckets: bool = False) -> int:
    """Batches in one pass of :func:`lm_dataset` over ``tokens``: the same every pass, since
    shuffling changes which sentences share a batch, not how many sentences have each length.

    Example:
        >>> rows = np.array([[2, 5, 3], [2, 3, 0], [2, 6, 3]])  # lengths 3, 2, 3
        >>> batch_count(rows, 2), batch_count(rows, 2, buckets=True), batch_count(rows, 2, True, True)
        (2, 2, 1)
    """
    whole = np.floor if drop_remainder else np.ceil
    if not buckets:
        return int(whole(len(tokens) / batch_size))
    _, per_length = np.unique(np.count_nonzero(tokens, axis=1), return_counts=True)
    return int(whole(per_length / batch_size).sum())


def row_order(n: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """Row numbers ``0..n-1`` as a dataset: in order, or in a seeded random order, new each pass.

    One permutation of the row numbers a pass (an epoch), drawn from a per-pass seed: a few
    bytes a row. ``Dataset.shuffle(n)`` would buffer n elements at about 500 bytes each (60 MB
    a trial on the 124,593 lyric sentences). The same seed gives the same sequence of orders.

    Example:
        >>> [int(i) for i in row_order(3, shuffle=False, seed=0)]
        [0, 1, 2]
    """
    import tensorflow as tf

    if not shuffle:
        return tf.data.Dataset.range(n)

    def order(pass_seed):
        key = tf.stack([pass_seed, tf.constant(seed, tf.int64)])
        return tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key))

    # Declared: flat_map hides the count, and Keras reads it as an epoch's steps.
    return (tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).flat_map(order)
            .apply(tf.data.experimental.assert_cardinality(n)))


def _one_batch_ahead(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with one batch prefetched, and tf.data's autotuning off.

    The pipeline is a gather and a slice a batch: one batch ahead keeps the model fed. With
    autotuning on, deleting an epoch's iterator (when Keras's ``fit`` returns) took 3.0-5.1 s
    on one core (30,000 lines, hidden 128; 8 of 9 fits, 0 s in the other), which a reused
    worker's next trial waited for (bench/scale.py); off, 0 s in every fit, and the fits no
    slower (11-13 s each against 11-18 s, the same pinned core, alternating).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(1).with_options(options)


def _shift_and_trim(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    import tensorflow as tf

    lengths = tf.math.count_nonzero(batch, axis=1, dtype=tf.int32)
    steps = tf.maximum(tf.reduce_max(lengths) - 1, 1)  # >= 1 even for an all-padding batch
    return batch[:, :steps], batch[:, 1:steps + 1]


def pad_to(sequences: list[np.ndarray], seq_len: int, padding: str = "pre", truncating: str = "pre") -> np.ndarray:
    """Sequences as an int32 ``(len(sequences), seq_len)`` array, with 0 as padding.

    ``keras.utils.pad_sequences``: a longer sequence loses its first tokens (``truncating=
    "pre"``, it keeps its end) or its last ones (``"post"``); a shorter one gets its zeros
    before (``padding="pre"``, its last token at the last step, next to the classifier's
    read-out) or after (``"post"``). The classifier has no mask (see ``model.classifier``), so
    with ``post`` padding the recurrent state walks over the zeros before it is read.

    Example:
        >>> pad_to([np.array([5, 6, 7, 8]), np.array([9])], 3, padding="pre", truncating="post").tolist()
        [[5, 6, 7], [0, 0, 9]]
    """
    check_int("seq_len", seq_len, 1, "time steps each example is padded or cut to")
    for name, side in (("padding", padding), ("truncating", truncating)):
        if side not in SIDES:
            raise ValueError(f"{name}={side!r} must be 'pre' or 'post'")
    import keras  # here, not at the top: `import data_pipeline` must stay light

    if not len(sequences):
        return np.zeros((0, seq_len), np.int32)
    return keras.utils.pad_sequences(list(sequences), maxlen=int(seq_len), dtype="int32", padding=padding,
                                     truncating=truncating, value=0)


def classify_dataset(ids: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = True,
                     seed: int = 0) -> tf.data.Dataset:
    """Batches of ``(ids, label id)``: int32 ``(batch, seq_len)`` and int32 ``(batch,)``.

    Rows are read in a seeded random order, new each epoch, as :func:`lm_dataset` reads them
    (one permutation of row numbers a pass, no shuffle buffer), or in order for validation.

    Example:
        >>> ds = classify_dataset(np.array([[0, 5], [6, 7]]), np.array([1, 0]), batch_size=2, shuffle=False)
        >>> [t.numpy().tolist() for t in next(iter(ds))]
        [[[0, 5], [6, 7]], [1, 0]]
    """
    ids, labels = np.asarray(ids), np.asarray(labels)
    if ids.ndim != 2 or len(ids) < 1 or labels.shape != (len(ids),):
        raise ValueError(f"ids of shape {ids.shape} and labels of shape {labels.shape} must be "
                         "(examples, seq_len) and (examples,), with >= 1 example")
    check_int("batch_size", batch_size, 1, "examples per batch")
    check_int("seed", seed, 0, "a seed for tf.data")
    import tensorflow as tf

    rows = tf.constant(ids.astype(np.int32, copy=False))
    targets = tf.constant(labels.astype(np.int32, copy=False))
    return _one_batch_ahead(row_order(len(ids), shuffle, seed).batch(batch_size)
                            .map(lambda i: (tf.gather(rows, i), tf.gather(targets, i))))
