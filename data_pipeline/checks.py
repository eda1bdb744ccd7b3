"""The argument checks every ``data_pipeline`` module shares, one rule each.

Each raises ``ValueError`` naming the argument, its value and the rule, so a bad ``data:`` key
in a sweep config reads as one line that says what to change; :func:`check_split_sizes` (the
smallest splits a sweep accepts) raises ``CorpusError``.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

from lstm_sweep.errors import CorpusError


def check_int(name: str, value: Any, minimum: int, meaning: str) -> None:
    """Accept an int (a numpy int too, not a bool) of at least ``minimum``, else a ValueError.

    Example:
        >>> check_int("batch_size", 0, 1, "sentences per batch")
        Traceback (most recent call last):
        ...
        ValueError: batch_size=0 must be an int >= 1 (sentences per batch)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum} ({meaning})")


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float strictly between 0 and 1, else a ValueError naming ``name``.

    Example:
        >>> check_fraction("val_fraction", 0.2)
        0.2
        >>> check_fraction("val_fraction", 1)
        Traceback (most recent call last):
        ...
        ValueError: val_fraction=1 must be a number strictly between 0 and 1
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name}={value!r} must be a number strictly between 0 and 1")
    return float(value)


def check_path(name: str, value: Any, rule: str) -> str:
    """``value`` as a path string (a ``Path`` is converted), else a ValueError naming ``name``
    and ``rule`` (what the path may be).

    Example:
        >>> check_path("path", "", "a folder, a file, or 'builtin'")
        Traceback (most recent call last):
        ...
        ValueError: path='' must be a folder, a file, or 'builtin'
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}={value!r} must be {rule}")
    return value


# A sweep ranks its trials by their validation figures: on a handful of sentences those are
# noise. MIN_SPLIT refuses a corpus outright; below FEW_VALIDATION a sweep warns.
MIN_SPLIT = 10  # fewest sentences (examples) a sweep accepts in its training split and in its validation split
FEW_VALIDATION = 200  # fewer validation sentences than this: a warning that trials may be ranked by chance


def check_split_sizes(train: int, val: int, where: str, unit: str = "sentences") -> str:
    """Refuse splits too small for a sweep; return a warning ("" if none) for a small validation split.

    Raises:
        CorpusError: fewer than :data:`MIN_SPLIT` ``unit`` in either split.

    Example:
        >>> check_split_sizes(2, 1, "lyrics/")
        Traceback (most recent call last):
        ...
        lstm_sweep.errors.CorpusError: lyrics/ leaves 2 sentences for training and 1 for validation: ...
    """
    if train < MIN_SPLIT or val < MIN_SPLIT:
        raise CorpusError(f"{where} leaves {train} {unit} for training and {val} for validation: a sweep needs "
                          f"at least {MIN_SPLIT} in each (it ranks its trials on the validation split): add text, "
                          "or change data.val_fraction")
    if val < FEW_VALIDATION:
        return (f"{where} leaves only {val} {unit} for validation (fewer than {FEW_VALIDATION}): the trials' "
                "validation figures say little at this size, and the ranking may be chance")
    return ""
