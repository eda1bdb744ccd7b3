"""Run a sweep: Ray Tune's ``Tuner`` with an Optuna TPE searcher and ASHA early stopping.

The flow, top to bottom::

    config ──► run folder + sweep.yaml ──► tokenize once (cache) ──► Ray (local or cluster)
           ──► Tuner(OptunaSearch + ASHAScheduler).fit() ──► trials.csv, curves.csv, val_loss.png

Both tasks (``task: language_model`` and ``task: classify``, ``search.tasks``) run through the
same Tuner; the sweep's ``metric`` and ``mode`` (``val_loss``/``min`` by default) are what the
searcher, ASHA, the kept checkpoints and the winner follow.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import yaml

from lstm_sweep import atomic
from lstm_sweep.errors import ConfigError, RunFolderError, UserError
from lstm_sweep.search.config import SweepConfig

if TYPE_CHECKING:  # importing search.resources loads TensorFlow: not before a user error is found
    from lstm_sweep.search.resources import TrialSizer

log = logging.getLogger("lstm_sweep.search")

EXPERIMENT_DIR = "ray"  # Ray Tune experiment, inside the run folder
METRIC, MODE = "val_loss", "min"  # the default metric; a sweep's own is config.metric, config.mode
LOCALHOST = "127.0.0.1"


@dataclass
class SweepOutcome:
    run_dir: Path
    records: list  # list[results.TrialRecord]
    paths: dict[str, Path]
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM: `lstm-sweep search --resume run_dir` goes on
    metric: str = METRIC  # what the trials were ranked by
    mode: str = MODE


def new_run_dir(config: SweepConfig, name: str | None = None) -> Path:
    """``<output>/<name>``, claimed for this sweep alone; by default the config's name and a
    timestamp (``-2``, ``-3``, ... appended when another sweep took that name first).

    The claim is atomic: the run folder's ``ray/`` is made with ``mkdir`` (no ``exist_ok``),
    which exactly one process can do, so two sweeps started at once into the same ``--out``
    never share a folder. A named folder that already holds a run is refused rather than mixed
    with a new one; an empty folder made beforehand is taken.
    """
    return _claim_run_dir(config, name)[0]


def _claim_run_dir(config: SweepConfig, name: str | None) -> tuple[Path, Path | None]:
    """The claimed run folder, and the topmost folder this call created (None: none, the run
    folder was there, empty), which :func:`_unclaim` removes again."""
    out = Path(config.output)
    made_out = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    base = name if name is not None else f"{config.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    for attempt in range(1, 1000):
        run_dir = out / (base if attempt == 1 else f"{base}-{attempt}")
        created = made_out or (None if run_dir.exists() else run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not any(p.name != EXPERIMENT_DIR for p in run_dir.iterdir()):
                (run_dir / EXPERIMENT_DIR).mkdir()  # the claim: one process wins
                return run_dir, created
        except FileExistsError:
            pass  # another sweep claimed it first
        except OSError as e:
            raise RunFolderError(f"cannot make the run folder {run_dir} ({e.strerror or e}): choose another --out, "
                                 "one on a writable file system") from None
        if name is not None:
            raise ConfigError(f"run folder {run_dir} already holds a run: choose another --name or --out")
    raise RunFolderError(f"{out}: no free run folder name after {base}-999: choose another --name")


def _unclaim(run_dir: Path, created: Path | None) -> None:
    """Undo :func:`_claim_run_dir` for a sweep refused before it started: what it wrote, and
    the folders it made (those still empty: another sweep may have begun beside it)."""
    for child in run_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if created is None:
        return
    folder = run_dir
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == created or folder.parent == folder:
            return
        folder = folder.parent


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
              include_dashboard: bool = True, dashboard_host: str = LOCALHOST,
              log_to_driver: bool = True) -> str | None:
    """Connect to the cluster at ``address``, or start a local Ray bound to 127.0.0.1.

    Returns the dashboard URL, or None when there is none. Does nothing if this process
    is already connected. ``dashboard_host`` other than 127.0.0.1 (a local Ray only) opens
    the dashboard to the network, with a warning: anyone who reaches it and holds the token
    can run code on this machine.

    A plain ``ray.init()`` on Linux registers the node under the machine's network
    address and listens there; its ports are unauthenticated beyond Ray's token, and
    exposing them is a known attack route. For a local run, Ray's own switch for
    "no cluster" (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) makes every Ray process use
    the loopback address instead. It is read when ``ray`` is imported, so the CLI sets it
    before the first import (see ``search.cli``); here we only check it took.
    """
    import ray

    if ray.is_initialized():
        return _dashboard_url(ray.get_runtime_context())
    if address:
        from lstm_sweep.search.cluster import connect

        # Checked first, bounded, ended by Ctrl-C or SIGTERM; errors name the address as given.
        context = connect(address, configure_logging=False, log_to_driver=log_to_driver)
        return _dashboard_url(context)
    if dashboard_host != LOCALHOST:
        log.warning("the Ray dashboard listens on %s, beyond this machine: anyone who reaches it and "
                    "holds the token (~/.ray/auth_token) can run code here", dashboard_host)
    context = ray.init(
        address="local",  # a new Ray of this process's own, never a `ray start` cluster found on the machine
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=include_dashboard,
        dashboard_host=dashboard_host,
        configure_logging=False,
        log_to_driver=log_to_driver,  # off unless --verbose: the workers' TensorFlow lines (search.terminal)
    )
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in ("127.0.0.1", "localhost", "::1"):
        log.warning("Ray node listens on %s, not 127.0.0.1: set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
                    "before importing ray to keep a local run on the loopback address", node_ip)
    return _dashboard_url(context)


def _dashboard_url(context: Any) -> str | None:
    url = getattr(context, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def build_trainable(config: SweepConfig, sizer: TrialSizer, trial_hooks: Sequence[Any] = ()):
    """The trainable Ray Tune runs: :func:`search.trainable.train_trial` with the sweep's fixed
    arguments, and resources that are a function of each trial's config (``sizer.placement``)."""
    from ray import tune

    from lstm_sweep.search.trainable import train_trial, trial_arguments

    return tune.with_resources(
        tune.with_parameters(train_trial, **trial_arguments(config, sizer), hooks=tuple(trial_hooks)),
        sizer.placement,
    )


def build_tuner(config: SweepConfig, run_dir: Path, sizer: TrialSizer,
                trial_hooks: Sequence[Any] = (), callbacks: list | None = None, *, verbose: bool = False,
                warm_start: Any = None):
    """The Ray Tune ``Tuner`` for ``config``, storing its experiment in ``run_dir/ray``.

    ``sizer`` gives each trial its resources (``tune.with_resources`` with a function of the
    trial's config) and its batch; ``trial_hooks`` add Keras callbacks to every trial's training
    (:class:`search.trainable.TrialHook`; tests inject faults with them), the ``hooks`` of
    :func:`search.trainable.train_trial`; ``callbacks`` are Ray Tune callbacks. Its progress is
    :class:`search.terminal.ProgressView`'s lines, or with ``verbose`` Ray Tune's own tables.
    ``warm_start`` (:class:`search.warmstart.WarmStart`) goes to the searcher's study.
    """
    from ray import tune

    from lstm_sweep.search.budget import BudgetCuts, SweepBudget
    from lstm_sweep.search.correction import MemoryCorrectingSearcher
    from lstm_sweep.search.diskspace import StopWhenDiskFull
    from lstm_sweep.search.searcher import make_scheduler, make_searcher
    from lstm_sweep.search.tracking import mlflow_callbacks

    searcher = make_searcher(config, run_dir, warm_start, sizer)
    # budget.max_minutes: Ray Tune's TimeoutStopper, which also notes when it ended the running
    # trials, so trials.csv and the report say which ones it cut (search.budget).
    budget = SweepBudget(config.budget.max_minutes * 60) if config.budget.max_minutes else None
    if searcher is not None:  # later trials planned with the sweep's own measured peaks (search.correction)
        searcher = MemoryCorrectingSearcher(searcher, config.resources.memory_headroom, run_dir)
    return tune.Tuner(
        build_trainable(config, sizer, trial_hooks),
        param_space=config.param_space(),
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            # searcher.kind (TPE by default, its study in run_dir/optuna.db); None with every
            # value fixed: Tune's default generator repeats the one config num_samples times.
            search_alg=searcher,
            scheduler=make_scheduler(config),  # scheduler.kind, ASHA by default; time in epochs
            num_samples=config.budget.num_samples,
            max_concurrent_trials=config.budget.max_concurrent,
            # A finished trial's process starts the next one with the same resources (rounded
            # alike by search.resources); the trainable frees the last model first.
            reuse_actors=config.resources.reuse_workers,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT_DIR,
            storage_path=str(run_dir.resolve()),
            stop=budget,
            # Keep each trial's best checkpoint (Ray also keeps the latest, to resume from).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=config.metric,
                                                    checkpoint_score_order=config.mode),
            # A trial whose process dies (killed, its node lost) starts again from its last
            # epoch's checkpoint, up to this many times.
            failure_config=tune.FailureConfig(max_failures=config.resources.max_failures),
            # Stops the sweep, resumable, before the run folder's file system fills (search.diskspace).
            # With tracking.mlflow, Ray Tune's MLflow logger too (search.tracking).
            callbacks=[*(callbacks or []), *mlflow_callbacks(config, run_dir), StopWhenDiskFull(run_dir),
                       *([BudgetCuts(budget, run_dir, config.budget.max_epochs)] if budget else []),
                       *([] if verbose else [progress_view(config, budget)])],
            # Ray Tune's tables with --verbose; else search.terminal.ProgressView's lines.
            verbose=1 if verbose else 0,
        ),
    )


def progress_view(config: SweepConfig, budget: Any = None):
    """The terminal's view of a sweep of ``config`` (:class:`search.terminal.ProgressView`);
    ``budget``: the sweep's :class:`search.budget.SweepBudget`, which says when it was spent."""
    from lstm_sweep.search.terminal import ProgressView

    return ProgressView(config.metric, config.mode, config.budget.max_epochs, config.budget.num_samples,
                        config.budget.max_minutes, config.scheduler.kind, budget=budget)


def run_sweep(config: SweepConfig, name: str | None = None, address: str | None = None,
              num_cpus: int | None = None, num_gpus: int | None = None,
              trial_hooks: Sequence[Any] = (), dashboard_host: str = LOCALHOST,
              callbacks: list | None = None, calibration: Any = None, *, verbose: bool = False,
              warm_start: Sequence[Path] = ()) -> SweepOutcome:
    """Run the whole sweep in a new run folder ``<output>/<name>`` and write its results there.

    Args:
        config: the validated sweep.
        name: the run folder's name; by default the config's name and the date and time.
        address: an existing Ray cluster to join; None starts a local Ray on 127.0.0.1.
        num_cpus: CPUs of a local Ray (default: all of the machine's).
        num_gpus: GPUs of a local Ray (default: those it finds).
        trial_hooks: hooks adding Keras callbacks to every trial (:class:`search.trainable.TrialHook`).
        dashboard_host: where a local Ray's dashboard listens (127.0.0.1 unless asked).
        callbacks: Ray Tune callbacks (benchmarks time trials with them).
        calibration: the memory model's constants (``model.memory.Calibration``); None loads the
            one measured for the trials' device by ``lstm-sweep calibrate``, else the built-in one.
        verbose: Ray Tune's tables and the workers' output on the terminal, instead of a line per
            finished trial (``lstm-sweep --verbose``).
        warm_start: earlier run folders of the same task whose finished trials the searcher
            starts from (:mod:`search.warmstart`): with their results where data and space
            match, their best configurations first where only the data differ.

    Ctrl-C (or SIGTERM) stops the trials, writes the results so far and returns an outcome
    with ``interrupted`` set; :func:`resume_sweep` goes on from there.

    Example:
        >>> outcome = run_sweep(load_config("sweeps/quick.yaml"))  # doctest: +SKIP
        >>> outcome.paths["trials"]  # doctest: +SKIP
        PosixPath('runs/quick-20261122-101500/trials.csv')
    """
    from lstm_sweep.results import atomic_write_text
    from lstm_sweep.search.tracking import check_tracking

    config = check_tracking(config)  # no MLflow, a bad URI: refused before anything is made
    from lstm_sweep.search.warmstart import read_earlier_sweeps

    earlier = read_earlier_sweeps(config, warm_start)  # one that cannot be carried over: refused here too
    # The folder first, claimed atomically, and what ran in it: a driver killed from here on
    # leaves a folder that `--resume` goes on with. A sweep refused before its trials start
    # (a bad corpus, an impossible space, no cluster) takes the folder away again.
    run_dir, created = _claim_run_dir(config, name)
    print(f"run folder: {run_dir}")
    try:
        try:
            atomic_write_text(run_dir / "sweep.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        except OSError as e:
            raise _disk_error(e, run_dir, started=False) if atomic.is_disk_error(e) else e
        tuner = _tuner_in(run_dir, config, address, num_cpus, num_gpus, trial_hooks, dashboard_host, callbacks,
                          calibration, verbose=verbose, warm_start=earlier)
    except UserError:
        _unclaim(run_dir, created)
        raise
    return _fit_and_write(tuner, config, run_dir)


def _tuner_in(run_dir: Path, config: SweepConfig, address: str | None, num_cpus: int | None,
              num_gpus: int | None, trial_hooks: Sequence[Any], dashboard_host: str, callbacks: list | None,
              calibration: Any, *, verbose: bool = False, warm_start: Any = ()):
    """Everything before the trials: the data (cached), Ray, the sizer, the checks that refuse a
    sweep no trial of which could run, the data files; then the Tuner, not yet started.
    ``warm_start``: the earlier sweeps read by ``search.warmstart.read_earlier_sweeps``, or the
    plan a restarted sweep kept in its warm_start.json."""
    from lstm_sweep.data_pipeline.checks import check_split_sizes
    from lstm_sweep.results import atomic_write_json
    from lstm_sweep.search.tasks import get_task

    task = get_task(config.task)
    prepared = task.prepare(config.data)  # a bad corpus fails here, before Ray starts
    from lstm_sweep.search.plan import check_feasible
    from lstm_sweep.search.resources import make_sizer, ray_nodes, this_machine  # loads TensorFlow
    print(task.describe(prepared, config.data))
    from lstm_sweep.search.warmstart import WARM_START_FILE, warm_start_for

    warm_start = warm_start_for(warm_start, prepared.fingerprint, config)  # which data they share is known now
    where = "the built-in corpus" if config.data.path == "builtin" else config.data.path
    warning = check_split_sizes(prepared.stats["train"], prepared.stats["val"], where,
                                "examples" if task.num_classes(prepared) else "sentences")
    if warning:
        log.warning("warning: %s", warning)
    sizing = dict(num_classes=task.num_classes(prepared), calibration=_calibration(config, calibration))
    if config.resources.trial_memory_gb and not config.resources.gpus_per_trial:
        # A budget that no node changes: an impossible space is refused before Ray starts.
        check_feasible(config, make_sizer(config, len(prepared.vocab), this_machine(), **sizing))

    _start(address, num_cpus, num_gpus, dashboard_host, verbose=verbose)
    sizer = make_sizer(config, len(prepared.vocab), ray_nodes(), **sizing)  # may refuse the config
    check_feasible(config, sizer, where=" on this cluster" if address else "")
    # The token ids (and class names) every trial trained with; export and generation read
    # them back. A searched vocab_size re-tokenizes per trial, and the winner's vocabulary is
    # rebuilt from the same cache at retrain time.
    try:
        task.write_data_files(prepared, run_dir)
        # What was read, kept and dropped; the fingerprint is what a later --warm-start compares.
        atomic_write_json(run_dir / "data.json", {**prepared.stats, "fingerprint": prepared.fingerprint})
        if warm_start is not None:
            atomic_write_json(run_dir / WARM_START_FILE, warm_start.to_json())
    except OSError as e:
        raise _disk_error(e, run_dir, started=False) if atomic.is_disk_error(e) else e
    return build_tuner(config, run_dir, sizer, trial_hooks, callbacks, verbose=verbose, warm_start=warm_start)


def resume_sweep(run_dir: str | Path, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None, trial_hooks: Sequence[Any] = (),
                 dashboard_host: str = LOCALHOST, *, verbose: bool = False) -> SweepOutcome:
    """Go on with the sweep in ``run_dir`` after its driver stopped (Ctrl-C, a crash, SIGKILL).

    Ray Tune restores the experiment from ``run_dir/ray``: finished trials are kept as they
    are, trials that were running continue from their last epoch's checkpoint, and the
    searcher (its study in ``run_dir/optuna.db``) proposes the rest up to ``num_samples``.
    The sweep's settings are the ones in ``run_dir/sweep.yaml``. The ASHA scheduler starts
    with empty rungs: Ray Tune does not save its state.

    A folder whose driver stopped before Tune saved its first state (while the corpus was read
    or Ray started) runs its sweep from the start; a sweep that had ended (its driver killed
    while it wrote the results, say) only has its results written again.

    Example:
        >>> resume_sweep("runs/quick-20261122-101500")  # doctest: +SKIP
    """
    from ray import tune

    from lstm_sweep.search.config import load_config
    from lstm_sweep.search.tasks import get_task

    run_dir = Path(run_dir)
    experiment = (run_dir / EXPERIMENT_DIR).resolve()
    if not (run_dir / "sweep.yaml").is_file():
        what = "it does not exist" if not run_dir.exists() else "no sweep.yaml in it"
        raise RunFolderError(f"{run_dir}: nothing to resume ({what}): pass a folder made by `lstm-sweep search`")
    atomic.remove_leftovers(run_dir)  # temporaries of a writer killed outright
    config = load_config(run_dir / "sweep.yaml")
    from lstm_sweep.search.tracking import check_tracking

    check_tracking(config)  # Tune's saved state holds the MLflow callback: MLflow must be here
    if not list(experiment.glob("experiment_state-*.json")):
        # Stopped before Ray Tune saved its first state (while the corpus was read, Ray started or
        # the first trials were set up): Tune recorded nothing to keep, and without its state
        # Tuner.restore would start an experiment of one trial. Start the sweep here instead.
        print(f"resuming {run_dir}: no trial had started: running the sweep of its sweep.yaml")
        from lstm_sweep.search.warmstart import WARM_START_FILE, load_warm_start

        warm_start = load_warm_start(run_dir)  # what its --warm-start gave the searcher, again
        for child in run_dir.iterdir():
            if child.name not in ("sweep.yaml", WARM_START_FILE):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        (run_dir / EXPERIMENT_DIR).mkdir()
        tuner = _tuner_in(run_dir, config, address, num_cpus, num_gpus, trial_hooks, dashboard_host, None, None,
                          verbose=verbose, warm_start=warm_start)
        return _fit_and_write(tuner, config, run_dir)
    if _finished(experiment, config.budget.num_samples):
        print(f"nothing left to do: every trial of {run_dir} has ended; its results are written again")
        return _write_results_or_say(run_dir, config)
    task = get_task(config.task)
    prepared = task.prepare(config.data)
    from lstm_sweep.search.resources import make_sizer, ray_nodes  # loads TensorFlow

    _start(address, num_cpus, num_gpus, dashboard_host, verbose=verbose)
    sizer = make_sizer(config, len(prepared.vocab), ray_nodes(), num_classes=task.num_classes(prepared),
                       calibration=_calibration(config, None))
    print(f"resuming {run_dir}")
    tuner = tune.Tuner.restore(str(experiment), build_trainable(config, sizer, trial_hooks),
                               resume_unfinished=True, resume_errored=False)
    return _fit_and_write(tuner, config, run_dir)


def _finished(experiment: Path, num_samples: int) -> bool:
    """Whether Ray Tune's saved state says the sweep ended: every trial proposed, each one
    terminated or errored (errored trials are not run again: ``resume_errored=False``)."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(experiment)).trials
    return len(trials) >= num_samples and all(t.status in ("TERMINATED", "ERROR") for t in trials)


def _calibration(config: SweepConfig, given: Any) -> Any:
    """The memory model's calibration for the sweep's device (or the caller's), said on the terminal."""
    from lstm_sweep.search.resources import sweep_calibration

    calibration, source = (given, "a calibration given by the caller") if given is not None \
        else sweep_calibration(config)
    print(f"memory model: {source}")
    return calibration


def _start(address: str | None, num_cpus: int | None, num_gpus: int | None, dashboard_host: str, *,
           verbose: bool = False) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by local Ray workers
    # Checkpointing every epoch is what we want; Tune's warning about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not verbose:
        # Ray Tune's newer output prints its header box and staging paths even at verbose=0; the
        # older one prints nothing there. Our lines are search.terminal.ProgressView's.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        # A failed trial's traceback is in its error.txt, and ProgressView prints its last line.
        os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "0"
    _import_ahead()
    dashboard = start_ray(address, num_cpus=num_cpus, num_gpus=num_gpus, dashboard_host=dashboard_host,
                          log_to_driver=verbose)
    if dashboard:
        print(f"Ray dashboard: {dashboard}")


# What the driver imports between Ray's start and its trials' start: the trainable (TensorFlow
# and Keras, 4-9 s on 2 cores), and the logger integrations Ray Tune imports when it is given
# callbacks (to count them for its usage statistics: MLflow's import takes 2-4 s where it is
# installed, even with tracking off).
IMPORTED_AHEAD = ("lstm_sweep.search.trainable", "ray.tune", "ray.air.integrations.mlflow",
                  "ray.air.integrations.wandb", "ray.air.integrations.comet", "ray.tune.logger.aim")


def _import_ahead() -> threading.Thread:
    """Import :data:`IMPORTED_AHEAD` in a thread while Ray starts, which is mostly waiting on
    Ray's own processes: the driver's part of a sweep's start-up then overlaps Ray's instead of
    following it. Everything that refuses a sweep has run by now (the corpus, the space on this
    machine), so no error waits on it. An import that fails here fails again, and is reported,
    where the main thread imports the module. The thread is not a daemon: a driver exiting
    early waits for it rather than leave an import half done."""
    import importlib

    def run() -> None:
        for name in IMPORTED_AHEAD:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the main thread's own import says what is wrong
                pass

    thread = threading.Thread(target=run, name="lstm-sweep-import-ahead")
    thread.start()
    return thread


def _fit_and_write(tuner, config: SweepConfig, run_dir: Path) -> SweepOutcome:
    """``tuner.fit()`` with Ctrl-C and SIGTERM stopping it cleanly; then the results, so far or final."""
    results = None
    # Ray Tune stops cleanly on the first SIGINT (it stops the trials and saves its state) and
    # on SIGUSR1; SIGTERM (`kill`, a scheduler's time limit) would kill the driver on the spot.
    # Its handler stays installed after fit(): put the previous ones back.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGUSR1))
    started = time.monotonic()
    from lstm_sweep.search.diskspace import StopWhenDiskFull, full_disk

    StopWhenDiskFull.stopped, disk = "", ""
    # Ray Tune's own TensorBoard hint names its session's staging copy, not the run folder.
    print(f"TensorBoard: tensorboard --logdir {run_dir / EXPERIMENT_DIR}")
    try:
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C while Tune was saving its state
        pass
    except OSError as e:  # Tune's own state on a full disk
        if not atomic.is_disk_error(e):
            raise
        disk = f"{e.filename or run_dir}: {e.strerror}"
    except Exception:  # noqa: BLE001 -- Ray reading back what a full disk let it write half
        # (a failed trial's error pickle written empty: EOFError in Tune's ResultGrid)
        disk = StopWhenDiskFull.stopped or full_disk(run_dir)
        if not disk:
            raise
    finally:
        if in_main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    disk = StopWhenDiskFull.stopped or disk
    if disk:  # stopped as Ctrl-C would have; what can be written is, and one line says how to go on
        try:
            _write_results(run_dir, config, interrupted=True)
            written = f"its results so far are in {run_dir}"
        except OSError as e:
            if not atomic.is_disk_error(e):
                raise
            written = "no room for its results either (the files written before are as they were)"
        except ValueError:  # Ray's experiment state cut short by the full disk (a JSONDecodeError)
            written = "its results could not be read back (Ray's state was cut short; the files written before are as they were)"
        raise RunFolderError(f"{disk}: the sweep stopped, {written}; free space there, then go on with: "
                             f"lstm-sweep search --resume {run_dir}")
    # Trials that the time budget stopped are not an interruption: the sweep is over.
    limit = config.budget.max_minutes * 60
    if results is not None and limit and time.monotonic() - started >= limit:
        print(f"time budget of {config.budget.max_minutes:g} minutes spent: the running trials were stopped")
        return _write_results_or_say(run_dir, config)
    return _write_results_or_say(run_dir, config, interrupted=_interrupted(results, config.budget.num_samples))


def _write_results_or_say(run_dir: Path, config: SweepConfig, interrupted: bool = False) -> SweepOutcome:
    """:func:`_write_results`; a full (or read-only) disk is one line that says how to go on."""
    try:
        return _write_results(run_dir, config, interrupted=interrupted)
    except OSError as e:
        if not atomic.is_disk_error(e):
            raise
        raise _disk_error(e, run_dir, started=True) from None


def _disk_error(error: OSError, run_dir: Path, started: bool) -> RunFolderError:
    """A disk error (full, over quota, read-only) as one line naming the file and what to do."""
    then = (f"free space there, then go on with: lstm-sweep search --resume {run_dir}" if started
            else "free space there (or choose another --out) and run the sweep again")
    return RunFolderError(f"cannot write {error.filename or run_dir} ({error.strerror}): {then}")


def _interrupted(results, num_samples: int) -> bool:
    """Whether the sweep stopped before every trial ended: some never started, or a trial is
    neither terminated nor errored (Ctrl-C leaves it running or pending). Ray's trial status,
    not the last report's ``done``: HyperBand ends the trials it paused at a milestone without
    another report, so their last ``done`` stays false."""
    if results is None:
        return True
    return len(results) < num_samples or results.num_terminated + results.num_errors < len(results)


def rebuild_results(run_dir: str | Path) -> SweepOutcome:
    """Re-read ``run_dir/ray`` and rewrite the tables and plot (``lstm-sweep report``)."""
    from lstm_sweep.search.config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / EXPERIMENT_DIR).is_dir():
        raise RunFolderError(f"{run_dir}: no Ray Tune experiment in it ({EXPERIMENT_DIR}/ missing): "
                          "pass a folder made by `lstm-sweep search`")
    if not (run_dir / "sweep.yaml").is_file():
        raise RunFolderError(f"{run_dir}: no sweep.yaml in it (the config the sweep ran with, which the tables "
                             "need): put it back, e.g. copy the sweep file you ran to "
                             f"{run_dir / 'sweep.yaml'}")
    return _write_results_or_say(run_dir, load_config(run_dir / "sweep.yaml"))


def _write_results(run_dir: Path, config: SweepConfig, interrupted: bool = False) -> SweepOutcome:
    """``trials.csv``, ``curves.csv``, the plot, ``best.json`` and ``report.html`` from ``run_dir/ray``."""
    from lstm_sweep.results import load_experiment, write_report, write_results

    from lstm_sweep.search.tasks import get_task

    records = load_experiment(run_dir / EXPERIMENT_DIR, config.budget.max_epochs)
    others = config.other_metrics()
    paths = write_results(run_dir, records, metric=config.metric, mode=config.mode, others=others,
                          also_plot=[name for name in get_task(config.task).plotted if name in others])
    paths["report"] = write_report(run_dir)
    return SweepOutcome(run_dir=run_dir, records=records, paths=paths, interrupted=interrupted,
                        metric=config.metric, mode=config.mode)
