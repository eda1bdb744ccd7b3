"""Writing a run's results: every file appears whole or not at all.

Each writer renders the whole content in memory and hands it to the project's one atomic
writer, :mod:`lstm_sweep.atomic`: a temporary file beside the target (same folder, so same
file system), fsynced, ``os.replace``-d over the target, the folder fsynced. A reader, a crash
or a Ctrl-C midway sees the old file or the new one, never half of one; a failed write (a full
disk too) removes its temporary file and raises.

Example:
    >>> paths = write_results("runs/quick-20261122-101500", records)  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['best', 'curves', 'plot', 'trials']
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from lstm_sweep import atomic
from lstm_sweep.results.records import TrialRecord, check_metric_mode, check_records, rank_records
from lstm_sweep.results.tables import curves_table, trials_table

# 10 significant digits: Keras reports losses as float32, which 9 digits reproduce exactly, so
# no loss changes on a round trip through curves.csv; float64 parameters (Optuna's learning
# rates) keep 10 digits, far below any difference that matters, and best.json keeps them whole.
# "%.6g" would merge distinct losses (and break comparisons between the two CSVs at 1e-6);
# full repr ("%.17g") would print 4.2 as 4.2000000000000002.
FLOAT_FORMAT = "%.10g"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: :func:`lstm_sweep.atomic.write_bytes` (temporary
    file beside it, fsync, ``os.replace``, the folder fsynced, the temporary removed on any failure).

    Missing parent folders are created. The new file gets the usual permissions (0666 less the
    umask), like a plain ``open(path, "wb")``.

    Example:
        >>> atomic_write_bytes("runs/x/blob.bin", b"\\x00\\x01")  # doctest: +SKIP
    """
    atomic.write_bytes(path, data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically.

    Example:
        >>> atomic_write_text("runs/quick/sweep.yaml", "name: quick\\n")  # doctest: +SKIP
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(path: str | Path, df: pd.DataFrame) -> None:
    """Write ``df`` to ``path`` as CSV atomically: no index, ``\\n`` line ends, floats as
    ``%.10g`` (see :data:`FLOAT_FORMAT`), missing values as empty cells.

    Example:
        >>> atomic_write_csv("runs/quick/trials.csv", trials_table(records))  # doctest: +SKIP
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    atomic_write_text(path, df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON (indent 2, keys in their own order, UTF-8) to ``path`` atomically.

    NaN and +-inf become ``null`` (JSON has no such numbers, and most readers reject
    ``NaN``); numpy scalars and arrays, tuples, paths and timestamps become plain JSON.

    Example:
        >>> atomic_write_json("runs/quick/best.json", {"trial_id": "a1", "val_loss": float("nan")})  # doctest: +SKIP
        >>> # the file reads {"trial_id": "a1", "val_loss": null}
    """
    text = json.dumps(_plain(obj), indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def write_results(run_dir: str | Path, records: Sequence[TrialRecord], metric: str = "val_loss",
                  mode: str = "min", others: Mapping[str, str] | None = None,
                  also_plot: Sequence[str] = ()) -> dict[str, Path]:
    """Write a sweep's result files into ``run_dir`` and return their paths.

    Files (keys of the returned dict):

    * ``trials``: ``trials.csv``, :func:`~results.tables.trials_table` (with a ``best_<other>``
      column for each of ``others``), best trial first;
    * ``curves``: ``curves.csv``, :func:`~results.tables.curves_table`;
    * ``plot``: ``<metric>.png`` (``val_loss.png``), :func:`~results.plots.plot_val_loss`;
    * ``plot_<other>``: ``<other>.png`` for each of ``also_plot``, one of ``others`` (a
      classifier's ``val_accuracy.png`` beside ``val_loss.png``);
    * ``best``: ``best.json``, what it takes to retrain the winner: ``trial_id``, ``status``,
      ``metric``, ``mode``, ``best_<metric>``, ``best_epoch`` (the epoch that reached it),
      ``epochs``, ``params``, ``extra`` (e.g. the batch size actually used), ``seconds``, ``node``.

    When no trial reported a finite ``metric`` (every trial failed, say), the CSVs are still
    written, the plot says so in its title, and there is no ``best.json``: a stale one from an
    earlier write is removed so the folder never names a winner its tables do not have, and
    ``"best"`` is absent from the result. ``run_dir`` is created if missing.

    Example:
        >>> paths = write_results("runs/quick-20261122-101500", records)  # doctest: +SKIP
        >>> json.loads(paths["best"].read_text())["params"]  # doctest: +SKIP
        {'embedding_size': 32, 'hidden_size': 64, ...}
    """
    # plots imports this module's writers, so it is imported here, not at the top.
    from lstm_sweep.results.plots import plot_val_loss

    check_metric_mode(metric, mode)
    records = check_records(records)
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir={str(run_dir)!r} exists and is not a folder")
    run_dir.mkdir(parents=True, exist_ok=True)

    paths = {"trials": run_dir / "trials.csv", "curves": run_dir / "curves.csv", "plot": run_dir / f"{metric}.png"}
    atomic_write_csv(paths["trials"], trials_table(records, metric, mode, others))
    atomic_write_csv(paths["curves"], curves_table(records))
    plot_val_loss(records, paths["plot"], metric=metric, mode=mode)
    for name in also_plot:
        if name not in (others or {}):
            raise ValueError(f"also_plot names {name!r}, which is not in others={dict(others or {})}")
        paths[f"plot_{name}"] = run_dir / f"{name}.png"
        plot_val_loss(records, paths[f"plot_{name}"], metric=name, mode=others[name])

    ranked = rank_records(records, metric, mode)
    best_path = run_dir / "best.json"
    if ranked and math.isfinite(ranked[0][1]):
        atomic_write_json(best_path, _best_summary(*ranked[0], metric=metric, mode=mode))
        paths["best"] = best_path
    else:
        best_path.unlink(missing_ok=True)
    return paths


def _best_summary(record: TrialRecord, value: float, epoch: int | None, metric: str, mode: str) -> dict[str, Any]:
    return {
        "trial_id": record.trial_id,
        "status": record.status,
        "metric": metric,
        "mode": mode,
        f"best_{metric}": value,
        "best_epoch": epoch,
        "epochs": record.epochs,
        "params": dict(record.params),
        "extra": dict(record.extra),
        "seconds": float(record.seconds),
        "node": record.node,
    }


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON data; non-finite floats as None."""
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in (sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj)]
    if isinstance(obj, np.ndarray):
        return [_plain(v) for v in obj.tolist()]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (pd.Timestamp, pd.Timedelta)):
        return obj.isoformat()
    raise ValueError(f"cannot write a {type(obj).__name__} to JSON: {obj!r:.80}")
