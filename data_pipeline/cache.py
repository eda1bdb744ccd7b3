"""The on-disk cache of prepared data, for :func:`prepare` and :func:`prepare_labelled` alike.

Both are called once by the driver and once by every Ray trial, so their result is kept as a
``.npz`` file named by a fingerprint of what it was built from; the first call builds it, the
others load it in milliseconds. The flow, top to bottom::

    cache_folder(cache_dir)               $LSTM_SWEEP_CACHE, else ~/.cache/lstm-sweep
    fingerprint(header, corpus, recipe)   SHA-256: format line, corpus, settings -> <fp[:16]>.npz
    load_or_build(...)                    the prepare skeleton:
      -> load_npz(file, fp, read)         a hit; a foreign or unreadable file is a miss (warning)
      -> build(), save_npz(file, ...)     a miss: build, write atomically (temp file, rename)
      -> stats["seconds"]

Two trials that build the same file at once cannot leave a torn file: each writes its own
temporary file in the cache folder and renames it into place, and a rename is atomic. A folder
that cannot be written only costs the caching.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lstm_sweep import atomic

log = logging.getLogger("lstm_sweep.data")

T = TypeVar("T")  # PreparedData or LabelledData: anything with a ``stats`` dict


def cache_folder(cache_dir: str | Path | None) -> Path:
    """The folder of the cache files: ``cache_dir``, else ``$LSTM_SWEEP_CACHE``, else
    ``~/.cache/lstm-sweep`` (``~`` expanded; the folder is made when a file is first written).

    Example:
        >>> cache_folder("~/cache") == Path.home() / "cache"
        True
    """
    if cache_dir is None:
        cache_dir = os.environ.get("LSTM_SWEEP_CACHE") or Path.home() / ".cache" / "lstm-sweep"
    elif not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir={cache_dir!r} must be a folder path or None")
    return Path(cache_dir).expanduser()


def fingerprint(header: str, corpus: str | Sequence[tuple[str, bytes, Path]], recipe: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) a cache file is named and checked by.

    It hashes, in order: the ``header`` line (the format and its version: bumping it makes every
    old file miss); the corpus, either the built-in corpus' description line (a ``str``: its
    size and generator version) or, for each ``(relative name, bytes, path)`` of
    :func:`corpus_files`, ``"file {len(name)} {name} {len(bytes)}\\n"`` and the bytes; then
    ``recipe``, the settings that change the result, as JSON with sorted keys. The path of the
    corpus is not hashed, so a moved folder still hits.

    Example:
        >>> fingerprint("demo format 1", "builtin 10 version 1", {"seed": 0})[:16]
        '1f7b3d497f0fa7e2'
    """
    if not isinstance(header, str) or not header:
        raise ValueError(f"header={header!r} must be a non-empty line naming the cache format")
    if not isinstance(corpus, (str, Sequence)):
        raise ValueError(f"corpus={corpus!r} must be the built-in corpus' description or a list of files")
    if not isinstance(recipe, Mapping):
        raise ValueError(f"recipe={recipe!r} must be a dict of the settings that change the result")
    h = hashlib.sha256(f"{header}\n".encode())
    if isinstance(corpus, str):
        h.update(f"{corpus}\n".encode())
    else:
        for name, data, _ in corpus:  # length-prefixed, so no two corpora hash the same stream
            h.update(f"file {len(name.encode())} {name} {len(data)}\n".encode())
            h.update(data)
    h.update(json.dumps(dict(recipe), sort_keys=True).encode())
    return h.hexdigest()


def load_or_build(cache_dir: str | Path | None, fingerprint: str, *, build: Callable[[], T],
                  to_arrays: Callable[[T], dict[str, np.ndarray]], from_arrays: Callable[[Any, dict], T],
                  started: float) -> T:
    """The skeleton of :func:`prepare` and :func:`prepare_labelled`: the data from its cache
    file, or built and saved there; ``stats["seconds"]`` since ``started`` either way.

    Every cache file holds ``fingerprint`` and ``stats`` (as JSON), written and read here; the
    rest is the kind's own: ``to_arrays(data)`` gives its arrays, ``from_arrays(npz, stats)``
    rebuilds it from them (and raises on a wrong shape: the file is then rebuilt).

    Args:
        cache_dir: see :func:`cache_folder`.
        fingerprint: from :func:`fingerprint`; the file is ``<fingerprint[:16]>.npz``.
        build: makes the data on a miss; its ``stats`` has ``from_cache: False``.
        to_arrays: the data's arrays to save, by name.
        from_arrays: the data from a loaded file's arrays and stats.
        started: ``time.perf_counter()`` when the caller began, so ``seconds`` counts reading
            and hashing the corpus too.

    Example:
        >>> data = load_or_build(tmp, fp, build=make, to_arrays=arrays_of, from_arrays=data_of,
        ...                      started=time.perf_counter())  # doctest: +SKIP
    """
    if not isinstance(fingerprint, str) or len(fingerprint) < 16:
        raise ValueError(f"fingerprint={fingerprint!r} must be a hex digest from fingerprint()")
    file = cache_folder(cache_dir) / f"{fingerprint[:16]}.npz"
    data = load_npz(file, fingerprint, lambda npz: from_arrays(npz, json.loads(str(npz["stats"]))))
    if data is None:
        data = build()
        save_npz(file, **to_arrays(data), fingerprint=np.array(fingerprint), stats=np.array(json.dumps(data.stats)))
    data.stats["seconds"] = round(time.perf_counter() - started, 3)
    return data


def load_npz(file: Path, fingerprint: str, read: Callable[[Any], T]) -> T | None:
    """``read(npz)`` of the cache file ``file`` written for ``fingerprint``, with
    ``stats["from_cache"]`` set; None when there is no such file, or it is another corpus's or
    unreadable (a warning: it is rebuilt, never fatal).

    Example:
        >>> load_npz(Path("/nonexistent/x.npz"), "ab" * 32, dict) is None
        True
    """
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as npz:
            if str(npz["fingerprint"]) != fingerprint:
                raise ValueError("it belongs to another corpus or settings")
            data = read(npz)
    except Exception as e:  # noqa: BLE001 -- any unreadable cache is rebuilt, never fatal
        log.warning("cache file %s is unreadable (%s): rebuilding it", file, e)
        return None
    data.stats["from_cache"] = True
    return data


def save_npz(file: Path, **arrays: np.ndarray) -> None:
    """Write a cache file atomically (:mod:`lstm_sweep.atomic`: temporary file, fsync, rename); a
    folder that cannot be written (or a full disk) only costs the caching, with a warning.

    Example:
        >>> save_npz(Path(tmp) / "ab.npz", fingerprint=np.array("ab"), train=np.zeros((2, 3)))  # doctest: +SKIP
    """
    try:
        with atomic.replacing_file(file) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        log.warning("cannot write the data cache %s (%s): going on without it", file, e)
