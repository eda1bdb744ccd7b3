"""The Ray Tune trainable: one trial = one model trained epoch by epoch, reported to Tune.

Thin on purpose: it wires a config to ``data_pipeline`` and ``model`` and reports to Ray.
Each epoch it reports ``val_loss`` (what ASHA and the searcher read) with a checkpoint of
the whole Keras model (weights and optimizer state), so ASHA can stop it between epochs
and a trial whose worker died resumes where it was, not from epoch 0.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import keras
import ray
from ray import tune

from data_pipeline import DataSettings, lm_dataset, prepare
from model import (build_language_model, compile_language_model, configure_threads,
                   fit_language_model, set_seed)

CHECKPOINT_FILE = "model.keras"
EPOCH_FILE = "epoch"


def train_trial(config: dict[str, Any], *, data: dict[str, Any], max_epochs: int, seed: int,
                cell: str = "lstm", threads: int = 1) -> None:
    """Train one configuration; used as ``tune.with_parameters(train_trial, ...)``.

    Args:
        config: the trial's hyperparameters (``embedding_size``, ``hidden_size``,
            ``num_layers``, ``dropout``, ``learning_rate``, ``batch_size``), from Tune.
        data: ``DataSettings`` fields; the tokenized arrays come from the node's cache.
        max_epochs: the last epoch, when ASHA lets the trial run to the end.
        seed: seeds weights and shuffling, so the same config trains the same way.
        cell: the recurrent cell (``lstm``, ``gru``, ``rnn``).
        threads: TensorFlow threads, the number of CPUs Ray granted the trial.
    """
    configure_threads(max(1, int(threads)))
    set_seed(seed)
    prepared = prepare(DataSettings(**data))
    batch_size = int(config["batch_size"])
    train_ds = lm_dataset(prepared.train, batch_size, shuffle=True, seed=seed)
    val_ds = lm_dataset(prepared.val, batch_size, shuffle=False)

    initial_epoch = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            model = keras.models.load_model(Path(folder) / CHECKPOINT_FILE)
            initial_epoch = int((Path(folder) / EPOCH_FILE).read_text())
    else:
        model = build_language_model(
            vocab_size=len(prepared.vocab),
            embedding_size=int(config["embedding_size"]),
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_layers"]),
            dropout=float(config["dropout"]),
            cell=cell,
        )
        compile_language_model(model, float(config["learning_rate"]))
    if initial_epoch >= max_epochs:
        return

    node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
    fit_language_model(model, train_ds, val_ds, epochs=max_epochs, initial_epoch=initial_epoch,
                       callbacks=[_ReportToTune(node=node, batch_size=batch_size)])


class _ReportToTune(keras.callbacks.Callback):
    """Report each epoch's figures to Tune, with a checkpoint of the whole model."""

    def __init__(self, node: str, batch_size: int):
        super().__init__()
        self.node = node
        self.batch_size = batch_size

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        metrics = {
            "epoch": epoch + 1,
            "loss": float(logs["loss"]),
            "val_loss": float(logs["val_loss"]),
            "val_loss_padded": float(logs["val_loss_padded"]),
            "epoch_seconds": float(logs["seconds"]),
            "batch_size_used": self.batch_size,
            "node": self.node,
        }
        with tempfile.TemporaryDirectory() as folder:
            self.model.save(Path(folder) / CHECKPOINT_FILE)
            (Path(folder) / EPOCH_FILE).write_text(str(epoch + 1))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def trial_arguments(config) -> dict[str, Any]:
    """The fixed keyword arguments of :func:`train_trial` for a ``SweepConfig``."""
    return {
        "data": dataclasses.asdict(config.data),
        "max_epochs": config.budget.max_epochs,
        "seed": config.searcher.seed,
        "cell": config.model.cell,
        "threads": max(1, int(config.resources.cpus_per_trial)),
    }
