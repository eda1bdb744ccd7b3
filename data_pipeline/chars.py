"""Character corpora (``data.tokens: char``): a text as one stream of characters, cut into windows.

The notebook this serves trains on a chat log as one stream of characters, windows of 40 taken
every 3, the next character predicted. The flow, top to bottom::

    corpus_files(path) | synthetic_lines()    each file's lines joined by "\\n", the files by "\\n"
      -> clean_text (data.clean: true)        the word cleaner's rules, kept as text; else as read
      -> blocks of block_chars characters     about SPLIT_BLOCKS of them, at least MIN_BLOCK_CHARS
      -> seeded block split                   round(blocks * val_fraction) blocks for validation
      -> CharVocabulary.build(train blocks)   <pad> 0, <unk> 1, characters by frequency
      -> windows inside each block            seq_len + 1 characters: seq_len inputs, seq_len targets
           training: one every `stride`; validation: one every `seq_len` (each character once)
      -> PreparedData(train, val, vocab, ...)  int32 (windows, seq_len + 1), cached like the words

Why blocks: overlapping windows split one by one would put most of a validation window's
characters in training windows too (a leak); a window never crosses a block, and the blocks
are the unit of the split. The blocks do not depend on ``seq_len`` or ``stride``, so a sweep
that searches ``seq_len`` validates every trial on the same text, with one vocabulary.

A window row is a sentence without padding: :func:`data_pipeline.lm_dataset` turns it into
``seq_len`` (source, target) steps, and the language model's masked loss is the mean over its
characters: ``val_loss`` is nats per character (bits per character: ``val_loss / ln 2``).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cache import fingerprint, load_or_build
from .corpus import corpus_files, decode_file
from .synthetic import BUILTIN, BUILTIN_SEED, CORPUS_VERSION, synthetic_lines
from .text import CorpusError, clean_text
from .vocab import UNK_ID, CharVocabulary

log = logging.getLogger("lstm_sweep.data")

# Bump when reading, cleaning, splitting, windowing or the file layout change: old cache files then miss.
CHAR_CACHE_FORMAT = 1
SPLIT_BLOCKS = 100  # the stream is cut into about this many blocks, the unit of the train/val split
MIN_BLOCK_CHARS = 256  # ... of at least this many characters (a window of up to 256 fits any block)


def corpus_stream(settings, files: list[tuple[str, bytes, Path]] | None) -> tuple[str, int]:
    """The corpus as one string and its length as read (before cleaning).

    Each file's text is read as a stream (its lines joined by ``"\\n"``, whatever line endings
    it had), the files in sorted order joined by ``"\\n"``; the built-in corpus is its
    ``builtin_lines`` synthetic lines so joined. With ``settings.clean`` the stream is cleaned
    by :func:`data_pipeline.text.clean_text`.
    """
    if files is None:
        lines = synthetic_lines(settings.builtin_lines, seed=BUILTIN_SEED)
        raw = "\n".join(lines)
    else:
        raw = "\n".join("\n".join(decode_file(data, file).splitlines()) for _, data, file in files)
    return (clean_text(raw) if settings.clean else raw), len(raw)


def split_blocks(length: int, val_fraction: float, seed: int) -> tuple[int, np.ndarray]:
    """``(block_chars, is_val)``: the block length and, for each block of a stream of ``length``
    characters, whether it goes to validation (``round(blocks * val_fraction)`` of them, seeded).

    Example:
        >>> block, is_val = split_blocks(2560, 0.2, seed=0)
        >>> block, len(is_val), int(is_val.sum())
        (256, 10, 2)
    """
    block = max(MIN_BLOCK_CHARS, math.ceil(length / SPLIT_BLOCKS))
    blocks = max(1, math.ceil(length / block))
    n_val = round(blocks * val_fraction)
    is_val = np.zeros(blocks, bool)
    is_val[np.random.default_rng(seed).permutation(blocks)[:n_val]] = True
    return block, is_val


def window_starts(length: int, block: int, blocks: np.ndarray, width: int, stride: int) -> np.ndarray:
    """Start positions of the windows of ``width`` characters, one every ``stride``, inside each
    of ``blocks`` (block numbers) of a stream of ``length`` characters cut into ``block``-long
    blocks: no window crosses a block's end.

    Example:
        >>> window_starts(20, 10, np.array([0, 1]), width=4, stride=3).tolist()
        [0, 3, 6, 10, 13, 16]
    """
    starts = []
    for b in blocks:
        begin, end = int(b) * block, min(length, (int(b) + 1) * block)
        starts.append(np.arange(begin, end - width + 1, stride, dtype=np.int64))
    return np.concatenate(starts) if starts else np.zeros(0, np.int64)


def prepare_chars(settings, cache_dir: str | Path | None = None):
    """Read a corpus as characters, split it by blocks, cut windows; cached on disk.

    ``settings`` is a :class:`data_pipeline.DataSettings` with ``tokens="char"``; its
    ``seq_len``, ``stride``, ``clean``, ``vocab_size`` (characters, ``<pad>`` and ``<unk>``
    included), ``val_fraction`` and ``seed`` apply (``max_tokens`` does not). The cache works
    as :func:`data_pipeline.prepare`'s, keyed by these settings and the corpus' bytes.

    Returns:
        A :class:`data_pipeline.PreparedData`: ``train`` and ``val`` are int32 arrays
        ``(windows, seq_len + 1)`` (no padding), ``vocab`` a :class:`CharVocabulary`, and
        ``stats``: ``tokens`` ("char"), ``raw_chars``, ``characters`` (after cleaning),
        ``blocks``, ``block_chars``, ``val_blocks``, ``train_chars``, ``val_chars``, ``train``
        and ``val`` (windows), ``train_tokens`` (targets per epoch), ``seq_len``, ``stride``,
        ``vocab_size``, ``unk_rate_val``, ``source``, ``files``, ``from_cache``, ``seconds``.

    Raises:
        CorpusError: the corpus is missing or empty, or too short for one window in each split.

    Example:
        >>> data = prepare_chars(DataSettings(tokens="char", builtin_lines=500))  # doctest: +SKIP
        >>> data.train.shape[1]  # doctest: +SKIP
        41
    """
    started = time.perf_counter()
    files = None if settings.path == BUILTIN else corpus_files(settings.path)
    corpus = f"{BUILTIN} {settings.builtin_lines} corpus version {CORPUS_VERSION}" if files is None else files
    recipe = {"tokens": "char", "vocab_size": settings.vocab_size, "seq_len": settings.seq_len,
              "stride": settings.stride, "clean": settings.clean, "val_fraction": settings.val_fraction,
              "seed": settings.seed}
    key = fingerprint(f"lstm-sweep char data cache format {CHAR_CACHE_FORMAT}", corpus, recipe)
    width = settings.seq_len + 1

    def build():
        stream, raw_chars = corpus_stream(settings, files)
        return _build(stream, raw_chars, settings, key, files=0 if files is None else len(files))

    prepared = load_or_build(cache_dir, key, build=build, to_arrays=_to_arrays, started=started,
                             from_arrays=lambda npz, stats: _from_arrays(npz, stats, key, width))
    s = prepared.stats
    log.info("data %s: %d characters in %d blocks (%d for validation), %d train / %d val windows of %d "
             "characters every %d, %d characters in the vocabulary, <unk> %.2f%% of val, %s in %.2fs",
             settings.path, s["characters"], s["blocks"], s["val_blocks"], s["train"], s["val"], settings.seq_len,
             settings.stride, s["vocab_size"], 100 * s["unk_rate_val"],
             "loaded from cache" if s["from_cache"] else "built", s["seconds"])
    return prepared


def _build(stream: str, raw_chars: int, settings, key: str, files: int):
    from .dataset import PreparedData

    where = "the built-in corpus" if settings.path == BUILTIN else settings.path
    if not stream:
        raise CorpusError(f"{where} has no characters left{' after cleaning' if settings.clean else ''}: pass "
                          "--data DIR with .txt files of text" + (", or set data.clean: false" if settings.clean else ""))
    width, n = settings.seq_len + 1, len(stream)
    block, is_val = split_blocks(n, settings.val_fraction, settings.seed)
    train_blocks, val_blocks = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    train_starts = window_starts(n, block, train_blocks, width, settings.stride)
    val_starts = window_starts(n, block, val_blocks, width, settings.seq_len)  # each character once
    if not len(train_starts) or not len(val_starts):
        raise CorpusError(f"{where} has {n} characters: in blocks of {block} ({len(val_blocks)} of {len(is_val)} "
                          f"for validation, data.val_fraction {settings.val_fraction}) they make {len(train_starts)} "
                          f"training and {len(val_starts)} validation windows of data.seq_len + 1 = {width} "
                          "characters; each split needs >= 1: add text, or lower data.seq_len")

    train_text = "".join(stream[b * block:(b + 1) * block] for b in train_blocks)
    vocab = CharVocabulary.build(train_text, settings.vocab_size, clean=settings.clean)
    ids = np.asarray(vocab.encode(stream), dtype=np.int32)
    offsets = np.arange(width)
    train, val = ids[train_starts[:, None] + offsets], ids[val_starts[:, None] + offsets]
    val_targets = val[:, 1:]
    stats: dict[str, Any] = {
        "tokens": "char",
        "source": settings.path,
        "raw_chars": raw_chars,
        "characters": n,
        "blocks": len(is_val),
        "block_chars": block,
        "val_blocks": len(val_blocks),
        "train_chars": len(train_text),
        "val_chars": int(sum(min(n, (b + 1) * block) - b * block for b in val_blocks)),
        "train": len(train),
        "val": len(val),
        "train_tokens": int(train.shape[0] * settings.seq_len),
        "seq_len": settings.seq_len,
        "stride": settings.stride,
        "vocab_size": len(vocab),
        "unk_rate_val": round(float(np.mean(val_targets == UNK_ID)), 6),
        "from_cache": False,
        "files": files,
    }
    return PreparedData(train=train, val=val, vocab=vocab, fingerprint=key, stats=stats)


def _to_arrays(prepared) -> dict[str, np.ndarray]:
    return {"train": prepared.train, "val": prepared.val, "tokens": np.array(prepared.vocab.tokens),
            "clean": np.array(prepared.vocab.clean)}


def _from_arrays(npz: Any, stats: dict[str, Any], key: str, width: int):
    from .dataset import PreparedData

    train, val = npz["train"], npz["val"]
    for name, array in (("train", train), ("val", val)):
        if array.dtype != np.int32 or array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"{name} is {array.dtype} {array.shape}")
    vocab = CharVocabulary(npz["tokens"].tolist(), clean=bool(npz["clean"]))
    return PreparedData(train=train, val=val, vocab=vocab, fingerprint=key, stats=stats)
