"""The sweep as tables: one row per trial (``trials.csv``), one row per trial and epoch
(``curves.csv``), the winner, and a short leaderboard for the terminal.

Example:
    >>> trials = trials_table(records)  # doctest: +SKIP
    >>> print(format_leaderboard(trials, top=3))  # doctest: +SKIP
    trial_id     status         emb  hidden  layers  dropout  lr       batch  epochs  best val_loss  seconds
    a1_00003     completed       32      64       1     0.10  3.2e-03     64       4         4.1234       93
    ...
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from lstm_sweep.results.records import (HISTORY_COLUMNS, VAL_ON, TrialRecord, best_value, check_metric_mode,
                                        check_records, last_value, rank_records, status_counts)

# Header names for the leaderboard; a parameter not listed here keeps its own name.
SHORT_NAMES = {
    "embedding_size": "emb",
    "hidden_size": "hidden",
    "num_layers": "layers",
    "dropout": "dropout",
    "learning_rate": "lr",
    "batch_size": "batch",
    "batch_size_requested": "batch_req",
    "batch_size_used": "batch_used",
    "oom_retries": "oom",
    "predicted_peak_mb": "peak_mb",
    "bidirectional": "bidir",
    "seq_len": "seq",
    "truncating": "trunc",
    "padding": "pad",
}


# Figures derived from a history column, a trials.csv column of their own: name -> (column, scale).
DERIVED = {"bits_per_char": ("val_loss", 1 / math.log(2))}  # a character model's val_loss in bits


def trials_table(records: Sequence[TrialRecord], metric: str = "val_loss", mode: str = "min",
                 others: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per trial, the best trial first: what ``trials.csv`` holds.

    Columns, in order: ``trial_id, status``, each hyperparameter (in the order of the first
    record's ``params``, then any others in the order first met), each ``extra`` key (same
    rule), ``epochs, best_<metric>, last_<metric>, best_<other>..., seconds, node, error``.
    A trial without some parameter or extra value gets NaN there.

    ``best_<metric>`` is the min (``mode="min"``) or max over the finite values of the
    history's ``metric`` column at the ends of epochs (the whole validation split: in-epoch reports
    on its subset never count); ``last_<metric>`` is its value at the last finished epoch;
    ``epochs`` counts the finished epochs.
    ``others`` maps further history columns to their own mode, each giving a ``best_<other>``
    column, its best over the epochs (by default ``{"val_loss_padded": "min"}``: a language
    model's; a classifier passes ``{"val_accuracy": "max"}`` or ``{"val_loss": "min"}``);
    ``metric`` itself is never repeated there. A derived figure of :data:`DERIVED` in
    ``others`` (a character model's ``bits_per_char``) is a column of that name instead:
    the best of the history's column it derives from, scaled (``best val_loss / ln 2``).
    Rows are sorted by ``best_<metric>``, trials without a value last, ties by ``trial_id``.

    The frame's ``attrs`` carry ``metric``, ``mode`` and ``params`` (the parameter column
    names), which :func:`format_leaderboard` uses.

    Example:
        >>> trials = trials_table(records)  # doctest: +SKIP
        >>> trials.loc[0, ["trial_id", "best_val_loss"]].tolist()  # doctest: +SKIP
        ['a1_00003', 4.1234]
    """
    records = check_records(records)
    ranked = rank_records(records, metric, mode)
    # Column order follows the caller's records (not the ranking), so it is the same every run.
    param_names = _union_keys(record.params for record in records)
    extra_names = _union_keys(record.extra for record in records)
    others = {name: m for name, m in ({"val_loss_padded": "min"} if others is None else others).items()
              if name != metric}
    for name, other_mode in others.items():
        check_metric_mode(name, other_mode)
    derived = {name: DERIVED[name] for name in others if name in DERIVED}
    others = {name: m for name, m in others.items() if name not in derived}
    tail = ["epochs", f"best_{metric}", f"last_{metric}", *derived, *(f"best_{name}" for name in others),
            "seconds", "node", "error"]
    _refuse_clashes(param_names, extra_names, tail)

    rows = []
    for record, best, _ in ranked:
        row: dict[str, Any] = {"trial_id": record.trial_id, "status": record.status}
        row.update({name: record.params.get(name, math.nan) for name in param_names})
        row.update({name: record.extra.get(name, math.nan) for name in extra_names})
        row["epochs"] = record.epochs
        row[f"best_{metric}"] = best
        row[f"last_{metric}"] = last_value(record, metric)
        for name, (source, scale) in derived.items():
            row[name] = best_value(record, source, "min")[0] * scale
        for name, other_mode in others.items():
            row[f"best_{name}"] = best_value(record, name, other_mode)[0]
        row.update({"seconds": float(record.seconds), "node": record.node, "error": record.error})
        rows.append(row)
    columns = ["trial_id", "status", *param_names, *extra_names, *tail]
    table = pd.DataFrame(rows, columns=columns)
    table["epochs"] = table["epochs"].astype("int64")
    table.attrs.update(metric=metric, mode=mode, params=list(param_names))
    return table


def curves_table(records: Sequence[TrialRecord]) -> pd.DataFrame:
    """One row per trial and epoch: what ``curves.csv`` holds.

    Columns: ``trial_id, epoch`` (fractional for an in-epoch report), ``val_on`` (``full``: the
    whole validation split, ``subset``: an in-epoch report on its fixed subset; only when some
    history says), ``loss, val_loss, val_loss_padded, seconds`` (those of them some history has,
    when any has rows), then any other numeric history column (in the order first met: ``steps``,
    a classifier's ``accuracy``, ``val_accuracy``). A trial without reports adds no row, so the
    row count is the total number of reports. Trials keep the order of ``records`` (the order
    Tune proposed them), each with its epochs ascending; ``epoch`` is an integer column when every
    report ended an epoch.

    Example:
        >>> curves = curves_table(records)  # doctest: +SKIP
        >>> curves.groupby("trial_id").val_loss.min()  # doctest: +SKIP
    """
    records = check_records(records)
    frames = []
    others: list[str] = []
    for order, record in enumerate(records):
        history = record.history
        if not len(history):
            continue
        # Text columns (a node name, say) belong in trials.csv, not in a table of numbers.
        numeric = [c for c in history.columns if c not in HISTORY_COLUMNS and pd.api.types.is_numeric_dtype(history[c])]
        others += [c for c in numeric if c not in others and c != "trial_id"]
        kept = [c for c in history.columns if c in HISTORY_COLUMNS or c in numeric or c == VAL_ON]
        frames.append(history.reindex(columns=kept).assign(trial_id=record.trial_id, _order=order))
    columns = ["trial_id", "epoch", VAL_ON, *HISTORY_COLUMNS[1:], *others]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="str" if c == "trial_id" else "float64")
                             for c in columns if c != VAL_ON})
    # A standard column no history has (a classifier's val_loss_padded) would be empty: left out.
    present = {c for frame in frames for c in frame.columns}
    columns = [c for c in columns if c in ("trial_id", "epoch") or c in present]
    # Trials keep the order they were given in (the order they were started), epochs ascend.
    curves = pd.concat(frames, ignore_index=True).sort_values(["_order", "epoch"], kind="stable")
    curves = curves.reindex(columns=columns).reset_index(drop=True)
    for column in columns[1:]:
        if column != VAL_ON:
            curves[column] = pd.to_numeric(curves[column], errors="coerce")
    if curves["epoch"].notna().all() and (curves["epoch"] % 1 == 0).all():
        curves["epoch"] = curves["epoch"].astype("int64")
    return curves


def best_trial(records: Sequence[TrialRecord], metric: str = "val_loss", mode: str = "min") -> TrialRecord:
    """The trial with the best finite value of ``metric`` in its history (the first row of
    :func:`trials_table`).

    Raises:
        ValueError: no trial has a finite value of ``metric`` (all failed before their first
            epoch, say); the message counts the trials by status.

    Example:
        >>> winner = best_trial(records)  # doctest: +SKIP
        >>> winner.params["learning_rate"]  # doctest: +SKIP
        0.0032
    """
    ranked = rank_records(records, metric, mode)
    if not ranked or not math.isfinite(ranked[0][1]):
        counts = ", ".join(f"{n} {status}" for status, n in status_counts([r for r, _, _ in ranked]).items())
        raise ValueError(f"no trial reported {metric}: {len(ranked)} trial(s)" + (f" ({counts})" if counts else "")
                         + f", none with a finite {metric} in its history; see trials.csv's error column")
    return ranked[0][0]


def format_leaderboard(trials: pd.DataFrame, top: int = 5) -> str:
    """The first ``top`` rows of a :func:`trials_table` as a fixed-width text table.

    Shows trial_id, status, each parameter under a short name (``lr``, ``hidden``, ...),
    epochs, the best metric and seconds. Floats are compact: learning rates as ``3.2e-03``,
    losses to 4 decimals. The rows are taken in the frame's order (``trials_table`` puts the
    best first); a frame read back from ``trials.csv`` works too, with every column between
    ``status`` and ``epochs`` shown as a parameter.

    Example:
        >>> print(format_leaderboard(trials_table(records), top=3))  # doctest: +SKIP
    """
    if not isinstance(trials, pd.DataFrame):
        raise ValueError(f"trials must be the DataFrame of trials_table(), got {type(trials).__name__}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top={top!r} must be an integer >= 1")
    missing = [c for c in ("trial_id", "status", "epochs") if c not in trials.columns]
    if missing:
        raise ValueError(f"trials lacks column(s) {missing}: pass the DataFrame of trials_table()")

    columns = list(trials.columns)
    params = [p for p in trials.attrs.get("params", columns[columns.index("status") + 1:columns.index("epochs")])
              if p in columns]
    metric = trials.attrs.get("metric") or next(
        (c[len("best_"):] for c in columns[columns.index("epochs"):] if c.startswith("best_")), None)
    shown = trials.head(int(top))

    table: list[tuple[str, list[str], bool]] = [  # (header, cells, right-aligned)
        ("trial_id", [str(v) for v in shown["trial_id"]], False),
        ("status", [str(v) for v in shown["status"]], False),
    ]
    table += [(SHORT_NAMES.get(p, p), _format_column(shown[p]), True) for p in params]
    table.append(("epochs", [_format_value(v, "{:d}") for v in shown["epochs"]], True))
    if metric and f"best_{metric}" in columns:
        table.append((f"best {metric}", [_format_value(v, "{:.4f}") for v in shown[f"best_{metric}"]], True))
    if "seconds" in columns:
        table.append(("seconds", [_format_value(v, "{:.0f}") for v in shown["seconds"]], True))

    widths = [max(len(header), *(len(cell) for cell in cells)) for header, cells, _ in table]
    lines = [_join([header for header, _, _ in table], widths, [right for *_, right in table])]
    for i in range(len(shown)):
        lines.append(_join([cells[i] for _, cells, _ in table], widths, [right for *_, right in table]))
    if not len(shown):
        lines.append("(no trials)")
    elif len(trials) > len(shown):
        lines.append(f"... {len(trials) - len(shown)} more trial(s) not shown")
    return "\n".join(lines)


def _union_keys(dicts) -> list[str]:
    names: dict[str, None] = {}  # a dict keeps first-seen order, unlike a set
    for d in dicts:
        names.update(dict.fromkeys(d))
    return list(names)


def _refuse_clashes(param_names: list[str], extra_names: list[str], tail: list[str]) -> None:
    # Two columns with one name would make trials.csv ambiguous to read back: refuse, loudly.
    standard = {"trial_id", "status", *tail}
    for name in param_names:
        if name in standard:
            raise ValueError(f"hyperparameter {name!r} has the name of a standard trials.csv column "
                             f"({sorted(standard)}): rename it in the search space")
    for name in extra_names:
        if name in standard or name in param_names:
            raise ValueError(f"extra key {name!r} clashes with a hyperparameter or standard column of "
                             "trials.csv: give it another name")


def _format_column(values: pd.Series) -> list[str]:
    """Cells of one parameter column, formatted alike so they line up."""
    numbers = pd.to_numeric(values, errors="coerce")
    is_number = values.map(lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool))
    if not is_number.all() or not len(values):
        return [_format_value(v, "{}") for v in values]
    finite = numbers[np.isfinite(numbers)]
    if (finite == finite.round()).all():
        return [_format_value(v, "{:.0f}") for v in numbers]
    nonzero = finite[finite != 0].abs()
    if len(nonzero) and (nonzero.min() < 1e-2 or nonzero.max() >= 1e5):
        return [_format_value(v, "{:.1e}") for v in numbers]  # learning rates: 3.2e-03
    return [_format_value(v, "{:.2f}" if (finite.round(2) == finite).all() else "{:.3g}") for v in numbers]


def _format_value(value: Any, spec: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return "-"
    if spec == "{:d}":
        value = int(value)
    return spec.format(value)


def _join(cells: list[str], widths: list[int], right: list[bool]) -> str:
    return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()
