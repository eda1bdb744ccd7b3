"""``val_loss.png``: every trial's validation curve on one plot, readable at 50 trials; and
``winner/loss.png``, the retrained winner's training and validation curves.

Figures are built with :class:`matplotlib.figure.Figure` directly, never ``pyplot``: no global
figure registry to leak into, no display needed, and safe to call from several threads.
"""

from __future__ import annotations

import math
import textwrap
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lstm_sweep.results.io import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd
from lstm_sweep.results.records import (TrialRecord, epoch_numbers, full_validation, metric_values, rank_records,
                                        status_counts)

# Legend prefixes for known hyperparameters: e32 h64 l1 d0.10 lr3e-3 b64. Any other parameter
# is shown as name=value.
LABEL_PREFIXES = {
    "embedding_size": "e",
    "hidden_size": "h",
    "num_layers": "l",
    "dropout": "d",
    "learning_rate": "lr",
    "batch_size": "b",
    "seq_len": "T",
}
# A classifier's categorical parameters, shown by their value alone: bi pre-pad post-cut.
VALUE_LABELS = {
    "bidirectional": lambda value: "bi" if value in (True, "True", "true") else "uni",
    "padding": lambda value: f"{value}-pad",
    "truncating": lambda value: f"{value}-cut",
}
DPI = 120
AXES_WIDTH_IN = 7.0  # the curves keep this width; the legend adds its own to the figure
WORST_COLOUR = 0.9  # viridis from 0 (best, dark purple) to 0.9: its last tenth is too pale to read


def plot_val_loss(records: Sequence[TrialRecord], path: str | Path | None = None, metric: str = "val_loss",
                  mode: str = "min", baseline: float | None | str = "auto") -> Figure:
    """One curve of ``metric`` per epoch for every trial that reported an epoch.

    Each curve is labelled with the trial's best value and its parameters, e.g.
    ``4.123  e32 h64 l1 d0.10 lr3.2e-3 b64``; the legend, outside the axes on the right, lists
    trials best first, and colour follows the same rank (viridis, dark = best). The best trial
    is drawn thicker, on top, with a star at its best epoch; an early-stopped trial ends in an
    ``x``; a trial that failed after some epochs is dotted. A trial that reported within its
    epochs (``budget.reports_per_epoch``) is drawn at fractional epochs too, those points scored on
    the validation subset; its best is its best epoch's end. Trials with no report are not drawn
    but are counted in the title ("12 trials, 3 early-stopped, 1 failed"). A dashed grey line
    is the baseline, the metric of a model that ignores the context. A key under the plot
    says what the star, the ``x``, the dotted and the dashed lines mean. The main axes hold
    exactly one line per drawn trial (markers are part of that line; the baseline is a
    collection, the key a figure legend).

    Args:
        records: the sweep's trials.
        path: if given, the figure is saved there as PNG (dpi 120), atomically.
        metric: the history column to plot.
        mode: ``"min"`` if lower ``metric`` is better, ``"max"`` if higher; sets the ranking.
        baseline: the baseline's value of ``metric`` to draw, or None for none. ``"auto"``: the
            trials' ``baseline`` (their ``extra``, the sweep metric's baseline) when ``metric`` is
            ``val_loss`` and no history has ``val_accuracy``, i.e. a language model's unigram
            loss; a classifier's caller passes the value for the metric it plots.

    Example:
        >>> figure = plot_val_loss(records, "runs/quick/val_loss.png")  # doctest: +SKIP
        >>> len(figure.axes[0].get_lines()) == sum(len(r.history) > 0 for r in records)  # doctest: +SKIP
        True
    """
    if path is not None and not isinstance(path, (str, Path)):
        raise ValueError(f"path={path!r} must be a str or Path of the PNG to write, or None")
    ranked = rank_records(records, metric, mode)  # checks records, metric and mode
    drawn = [(record, best, epoch) for record, best, epoch in ranked if len(record.history)]
    labels = _labels(drawn)
    font_size, columns = _legend_layout(len(drawn))
    figure = Figure(figsize=_figure_size(labels, font_size, columns), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()

    colours = colormaps["viridis"](np.linspace(0.0, WORST_COLOUR, max(len(drawn), 2)))
    for rank, ((record, best, best_epoch), label) in enumerate(zip(drawn, labels)):
        ax.plot(epoch_numbers(record), metric_values(record, metric), label=label, color=colours[rank],
                **_line_style(record, rank, len(drawn), is_best=rank == 0 and math.isfinite(best),
                              best_epoch=best_epoch))

    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.grid(True, alpha=0.3)
    baseline = _baseline_value(records, metric, baseline)
    baseline_shown = False
    if drawn:
        values = np.concatenate([metric_values(record, metric) for record, _, _ in drawn])
        values = values[np.isfinite(values)]
        spread = float(np.ptp(values)) if len(values) else 0.0
        # A baseline far from every curve would squash them flat: then the key gives its value only.
        if baseline is not None and len(values) and values.min() - spread <= baseline <= values.max() + spread:
            # A collection across the whole width, not a Line2D: the axes' lines stay one per trial.
            ax.hlines(baseline, 0.0, 1.0, transform=ax.get_yaxis_transform(), colors="0.45", linestyles="--",
                      linewidth=1.2, zorder=1.5)
            baseline_shown = True
        _robust_limits(ax, drawn, metric, mode)
    ax.set_title(_title([record for record, _, _ in ranked], drawn, metric), fontsize=10)
    if drawn:
        # Outside the axes, so 50 entries never cover a curve; constrained layout makes room.
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=font_size,
                  ncols=columns, frameon=False, handlelength=1.6, columnspacing=1.0,
                  title=f"best {metric} · params", title_fontsize=font_size + 0.5)
        _key(figure, [record for record, _, _ in drawn], math.isfinite(drawn[0][1]), baseline, baseline_shown,
             font_size)
    else:
        ax.text(0.5, 0.5, f"no trial reported {metric}", transform=ax.transAxes, ha="center", va="center",
                color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])  # ticks of an empty plot would suggest a scale the sweep never had

    if path is not None:
        buffer = BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
        atomic_write_bytes(path, buffer.getvalue())
    return figure


def plot_history(history: "pd.DataFrame", path: str | Path | None = None, title: str = "",
                 metric: str = "val_loss", mode: str = "min") -> Figure:
    """``winner/loss.png``: training and validation loss per epoch of one model, the kept
    epoch (the best ``metric``) starred; a classifier's accuracy in a second panel.

    ``history`` has columns ``epoch``, ``loss`` and ``val_loss`` (``winner/history.csv``),
    and a classifier's also ``accuracy`` and ``val_accuracy``.

    Example:
        >>> figure = plot_history(pd.read_csv("runs/quick/winner/history.csv"))  # doctest: +SKIP
        >>> [line.get_label() for line in figure.axes[0].get_lines()]  # doctest: +SKIP
        ['loss (train)', 'val_loss']
    """
    missing = {"epoch", "loss", "val_loss"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks the columns {sorted(missing)}")
    panels = [("loss", "val_loss")] + ([("accuracy", "val_accuracy")] if "val_accuracy" in history else [])
    if metric not in history:
        raise ValueError(f"history lacks the column {metric!r}")
    figure = Figure(figsize=(AXES_WIDTH_IN, 4.2 * len(panels)), dpi=DPI, layout="constrained")
    values = history[metric].to_numpy(dtype=float)
    best = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values)) if len(history) else None
    for i, (train, val) in enumerate(panels):
        ax = figure.add_subplot(len(panels), 1, i + 1)
        ax.plot(history.epoch, history[train], "o-", color="0.55", label=f"{train} (train)")
        ax.plot(history.epoch, history[val], "o-", color=colormaps["viridis"](0.0), label=val)
        if best is not None:
            ax.plot([history.epoch.iloc[best]], [history[val].iloc[best]], "*", color="crimson", markersize=14,
                    label=f"{val} {history[val].iloc[best]:.4f} at the kept epoch {history.epoch.iloc[best]} "
                          f"(best {metric})")
            ax.legend(fontsize=9, frameon=False)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (mean cross-entropy per real token)" if "val_accuracy" not in history and val == "val_loss"
                      else val.removeprefix("val_"))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.set_title(textwrap.fill(title, 80, break_on_hyphens=False), fontsize=10)  # 80 fit 7 in; lr 1.2e-02 whole
    if path is not None:
        buffer = BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
        atomic_write_bytes(path, buffer.getvalue())
    return figure


def format_params(params: dict[str, Any], exponent: Collection[str] = ()) -> str:
    """Parameters in a compact form: ``e32 h64 l1 d0.10 lr3e-3 b64``; unknown ones as ``name=value``.

    Parameters named in ``exponent`` are always written as ``3.2e-3`` (so one legend never
    mixes ``lr0.012`` and ``lr3.2e-3``); other very small or large numbers are too.

    Example:
        >>> format_params({"hidden_size": 64, "learning_rate": 0.0032, "dropout": 0.1, "cell": "gru"})
        'h64 lr3.2e-3 d0.10 cell=gru'
        >>> format_params({"seq_len": 64, "padding": "pre", "bidirectional": True, "vocab_size": 2000})
        'T64 pre-pad bi vocab_size=2000'
    """
    parts = []
    for name, value in params.items():
        if name in VALUE_LABELS:
            parts.append(VALUE_LABELS[name](value))
            continue
        prefix = LABEL_PREFIXES.get(name)
        text = _compact(value, name in exponent)
        parts.append(f"{prefix}{text}" if prefix is not None else f"{name}={text}")
    return " ".join(parts)


def _baseline_value(records: Sequence[TrialRecord], metric: str, baseline: float | None | str) -> float | None:
    """The baseline to draw (see :func:`plot_val_loss`), None for none."""
    if baseline is None:
        return None
    if isinstance(baseline, str):
        if baseline != "auto":
            raise ValueError(f"baseline={baseline!r} must be a number, None or 'auto'")
        if metric != "val_loss" or any("val_accuracy" in record.history.columns for record in records):
            return None  # the trials' baseline is the sweep metric's, which may not be the plotted one
        values = [float(r.extra["baseline"]) for r in records
                  if isinstance(r.extra.get("baseline"), (int, float, np.number)) and math.isfinite(r.extra["baseline"])]
        return float(np.median(values)) if values else None
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float, np.number)):
        raise ValueError(f"baseline={baseline!r} must be a number, None or 'auto'")
    return float(baseline) if math.isfinite(baseline) else None


def _key(figure: Figure, records: list[TrialRecord], has_best: bool, baseline: float | None, shown: bool,
         font_size: float) -> None:
    """A key under the plot for the marks the legend's entries do not explain."""
    from matplotlib.lines import Line2D

    dark = colormaps["viridis"](0.0)
    handles = []
    if has_best:
        handles.append(Line2D([], [], color=dark, linewidth=2.8, marker="*", markersize=11,
                              label="best trial (thick), its best epoch starred"))
    if any(r.status == "early_stopped" for r in records):
        handles.append(Line2D([], [], color="0.3", marker="x", linewidth=1.1, label="x: stopped early (ASHA or the baseline)"))
    if any(r.status == "failed" for r in records):
        handles.append(Line2D([], [], color="0.3", linestyle=":", linewidth=1.1, label="dotted: failed"))
    if any(len(r.history) > len(full_validation(r.history)) for r in records):
        handles.append(Line2D([], [], color="0.3", linewidth=1.1,
                              label="between whole epochs: on the validation subset (not ranked)"))
    if baseline is not None:
        handles.append(Line2D([], [], color="0.45", linestyle="--", linewidth=1.2,
                              label=f"dashed: baseline {baseline:.4g} (a model that ignores the context)"
                                    + ("" if shown else ", off the chart")))
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 2), frameon=False,
                      fontsize=font_size + 0.5, handlelength=2.2)


def _labels(drawn: list) -> list[str]:
    """``<best value>  <params>`` per drawn trial, each part formatted alike across trials."""
    exponent = set()
    for record, _, _ in drawn:
        exponent.update(name for name, value in record.params.items() if _needs_exponent(value))
    bests = [best for _, best, _ in drawn if math.isfinite(best)]
    spec = "{:.3f}" if all(1e-2 <= abs(b) < 1e4 for b in bests) else "{:.3e}"
    return [f"{spec.format(best) if math.isfinite(best) else 'n/a'}  {format_params(record.params, exponent)}"
            for record, best, _ in drawn]


def _needs_exponent(value: Any) -> bool:
    return (isinstance(value, (float, np.floating)) and math.isfinite(value) and value != 0
            and (abs(value) < 1e-2 or abs(value) >= 1e5))


def _compact(value: Any, exponent: bool = False) -> str:
    """A number in few characters: 64, 0.10, 0.125, 3e-3, 3.2e-3, 1.5e5; anything else as str()."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (exponent or _needs_exponent(value)):
        mantissa, power = f"{value:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{int(power)}"  # 3.0e-03 -> 3e-3
    if value == round(value) and abs(value) >= 1:
        return str(int(value))
    return f"{value:.2f}" if round(value, 2) == value else f"{value:.3g}"


def _robust_limits(ax: Any, drawn: list, metric: str, mode: str) -> None:
    """Cap the y axis when a few diverged epochs would squash every other curve flat.

    For ``mode="min"`` the cap sits above the 90th percentile of all values by half the
    spread below it, so ordinary first epochs stay in view (mirrored for ``"max"``); curves
    beyond it leave the edge, their legend entries stay.
    """
    values = np.concatenate([metric_values(record, metric) for record, _, _ in drawn])
    values = values[np.isfinite(values)]
    if len(values) < 10:
        return
    low, high = values.min(), values.max()
    if mode == "min":
        q90 = np.quantile(values, 0.9)
        cap = q90 + 0.5 * (q90 - low)
        if high > cap > low:
            ax.set_ylim(low - 0.05 * (cap - low), cap)
    else:
        q10 = np.quantile(values, 0.1)
        floor = q10 - 0.5 * (high - q10)
        if low < floor < high:
            ax.set_ylim(floor, high + 0.05 * (high - floor))


def _line_style(record: TrialRecord, rank: int, count: int, is_best: bool, best_epoch: int | None) -> dict:
    # Better trials sit above worse ones; the best above all, so it is never hidden.
    style: dict[str, Any] = {"linewidth": 1.1, "alpha": 0.85, "zorder": 2 + (count - rank) / max(count, 1)}
    if record.status == "failed":
        style["linestyle"] = ":"
    epochs = epoch_numbers(record)
    if is_best:
        where = int(np.flatnonzero(epochs == best_epoch)[0]) if best_epoch in epochs else 0
        style.update(linewidth=2.8, alpha=1.0, zorder=4, marker="*", markersize=11, markevery=[where])
    elif record.status == "early_stopped":
        style.update(marker="x", markersize=5, markevery=[len(epochs) - 1])
    elif len(epochs) == 1:
        style.update(marker="o", markersize=3)  # one point draws no line: show it as a dot
    return style


def _title(records: Sequence[TrialRecord], drawn: list, metric: str) -> str:
    counts = status_counts(records)
    parts = [f"{len(records)} trial{'s' if len(records) != 1 else ''}"]
    parts += [f"{n} {status.replace('_', '-')}" for status, n in counts.items() if status != "completed"]
    title = f"{metric} per epoch: " + ", ".join(parts)
    hidden = len(records) - len(drawn)
    if not drawn and records:
        title += f"\nno trial reported {metric}"
    elif hidden:
        title += f" ({hidden} without epochs not drawn)"
    return title


def _legend_layout(count: int) -> tuple[float, int]:
    """Legend font size (points) and columns: smaller type and a second column past 28 trials."""
    font_size = 8.0 if count <= 10 else max(5.5, 8.0 - (count - 10) * 2.5 / 40)
    return font_size, (1 if count <= 28 else 2)


def _figure_size(labels: list[str], font_size: float, columns: int) -> tuple[float, float]:
    """Inches: the axes' fixed width plus the legend's estimated width; tall enough for its rows."""
    if not labels:
        return AXES_WIDTH_IN + 1.0, 4.8
    rows = math.ceil(len(labels) / columns)
    char_in = 0.6 * font_size / 72  # an average character is about 0.6 em wide
    legend_width = columns * (max(len(label) for label in labels) * char_in + 0.5)
    height = rows * 1.8 * font_size / 72 + 1.2  # row pitch: text plus label spacing
    return min(AXES_WIDTH_IN + 0.8 + legend_width, 18.0), min(max(height, 4.8), 12.0)
