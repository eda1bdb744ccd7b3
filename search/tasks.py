"""The two tasks behind one interface, so the trainable, the retrain and the sweep never ask which.

    task             data                               model                        per-epoch metrics
    language_model   prepare -> PreparedData            build_language_model         val_loss, val_loss_padded
    classify         prepare_labelled -> LabelledData   build_classifier             val_loss, val_accuracy

A :class:`Task` knows its data settings, how to read them (cached), how to build and compile
its model from a trial's hyperparameters, its training and validation batches, how to fit,
which figures it reports every epoch, and what its run folder and export hold besides the
model. Everything else (planning memory, Ray Tune, checkpoints, OOM retries, tables) is shared.

Importing this module stays light (no TensorFlow): ``search.sweep`` reads the corpus through
it before a user error is printed; the model code is imported when a model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lstm_sweep.data_pipeline import DataSettings, LabelledSettings, Vocabulary, labels_to_json, prepare, prepare_labelled


class LanguageModelTask:
    """Next-word prediction on a folder of ``.txt`` files: the original job of lstm-sweep."""

    name = "language_model"
    settings_class = DataSettings
    # What a trial reports every epoch besides `epoch` (and what winner/history.csv holds).
    reported = ("loss", "val_loss", "val_loss_padded")
    metrics = {"val_loss": "min", "val_loss_padded": "min"}
    plotted = ("val_loss",)  # a run folder's <metric>.png plots; val_loss_padded is a column only

    def settings(self, data: Mapping[str, Any], params: Mapping[str, Any]) -> DataSettings:
        """The data settings of a trial: the sweep's, with a searched ``vocab_size`` applied."""
        fields = dict(data)
        if "vocab_size" in params:
            fields["vocab_size"] = int(params["vocab_size"])
        return self.settings_class(**fields)

    def prepare(self, settings):
        return prepare(settings)

    def num_classes(self, prepared) -> int:
        return 0

    def describe(self, prepared, settings) -> str:
        s = prepared.stats
        return (f"data: {s['raw_lines']} lines, {s['kept']} kept at <= {settings.max_tokens} tokens "
                f"({s['dropped_too_long']} longer dropped), {s['train']} train / {s['val']} val, "
                f"vocabulary {len(prepared.vocab)}")

    def build(self, prepared, params: Mapping[str, Any], cell: str, dropout: float):
        """The compiled model of a trial's (or the winner's) hyperparameters."""
        from lstm_sweep.model import build_language_model, compile_language_model

        model = build_language_model(vocab_size=len(prepared.vocab), embedding_size=int(params["embedding_size"]),
                                     hidden_size=int(params["hidden_size"]), num_layers=int(params["num_layers"]),
                                     dropout=dropout, cell=str(params.get("cell", cell)))
        return compile_language_model(model, float(params["learning_rate"]))

    def datasets(self, prepared, params: Mapping[str, Any], batch_size: int, seed: int):
        """``(train, val)``. Training batches hold sentences of one length: no padding is
        computed (2.1 times the real tokens per second at hidden 512 on the lyrics corpus,
        bench/throughput.py). Validation keeps batches padded to their longest sentence:
        ``val_loss_padded`` is defined on them."""
        from lstm_sweep.data_pipeline import lm_dataset

        return (lm_dataset(prepared.train, batch_size, shuffle=True, seed=seed, buckets=True),
                lm_dataset(prepared.val, batch_size, shuffle=False))

    def fit(self, model, train, val, **kwargs):
        from lstm_sweep.model import fit_language_model

        return fit_language_model(model, train, val, **kwargs)

    def write_data_files(self, prepared, folder: Path) -> None:
        """The token ids every trial trained with (``vocab.json``); export and generation read them."""
        prepared.vocab.to_json(Path(folder) / "vocab.json")

    def card(self, prepared) -> dict[str, Any]:
        """What the model card says of the data, beside the settings and the fingerprint."""
        return {"train_sentences": int(len(prepared.train)), "val_sentences": int(len(prepared.val))}

    def export(self, model, vocab: Vocabulary, folder: Path, card: dict[str, Any]) -> None:
        """Write the export folder of a retrained winner; ``card`` is ``winner/card.json``."""
        from lstm_sweep.model.export import export_model

        export_model(model, vocab, folder, card)

    baseline_name = "the unigram model"  # what learned nothing from the context scores

    def baseline(self, prepared) -> dict[str, float]:
        """Each metric of a model that ignores the context (``data_pipeline.baselines``)."""
        from lstm_sweep.data_pipeline.baselines import unigram_loss

        return {"val_loss": unigram_loss(prepared.train, prepared.val)}

    def worst(self) -> dict[str, float]:
        """Each metric at its worst: what a trial that never trained reports (the searcher
        reads it as "do not come back here")."""
        return {name: float("inf") if mode == "min" else float("-inf") for name, mode in self.metrics.items()}


class ClassifyTask(LanguageModelTask):
    """Sequence classification of labelled texts (a CSV or a folder per class)."""

    name = "classify"
    settings_class = LabelledSettings
    reported = ("loss", "accuracy", "val_loss", "val_accuracy")
    metrics = {"val_loss": "min", "val_accuracy": "max"}
    plotted = ("val_loss", "val_accuracy")

    baseline_name = "the class frequencies"

    def prepare(self, settings):
        return prepare_labelled(settings)

    def baseline(self, prepared) -> dict[str, float]:
        from lstm_sweep.data_pipeline.baselines import prior_baselines

        return prior_baselines(prepared.train_labels, prepared.val_labels)

    def num_classes(self, prepared) -> int:
        return len(prepared.labels)

    def describe(self, prepared, settings) -> str:
        s = prepared.stats
        counts = ", ".join(f"{label} {n}" for label, n in s["class_counts"].items())
        return (f"data: {s['examples']} examples ({s['dropped_empty']} empty dropped), {len(prepared.labels)} "
                f"classes ({counts}), {s['train']} train / {s['val']} val, vocabulary {len(prepared.vocab)}, "
                f"{s['tokens_median']} tokens median ({s['tokens_p90']} at the 90th percentile), majority "
                f"class {100 * s['majority_share_val']:.1f}% of val")

    def build(self, prepared, params: Mapping[str, Any], cell: str, dropout: float):
        from lstm_sweep.model.classifier import build_classifier, compile_classifier

        model = build_classifier(vocab_size=len(prepared.vocab), num_classes=len(prepared.labels),
                                 embedding_size=int(params["embedding_size"]), hidden_size=int(params["hidden_size"]),
                                 num_layers=int(params["num_layers"]), dropout=dropout,
                                 cell=str(params.get("cell", cell)), bidirectional=bool(params["bidirectional"]))
        return compile_classifier(model, float(params["learning_rate"]))

    def padded(self, prepared, params: Mapping[str, Any], split: str = "val"):
        """``split``'s ids padded and truncated as the trial's ``seq_len``, ``padding`` and
        ``truncating`` say."""
        from lstm_sweep.data_pipeline import pad_to

        return pad_to(getattr(prepared, f"{split}_ids"), int(params["seq_len"]), str(params["padding"]),
                      str(params["truncating"]))

    def datasets(self, prepared, params: Mapping[str, Any], batch_size: int, seed: int):
        from lstm_sweep.data_pipeline import classify_dataset

        return (classify_dataset(self.padded(prepared, params, "train"), prepared.train_labels, batch_size,
                                 shuffle=True, seed=seed),
                classify_dataset(self.padded(prepared, params, "val"), prepared.val_labels, batch_size,
                                 shuffle=False))

    def fit(self, model, train, val, **kwargs):
        from lstm_sweep.model.classifier import fit_classifier

        return fit_classifier(model, train, val, **kwargs)

    def write_data_files(self, prepared, folder: Path) -> None:
        """``vocab.json`` and ``labels.json`` (class id i is ``labels[i]``)."""
        super().write_data_files(prepared, folder)
        labels_to_json(prepared.labels, Path(folder) / "labels.json")

    def card(self, prepared) -> dict[str, Any]:
        return {"labels": list(prepared.labels), "train_examples": len(prepared.train_ids),
                "val_examples": len(prepared.val_ids), "majority_share_val": prepared.stats["majority_share_val"]}

    def export(self, model, vocab: Vocabulary, folder: Path, card: dict[str, Any]) -> None:
        from lstm_sweep.model.export import export_classifier

        config = card["config"]
        export_classifier(model, vocab, card["data"]["labels"], folder, card, seq_len=int(config["seq_len"]),
                          padding=str(config["padding"]), truncating=str(config["truncating"]))


TASKS = {task.name: task for task in (LanguageModelTask(), ClassifyTask())}


def get_task(name: str) -> LanguageModelTask:
    """The task called ``name`` (a sweep's ``task:``)."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} must be one of {sorted(TASKS)}")
    return TASKS[name]
