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
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import yaml

from lstm_sweep.errors import ConfigError, RunFolderError
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
    """``<output>/<name>``; by default the config's name and a timestamp, so runs never collide.

    A named folder that already holds a run is refused rather than mixed with a new one.
    """
    if name is None:
        name = f"{config.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(config.output) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run folder {run_dir} already holds a run: choose another --name or --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
              include_dashboard: bool = True, dashboard_host: str = LOCALHOST) -> str | None:
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
        context = ray.init(address=address, configure_logging=False, log_to_driver=True)
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
                trial_hooks: Sequence[Any] = (), callbacks: list | None = None):
    """The Ray Tune ``Tuner`` for ``config``, storing its experiment in ``run_dir/ray``.

    ``sizer`` gives each trial its resources (``tune.with_resources`` with a function of the
    trial's config) and its batch; ``trial_hooks`` add Keras callbacks to every trial's training
    (:class:`search.trainable.TrialHook`; tests inject faults with them), the ``hooks`` of
    :func:`search.trainable.train_trial`; ``callbacks`` are Ray Tune callbacks.
    """
    from ray import tune

    from lstm_sweep.search.searcher import make_scheduler, make_searcher

    return tune.Tuner(
        build_trainable(config, sizer, trial_hooks),
        param_space=config.param_space(),
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            # searcher.kind (TPE by default, its study in run_dir/optuna.db); None with every
            # value fixed: Tune's default generator repeats the one config num_samples times.
            search_alg=make_searcher(config, run_dir),
            scheduler=make_scheduler(config),  # scheduler.kind, ASHA by default; time in epochs
            num_samples=config.budget.num_samples,
            max_concurrent_trials=config.budget.max_concurrent,
            time_budget_s=config.budget.max_minutes * 60 or None,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT_DIR,
            storage_path=str(run_dir.resolve()),
            # Keep each trial's best checkpoint (Ray also keeps the latest, to resume from).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=config.metric,
                                                    checkpoint_score_order=config.mode),
            # A trial whose process dies (killed, its node lost) starts again from its last
            # epoch's checkpoint, up to this many times.
            failure_config=tune.FailureConfig(max_failures=config.resources.max_failures),
            callbacks=callbacks,
            verbose=1,
        ),
    )


def run_sweep(config: SweepConfig, name: str | None = None, address: str | None = None,
              num_cpus: int | None = None, num_gpus: int | None = None,
              trial_hooks: Sequence[Any] = (), dashboard_host: str = LOCALHOST,
              callbacks: list | None = None) -> SweepOutcome:
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

    Ctrl-C (or SIGTERM) stops the trials, writes the results so far and returns an outcome
    with ``interrupted`` set; :func:`resume_sweep` goes on from there.

    Example:
        >>> outcome = run_sweep(load_config("sweeps/quick.yaml"))  # doctest: +SKIP
        >>> outcome.paths["trials"]  # doctest: +SKIP
        PosixPath('runs/quick-20261122-101500/trials.csv')
    """
    from lstm_sweep.results import atomic_write_text
    from lstm_sweep.search.tasks import get_task

    task = get_task(config.task)
    prepared = task.prepare(config.data)  # a bad corpus fails here, before anything is written
    from lstm_sweep.search.resources import make_sizer, ray_nodes  # loads TensorFlow
    print(task.describe(prepared, config.data))

    _start(address, num_cpus, num_gpus, dashboard_host)
    # may refuse the config, still unwritten
    sizer = make_sizer(config, len(prepared.vocab), ray_nodes(), num_classes=task.num_classes(prepared))

    run_dir = new_run_dir(config, name)
    print(f"run folder: {run_dir}")
    atomic_write_text(run_dir / "sweep.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    # The token ids (and class names) every trial trained with; export and generation read
    # them back. A searched vocab_size re-tokenizes per trial, and the winner's vocabulary is
    # rebuilt from the same cache at retrain time.
    task.write_data_files(prepared, run_dir)
    tuner = build_tuner(config, run_dir, sizer, trial_hooks, callbacks)
    return _fit_and_write(tuner, config, run_dir)


def resume_sweep(run_dir: str | Path, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None, trial_hooks: Sequence[Any] = (),
                 dashboard_host: str = LOCALHOST) -> SweepOutcome:
    """Go on with the sweep in ``run_dir`` after its driver stopped (Ctrl-C, a crash, SIGKILL).

    Ray Tune restores the experiment from ``run_dir/ray``: finished trials are kept as they
    are, trials that were running continue from their last epoch's checkpoint, and the
    searcher (its study in ``run_dir/optuna.db``) proposes the rest up to ``num_samples``.
    The sweep's settings are the ones in ``run_dir/sweep.yaml``. The ASHA scheduler starts
    with empty rungs: Ray Tune does not save its state.

    Example:
        >>> resume_sweep("runs/quick-20261122-101500")  # doctest: +SKIP
    """
    from ray import tune

    from lstm_sweep.search.config import load_config
    from lstm_sweep.search.tasks import get_task

    run_dir = Path(run_dir)
    experiment = (run_dir / EXPERIMENT_DIR).resolve()
    # Ray Tune's state is written a few seconds into a sweep; without it, Tune would quietly
    # start a new experiment of one trial instead.
    if not (run_dir / "sweep.yaml").is_file() or not list(experiment.glob("experiment_state-*.json")):
        raise RunFolderError(f"{run_dir}: nothing to resume (no sweep.yaml, or no Ray Tune state in "
                          f"{EXPERIMENT_DIR}/): pass a folder made by `lstm-sweep search`")
    config = load_config(run_dir / "sweep.yaml")
    task = get_task(config.task)
    prepared = task.prepare(config.data)
    from lstm_sweep.search.resources import make_sizer, ray_nodes  # loads TensorFlow

    _start(address, num_cpus, num_gpus, dashboard_host)
    sizer = make_sizer(config, len(prepared.vocab), ray_nodes(), num_classes=task.num_classes(prepared))
    print(f"resuming {run_dir}")
    tuner = tune.Tuner.restore(str(experiment), build_trainable(config, sizer, trial_hooks),
                               resume_unfinished=True, resume_errored=False)
    return _fit_and_write(tuner, config, run_dir)


def _start(address: str | None, num_cpus: int | None, num_gpus: int | None, dashboard_host: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by local Ray workers
    # Checkpointing every epoch is what we want; Tune's warning about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    dashboard = start_ray(address, num_cpus=num_cpus, num_gpus=num_gpus, dashboard_host=dashboard_host)
    if dashboard:
        print(f"Ray dashboard: {dashboard}")


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
    try:
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C while Tune was saving its state
        pass
    finally:
        if in_main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # Trials that the time budget stopped are not an interruption: the sweep is over.
    limit = config.budget.max_minutes * 60
    if results is not None and limit and time.monotonic() - started >= limit:
        print(f"time budget of {config.budget.max_minutes:g} minutes spent: the running trials were stopped")
        return _write_results(run_dir, config)
    return _write_results(run_dir, config, interrupted=_interrupted(results, config.budget.num_samples))


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
    return _write_results(run_dir, load_config(run_dir / "sweep.yaml"))


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
