"""What a model scores when it has learned nothing from the context: the bar every trial must clear.

* A language model that ignores the words before the next one can at best predict each token
  with its training frequency (a unigram model). Its validation loss, per real token as
  ``val_loss`` counts it, is :func:`unigram_loss`: 5.556 on the lyrics subset of
  ``bench/search_efficiency.py``, where trials with a low learning rate sit for epochs.
* A classifier that ignores the text can at best predict the training class frequencies:
  :func:`prior_baselines` gives that ``val_loss`` and the accuracy of always answering the
  training majority class.

``search.trainable`` stops a trial that is still no better than its baseline after the ASHA
grace period (``asha.stop_at_baseline``): with only a few trials at a rung, ASHA compares such
a trial with others on the same plateau and lets it run on.

Numpy only, and cheap: one ``bincount`` over the token or label arrays.
"""

from __future__ import annotations

import numpy as np


def unigram_loss(train: np.ndarray, val: np.ndarray) -> float:
    """Mean cross-entropy (nats per real target token) of ``val`` under the training split's
    token frequencies.

    Both arrays are encoded sentences as ``prepare`` writes them (``<start>`` ... ``<end>``,
    right-padded with 0); the targets are every token after the first, padding excluded, as in
    ``val_loss``. A validation token never seen as a training target (``<unk>`` when every
    training word fit in the vocabulary) counts once, so the loss stays finite; the
    frequencies are normalized over the tokens counted.

    Example:
        >>> train = np.array([[2, 4, 4, 3], [2, 5, 3, 0]])
        >>> round(unigram_loss(train, np.array([[2, 4, 3, 0]])), 4)  # p(4) = 2/5, p(<end>) = 2/5
        0.9163
    """
    train_targets, val_targets = _targets(train), _targets(val)
    if not train_targets.size or not val_targets.size:
        raise ValueError("unigram_loss needs at least one real target token in each split")
    size = int(max(train_targets.max(), val_targets.max())) + 1
    counts = np.bincount(train_targets, minlength=size)
    counts[val_targets] = np.maximum(counts[val_targets], 1)
    log_p = np.log(np.maximum(counts, 1)) - np.log(counts.sum())
    return float(-log_p[val_targets].mean())


def prior_baselines(train_labels: np.ndarray, val_labels: np.ndarray) -> dict[str, float]:
    """``val_loss`` (cross-entropy) of predicting the training class frequencies for every
    validation example, and ``val_accuracy`` of always answering the training majority class.

    Example:
        >>> scores = prior_baselines(np.array([0, 0, 0, 1]), np.array([0, 1]))
        >>> round(scores["val_loss"], 4), scores["val_accuracy"]  # -(log 0.75 + log 0.25) / 2
        (0.837, 0.5)
    """
    train_labels, val_labels = np.asarray(train_labels, dtype=np.int64), np.asarray(val_labels, dtype=np.int64)
    if not train_labels.size or not val_labels.size:
        raise ValueError("prior_baselines needs at least one label in each split")
    size = int(max(train_labels.max(), val_labels.max())) + 1
    counts = np.bincount(train_labels, minlength=size)
    counts[val_labels] = np.maximum(counts[val_labels], 1)  # a class absent from training counts once
    log_p = np.log(np.maximum(counts, 1)) - np.log(counts.sum())
    return {"val_loss": float(-log_p[val_labels].mean()),
            "val_accuracy": float(np.mean(val_labels == counts.argmax()))}


def _targets(tokens: np.ndarray) -> np.ndarray:
    targets = np.asarray(tokens)[:, 1:]
    return targets[targets != 0].astype(np.int64)
