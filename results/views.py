"""The report's HTML sections that are text and tables: the summary at the top and the trial
table. Each function returns a fragment of HTML; :mod:`results.report` puts them on the page.

    RunFolder + analysis ──► summary_section   winner in words, data, time, why trials ended
                         ──► trials_section    key columns first, the rest behind <details>

Every value from the run folder is escaped; nothing here needs a script.

Example:
    >>> html_text = trials_section(run, trial_endings(run))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lstm_sweep.results.analysis import (ENDINGS, data_facts, describe_winner, ending_label, ending_reasons,
                                         format_duration)
from lstm_sweep.results.run_folder import RunFolder

# trials.csv columns behind the "details" toggle, in this order; any column not named here
# or among the key columns goes there too, after them.
DETAIL_COLUMNS = ("batch_size_requested", "batch_size_used", "predicted_peak_mb", "measured_peak_mb",
                  "budget_mb", "gpu_share", "device", "oom_retries", "node", "baseline", "error")
TEXT_COLUMNS = ("trial_id", "ended", "error", "node", "device")  # left-aligned, as words are
HEADERS = {"trial_id": "trial", "batch_size_requested": "batch requested", "batch_size_used": "batch used",
           "predicted_peak_mb": "predicted MB", "measured_peak_mb": "measured MB", "budget_mb": "budget MB",
           "gpu_share": "GPU share", "oom_retries": "OOM retries", "seconds": "seconds"}


def image_tag(png: bytes, alt: str, css_class: str = "") -> str:
    """An ``<img>`` holding ``png`` as a data URI, so the page needs no file beside it.

    Example:
        >>> image_tag(b"\\x89PNG...", "a plot")[:40]
        '<img alt="a plot" src="data:image/png;ba'
    """
    if not isinstance(png, (bytes, bytearray)):
        raise ValueError(f"png must be bytes, got {type(png).__name__}")
    data = base64.b64encode(bytes(png)).decode("ascii")
    extra = f' class="{html.escape(css_class)}"' if css_class else ""
    return f'<img alt="{html.escape(alt)}"{extra} src="data:image/png;base64,{data}">'


def summary_section(run: RunFolder, endings: pd.Series, busy_share: float | None = None) -> str:
    """Four boxes: the winner (its configuration in words, its metric, the baseline's, the
    retrain's), the data, where the time went, and why trials ended (counts and reasons).

    Example:
        >>> "Why trials ended" in summary_section(run, trial_endings(run))  # doctest: +SKIP
        True
    """
    if len(endings) != len(run.trials):
        raise ValueError(f"endings has {len(endings)} entries for {len(run.trials)} trials")
    boxes = [_winner_box(run), _data_box(run), _time_box(run, busy_share), _endings_box(run, endings)]
    return '<section id="summary"><div class="boxes">' + "".join(boxes) + "</div></section>"


def trials_section(run: RunFolder, endings: pd.Series) -> str:
    """The trial table, best first: trial, how it ended, the metrics, epochs, the searched
    parameters and seconds; every other column in a second table under a ``<details>``
    toggle. Rows carry their ending as a class (``ending-stopped``), which the style colours.

    Example:
        >>> '<details' in trials_section(run, trial_endings(run))  # doctest: +SKIP
        True
    """
    trials = run.trials.copy()
    if len(endings) != len(trials):
        raise ValueError(f"endings has {len(endings)} entries for {len(trials)} trials")
    trials["ended"] = [ending_label(e, run) for e in endings]
    if "gpu_share" in trials and "device" not in trials:
        # An older trials.csv names no device: a GPU share above 0 means the trial ran on a GPU.
        share = pd.to_numeric(trials["gpu_share"], errors="coerce").fillna(0.0)
        trials["device"] = ["CPU" if s <= 0 else f"GPU ({s:.2g} of one)" for s in share]
    metrics = [run.metric_column] + [c for c in trials.columns
                                     if c.startswith("best_") and c != run.metric_column]
    key = ["trial_id", "ended", *metrics, "epochs", *(p.name for p in run.searched if p.name in trials), "seconds"]
    key = [c for c in key if c in trials]
    rest = [c for c in DETAIL_COLUMNS if c in trials and c not in key]
    rest += [c for c in trials.columns if c not in key and c not in rest and c != "status"]
    rest = [c for c in rest if not trials[c].isna().all()]  # an empty error column says nothing
    classes = [f"ending-{e}" for e in endings]
    # Parameters searched on a log scale read best as 6.3e-3 when they go that small; others in decimals.
    exponent = [p.name for p in run.searched if p.log and p.name in trials
                and (pd.to_numeric(trials[p.name], errors="coerce").abs() < 1e-2).any()]
    count = len(trials)
    parts = [f"<p>{count} trial{'s' * (count != 1)}, best first by {html.escape(run.metric_column)}; "
             "the row colour says how each ended.</p>", _table(trials, key, classes, run.metric_column, exponent)]
    if rest:
        parts.append(f"<details><summary>more columns: {html.escape(', '.join(HEADERS.get(c, c) for c in rest))}"
                     f"</summary>{_table(trials, ['trial_id', 'ended', *rest], classes)}</details>")
    return '<div class="scroll">' + "".join(parts) + "</div>"


def format_value(column: str, value: Any, exponent: bool | None = None) -> str:
    """A table cell in few characters: learning rates as ``6.3e-3``, metrics to 4 decimals,
    memory and seconds to 1, other fractions to 2 significant digits; missing as empty.
    ``exponent`` True writes every non-integer number as ``1.4e-2``, False never (a table's
    column is one or the other, so it never mixes ``0.014`` and ``6.3e-3``); None: by the value.

    Example:
        >>> format_value("learning_rate", 0.006256), format_value("best_val_loss", 2.15672), format_value("dropout", 0.1853)
        ('6.3e-3', '2.1567', '0.19')
    """
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if column.startswith(("best_", "last_")) or column == "baseline":
        return f"{float(value):.4f}"
    if column == "seconds" or column.endswith("_mb"):
        return f"{float(value):.1f}"
    if float(value).is_integer():
        return f"{int(value):,}" if abs(value) >= 10000 else str(int(value))
    value = float(value)
    if value != 0 and (exponent is True or exponent is None and abs(value) < 1e-2):
        mantissa, power = f"{value:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{int(power)}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.3g}"


def _table(frame: pd.DataFrame, columns: Sequence[str], row_classes: Sequence[str], first_metric: str = "",
           exponent_columns: Sequence[str] = ()) -> str:
    text_columns = {c for c in columns if c in TEXT_COLUMNS or not all(map(_is_number, frame[c].dropna()))}
    head = "".join(f'<th class="{"left" if c in text_columns else ""}">'
                   f"{html.escape(HEADERS.get(c, c.replace('_', ' ')))}</th>" for c in columns)
    exponent = {c: c in exponent_columns for c in columns}
    rows = []
    for (_, row), css in zip(frame.iterrows(), row_classes):
        cells = []
        for c in columns:
            text = html.escape(format_value(c, row[c], exponent[c]))
            left = c in text_columns
            cells.append(f'<td class="{"left" if left else ""}{" metric" if c == first_metric else ""}">{text}</td>')
        rows.append(f'<tr class="{css}">{"".join(cells)}</tr>')
    return f'<table class="trials"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _winner_box(run: RunFolder) -> str:
    best, metric, mode = run.best or {}, run.metric, run.mode
    value = best.get(f"best_{metric}")
    if value is None:
        return _box("Winner", "<p>No trial reported a finite " + html.escape(metric) + ": there is no winner. "
                    "The trial table's error column says why.</p>")
    chars = (run.config.get("data") or {}).get("tokens") == "char"
    bits = (f" ({value / math.log(2):.4f} bits per character: val_loss / ln 2)"
            if chars and metric == "val_loss" else "")
    lines = [f'<p class="config">{html.escape(describe_winner(run))}</p>',
             f"<p>{html.escape(metric)} <b>{value:.4f}</b>{bits} at epoch {best.get('best_epoch')} of "
             f"{best.get('epochs')} (trial <code>{html.escape(str(best.get('trial_id')))}</code>)</p>"]
    baseline = run.baseline
    if math.isfinite(baseline):
        gain = (baseline - value) if mode == "min" else (value - baseline)
        lines.append(f"<p>baseline (a model that ignores the context) {baseline:.4f}: the winner is "
                     f"{abs(gain):.4f} {'better' if gain > 0 else 'worse'}</p>")
    card = run.card or {}
    if card.get(f"best_{metric}") is not None:
        retrained_bits = (f" ({card['best_bits_per_char']:.4f} bits per character)"
                          if chars and card.get("best_bits_per_char") is not None and metric == "val_loss" else "")
        lines.append(f"<p>retrained for {card.get('epochs')} epochs: {html.escape(metric)} "
                     f"<b>{card[f'best_{metric}']:.4f}</b>{retrained_bits} at epoch {card.get('best_epoch')}, "
                     "exported to <code>winner/export/</code></p>")
    else:
        lines.append(f"<p>not retrained yet: <code>lstm-sweep retrain {html.escape(str(run.path))}</code></p>")
    return _box("Winner", "".join(lines))


def _data_box(run: RunFolder) -> str:
    facts, missing = data_facts(run)
    source = "the built-in synthetic corpus" if facts.get("source") == "builtin" else f"<code>{html.escape(str(facts.get('source')))}</code>"
    unit = "examples" if run.is_classifier else "sentences"
    files = f", {_n(facts['files'])} files" if facts.get("files") and facts.get("source") != "builtin" else ""
    rows = [("source", source + files)]
    if run.is_classifier:
        if "examples" in facts:
            rows.append(("examples", f"{_n(facts['examples'])} read, {_n(facts.get('dropped_empty', 0))} empty after cleaning dropped"))
        if facts.get("class_counts"):
            rows.append(("classes", ", ".join(f"{html.escape(str(k))} {_n(v)}" for k, v in facts["class_counts"].items())))
        elif run.labels:
            rows.append(("classes", html.escape(", ".join(run.labels))))
        if facts.get("majority_share_val") is not None:
            rows.append(("majority class", f"{100 * float(facts['majority_share_val']):.1f}% of validation "
                                           "(the accuracy of always answering it)"))
    elif facts.get("tokens") == "char":
        if "characters" in facts:
            rows.append(("characters", f"{_n(facts['characters'])} in {_n(facts['blocks'])} blocks of "
                                       f"{_n(facts['block_chars'])}, {_n(facts['val_blocks'])} of them for validation"
                                       f"{', cleaned' if facts.get('clean') else ', as read (data.clean: false)'}"))
        rows.append(("windows", f"{facts.get('seq_len')} characters, a training window every {facts.get('stride')}, "
                                f"validation windows side by side; no window crosses a block"))
        unit = "windows"
    else:
        kept = f"{_n(facts['kept'])} kept" if "kept" in facts else "kept: not recorded"
        read = f" of {_n(facts['raw_lines'])} lines" if "raw_lines" in facts else ""
        dropped = (f"; {_n(facts['dropped_too_long'])} longer than {facts.get('max_tokens')} tokens dropped"
                   if "dropped_too_long" in facts else f" (at most {facts.get('max_tokens')} tokens)")
        cleaned = f", {_n(facts['dropped_by_cleaning'])} empty after cleaning" if "dropped_by_cleaning" in facts else ""
        rows.append(("sentences", f"{kept}{read}{dropped}{cleaned}"))
    if "train" in facts:
        rows.append(("split", f"{_n(facts['train'])} train / {_n(facts['val'])} validation {unit}"
                              f" (val_fraction {facts.get('val_fraction')})"))
    if "vocab_size_real" in facts:
        rows.append(("vocabulary", f"{_n(facts['vocab_size_real'])} tokens (cap {_n(facts.get('vocab_size'))})"))
    body = "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"
    if missing:
        body += (f'<p class="note">not recorded in the run folder: {html.escape(", ".join(missing))}'
                 f"{' (retrain the winner to record the split)' if 'train' in missing else ''}</p>")
    return _box("Data", body)


def _time_box(run: RunFolder, busy_share: float | None) -> str:
    budget = run.config.get("budget") or {}
    seconds = pd.to_numeric(run.trials.get("seconds", pd.Series(dtype=float)), errors="coerce").fillna(0.0)
    wall = run.wall_seconds
    rows = [("wall time", format_duration(wall) + " from Ray Tune's start to the last trial's last report"
             if wall is not None else "not recorded (no trial results under ray/)"),
            ("trial time", f"{seconds.sum() / 3600:.2f} trial-hours ({format_duration(float(seconds.sum()))}) over "
                           f"{len(run.trials)} trials, at most {budget.get('max_concurrent', '?')} at once"
                           + (f"; the slots were busy {100 * busy_share:.0f}% of the wall time" if busy_share else ""))]
    scheduler, searcher = run.config.get("scheduler") or {}, run.config.get("searcher") or {}
    asha = run.config.get("asha") or {}
    rows.append(("search", f"{html.escape(str(searcher.get('kind', 'tpe')))} searcher, "
                           f"{html.escape(str(scheduler.get('kind', 'asha')))} scheduler (grace {asha.get('grace_period')}, "
                           f"reduction {asha.get('reduction_factor')}), up to {budget.get('max_epochs')} epochs a trial"
                           + (", baseline stop on" if asha.get("stop_at_baseline") else "")))
    return _box("Time", "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>")


def _endings_box(run: RunFolder, endings: pd.Series) -> str:
    counts = endings.value_counts()
    reasons = ending_reasons(run, endings)
    rows = []
    for ending in ENDINGS:
        n = int(counts.get(ending, 0))
        why = "".join(f"<li>{html.escape(text)}{f' ({k}×)' if k > 1 else ''}</li>" for text, k in reasons.get(ending, [])[:5])
        rows.append(f'<tr class="ending-{ending}{" zero" if not n else ""}"><td class="left">'
                    f"{html.escape(ending_label(ending, run))}</td><td>{n}</td>"
                    f'<td class="left">{f"<ul>{why}</ul>" if why else ""}</td></tr>')
    return _box("Why trials ended", '<table class="endings">' + "".join(rows) + "</table>")


def _box(title: str, body: str) -> str:
    return f'<div class="box"><h3>{html.escape(title)}</h3>{body}</div>'


def _n(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) else html.escape(str(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
