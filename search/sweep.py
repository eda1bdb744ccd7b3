"""Run a sweep: Ray Tune's ``Tuner`` with an Optuna TPE searcher and ASHA early stopping.

The flow, top to bottom::

    config ──► run folder + sweep.yaml ──► tokenize once (cache) ──► Ray (local or cluster)
           ──► Tuner(OptunaSearch + ASHAScheduler).fit() ──► trials.csv, curves.csv, val_loss.png
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from search.config import SweepConfig

if TYPE_CHECKING:  # importing search.resources loads TensorFlow: not before a user error is found
    from search.resources import TrialSizer

log = logging.getLogger("lstm_sweep.search")

EXPERIMENT_DIR = "ray"  # Ray Tune experiment, inside the run folder
METRIC, MODE = "val_loss", "min"


@dataclass
class SweepOutcome:
    run_dir: Path
    records: list  # list[results.TrialRecord]
    paths: dict[str, Path]


def new_run_dir(config: SweepConfig, name: str | None = None) -> Path:
    """``<output>/<name>``; by default the config's name and a timestamp, so runs never collide.

    A named folder that already holds a run is refused rather than mixed with a new one.
    """
    from search.config import ConfigError

    if name is None:
        name = f"{config.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(config.output) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run folder {run_dir} already holds a run: choose another --name or --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
              include_dashboard: bool = True) -> str | None:
    """Connect to the cluster at ``address``, or start a local Ray bound to 127.0.0.1.

    Returns the dashboard URL, or None when there is none. Does nothing if this process
    is already connected.

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
    context = ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=include_dashboard,
        dashboard_host="127.0.0.1",
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


def build_tuner(config: SweepConfig, run_dir: Path, sizer: TrialSizer,
                trial_options: dict[str, Any] | None = None):
    """The Ray Tune ``Tuner`` for ``config``, storing its experiment in ``run_dir/ray``.

    ``sizer`` gives each trial its resources (``tune.with_resources`` with a function of the
    trial's config) and its batch; ``trial_options`` are further keyword arguments of
    :func:`search.trainable.train_trial`.
    """
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from search.trainable import train_trial, trial_arguments

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, **trial_arguments(config, sizer), **(trial_options or {})),
        sizer.placement,
    )
    sampler = optuna.samplers.TPESampler(seed=config.searcher.seed,
                                         n_startup_trials=config.searcher.n_startup_trials)
    return tune.Tuner(
        trainable,
        param_space=config.param_space(),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            # Optuna needs something to search; with every value fixed, Tune's default
            # generator repeats the one config num_samples times (seeds aside, a repeatability check).
            search_alg=OptunaSearch(sampler=sampler) if config.searched() else None,
            # One report per epoch, so Tune's training_iteration is the epoch count.
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=config.budget.max_epochs,
                                    grace_period=config.asha.grace_period,
                                    reduction_factor=config.asha.reduction_factor),
            num_samples=config.budget.num_samples,
            max_concurrent_trials=config.budget.max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT_DIR,
            storage_path=str(run_dir.resolve()),
            # Keep each trial's best checkpoint (Ray also keeps the latest, to resume from).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC,
                                                    checkpoint_score_order=MODE),
            failure_config=tune.FailureConfig(max_failures=2),
            verbose=1,
        ),
    )


def run_sweep(config: SweepConfig, name: str | None = None, address: str | None = None,
              num_cpus: int | None = None, num_gpus: int | None = None,
              trial_options: dict[str, Any] | None = None) -> SweepOutcome:
    """Run the whole sweep in a new run folder ``<output>/<name>`` and write its results there.

    Args:
        config: the validated sweep.
        name: the run folder's name; by default the config's name and the date and time.
        address: an existing Ray cluster to join; None starts a local Ray on 127.0.0.1.
        num_cpus: CPUs of a local Ray (default: all of the machine's).
        num_gpus: GPUs of a local Ray (default: those it finds).
        trial_options: further keyword arguments of :func:`search.trainable.train_trial`.

    Example:
        >>> outcome = run_sweep(load_config("sweeps/quick.yaml"))  # doctest: +SKIP
        >>> outcome.paths["trials"]  # doctest: +SKIP
        PosixPath('runs/quick-20261122-101500/trials.csv')
    """
    from data_pipeline import prepare
    from results import atomic_write_text, load_experiment, write_report, write_results

    prepared = prepare(config.data)  # a bad corpus fails here, before anything is written
    from search.resources import make_sizer, ray_nodes  # loads TensorFlow
    s = prepared.stats
    print(f"data: {s['raw_lines']} lines, {s['kept']} kept at <= {config.data.max_tokens} tokens "
          f"({s['dropped_too_long']} longer dropped), {s['train']} train / {s['val']} val, "
          f"vocabulary {len(prepared.vocab)}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by local Ray workers
    # Checkpointing every epoch is what we want; Tune's warning about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    dashboard = start_ray(address, num_cpus=num_cpus, num_gpus=num_gpus)
    if dashboard:
        print(f"Ray dashboard: {dashboard}")
    sizer = make_sizer(config, len(prepared.vocab), ray_nodes())  # may refuse the config, still unwritten

    run_dir = new_run_dir(config, name)
    print(f"run folder: {run_dir}")
    atomic_write_text(run_dir / "sweep.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    # The token ids every trial trained with; export and generation read them back. A
    # searched vocab_size re-tokenizes per trial, and the winner's vocabulary is rebuilt
    # from the same cache at retrain time.
    prepared.vocab.to_json(run_dir / "vocab.json")
    build_tuner(config, run_dir, sizer, trial_options).fit()

    records = load_experiment(run_dir / EXPERIMENT_DIR, config.budget.max_epochs)
    paths = write_results(run_dir, records, metric=METRIC, mode=MODE)
    paths["report"] = write_report(run_dir)
    return SweepOutcome(run_dir=run_dir, records=records, paths=paths)


def rebuild_results(run_dir: str | Path) -> SweepOutcome:
    """Re-read ``run_dir/ray`` and rewrite the tables and plot (``lstm-sweep report``)."""
    from results import load_experiment, write_report, write_results
    from search.config import ConfigError, load_config

    run_dir = Path(run_dir)
    if not (run_dir / EXPERIMENT_DIR).is_dir():
        raise ConfigError(f"{run_dir}: no Ray Tune experiment in it ({EXPERIMENT_DIR}/ missing): "
                          "pass a folder made by `lstm-sweep search`")
    config = load_config(run_dir / "sweep.yaml")
    records = load_experiment(run_dir / EXPERIMENT_DIR, config.budget.max_epochs)
    paths = write_results(run_dir, records, metric=METRIC, mode=MODE)
    paths["report"] = write_report(run_dir)
    return SweepOutcome(run_dir=run_dir, records=records, paths=paths)
