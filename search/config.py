"""The sweep configuration: a YAML file, checked against a schema before anything runs.

A sweep file has these sections (every key optional; ``sweeps/quick.yaml`` shows them all)::

    name: quick                 # run folder prefix under `output`
    output: runs                # where run folders go
    task: language_model        # language_model | classify
    metric: val_loss            # what ASHA, the searcher and the winner follow (a task's metrics)
    mode: min                   # min | max; by default the metric's own direction
    data:     {path, vocab_size, max_tokens, val_fraction, seed, builtin_lines}    # language_model
    data:     {tokens: char, path, vocab_size, clean, seq_len, stride, val_fraction, # language_model,
               seed, builtin_lines}                                                 # characters
    data:     {path, text_column, label_column, classes, vocab_size, val_fraction,  # classify
               seed, builtin_examples, builtin_classes}
    model:    {cell, precision} # lstm | gru | rnn; float32 | mixed_float16
    space:                      # each hyperparameter: a fixed value or one distribution
      embedding_size: {choice: [16, 32, 64]}
      hidden_size:    {logint: [32, 256]}     # integers, log-uniform, bounds included
      num_layers:     {int: [1, 2]}           # integers, uniform, bounds included
      dropout:        {uniform: [0.0, 0.3]}
      learning_rate:  {loguniform: [1.0e-3, 1.0e-2]}
      batch_size:     64                      # fixed
      cell:           {choice: [rnn, lstm, gru]}  # optional: overrides model.cell
      seq_len:        {choice: [40, 100]}     # data.tokens: char only: characters per window
      # task: classify only (these four are always in its space, at their defaults if omitted):
      seq_len:        {choice: [64, 512]}     # examples padded and truncated to this many tokens
      padding:        {choice: [pre, post]}   # where the zeros go
      truncating:     pre                     # which end of a long example is cut
      bidirectional:  {choice: [false, true]}
    budget:   {num_samples, max_epochs, max_concurrent, max_minutes, reports_per_epoch}
    scheduler: {kind}           # asha | fifo | hyperband | median: Ray Tune's trial schedulers
    asha:     {grace_period, reduction_factor, rejudge, stop_at_baseline, spare_falling, spare_within_budget}  # the schedulers' knobs
    searcher: {kind, seed, n_startup_trials, startup}            # kind: tpe | random; startup: random | cheap
    resources: {cpus_per_trial, gpus_per_trial, gpu_memory_gb, gpu_share_grid, gpu_process_reserve_mb,
                allow_cpu_fallback,
                trial_memory_gb, min_batch_size, memory_headroom, max_oom_retries,
                max_failures, reuse_workers}
    tracking: {mlflow}          # an MLflow tracking URI: every trial and the retrained winner logged there

Every problem raises :class:`ConfigError` with the file, the key and what to do.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from lstm_sweep.data_pipeline import DataSettings, LabelledSettings
from lstm_sweep.errors import ConfigError

@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter a sweep file's ``space:`` may set: a value, or a distribution over values."""

    meaning: str  # what it is and its range, as an error quotes it
    default: Any = None  # its value when the space omits it; None: absent unless given
    integer: bool = False  # integers only: a value, int, logint or a choice of integers
    options: tuple | None = None  # a categorical's values: one of them, or {choice: [...]} of them


# Every task's hyperparameters, their meaning, and the value used when the space omits one. A task
# adds its own (search.tasks: Task.hyperparameters), always in its space, refused in the others'.
HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "embedding_size": Hyperparameter("width of the token embedding, >= 1", 64, integer=True),
    "hidden_size": Hyperparameter("units per recurrent layer, >= 1", 128, integer=True),
    "num_layers": Hyperparameter("stacked recurrent layers, >= 1", 1, integer=True),
    "dropout": Hyperparameter("dropout after each recurrent layer, in [0, 1)", 0.0),
    "learning_rate": Hyperparameter("Adam step size, > 0", 1e-3),
    "batch_size": Hyperparameter("examples per training batch, >= 1 (cut to what fits in memory)", 64, integer=True),
    # Optional: searching the vocabulary cap re-tokenizes the corpus per value (cached).
    "vocab_size": Hyperparameter("vocabulary cap, <pad> <unk> <start> <end> included, >= 8", None, integer=True),
    # Its options are the registered cells (model.cells), read when a config is parsed.
    "cell": Hyperparameter("recurrent cell, a registered one (model.cells: lstm, gru, rnn, ...); overrides "
                           "model.cell", None),
}
DISTRIBUTIONS = ("choice", "int", "logint", "uniform", "loguniform")



def hyperparameters(task: str | None = None) -> dict[str, Hyperparameter]:
    """The hyperparameters of ``task``'s space (every task's, then its own); with no task,
    those of every task (what a sweep file may name at all)."""
    from lstm_sweep.search.tasks import TASKS

    tasks = [TASKS[task]] if task else list(TASKS.values())
    return {**HYPERPARAMETERS, **{name: h for t in tasks for name, h in t.hyperparameters.items()}}


def categorical_options(name: str, task: str | None = None) -> tuple | None:
    """The values a parameter that takes one of a few (not a number) may take; None for numbers.
    Cells come from the registry (``model.cells``), so a registered cell is a valid value."""
    from lstm_sweep.model.cells import cell_names

    return cell_names() if name == "cell" else hyperparameters(task)[name].options


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a fixed ``value``, or a ``kind`` of distribution over ``args``.

    ``kind`` is one of ``fixed``, ``choice`` (args: the options), ``int`` / ``logint``
    (args: low, high, both included), ``uniform`` / ``loguniform`` (args: low, high).
    """

    kind: str
    args: tuple

    def to_tune(self) -> Any:
        """The Ray Tune search-space object (or the plain value when fixed)."""
        from ray import tune

        low_high = self.args
        return {
            "fixed": lambda: self.args[0],
            "choice": lambda: tune.choice(list(self.args)),
            # Tune's integer domains exclude the upper bound; ours include it.
            "int": lambda: tune.randint(low_high[0], low_high[1] + 1),
            "logint": lambda: tune.lograndint(low_high[0], low_high[1] + 1),
            "uniform": lambda: tune.uniform(*low_high),
            "loguniform": lambda: tune.loguniform(*low_high),
        }[self.kind]()

    def to_yaml(self) -> Any:
        return self.args[0] if self.kind == "fixed" else {self.kind: list(self.args)}

    def values(self) -> tuple:
        """Every value the parameter can take at its extremes (for checks, not sampling)."""
        return self.args


@dataclass(frozen=True)
class Budget:
    num_samples: int = 8  # trials to run, >= 1
    max_epochs: int = 4  # epochs per trial when ASHA lets it run to the end, >= 1
    max_concurrent: int = 2  # trials at once, >= 1 (also bounded by the CPUs/GPUs Ray has)
    max_minutes: float = 0.0  # wall-clock limit of the whole sweep; running trials stop there; 0: none
    # Reports of the metric an epoch, >= 1: the epoch's end on the whole validation split, the
    # others at even fractions of the epoch on its fixed subset (search.tasks.validation_subset);
    # above 1 with scheduler asha or fifo only (hyperband and median pause trials mid-epoch).
    reports_per_epoch: int = 1


@dataclass(frozen=True)
class Asha:
    """ASHA's knobs, which the other schedulers share (``search.searcher.make_scheduler``)."""

    # Epochs every trial gets before it can be stopped, 1/reports_per_epoch..max_epochs (asha, median,
    # the baseline stop); a fraction (0.5) with budget.reports_per_epoch above 1.
    grace_period: float = 1.0
    reduction_factor: int = 2  # keep the best 1/reduction_factor at each rung, >= 2 (asha, hyperband)
    # Judge a running trial again at its rung as later trials reach it, instead of once when it got
    # there first (asha; search.searcher.RejudgingASHA).
    rejudge: bool = False
    # From the grace period on, stop a trial that is no better than its task's baseline (the
    # unigram model; the class frequencies): it has learned nothing from the context yet.
    stop_at_baseline: bool = True
    # ... unless its distance to the baseline shrank by more than this share in its last epoch (a
    # slow starter on its way down; measured: bench/stop_rules.py), in [0, 1); 0: never spared.
    spare_falling: float = 0.5
    # ... and, if true, only when at its pace so far its remaining epochs end within
    # budget.max_minutes: a slow starter pays off in its last epochs, which a budget that cuts it
    # never sees. Off by default: at 5 minutes it did not help (BENCHMARKS.md).
    spare_within_budget: bool = False


@dataclass(frozen=True)
class SearcherSettings:
    """How configs are proposed (``search.searcher.make_searcher``)."""

    KINDS = ("tpe", "random")  # not annotated: not a field
    STARTUPS = ("random", "cheap")

    kind: str = "tpe"  # tpe: Optuna's TPE | random: Optuna's random sampler; both keep optuna.db
    seed: int = 0  # seeds the searcher, so a sweep proposes the same configs again
    n_startup_trials: int = 4  # random trials before TPE models the results, >= 1 (tpe)
    # How TPE's start-up trials are drawn (tpe): random | cheap: each the cheapest to train of
    # search.searcher.CHEAP_POOL random draws (search.searcher.CheapStart)
    startup: str = "random"


@dataclass(frozen=True)
class SchedulerSettings:
    """How trials are stopped early (``search.searcher.make_scheduler``); its knobs are in ``asha``."""

    KINDS = ("asha", "fifo", "hyperband", "median")  # not annotated: not a field

    kind: str = "asha"  # asha | fifo: no early stopping | hyperband | median: the median stopping rule


@dataclass(frozen=True)
class Resources:
    """What each trial gets. Batch sizes and GPU shares are cut by the memory model
    (``model.memory``, ``search.resources``) so that no trial runs out of memory."""

    cpus_per_trial: float = 1.0  # CPUs Ray reserves per trial; TensorFlow gets that many threads
    gpus_per_trial: float = 0.0  # 0: CPU only; else the most of one GPU a trial may get, in (0, 1]
    # Usable memory of each GPU in GiB (2**30 bytes): what the driver reports less its own reserve
    # (nvidia-smi's memory.total - memory.reserved; a "16 GB" T4 has about 14.7 GiB); 0: read it here.
    gpu_memory_gb: float = 0.0
    gpu_share_grid: int = 8  # GPU shares are rounded up to multiples of 1/gpu_share_grid
    # What every TensorFlow process holds on its GPU outside its allocator (CUDA context, cuDNN and
    # cuBLAS handles, loaded kernels; typically 0.3-1 GiB): it comes off each trial's cap and counts
    # in the packing. bench/gpu_acceptance.py measures it on a user's GPU.
    gpu_process_reserve_mb: float = 1024.0
    # A trial planned for a GPU that sees none (driver, missing [gpu] extra) fails with its reason,
    # unless this lets it train on the CPU with the batch planned for the GPU.
    allow_cpu_fallback: bool = False
    trial_memory_gb: float = 0.0  # per-trial memory budget; 0: the GPU share, or a CPU's share of host memory
    min_batch_size: int = 8  # a config that does not fit at this batch is `infeasible`
    memory_headroom: float = 0.1  # share of a budget kept for the memory model's error, in [0, 1)
    max_oom_retries: int = 3  # out-of-memory errors a trial survives by halving its batch
    max_failures: int = 2  # times a trial whose process died (killed, node lost) restarts from its checkpoint
    # A finished trial's worker process runs the next trial with the same resource request (Ray
    # Tune's reuse_actors): no new Python, Ray worker and TensorFlow import (2.3 s a trial in
    # bench/scale.py); false, the default for now: a process a trial. Off by default until a sweep
    # stopped by a full disk is shown to stay resumable with it (see BENCHMARKS.md).
    reuse_workers: bool = False


@dataclass(frozen=True)
class Tracking:
    """Where the sweep is also logged (``search.tracking``): Ray Tune's MLflow logger callback."""

    # An MLflow tracking URI (sqlite:///mlruns.db, http://host:5000, ...): one MLflow run per trial
    # and one for the retrained winner, in an experiment named after the run folder; "": off.
    mlflow: str = ""


@dataclass(frozen=True)
class ModelSettings:
    cell: str = "lstm"  # a registered cell (model.cells): lstm | gru | rnn | ...
    precision: str = "float32"  # float32 | mixed_float16 (GPUs: half-size activations)


@dataclass(frozen=True)
class SweepConfig:
    """A whole, validated sweep. Build one with :func:`load_config` or :func:`parse_config`."""

    name: str = "sweep"
    output: str = "runs"
    task: str = "language_model"  # language_model | classify
    metric: str = "val_loss"  # one of the task's metrics (search.tasks)
    mode: str = "min"  # its direction: min | max
    data: DataSettings | LabelledSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    space: dict[str, Param] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    asha: Asha = field(default_factory=Asha)
    searcher: SearcherSettings = field(default_factory=SearcherSettings)
    resources: Resources = field(default_factory=Resources)
    tracking: Tracking = field(default_factory=Tracking)

    def param_space(self) -> dict[str, Any]:
        """The Ray Tune ``param_space``: every hyperparameter, searched or fixed."""
        return {name: param.to_tune() for name, param in self.space.items()}

    def searched(self) -> list[str]:
        return [name for name, param in self.space.items() if param.kind != "fixed"]

    def fixed(self) -> dict[str, Any]:
        """The space's fixed values, by name: what every trial's config holds besides the searched ones."""
        return {name: param.args[0] for name, param in self.space.items() if param.kind == "fixed"}

    def other_metrics(self) -> dict[str, str]:
        """The task's other per-epoch metrics (name: mode), reported beside ``metric``; a character
        model's also ``bits_per_char`` (``val_loss / ln 2``, derived: ``results.tables``)."""
        from lstm_sweep.search.tasks import get_task

        others = {name: mode for name, mode in get_task(self.task).metrics.items() if name != self.metric}
        if is_char(self):
            others["bits_per_char"] = "min"
        return others

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``sweep.yaml``; ``parse_config`` reads it back."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["space"] = {name: param.to_yaml() for name, param in self.space.items()}
        return out

    def with_overrides(self, **overrides: Any) -> "SweepConfig":
        """A copy with dotted keys replaced, e.g. ``{"budget.max_epochs": 2}``; re-validated."""
        raw = self.to_dict()
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if key:
                raw.setdefault(section, {})[key] = value
            else:
                raw[section] = value
        return parse_config(raw, source="command line")


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file.

    Example:
        >>> cfg = load_config("sweeps/quick.yaml")  # doctest: +SKIP
        >>> cfg.budget.max_epochs  # doctest: +SKIP
        4
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found: pass --config with an existing YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config ({e.__class__.__name__}: {e})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: fix the syntax") from None
    return parse_config({} if raw is None else raw, source=str(path))


def parse_config(raw: Mapping[str, Any], source: str = "config") -> SweepConfig:
    """Validate plain data (as from YAML) into a :class:`SweepConfig`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    top = {f.name for f in dataclasses.fields(SweepConfig)}
    _reject_unknown(raw, top, source, "")
    from lstm_sweep.search.tasks import TASKS

    task = _string(raw.get("task", "language_model"), source, "task")
    if task not in TASKS:
        raise ConfigError(f"{source}: task: {task!r} must be one of {', '.join(TASKS)}")
    metric, mode = _metric_and_mode(raw, task, source)

    def section(name: str, cls: type) -> Any:
        values = raw.get(name) or {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {name}: must be a mapping, got {values!r}")
        allowed = {f.name: f for f in dataclasses.fields(cls)}
        if name == "data":  # first: a key of the other task or corpus kind gets its own reason
            TASKS[task].check_data_section(values, source)
        _reject_unknown(values, set(allowed), source, f"{name}.")
        kwargs = {k: _coerce(v, allowed[k].default, source, f"{name}.{k}") for k, v in values.items()}
        try:
            return cls(**kwargs)
        except ValueError as e:  # DataSettings checks its own fields
            raise ConfigError(f"{source}: {name}: {e}") from None

    config = SweepConfig(
        name=_string(raw.get("name", "sweep"), source, "name"),
        output=_string(raw.get("output", "runs"), source, "output"),
        task=task,
        metric=metric,
        mode=mode,
        data=section("data", TASKS[task].settings_class),
        model=section("model", ModelSettings),
        space=_parse_space(raw.get("space") or {}, source, task),
        budget=section("budget", Budget),
        scheduler=section("scheduler", SchedulerSettings),
        asha=section("asha", Asha),
        searcher=section("searcher", SearcherSettings),
        resources=section("resources", Resources),
        tracking=section("tracking", Tracking),
    )
    _check_ranges(config, source)
    TASKS[task].check_config(config, source)
    return config


def is_char(config: SweepConfig) -> bool:
    """Whether the sweep trains character models (``data.tokens: char``)."""
    return getattr(config.data, "tokens", "word") == "char"


def _metric_and_mode(raw: Mapping[str, Any], task: str, source: str) -> tuple[str, str]:
    """The metric (default: the task's first) and its mode (default: its direction; no other)."""
    from lstm_sweep.search.tasks import get_task

    metrics = get_task(task).metrics
    metric = _string(raw.get("metric", next(iter(metrics))), source, "metric")
    if metric not in metrics:
        raise ConfigError(f"{source}: metric: {metric!r} must be one of {', '.join(metrics)} for task {task}")
    mode = _string(raw.get("mode", metrics[metric]), source, "mode")
    if mode != metrics[metric]:
        better = "lower" if metrics[metric] == "min" else "higher"
        raise ConfigError(f"{source}: mode: {mode!r} must be {metrics[metric]!r} for {metric} ({better} is better)")
    return metric, mode


def _parse_space(space: Any, source: str, task: str = "language_model") -> dict[str, Param]:
    from lstm_sweep.search.tasks import TASKS

    if not isinstance(space, Mapping):
        raise ConfigError(f"{source}: space: must be a mapping of hyperparameters")
    _reject_unknown(space, set(hyperparameters()), source, "space.")
    own = hyperparameters(task)
    for name in space:
        if name not in own:
            owners = [t.name for t in TASKS.values() if name in t.hyperparameters]
            raise ConfigError(f"{source}: space.{name}: applies to task: {' or '.join(owners)} only "
                              f"(this sweep's task is {task})")
    params = {}
    for name, hyperparameter in own.items():  # a fixed order, whatever the file's
        if hyperparameter.default is None and name not in space:
            continue  # optional and absent: data.vocab_size, model.cell apply
        params[name] = _parse_param(name, space.get(name, hyperparameter.default), source, task)
    return params


def _parse_param(name: str, spec: Any, source: str, task: str) -> Param:
    key, integer = f"space.{name}", hyperparameters(task)[name].integer
    if categorical_options(name, task) is not None:
        return _parse_categorical(name, spec, source, task)
    if not isinstance(spec, Mapping):
        param = Param("fixed", (_number(spec, integer, source, key),))
    else:
        if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(f"{source}: {key}: expected a value or one of "
                              f"{{{', '.join(k + ': ...' for k in DISTRIBUTIONS)}}}, got {dict(spec)!r}")
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{source}: {key}.{kind}: expected a non-empty list, got {args!r}")
        args = tuple(_number(a, integer, source, f"{key}.{kind}") for a in args)
        if kind != "choice":
            if len(args) != 2:
                raise ConfigError(f"{source}: {key}.{kind}: expected [low, high], got {list(args)}")
            if args[0] > args[1]:
                raise ConfigError(f"{source}: {key}.{kind}: low {args[0]} > high {args[1]}: swap them")
            if kind in ("int", "logint") and not integer:
                raise ConfigError(f"{source}: {key}: {name} is not an integer; use uniform or loguniform")
            if kind in ("uniform", "loguniform") and integer:
                raise ConfigError(f"{source}: {key}: {name} is an integer; use int, logint or choice")
            if kind in ("logint", "loguniform") and args[0] <= 0:
                raise ConfigError(f"{source}: {key}.{kind}: a log range needs low > 0, got {args[0]}")
        param = Param(kind, args)
    for value in param.values():
        _check_value(name, value, source, key, task)
    return param


def _parse_categorical(name: str, spec: Any, source: str, task: str) -> Param:
    """A parameter of a few values: ``lstm`` or ``{choice: [rnn, lstm]}``; each value one of its options."""
    key, options = f"space.{name}", categorical_options(name, task)
    if isinstance(spec, Mapping):
        if list(spec) != ["choice"] or not isinstance(spec["choice"], list) or not spec["choice"]:
            raise ConfigError(f"{source}: {key}: expected one of {_options(options)} or "
                              f"{{choice: [...]}} of them, got {dict(spec)!r}")
        param = Param("choice", tuple(spec["choice"]))
    else:
        param = Param("fixed", (spec,))
    for value in param.args:
        # `True == 1` in Python: compare types too, so `bidirectional: 1` is refused.
        if not any(type(value) is type(option) and value == option for option in options):
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {_options(options)}")
    return param


def _options(options: tuple) -> str:
    return ", ".join(str(o).lower() if isinstance(o, bool) else str(o) for o in options)


def _number(value: Any, integer: bool, source: str, key: str) -> Any:
    # PyYAML reads `1e-3` (no dot) as a string; accept it as the number the user meant.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{source}: {key}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{source}: {key}: {value!r} is not a finite number")
    if integer:
        if value != int(value):
            raise ConfigError(f"{source}: {key}: must be an integer, got {value}")
        value = int(value)
    return value


def _check_value(name: str, value: Any, source: str, key: str, task: str) -> None:
    ok = {
        "dropout": 0 <= value < 1,
        "learning_rate": value > 0,
        "vocab_size": value >= 8,
    }.get(name, value >= 1)
    if not ok:
        raise ConfigError(f"{source}: {key}: {value} is out of range: {name} is the "
                          f"{hyperparameters(task)[name].meaning}")


def _check_ranges(config: SweepConfig, source: str) -> None:
    checks = [
        (config.budget.num_samples >= 1, "budget.num_samples", config.budget.num_samples, ">= 1"),
        (config.budget.max_epochs >= 1, "budget.max_epochs", config.budget.max_epochs, ">= 1"),
        (config.budget.max_concurrent >= 1, "budget.max_concurrent", config.budget.max_concurrent, ">= 1"),
        (config.budget.max_minutes >= 0, "budget.max_minutes", config.budget.max_minutes, ">= 0 (0: no limit)"),
        (config.budget.reports_per_epoch >= 1, "budget.reports_per_epoch", config.budget.reports_per_epoch, ">= 1"),
        (config.budget.reports_per_epoch == 1 or config.scheduler.kind in ("asha", "fifo"), "budget.reports_per_epoch",
         config.budget.reports_per_epoch, f"1 with scheduler.kind {config.scheduler.kind} (it pauses trials at its "
         "decisions and resumes them from the last epoch's checkpoint: a pause within an epoch would lose its "
         "work); use asha or fifo for reports within an epoch"),
        (config.asha.grace_period * config.budget.reports_per_epoch >= 1, "asha.grace_period",
         config.asha.grace_period,
         f">= 1 / budget.reports_per_epoch ({1 / max(1, config.budget.reports_per_epoch):g}): the first report"),
        (0 <= config.asha.spare_falling < 1, "asha.spare_falling", config.asha.spare_falling,
         "in [0, 1): the share of its distance to the baseline a trial closed in its last epoch (0: never spared)"),
        (config.asha.grace_period <= config.budget.max_epochs, "asha.grace_period", config.asha.grace_period,
         f"<= budget.max_epochs ({config.budget.max_epochs})"),
        (config.asha.reduction_factor >= 2, "asha.reduction_factor", config.asha.reduction_factor, ">= 2"),
        (not config.asha.rejudge or config.scheduler.kind == "asha", "asha.rejudge", config.asha.rejudge,
         f"false with scheduler.kind {config.scheduler.kind}: re-judging is ASHA's"),
        (config.searcher.n_startup_trials >= 1, "searcher.n_startup_trials", config.searcher.n_startup_trials, ">= 1"),
        (config.searcher.kind in SearcherSettings.KINDS, "searcher.kind", config.searcher.kind,
         f"one of {', '.join(SearcherSettings.KINDS)}"),
        (config.searcher.startup in SearcherSettings.STARTUPS, "searcher.startup", config.searcher.startup,
         f"one of {', '.join(SearcherSettings.STARTUPS)}"),
        (config.searcher.startup == "random" or config.searcher.kind == "tpe", "searcher.startup",
         config.searcher.startup, "random with searcher.kind random (it draws every trial at random); "
         "cheap start-up trials are TPE's"),
        (config.scheduler.kind in SchedulerSettings.KINDS, "scheduler.kind", config.scheduler.kind,
         f"one of {', '.join(SchedulerSettings.KINDS)}"),
        (config.resources.cpus_per_trial > 0, "resources.cpus_per_trial", config.resources.cpus_per_trial, "> 0"),
        (0 <= config.resources.gpus_per_trial <= 1, "resources.gpus_per_trial", config.resources.gpus_per_trial,
         "between 0 and 1 (a trial trains on one GPU at most)"),
        (config.resources.gpu_memory_gb >= 0, "resources.gpu_memory_gb", config.resources.gpu_memory_gb, ">= 0"),
        (config.resources.gpu_process_reserve_mb >= 0, "resources.gpu_process_reserve_mb",
         config.resources.gpu_process_reserve_mb, ">= 0"),
        (config.resources.gpu_share_grid >= 1, "resources.gpu_share_grid", config.resources.gpu_share_grid, ">= 1"),
        (config.resources.trial_memory_gb >= 0, "resources.trial_memory_gb", config.resources.trial_memory_gb,
         ">= 0 (0: automatic)"),
        (config.resources.min_batch_size >= 1, "resources.min_batch_size", config.resources.min_batch_size, ">= 1"),
        (config.resources.max_oom_retries >= 0, "resources.max_oom_retries", config.resources.max_oom_retries,
         ">= 0"),
        (0 <= config.resources.memory_headroom < 1, "resources.memory_headroom", config.resources.memory_headroom,
         "in [0, 1): the share of a budget kept for the memory model's error"),
        (config.resources.max_failures >= 0, "resources.max_failures", config.resources.max_failures, ">= 0"),
        (config.model.precision in ("float32", "mixed_float16"), "model.precision", config.model.precision,
         "float32 or mixed_float16"),
        (config.model.cell in categorical_options("cell"), "model.cell", config.model.cell,
         f"one of {', '.join(categorical_options('cell'))}"),
        (is_folder_name(config.name), "name", config.name, FOLDER_NAME_RULE),
    ]
    for ok, key, value, rule in checks:
        if not ok:
            raise ConfigError(f"{source}: {key}: {value!r} must be {rule}")


FOLDER_NAME_RULE = "one folder name: not empty, without a slash (/ or \\), not . or .."


def is_folder_name(name: str) -> bool:
    """Whether ``name`` names one folder (a run folder): the rule of the config's ``name`` and of
    ``--name`` (:data:`FOLDER_NAME_RULE`)."""
    return bool(name.strip()) and not any(c in name for c in "/\\\0") and name not in (".", "..")


def _coerce(value: Any, default: Any, source: str, key: str) -> Any:
    """Check a section value against the type of its default: bool, int, float, str or a list of names."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, str):
        return _string(value, source, key)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{source}: {key}: expected a list of names, got {value!r}")
        return tuple(str(v) for v in value)
    number = _number(value, False, source, key)
    if type(default) is int:
        if number != int(number):
            raise ConfigError(f"{source}: {key}: must be an integer, got {number}")
        return int(number)
    return float(number)


def _string(value: Any, source: str, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
    return str(value)


def _reject_unknown(values: Mapping, allowed: set[str], source: str, prefix: str) -> None:
    for key in values:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown key {prefix}{key}: expected one of {', '.join(sorted(allowed))}")


def _plain(value: Any) -> Any:
    if hasattr(value, "plain"):  # DataSettings: the keys its kind of corpus reads
        return value.plain()
    if dataclasses.is_dataclass(value):  # tuples as lists: YAML's safe dumper writes no tuple
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}
    return value
