"""What the report works out from a run folder: why each trial ended, which worker slot it
ran in, each parameter's importance, each model's size, the Pareto front of cost and quality,
the corpus figures and the winner in words.

    RunFolder ──► trial_endings     completed | stopped (ASHA ...) | budget | at_baseline | infeasible | failed
              ──► assign_slots      timeline rows packed into lanes per node
              ──► parameter_importances   Optuna's PED-ANOVA over optuna.db (no sklearn needed)
              ──► parameter_counts  model.memory.count_parameters per trial
              ──► pareto_front, close_to_best   the cheapest models near the best one
              ──► data_facts, describe_winner

Example:
    >>> run = read_run_folder("runs/quick")  # doctest: +SKIP
    >>> trial_endings(run).value_counts().to_dict()  # doctest: +SKIP
    {'completed': 3, 'stopped': 3}
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from lstm_sweep.results.experiment import BUDGET_CUT_WORDS
from lstm_sweep.results.run_folder import RunFolder

# Why a trial ended, in the order the summary lists them; "stopped" is named after the scheduler,
# "budget" is a trial the sweep's time budget ended (results.experiment.BUDGET_CUTS_FILE).
ENDINGS = ("completed", "stopped", "budget", "at_baseline", "infeasible", "failed")
SCHEDULER_NAMES = {"asha": "ASHA", "hyperband": "HyperBand", "median": "the median stopping rule",
                   "fifo": "the time limit"}
AT_BASELINE_WORDS = "no better than"  # the trainable's reason for the baseline stop
# PED-ANOVA compares the top trials with all: its authors want >= 5 in the top quantile, so the
# quantile is 5/n (at least Optuna's 0.1) and fewer than 10 finished trials leave it no contrast.
MIN_IMPORTANCE_TRIALS = 10
TOP_TRIALS = 5
CLOSE_SHARE = 0.05  # "close to the best": within 5% of the best trial's gain over the baseline


def ending_label(ending: str, run: RunFolder) -> str:
    """The words for an ending: ``"stopped by ASHA"``, ``"at baseline"``.

    Example:
        >>> ending_label("stopped", run)  # doctest: +SKIP
        'stopped by ASHA'
    """
    if ending not in ENDINGS:
        raise ValueError(f"ending={ending!r} must be one of {ENDINGS}")
    if ending == "stopped":
        kind = str((run.config.get("scheduler") or {}).get("kind", "asha"))
        return f"stopped by {SCHEDULER_NAMES.get(kind, kind)}"
    if ending == "budget":
        return "cut by the time budget"
    return ending.replace("_", " ")


def trial_endings(run: RunFolder) -> pd.Series:
    """Why each trial of ``run`` ended (one of :data:`ENDINGS`), indexed like ``run.trials``.

    An ``early_stopped`` trial is ``at_baseline`` when its last report's outcome says so, or
    its error or reason says it was "no better than" the baseline; ``budget`` when its error says
    the sweep's time budget cut it; else the scheduler stopped it.

    Example:
        >>> trial_endings(run).tolist()  # doctest: +SKIP
        ['completed', 'completed', 'stopped', 'at_baseline']
    """
    outcome = _by_trial(run, "outcome")
    reason = _by_trial(run, "reason")
    endings = []
    for _, row in run.trials.iterrows():
        status, trial = str(row.get("status", "")), str(row["trial_id"])
        if status == "early_stopped":
            words = f"{_text(row.get('error'))} {reason.get(trial, '')}"
            at_baseline = outcome.get(trial) == "at_baseline" or AT_BASELINE_WORDS in words
            endings.append("at_baseline" if at_baseline else "budget" if BUDGET_CUT_WORDS in words else "stopped")
        else:
            endings.append(status if status in ENDINGS else "failed")
    return pd.Series(endings, index=run.trials.index, dtype=object)


def ending_reasons(run: RunFolder, endings: pd.Series) -> dict[str, list[tuple[str, int]]]:
    """For failed, infeasible and at-baseline trials: each distinct reason and how many said it."""
    reason = _by_trial(run, "reason")
    found: dict[str, dict[str, int]] = {}
    for (_, row), ending in zip(run.trials.iterrows(), endings):
        if ending not in ("failed", "infeasible", "at_baseline"):
            continue
        text = _text(row.get("error")) or reason.get(str(row["trial_id"]), "") or "no reason recorded"
        found.setdefault(ending, {})
        found[ending][text] = found[ending].get(text, 0) + 1
    return {ending: sorted(texts.items(), key=lambda item: -item[1]) for ending, texts in found.items()}


def assign_slots(timeline: pd.DataFrame) -> pd.DataFrame:
    """``timeline`` with a ``slot`` column: on each node, a trial takes the lowest lane free at
    its start (Ray records no worker slot; this is the packing a person would draw).

    Example:
        >>> assign_slots(read_timeline("runs/quick/ray")).slot.max()  # doctest: +SKIP
        1
    """
    if not isinstance(timeline, pd.DataFrame) or not {"node", "start", "end"} <= set(timeline.columns):
        raise ValueError("timeline must be a DataFrame with node, start and end columns (read_timeline)")
    frame = timeline.sort_values(["node", "start"], kind="stable").copy()
    slots = []
    lanes: dict[str, list[float]] = {}
    for node, start, end in zip(frame["node"], frame["start"], frame["end"]):
        free = lanes.setdefault(node, [])
        # A second of slack: report timestamps are whole seconds, a follower may start "before" its lane ends.
        lane = next((i for i, busy_until in enumerate(free) if busy_until <= start + 1.0), len(free))
        if lane == len(free):
            free.append(end)
        free[lane] = end
        slots.append(lane)
    frame["slot"] = slots
    return frame


def busy_share(slotted: pd.DataFrame, wall_seconds: float | None = None) -> float | None:
    """The share of the sweep's wall time its worker slots spent in trials (``assign_slots``
    output; the wall time defaults to the first start to the last end); None without trials.

    Example:
        >>> round(busy_share(assign_slots(run.timeline), run.wall_seconds), 2)  # doctest: +SKIP
        0.78
    """
    if "slot" not in slotted:
        raise ValueError("slotted must come from assign_slots (it has no slot column)")
    frame = slotted[np.isfinite(slotted["start"].astype(float)) & np.isfinite(slotted["end"].astype(float))]
    if not len(frame):
        return None
    span = max(wall_seconds or 0.0, float(frame["end"].max() - frame["start"].min()), 1e-9)
    lanes = len({(node, slot) for node, slot in zip(frame["node"], frame["slot"])})
    return min(1.0, float((frame["end"] - frame["start"]).sum()) / (lanes * span))


def parameter_importances(run: RunFolder) -> tuple[dict[str, float], str]:
    """Each searched parameter's importance for reaching the best trials, from ``optuna.db``.

    Optuna's :class:`~optuna.importance.PedAnovaImportanceEvaluator` (PED-ANOVA, Watanabe et
    al., IJCAI 2023: how much more concentrated a parameter's values are among the top trials
    than among all) is the one of Optuna's evaluators that needs no scikit-learn; fANOVA and
    mean decrease in impurity do, and lstm-sweep does not depend on it. The top quantile is
    ``max(0.1, 5/n)`` of the ``n`` finished trials. Returns ``(importances, note)``: the
    importances (summing to 1, largest first) and a sentence on how they were made, or ``{}``
    and the reason there are none.

    Example:
        >>> importances, note = parameter_importances(run)  # doctest: +SKIP
        >>> next(iter(importances))  # doctest: +SKIP
        'learning_rate'
    """
    path = run.path / "optuna.db"
    if not run.searched:
        return {}, "nothing was searched: every value of the space is fixed"
    if not path.is_file():
        return {}, "no optuna.db in the run folder (the searcher keeps its study there)"
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's experimental and few-trials warnings: the note says it
            storage = f"sqlite:///{path.resolve()}"
            names = optuna.get_all_study_names(storage)
            if not names:
                return {}, "optuna.db holds no study"
            study = optuna.load_study(study_name=run.path.name if run.path.name in names else names[0],
                                      storage=storage)
            finished = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                        if t.value is not None and math.isfinite(t.value)]
            if len(finished) < MIN_IMPORTANCE_TRIALS:
                return {}, (f"too few finished trials for an importance: {len(finished)} in optuna.db, "
                            f"PED-ANOVA needs {MIN_IMPORTANCE_TRIALS} or more (at least {TOP_TRIALS} "
                            "among its top trials)")
            # A copy in memory without the infeasible trials' infinite values, which would skew the quantiles.
            direction = "minimize" if run.mode == "min" else "maximize"
            clean = optuna.create_study(direction=direction)
            clean.add_trials(finished)
            quantile = max(0.1, TOP_TRIALS / len(finished))
            evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
            searched = [p.name for p in run.searched if any(p.name in t.params for t in finished)]
            importances = optuna.importance.get_param_importances(clean, evaluator=evaluator, params=searched)
    finally:
        optuna.logging.set_verbosity(verbosity)
    note = (f"PED-ANOVA (Optuna's PedAnovaImportanceEvaluator) over the {len(finished)} finished trials of "
            f"optuna.db: how much more a parameter's values concentrate among the best "
            f"{max(TOP_TRIALS, math.ceil(quantile * len(finished)))} than among all; each trial's value is the "
            f"last {run.metric} it reported")
    return dict(importances), note


def parameter_counts(run: RunFolder) -> pd.Series:
    """Trainable parameters of each trial's model (``model.memory.count_parameters``), from its
    row of trials.csv, the sweep's fixed settings and the vocabulary; NaN where unknown.

    Example:
        >>> parameter_counts(run).iloc[0]  # doctest: +SKIP
        155044.0
    """
    from lstm_sweep.model.memory import count_parameters

    model = run.config.get("model") or {}
    space = run.config.get("space") or {}
    # labels.json names a classifier's classes; without it, two (the smallest head: one sigmoid unit).
    classes = max(len(run.labels), 2) if run.is_classifier else 0
    counts = []
    for _, row in run.trials.iterrows():
        def value(name: str, default: Any) -> Any:
            if name in row.index and pd.notna(row[name]):
                return row[name]
            fixed = space.get(name)
            return default if fixed is None or isinstance(fixed, dict) else fixed

        vocab = value("vocab_size", run.vocab_size)
        try:
            counts.append(float(count_parameters(
                vocab_size=int(vocab), embedding_size=int(value("embedding_size", 64)),
                hidden_size=int(value("hidden_size", 128)), num_layers=int(value("num_layers", 1)),
                cell=str(value("cell", model.get("cell", "lstm"))), num_classes=classes,
                bidirectional=_boolean(value("bidirectional", False)))))
        except (TypeError, ValueError):  # no vocabulary recorded, or a cell this process has not registered
            counts.append(math.nan)
    return pd.Series(counts, index=run.trials.index, dtype=float)


def pareto_front(cost: np.ndarray, value: np.ndarray, mode: str = "min") -> np.ndarray:
    """Which points no other point beats on both axes (lower ``cost``, better ``value``).

    Example:
        >>> pareto_front(np.array([1.0, 2.0, 3.0]), np.array([3.0, 1.0, 2.0])).tolist()
        [True, True, False]
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode={mode!r} must be 'min' or 'max'")
    cost, value = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    if cost.shape != value.shape:
        raise ValueError(f"cost and value must have one shape, got {cost.shape} and {value.shape}")
    loss = value if mode == "min" else -value
    ok = np.isfinite(cost) & np.isfinite(loss)
    front = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok & (cost <= cost[i]) & (loss <= loss[i]) & ((cost < cost[i]) | (loss < loss[i]))
        front[i] = not others.any()
    return front


def better_than_baseline(value: np.ndarray, baseline: float, mode: str = "min") -> np.ndarray:
    """Which values beat the baseline (every finite one when there is none): the trials worth a cost.

    Example:
        >>> better_than_baseline(np.array([2.0, 5.0, np.nan]), baseline=4.0).tolist()
        [True, False, False]
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode={mode!r} must be 'min' or 'max'")
    value = np.asarray(value, dtype=float)
    if not math.isfinite(baseline):
        return np.isfinite(value)
    with np.errstate(invalid="ignore"):
        return np.isfinite(value) & ((value < baseline) if mode == "min" else (value > baseline))


def close_to_best(value: np.ndarray, baseline: float, mode: str = "min", share: float = CLOSE_SHARE) -> tuple[np.ndarray, float]:
    """Which trials are within ``share`` of the best trial's gain over the baseline (1% of the
    best value when there is no baseline or nothing beat it), and that distance.

    Example:
        >>> close_to_best(np.array([2.0, 2.1, 3.0]), baseline=4.0)[0].tolist()
        [True, True, False]
    """
    if not 0 < share < 1:
        raise ValueError(f"share={share!r} must be in (0, 1)")
    value = np.asarray(value, dtype=float)
    finite = value[np.isfinite(value)]
    if not len(finite):
        return np.zeros(len(value), dtype=bool), math.nan
    best = finite.min() if mode == "min" else finite.max()
    gain = (baseline - best) if mode == "min" else (best - baseline)
    distance = share * gain if math.isfinite(baseline) and gain > 0 else 0.01 * abs(best)
    gap = (value - best) if mode == "min" else (best - value)
    return np.isfinite(value) & (gap <= distance + 1e-12), float(distance)


def data_facts(run: RunFolder) -> tuple[dict[str, Any], list[str]]:
    """The corpus as far as the run folder records it, and the figures it does not record.

    Sources, first found wins: ``data.json`` (data_pipeline's stats), ``winner/card.json``'s
    ``data`` (after a retrain), ``sweep.yaml``'s ``data`` section, ``vocab.json``.

    Example:
        >>> facts, missing = data_facts(run)  # doctest: +SKIP
        >>> facts["train"], missing  # doctest: +SKIP
        (12777, ['files', 'raw_lines', 'kept', 'dropped_too_long'])
    """
    settings = dict(run.config.get("data") or {})
    card = dict((run.card or {}).get("data") or {})
    stats = dict(run.data_stats or {})
    facts: dict[str, Any] = {"source": settings.get("path", card.get("path"))}
    facts.update({k: v for k, v in settings.items() if k != "path"})
    facts.update({"train": card.get("train_sentences", card.get("train_examples", card.get("train_windows"))),
                  "val": card.get("val_sentences", card.get("val_examples", card.get("val_windows"))),
                  "majority_share_val": card.get("majority_share_val")})
    facts["vocab_size_real"] = run.vocab_size
    if facts["train"] is not None and facts["val"] is not None:
        facts["kept"] = facts["train"] + facts["val"]  # the split shares out exactly the kept sentences
    if stats:
        facts.update({k: v for k, v in stats.items() if k not in ("source", "vocab_size")})
        facts["vocab_size_real"] = stats.get("vocab_size", run.vocab_size)
    wanted = (("files", "examples", "dropped_empty", "kept", "train", "val") if run.is_classifier else
              ("files", "characters", "train", "val") if settings.get("tokens") == "char" else
              ("files", "raw_lines", "kept", "dropped_too_long", "train", "val"))
    if settings.get("path") == "builtin":
        wanted = tuple(w for w in wanted if w != "files")  # the built-in corpus has no files
        if not run.is_classifier and "builtin_lines" in settings:
            facts.setdefault("raw_lines", settings["builtin_lines"])  # it generates exactly that many lines
    missing = [name for name in wanted if facts.get(name) is None]
    return {k: v for k, v in facts.items() if v is not None}, missing


def describe_winner(run: RunFolder) -> str:
    """The best trial's configuration in words with rounded values:
    ``lstm · embedding 32 · hidden 104 · 1 layer · dropout 0.19 · lr 6.3e-3 · batch 64``
    (``model.spec.ModelSpec.describe``, as the terminal shows it); "" without a best trial.
    """
    from lstm_sweep.model.spec import ModelSpec

    params = dict((run.best or {}).get("params") or {})
    if not params and len(run.trials):
        params = {p.name: run.trials.iloc[0][p.name] for p in run.searched if p.name in run.trials}
    if not params:
        return ""
    model, data = run.config.get("model") or {}, run.config.get("data") or {}
    fixed = {k: v for k, v in (run.config.get("space") or {}).items() if not isinstance(v, dict)}
    steps = int(data["seq_len"]) if data.get("tokens") == "char" else int(data.get("max_tokens", 15)) - 1
    seq_len = int(params.get("seq_len", fixed.get("seq_len", steps)))
    try:
        spec = ModelSpec.from_config({**fixed, **params}, vocab_size=max(int(run.vocab_size or 2), 2),
                                     seq_len=seq_len, cell=str(model.get("cell", "lstm")),
                                     precision=str(model.get("precision", "float32")),
                                     num_classes=max(len(run.labels), 2) if run.is_classifier else 0)
    except (TypeError, ValueError):  # a plug-in cell not registered here: the values as they are
        return " · ".join(f"{k} {v}" for k, v in params.items())
    text = spec.describe()
    used = ((run.best or {}).get("extra") or {}).get("batch_size_used")
    if used is not None and int(used) != spec.batch_size:
        text += f" ({int(used)} used: the memory budget)"
    return text


def format_duration(seconds: float) -> str:
    """Seconds as a person reads them: ``"42 s"``, ``"1 min 34 s"``, ``"2 h 5 min"``.

    Example:
        >>> format_duration(94.4)
        '1 min 34 s'
    """
    if not isinstance(seconds, (int, float, np.number)) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds={seconds!r} must be a finite number >= 0")
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    whole = round(seconds)
    if seconds < 5400:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _by_trial(run: RunFolder, column: str) -> dict[str, str]:
    if column not in run.timeline:
        return {}
    return {str(t): _text(v) for t, v in zip(run.timeline["trial_id"], run.timeline[column])}


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _boolean(value: Any) -> bool:
    return value in (True, "True", "true")  # trials.csv reads a bool column back as bools or text
