"""Warm starts: a sweep that begins from what earlier sweeps of the same task learned.

``lstm-sweep search --warm-start RUN_DIR`` (repeatable) gives the searcher the finished trials of
earlier run folders, read from their files (``results.run_folder``: sweep.yaml, trials.csv,
curves.csv, data.json), in two steps::

    read_earlier_sweeps(config, run_dirs)    before the corpus is read or Ray starts
        task, metric and mode                 must be this sweep's, else refused
        searched parameter names              must be this sweep's, else refused
        each finished trial's values          inside this sweep's space? else skipped, counted
    plan_warm_start(earlier, fingerprint)    once the corpus is read (its fingerprint known)
        same corpus fingerprint and model     the trials, with their results  -> study.add_trial
        other data or another model           its best 3 configurations, first -> study.enqueue_trial
    WarmStart.apply(study, distributions)    by ResumableOptunaSearch when the Tuner starts, once

A folder refused is a :class:`ConfigError` of one line naming it and why. The plan is kept in
``RUN_DIR/warm_start.json`` (what was carried, from where), and the terminal says it in one line
per earlier sweep: ``warm start: 8 trials of runs/quick-20261122-101500 carried with their
results, 2 outside the space skipped``.

How a trial is carried, and why:

- A trial that ran this sweep's ``budget.max_epochs`` epochs is a COMPLETE Optuna trial whose
  value is its best metric over those epochs: what ``trials.csv`` and the winner rank by.
- A trial that stopped sooner (ASHA, the baseline rule, or an earlier sweep's smaller
  ``max_epochs``) is a PRUNED trial with its per-epoch values as intermediate values (from
  ``curves.csv``), and no value: Optuna's own practice for a trial a pruner stopped. Its value at
  an early epoch is worse than what it would have reached, so reporting it as COMPLETE would
  tell TPE that its region is bad when it was only cut short; as PRUNED, TPE's split ranks it
  after every complete trial, among the pruned by how far it got and then by its last value
  (``optuna.samplers._tpe.sampler._split_trials``), which is what a rung of ASHA says of it.
  Both states count towards TPE's ``n_startup_trials``, so a warm-started sweep models from
  its first proposal instead of sampling at random.
- A trial of a longer earlier sweep is cut to this sweep's budget: its best value over the
  first ``max_epochs`` epochs.
- Failed, infeasible and unfinished trials carry nothing (TPE ignores FAIL trials).

Where only the data differ (another corpus fingerprint: other files or data settings), or the
model (``model.cell``, ``model.precision``), the earlier values measure another objective: its
best :data:`BEST_CONFIGS` configurations are enqueued to run first, without their values.

Example:
    >>> earlier = read_earlier_sweeps(config, ["runs/quick-20261122-101500"])  # doctest: +SKIP
    >>> plan = plan_warm_start(earlier, prepared.fingerprint, config)  # doctest: +SKIP
    >>> len(plan.trials), len(plan.enqueued)  # doctest: +SKIP
    (8, 0)
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lstm_sweep.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from lstm_sweep.search.config import Param, SweepConfig

WARM_START_FILE = "warm_start.json"  # in the new run folder: the plan, for a reader and a restarted sweep
ATTR = "warm_start"  # the user attribute naming where a carried or enqueued Optuna trial came from
BEST_CONFIGS = 3  # configurations enqueued from an earlier sweep on other data
CARRIED_STATUSES = ("completed", "early_stopped")  # trials.csv statuses with a result
# trials.csv keeps 10 significant digits (results.io.FLOAT_FORMAT): a value sampled at a range's
# bound may read back a hair outside it.
RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class CarriedTrial:
    """One earlier trial as the searcher is given it.

    ``params`` are the searched values, spelled as this sweep's space spells them; ``state`` is
    ``complete`` (``value``: its best metric within this sweep's budget) or ``pruned`` (``value``
    None); ``intermediate`` maps each epoch to its metric; ``source`` is ``<run folder>/<trial_id>``.
    """

    params: dict[str, Any]
    state: str
    value: float | None
    intermediate: dict[int, float]
    source: str


@dataclass(frozen=True)
class EarlierSweep:
    """An earlier run folder read and checked against this sweep (:func:`read_earlier_sweeps`)."""

    path: Path
    fingerprint: str | None  # data.json's corpus fingerprint; None in a folder from before warm starts
    data: dict[str, Any]  # its data settings, to say which differ
    other_model: str  # "" when its model settings are this sweep's, else which differ
    trials: tuple[CarriedTrial, ...]  # best first (trials.csv's order), each inside this sweep's space
    outside: int  # finished trials with a value outside this sweep's space: skipped
    unfinished: int  # failed, infeasible or unfinished: nothing to carry


@dataclass(frozen=True)
class WarmStart:
    """What the searcher is given: ``trials`` added as finished, ``enqueued`` tried first."""

    trials: tuple[CarriedTrial, ...] = ()
    enqueued: tuple[CarriedTrial, ...] = ()
    runs: tuple[str, ...] = ()  # the earlier run folders
    lines: tuple[str, ...] = ()  # one per earlier sweep: what was carried, as said on the terminal

    def apply(self, study: optuna.Study, distributions: dict[str, optuna.distributions.BaseDistribution]) -> None:
        """Put the trials into ``study`` with the searcher's own ``distributions`` (those
        ``OptunaSearch`` builds from the Tune space, so TPE reads them as its own), once: a
        resumed sweep's study already holds them and gets nothing twice."""
        import optuna

        if any(ATTR in trial.user_attrs for trial in study.get_trials(deepcopy=False)):
            return
        states = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}
        for trial in self.trials:
            study.add_trial(optuna.trial.create_trial(
                state=states[trial.state], value=trial.value, params=trial.params, distributions=distributions,
                intermediate_values=trial.intermediate, user_attrs={ATTR: trial.source}))
        for trial in self.enqueued:
            study.enqueue_trial(trial.params, user_attrs={ATTR: trial.source})

    def to_json(self) -> dict[str, Any]:
        return {"runs": list(self.runs), "lines": list(self.lines),
                "trials": [dataclasses.asdict(t) for t in self.trials],
                "enqueued": [dataclasses.asdict(t) for t in self.enqueued]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WarmStart:
        def trial(t: dict) -> CarriedTrial:  # JSON keys are strings: the epochs back to ints
            return CarriedTrial(**{**t, "intermediate": {int(k): float(v) for k, v in t["intermediate"].items()}})

        return cls(trials=tuple(map(trial, data["trials"])), enqueued=tuple(map(trial, data["enqueued"])),
                   runs=tuple(data["runs"]), lines=tuple(data["lines"]))


def read_earlier_sweeps(config: SweepConfig, run_dirs: Sequence[str | Path]) -> tuple[EarlierSweep, ...]:
    """Read each of ``run_dirs`` and check that its trials can be carried into ``config``'s sweep.

    Nothing here reads a corpus or starts Ray: a refused folder costs a few milliseconds. A
    folder given twice is read once.

    Raises:
        ConfigError: one line naming the folder and why: not a run folder; another task, metric
            or mode; other searched parameters; no finished trial inside this sweep's space;
            or this sweep searches nothing.

    Example:
        >>> earlier = read_earlier_sweeps(config, ["runs/quick-20261122-101500"])  # doctest: +SKIP
        >>> earlier[0].outside  # doctest: +SKIP
        2
    """
    if isinstance(run_dirs, (str, Path)):
        raise ValueError(f"run_dirs={run_dirs!r} must be a list of run folders")
    if run_dirs and not config.searched():
        raise ConfigError(f"--warm-start {run_dirs[0]}: this sweep searches nothing (every value of its space is "
                          "fixed), so there is no searcher to start: drop --warm-start or search a parameter")
    seen, earlier = set(), []
    for run_dir in map(Path, run_dirs):
        if run_dir.resolve() not in seen:
            seen.add(run_dir.resolve())
            earlier.append(_read_earlier(config, run_dir))
    return tuple(earlier)


def plan_warm_start(earlier: Sequence[EarlierSweep], fingerprint: str, config: SweepConfig) -> WarmStart:
    """What the searcher gets from ``earlier``, now that this sweep's corpus ``fingerprint`` is
    known: each sweep on the same data and model gives its trials with their results, any other
    its best :data:`BEST_CONFIGS` configurations (not yet among those given) to run first.

    Example:
        >>> plan = plan_warm_start(earlier, prepared.fingerprint, config)  # doctest: +SKIP
        >>> plan.lines[0]  # doctest: +SKIP
        'warm start: 8 trials of runs/quick-20261122-101500 carried with their results, 2 outside the space skipped'
    """
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError(f"fingerprint={fingerprint!r} must be the corpus fingerprint (data_pipeline.cache)")
    trials, enqueued, lines = [], [], []
    tried = set()
    for sweep in earlier:
        left_out = _left_out(sweep)
        why = _other_data(sweep, fingerprint, config) or sweep.other_model
        if not why:
            trials += sweep.trials
            pruned = sum(t.state == "pruned" for t in sweep.trials)
            stopped = f" ({pruned} stopped early, as pruned)" if pruned else ""
            lines.append(f"warm start: {len(sweep.trials)} trials of {sweep.path} carried with their results"
                         f"{stopped}{left_out}")
            continue
        best = []
        for trial in sweep.trials:
            key = json.dumps(trial.params, sort_keys=True)
            if key not in tried and len(best) < BEST_CONFIGS:
                tried.add(key)
                best.append(trial)
        enqueued += best
        lines.append(f"warm start: {sweep.path} {why}: its best {len(best)} configurations run first, "
                     f"without their results{left_out}")
    return WarmStart(trials=tuple(trials), enqueued=tuple(enqueued), runs=tuple(str(s.path) for s in earlier),
                     lines=tuple(lines))


def warm_start_for(earlier: Sequence[EarlierSweep] | WarmStart | None, fingerprint: str,
                   config: SweepConfig) -> WarmStart | None:
    """The plan for a sweep about to start, said on the terminal: planned from ``earlier``, or
    ``earlier`` itself when it is one already (a sweep started again from its warm_start.json)."""
    if not earlier:
        return None
    plan = earlier if isinstance(earlier, WarmStart) else plan_warm_start(earlier, fingerprint, config)
    for line in plan.lines:
        print(line)
    return plan


def load_warm_start(run_dir: str | Path) -> WarmStart | None:
    """The plan kept in ``run_dir/warm_start.json``; None when the sweep had no warm start."""
    path = Path(run_dir) / WARM_START_FILE
    if not path.is_file():
        return None
    return WarmStart.from_json(json.loads(path.read_text(encoding="utf-8")))


# ---------------------------------------------------------------- reading one earlier sweep

def _read_earlier(config: SweepConfig, run_dir: Path) -> EarlierSweep:
    import pandas as pd
    import yaml

    from lstm_sweep.errors import RunFolderError
    from lstm_sweep.results.run_folder import read_run_folder
    from lstm_sweep.search.config import parse_config

    flag = f"--warm-start {run_dir}"
    if not run_dir.is_dir():
        raise ConfigError(f"{flag}: no such folder: pass a run folder made by `lstm-sweep search`")
    for name in ("sweep.yaml", "trials.csv"):
        if not (run_dir / name).is_file():
            hint = f" (or run `lstm-sweep report {run_dir}` first)" if name == "trials.csv" else ""
            raise ConfigError(f"{flag}: no {name} in it: pass a run folder made by `lstm-sweep search`{hint}")
    try:
        run = read_run_folder(run_dir)
        there = parse_config(run.config, source=str(run_dir / "sweep.yaml"))
    except ConfigError as e:
        raise ConfigError(f"{flag}: its sweep.yaml does not read as a sweep of this version ({e})") from None
    except (RunFolderError, OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"{flag}: cannot read it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e})") \
            from None

    if there.task != config.task:
        raise ConfigError(f"{flag}: a {there.task} sweep, and this one is {config.task}: a warm start carries "
                          "trials of the same task only")
    if (there.metric, there.mode) != (config.metric, config.mode):
        raise ConfigError(f"{flag}: its trials were ranked by {there.metric} ({there.mode}), this sweep's by "
                          f"{config.metric} ({config.mode}): set metric: {there.metric}, or warm-start from a "
                          "sweep of the same metric")
    searched_there, searched_here = there.searched(), config.searched()
    if set(searched_there) != set(searched_here):
        differ = [f"{name} only {'there' if name in searched_there else 'here'}"
                  for name in dict.fromkeys([*searched_there, *searched_here])
                  if (name in searched_there) != (name in searched_here)]
        raise ConfigError(f"{flag}: it searched {', '.join(searched_there) or 'nothing'}, this sweep searches "
                          f"{', '.join(searched_here)} ({'; '.join(differ)}): a warm start needs the same "
                          "searched parameters")

    table, metric = run.trials, f"best_{config.metric}"
    missing = [c for c in ("trial_id", "status", "epochs") if c not in table]
    if missing:
        raise ConfigError(f"{flag}: its trials.csv has no {', '.join(missing)} column: rebuild it with "
                          f"`lstm-sweep report {run_dir}`")
    values = pd.to_numeric(table[metric], errors="coerce") if metric in table else pd.Series(math.nan, table.index)
    finished = table[table["status"].isin(CARRIED_STATUSES) & values.map(math.isfinite)]
    carried, outside, reason = [], 0, ""
    for _, row in finished.iterrows():
        params, why = _inside_space(row, config)
        if why:
            outside, reason = outside + 1, reason or why
            continue
        carried.append(_carried(row, params, _curve(run.curves, row["trial_id"], config.metric), config,
                                there.budget.max_epochs, f"{run_dir}/{row['trial_id']}"))
    if not carried:
        if not len(finished):
            raise ConfigError(f"{flag}: none of its {len(table)} trials finished with a {config.metric}: "
                              "nothing to carry")
        raise ConfigError(f"{flag}: none of its {len(finished)} finished trials lies inside this sweep's space "
                          f"({reason}): widen the space, or warm-start from another sweep")
    return EarlierSweep(path=run_dir, fingerprint=(run.data_stats or {}).get("fingerprint"),
                        data=_settings(there.data), other_model=_other_model(there, config), trials=tuple(carried),
                        outside=outside, unfinished=len(table) - len(finished))


def _inside_space(row: pd.Series, config: SweepConfig) -> tuple[dict[str, Any], str]:
    """The trial's searched values as this sweep's space spells them, and "" ; or why not: the
    first value outside the space (a fixed one must be this sweep's value)."""
    params = {}
    for name, param in config.space.items():
        value = row.get(name)
        inside = _inside(param, value)
        if inside is _OUTSIDE:
            return {}, f"{name} {_shown(value)} there, {param.to_yaml()} here"
        if param.kind != "fixed":
            params[name] = inside
    return params, ""


_OUTSIDE = object()


def _inside(param: Param, value: Any) -> Any:
    """``value`` as ``param`` spells it (a choice's own option, an int, a float clipped to its
    range within :data:`RELATIVE_TOLERANCE`), or ``_OUTSIDE``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _OUTSIDE
    if param.kind in ("fixed", "choice"):
        return next((option for option in param.args if _same(option, value)), _OUTSIDE)
    low, high = param.args
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _OUTSIDE
    slack = RELATIVE_TOLERANCE * max(abs(low), abs(high))
    if not low - slack <= number <= high + slack:
        return _OUTSIDE
    if param.kind in ("int", "logint"):
        return int(round(number)) if abs(number - round(number)) <= slack else _OUTSIDE
    return min(max(number, float(low)), float(high))


def _same(option: Any, value: Any) -> bool:
    """Whether a CSV cell (numpy scalar, text) is the option: True is not 1, "16" is not 16."""
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(option, bool) or isinstance(value, bool):
        return isinstance(option, bool) and isinstance(value, bool) and option == value
    if isinstance(option, (int, float)) and isinstance(value, (int, float)):
        return math.isclose(option, value, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)
    return isinstance(option, str) and isinstance(value, str) and option == value


def _shown(value: Any) -> str:
    return str(value.item() if hasattr(value, "item") else value)


def _curve(curves: pd.DataFrame, trial_id: str, metric: str) -> dict[int, float]:
    """The trial's metric per epoch (curves.csv), finite values only."""
    if not len(curves) or metric not in curves or "epoch" not in curves:
        return {}
    rows = curves[curves["trial_id"].astype(str) == str(trial_id)]
    if "val_on" in rows:  # in-epoch reports (budget.reports_per_epoch) are on the validation subset
        rows = rows[rows["val_on"].fillna("full") == "full"]
    return {int(e): float(v) for e, v in zip(rows["epoch"], rows[metric]) if math.isfinite(float(v))}


def _carried(row: pd.Series, params: dict[str, Any], curve: dict[int, float], config: SweepConfig,
             max_epochs_there: int, source: str) -> CarriedTrial:
    """COMPLETE with its best value within this sweep's budget when it ran that long, else
    PRUNED with its per-epoch values (see the module docstring)."""
    budget = config.budget.max_epochs
    within = {epoch: value for epoch, value in curve.items() if epoch <= budget}
    if int(row["epochs"]) < budget:
        return CarriedTrial(params, "pruned", None, within, source)
    if within:
        pick = min if config.mode == "min" else max
        return CarriedTrial(params, "complete", pick(within.values()), within, source)
    if max_epochs_there == budget:  # no curve (curves.csv missing): trials.csv's best is over the same epochs
        return CarriedTrial(params, "complete", float(row[f"best_{config.metric}"]), {}, source)
    return CarriedTrial(params, "pruned", None, {}, source)


def _settings(data: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(data).items() if k != "path"}


def _other_model(there: SweepConfig, config: SweepConfig) -> str:
    """Which model settings that shape every trial's value differ ("" when none)."""
    keys = ["precision"] + (["cell"] if "cell" not in config.space and "cell" not in there.space else [])
    differ = [f"model.{k} {getattr(there.model, k)} there, {getattr(config.model, k)} here"
              for k in keys if getattr(there.model, k) != getattr(config.model, k)]
    return f"trained another model ({'; '.join(differ)})" if differ else ""


def _other_data(sweep: EarlierSweep, fingerprint: str, config: SweepConfig) -> str:
    """Why the earlier sweep's data may not be this sweep's ("" when its fingerprint is this one)."""
    if sweep.fingerprint is None:
        return "records no corpus fingerprint (its data.json is from before warm starts), so its data may differ"
    if sweep.fingerprint == fingerprint:
        return ""
    here = _settings(config.data)
    differ = [f"data.{k} {sweep.data[k]} there, {here[k]} here" for k in here if sweep.data.get(k) != here[k]]
    return f"read other data ({'; '.join(differ) if differ else 'the corpus files differ'})"


def _left_out(sweep: EarlierSweep) -> str:
    parts = ([f"{sweep.outside} outside the space skipped"] if sweep.outside else []) + \
            ([f"{sweep.unfinished} without a result (failed, infeasible or unfinished)"] if sweep.unfinished else [])
    return "".join(f", {part}" for part in parts)
