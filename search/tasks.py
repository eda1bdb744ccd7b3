"""The tasks: the only place that knows which tasks exist and what differs between them.

    task             data                               model                  per-epoch metrics
    language_model   prepare -> PreparedData            build_language_model   val_loss, val_loss_padded
                     (data.tokens: char -> windows of characters, the same model; per character)
    classify         prepare_labelled -> LabelledData   build_classifier       val_loss, val_accuracy

A :class:`Task` knows its ``data:`` section and its own hyperparameters, how to read its
corpus (cached), the fixed sizes its model spec takes from the sweep (the longest batch, the
classes), how to build, compile and fit its model from a :class:`model.spec.ModelSpec`, its
training and validation batches, which figures it reports every epoch and which is the
default metric, its baseline, what its run folder and export hold besides the model, and what
``lstm-sweep run`` shows of the winner. Everything else (planning memory, Ray Tune,
checkpoints, OOM retries, tables) is shared, and asks the task rather than its name.

Adding a task is one class here (and its data module and tests), registered in :data:`TASKS`.

Importing this module stays light (no TensorFlow): ``search.config`` reads the tasks' tables
from it, and ``search.sweep`` reads the corpus through it before a user error is printed; the
model code is imported when a model is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import numpy as np

from lstm_sweep.data_pipeline import (DataSettings, LabelledSettings, Vocabulary, labels_to_json, prepare,
                                      prepare_labelled)
from lstm_sweep.errors import ConfigError
from lstm_sweep.model.spec import ModelSpec
from lstm_sweep.search.config import Hyperparameter

if TYPE_CHECKING:
    from lstm_sweep.search.config import SweepConfig


@dataclass(frozen=True)
class Showcase:
    """What ``lstm-sweep run`` shows of a retrained winner, and the file it keeps it in."""

    file: str  # in RUN_DIR/winner/
    heading: str
    lines: list[str]
    more: str  # the command that gives more of the same


class Task(Protocol):
    """What the rest of lstm-sweep asks of a task."""

    name: str  # the sweep's `task:`
    settings_class: type  # its `data:` section
    metrics: Mapping[str, str]  # per-epoch metrics and their direction; the first is the default metric
    reported: tuple[str, ...]  # what a trial reports every epoch besides `epoch` (and winner/history.csv holds)
    plotted: tuple[str, ...]  # a run folder's <metric>.png plots
    hyperparameters: Mapping[str, Hyperparameter]  # only this task's, always in its space (at their defaults)
    baseline_name: str  # what learned nothing from the context

    def check_data_section(self, values: Mapping[str, Any], source: str) -> None: ...
    def check_config(self, config: SweepConfig, source: str) -> None: ...
    def settings(self, data: Mapping[str, Any], params: Mapping[str, Any]) -> Any: ...
    def prepare(self, settings) -> Any: ...
    def describe(self, prepared, settings) -> str: ...
    def num_classes(self, prepared) -> int: ...
    def fixed_sizes(self, config: SweepConfig, num_classes: int) -> tuple[int, int]: ...
    def spec(self, params: Mapping[str, Any], prepared, config: SweepConfig, **changes: Any) -> ModelSpec: ...
    def build(self, spec: ModelSpec): ...
    def datasets(self, prepared, spec: ModelSpec, seed: int): ...
    def val_subset(self, prepared, spec: ModelSpec, seed: int): ...  # (batches, baseline) of validation_subset
    def evaluate(self, model, dataset) -> dict[str, float]: ...  # the reported validation figures on `dataset`
    def fit(self, model, train, val, **kwargs): ...
    def baseline(self, prepared) -> dict[str, float]: ...
    def worst(self) -> dict[str, float]: ...
    def write_data_files(self, prepared, folder: Path) -> None: ...
    def card(self, prepared, spec: ModelSpec) -> dict[str, Any]: ...
    def export(self, model, vocab: Vocabulary, folder: Path, card: dict[str, Any]) -> None: ...
    def showcase(self, run_dir: Path, export_dir: Path, prompt: str) -> Showcase: ...


_WARNED: set[tuple[int, int]] = set()  # (stride, seq_len) pairs already warned of in this process

# Sentences (a classifier: examples) of the validation subset that in-epoch reports are scored on
# (budget.reports_per_epoch > 1). Measured (bench/val_subset.py, BENCHMARKS.md): ranks trials as the
# whole split does.
VAL_SUBSET = 1024


def validation_subset(n: int, size: int = VAL_SUBSET, seed: int = 0) -> np.ndarray:
    """Row numbers of the validation subset: ``size`` of ``n`` rows drawn without replacement by
    ``seed``, ascending (all ``n`` when ``n <= size``). The same for a seed, so every trial of a
    sweep (the sweep's ``searcher.seed``) is scored on the same sentences and ASHA compares like
    with like.

    Example:
        >>> validation_subset(10, 4, seed=0).tolist() == validation_subset(10, 4, seed=0).tolist()
        True
        >>> validation_subset(3, 4).tolist()
        [0, 1, 2]
    """
    if n < 1 or size < 1 or seed < 0:
        raise ValueError(f"validation_subset(n={n}, size={size}, seed={seed}): need n >= 1, size >= 1, seed >= 0")
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


class _TaskBase:
    """What both tasks do alike."""

    metrics: Mapping[str, str] = {}
    hyperparameters: Mapping[str, Hyperparameter] = {}

    def check_data_section(self, values: Mapping[str, Any], source: str) -> None:
        """Refuse ``data:`` keys that would mislead for this task (the schema checks the rest)."""

    def check_config(self, config: SweepConfig, source: str) -> None:
        """Refuse (or warn of) combinations of a whole, parsed sweep that only this task knows of."""

    def settings(self, data: Mapping[str, Any], params: Mapping[str, Any]):
        """The data settings of a trial: the sweep's, with a searched ``vocab_size`` applied."""
        fields = dict(data)
        if "vocab_size" in params:
            fields["vocab_size"] = int(params["vocab_size"])
        return self.settings_class(**fields)

    def spec(self, params: Mapping[str, Any], prepared, config: SweepConfig, **changes: Any) -> ModelSpec:
        """The spec of the model ``params`` builds on ``prepared`` (its real vocabulary and classes)."""
        seq_len, _ = self.fixed_sizes(config, self.num_classes(prepared))
        spec = ModelSpec.from_config(params, vocab_size=len(prepared.vocab), seq_len=seq_len,
                                     cell=config.model.cell, precision=config.model.precision,
                                     num_classes=self.num_classes(prepared))
        return spec.replace(**changes) if changes else spec

    def worst(self) -> dict[str, float]:
        """Each metric at its worst: what a trial that never trained reports (the searcher
        reads it as "do not come back here")."""
        return {name: float("inf") if mode == "min" else float("-inf") for name, mode in self.metrics.items()}

    def write_data_files(self, prepared, folder: Path) -> None:
        """The token ids every trial trained with (``vocab.json``); export and generation read them."""
        prepared.vocab.to_json(Path(folder) / "vocab.json")


class LanguageModelTask(_TaskBase):
    """Next-word prediction on a folder of ``.txt`` files: the original job of lstm-sweep."""

    name = "language_model"
    settings_class = DataSettings
    reported = ("loss", "val_loss", "val_loss_padded")
    metrics = {"val_loss": "min", "val_loss_padded": "min"}
    plotted = ("val_loss",)  # val_loss_padded is a column only
    # Character data only (data.tokens: char): the window length may be searched; the windows are
    # then cut per trial (settings), from the same cached blocks and vocabulary.
    hyperparameters = {
        "seq_len": Hyperparameter("characters per window, data.tokens: char only, >= 1", None, integer=True),
    }
    baseline_name = "the unigram model"

    def settings(self, data: Mapping[str, Any], params: Mapping[str, Any]):
        """The data settings of a trial: the sweep's, with a searched ``vocab_size`` (and, for
        characters, ``seq_len``: its own windows) applied."""
        fields = dict(data)
        for name in ("vocab_size", "seq_len"):
            if name in params and (name != "seq_len" or fields.get("tokens") == "char"):
                fields[name] = int(params[name])
        return self.settings_class(**fields)

    def check_data_section(self, values: Mapping[str, Any], source: str) -> None:
        """Refuse keys of the other kind of corpus: a word corpus' ``max_tokens`` for characters,
        the character keys (``clean``, ``seq_len``, ``stride``) for words."""
        from lstm_sweep.data_pipeline.dataset import CHAR_FIELDS

        tokens = values.get("tokens", "word")
        if tokens not in ("word", "char"):
            return  # DataSettings names the rule
        if tokens == "char":
            if "max_tokens" in values:
                raise ConfigError(f"{source}: data.max_tokens: applies to tokens: word; a character window is "
                                  "data.seq_len characters long")
            return
        for name in CHAR_FIELDS[1:]:
            if name in values:
                raise ConfigError(f"{source}: data.{name}: applies to tokens: char only (this data section reads "
                                  "words): add tokens: char, or drop it")

    def check_config(self, config: SweepConfig, source: str) -> None:
        """``space.seq_len`` needs character data; a stride past the window warns (allowed)."""
        chars = config.data.tokens == "char"
        if "seq_len" in config.space and not chars:
            raise ConfigError(f"{source}: space.seq_len: applies to task: classify only, or to character data "
                              "(data.tokens: char); a word model's sentences are as long as they are, up to "
                              "data.max_tokens")
        if not chars:
            return
        shortest = min(config.space["seq_len"].args) if "seq_len" in config.space else config.data.seq_len
        if config.data.stride > shortest and (config.data.stride, shortest) not in _WARNED:
            _WARNED.add((config.data.stride, shortest))  # once, not again for each re-parse (flags, sweep.yaml)
            logging.getLogger("lstm_sweep.search").warning(
                "warning: %s: data.stride %d > seq_len %d: the windows skip %d characters between them (allowed; "
                "a stride <= seq_len trains on every character)", source, config.data.stride, shortest,
                config.data.stride - shortest)

    def prepare(self, settings):
        return prepare(settings)

    def num_classes(self, prepared) -> int:
        return 0

    def fixed_sizes(self, config: SweepConfig, num_classes: int) -> tuple[int, int]:
        """(time steps of the longest batch, classes): sentences of ``max_tokens`` make ``max_tokens - 1``
        steps; character windows ``seq_len`` (a trial's own when the space searches it)."""
        if config.data.tokens == "char":
            return int(max(config.space["seq_len"].args)) if "seq_len" in config.space else config.data.seq_len, 0
        return config.data.max_tokens - 1, 0

    def describe(self, prepared, settings) -> str:
        s = prepared.stats
        if s.get("tokens") == "char":
            return (f"data: {s['characters']} characters in {s['blocks']} blocks of {s['block_chars']} "
                    f"({s['val_blocks']} for validation), {s['train']} train windows of {s['seq_len']} characters "
                    f"every {s['stride']} / {s['val']} val windows, {len(prepared.vocab)} characters in the "
                    f"vocabulary")
        return (f"data: {s['raw_lines']} lines, {s['kept']} kept at <= {settings.max_tokens} tokens "
                f"({s['dropped_too_long']} longer dropped), {s['train']} train / {s['val']} val, "
                f"vocabulary {len(prepared.vocab)}")

    def build(self, spec: ModelSpec):
        """The compiled model of ``spec``."""
        from lstm_sweep.model import build_language_model, compile_language_model

        model = build_language_model(vocab_size=spec.vocab_size, embedding_size=spec.embedding_size,
                                     hidden_size=spec.hidden_size, num_layers=spec.num_layers,
                                     dropout=spec.dropout, cell=spec.cell)
        return compile_language_model(model, spec.learning_rate)

    def datasets(self, prepared, spec: ModelSpec, seed: int):
        """``(train, val)``. Training batches hold sentences of one length: no padding is
        computed (2.1 times the real tokens per second at hidden 512 on the lyrics corpus,
        bench/throughput.py). Validation keeps batches padded to their longest sentence:
        ``val_loss_padded`` is defined on them."""
        from lstm_sweep.data_pipeline import lm_dataset

        buckets = prepared.stats.get("tokens") != "char"  # character windows are all of one length
        return (lm_dataset(prepared.train, spec.batch_size, shuffle=True, seed=seed, buckets=buckets),
                lm_dataset(prepared.val, spec.batch_size, shuffle=False))

    def val_subset(self, prepared, spec: ModelSpec, seed: int):
        """``(batches, baseline)`` of the validation subset (:func:`validation_subset`): its
        batches as the whole split's, and the unigram model's ``val_loss`` on the same sentences."""
        from lstm_sweep.data_pipeline import lm_dataset
        from lstm_sweep.data_pipeline.baselines import unigram_loss

        rows = prepared.val[validation_subset(len(prepared.val), seed=seed)]
        return lm_dataset(rows, spec.batch_size, shuffle=False), {"val_loss": unigram_loss(prepared.train, rows)}

    def evaluate(self, model, dataset) -> dict[str, float]:
        from lstm_sweep.model import evaluate_language_model

        return evaluate_language_model(model, dataset)

    def fit(self, model, train, val, **kwargs):
        from lstm_sweep.model import fit_language_model

        return fit_language_model(model, train, val, **kwargs)

    def card(self, prepared, spec: ModelSpec) -> dict[str, Any]:
        """What the model card says of the data, beside the settings and the fingerprint."""
        if prepared.stats.get("tokens") == "char":
            return {"train_windows": int(len(prepared.train)), "val_windows": int(len(prepared.val))}
        return {"train_sentences": int(len(prepared.train)), "val_sentences": int(len(prepared.val))}

    def export(self, model, vocab: Vocabulary, folder: Path, card: dict[str, Any]) -> None:
        """Write the export folder of a retrained winner; ``card`` is ``winner/card.json``."""
        from lstm_sweep.model.export import export_model

        export_model(model, vocab, folder, card)

    def baseline(self, prepared) -> dict[str, float]:
        """Each metric of a model that ignores the context (``data_pipeline.baselines``)."""
        from lstm_sweep.data_pipeline.baselines import unigram_loss

        return {"val_loss": unigram_loss(prepared.train, prepared.val)}

    def showcase(self, run_dir: Path, export_dir: Path, prompt: str) -> Showcase:
        """Three lines continuing ``prompt``, sampled from the export (seed 0)."""
        from lstm_sweep.model.export import load_export
        from lstm_sweep.model.generation import generate

        from lstm_sweep.data_pipeline import CharVocabulary

        model, vocab, _ = load_export(export_dir)
        if isinstance(vocab, CharVocabulary):  # character by character, each line to its first newline
            lines = generate(model, vocab, prompt, num=3, seed=0, max_tokens=200)
            return Showcase("samples.txt", f"samples (temperature 0.8, top-k 40, up to 200 characters or a "
                                           f"newline), continuing {prompt!r}:", lines,
                            f'generate more: lstm-sweep generate {export_dir} --prompt "{prompt}" --max-tokens 400 '
                            "--stop-at limit")
        lines = generate(model, vocab, prompt, num=3, seed=0)
        return Showcase("samples.txt", f"samples (temperature 0.8, top-k 40), continuing {prompt!r}:", lines,
                        f'generate more: lstm-sweep generate {export_dir} --prompt "{prompt}"')


class ClassifyTask(_TaskBase):
    """Sequence classification of labelled texts (a CSV or a folder per class)."""

    name = "classify"
    settings_class = LabelledSettings
    reported = ("loss", "accuracy", "val_loss", "val_accuracy")
    metrics = {"val_loss": "min", "val_accuracy": "max"}
    plotted = ("val_loss", "val_accuracy")
    hyperparameters = {
        "bidirectional": Hyperparameter("run each recurrent layer both ways, true or false", False,
                                        options=(False, True)),
        "seq_len": Hyperparameter("time steps every example is padded or truncated to, >= 1", 128, integer=True),
        "padding": Hyperparameter("where a short example's zeros go, pre or post", "pre", options=("pre", "post")),
        "truncating": Hyperparameter("which end of a long example is cut, pre or post", "pre",
                                     options=("pre", "post")),
    }
    baseline_name = "the class frequencies"

    def check_data_section(self, values: Mapping[str, Any], source: str) -> None:
        if "max_tokens" in values:
            raise ConfigError(f"{source}: data.max_tokens: a classifier has no length filter; "
                              "pad and truncate with space.seq_len instead")
        if "tokens" in values:
            raise ConfigError(f"{source}: data.tokens: a classifier reads words only; tokens: char is for "
                              "task: language_model")

    def prepare(self, settings):
        return prepare_labelled(settings)

    def num_classes(self, prepared) -> int:
        return len(prepared.labels)

    def fixed_sizes(self, config: SweepConfig, num_classes: int) -> tuple[int, int]:
        """(the longest ``seq_len`` of the space, classes): each trial pads to its own ``seq_len``."""
        return int(max(config.space["seq_len"].args)), max(2, num_classes)

    def describe(self, prepared, settings) -> str:
        s = prepared.stats
        counts = ", ".join(f"{label} {n}" for label, n in s["class_counts"].items())
        return (f"data: {s['examples']} examples ({s['dropped_empty']} empty dropped), {len(prepared.labels)} "
                f"classes ({counts}), {s['train']} train / {s['val']} val, vocabulary {len(prepared.vocab)}, "
                f"{s['tokens_median']} tokens median ({s['tokens_p90']} at the 90th percentile), majority "
                f"class {100 * s['majority_share_val']:.1f}% of val")

    def build(self, spec: ModelSpec):
        from lstm_sweep.model.classifier import build_classifier, compile_classifier

        model = build_classifier(vocab_size=spec.vocab_size, num_classes=spec.num_classes,
                                 embedding_size=spec.embedding_size, hidden_size=spec.hidden_size,
                                 num_layers=spec.num_layers, dropout=spec.dropout, cell=spec.cell,
                                 bidirectional=spec.bidirectional)
        return compile_classifier(model, spec.learning_rate)

    def padded(self, prepared, spec: ModelSpec, split: str = "val"):
        """``split``'s ids padded and truncated as the spec's ``seq_len``, ``padding`` and ``truncating`` say."""
        from lstm_sweep.data_pipeline import pad_to

        return pad_to(getattr(prepared, f"{split}_ids"), spec.seq_len, spec.padding, spec.truncating)

    def datasets(self, prepared, spec: ModelSpec, seed: int):
        from lstm_sweep.data_pipeline import classify_dataset

        return (classify_dataset(self.padded(prepared, spec, "train"), prepared.train_labels, spec.batch_size,
                                 shuffle=True, seed=seed),
                classify_dataset(self.padded(prepared, spec, "val"), prepared.val_labels, spec.batch_size,
                                 shuffle=False))

    def val_subset(self, prepared, spec: ModelSpec, seed: int):
        """``(batches, baseline)`` of the validation subset: its examples, and the class
        frequencies' loss and accuracy on them."""
        from lstm_sweep.data_pipeline import classify_dataset
        from lstm_sweep.data_pipeline.baselines import prior_baselines

        rows = validation_subset(len(prepared.val_labels), seed=seed)
        labels = prepared.val_labels[rows]
        return (classify_dataset(self.padded(prepared, spec, "val")[rows], labels, spec.batch_size, shuffle=False),
                prior_baselines(prepared.train_labels, labels))

    def evaluate(self, model, dataset) -> dict[str, float]:
        from lstm_sweep.model.classifier import evaluate_classifier

        return evaluate_classifier(model, dataset)

    def fit(self, model, train, val, **kwargs):
        from lstm_sweep.model.classifier import fit_classifier

        return fit_classifier(model, train, val, **kwargs)

    def write_data_files(self, prepared, folder: Path) -> None:
        """``vocab.json`` and ``labels.json`` (class id i is ``labels[i]``)."""
        super().write_data_files(prepared, folder)
        labels_to_json(prepared.labels, Path(folder) / "labels.json")

    def card(self, prepared, spec: ModelSpec) -> dict[str, Any]:
        return {"labels": list(prepared.labels), "train_examples": len(prepared.train_ids),
                "val_examples": len(prepared.val_ids), "majority_share_val": prepared.stats["majority_share_val"]}

    def export(self, model, vocab: Vocabulary, folder: Path, card: dict[str, Any]) -> None:
        from lstm_sweep.model.export import export_classifier

        config = card["config"]
        export_classifier(model, vocab, card["data"]["labels"], folder, card, seq_len=int(config["seq_len"]),
                          padding=str(config["padding"]), truncating=str(config["truncating"]))

    def baseline(self, prepared) -> dict[str, float]:
        from lstm_sweep.data_pipeline.baselines import prior_baselines

        return prior_baselines(prepared.train_labels, prepared.val_labels)

    def showcase(self, run_dir: Path, export_dir: Path, prompt: str, per_class: int = 2) -> Showcase:
        """The exported classifier on the run's validation split: its accuracy against the majority
        class, then ``per_class`` examples of each class (cleaned, as the model read them)."""
        import numpy as np

        from lstm_sweep.data_pipeline import pad_to
        from lstm_sweep.model.classifier import class_probabilities
        from lstm_sweep.model.export import load_classifier_export
        from lstm_sweep.results import atomic_write_json
        from lstm_sweep.search.retrain import read_winner

        model, vocab, labels, card = load_classifier_export(export_dir)
        winner = read_winner(run_dir)
        prepared = self.prepare(self.settings(winner.config.data.__dict__, winner.params))  # the cached split
        cut = card["preprocessing"]
        probabilities = class_probabilities(model, pad_to(prepared.val_ids, cut["seq_len"], cut["padding"],
                                                          cut["truncating"]))
        predicted = probabilities.argmax(axis=1)
        accuracy = float(np.mean(predicted == prepared.val_labels))
        # The whole validation split's confusion (rows: the true class), for report.html.
        matrix = np.zeros((len(labels), len(labels)), np.int64)
        np.add.at(matrix, (prepared.val_labels, predicted), 1)
        atomic_write_json(Path(run_dir) / "winner" / "confusion.json",
                          {"labels": list(labels), "matrix": matrix.tolist(), "split": "the validation split"})
        lines = [f"validation accuracy {accuracy:.4f} over {len(predicted)} examples (always answering the "
                 f"majority class: {prepared.stats['majority_share_val']:.4f})", "",
                 f"{'predicted':<14} {'prob':>5}  {'true':<14} text (cleaned)"]
        for label in range(len(labels)):
            for i in np.flatnonzero(prepared.val_labels == label)[:per_class]:
                text = vocab.decode(prepared.val_ids[i])
                lines.append(f"{labels[predicted[i]]:<14} {probabilities[i, predicted[i]]:5.3f}  "
                             f"{labels[label]:<14} {text if len(text) <= 70 else text[:67] + '...'}")
        return Showcase("predictions.txt", "", lines,
                        f'classify more: lstm-sweep predict {export_dir} "some text" [--file texts.txt]')


TASKS: dict[str, Task] = {task.name: task for task in (LanguageModelTask(), ClassifyTask())}


def get_task(name: str) -> Task:
    """The task called ``name`` (a sweep's ``task:``)."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} must be one of {sorted(TASKS)}")
    return TASKS[name]
