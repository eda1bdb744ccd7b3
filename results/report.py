"""``report.html``: a run on one self-contained page (tables inline, plots as data URIs).

It shows what the run folder holds, whatever stage it reached: the trial table and
``val_loss.png`` (a classifier's also ``val_accuracy.png``) after a search, then the winner's
``loss.png``, its model card and its generated samples (a classifier's predictions) once it was
retrained. No script, no external asset: it opens from a mail attachment or an archive as well
as from the folder.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from lstm_sweep.errors import RunFolderError
from lstm_sweep.results.io import atomic_write_text

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #f6f6f6; } td:nth-child(2), th:nth-child(2) { text-align: left; }
.scroll { overflow-x: auto; } img { max-width: 100%; } pre { background: #f6f6f6; padding: 0.8em; }
.infeasible, .failed { color: #999; }
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from the files in ``run_dir``; return its path.

    Example:
        >>> write_report("runs/quick-20261122-101500")  # doctest: +SKIP
        PosixPath('runs/quick-20261122-101500/report.html')
    """
    run_dir = Path(run_dir)
    if not (run_dir / "trials.csv").is_file():
        raise RunFolderError(f"{run_dir} has no trials.csv: run `lstm-sweep report {run_dir}` first")
    trials = pd.read_csv(run_dir / "trials.csv")
    parts = [f"<h1>lstm-sweep run <code>{html.escape(run_dir.name)}</code></h1>", _summary(trials)]

    parts += ["<h2>Trials (best first)</h2>", f'<div class="scroll">{_table(trials)}</div>']
    for name in ("val_loss", "val_accuracy"):  # a classifier's sweep has both plots
        parts += _image(run_dir / f"{name}.png", f"{name.replace('_', ' ')} of every trial")

    winner = run_dir / "winner"
    card_file = winner / "export" / "model_card.json"
    if (winner / "history.csv").is_file():
        parts.append("<h2>Winner, retrained</h2>")
        if card_file.is_file():
            card = json.loads(card_file.read_text(encoding="utf-8"))
            metric = card.get("metric", "val_loss")
            parts.append(f"<p>best {metric} <b>{card.get(f'best_{metric}', float('nan')):.4f}</b> at epoch "
                         f"{card.get('best_epoch')} of {card.get('epochs')} (the sweep's "
                         f"{card.get(f'sweep_{metric}', float('nan')):.4f}); exported to "
                         f"<code>winner/export/</code>.</p>")
            parts.append(f"<pre>{html.escape(json.dumps(card.get('config', {}), indent=1))}</pre>")
        parts.append(_table(pd.read_csv(winner / "history.csv")))
        parts += _image(winner / "loss.png", "training and validation loss of the winner")
    if (winner / "samples.txt").is_file():
        parts += ["<h2>Generated text</h2>",
                  f"<pre>{html.escape((winner / 'samples.txt').read_text(encoding='utf-8'))}</pre>"]
    if (winner / "predictions.txt").is_file():
        parts += ["<h2>Predictions on validation examples</h2>",
                  f"<pre>{html.escape((winner / 'predictions.txt').read_text(encoding='utf-8'))}</pre>"]

    page = (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>lstm-sweep {html.escape(run_dir.name)}</title><style>{STYLE}</style></head>\n"
            f"<body>\n" + "\n".join(parts) + "\n</body></html>\n")
    path = run_dir / "report.html"
    atomic_write_text(path, page)
    return path


def _summary(trials: pd.DataFrame) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in trials.status.value_counts().items())
    # trials.csv: ..., epochs, best_<metric>, ...: the column after `epochs` names the metric.
    column = trials.columns[list(trials.columns).index("epochs") + 1]
    best = trials.dropna(subset=[column]).head(1)
    line = f"<p>{len(trials)} trials: {counts}."
    if len(best):
        line += (f" Best {column.removeprefix('best_')} <b>{best[column].item():.4f}</b> "
                 f"(trial {html.escape(str(best.trial_id.item()))}).")
    return line + "</p>"


def _table(frame: pd.DataFrame) -> str:
    shown = frame.drop(columns=[c for c in ("error",) if c in frame and frame[c].isna().all()])
    return shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0, escape=True)


def _image(path: Path, alt: str) -> list[str]:
    if not path.is_file():
        return []
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return [f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>']
