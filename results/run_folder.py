"""A run folder read back as plain data, from its files alone: no Ray, no search code.

    sweep.yaml                    -> the config, its task, metric and mode, the searched parameters
    trials.csv, curves.csv        -> the trial table (best first) and the per-epoch figures
    vocab.json, labels.json       -> the vocabulary's size, a classifier's class names
    ray/*/result.json             -> each trial's start, end, epoch ends, outcome and reason
    ray/experiment_state-*.json   -> when Ray Tune started the sweep
    best.json, winner/card.json   -> the winner, and its retrain once there was one
    winner/confusion.json         -> a classifier winner's confusion matrix (else predictions.txt's few lines)
    data.json                     -> the corpus figures (``data_pipeline``'s stats), when recorded

Every file but ``trials.csv`` and ``sweep.yaml`` may be missing (a sweep cut short, a folder
copied without ``ray/``): what is absent reads as empty, and the report says so.

Example:
    >>> run = read_run_folder("runs/quick-20261122-101500")  # doctest: +SKIP
    >>> run.metric, [p.name for p in run.searched]  # doctest: +SKIP
    ('val_loss', ['embedding_size', 'hidden_size', 'num_layers', 'dropout', 'learning_rate', 'batch_size'])
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lstm_sweep.errors import RunFolderError

DISTRIBUTIONS = ("choice", "int", "logint", "uniform", "loguniform")  # sweep.yaml's space, as search/config.py
EXPERIMENT_DIR = "ray"
TIMELINE_COLUMNS = ["trial_id", "node", "start", "end", "epoch_ends", "outcome", "reason"]


@dataclass(frozen=True)
class SearchedParameter:
    """One entry of the sweep's space that was searched: ``{kind: args}`` in ``sweep.yaml``.

    Example:
        >>> SearchedParameter("learning_rate", "loguniform", (1e-3, 2e-2)).log
        True
    """

    name: str
    kind: str  # one of DISTRIBUTIONS
    args: tuple

    @property
    def log(self) -> bool:
        """Sampled log-uniformly: plots use a log axis for it."""
        return self.kind in ("logint", "loguniform")

    @property
    def categorical(self) -> bool:
        return self.kind == "choice"


@dataclass
class RunFolder:
    """What a run folder holds, read once; see the module docstring for where each field comes from."""

    path: Path
    config: dict[str, Any]
    trials: pd.DataFrame
    curves: pd.DataFrame
    searched: list[SearchedParameter]
    timeline: pd.DataFrame  # TIMELINE_COLUMNS, one row per trial that reported
    vocab_size: int | None = None
    labels: list[str] = field(default_factory=list)
    tune_started: float | None = None  # Unix time Ray Tune started the experiment
    best: dict[str, Any] | None = None
    card: dict[str, Any] | None = None  # winner/card.json
    data_stats: dict[str, Any] | None = None  # data.json

    @property
    def task(self) -> str:
        return str(self.config.get("task", "language_model"))

    @property
    def metric(self) -> str:
        return str(self.config.get("metric", "val_loss"))

    @property
    def mode(self) -> str:
        return str(self.config.get("mode", "min"))

    @property
    def metric_column(self) -> str:
        """The trials.csv column of the sweep's metric: ``best_val_loss``."""
        return f"best_{self.metric}"

    @property
    def baseline(self) -> float:
        """The metric of a model that ignores the context (trials.csv ``baseline``); NaN if none.

        Every trial of a sweep shares it unless the vocabulary is searched; then the median.
        """
        if "baseline" not in self.trials:
            return math.nan
        values = pd.to_numeric(self.trials["baseline"], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        return float(np.median(values)) if len(values) else math.nan

    @property
    def is_classifier(self) -> bool:
        """A classifier's run folder holds its class names (``labels.json``); search.tasks is the
        one place that knows the tasks, and results reads only what the folder holds."""
        return (self.path / "labels.json").is_file()

    @property
    def wall_seconds(self) -> float | None:
        """From Ray Tune's start (else the first trial's) to the last trial's last report; None without ray/."""
        if not len(self.timeline) or not np.isfinite(self.timeline["end"].astype(float)).any():
            return None
        first = float(self.timeline["start"].min())
        start = min(first, self.tune_started) if self.tune_started is not None else first
        return float(self.timeline["end"].max()) - start


def read_run_folder(run_dir: str | Path) -> RunFolder:
    """Read ``run_dir`` (made by ``lstm-sweep search``) into a :class:`RunFolder`.

    Raises:
        RunFolderError: ``run_dir`` has no ``trials.csv`` or no ``sweep.yaml``.

    Example:
        >>> run = read_run_folder("runs/quick-20261122-101500")  # doctest: +SKIP
        >>> len(run.trials), run.timeline.columns.tolist()[:3]  # doctest: +SKIP
        (12, ['trial_id', 'node', 'start'])
    """
    run_dir = Path(run_dir)
    for name in ("trials.csv", "sweep.yaml"):
        if not (run_dir / name).is_file():
            raise RunFolderError(f"{run_dir} has no {name}: pass a folder made by `lstm-sweep search`"
                                 + (f" (or run `lstm-sweep report {run_dir}`)" if name == "trials.csv" else ""))
    config = yaml.safe_load((run_dir / "sweep.yaml").read_text(encoding="utf-8")) or {}
    if not isinstance(config, dict):
        raise RunFolderError(f"{run_dir / 'sweep.yaml'} is not a mapping of sections: is it a sweep file?")
    # Trial ids are hex; read as text, an id such as "1e5a0001" would become a number.
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str, "node": str, "error": str})
    curves_file = run_dir / "curves.csv"
    curves = pd.read_csv(curves_file, dtype={"trial_id": str}) if curves_file.is_file() else pd.DataFrame()
    return RunFolder(
        path=run_dir, config=config, trials=trials, curves=curves,
        searched=searched_parameters(config.get("space") or {}),
        timeline=read_timeline(run_dir / EXPERIMENT_DIR),
        vocab_size=_vocab_size(run_dir / "vocab.json"),
        labels=list((_json(run_dir / "labels.json") or {}).get("labels", [])),
        tune_started=_tune_started(run_dir / EXPERIMENT_DIR),
        best=_json(run_dir / "best.json"), card=_json(run_dir / "winner" / "card.json"),
        data_stats=_json(run_dir / "data.json"),
    )


def searched_parameters(space: dict[str, Any]) -> list[SearchedParameter]:
    """The entries of a sweep's ``space`` that vary, in their order (a fixed value, or a
    choice of one, is not searched).

    Example:
        >>> searched_parameters({"hidden_size": {"logint": [32, 256]}, "num_layers": 1})
        [SearchedParameter(name='hidden_size', kind='logint', args=(32, 256))]
    """
    if not isinstance(space, dict):
        raise ValueError(f"space={space!r} must be the mapping of sweep.yaml's space section")
    found = []
    for name, spec in space.items():
        if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
            kind, args = next(iter(spec.items()))
            args = tuple(args) if isinstance(args, (list, tuple)) else (args,)
            if kind == "choice" and len(set(map(str, args))) < 2:
                continue
            found.append(SearchedParameter(str(name), kind, args))
    return found


def read_timeline(experiment_dir: str | Path) -> pd.DataFrame:
    """One row per trial of a Ray Tune experiment folder, from each trial's ``result.json``.

    ``start`` is when the trial's process entered training the first time (the trainable's
    ``trial_started``; an infeasible trial's report lacks it, so its report time less its own
    duration), ``end`` its last report's ``timestamp``, ``epoch_ends`` the report times of its
    epochs, ``outcome`` and ``reason`` its last report's (``at_baseline``, ``infeasible``,
    ``out_of_memory`` or empty). Times are Unix seconds. No folder, no rows.

    Example:
        >>> read_timeline("runs/quick/ray").loc[0, ["trial_id", "outcome"]].tolist()  # doctest: +SKIP
        ['a3e1be6a', '']
    """
    rows = []
    experiment_dir = Path(experiment_dir)
    for result_file in sorted(experiment_dir.glob("**/result.json")) if experiment_dir.is_dir() else []:
        reports = _json_lines(result_file)
        if not reports or "trial_id" not in reports[-1]:
            continue
        last = reports[-1]
        ends = [float(r["timestamp"]) for r in reports if "timestamp" in r]
        starts = [float(r["trial_started"]) for r in reports if _finite(r.get("trial_started"))]
        first = reports[0]
        start = min(starts) if starts else (ends[0] - float(first.get("time_this_iter_s", 0.0)) if ends else math.nan)
        end = max(ends) if ends else math.nan
        rows.append({
            "trial_id": str(last["trial_id"]), "node": str(last.get("node") or last.get("node_ip") or ""),
            "start": start, "end": max(end, start) if math.isfinite(end) else end,
            "epoch_ends": [float(r["timestamp"]) for r in reports if "timestamp" in r and (r.get("epoch") or 0) >= 1
                           and r.get("val_on") != "subset"],  # not the in-epoch reports
            "outcome": str(last.get("outcome") or ""), "reason": str(last.get("reason") or ""),
        })
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def _tune_started(experiment_dir: Path) -> float | None:
    """When Ray Tune started the experiment (the first ``experiment_state-*.json``; a resumed
    sweep writes another, and its trials' own times cover the rest)."""
    states = sorted(experiment_dir.glob("experiment_state-*.json")) if experiment_dir.is_dir() else []
    starts = [((_json(state) or {}).get("runner_data") or {}).get("_start_time") for state in states]
    starts = [float(s) for s in starts if _finite(s)]
    return min(starts) if starts else None


def _vocab_size(path: Path) -> int | None:
    vocab = _json(path)
    if isinstance(vocab, dict) and isinstance(vocab.get("tokens"), list):
        return len(vocab["tokens"])
    return None


def _json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (a half-copied folder)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _json_lines(path: Path) -> list[dict]:
    reports = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            report = json.loads(line)
        except ValueError:
            continue  # the last line of a trial killed mid-write
        if isinstance(report, dict):
            reports.append(report)
    return reports


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Confusion:
    """A classifier's confusion matrix: ``matrix[i][j]`` examples of class ``labels[i]`` predicted
    as ``labels[j]``, counted over ``examples`` examples of ``source``."""

    labels: list[str]
    matrix: np.ndarray
    source: str  # what was counted: "the validation split" or "the 6 examples of predictions.txt"
    complete: bool  # the whole validation split, not a sample


def read_confusion(run: RunFolder) -> Confusion | None:
    """The winner's confusion matrix, from ``winner/confusion.json`` (``labels``, ``matrix``: rows
    true, columns predicted, over the validation split), else counted from the few examples of
    ``winner/predictions.txt``; None for a language model or when neither file is there.

    Example:
        >>> read_confusion(run).matrix.sum()  # doctest: +SKIP
        3082
    """
    if not run.is_classifier:
        return None
    recorded = _json(run.path / "winner" / "confusion.json")
    if isinstance(recorded, dict) and "matrix" in recorded:
        labels = [str(label) for label in recorded.get("labels", run.labels)]
        matrix = np.asarray(recorded["matrix"], dtype=float)
        if matrix.shape != (len(labels), len(labels)):
            raise RunFolderError(f"{run.path / 'winner' / 'confusion.json'}: matrix of shape {matrix.shape} "
                                 f"for {len(labels)} labels; it must be square, one row per label")
        return Confusion(labels, matrix, str(recorded.get("split", "the validation split")), True)
    predictions = run.path / "winner" / "predictions.txt"
    if not predictions.is_file() or not run.labels:
        return None
    # Lines "<predicted> <prob> <true> <text>" under a header (search.tasks' showcase); labels
    # may hold spaces, so they are matched as the known names, longest first.
    names = "|".join(re.escape(label) for label in sorted(run.labels, key=len, reverse=True))
    line_pattern = re.compile(rf"^({names})\s+(\d\.\d+)\s+({names})\s")
    index = {label: i for i, label in enumerate(run.labels)}
    matrix = np.zeros((len(run.labels), len(run.labels)))
    for line in predictions.read_text(encoding="utf-8", errors="replace").splitlines():
        found = line_pattern.match(line)
        if found:
            matrix[index[found.group(3)], index[found.group(1)]] += 1
    if not matrix.sum():
        return None
    return Confusion(list(run.labels), matrix, f"the {int(matrix.sum())} examples of winner/predictions.txt", False)
