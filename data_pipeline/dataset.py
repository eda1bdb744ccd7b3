"""From a corpus to cached int32 arrays: :func:`prepare` and its settings, for the language model.

The flow, top to bottom::

    DataSettings(path, vocab_size, max_tokens, val_fraction, seed)
      -> corpus_files(path) | the built-in corpus     what the fingerprint hashes
      -> load_or_build (data_pipeline.cache)          a cache hit, or:
           _build: clean_line, length filter, seeded split, Vocabulary.build(train), _encode
      -> PreparedData(train, val, vocab, fingerprint, stats)

``prepare`` is called once by the driver and once by every Ray trial, so its result is cached on
disk (``data_pipeline.cache``): the first call tokenizes, the others load a ``.npz`` in
milliseconds. The batches for training come from ``data_pipeline.batching``
(:func:`lm_dataset`), re-exported here with the cache and check helpers this module used to
hold, so ``from lstm_sweep.data_pipeline.dataset import ...`` keeps working.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Re-exported: other packages import these from here (they lived in this module).
from .batching import _shift_and_trim, batch_count, lm_dataset, row_order  # noqa: F401
from .cache import cache_folder, fingerprint, load_npz, load_or_build, save_npz  # noqa: F401
from .checks import check_fraction, check_int, check_path
from .corpus import corpus_files, decode_file
from .synthetic import BUILTIN, BUILTIN_SEED, CORPUS_VERSION, synthetic_lines
from .text import CorpusError, clean_line
from .vocab import END_ID, PAD_ID, START_ID, UNK_ID, Vocabulary

log = logging.getLogger("lstm_sweep.data")

# Bump when cleaning, splitting, encoding or the file layout change: old cache files then miss.
CACHE_FORMAT = 1
TOKENS = ("word", "char")  # data.tokens: what a token is
CHAR_FIELDS = ("tokens", "clean", "seq_len", "stride")  # the settings only a character corpus reads


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
    # Character models (tokens: char, data_pipeline.chars): the text as one stream, cut into windows.
    tokens: str = "word"  # word: sentences of words | char: windows of characters
    clean: bool = True  # char: clean the text as words are (lowercase, marks, letters only) or keep it as read
    seq_len: int = 40  # char: characters a window feeds the model (it predicts each next one); >= 1
    stride: int = 3  # char: a training window starts every this many characters; >= 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_path("path", self.path, f"a folder, a file, or {BUILTIN!r}"))
        if self.tokens not in TOKENS:
            raise ValueError(f"tokens={self.tokens!r} must be one of {', '.join(TOKENS)}")
        if self.tokens == "char":
            check_int("vocab_size", self.vocab_size, 3, "characters, <pad> and <unk> included")
        else:
            check_int("vocab_size", self.vocab_size, 4, "the 4 special tokens included")
        check_int("max_tokens", self.max_tokens, 3, "<start>, one word, <end>")
        check_int("seed", self.seed, 0, "a seed for numpy")
        check_int("builtin_lines", self.builtin_lines, 1, "lines of the synthetic corpus")
        check_int("seq_len", self.seq_len, 1, "characters per window")
        check_int("stride", self.stride, 1, "characters from one window's start to the next")
        if not isinstance(self.clean, bool):
            raise ValueError(f"clean={self.clean!r} must be true or false")
        if self.tokens == "word" and not self.clean:
            raise ValueError("clean=False applies to tokens: char only (words are always cleaned)")
        for name in ("vocab_size", "max_tokens", "seed", "builtin_lines", "seq_len", "stride"):  # numpy ints -> int
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "val_fraction", check_fraction("val_fraction", self.val_fraction))

    def plain(self) -> dict[str, Any]:
        """The settings as plain data (a sweep.yaml's ``data:``): a word corpus' without the
        character keys, a character corpus' without ``max_tokens``."""
        out = dataclasses.asdict(self)
        for name in (CHAR_FIELDS if self.tokens == "word" else ("max_tokens",)):
            out.pop(name)
        return out


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
    if settings.tokens == "char":
        from .chars import prepare_chars

        return prepare_chars(settings, cache_dir)
    started = time.perf_counter()
    files = None if settings.path == BUILTIN else corpus_files(settings.path)
    key = _fingerprint(settings, files)

    def build() -> PreparedData:
        if files is None:
            raw = synthetic_lines(settings.builtin_lines, seed=BUILTIN_SEED)
        else:
            raw = [line for _, data, file in files for line in decode_file(data, file).splitlines()]
        return _build(raw, settings, key, files=0 if files is None else len(files))

    prepared = load_or_build(cache_dir, key, build=build, to_arrays=_to_arrays, started=started,
                             from_arrays=lambda npz, stats: _from_arrays(npz, stats, key, settings.max_tokens))

    s = prepared.stats
    log.info("data %s: %d lines, %d cleaned, %d kept at <= %d tokens (%d longer dropped), "
             "%d train / %d val, vocabulary %d, <unk> %.2f%% of val words, %s in %.2fs",
             settings.path, s["raw_lines"], s["cleaned_lines"], s["kept"], s["max_tokens"],
             s["dropped_too_long"], s["train"], s["val"], s["vocab_size"],
             100 * s["unk_rate_val"], "loaded from cache" if s["from_cache"] else "built", s["seconds"])
    return prepared


# ---------------------------------------------------------------- building

def _build(raw: list[str], settings: DataSettings, fingerprint: str, files: int) -> PreparedData:
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
        "files": files,
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
    corpus = f"{BUILTIN} {settings.builtin_lines} corpus version {CORPUS_VERSION}" if files is None else files
    # Not the path: a moved folder still hits.
    recipe = {"vocab_size": settings.vocab_size, "max_tokens": settings.max_tokens,
              "val_fraction": settings.val_fraction, "seed": settings.seed}
    return fingerprint(f"lstm-sweep data cache format {CACHE_FORMAT}", corpus, recipe)


def _to_arrays(prepared: PreparedData) -> dict[str, np.ndarray]:
    return {"train": prepared.train, "val": prepared.val, "tokens": np.array(prepared.vocab.tokens)}


def _from_arrays(npz: Any, stats: dict[str, Any], fingerprint: str, max_tokens: int) -> PreparedData:
    train, val = npz["train"], npz["val"]
    for name, array in (("train", train), ("val", val)):
        if array.dtype != np.int32 or array.ndim != 2 or array.shape[1] != max_tokens:
            raise ValueError(f"{name} is {array.dtype} {array.shape}")
    return PreparedData(train=train, val=val, vocab=Vocabulary(npz["tokens"].tolist()), fingerprint=fingerprint,
                        stats=stats)
