"""Training a language model: compile, fit epoch by epoch, and exact validation figures.

``model.fit`` does the training (its compiled step is as fast as Keras gets); validation is
ours, because Keras averages per-batch losses and we want token-weighted means:

* ``val_loss``: mean cross-entropy over the real (non-padding) tokens of the validation set.
* ``val_loss_padded``: the figure the original notebooks reported, a mean over every position
  of batches padded to their longest sentence. Our model is never trained to predict
  padding, so a padded position counts as a certain (zero-loss) prediction, as it nearly
  is for a model trained with padding in its loss: the sum over real tokens divided by all
  positions. It is comparable with the notebooks' target of 2.2, and always <= ``val_loss``.
"""

from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import Any, Sequence

import keras
import tensorflow as tf

from lstm_sweep.model.lm import masked_cross_entropy, token_cross_entropy_sums

CHECKPOINT_DIR = "model"  # the Keras folder inside a checkpoint (see save_checkpoint)


def configure_threads(num_threads: int) -> None:
    """Give TensorFlow ``num_threads`` threads for each op, and as many (at least 2) between ops.

    Must run before TensorFlow executes its first op in the process; later calls are
    ignored (TensorFlow cannot change its pools once they exist), which is harmless when
    a Ray worker process is reused for a trial with the same resources.
    """
    if num_threads < 1:
        raise ValueError(f"num_threads={num_threads} must be >= 1")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        # At least 2 inter-op threads, even for a one-CPU trial: with a single one, TensorFlow's
        # executor keeps every time step's recurrent-kernel gradient of an LSTM alive until the
        # end of the backward loop. Measured (bench/memory.py's child, hidden 2048, batch 256):
        # the step's peak doubles, 1472 MB against 719 MB, at the same speed.
        tf.config.threading.set_inter_op_parallelism_threads(max(2, num_threads))
    except RuntimeError:
        pass


def compile_language_model(model: keras.Model, learning_rate: float) -> keras.Model:
    """Compile ``model`` with Adam at ``learning_rate`` and the padding-masked loss."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate} must be > 0")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=masked_cross_entropy)
    return model


def evaluate_language_model(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    """Exact ``val_loss`` and ``val_loss_padded`` of ``model`` over ``dataset`` (see module doc).

    ``dataset`` yields ``(source, target)`` int32 batches, target 0 meaning padding.
    """
    sums = _sums_function(model)
    total = real = positions = 0.0
    for source, target in dataset:
        t, r, p = sums(source, target)
        total, real, positions = total + float(t), real + float(r), positions + float(p)
    if real == 0:
        raise ValueError("the validation set holds no real tokens")
    return {"val_loss": total / real, "val_loss_padded": total / positions}


_SUMS: "weakref.WeakKeyDictionary[keras.Model, Any]" = weakref.WeakKeyDictionary()


def _sums_function(model: keras.Model):
    # One trace for every batch shape: batches are trimmed to their longest sentence, so
    # their time dimension varies. One per model, kept while it lives: a trial evaluates its
    # model several times an epoch (search.trainable), and each new tf.function traces again.
    if model in _SUMS:
        return _SUMS[model]
    spec = tf.TensorSpec((None, None), tf.int32)
    # A weak reference: a value that held the model would keep its own key alive, and with it
    # every model a reused trial process ever evaluated (search.trainable._start_clean).
    ref = weakref.ref(model)

    @tf.function(input_signature=[spec, spec])
    def sums(source, target):
        return token_cross_entropy_sums(target, ref()(source, training=False))

    _SUMS[model] = sums
    return sums


class ValidationMetrics(keras.callbacks.Callback):
    """Add ``val_loss``, ``val_loss_padded`` and ``seconds`` to each epoch's logs.

    Put it first in the callback list: Keras hands every callback the same ``logs`` dict,
    so callbacks after it (early stopping, checkpoints, reporting to Ray Tune) see the
    exact figures.
    """

    def __init__(self, val_dataset: tf.data.Dataset):
        super().__init__()
        self.val_dataset = val_dataset
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None or self.model.stop_training:
            return  # stopped within the epoch (search.trainable): there is no epoch to validate
        logs.update(evaluate_language_model(self.model, self.val_dataset))
        logs["seconds"] = time.perf_counter() - self._started


def fit_language_model(
    model: keras.Model,
    train_dataset: tf.data.Dataset,
    val_dataset: tf.data.Dataset,
    epochs: int,
    initial_epoch: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: Any = 0,
) -> keras.callbacks.History:
    """Train a compiled ``model`` for epochs ``initial_epoch+1 .. epochs``.

    Each epoch's logs hold ``loss`` (Keras' running mean of the training batches),
    ``val_loss``, ``val_loss_padded`` and ``seconds`` (training plus validation).

    Example:
        >>> history = fit_language_model(model, train_ds, val_ds, epochs=3)  # doctest: +SKIP
        >>> sorted(history.history)  # doctest: +SKIP
        ['loss', 'seconds', 'val_loss', 'val_loss_padded']
    """
    if epochs < 1 or not 0 <= initial_epoch < epochs:
        raise ValueError(f"need 0 <= initial_epoch ({initial_epoch}) < epochs ({epochs})")
    return model.fit(
        train_dataset,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=[ValidationMetrics(val_dataset), *callbacks],
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=verbose,
    )


def save_checkpoint(model: keras.Model, folder: str | Path) -> Path:
    """Save ``model`` (weights and optimizer state) as an unzipped Keras folder ``folder/model``.

    Unzipped on purpose: for a zipped ``.keras`` file Keras builds the weights file in memory
    first, 1.3 times the weights and Adam slots on top of the training peak (+357 MB at hidden
    2048 and a 396-word vocabulary); a folder is written straight to disk, one variable at a
    time (+91 MB). ``keras.models.load_model`` reads the folder back.
    """
    path = Path(folder) / CHECKPOINT_DIR
    model.save(path, zipped=False)
    return path


def set_seed(seed: int, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy, TensorFlow and Keras: the same weights and the same batch order.

    ``deterministic_ops`` also asks TensorFlow for deterministic kernels. Off by default: on
    the CPU our training repeats itself without it (kernels run in a fixed order for a fixed
    thread count), and with it TensorFlow swaps the fused sparse cross-entropy for a
    ``log_softmax`` and a ``gather`` whose backward pass holds about two more ``B x T x V``
    float32 buffers: measured (``bench/memory.py``, hidden 256, batch 512, vocabulary 7000) a
    trial's peak is 649 MB without it and 1054 MB with it. It cannot be turned off once on, in a process.
    """
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        try:
            tf.config.experimental.enable_op_determinism()
        except RuntimeError:  # pragma: no cover - already enabled
            pass
