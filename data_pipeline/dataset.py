"""From a corpus to cached int32 arrays (:func:`prepare`), and from arrays to batches (:func:`lm_dataset`).

``prepare`` is called once by the driver and once by every Ray trial, so its result is cached on
disk under a fingerprint of the corpus bytes and the settings: the first call tokenizes, the
others load a ``.npz`` in milliseconds. Two trials that build the same file at once cannot leave
a torn file: each writes a temporary file in the cache folder and renames it into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .corpus import corpus_files, decode_file
from .synthetic import CORPUS_VERSION, synthetic_lines
from .text import CorpusError, clean_line
from .vocab import END_ID, PAD_ID, START_ID, UNK_ID, Vocabulary

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger("lstm_sweep.data")

BUILTIN = "builtin"  # DataSettings.path naming the synthetic corpus (a folder named so: "./builtin")
# Bump when cleaning, splitting, encoding or the file layout change: old cache files then miss.
CACHE_FORMAT = 1
_BUILTIN_SEED = 0  # the built-in corpus is one fixed data set; DataSettings.seed only splits it


@dataclass(frozen=True)
class DataSettings:
    """What :func:`prepare` reads and how it cuts it; the ``data:`` section of a sweep config.

    Every field is checked when the object is made; a bad one raises ``ValueError`` naming the
    field, the value and the rule.

    Example:
        >>> DataSettings(path="data/lyrics", vocab_size=7000, max_tokens=15)  # doctest: +ELLIPSIS
        DataSettings(path='data/lyrics', vocab_size=7000, max_tokens=15, ...)
        >>> DataSettings(max_tokens=2)
        Traceback (most recent call last):
        ...
        ValueError: max_tokens=2 must be an int >= 3 (<start>, one word, <end>)
    """

    path: str = BUILTIN  # a folder of .txt files (recursive), one text file, or "builtin"
    vocab_size: int = 7000  # most token ids, <pad> <unk> <start> <end> included; >= 4
    max_tokens: int = 15  # longest sentence kept, counting <start> and <end>; >= 3
    val_fraction: float = 0.2  # share of the kept sentences held out for validation, in (0, 1)
    seed: int = 0  # seeds the train/val split; >= 0
    builtin_lines: int = 20000  # lines of the synthetic corpus when path == "builtin"; >= 1

    def __post_init__(self) -> None:
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
        if not isinstance(self.path, str) or not self.path.strip():
            raise ValueError(f"path={self.path!r} must be a folder, a file, or {BUILTIN!r}")
        check_int("vocab_size", self.vocab_size, 4, "the 4 special tokens included")
        check_int("max_tokens", self.max_tokens, 3, "<start>, one word, <end>")
        check_int("seed", self.seed, 0, "a seed for numpy")
        check_int("builtin_lines", self.builtin_lines, 1, "lines of the synthetic corpus")
        for name in ("vocab_size", "max_tokens", "seed", "builtin_lines"):  # numpy ints -> int
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "val_fraction", check_fraction("val_fraction", self.val_fraction))


@dataclass
class PreparedData:
    """The output of :func:`prepare`.

    ``train`` and ``val`` are int32 arrays of shape ``(sentences, max_tokens)``: each row is one
    sentence, ``<start>`` (2) ... ``<end>`` (3), right-padded with 0. ``stats`` holds the counts
    of each step (see :func:`prepare`).
    """

    train: np.ndarray
    val: np.ndarray
    vocab: Vocabulary
    fingerprint: str
    stats: dict[str, Any] = field(default_factory=dict)


def prepare(settings: DataSettings, cache_dir: str | Path | None = None) -> PreparedData:
    """Read, clean, filter, split, build the vocabulary and encode a corpus; cached on disk.

    The steps:

    1. read every line of ``settings.path`` (:func:`read_lines`) or generate
       ``settings.builtin_lines`` lines of the built-in corpus (:func:`synthetic_lines`, always
       with its seed 0: it is one fixed data set);
    2. clean each line (:func:`clean_line`); dropped lines are counted;
    3. keep sentences of at most ``max_tokens`` tokens, ``<start>`` and ``<end>`` included;
    4. split at random with ``numpy.random.default_rng(seed).permutation``: ``round(n *
       val_fraction)`` sentences go to validation, the rest to training (each keeps corpus order);
    5. build the vocabulary on the training sentences only, so validation meets honest ``<unk>``s;
    6. encode both splits into right-padded int32 arrays.

    The result is cached in ``<cache_dir>/<fingerprint[:16]>.npz``. The fingerprint is a SHA-256
    over the cache format version, the corpus (each file's relative path and bytes, in sorted
    order; for the built-in corpus its size and generator version) and the settings other than
    ``path`` (so a moved folder still hits). An unreadable cache file is rebuilt; a cache folder
    that cannot be written only costs the caching.

    Args:
        settings: what to read and how to cut it.
        cache_dir: folder of cache files; default ``$LSTM_SWEEP_CACHE``, else
            ``~/.cache/lstm-sweep``.

    Returns:
        The arrays, the vocabulary, the fingerprint and ``stats``: ``raw_lines``,
        ``cleaned_lines`` (kept by the cleaner), ``dropped_by_cleaning``, ``dropped_too_long``,
        ``kept``, ``kept_share`` (kept / cleaned_lines), ``train``, ``val``, ``train_tokens``
        (target tokens per training epoch), ``max_tokens``, ``vocab_size`` (the real size, at
        most the setting), ``unk_rate_val`` (share of validation words, ``<start>``/``<end>``
        excluded, that are ``<unk>``), ``source``, ``files``, ``from_cache`` and ``seconds``.

    Raises:
        CorpusError: the corpus is missing or empty, or the settings keep too few sentences.

    Example:
        >>> data = prepare(DataSettings(builtin_lines=2000, max_tokens=15))
        >>> data.train.dtype, data.train.shape[1]
        (dtype('int32'), 15)
        >>> data.vocab.decode(data.train[0]).split()[0]
        '<start>'
    """
    if not isinstance(settings, DataSettings):
        raise ValueError(f"settings={settings!r} must be a DataSettings")
    started = time.perf_counter()
    builtin = settings.path == BUILTIN
    files = None if builtin else corpus_files(settings.path)
    fingerprint = _fingerprint(settings, files)
    cache_file = cache_folder(cache_dir) / f"{fingerprint[:16]}.npz"

    prepared = _load_cache(cache_file, fingerprint, settings.max_tokens)
    if prepared is None:
        if builtin:
            raw = synthetic_lines(settings.builtin_lines, seed=_BUILTIN_SEED)
        else:
            raw = [line for _, data, file in files for line in decode_file(data, file).splitlines()]
        prepared = _build(raw, settings, fingerprint)
        prepared.stats["files"] = 0 if builtin else len(files)
        _save_cache(cache_file, prepared)
    prepared.stats["seconds"] = round(time.perf_counter() - started, 3)

    s = prepared.stats
    log.info("data %s: %d lines, %d cleaned, %d kept at <= %d tokens (%d longer dropped), "
             "%d train / %d val, vocabulary %d, <unk> %.2f%% of val words, %s in %.2fs",
             settings.path, s["raw_lines"], s["cleaned_lines"], s["kept"], s["max_tokens"],
             s["dropped_too_long"], s["train"], s["val"], s["vocab_size"],
             100 * s["unk_rate_val"], "loaded from cache" if s["from_cache"] else "built", s["seconds"])
    return prepared


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
    return ds.map(_shift_and_trim).apply(tf.data.experimental.assert_cardinality(count)).prefetch(tf.data.AUTOTUNE)


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


def _shift_and_trim(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    import tensorflow as tf

    lengths = tf.math.count_nonzero(batch, axis=1, dtype=tf.int32)
    steps = tf.maximum(tf.reduce_max(lengths) - 1, 1)  # >= 1 even for an all-padding batch
    return batch[:, :steps], batch[:, 1:steps + 1]


# ---------------------------------------------------------------- building

def _build(raw: list[str], settings: DataSettings, fingerprint: str) -> PreparedData:
    where = "the built-in corpus" if settings.path == BUILTIN else settings.path
    cleaned = [c for c in map(clean_line, raw) if c is not None]
    if not cleaned:
        raise CorpusError(f"no line of {where} has a letter left after cleaning: "
                          "pass --data DIR with .txt files of text, one sentence per line")
    rows = [c.split() for c in cleaned]
    kept = [(c, r) for c, r in zip(cleaned, rows) if len(r) <= settings.max_tokens]
    if not kept:
        shortest = min(map(len, rows))
        raise CorpusError(f"every line of {where} is longer than max_tokens={settings.max_tokens} "
                          f"tokens (the shortest has {shortest}): raise data.max_tokens")
    n_val = round(len(kept) * settings.val_fraction)
    if n_val < 1 or n_val >= len(kept):
        raise CorpusError(f"{where} keeps {len(kept)} sentences at max_tokens={settings.max_tokens}: "
                          f"val_fraction={settings.val_fraction} leaves {n_val} for validation and "
                          f"{len(kept) - n_val} for training; each needs >= 1: add text or change "
                          "data.val_fraction")
    order = np.random.default_rng(settings.seed).permutation(len(kept))
    val_index, train_index = np.sort(order[:n_val]), np.sort(order[n_val:])

    vocab = Vocabulary.build((kept[i][0] for i in train_index), settings.vocab_size)
    train = _encode([kept[i][1] for i in train_index], vocab, settings.max_tokens)
    val = _encode([kept[i][1] for i in val_index], vocab, settings.max_tokens)

    val_words = val[(val != PAD_ID) & (val != START_ID) & (val != END_ID)]
    stats = {
        "source": settings.path,
        "raw_lines": len(raw),
        "cleaned_lines": len(cleaned),
        "dropped_by_cleaning": len(raw) - len(cleaned),
        "dropped_too_long": len(cleaned) - len(kept),
        "kept": len(kept),
        "kept_share": round(len(kept) / len(cleaned), 4),
        "train": len(train),
        "val": len(val),
        "train_tokens": int(np.count_nonzero(train) - len(train)),  # targets: all but <start>
        "max_tokens": settings.max_tokens,
        "vocab_size": len(vocab),
        "unk_rate_val": round(float(np.mean(val_words == UNK_ID)) if val_words.size else 0.0, 6),
        "from_cache": False,
    }
    return PreparedData(train=train, val=val, vocab=vocab, fingerprint=fingerprint, stats=stats)


def _encode(rows: list[list[str]], vocab: Vocabulary, width: int) -> np.ndarray:
    """Token lists -> int32 ``(len(rows), width)``, right-padded with 0, in one scatter."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter((vocab.id_of(t) for row in rows for t in row), dtype=np.int32,
                       count=int(lengths.sum()))
    out = np.zeros((len(rows), width), dtype=np.int32)
    row_of = np.repeat(np.arange(len(rows)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row_of, np.arange(len(flat)) - starts] = flat
    return out


# ---------------------------------------------------------------- cache

def _fingerprint(settings: DataSettings, files: list[tuple[str, bytes, Path]] | None) -> str:
    h = hashlib.sha256(f"lstm-sweep data cache format {CACHE_FORMAT}\n".encode())
    if files is None:
        h.update(f"{BUILTIN} {settings.builtin_lines} corpus version {CORPUS_VERSION}\n".encode())
    else:
        for name, data, _ in files:  # length-prefixed, so no two corpora hash the same stream
            h.update(f"file {len(name.encode())} {name} {len(data)}\n".encode())
            h.update(data)
    recipe = {"vocab_size": settings.vocab_size, "max_tokens": settings.max_tokens,
              "val_fraction": settings.val_fraction, "seed": settings.seed}
    h.update(json.dumps(recipe, sort_keys=True).encode())
    return h.hexdigest()


def cache_folder(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("LSTM_SWEEP_CACHE") or Path.home() / ".cache" / "lstm-sweep"
    elif not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir={cache_dir!r} must be a folder path or None")
    return Path(cache_dir).expanduser()


def _load_cache(file: Path, fingerprint: str, max_tokens: int) -> PreparedData | None:
    def read(npz) -> PreparedData:
        train, val = npz["train"], npz["val"]
        for name, array in (("train", train), ("val", val)):
            if array.dtype != np.int32 or array.ndim != 2 or array.shape[1] != max_tokens:
                raise ValueError(f"{name} is {array.dtype} {array.shape}")
        return PreparedData(train=train, val=val, vocab=Vocabulary(npz["tokens"].tolist()), fingerprint=fingerprint,
                            stats=json.loads(str(npz["stats"])))

    return load_npz(file, fingerprint, read)


def load_npz(file: Path, fingerprint: str, read):
    """``read(npz)`` of the cache file ``file`` written for ``fingerprint``, with
    ``stats["from_cache"]`` set; None when there is no such file, or it is another corpus's or
    unreadable (a warning: it is rebuilt, never fatal)."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as npz:
            if str(npz["fingerprint"]) != fingerprint:
                raise ValueError("it belongs to another corpus or settings")
            prepared = read(npz)
    except Exception as e:  # noqa: BLE001 -- any unreadable cache is rebuilt, never fatal
        log.warning("cache file %s is unreadable (%s): rebuilding it", file, e)
        return None
    prepared.stats["from_cache"] = True
    return prepared


def _save_cache(file: Path, prepared: PreparedData) -> None:
    save_npz(file, train=prepared.train, val=prepared.val, tokens=np.array(prepared.vocab.tokens),
             fingerprint=np.array(prepared.fingerprint), stats=np.array(json.dumps(prepared.stats)))


def save_npz(file: Path, **arrays: np.ndarray) -> None:
    """Write a cache file atomically (temporary file, then rename); a folder that cannot be
    written only costs the caching, with a warning."""
    tmp = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, file)
        tmp = None
    except OSError as e:
        log.warning("cannot write the data cache %s (%s): going on without it", file, e)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float strictly between 0 and 1, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name}={value!r} must be a number strictly between 0 and 1")
    return float(value)


def check_int(name: str, value: Any, minimum: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum} ({meaning})")
