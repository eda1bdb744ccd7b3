"""Search efficiency: lstm-sweep against the ways people search today, under one wall-clock budget.

Every method searches the same task on the same machine for the same wall-clock budget:

* **task**: a seeded subset of the lyrics corpus (``--train`` + ``--val`` sentences of at most
  15 tokens, default 20,000 + 5,000), vocabulary 5000; every method trains
  ``model.build_language_model`` with ``model.fit_language_model`` (batches of one sentence
  length, the padding-masked loss) and is scored on the same token-weighted ``val_loss`` of
  the same 5,000 validation sentences. Only the search differs.
* **space** (``--space issue6``, the default): embedding 16..256 and hidden 32..512 (integers,
  log-uniform), 1-2 layers, dropout 0..0.5, learning rate 1e-4..1e-2 (log), batch
  64/128/256/512; ``--space corners`` (issue 15's second space): the sizes as choices
  (embedding 32/64/128/256, hidden 64/128/256/512), the rest the same. Every method reads the
  space from ``SPACES`` (``suggest_optuna``, ``suggest_keras_tuner``); ``--max-epochs`` epochs
  per trial at most (default 4).
* **methods** (``--methods``, one fresh process each, one after the other):

  1. ``grid``: the notebook way, embedding x hidden (``GRID``) nested loops in ascending order,
     the rest fixed at a notebook's defaults (``GRID_FIXED``), each config trained to
     ``--max-epochs``, one after the other, TensorFlow on both cores;
  2. ``tune-random``: Ray Tune's defaults, random search (``BasicVariantGenerator``) and the
     FIFO scheduler, one CPU a trial (two at once);
  3. ``lstm-sweep``: ``search.sweep.run_sweep`` as a user runs it: Optuna TPE + ASHA with the
     config defaults (``searcher.n_startup_trials``, ``asha.*`` with the baseline stop), the memory model sizing
     each trial, ``budget.max_minutes`` set to what is left of the budget;
  4. ``keras-tuner``: Keras Tuner's ``Hyperband`` (factor 3) with a ``HyperModel``;
  5. ``optuna``: Optuna on its own: ``TPESampler`` + ``HyperbandPruner``, pruning through
     ``optuna_integration.KerasPruningCallback``, ``study.optimize(timeout=...)``.

The clock of a method starts when its process is launched: importing TensorFlow, starting Ray
and every trial's start-up are part of its budget. A validation result after the budget does
not count; a method still running shortly after it is killed. Seeds (``--seeds``) seed each
method's sampler and the models' weights and batch order; the methods of one seed run one after
the other, then the next seed's, so the machine's drift spreads over all of them.

Usage (``--budget-min`` x methods x seeds of wall time: 5 x 5 x 3 = 75 minutes by default)::

    .venv/bin/python bench/search_efficiency.py
    .venv/bin/python bench/search_efficiency.py --seeds 3,4          # two more seeds, same folder
    .venv/bin/python bench/search_efficiency.py --report             # the figures of every seed there
    .venv/bin/python bench/search_efficiency.py --budget-min 0.5 --methods grid,lstm-sweep \\
        --seeds 1 --data builtin --train 2000 --val 500          # a smoke run, 2 minutes

The lyrics corpus is ``--data``, else ``$LSTM_SWEEP_LYRICS``, else ``../shared/data/lyrics``
beside the repository; ``--data builtin`` uses the synthetic corpus.

Writes ``bench/results/search_<date>.csv`` (one row per validation result: method, seed,
seconds since the method's start, the trial, its epoch, val_loss, the best so far, trials
started and finished so far), ``search_<date>_summary.csv`` (one row per method and seed) and
``search_<date>.png`` (best val_loss so far against wall time), and prints the table for
BENCHMARKS.md: best val_loss at the end of the budget, time to reach the grid's final best
(the same seed's grid), trials finished.

Ablations: ``--set KEY=VALUE`` changes a config key of the ``lstm-sweep`` method only (e.g.
``--set asha.stop_at_baseline=false``); give the variant its own ``--date`` folder and copy the
other methods' ``<method>-seed<k>`` folders there to compare with ``--report``. ``--warm-start
DATE`` (lstm-sweep only, item 4's ablation) starts each seed's sweep from an earlier run's
sweep of the same task, ``search_<DATE>/lstm-sweep-seed<k>/run`` for the next seed ``k`` found
there (never the seed's own: its trials would replay this sweep's draws), as ``lstm-sweep search
--warm-start`` does.

Targets (issue 15): lstm-sweep's median best val_loss <= 4.60 and its median time to a best of
``--target`` (4.8) <= 120 s; the script prints whether each holds.

Target (issue 6): lstm-sweep reaches the grid's final best in at most a third of the grid's
time, and ends the budget with the lowest median best val_loss.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray process on 127.0.0.1
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METHODS = ("grid", "tune-random", "lstm-sweep", "keras-tuner", "optuna")
SPACE = {  # issue 6's space, in lstm-sweep's config syntax; every method reads it (``suggest_*`` below)
    "embedding_size": {"logint": [16, 256]},
    "hidden_size": {"logint": [32, 512]},
    "num_layers": {"int": [1, 2]},
    "dropout": {"uniform": [0.0, 0.5]},
    "learning_rate": {"loguniform": [1e-4, 1e-2]},
    "batch_size": {"choice": [64, 128, 256, 512]},
}
# Issue 15's second space: the sizes as a new user writes them (choices), the same corners of
# learning rate and batch, where stop rules that judge by epochs kill the slow starters.
CORNERS = {
    "embedding_size": {"choice": [32, 64, 128, 256]},
    "hidden_size": {"choice": [64, 128, 256, 512]},
    "num_layers": {"int": [1, 2]},
    "dropout": {"uniform": [0.0, 0.5]},
    "learning_rate": {"loguniform": [1e-4, 1e-2]},
    "batch_size": {"choice": [64, 128, 256, 512]},
}
SPACES = {"issue6": SPACE, "corners": CORNERS}
GRID = {"embedding_size": (64, 128, 256), "hidden_size": (128, 256, 512)}  # inside both spaces
GRID_FIXED = {"num_layers": 1, "dropout": 0.0, "learning_rate": 1e-3, "batch_size": 128}  # Keras' Adam default
VOCAB, MAX_TOKENS = 5000, 15
GRACE_S = 120  # after the budget: Tune stops its trials and writes its results; then a kill
TARGET_SHARE = 1 / 3  # of the grid's time, to reach the grid's final best
TARGET_LOSS, TARGET_LOSS_S, TARGET_BEST = 4.8, 120.0, 4.60  # issue 15: lstm-sweep's median time to 4.8, best


def suggest_optuna(trial, name: str, spec):
    """One parameter of a space in lstm-sweep's syntax, as Optuna's own ``suggest_*``."""
    if not isinstance(spec, dict):
        return spec
    (kind, values), = spec.items()
    if kind == "choice":
        return trial.suggest_categorical(name, values)
    low, high = values
    if kind in ("int", "logint"):
        return trial.suggest_int(name, low, high, log=kind == "logint")
    return trial.suggest_float(name, low, high, log=kind == "loguniform")


def suggest_keras_tuner(hp, name: str, spec):
    """One parameter of a space in lstm-sweep's syntax, as Keras Tuner's own ``hp.*``."""
    if not isinstance(spec, dict):
        return hp.Fixed(name, spec)
    (kind, values), = spec.items()
    if kind == "choice":
        return hp.Choice(name, values)
    low, high = values
    if kind in ("int", "logint"):
        return hp.Int(name, low, high, sampling="log" if kind == "logint" else "linear")
    return hp.Float(name, low, high, sampling="log" if kind == "loguniform" else "linear")


class BudgetSpent(BaseException):
    """Raised inside a method's process at its deadline; a BaseException so no tuner catches it
    as a failed trial and goes on."""


# --------------------------------------------------------------------------------------------
# The task: a fixed subset of the corpus, as a one-file corpus every method prepares the same way


def lyrics_path(given: str | None) -> str:
    if given:
        return given
    return os.environ.get("LSTM_SWEEP_LYRICS", str(REPO.parent / "shared" / "data" / "lyrics"))


def write_subset(source: str, folder: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """``n_train + n_val`` sentences of at most ``MAX_TOKENS`` tokens drawn (seeded) from ``source``,
    written cleaned, one a line, to ``folder/subset.txt``; ``data_settings(folder)`` splits them
    ``n_train`` / ``n_val``."""
    import numpy as np

    from lstm_sweep.data_pipeline.dataset import BUILTIN
    from lstm_sweep.data_pipeline.corpus import corpus_files, decode_file
    from lstm_sweep.data_pipeline.synthetic import synthetic_lines
    from lstm_sweep.data_pipeline.text import clean_line

    if source == BUILTIN:
        raw = synthetic_lines(4 * (n_train + n_val), seed=0)
    else:
        raw = [line for _, data, file in corpus_files(source) for line in decode_file(data, file).splitlines()]
    cleaned = [c for c in map(clean_line, raw) if c is not None and len(c.split()) <= MAX_TOKENS]
    if len(cleaned) < n_train + n_val:
        raise SystemExit(f"{source} keeps {len(cleaned)} sentences of <= {MAX_TOKENS} tokens; "
                         f"--train + --val asks for {n_train + n_val}")
    picked = np.sort(np.random.default_rng(seed).choice(len(cleaned), n_train + n_val, replace=False))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "subset.txt"
    # Written without <start>/<end>: cleaning the file again gives back the same sentences.
    path.write_text("".join(cleaned[i].removeprefix("<start> ").removesuffix(" <end>") + "\n" for i in picked))
    return folder


def data_settings(folder: Path, n_train: int, n_val: int):
    from lstm_sweep.data_pipeline import DataSettings

    return DataSettings(path=str(folder), vocab_size=VOCAB, max_tokens=MAX_TOKENS,
                        val_fraction=n_val / (n_train + n_val), seed=0)


# --------------------------------------------------------------------------------------------
# Inside a method's process


class Events:
    """The method's log, one JSON line per event, stamped with this machine's clock:
    ``start`` / ``end`` of a trial and each validation ``result``. Opens the file for each
    line, so Ray Tune can pickle it with its callbacks."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, kind: str, trial: str, **fields) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps({"t": time.time(), "kind": kind, "trial": str(trial), **fields}) + "\n")


def keras_callbacks(events: Events, trial: str, deadline: float):
    """Log each epoch's val_loss (``fit_language_model`` puts its exact validation first, so the
    logs hold it) and stop at the deadline."""
    import keras

    class Log(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            events("result", trial, epoch=epoch + 1, val_loss=float(logs["val_loss"]))

        def on_train_batch_end(self, batch, logs=None):
            if time.time() > deadline:
                raise BudgetSpent

    return [Log()]


def build_and_compile(prepared, params: dict):
    from lstm_sweep.model import build_language_model, compile_language_model

    model = build_language_model(vocab_size=len(prepared.vocab), embedding_size=int(params["embedding_size"]),
                                 hidden_size=int(params["hidden_size"]), num_layers=int(params["num_layers"]),
                                 dropout=float(params["dropout"]))
    return compile_language_model(model, float(params["learning_rate"]))


def fit(model, prepared, batch_size: int, seed: int, epochs: int, callbacks, initial_epoch: int = 0):
    """A trial's training, as ``search.trainable`` does it."""
    from lstm_sweep.data_pipeline import lm_dataset
    from lstm_sweep.model import fit_language_model

    return fit_language_model(model, lm_dataset(prepared.train, batch_size, shuffle=True, seed=seed, buckets=True),
                              lm_dataset(prepared.val, batch_size, shuffle=False), epochs=epochs,
                              initial_epoch=initial_epoch, callbacks=callbacks)


def run_grid(prepared, args, events: Events) -> None:
    import itertools

    from lstm_sweep.model import configure_threads, set_seed

    configure_threads(os.cpu_count() or 1)
    for i, (emb, hidden) in enumerate(itertools.product(GRID["embedding_size"], GRID["hidden_size"])):
        params = {"embedding_size": emb, "hidden_size": hidden, **GRID_FIXED}
        events("start", i, params=params)
        set_seed(args.seed)
        fit(build_and_compile(prepared, params), prepared, params["batch_size"], args.seed, args.max_epochs,
            keras_callbacks(events, str(i), args.deadline))
        events("end", i)
    events("end", "search")


def run_keras_tuner(prepared, args, events: Events) -> None:
    import itertools

    import keras_tuner as kt

    from lstm_sweep.model import configure_threads

    configure_threads(os.cpu_count() or 1)
    fits = itertools.count()
    space = SPACES[args.space]

    class LyricsModel(kt.HyperModel):
        def build(self, hp):
            return build_and_compile(prepared, {name: suggest_keras_tuner(hp, name, spec)
                                                for name, spec in space.items() if name != "batch_size"})

        def fit(self, hp, model, *fit_args, callbacks=(), epochs=1, initial_epoch=0, **kwargs):
            # Hyperband passes each bracket's epochs (and initial_epoch for a trial it carries on).
            trial = f"kt{next(fits)}"  # each fit Hyperband asks for: a new trial, or one carried on
            events("start", trial, params=dict(hp.values))
            history = fit(model, prepared, suggest_keras_tuner(hp, "batch_size", space["batch_size"]), args.seed, epochs,
                          [*keras_callbacks(events, trial, args.deadline), *callbacks], initial_epoch)
            events("end", trial)
            return history

    tuner = kt.Hyperband(LyricsModel(), objective=kt.Objective("val_loss", "min"), max_epochs=args.max_epochs,
                         factor=3, hyperband_iterations=1000, seed=args.seed, directory=str(args.work / "kt"),
                         project_name="search", overwrite=True)
    tuner.search()
    events("end", "search")


def run_optuna(prepared, args, events: Events) -> None:
    import optuna
    from optuna_integration import KerasPruningCallback

    from lstm_sweep.model import configure_threads, set_seed

    configure_threads(os.cpu_count() or 1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        params = {name: suggest_optuna(trial, name, spec) for name, spec in SPACES[args.space].items()}
        events("start", trial.number, params=params)
        set_seed(args.seed + trial.number)
        try:
            history = fit(build_and_compile(prepared, params), prepared, params["batch_size"], args.seed,
                          args.max_epochs, [*keras_callbacks(events, str(trial.number), args.deadline),
                                            KerasPruningCallback(trial, "val_loss")])
        finally:
            events("end", trial.number)
        return min(history.history["val_loss"])

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.max_epochs,
                                                                      reduction_factor=3))
    study.optimize(objective, timeout=max(0.0, args.deadline - time.time()))
    events("end", "search")


def tune_events(events: Events):
    """A Ray Tune callback that logs trials and results on the driver, by the driver's clock."""
    from ray import tune

    class Log(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            events("start", trial.trial_id, params=trial.config)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            # An in-epoch report (budget.reports_per_epoch) is on the validation subset: not a result here.
            if math.isfinite(result.get("val_loss", math.inf)) and result.get("val_on") != "subset":
                events("result", trial.trial_id, epoch=int(result.get("epoch", result["training_iteration"])),
                       val_loss=float(result["val_loss"]))

        def on_trial_complete(self, iteration, trials, trial, **info):
            events("end", trial.trial_id)

    return Log()


def sweep_config(args, folder: Path, n_train: int, n_val: int):
    from lstm_sweep.search.config import parse_config

    settings = data_settings(folder, n_train, n_val)
    return parse_config({
        "name": "search", "output": str(args.work),
        "data": {"path": settings.path, "vocab_size": settings.vocab_size, "max_tokens": settings.max_tokens,
                 "val_fraction": settings.val_fraction, "seed": settings.seed},
        "space": SPACES[args.space],
        "budget": {"num_samples": 10_000, "max_epochs": args.max_epochs, "max_concurrent": 2,
                   "max_minutes": max(1.0, args.deadline - time.time()) / 60},
        "searcher": {"seed": args.seed},
    })


def _override(text: str) -> tuple[str, object]:
    """``asha.stop_at_baseline=false`` -> ``("asha.stop_at_baseline", False)``: the value as YAML reads it."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"--set {text!r}: expected KEY=VALUE, e.g. searcher.n_startup_trials=2")
    return key.strip(), yaml.safe_load(value)


def run_lstm_sweep(prepared, args, events: Events) -> None:
    from lstm_sweep.search.sweep import run_sweep

    config = sweep_config(args, args.folder, args.train, args.val).with_overrides(
        **dict(_override(o) for o in args.set))
    earlier = [earlier_sweep(args.out / f"search_{args.warm_start}", args.seed)] if args.warm_start else []
    # The trials' weights and batch order follow the searcher's seed (search.trainable).
    run_sweep(config, name="run", num_cpus=os.cpu_count(), callbacks=[tune_events(events)],
              warm_start=earlier)
    events("end", "search")


def earlier_sweep(folder: Path, seed: int) -> Path:
    """The run folder a warm-started ``seed`` starts from: the lstm-sweep run of the next seed
    after ``seed`` in ``folder`` (cyclically), so never its own."""
    runs = {int(d.parent.name.rsplit("-seed", 1)[1]): d for d in folder.glob("lstm-sweep-seed*/run")
            if (d / "trials.csv").is_file()}
    others = sorted(k for k in runs if k != seed)
    if not others:
        raise SystemExit(f"--warm-start: no other seed's lstm-sweep run folder with a trials.csv under {folder}")
    return runs[next((k for k in others if k > seed), others[0])]


def run_tune_random(prepared, args, events: Events) -> None:
    from ray import tune

    from lstm_sweep.search.resources import make_sizer, ray_nodes
    from lstm_sweep.search.sweep import build_trainable, start_ray

    # The trainable alone: no early stopping of ours either (FIFO runs every trial to the end).
    config = sweep_config(args, args.folder, args.train, args.val).with_overrides(
        **{"asha.stop_at_baseline": False})
    start_ray(num_cpus=os.cpu_count(), include_dashboard=False)
    tuner = tune.Tuner(
        build_trainable(config, make_sizer(config, len(prepared.vocab), ray_nodes())),
        param_space=config.param_space(),
        # Tune's defaults: random search and FIFO; only the budget is ours.
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=10_000,
                                    time_budget_s=max(1.0, args.deadline - time.time())),
        run_config=tune.RunConfig(name="ray", storage_path=str(args.work.resolve()),
                                  callbacks=[tune_events(events)], verbose=0),
    )
    tuner.fit()
    events("end", "search")


RUNNERS = {"grid": run_grid, "tune-random": run_tune_random, "lstm-sweep": run_lstm_sweep,
           "keras-tuner": run_keras_tuner, "optuna": run_optuna}


def child(args) -> int:
    """One method, in this process, until its deadline."""
    from lstm_sweep.data_pipeline import prepare

    events = Events(args.events)
    prepared = prepare(data_settings(args.folder, args.train, args.val))  # from the cache the parent filled
    try:
        RUNNERS[args.child](prepared, args, events)
    except BudgetSpent:
        events("end", "search", budget_spent=True)
    return 0


# --------------------------------------------------------------------------------------------
# The parent: each method in its own process, then the figures


def run_method(method: str, seed: int, args, folder: Path, out: Path) -> Path:
    """Launch ``method`` for ``seed`` with a deadline ``--budget-min`` from now; kill it if it
    overstays; returns its events file (the launch time is its first line)."""
    work = out / f"{method}-seed{seed}"
    shutil.rmtree(work, ignore_errors=True)  # a previous run's
    work.mkdir(parents=True)
    events = work / "events.jsonl"
    launched = time.time()
    deadline = launched + 60 * args.budget_min
    events.write_text(json.dumps({"t": launched, "kind": "launch", "trial": "", "deadline": deadline}) + "\n")
    cmd = [sys.executable, __file__, "--child", method, "--seed", str(seed), "--deadline", repr(deadline),
           "--events", str(events), "--work", str(work), "--folder", str(folder), "--train", str(args.train),
           "--val", str(args.val), "--out", str(args.out), "--max-epochs", str(args.max_epochs), "--space", args.space,
           *(f"--set={o}" for o in args.set), *(["--warm-start", args.warm_start] if args.warm_start else [])]
    with open(work / "output.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=deadline + GRACE_S - time.time())
        except subprocess.TimeoutExpired:
            print(f"  {method} seed {seed}: still running {GRACE_S} s after its budget: killed", flush=True)
            kill(session_processes(proc.pid))
            proc.wait()
    if proc.returncode:
        print(f"  {method} seed {seed}: exit status {proc.returncode}; see {work / 'output.log'}", flush=True)
    # Ray's processes end a moment after its driver: the next method starts on a quiet machine.
    for attempt in range(61):
        left = session_processes(proc.pid)
        if not left:
            break
        if attempt == 60:
            kill(left)
        time.sleep(1)
    return events


def session_processes(sid: int) -> list:
    """The processes of the session ``sid`` that are still alive: a method's process, started as
    a session's leader, and every process it started, Ray's head, raylet and workers included,
    which keep its session when they outlive it. Nothing else on the machine: a user's own Ray,
    started while this method ran, is never touched."""
    import psutil

    found = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            pass
    return found


def kill(processes: list) -> None:
    """SIGKILL each of ``processes``; one that has ended since it was listed is no error."""
    import psutil

    for p in processes:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def read_events(path: Path, method: str, seed: int):
    """One row per validation result within the budget, with the best so far and the trials
    started and finished so far; plus the method's totals."""
    import pandas as pd

    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    launch, rest = lines[0], lines[1:]
    budget = launch["deadline"] - launch["t"]
    for e in rest:
        e["t_s"] = e["t"] - launch["t"]
    inside = [e for e in rest if e["t_s"] <= budget]
    # Counted as events, not distinct names: a Keras Tuner trial that Hyperband carries on to
    # more epochs is a new trial to it, with a new start and end.
    rows, best, started, finished = [], math.inf, 0, 0
    for e in inside:
        if e["kind"] == "start":
            started += 1
        elif e["kind"] == "end" and e["trial"] != "search":
            finished += 1
        elif e["kind"] == "result":
            best = min(best, e["val_loss"])
            rows.append({"method": method, "seed": seed, "t_s": round(e["t_s"], 2), "trial": e["trial"],
                         "epoch": e["epoch"], "val_loss": e["val_loss"], "best_so_far": best,
                         "trials_started": started, "trials_finished": finished})
    ended = [e["t_s"] for e in rest if e["kind"] == "end" and e["trial"] == "search" and not e.get("budget_spent")]
    wall = min(budget, ended[0]) if ended else budget  # the whole search ended before its budget
    totals = {"method": method, "seed": seed, "budget_s": round(budget, 1), "wall_s": round(wall, 1),
              "trials_started": started, "trials_finished": finished,
              "results": len(rows), "final_best": best}
    return pd.DataFrame(rows), totals


def _first_below(curves, method: str, seed: int, target: float) -> float:
    """Seconds from the method's launch to its first validation result at or below ``target``; NaN if none."""
    run = curves[(curves.method == method) & (curves.seed == seed) & (curves.best_so_far <= target + 1e-9)]
    return float(run.t_s.iloc[0]) if len(run) else math.nan


def summarize(curves, totals, target: float = TARGET_LOSS):
    """Per method and seed: time to reach the same seed's grid's final best and ``target``; the
    BENCHMARKS table."""
    import pandas as pd

    summary = pd.DataFrame(totals)
    grid = summary[summary.method == "grid"].set_index("seed")
    summary["t_reach_grid_best_s"] = [
        _first_below(curves, row.method, row.seed, grid.final_best[row.seed])
        if row.seed in grid.index and math.isfinite(grid.final_best[row.seed]) else math.nan
        for _, row in summary.iterrows()]
    summary["t_reach_target_s"] = [_first_below(curves, row.method, row.seed, target) for _, row in summary.iterrows()]
    summary["grid_wall_s"] = [grid.wall_s.get(s, math.nan) for s in summary.seed]
    summary["share_of_grid_time"] = summary.t_reach_grid_best_s / summary.grid_wall_s

    rows = []
    for method, runs in summary.groupby("method", sort=False):
        reached = runs.t_reach_grid_best_s.notna()
        rows.append({
            "method": method, "seeds": len(runs),
            "best val_loss (median)": runs.final_best.median(),
            "best val_loss (min-max)": f"{runs.final_best.min():.3f}-{runs.final_best.max():.3f}",
            f"reached {target:g}": f"{int(runs.t_reach_target_s.notna().sum())}/{len(runs)}",
            f"time to {target:g} s (median)": runs.t_reach_target_s.fillna(math.inf).median(),
            "reached grid's best": f"{int(reached.sum())}/{len(runs)}",
            # A seed that never reached it counts as the slowest (infinite) in the median.
            "time to grid's best s (median)": runs.t_reach_grid_best_s.fillna(math.inf).median(),
            "share of grid's time (median)": runs.share_of_grid_time.fillna(math.inf).median(),
            "trials finished (median)": runs.trials_finished.median(),
            "trials started (median)": runs.trials_started.median(),
        })
    return summary, pd.DataFrame(rows)


def plot(curves, totals, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = dict(zip(METHODS, ("tab:gray", "tab:orange", "tab:blue", "tab:green", "tab:purple")))
    for total in totals:
        run = curves[(curves.method == total["method"]) & (curves.seed == total["seed"])]
        if run.empty:
            continue
        # A step line to the end of the budget: the best so far holds until the next improvement.
        x = [*run.t_s, total["budget_s"]]
        y = [*run.best_so_far, run.best_so_far.iloc[-1]]
        first = total["seed"] == min(t["seed"] for t in totals if t["method"] == total["method"])
        ax.step(x, y, where="post", color=colors.get(total["method"]), alpha=0.8,
                label=total["method"] if first else None)
    ax.set_xlabel("wall time since the method's process started, s")
    ax.set_ylabel("best val_loss so far")
    ax.set_title("search efficiency: one line per method and seed")
    finite = curves.best_so_far[curves.best_so_far < math.inf]
    if len(finite):
        low = finite.min()
        ax.set_ylim(low - 0.05, min(finite.max(), low + 1.5) + 0.05)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget-min", type=float, default=5.0, help="wall-clock budget of each method, minutes (5)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--seeds", default="3", help="seeds per method: a count N (0..N-1) or a list, e.g. 1,2 or 0, for seed 0 alone (3)")
    p.add_argument("--report", action="store_true",
                   help="run nothing: the figures from every method and seed already in the output folder")
    p.add_argument("--max-epochs", type=int, default=4, help="epochs per trial at most (4)")
    p.add_argument("--space", choices=SPACES, default="issue6",
                   help="issue6: log-uniform sizes (default); corners: sizes as choices (issue 15's second space)")
    p.add_argument("--target", type=float, default=TARGET_LOSS,
                   help=f"the table's time-to column: seconds to a best val_loss at or below this ({TARGET_LOSS:g})")
    p.add_argument("--data", help="lyrics folder (default $LSTM_SWEEP_LYRICS or ../shared/data/lyrics), or builtin")
    p.add_argument("--train", type=int, default=20_000, help="training sentences (20000)")
    p.add_argument("--val", type=int, default=5_000, help="validation sentences (5000)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--date", default=f"{datetime.date.today():%Y%m%d}", help="names the output files")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an ablation: a config key of the lstm-sweep method, e.g. asha.stop_at_baseline=false "
                        "(repeatable; use its own --date)")
    p.add_argument("--warm-start", metavar="DATE",
                   help="lstm-sweep only: each seed starts from another seed's lstm-sweep run in search_DATE "
                        "(item 4's ablation; use its own --date)")
    # A method's own process (internal)
    p.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    p.add_argument("--events", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    import pandas as pd

    from lstm_sweep.data_pipeline import prepare
    from tables import markdown  # bench/tables.py, beside this file

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        p.error(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if "," in args.seeds else list(range(int(args.seeds)))
    except ValueError:
        p.error(f"--seeds {args.seeds}: a count or a comma-separated list of seeds")
    if not seeds:
        p.error(f"--seeds {args.seeds}: no seed to run (a count of at least 1, or a list such as 0,2)")
    stem = f"search_{args.date}"
    work = args.out / stem

    curves, totals = [], []
    if args.report:
        runs = sorted((d.name.rsplit("-seed", 1), d / "events.jsonl") for d in work.glob("*-seed*")
                      if (d / "events.jsonl").is_file())
        for (method, seed), events in sorted(runs, key=lambda r: (int(r[0][1]), METHODS.index(r[0][0]))):
            frame, total = read_events(events, method, int(seed))
            curves.append(frame)
            totals.append(total)
        if not totals:
            p.error(f"--report: no method's events under {work}")
    else:
        source = lyrics_path(args.data)
        if source != "builtin" and not Path(source).is_dir():
            p.error(f"lyrics corpus not found at {source}: pass --data DIR, set LSTM_SWEEP_LYRICS, or --data builtin")
        folder = write_subset(source, work / "corpus", args.train, args.val)
        prepared = prepare(data_settings(folder, args.train, args.val))  # fills the cache every method reads
        s = prepared.stats
        print(f"task: {s['train']} train / {s['val']} val sentences of <= {MAX_TOKENS} tokens from {source}, "
              f"vocabulary {len(prepared.vocab)}; budget {args.budget_min:g} min a method, "
              f"{args.max_epochs} epochs a trial at most; space {args.space}; {len(methods)} methods x {len(seeds)} seeds",
              flush=True)
        for seed in seeds:
            for method in methods:
                began = time.time()
                frame, total = read_events(run_method(method, seed, args, folder, work), method, seed)
                curves.append(frame)
                totals.append(total)
                print(f"  seed {seed} {method:12s} best {total['final_best']:.4f}, trials "
                      f"{total['trials_finished']} finished / {total['trials_started']} started "
                      f"({time.time() - began:.0f} s)", flush=True)
    curves = pd.concat(curves, ignore_index=True)
    summary, table = summarize(curves, totals, args.target)
    args.out.mkdir(parents=True, exist_ok=True)
    curves.to_csv(args.out / f"{stem}.csv", index=False)
    summary.to_csv(args.out / f"{stem}_summary.csv", index=False)
    plot(curves, totals, args.out / f"{stem}.png")
    print(markdown(table, floatfmt=".3f"))
    print(f"wrote {args.out / f'{stem}.csv'}, {args.out / f'{stem}_summary.csv'} and {args.out / f'{stem}.png'}")
    if {"grid", "lstm-sweep"} <= set(table.method):
        ours = table.set_index("method").loc["lstm-sweep"]
        share = ours["share of grid's time (median)"]
        lowest = table["best val_loss (median)"].min() == ours["best val_loss (median)"]
        print(f"lstm-sweep reaches the grid's final best in {share:.2f} of the grid's time (target <= "
              f"{TARGET_SHARE:.2f}) -> {'HOLDS' if share <= TARGET_SHARE else 'DOES NOT HOLD'}; "
              f"lowest median best val_loss -> {'HOLDS' if lowest else 'DOES NOT HOLD'}")
    if "lstm-sweep" in set(table.method):
        ours = table.set_index("method").loc["lstm-sweep"]
        best, to = ours["best val_loss (median)"], ours[f"time to {args.target:g} s (median)"]
        print(f"lstm-sweep: median best {best:.3f} (target <= {TARGET_BEST:.2f}) -> "
              f"{'HOLDS' if best <= TARGET_BEST else 'DOES NOT HOLD'}; median time to {args.target:g}: "
              f"{to:.0f} s (target <= {TARGET_LOSS_S:.0f} s) -> {'HOLDS' if to <= TARGET_LOSS_S else 'DOES NOT HOLD'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
