"""Labelled text for sequence classification: a CSV or a folder per class in, int32 ids out.

The flow, top to bottom (the classification twin of :func:`data_pipeline.prepare`)::

    CSV (text, label columns) | folder/<class>/*.txt | builtin     raw (text, label) pairs
      -> clean_document                  clean_line's rules per line; empty examples dropped
      -> label ids                       labels sorted (numbers as numbers): id = index
      -> seeded split, stratified        each class gives val_fraction of its examples
      -> Vocabulary.build(train)         as for the language model: <pad> 0, <unk> 1, ...
      -> ragged int32 ids, cached        prepare_labelled(LabelledSettings(...)) -> LabelledData
      -> pad_to(ids, seq_len, padding, truncating)      per trial: (examples, seq_len)
      -> classify_dataset(x, y, batch_size)             (ids, label id) batches

Here: the settings, reading the CSV or the class folders, the build and :func:`prepare_labelled`.
The cache is ``data_pipeline.cache`` (shared with :func:`prepare`); :func:`pad_to` and
:func:`classify_dataset` are ``data_pipeline.batching``, re-exported here. The ids are kept at
full length in the cache; every trial pads and truncates them to its own ``seq_len`` on its own
side (``pre`` or ``post``), both searchable. Only :func:`pad_to` and :func:`classify_dataset`
need Keras or TensorFlow, and import them when called.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstm_sweep import atomic

# Re-exported: other packages import these from here (they lived in this module).
from .batching import SIDES, classify_dataset, pad_to  # noqa: F401
from .cache import fingerprint, load_or_build
from .checks import check_fraction, check_int, check_path
from .corpus import corpus_files, decode_file
from .synthetic import BUILTIN, BUILTIN_SEED, LABELLED_VERSION, THEMES, synthetic_labelled
from .text import CorpusError, clean_document
from .vocab import UNK_ID, Vocabulary

log = logging.getLogger("lstm_sweep.data")

# Bump when reading, cleaning, splitting or the file layout change: old cache files then miss.
LABELLED_CACHE_FORMAT = 1


@dataclass(frozen=True)
class LabelledSettings:
    """What :func:`prepare_labelled` reads and how it cuts it; the ``data:`` section of a
    ``task: classify`` sweep. Every field is checked when the object is made.

    Example:
        >>> LabelledSettings(path="artists.csv", text_column="line", label_column="artist")  # doctest: +ELLIPSIS
        LabelledSettings(path='artists.csv', text_column='line', label_column='artist', ...)
    """

    path: str = BUILTIN  # a CSV file, a folder with one subfolder of .txt files per class, or "builtin"
    text_column: str = "text"  # the CSV column holding the text
    label_column: str = "label"  # the CSV column holding the class
    classes: tuple[str, ...] = ()  # keep only these classes (labels, or class folder names); empty: all
    vocab_size: int = 10000  # most token ids, the 4 special tokens included; >= 4
    val_fraction: float = 0.2  # share of each class held out for validation, in (0, 1)
    seed: int = 0  # seeds the split; >= 0
    builtin_examples: int = 4000  # examples of the synthetic task when path == "builtin"; >= 1
    builtin_classes: int = 2  # its classes (themes of the synthetic lyrics), 2 to 6

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_path("path", self.path, f"a CSV file, a folder, or {BUILTIN!r}"))
        for name in ("text_column", "label_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}={value!r} must be a non-empty column name")
        if isinstance(self.classes, str) or not all(isinstance(c, (str, int)) for c in self.classes):
            raise ValueError(f"classes={self.classes!r} must be a list of class names")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        check_int("vocab_size", self.vocab_size, 4, "the 4 special tokens included")
        check_int("seed", self.seed, 0, "a seed for numpy")
        check_int("builtin_examples", self.builtin_examples, 1, "examples of the synthetic task")
        check_int("builtin_classes", self.builtin_classes, 2, "themes of the synthetic task")
        if self.builtin_classes > len(THEMES):
            raise ValueError(f"builtin_classes={self.builtin_classes} must be at most {len(THEMES)} (the themes)")
        for name in ("vocab_size", "seed", "builtin_examples", "builtin_classes"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "val_fraction", check_fraction("val_fraction", self.val_fraction))


@dataclass
class LabelledData:
    """The output of :func:`prepare_labelled`.

    ``train_ids`` and ``val_ids`` hold one int32 array of token ids per example, at full
    length (no ``<start>``/``<end>``, no padding); ``train_labels`` and ``val_labels`` the
    class ids, indexes into ``labels`` (the class names, sorted). ``stats`` holds the counts
    of each step (see :func:`prepare_labelled`).
    """

    train_ids: list[np.ndarray]
    train_labels: np.ndarray
    val_ids: list[np.ndarray]
    val_labels: np.ndarray
    vocab: Vocabulary
    labels: list[str]
    fingerprint: str
    stats: dict[str, Any] = field(default_factory=dict)


def prepare_labelled(settings: LabelledSettings, cache_dir: str | Path | None = None) -> LabelledData:
    """Read, clean, split, build the vocabulary and encode a labelled corpus; cached on disk.

    The steps:

    1. read ``(text, label)`` pairs: from a CSV (``settings.path`` is a file; its
       ``text_column`` and ``label_column``), from a folder with one subfolder per class
       (``train/pos``, ``train/neg`` as in the IMDB archive: every ``.txt`` file under a class
       folder is one example, its label the folder's name), or the built-in verses
       (:func:`synthetic_labelled`); ``classes``, when given, keeps only those;
    2. clean each text (:func:`clean_document`); examples with nothing left are dropped and
       counted;
    3. map labels to ids: the class names sorted (as numbers when all are numbers);
    4. split each class at random with ``numpy.random.default_rng(seed)``: ``round(n_class *
       val_fraction)`` of its examples go to validation (at least one stays for training), so
       both splits keep the class shares; each split keeps corpus order;
    5. build the vocabulary on the training texts only;
    6. encode both splits to int32 ids, at full length.

    The result is cached in ``<cache_dir>/<fingerprint[:16]>.npz``, as :func:`prepare` does:
    the fingerprint covers the format version, the source bytes (each file's path relative to
    ``path`` and its bytes), and the settings other than ``path``.

    Returns:
        The ids, labels, vocabulary, class names, fingerprint and ``stats``: ``source``,
        ``examples`` (read), ``dropped_empty``, ``kept``, ``class_counts`` (kept, per class),
        ``train``, ``val``, ``majority_share_val`` (the accuracy of always answering the
        largest class, the baseline a classifier must beat), ``tokens_median``,
        ``tokens_p90``, ``tokens_max`` (lengths of the training examples: what ``seq_len``
        cuts), ``vocab_size``, ``unk_rate_val``, ``files``, ``from_cache``, ``seconds``.

    Raises:
        CorpusError: a missing path, a CSV without the named columns or with an empty label,
            an empty class folder, fewer than two classes, too few examples to split.

    Example:
        >>> data = prepare_labelled(LabelledSettings(builtin_examples=500))
        >>> data.labels, data.train_labels.dtype
        (['love', 'night'], dtype('int32'))
    """
    if not isinstance(settings, LabelledSettings):
        raise ValueError(f"settings={settings!r} must be a LabelledSettings")
    started = time.perf_counter()
    files = None if settings.path == BUILTIN else _source_files(settings)
    key = _fingerprint(settings, files)

    def build() -> LabelledData:
        if files is None:
            pairs = synthetic_labelled(settings.builtin_examples, settings.builtin_classes, seed=BUILTIN_SEED)
        elif Path(settings.path).expanduser().is_dir():
            pairs = [(decode_file(data, file), name.split("/", 1)[0]) for name, data, file in files]
        else:
            (_, data, file), = files
            pairs = _read_csv(decode_file(data, file), file, settings)
        return _build(_keep_classes(pairs, settings), settings, key, files=0 if files is None else len(files))

    prepared = load_or_build(cache_dir, key, build=build, to_arrays=_to_arrays, started=started,
                             from_arrays=lambda npz, stats: _from_arrays(npz, stats, key))

    s = prepared.stats
    log.info("data %s: %d examples (%d empty dropped), %d classes, %d train / %d val, vocabulary %d, "
             "median %d tokens, majority class %.1f%% of val, %s in %.2fs", settings.path, s["examples"],
             s["dropped_empty"], len(prepared.labels), s["train"], s["val"], s["vocab_size"], s["tokens_median"],
             100 * s["majority_share_val"], "loaded from cache" if s["from_cache"] else "built", s["seconds"])
    return prepared


def labels_to_json(labels: list[str], path: str | Path) -> None:
    """Write the class names (id i is ``labels[i]``) as ``labels.json``, atomically."""
    atomic.write_text(path, json.dumps({"format": "lstm-sweep-labels", "version": 1, "labels": list(labels)},
                                       ensure_ascii=False, indent=0))


def labels_from_json(path: str | Path) -> list[str]:
    """The class names written by :func:`labels_to_json`; CorpusError if the file is missing or foreign."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        labels = raw["labels"]
        if raw.get("format") != "lstm-sweep-labels" or not all(isinstance(x, str) for x in labels):
            raise ValueError("not a labels file")
        return list(labels)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorpusError(f"cannot load the labels {path}: {e}: "
                          "pass the labels.json written beside the model") from None


# ---------------------------------------------------------------- reading

def _source_files(settings: LabelledSettings) -> list[tuple[str, bytes, Path]]:
    """``(name, bytes, path)`` of the CSV, or of every class folder's files (name: ``class/file``)."""
    root = Path(settings.path).expanduser()
    if not root.exists():
        raise CorpusError(f"data path {root} does not exist: pass --data with a CSV file or a folder "
                          "holding one subfolder of .txt files per class")
    if root.is_file():
        return corpus_files(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if settings.classes:
        missing = [c for c in settings.classes if not (root / c).is_dir()]
        if missing:
            raise CorpusError(f"data folder {root} has no class folder {missing[0]!r} named in data.classes "
                              f"(it has: {', '.join(p.name for p in folders) or 'none'})")
        folders = [root / c for c in sorted(settings.classes)]
    if not folders:
        raise CorpusError(f"data folder {root} holds no class subfolders: put each class's .txt files "
                          "(one example each) in a subfolder named after the class, e.g. train/pos and train/neg")
    files = []
    for folder in folders:
        if not any(p.is_file() and not p.name.startswith(".") for p in folder.rglob("*.txt")):
            raise CorpusError(f"class folder {folder} is empty (no .txt file): put one example per .txt file "
                              "in it, or remove it (or list the classes to keep in data.classes)")
        files += [(f"{folder.name}/{name}", data, file) for name, data, file in corpus_files(folder)]
    return files


def _read_csv(text: str, file: Path, settings: LabelledSettings) -> list[tuple[str, str]]:
    """The ``(text, label)`` of every row of a CSV, by the settings' column names."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    for key in ("text_column", "label_column"):
        name = getattr(settings, key)
        if name not in columns:
            found = ", ".join(map(repr, columns)) or "none"
            raise CorpusError(f"{file} has no column {name!r} (its columns: {found}): "
                              f"set data.{key} to the column that holds the {key.split('_')[0]}")
    pairs = []
    try:
        for row in reader:
            label = (row[settings.label_column] or "").strip()
            if not label:
                raise CorpusError(f"{file} line {reader.line_num}: the label column {settings.label_column!r} "
                                  "is empty: give every row a label, or remove the row")
            pairs.append((row[settings.text_column] or "", label))
    except csv.Error as e:
        raise CorpusError(f"{file} line {reader.line_num}: not valid CSV ({e}): fix the quoting") from None
    return pairs


def _keep_classes(pairs: list[tuple[str, str]], settings: LabelledSettings) -> list[tuple[str, str]]:
    if not settings.classes:
        return pairs
    present = {label for _, label in pairs}
    absent = [c for c in settings.classes if c not in present]
    if absent:
        raise CorpusError(f"{settings.path}: no example has the class {absent[0]!r} named in data.classes "
                          f"(the classes: {', '.join(sorted(present)[:10])})")
    keep = set(settings.classes)
    return [(text, label) for text, label in pairs if label in keep]


# ---------------------------------------------------------------- building

def _build(pairs: list[tuple[str, str]], settings: LabelledSettings, fingerprint: str,
           files: int) -> LabelledData:
    where = "the built-in task" if settings.path == BUILTIN else settings.path
    cleaned = [(words, label) for words, label in ((clean_document(t), lab) for t, lab in pairs) if words]
    labels = sorted({label for _, label in cleaned}, key=_label_order)
    if len(labels) < 2:
        which = f"one class ({labels[0]!r})" if labels else "no example with text left after cleaning"
        what = (f"the label column {settings.label_column!r} of {where}" if Path(settings.path).is_file()
                else where)
        raise CorpusError(f"{what} has {which}: a classifier needs examples of at least two classes")
    ids_of = {label: i for i, label in enumerate(labels)}
    y = np.array([ids_of[label] for _, label in cleaned], np.int32)
    val_index, train_index = _stratified_split(y, settings.val_fraction, settings.seed)
    if not len(val_index):
        raise CorpusError(f"{where} keeps {len(cleaned)} examples: val_fraction={settings.val_fraction} leaves "
                          "none for validation: add examples or raise data.val_fraction")

    vocab = Vocabulary.build((" ".join(cleaned[i][0]) for i in train_index), settings.vocab_size)
    train_ids = [np.array([vocab.id_of(w) for w in cleaned[i][0]], np.int32) for i in train_index]
    val_ids = [np.array([vocab.id_of(w) for w in cleaned[i][0]], np.int32) for i in val_index]
    lengths = np.array([len(x) for x in train_ids])
    val_words = np.concatenate(val_ids)
    counts = np.bincount(y, minlength=len(labels))
    stats = {
        "source": settings.path,
        "examples": len(pairs),
        "dropped_empty": len(pairs) - len(cleaned),
        "kept": len(cleaned),
        "class_counts": {label: int(n) for label, n in zip(labels, counts)},
        "train": len(train_ids),
        "val": len(val_ids),
        "majority_share_val": round(float(np.bincount(y[val_index]).max() / len(val_index)), 6),
        "tokens_median": int(np.median(lengths)),
        "tokens_p90": int(np.quantile(lengths, 0.9)),
        "tokens_max": int(lengths.max()),
        "vocab_size": len(vocab),
        "unk_rate_val": round(float(np.mean(val_words == UNK_ID)), 6),
        "from_cache": False,
        "files": files,
    }
    return LabelledData(train_ids=train_ids, train_labels=y[train_index], val_ids=val_ids, val_labels=y[val_index],
                        vocab=vocab, labels=labels, fingerprint=fingerprint, stats=stats)


def _label_order(label: str) -> tuple[int, float, str]:
    """Numbers first, by value ("2" before "10"), then other names alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(val rows, train rows), each sorted: per class, ``round(n * val_fraction)`` rows at random
    go to validation, at most ``n - 1`` so every class is trained on."""
    rng = np.random.default_rng(seed)
    val = []
    for label in range(int(y.max()) + 1):
        rows = np.flatnonzero(y == label)
        n_val = min(round(len(rows) * val_fraction), len(rows) - 1)
        val.append(rng.permutation(rows)[:n_val])
    val_index = np.sort(np.concatenate(val)).astype(np.int64)
    return val_index, np.setdiff1d(np.arange(len(y)), val_index)


# ---------------------------------------------------------------- cache

def _fingerprint(settings: LabelledSettings, files: list[tuple[str, bytes, Path]] | None) -> str:
    corpus = (f"{BUILTIN} {settings.builtin_examples} {settings.builtin_classes} version {LABELLED_VERSION}"
              if files is None else files)
    # Not the path: a moved file or folder still hits.
    recipe = {"text_column": settings.text_column, "label_column": settings.label_column,
              "classes": sorted(settings.classes), "vocab_size": settings.vocab_size,
              "val_fraction": settings.val_fraction, "seed": settings.seed}
    return fingerprint(f"lstm-sweep labelled cache format {LABELLED_CACHE_FORMAT}", corpus, recipe)


def _to_arrays(prepared: LabelledData) -> dict[str, np.ndarray]:
    """The ragged ids as one flat array and its offsets per split (npz holds no ragged arrays)."""
    arrays = {}
    for name, ids in (("train", prepared.train_ids), ("val", prepared.val_ids)):
        arrays[f"{name}_tokens"] = np.concatenate(ids).astype(np.int32)
        arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
    return {**arrays, "train_labels": prepared.train_labels, "val_labels": prepared.val_labels,
            "tokens": np.array(prepared.vocab.tokens), "labels": np.array(prepared.labels)}


def _from_arrays(npz: Any, stats: dict[str, Any], fingerprint: str) -> LabelledData:
    splits = {name: np.split(npz[f"{name}_tokens"], npz[f"{name}_offsets"][1:-1]) for name in ("train", "val")}
    return LabelledData(train_ids=splits["train"], train_labels=npz["train_labels"],
                        val_ids=splits["val"], val_labels=npz["val_labels"],
                        vocab=Vocabulary(npz["tokens"].tolist()), labels=npz["labels"].tolist(),
                        fingerprint=fingerprint, stats=stats)
