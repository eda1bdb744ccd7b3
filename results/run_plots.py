"""The report's figures of where the sweep's time went and what it bought: the timeline of
trials per worker slot, the metric against each trial's cost (seconds, parameters) with the
Pareto front, and a classifier's confusion matrix.

    read_timeline + assign_slots ──► timeline_chart       a bar per trial, a row per node and slot
    trials.csv + parameter_counts ──► cost_quality_chart  metric vs seconds and vs parameters
    winner/confusion.json | predictions.txt ──► confusion_chart

Example:
    >>> figure = timeline_chart(assign_slots(run.timeline), trial_endings_by_id, origin=run.tune_started)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lstm_sweep.results.analysis import better_than_baseline, format_duration, pareto_front
from lstm_sweep.results.figures import (DPI, ENDING_COLOURS, METRIC_COLOURS, WIDTH_IN, draw_baseline, ending_handles,
                                        log_axis)

# Where a trial was cut short, drawn at the end of its bar.
END_MARKERS = {"stopped": ("x", "black", "stopped by the scheduler"), "budget": ("s", "black", "cut by the time budget"),
               "at_baseline": ("v", "black", "stopped at the baseline"),
               "failed": ("X", "black", "failed"), "infeasible": ("|", "0.3", "infeasible (never trained)")}


def timeline_chart(timeline: pd.DataFrame, endings: Mapping[str, str], origin: float | None = None,
                   names: Mapping[str, str] | None = None) -> Figure:
    """A bar per trial from its start to its last report, one row per node and worker slot
    (``analysis.assign_slots``), coloured by how it ended, a tick at each epoch's end and a
    marker where the scheduler or the baseline stopped it. Time runs from ``origin`` (Ray
    Tune's start; else the first trial's), in seconds or, past five minutes, minutes.
    ``names`` words the endings in the key (``{"stopped": "stopped by ASHA"}``).

    Example:
        >>> figure = timeline_chart(assign_slots(run.timeline), dict(zip(ids, endings)))  # doctest: +SKIP
    """
    needed = {"trial_id", "node", "start", "end", "epoch_ends", "slot"}
    if not isinstance(timeline, pd.DataFrame) or not needed <= set(timeline.columns):
        raise ValueError(f"timeline must be a DataFrame with columns {sorted(needed)} (assign_slots(read_timeline(...)))")
    frame = timeline[np.isfinite(timeline["start"].astype(float)) & np.isfinite(timeline["end"].astype(float))]
    if not len(frame):
        raise ValueError("timeline has no trial with a start and an end: say so in the page instead")
    start0 = float(frame["start"].min())
    origin = min(float(origin), start0) if origin is not None and math.isfinite(origin) else start0
    span = max(float(frame["end"].max()) - origin, 1.0)
    unit, scale = ("minutes", 60.0) if span > 300 else ("seconds", 1.0)
    lanes = sorted({(node, int(slot)) for node, slot in zip(frame["node"], frame["slot"])})
    nodes = sorted({node for node, _ in lanes})
    row_of = {lane: i for i, lane in enumerate(lanes)}
    figure = Figure(figsize=(WIDTH_IN, 0.48 * len(lanes) + 1.6), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    for _, trial in frame.iterrows():
        row = row_of[(trial["node"], int(trial["slot"]))]
        ending = endings.get(str(trial["trial_id"]), "completed")
        left, width = (trial["start"] - origin) / scale, max((trial["end"] - trial["start"]) / scale, span / scale / 400)
        ax.broken_barh([(left, width)], (row - 0.36, 0.72), facecolors=ENDING_COLOURS.get(ending, "0.5"),
                       edgecolors="white", linewidth=0.6, alpha=0.9)
        ticks = [(t - origin) / scale for t in trial["epoch_ends"][:-1] if trial["start"] < t < trial["end"]]
        if ticks:  # the epochs inside the bar; the last one is the bar's end
            ax.vlines(ticks, row - 0.36, row + 0.36, colors="white", linewidth=1.0)
        if width > span / scale * 0.07:
            ax.text(left + width / 2, row, str(trial["trial_id"])[:8], ha="center", va="center", fontsize=7.5,
                    color="white")
        if ending in END_MARKERS:
            marker, colour, _ = END_MARKERS[ending]
            ax.plot([left + width], [row], marker=marker, color=colour, markersize=8, linestyle="", zorder=4)
    ax.set_yticks(range(len(lanes)), [(f"{_node_name(node)} · " if len(nodes) > 1 else "") + f"slot {slot + 1}"
                                      for node, slot in lanes], fontsize=8.5)
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # the first slot on top
    ax.set_xlim(0, span / scale * 1.01)
    ax.set_xlabel(f"{unit} since Ray Tune started the sweep", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    busy = float((frame["end"] - frame["start"]).sum())
    ax.set_title(f"{len(frame)} trials on {len(lanes)} slot{'s' * (len(lanes) > 1)} of {len(nodes)} node"
                 f"{'s' * (len(nodes) > 1)}: the slots were busy {100 * busy / (len(lanes) * span):.0f}% of the "
                 f"{format_duration(span)} (white ticks: epoch ends)", fontsize=10)
    present = {endings.get(str(t), "completed") for t in frame["trial_id"]}
    handles = ending_handles(present, names)
    handles += [Line2D([], [], marker=m, color=c, linestyle="", label=f"end: {(names or {}).get(e, label)}")
                for e, (m, c, label) in END_MARKERS.items() if e in present]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8, frameon=False)
    return figure


def cost_quality_chart(trials: pd.DataFrame, parameters: pd.Series, metric_column: str, mode: str,
                       endings: Sequence[str], close: np.ndarray, distance: float,
                       baseline: float = math.nan, names: Mapping[str, str] | None = None) -> Figure:
    """The metric against each trial's training seconds (left) and its parameter count (right,
    log axis), each trial coloured by how it ended, the Pareto front (no trial both cheaper
    and better) as a stepped line, the band of trials within ``distance`` of the best shaded,
    and the cheapest trial in that band ringed. Trials no better than the baseline are worth
    no cost: they stay off the front, and above the baseline the chart is cut.

    Example:
        >>> close, distance = close_to_best(values, run.baseline)  # doctest: +SKIP
        >>> figure = cost_quality_chart(run.trials, parameter_counts(run), "best_val_loss", "min", endings, close, distance)  # doctest: +SKIP
    """
    if metric_column not in trials or "seconds" not in trials:
        raise ValueError(f"trials must have the columns {metric_column!r} and 'seconds'")
    if not (len(parameters) == len(endings) == len(close) == len(trials)):
        raise ValueError("parameters, endings and close must have one entry per trial")
    values = pd.to_numeric(trials[metric_column], errors="coerce").to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    best = (finite.min() if mode == "min" else finite.max()) if len(finite) else math.nan
    colours = [ENDING_COLOURS.get(e, "0.5") for e in endings]
    useful = better_than_baseline(values, baseline, mode)
    figure = Figure(figsize=(WIDTH_IN, 4.3), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    costs = [(pd.to_numeric(trials["seconds"], errors="coerce").to_numpy(dtype=float), "training seconds", False),
             (np.asarray(parameters, dtype=float), "parameters (log axis)", True)]
    for ax, (cost, label, log) in zip(axes, costs):
        ax.scatter(cost, values, c=colours, s=30, edgecolors="white", linewidths=0.5, zorder=3)
        front = pareto_front(np.where(useful, cost, np.nan), values, mode)
        if front.any():
            order = np.argsort(cost[front])
            ax.step(cost[front][order], values[front][order], where="post", color=METRIC_COLOURS(0.0),
                    linewidth=1.4, zorder=2)
        if math.isfinite(best) and math.isfinite(distance):
            edge = best + distance if mode == "min" else best - distance
            ax.axhspan(min(best, edge), max(best, edge), color=METRIC_COLOURS(0.6), alpha=0.18, zorder=0)
        candidates = np.flatnonzero(close & np.isfinite(cost))
        if len(candidates):
            pick = candidates[np.argmin(cost[candidates])]
            ax.scatter([cost[pick]], [values[pick]], s=190, facecolors="none", edgecolors="crimson", linewidths=1.8,
                       zorder=4)
            ax.annotate(str(trials["trial_id"].iloc[pick])[:8], (cost[pick], values[pick]), textcoords="offset points",
                        xytext=(8, 8), fontsize=8, color="crimson")
        baseline_words = draw_baseline(ax, baseline, values)
        _cut_at_baseline(ax, values, useful, baseline, mode)
        if log and np.isfinite(cost).any():
            log_axis(ax.xaxis, integer=True)
        ax.set_xlabel(label, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel(metric_column, fontsize=9)
    handles = ending_handles(set(endings), names, marker="o") + [
               Line2D([], [], color=METRIC_COLOURS(0.0), label="Pareto front: nothing both cheaper and better"),
               Patch(color=METRIC_COLOURS(0.6), alpha=0.3, label=f"within {distance:.3g} of the best"),
               Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="crimson", linestyle="",
                      markersize=10, label="cheapest within that band")]
    hidden = int((np.isfinite(values) & ~useful).sum())
    if baseline_words:
        handles.append(Line2D([], [], color="0.35", linestyle="--", label=baseline_words
                              + (f"; {hidden} trial{'s' * (hidden > 1)} no better, above it" if hidden else "")))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), fontsize=8, frameon=False)
    return figure


def _cut_at_baseline(ax, values: np.ndarray, useful: np.ndarray, baseline: float, mode: str) -> None:
    """Show the useful trials and the baseline, not the range of those no better than it."""
    kept = values[useful]
    if not len(kept) or not math.isfinite(baseline) or useful.sum() == np.isfinite(values).sum():
        return
    low, high = (float(kept.min()), baseline) if mode == "min" else (baseline, float(kept.max()))
    margin = 0.06 * (high - low) if high > low else 0.1
    ax.set_ylim(low - margin, high + margin)


def confusion_chart(labels: Sequence[str], matrix: np.ndarray, title: str) -> Figure:
    """A confusion matrix: rows the true class, columns the predicted one, each cell its count
    and its share of the row (the colour), so a class's recall reads along the diagonal.

    Example:
        >>> figure = confusion_chart(["neg", "pos"], np.array([[40, 10], [5, 45]]), "validation split")
        >>> len(figure.axes[0].texts)
        4
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix has shape {matrix.shape}; with {len(labels)} labels it must be "
                         f"({len(labels)}, {len(labels)}): rows true, columns predicted")
    if (matrix < 0).any() or not np.isfinite(matrix).all():
        raise ValueError("matrix must hold counts: finite and >= 0")
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    side = 1.0 + 0.75 * len(labels)
    figure = Figure(figsize=(side + 1.8, side + 0.6), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{int(count)}\n{100 * share[i, j]:.0f}%", ha="center", va="center", fontsize=8,
                color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8.5)
    ax.set_yticks(range(len(labels)), labels, fontsize=8.5)
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("true", fontsize=9)
    ax.set_title(title, fontsize=9.5)
    figure.colorbar(image, ax=ax, label="share of the true class", shrink=0.8)
    return figure


def _node_name(node: str) -> str:
    """``10.0.0.5/3f2a9c1b`` -> ``10.0.0.5 (3f2a)``: the IP and enough of the node id to tell two apart."""
    ip, _, node_id = str(node).partition("/")
    return f"{ip} ({node_id[:4]})" if node_id else ip
