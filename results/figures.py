"""The report's figures of parameters against the metric: parallel coordinates, one scatter
per parameter, and the parameters' importance; and what every report figure shares (the
colours of the endings, the metric's colour scale, PNG bytes).

    trials.csv + sweep.yaml's space ──► parallel_coordinates   one line per trial across the parameters
                                    ──► parameter_scatters     metric against each parameter (log where searched so)
    parameter_importances(...)      ──► importance_chart       one bar per parameter

Figures are :class:`matplotlib.figure.Figure` objects made directly (no ``pyplot``: no global
state, no display), as in ``results.plots``.

Example:
    >>> figure = parameter_scatters(run.trials, run.searched, "best_val_loss", "min", trial_endings(run))  # doctest: +SKIP
    >>> png = png_bytes(figure)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import textwrap
from io import BytesIO
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from lstm_sweep.results.run_folder import SearchedParameter

DPI = 110
WIDTH_IN = 10.5  # 1155 px at DPI: the page's column at 1280 px
# One colour per ending in every figure and in the trial table's rows.
ENDING_COLOURS = {"completed": "#2e7d32", "stopped": "#ef6c00", "budget": "#3949ab", "at_baseline": "#8d6e63",
                  "infeasible": "#9e9e9e", "failed": "#c62828"}
# viridis from dark (best) to its 0.9 point: the last tenth is too pale on white, as in val_loss.png.
METRIC_COLOURS = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)), name="metric")


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes at the report's resolution.

    Example:
        >>> png_bytes(Figure())[:4]
        b'\\x89PNG'
    """
    if not isinstance(figure, Figure):
        raise ValueError(f"figure must be a matplotlib Figure, got {type(figure).__name__}")
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def metric_scale(values: np.ndarray, mode: str) -> tuple[Normalize, ListedColormap]:
    """A colour scale over ``values`` on which the best value is dark, for either ``mode``.

    Example:
        >>> norm, cmap = metric_scale(np.array([2.0, 3.0]), "min")
        >>> float(norm(2.0)), cmap.name
        (0.0, 'metric')
    """
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    norm = Normalize(low, high if high > low else low + 1e-9)
    return norm, (METRIC_COLOURS if mode == "min" else METRIC_COLOURS.reversed())


def badness(values: np.ndarray, mode: str) -> np.ndarray:
    """Each value's place between the best (0) and the worst (1) of the finite ``values``."""
    norm, _ = metric_scale(values, mode)
    share = np.asarray(norm(np.asarray(values, dtype=float)), dtype=float)
    return share if mode == "min" else 1.0 - share


def ending_handles(present: set, names: Mapping[str, str] | None = None, marker: str = "") -> list:
    """Key entries for the endings in ``present``, in :data:`ENDING_COLOURS`' order: dots with
    ``marker="o"``, colour patches without."""
    from matplotlib.patches import Patch

    words = {e: (names or {}).get(e, e.replace("_", " ")) for e in ENDING_COLOURS}
    if marker:
        return [Line2D([], [], marker=marker, linestyle="", color=ENDING_COLOURS[e], label=words[e])
                for e in ENDING_COLOURS if e in present]
    return [Patch(color=ENDING_COLOURS[e], label=words[e]) for e in ENDING_COLOURS if e in present]


def draw_baseline(ax: Any, baseline: float, values: np.ndarray) -> str:
    """A dashed line at the baseline when it lies near the values (within half their spread);
    a far one would squash every point into a sliver, so it is left off. Returns the key's
    words for it, "" when there is no baseline.

    Example:
        >>> draw_baseline(Figure().add_subplot(), 1.09, np.array([0.46, 0.51]))
        'baseline 1.09 (off the chart)'
    """
    if not math.isfinite(baseline):
        return ""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    low, high = (finite.min(), finite.max()) if len(finite) else (baseline, baseline)
    if low - 0.5 * (high - low) <= baseline <= high + 0.5 * (high - low) or high == low:
        ax.axhline(baseline, color="0.35", linestyle="--", linewidth=1.0, zorder=1)
        return f"baseline {baseline:.4g}"
    return f"baseline {baseline:.4g} (off the chart)"


def parallel_coordinates(trials: pd.DataFrame, searched: Sequence[SearchedParameter], metric_column: str,
                         mode: str) -> Figure:
    """One line per trial across one vertical axis per searched parameter and a last one for
    the metric, coloured by the metric (dark = best); the best trial drawn thick, trials with
    no value grey and dashed. Each axis spans the searched range (log-scaled where the space
    is log), a choice's options spaced evenly; the metric axis has the best value at the top.

    Example:
        >>> figure = parallel_coordinates(run.trials, run.searched, "best_val_loss", "min")  # doctest: +SKIP
    """
    _check(trials, searched, metric_column, mode)
    figure = Figure(figsize=(WIDTH_IN, 4.4), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    values = pd.to_numeric(trials[metric_column], errors="coerce").to_numpy(dtype=float)
    norm, cmap = metric_scale(values, mode)
    bad = badness(values, mode)
    columns = [_positions(trials, p) for p in searched]
    metric_y = 1.0 - bad  # the best at the top for either mode
    # No-value trials first, then worst to best: the best lines end up on top.
    order = sorted(range(len(values)), key=lambda i: (math.isfinite(values[i]), -bad[i] if math.isfinite(values[i]) else 0))
    best = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values)) if np.isfinite(values).any() else -1
    for i in order:
        ys = [column[i] for column in columns]
        if math.isfinite(values[i]):
            ax.plot(range(len(ys) + 1), ys + [metric_y[i]], color=METRIC_COLOURS(bad[i]),
                    linewidth=3.0 if i == best else 1.3, alpha=1.0 if i == best else 0.8, zorder=3 if i == best else 2)
        else:
            ax.plot(range(len(ys)), ys, color="0.6", linestyle="--", linewidth=1.0, zorder=1)
    for x, parameter in enumerate(searched):
        ax.axvline(x, color="0.3", linewidth=0.8, zorder=0)
        for y, label in _axis_ticks(trials, parameter):
            ax.text(x - 0.03, y, label, ha="right", va="center", fontsize=7.5, color="0.25", zorder=5,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.6})
    x_metric = len(searched)
    ax.axvline(x_metric, color="0.3", linewidth=0.8, zorder=0)
    if np.isfinite(values).any():
        for height in (0.0, 0.5, 1.0):  # height 1 is the best value: the top of the range for max
            share = (1.0 - height) if mode == "min" else height
            value = norm.vmin + share * (norm.vmax - norm.vmin)
            ax.text(x_metric + 0.03, height, f"{value:.4g}", ha="left", va="center", fontsize=7.5)
    # Names on two lines: nine axes of "embedding_size"-long names fit 1155 px only so.
    names = [textwrap.fill(p.name.replace("_", " ") + (" (log)" if p.log else ""), 14) for p in searched]
    ax.set_xticks(range(len(searched) + 1), names + [f"{metric_column.removeprefix('best_')}\n(best at top)"],
                  fontsize=8.5)
    ax.set_xlim(-0.45, x_metric + 0.45)
    ax.set_ylim(-0.06, 1.06)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"every trial across the searched parameters, coloured by its {metric_column} (dark = best)",
                 fontsize=10)
    if np.isfinite(values).any():
        figure.colorbar(_mappable(norm, cmap), ax=ax, label=metric_column, shrink=0.85, pad=0.01)
    return figure


def parameter_scatters(trials: pd.DataFrame, searched: Sequence[SearchedParameter], metric_column: str,
                       mode: str, endings: pd.Series, baseline: float = math.nan,
                       names: Mapping[str, str] | None = None) -> Figure:
    """One small scatter per searched parameter: the metric (y, shared) against the parameter
    (x, log where the space is log; a choice's options side by side with a little jitter),
    each trial coloured by how it ended, the best one a star, the baseline a dashed line.
    ``names`` words the endings in the key (``{"stopped": "stopped by ASHA"}``).

    Example:
        >>> figure = parameter_scatters(run.trials, run.searched, "best_val_loss", "min", trial_endings(run))  # doctest: +SKIP
        >>> len(figure.axes) >= len(run.searched)  # doctest: +SKIP
        True
    """
    _check(trials, searched, metric_column, mode)
    if len(endings) != len(trials):
        raise ValueError(f"endings has {len(endings)} entries for {len(trials)} trials")
    columns = min(4, max(1, len(searched)))
    rows = math.ceil(max(1, len(searched)) / columns)
    figure = Figure(figsize=(WIDTH_IN, 2.55 * rows + 0.6), dpi=DPI, layout="constrained")
    values = pd.to_numeric(trials[metric_column], errors="coerce").to_numpy(dtype=float)
    best = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values)) if np.isfinite(values).any() else -1
    colours = [ENDING_COLOURS.get(e, "0.5") for e in endings]
    axes = figure.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(trials))  # seeded: the same picture every rebuild
    baseline_words = ""
    for ax, parameter in zip(axes, searched):
        if parameter.categorical:
            options = [str(o) for o in parameter.args]
            x = np.array([options.index(str(v)) if str(v) in options else np.nan for v in trials[parameter.name]]) + jitter
            ax.set_xticks(range(len(options)), options, fontsize=8)
            ax.set_xlim(-0.5, len(options) - 0.5)
        else:
            x = pd.to_numeric(trials[parameter.name], errors="coerce").to_numpy(dtype=float)
            integer = parameter.kind in ("int", "logint")
            if parameter.log:
                log_axis(ax.xaxis, integer)
            elif integer:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # 1 or 2 layers, never 1.5
        ax.scatter(x, values, c=colours, s=26, edgecolors="white", linewidths=0.5, zorder=3)
        if best >= 0:
            ax.scatter([x[best]], [values[best]], marker="*", s=180, c="crimson", edgecolors="white", zorder=4)
        baseline_words = draw_baseline(ax, baseline, values)
        ax.set_title(parameter.name + (" (log axis)" if parameter.log else ""), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(searched):]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel(metric_column, fontsize=8.5)
    handles = ending_handles(set(endings), names, marker="o")
    handles.append(Line2D([], [], marker="*", linestyle="", color="crimson", markersize=11, label="best trial"))
    if searched and baseline_words:
        handles.append(Line2D([], [], color="0.35", linestyle="--", label=baseline_words))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    return figure


def importance_chart(importances: dict[str, float], metric: str) -> Figure:
    """A horizontal bar per parameter, the most important on top, each labelled with its share.

    Example:
        >>> figure = importance_chart({"learning_rate": 0.7, "hidden_size": 0.3}, "val_loss")
        >>> len(figure.axes[0].patches)
        2
    """
    if not importances:
        raise ValueError("importances is empty: say why in the page instead of drawing an empty chart")
    names = list(importances)[::-1]  # barh draws bottom up
    shares = [float(importances[name]) for name in names]
    figure = Figure(figsize=(WIDTH_IN * 0.62, 0.42 * len(names) + 1.1), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ax.barh(names, shares, color=METRIC_COLOURS(0.35), height=0.6)
    for y, share in enumerate(shares):
        ax.text(share + 0.01, y, f"{100 * share:.0f}%", va="center", fontsize=8.5)
    ax.set_xlim(0, max(max(shares) * 1.15, 0.1))
    ax.set_xlabel(f"importance for reaching the best {metric} (shares sum to 100%)", fontsize=9)
    ax.tick_params(labelsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    return figure


def _check(trials: pd.DataFrame, searched: Sequence[SearchedParameter], metric_column: str, mode: str) -> None:
    if not isinstance(trials, pd.DataFrame):
        raise ValueError(f"trials must be the DataFrame of trials.csv, got {type(trials).__name__}")
    if metric_column not in trials:
        raise ValueError(f"trials has no column {metric_column!r} (columns: {list(trials.columns)})")
    missing = [p.name for p in searched if p.name not in trials]
    if missing:
        raise ValueError(f"trials has no column for the searched parameter(s) {missing}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode={mode!r} must be 'min' or 'max'")


def _positions(trials: pd.DataFrame, parameter: SearchedParameter) -> list[float]:
    """Each trial's value of ``parameter`` as a height in [0, 1] on its axis."""
    if parameter.categorical:
        options = [str(o) for o in parameter.args]
        step = 1.0 / max(len(options) - 1, 1)
        return [options.index(str(v)) * step if str(v) in options else math.nan for v in trials[parameter.name]]
    low, high = _span(trials, parameter)
    scale = np.log10 if parameter.log else (lambda v: v)
    values = pd.to_numeric(trials[parameter.name], errors="coerce").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return list((scale(values) - scale(low)) / (scale(high) - scale(low)))


def _span(trials: pd.DataFrame, parameter: SearchedParameter) -> tuple[float, float]:
    """The searched range, widened to the trials' values (a resumed sweep's space may have changed)."""
    values = pd.to_numeric(trials[parameter.name], errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    bounds = [float(a) for a in parameter.args[:2]]
    low, high = min([bounds[0], *values]), max([bounds[-1], *values])
    return (low, high if high > low else low * 2 + 1)


def _axis_ticks(trials: pd.DataFrame, parameter: SearchedParameter) -> list[tuple[float, str]]:
    if parameter.categorical:
        step = 1.0 / max(len(parameter.args) - 1, 1)
        return [(i * step, str(o)) for i, o in enumerate(parameter.args)]
    low, high = _span(trials, parameter)
    integer = parameter.kind in ("int", "logint")
    if integer and high - low <= 4:
        return [((v - low) / (high - low), str(int(v))) for v in range(int(low), int(high) + 1)]
    middle = math.sqrt(low * high) if parameter.log else (low + high) / 2
    if integer:
        middle = round(middle)  # its own height, so the label sits where that value's lines cross
    scale = np.log10 if parameter.log else (lambda v: v)
    return [((scale(v) - scale(low)) / (scale(high) - scale(low)), short_number(v, integer))
            for v in (low, middle, high)]


def log_axis(axis: Any, integer: bool = False) -> None:
    """A log axis with ticks at 1, 2 and 5 of each decade, written short (``2e-3``, ``64``, ``150k``)."""
    axis.axes.set_xscale("log") if axis.axis_name == "x" else axis.axes.set_yscale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: short_number(v, integer)))
    axis.set_minor_formatter(NullFormatter())


def short_number(value: float, integer: bool = False) -> str:
    """A tick label in few characters: ``2e-3``, ``0.15``, ``64``, ``150k``, ``1.2M``.

    Example:
        >>> short_number(0.002), short_number(150000, integer=True), short_number(64.0, integer=True)
        ('2e-3', '150k', '64')
    """
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g}k"
    if integer:
        return f"{round(value):d}"
    if value != 0 and abs(value) < 1e-2:
        mantissa, power = f"{value:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{int(power)}"
    return f"{value:.3g}"


def _mappable(norm: Normalize, cmap: ListedColormap) -> Any:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)
