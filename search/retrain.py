"""Retrain a sweep's winner for longer, keep its best epoch, export it.

The flow, for a run folder made by ``lstm-sweep search``::

    best.json + sweep.yaml ──► the winner's config (dropout: the searched value, else 0.2)
        ──► model.fit for up to `epochs`, early stopping on the sweep's metric (patience)
        ──► winner/best.keras (the best epoch only), history.csv, loss.png
        ──► winner/export/ (SavedModel, .keras, vocab.json, [labels.json,] model_card.json)
        ──► with tracking.mlflow: an MLflow run of the winner, export/ its artifact (search.tracking)

The task (``search.tasks``) builds the model and its batches: a language model, or a
classifier with the winner's ``seq_len`` and padding sides.

As in the original notebooks, the search trains briefly and the winner is trained again for
longer (10 epochs by default) with dropout on the full training split.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lstm_sweep import atomic
from lstm_sweep.errors import ConfigError, RunFolderError
from lstm_sweep.search.config import SweepConfig, load_config

WINNER_DIR = "winner"
TEMPERATURES = (0.2, 0.5, 1.0, 1.2)  # the samples' while retraining (model.generation.TEMPERATURES)
DEFAULT_DROPOUT = 0.2  # the notebooks' dropout for the final model when the sweep did not search it


@dataclass
class Winner:
    """What a run folder says about its best trial."""

    trial_id: str
    params: dict[str, Any]
    batch_size: int  # the batch it trained with (cut to fit its memory budget)
    sweep_value: float  # its best value of the sweep's metric
    config: SweepConfig


def read_winner(run_dir: str | Path) -> Winner:
    """The best finished trial of the run in ``run_dir`` (from ``best.json`` and ``sweep.yaml``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "sweep.yaml").is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no sweep.yaml): pass a folder made by `lstm-sweep search`")
    best = run_dir / "best.json"
    if not best.is_file():
        raise RunFolderError(f"{run_dir}: no trial finished an epoch (no best.json): nothing to retrain; "
                          "see trials.csv for why, then run the sweep again")
    summary = json.loads(best.read_text(encoding="utf-8"))
    params = dict(summary["params"])
    used = summary.get("extra", {}).get("batch_size_used") or params["batch_size"]
    metric = summary.get("metric", "val_loss")
    return Winner(trial_id=summary["trial_id"], params=params, batch_size=int(used),
                  sweep_value=float(summary.get(f"best_{metric}", math.nan)),
                  config=load_config(run_dir / "sweep.yaml"))


def retrain(run_dir: str | Path, epochs: int = 10, patience: int = 3, dropout: float | None = None,
            verbose: Any = "auto", deadline: float | None = None, samples_every: int | None = None,
            temperatures: tuple[float, ...] = TEMPERATURES) -> dict[str, Path]:
    """Retrain the winner of ``run_dir`` and export it; return the paths written.

    Early stopping and the kept checkpoint follow the sweep's ``metric`` and ``mode``
    (``val_loss``, lowest, by default; a classifier may use ``val_accuracy``, highest).

    Args:
        run_dir: a run folder made by ``lstm-sweep search``.
        epochs: the most epochs to train; >= 1.
        patience: epochs without a better metric before stopping; >= 1.
        dropout: dropout after each recurrent layer; None for the searched value, or 0.2
            when the sweep did not search dropout.
        verbose: Keras' progress display (``"auto"``: a progress bar in a terminal, one line an
            epoch elsewhere: a log file gets no carriage-return frames).
        deadline: a wall-clock time (``time.time()``) the retrain must end well before, the export
            and the report still to come (``run --time``): it stops after the epoch past which
            another would not end in time (:func:`search.timebudget.deadline_callback`).
        samples_every: a language model: every this many epochs, continue a fixed prompt drawn
            from the validation split by the sweep's seed (:func:`model.generation.sample_prompt`)
            at each of ``temperatures``, print it and keep it in ``winner/samples.txt``
            (:class:`model.generation.SampleEveryEpochs`); 0: never; None: every epoch for a
            character model (``data.tokens: char``), never for a word model.
        temperatures: the samples' temperatures, each > 0.

    Example:
        >>> paths = retrain("runs/quick-20261122-101500", epochs=10)  # doctest: +SKIP
        >>> sorted(paths)  # doctest: +SKIP
        ['best', 'export', 'history', 'plot']
    """
    check_retrain_arguments(epochs, patience, dropout, samples_every, temperatures)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    winner = read_winner(run_dir)
    config = winner.config
    from lstm_sweep.search.tracking import check_tracking, log_winner

    config = check_tracking(config)  # tracking.mlflow: refused now, not after the retrain
    if dropout is None:
        dropout = float(winner.params["dropout"]) if "dropout" in config.searched() else DEFAULT_DROPOUT

    from lstm_sweep.search.tasks import get_task

    task = get_task(config.task)
    out = Path(run_dir) / WINNER_DIR
    out.mkdir(exist_ok=True)
    settings = task.settings(config.data.__dict__, winner.params)
    prepared = task.prepare(settings)
    plan, device = _plan_here(winner, task, prepared)
    spec = task.spec(winner.params, prepared, config, dropout=dropout, batch_size=plan.batch_size_used)
    print(f"retraining trial {winner.trial_id} (sweep {config.metric} {winner.sweep_value:.4f}): "
          f"{spec.describe()}, up to {epochs} epochs on {device}")

    paths = {"best": out / "best.keras", "history": out / "history.csv", "plot": out / "loss.png"}
    if samples_every is None:
        samples_every = 1 if getattr(settings, "tokens", "word") == "char" else 0
    samples = []
    if samples_every and task.num_classes(prepared) == 0:
        from lstm_sweep.model.generation import SampleEveryEpochs, sample_prompt

        paths["samples"] = out / "samples.txt"
        samples = [SampleEveryEpochs(prepared.vocab, sample_prompt(prepared.vocab, prepared.val, config.searcher.seed),
                                     samples_every, temperatures, paths["samples"], seed=config.searcher.seed)]
    table, spec, retries = _fit_winner(task, prepared, spec, config, paths["best"], epochs, patience, verbose,
                                       deadline, samples)
    _write_history(table, paths, f"winner {winner.trial_id}: {spec.describe()}", config)
    card = _card(winner, task, prepared, spec, settings, table)
    card.update(device=device, oom_retries=retries, predicted_peak_mb=round(plan.predicted_peak_bytes / 2**20, 1))
    atomic.write_text(out / "card.json", json.dumps(card, indent=2))  # export reads it back
    paths["export"] = export(run_dir)
    log_winner(run_dir, config, card, table, paths["export"])  # with tracking.mlflow: one MLflow run
    return paths


def check_retrain_arguments(epochs: int, patience: int, dropout: float | None, samples_every: int | None = None,
                            temperatures: tuple[float, ...] = TEMPERATURES) -> None:
    """The retrain's flags, checked before a sweep of minutes rather than after it."""
    if samples_every is not None and samples_every < 0:
        raise ConfigError(f"--samples-every {samples_every}: must be >= 0 (epochs between samples; 0: none)")
    if not temperatures or not all(t > 0 and math.isfinite(t) for t in temperatures):
        raise ConfigError(f"--temperatures {','.join(f'{t:g}' for t in temperatures)}: each must be a number > 0 "
                          "(1: the model's own distribution; lower: safer, higher: wilder)")
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs}: must be >= 1")
    if patience < 1:
        raise ConfigError(f"--patience {patience}: must be >= 1")
    if dropout is not None and not 0 <= dropout < 1:
        raise ConfigError(f"--dropout {dropout}: must be in [0, 1)")


def _plan_here(winner: Winner, task, prepared):
    """The winner's plan on this machine, as a trial's (``search.resources``): its batch cut to what
    fits here, TensorFlow's threads, its GPU cap and precision. Returns the plan and the device."""
    import keras
    import tensorflow as tf

    from lstm_sweep.model import configure_threads, set_seed
    from lstm_sweep.model.devices import configure_gpu, device_name
    from lstm_sweep.search.resources import make_sizer, sweep_calibration, this_machine

    config = winner.config
    if config.resources.gpus_per_trial and not tf.config.list_physical_devices("GPU"):
        print("the sweep ran on GPUs, but TensorFlow sees none here: retraining on the CPU")
        config = config.with_overrides(**{"resources.gpus_per_trial": 0})
    # The memory model calibrated for the device it retrains on, as the sweep's trials were planned.
    sizer = make_sizer(config, len(prepared.vocab), this_machine(), num_classes=task.num_classes(prepared),
                       calibration=sweep_calibration(config)[0])
    plan = sizer.plan({**winner.params, "batch_size": winner.batch_size})
    if not plan.feasible:
        raise ConfigError(f"the winner does not fit this machine: it {plan.reason}; retrain it where the sweep ran, "
                          "or raise resources.trial_memory_gb")
    configure_threads(max(1, int(plan.cpu)))
    on_gpu = configure_gpu(plan.budget_bytes if 0 < plan.gpu < 1 else None)
    if on_gpu and config.model.precision == "mixed_float16":
        keras.mixed_precision.set_global_policy("mixed_float16")
    set_seed(config.searcher.seed)
    return plan, device_name() if on_gpu else "CPU"


def _fit_winner(task, prepared, spec, config: SweepConfig, best_file: Path, epochs: int, patience: int,
                verbose: Any, deadline: float | None = None, samples: list | None = None
                ) -> tuple[pd.DataFrame, Any, int]:
    """Train ``spec`` with early stopping on the sweep's metric, keeping only its best epoch on disk;
    return its history (one row an epoch: ``epoch``, the task's figures, ``seconds``), the spec it
    ended with and its out-of-memory retries. As in a trial, an out-of-memory error halves the
    batch, at most ``resources.max_oom_retries`` times; the retrain then starts again."""
    import keras

    from lstm_sweep.model import set_seed
    from lstm_sweep.model.devices import describe_error, is_out_of_memory

    metric, mode = config.metric, config.mode
    # Away from a terminal (a log file, a pipe), one line of our own an epoch instead of Keras'.
    lines = [_epoch_lines(epochs, metric, mode, list(dict.fromkeys(["loss", *task.reported])))] if verbose == 2 else []
    stop = None
    if deadline is not None:
        from lstm_sweep.search.timebudget import deadline_callback

        stop = deadline_callback(deadline)
    for retries in range(config.resources.max_oom_retries + 1):
        failure = ""
        try:
            history = task.fit(
                task.build(spec), *task.datasets(prepared, spec, config.searcher.seed), epochs=epochs,
                verbose=0 if lines else verbose, callbacks=[
                    _best_model(best_file, metric, mode),
                    keras.callbacks.EarlyStopping(monitor=metric, mode=mode, patience=patience),
                    *lines, *(samples or []), *([stop] if stop else []),
                ])
            break
        except Exception as e:  # noqa: BLE001 -- only a device out of memory is caught
            if not is_out_of_memory(e) or spec.batch_size < 2:
                raise
            failure = describe_error(e)
        keras.backend.clear_session(free_memory=True)  # the failed model's weights and slots
        best_file.unlink(missing_ok=True)
        print(f"out of memory at batch {spec.batch_size} ({failure}): starting again at batch {spec.batch_size // 2}")
        spec = spec.with_batch(spec.batch_size // 2)
        set_seed(config.searcher.seed)
    else:
        raise ConfigError(f"the retrain ran out of memory {config.resources.max_oom_retries + 1} times, the last at "
                          f"batch {spec.batch_size * 2}: raise resources.max_oom_retries or retrain on a larger device")
    if stop is not None and stop.stopped_at and stop.stopped_at < epochs:
        print(f"  stopped after epoch {stop.stopped_at} of {epochs}: another would end past the time budget")
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", range(1, len(table) + 1))
    return table[["epoch", *task.reported, "seconds"]], spec, retries


def _best_model(path: Path, metric: str, mode: str):
    """A Keras callback keeping the best epoch's model in ``path`` (Keras' ``ModelCheckpoint``
    with ``save_best_only``, written atomically: a crash or a full disk mid-save leaves the
    previous best whole)."""
    import keras

    class BestModel(keras.callbacks.Callback):
        best = math.nan

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = float((logs or {}).get(metric, math.nan))
            if not _improves(value, self.best, mode):
                return
            self.best = value
            with atomic.replacing_file(path, suffix=".keras") as tmp:
                self.model.save(tmp)

    return BestModel()


def _improves(value: float, best: float, mode: str) -> bool:
    """Whether an epoch's ``value`` beats the ``best`` so far (NaN: none yet) under ``mode``
    (``min`` or ``max``); a NaN value never does."""
    return not math.isnan(value) and (math.isnan(best) or (value < best if mode == "min" else value > best))


def _epoch_lines(epochs: int, metric: str, mode: str, shown: list[str]):
    """A Keras callback printing ``epoch  3/10  loss 2.2146  val_loss 2.1627 ...  2 s  best`` an epoch."""
    import keras

    class EpochLines(keras.callbacks.Callback):
        best = math.nan

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            value = float(logs.get(metric, math.nan))
            better = _improves(value, self.best, mode)
            if better:
                self.best = value
            figures = "  ".join(f"{name} {float(logs[name]):.4f}" for name in shown if name in logs)
            print(f"  epoch {epoch + 1:>2}/{epochs}  {figures}  {float(logs.get('seconds', 0)):.0f} s"
                  f"{'  best' if better else ''}", flush=True)

    return EpochLines()


def _write_history(table: pd.DataFrame, paths: dict[str, Path], title: str, config: SweepConfig) -> None:
    from lstm_sweep.results import atomic_write_csv
    from lstm_sweep.results.plots import plot_history

    atomic_write_csv(paths["history"], table)
    plot_history(table, paths["plot"], title=title, metric=config.metric, mode=config.mode)


def _card(winner: Winner, task, prepared, spec, settings, table: pd.DataFrame) -> dict[str, Any]:
    """``winner/card.json``: the configuration, the figures at the kept epoch, the data."""
    config, metric, mode = winner.config, winner.config.metric, winner.config.mode
    kept = int(table[metric].idxmin() if mode == "min" else table[metric].idxmax())
    return {
        "trial_id": winner.trial_id,
        "config": {**winner.params, "dropout": spec.dropout, "batch_size_used": spec.batch_size,
                   "cell": spec.cell, "vocab_size": spec.vocab_size},
        "task": config.task,
        "metric": metric,
        "mode": mode,
        f"sweep_{metric}": winner.sweep_value,
        f"best_{metric}": float(table[metric][kept]),
        # The task's other figures at the kept epoch: those of the exported model.
        **{f"best_{name}": float(table[name][kept]) for name in task.metrics if name != metric},
        f"final_{metric}": float(table[metric].iloc[-1]),
        "best_epoch": kept + 1,
        "epochs": len(table),
        "data": {**_plain_settings(settings), "fingerprint": prepared.fingerprint, **task.card(prepared, spec)},
        # A character model's val_loss in bits per character, at the kept epoch.
        **({"best_bits_per_char": float(table["val_loss"][kept]) / math.log(2)}
           if getattr(settings, "tokens", "word") == "char" else {}),
    }


def export(run_dir: str | Path) -> Path:
    """Export ``run_dir``'s retrained winner to ``winner/export/``; return that folder."""
    import keras

    from lstm_sweep.search.tasks import get_task

    out = Path(run_dir) / WINNER_DIR
    for name in ("best.keras", "card.json"):
        if not (out / name).is_file():
            raise RunFolderError(f"{out / name} is missing: run `lstm-sweep retrain {run_dir}` first")
    card = json.loads((out / "card.json").read_text())
    winner = read_winner(run_dir)
    vocab = _vocabulary(Path(run_dir), winner)
    if len(vocab) != card["config"]["vocab_size"]:  # pragma: no cover - a corrupted folder
        raise RunFolderError(f"{run_dir}: vocab.json has {len(vocab)} tokens, the model {card['config']['vocab_size']}")
    model = keras.models.load_model(out / "best.keras", safe_mode=True)
    get_task(winner.config.task).export(model, vocab, out / "export", card)
    return out / "export"


def _vocabulary(run_dir: Path, winner: Winner):
    from lstm_sweep.data_pipeline import Vocabulary
    from lstm_sweep.search.tasks import get_task

    task = get_task(winner.config.task)
    if "vocab_size" in winner.params:  # a searched vocabulary: the winner's own
        return task.prepare(task.settings(winner.config.data.__dict__, winner.params)).vocab
    if (run_dir / "vocab.json").is_file():
        return Vocabulary.from_json(run_dir / "vocab.json")
    return task.prepare(winner.config.data).vocab


def _plain_settings(settings) -> dict[str, Any]:
    fields = settings.plain() if hasattr(settings, "plain") else settings.__dict__
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
