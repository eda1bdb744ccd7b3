"""Retrain a sweep's winner for longer, keep its best epoch, export it.

The flow, for a run folder made by ``lstm-sweep search``::

    best.json + sweep.yaml ──► the winner's config (dropout: the searched value, else 0.2)
        ──► model.fit for up to `epochs`, early stopping on val_loss (patience)
        ──► winner/best.keras (the lowest val_loss only), history.csv, loss.png
        ──► winner/export/ (SavedModel, .keras, vocab.json, model_card.json)

As in the original notebooks, the search trains briefly and the winner is trained again for
longer (10 epochs by default) with dropout on the full training split.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from search.config import ConfigError, SweepConfig, load_config

WINNER_DIR = "winner"
DEFAULT_DROPOUT = 0.2  # the notebooks' dropout for the final model when the sweep did not search it


@dataclass
class Winner:
    """What a run folder says about its best trial."""

    trial_id: str
    params: dict[str, Any]
    batch_size: int  # the batch it trained with (cut to fit its memory budget)
    sweep_val_loss: float
    config: SweepConfig


def read_winner(run_dir: str | Path) -> Winner:
    """The best finished trial of the run in ``run_dir`` (from ``best.json`` and ``sweep.yaml``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "sweep.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no sweep.yaml): pass a folder made by `lstm-sweep search`")
    best = run_dir / "best.json"
    if not best.is_file():
        raise ConfigError(f"{run_dir}: no trial finished an epoch (no best.json): nothing to retrain; "
                          "see trials.csv for why, then run the sweep again")
    summary = json.loads(best.read_text(encoding="utf-8"))
    params = dict(summary["params"])
    used = summary.get("extra", {}).get("batch_size_used") or params["batch_size"]
    return Winner(trial_id=summary["trial_id"], params=params, batch_size=int(used),
                  sweep_val_loss=float(summary.get("best_val_loss", math.nan)),
                  config=load_config(run_dir / "sweep.yaml"))


def retrain(run_dir: str | Path, epochs: int = 10, patience: int = 3, dropout: float | None = None,
            verbose: Any = "auto") -> dict[str, Path]:
    """Retrain the winner of ``run_dir`` and export it; return the paths written.

    Args:
        run_dir: a run folder made by ``lstm-sweep search``.
        epochs: the most epochs to train; >= 1.
        patience: epochs without a lower val_loss before stopping; >= 1.
        dropout: dropout after each recurrent layer; None for the searched value, or 0.2
            when the sweep did not search dropout.
        verbose: Keras' progress display (``"auto"``: a progress bar in a terminal).

    Example:
        >>> paths = retrain("runs/quick-20261122-101500", epochs=10)  # doctest: +SKIP
        >>> sorted(paths)  # doctest: +SKIP
        ['best', 'export', 'history', 'plot']
    """
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs}: must be >= 1")
    if patience < 1:
        raise ConfigError(f"--patience {patience}: must be >= 1")
    if dropout is not None and not 0 <= dropout < 1:
        raise ConfigError(f"--dropout {dropout}: must be in [0, 1)")
    winner = read_winner(run_dir)
    config = winner.config
    if dropout is None:
        dropout = float(winner.params["dropout"]) if "dropout" in config.searched() else DEFAULT_DROPOUT

    import keras

    from data_pipeline import lm_dataset, prepare
    from model import (build_language_model, compile_language_model, configure_threads, fit_language_model,
                       set_seed)
    from results import atomic_write_csv
    from results.plots import plot_history

    out = Path(run_dir) / WINNER_DIR
    out.mkdir(exist_ok=True)
    settings = _data_settings(config, winner.params)
    prepared = prepare(settings)
    configure_threads(max(1, int(config.resources.cpus_per_trial)))
    set_seed(config.searcher.seed)
    model = build_language_model(
        vocab_size=len(prepared.vocab), embedding_size=int(winner.params["embedding_size"]),
        hidden_size=int(winner.params["hidden_size"]), num_layers=int(winner.params["num_layers"]),
        dropout=dropout, cell=config.model.cell)
    compile_language_model(model, float(winner.params["learning_rate"]))
    print(f"retraining trial {winner.trial_id} (sweep val_loss {winner.sweep_val_loss:.4f}): "
          f"{_describe(winner.params)}, dropout {dropout:g}, batch {winner.batch_size}, up to {epochs} epochs")

    best_file = out / "best.keras"
    history = fit_language_model(
        model, lm_dataset(prepared.train, winner.batch_size, shuffle=True, seed=config.searcher.seed, buckets=True),
        lm_dataset(prepared.val, winner.batch_size, shuffle=False), epochs=epochs, verbose=verbose,
        callbacks=[
            # Only the epoch with the lowest val_loss is kept on disk.
            keras.callbacks.ModelCheckpoint(best_file, monitor="val_loss", mode="min", save_best_only=True),
            keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=patience),
        ])
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", range(1, len(table) + 1))
    table = table[["epoch", "loss", "val_loss", "val_loss_padded", "seconds"]]
    paths = {"best": best_file, "history": out / "history.csv", "plot": out / "loss.png"}
    atomic_write_csv(paths["history"], table)
    plot_history(table, paths["plot"], title=f"winner {winner.trial_id}: {_describe(winner.params)}")

    best_epoch = int(table.val_loss.idxmin()) + 1
    card = {
        "trial_id": winner.trial_id,
        "config": {**winner.params, "dropout": dropout, "batch_size_used": winner.batch_size,
                   "cell": config.model.cell, "vocab_size": len(prepared.vocab)},
        "sweep_val_loss": winner.sweep_val_loss,
        "best_val_loss": float(table.val_loss.min()),
        "best_val_loss_padded": float(table.val_loss_padded[best_epoch - 1]),
        "final_val_loss": float(table.val_loss.iloc[-1]),
        "best_epoch": best_epoch,
        "epochs": len(table),
        "data": {**settings.__dict__, "fingerprint": prepared.fingerprint,
                 "train_sentences": int(len(prepared.train)), "val_sentences": int(len(prepared.val))},
    }
    (out / "card.json").write_text(json.dumps(card, indent=2))  # export reads it back
    paths["export"] = export(run_dir)
    return paths


def export(run_dir: str | Path) -> Path:
    """Export ``run_dir``'s retrained winner to ``winner/export/``; return that folder."""
    import keras

    from model.export import export_model

    out = Path(run_dir) / WINNER_DIR
    for name in ("best.keras", "card.json"):
        if not (out / name).is_file():
            raise ConfigError(f"{out / name} is missing: run `lstm-sweep retrain {run_dir}` first")
    card = json.loads((out / "card.json").read_text())
    winner = read_winner(run_dir)
    vocab = _vocabulary(Path(run_dir), winner)
    if len(vocab) != card["config"]["vocab_size"]:  # pragma: no cover - a corrupted folder
        raise ConfigError(f"{run_dir}: vocab.json has {len(vocab)} tokens, the model {card['config']['vocab_size']}")
    model = keras.models.load_model(out / "best.keras", safe_mode=True)
    export_model(model, vocab, out / "export", card)
    return out / "export"


def _vocabulary(run_dir: Path, winner: Winner):
    from data_pipeline import Vocabulary, prepare

    if "vocab_size" in winner.params:  # a searched vocabulary: the winner's own
        return prepare(_data_settings(winner.config, winner.params)).vocab
    if (run_dir / "vocab.json").is_file():
        return Vocabulary.from_json(run_dir / "vocab.json")
    return prepare(winner.config.data).vocab


def _data_settings(config: SweepConfig, params: dict[str, Any]):
    from data_pipeline import DataSettings

    fields = dict(config.data.__dict__)
    if "vocab_size" in params:
        fields["vocab_size"] = int(params["vocab_size"])
    return DataSettings(**fields)


def _describe(params: dict[str, Any]) -> str:
    return (f"embedding {params['embedding_size']}, hidden {params['hidden_size']} x {params['num_layers']} "
            f"layer(s), lr {float(params['learning_rate']):.2e}")
