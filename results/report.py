"""``report.html``: a run on one self-contained page (tables inline, plots as data URIs).

The flow, top to bottom of the page:

    read_run_folder(run_dir)                     results.run_folder: every file, no Ray
      ├─ summary       winner in words, data, time, why trials ended    results.views
      ├─ trials        key columns first, the rest behind <details>      results.views
      ├─ curves        val_loss.png (a classifier's also val_accuracy.png), as the sweep wrote them
      ├─ parameters    parallel coordinates, a scatter per parameter     results.figures
      ├─ importance    PED-ANOVA over optuna.db                          results.analysis + figures
      ├─ timeline      a bar per trial on its worker slot                results.run_plots
      ├─ cost          metric against seconds and parameters, the Pareto front
      └─ winner        the retrain: loss.png, history, a classifier's confusion matrix, samples

It shows what the run folder holds, whatever stage the run reached: a view whose files are
missing says so in a line instead of a plot. No script, no external asset: the page opens
from a mail attachment or an archive as well as from the folder, and reads at 1280 px.
"""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lstm_sweep.results import analysis, figures, run_plots
from lstm_sweep.results.io import atomic_write_text
from lstm_sweep.results.plots import format_params
from lstm_sweep.results.run_folder import RunFolder, read_confusion, read_run_folder
from lstm_sweep.results.views import format_value, image_tag, summary_section, trials_section

log = logging.getLogger(__name__)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin: 0 0 0.4em; } nav { font-size: 13px; color: #555; } nav a { margin-right: 0.9em; color: #1a5fb4; }
.boxes { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.box { border: 1px solid #e3e3e3; border-radius: 6px; padding: 10px 14px; background: #fcfcfc; }
.box p { margin: 0.25em 0; } .config { font-size: 15px; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; } dt { color: #666; } dd { margin: 0; }
.note { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; white-space: normal; vertical-align: bottom; max-width: 7em; }
td.left, th.left, th:first-child { text-align: left; }
td.metric { font-weight: 600; } td ul { margin: 0; padding-left: 1.1em; white-space: normal; }
table.endings td { vertical-align: top; } table.endings tr.zero { color: #aaa; }
tr.ending-completed td:first-child { border-left: 4px solid #2e7d32; }
tr.ending-stopped { background: #fff6ec; } tr.ending-stopped td:first-child { border-left: 4px solid #ef6c00; }
tr.ending-budget { background: #eef0fa; } tr.ending-budget td:first-child { border-left: 4px solid #3949ab; }
tr.ending-at_baseline { background: #f6f1ef; } tr.ending-at_baseline td:first-child { border-left: 4px solid #8d6e63; }
tr.ending-infeasible { color: #888; } tr.ending-infeasible td:first-child { border-left: 4px solid #9e9e9e; }
tr.ending-failed { background: #fdecec; } tr.ending-failed td:first-child { border-left: 4px solid #c62828; }
table.trials tbody tr:first-child { font-weight: 600; }
details { margin-top: 0.6em; } summary { cursor: pointer; color: #1a5fb4; }
.scroll { overflow-x: auto; } img { max-width: 100%; } img.half { max-width: 62%; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from the files in ``run_dir``; return its path.

    Example:
        >>> write_report("runs/quick-20261122-101500")  # doctest: +SKIP
        PosixPath('runs/quick-20261122-101500/report.html')
    """
    run = read_run_folder(run_dir)  # RunFolderError without trials.csv or sweep.yaml
    endings = analysis.trial_endings(run)
    slotted = analysis.assign_slots(run.timeline) if len(run.timeline) else None
    busy = analysis.busy_share(slotted, run.wall_seconds) if slotted is not None else None
    names = {ending: analysis.ending_label(ending, run) for ending in analysis.ENDINGS}
    sections = [
        ("summary", "Summary", summary_section(run, endings, busy)),
        ("trials", "Trials", trials_section(run, endings)),
        ("curves", "Curves", _curves(run)),
        ("parameters", "Parameters and the metric", _parameters(run, endings, names)),
        ("importance", "Parameter importance", _importance(run)),
        ("timeline", "Timeline", _timeline(run, endings, slotted, names)),
        ("cost", "Cost against quality", _cost(run, endings, names)),
        ("winner", "Winner, retrained", _winner(run)),
    ]
    nav = " ".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _ in sections)
    title = f"lstm-sweep run {run.path.name}"
    body = "\n".join(f'<section id="s-{key}"><h2 id="{key}">{html.escape(heading)}</h2>\n{content}</section>'
                     if key != "summary" else content for key, heading, content in sections)
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            f"<h1>lstm-sweep run <code>{html.escape(run.path.name)}</code></h1>\n"
            f'<p class="note">{html.escape(run.task.replace("_", " "))} · metric {html.escape(run.metric)} '
            f"({'lower' if run.mode == 'min' else 'higher'} is better) · {len(run.trials)} trials</p>\n<nav>{nav}</nav>\n{body}\n</body></html>\n")
    path = run.path / "report.html"
    atomic_write_text(path, page)
    return path


def _figure(make: Callable[[], object], alt: str, css_class: str = "") -> str:
    """The figure ``make`` draws as an inline image, or a line saying it could not be drawn.

    The report is written at the end of every sweep, after its tables: a view that fails on an
    odd run folder costs that view, never the sweep's exit status or the rest of the page.
    """
    try:
        return f"<p>{image_tag(figures.png_bytes(make()), alt, css_class)}</p>"
    except Exception as error:  # noqa: BLE001 - see the docstring
        log.warning("report.html: could not draw %s", alt, exc_info=True)
        return f'<p class="note">could not draw {html.escape(alt)}: {html.escape(str(error))}</p>'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _png_file(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    return f"<p>{image_tag(path.read_bytes(), alt)}</p>"


def _finite_values(run: RunFolder) -> np.ndarray:
    if run.metric_column not in run.trials:
        return np.full(len(run.trials), np.nan)
    return pd.to_numeric(run.trials[run.metric_column], errors="coerce").to_numpy(dtype=float)


def _curves(run: RunFolder) -> str:
    plotted = [name for name in ("val_loss", "val_accuracy") if (run.path / f"{name}.png").is_file()]
    parts = [_png_file(run.path / f"{name}.png", f"{name.replace('_', ' ')} of every trial per epoch") for name in plotted]
    return "".join(parts) or _note("no val_loss.png in the run folder: `lstm-sweep report` draws it")


def _parameters(run: RunFolder, endings: pd.Series, names: dict[str, str]) -> str:
    if not run.searched:
        return _note("nothing was searched: every value of the space is fixed")
    if not np.isfinite(_finite_values(run)).any():
        return _note(f"no trial reported a finite {run.metric}: nothing to relate the parameters to")
    return (_figure(lambda: figures.parallel_coordinates(run.trials, run.searched, run.metric_column, run.mode),
                    "parallel coordinates of the searched parameters")
            + _figure(lambda: figures.parameter_scatters(run.trials, run.searched, run.metric_column, run.mode,
                                                         endings, run.baseline, names),
                      "the metric against each parameter"))


def _importance(run: RunFolder) -> str:
    try:
        importances, note = analysis.parameter_importances(run)
    except Exception as error:  # noqa: BLE001 - an unreadable optuna.db costs this view only
        log.warning("report.html: no parameter importance", exc_info=True)
        return _note(f"could not read optuna.db: {error}")
    if not importances:
        return _note(note)
    return _figure(lambda: figures.importance_chart(importances, run.metric), "parameter importance", "half") + _note(note)


def _timeline(run: RunFolder, endings: pd.Series, slotted: pd.DataFrame | None, names: dict[str, str]) -> str:
    if slotted is None:
        return _note("no trial results under ray/ (the Ray Tune experiment): no timeline")
    by_trial = dict(zip(run.trials["trial_id"].astype(str), endings))
    return (_figure(lambda: run_plots.timeline_chart(slotted, by_trial, run.tune_started, names),
                    "timeline of the trials per worker slot")
            + _note("A bar runs from the trial's start in its worker to its last report; slots are packed "
                    "from the start times (Ray records no slot). Gaps are time no trial was running: Ray "
                    "starting a worker, or the searcher waiting for a result."))


def _cost(run: RunFolder, endings: pd.Series, names: dict[str, str]) -> str:
    values = _finite_values(run)
    if np.isfinite(values).sum() < 2 or "seconds" not in run.trials:
        return _note("fewer than two trials reported a value: no trade-off to show")
    counts = analysis.parameter_counts(run)
    close, distance = analysis.close_to_best(values, run.baseline, run.mode)
    seconds = pd.to_numeric(run.trials["seconds"], errors="coerce").to_numpy(dtype=float)
    picks = []
    for label, cost, unit in (("fastest", seconds, "s"), ("smallest", counts.to_numpy(dtype=float), "parameters")):
        candidates = np.flatnonzero(close & np.isfinite(cost))
        if len(candidates):
            i = candidates[np.argmin(cost[candidates])]
            picks.append(f"the {label} is trial <code>{html.escape(str(run.trials['trial_id'].iloc[i]))}</code> "
                         f"({format_value('seconds', cost[i]) + ' s' if unit == 's' else f'{int(cost[i]):,} parameters'}, "
                         f"{html.escape(run.metric)} {values[i]:.4f})")
    share = f"{100 * analysis.CLOSE_SHARE:.0f}% of the best trial's gain over the baseline" if math.isfinite(
        run.baseline) else "1% of the best value"
    text = (f"<p>Within {distance:.4g} of the best {html.escape(run.metric)} ({share}): "
            + "; ".join(picks) + ". A smaller or faster model this close to the best is often the one to export.</p>")
    useful = analysis.better_than_baseline(values, run.baseline, run.mode)
    front = (analysis.pareto_front(np.where(useful, seconds, np.nan), values, run.mode)
             | analysis.pareto_front(np.where(useful, counts.to_numpy(), np.nan), values, run.mode))
    rows = "".join(
        f"<tr><td class='left'>{html.escape(str(row.trial_id))}</td><td class='metric'>{values[i]:.4f}</td>"
        f"<td>{format_value('seconds', seconds[i])}</td><td>{format_value('parameters', counts.iloc[i])}</td>"
        f"<td class='left'>{html.escape(format_params({p.name: row[p.name] for p in run.searched}))}</td></tr>"
        for i, (_, row) in enumerate(run.trials.iterrows()) if front[i])
    table = (f"<details><summary>the trials on a Pareto front (cheapest for their {html.escape(run.metric)})</summary>"
             f"<table><tr><th>trial</th><th>{html.escape(run.metric)}</th><th>seconds</th><th>parameters</th>"
             f"<th>parameters searched</th></tr>{rows}</table></details>")
    return (text + _figure(lambda: run_plots.cost_quality_chart(run.trials, counts, run.metric_column, run.mode,
                                                                list(endings), close, distance, run.baseline, names),
                           "the metric against training seconds and parameter count") + table)


def _winner(run: RunFolder) -> str:
    winner = run.path / "winner"
    parts = []
    if (winner / "history.csv").is_file():
        history = pd.read_csv(winner / "history.csv")
        parts.append(history.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
        parts.append(_png_file(winner / "loss.png", "training and validation loss of the retrained winner"))
    else:
        parts.append(_note(f"the winner has not been retrained: lstm-sweep retrain {run.path}"))
    if run.is_classifier:
        parts.append(_confusion(run))
    for name, heading in (("samples.txt", "Generated text"), ("predictions.txt", "Predictions on validation examples")):
        if (winner / name).is_file():
            parts += [f"<h3>{heading}</h3>", f"<pre>{html.escape((winner / name).read_text(encoding='utf-8'))}</pre>"]
    return "".join(parts)


def _confusion(run: RunFolder) -> str:
    try:
        confusion = read_confusion(run)
    except Exception as error:  # noqa: BLE001 - a malformed confusion.json costs this view only
        return _note(f"could not read the confusion matrix: {error}")
    if confusion is None:
        return _note("no confusion matrix: the run folder has neither winner/confusion.json nor winner/predictions.txt")
    title = f"the winner on {confusion.source}"
    note = "" if confusion.complete else _note(
        f"counted from {confusion.source} only, not the whole validation split "
        "(winner/confusion.json, when recorded, holds that)")
    return "<h3>Confusion matrix</h3>" + _figure(lambda: run_plots.confusion_chart(confusion.labels, confusion.matrix, title),
                                                 "confusion matrix of the winner", "half") + note
