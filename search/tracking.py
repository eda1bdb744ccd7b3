"""Tracking in MLflow: every trial's parameters and per-epoch metrics, and the retrained winner.

Set ``tracking: {mlflow: URI}`` in the sweep file, or ``--mlflow URI`` on ``lstm-sweep search``
and ``lstm-sweep run``; it needs the ``[mlflow]`` extra (``pip install "lstm-sweep[mlflow]"``)::

    sweep ───► Ray Tune's MLflowLoggerCallback, on the driver ──► one MLflow run per trial:
               its config as params, each epoch's report as metrics (step: the epoch)
    retrain ─► one MLflow run "winner <trial_id>": the retrained config as params, the retrain's
               per-epoch history as metrics, winner/export/ as the artifact ``export``

All the MLflow runs of a run folder go to one experiment named after the folder
(``runs/quick-20261122-101500`` → ``quick-20261122-101500``): one sweep, one experiment, as
Ray Tune keeps one experiment per run folder; sweeps of the same config stay apart.

URIs are MLflow's: ``sqlite:///mlruns.db`` (a file here, which ``mlflow ui --backend-store-uri``
reads), ``http://host:5000`` (a tracking server), a database, ``databricks``. A local store's
path is made absolute when the sweep starts, so a retrain run from elsewhere logs to the same one.
MLflow 3 keeps file stores (``./mlruns``, ``file:...``) in maintenance mode and refuses them
unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set.

Example:
    >>> config = check_tracking(load_config("sweeps/quick.yaml").with_overrides(
    ...     **{"tracking.mlflow": "sqlite:///mlruns.db"}))  # doctest: +SKIP
    >>> config.tracking.mlflow  # doctest: +SKIP
    'sqlite:////home/me/mlruns.db'
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lstm_sweep.errors import ConfigError
from lstm_sweep.search.config import SweepConfig

EXTRA = 'pip install "lstm-sweep[mlflow]"'
SERVER_SCHEMES = ("http", "https")
NAMED_STORES = ("databricks", "databricks-uc", "uc")  # URIs that are a name alone, not a path


def experiment_name(run_dir: str | Path) -> str:
    """The MLflow experiment of a run folder: its name."""
    return Path(run_dir).resolve().name


def check_tracking(config: SweepConfig) -> SweepConfig:
    """Refuse a tracking setting that cannot work, before any data is read or Ray starts.

    With ``tracking.mlflow`` set: MLflow must be importable (else a :class:`ConfigError` that
    says ``pip install "lstm-sweep[mlflow]"``); a local store (SQLite, a file store) is opened
    here, so a path that cannot be written, or a store MLflow refuses, fails now; a tracking
    server must accept a TCP connection. Returns ``config`` with a local store's path made
    absolute (what ``sweep.yaml`` records); tracking off, ``config`` as it is.
    """
    uri = config.tracking.mlflow
    if not uri:
        return config
    key = f"tracking.mlflow: {uri}"
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"{key}: MLflow is not installed: {EXTRA}") from None
    if uri != uri.strip():
        raise ConfigError(f"tracking.mlflow: {uri!r}: remove the spaces around the URI")
    uri = absolute_uri(uri)
    scheme = _scheme(uri)
    if scheme == "sqlite" and uri.split("?")[0] in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        raise ConfigError(f"{key}: an in-memory SQLite store keeps nothing after the sweep: name a file, "
                          "e.g. sqlite:///mlruns.db")
    if scheme in SERVER_SCHEMES:
        _check_server(uri, key)
    else:
        try:
            # A local store is made here (its folder, or its tables); an unknown scheme fails; a
            # remote database is connected to, as the sweep's callback would.
            mlflow.MlflowClient(tracking_uri=uri)
        except Exception as e:  # noqa: BLE001 -- whatever MLflow raises about this URI, as one line
            raise ConfigError(f"{key}: {_why_not(e, scheme)}") from None
    return config if uri == config.tracking.mlflow else dataclasses.replace(
        config, tracking=dataclasses.replace(config.tracking, mlflow=uri))


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative local path (``sqlite:///mlruns.db``, ``file:mlruns``, ``./mlruns``)
    made absolute against the current folder; any other URI as it is."""
    scheme = _scheme(uri)
    if scheme == "":
        return str(Path(uri).expanduser().resolve())
    if scheme == "file":
        path = urlparse(uri).path
        return Path(path).expanduser().resolve().as_uri() if path else uri
    if scheme == "sqlite" and uri.startswith("sqlite:///"):
        path, mark, query = uri[len("sqlite:///"):].partition("?")
        if path and path != ":memory:" and not path.startswith("/"):
            return f"sqlite:///{Path(path).expanduser().resolve()}{mark}{query}"
    return uri


def artifact_root(uri: str) -> str | None:
    """Where a local store keeps its artifacts: ``mlartifacts/`` beside a SQLite file. MLflow's
    own default is ``./mlruns`` in whatever folder the command runs from, so a sweep started
    in a checkout would drop model exports there. None for a server: it has its own root."""
    if _scheme(uri) == "sqlite" and uri.startswith("sqlite:////"):
        return (Path(uri[len("sqlite:///"):].partition("?")[0]).parent / "mlartifacts").as_uri()
    return None


def ensure_experiment(uri: str, name: str) -> str:
    """The id of the experiment ``name`` at ``uri``, made (with :func:`artifact_root`) if missing."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(uri))


def mlflow_callbacks(config: SweepConfig, run_dir: str | Path) -> list:
    """The Ray Tune callbacks that log the sweep's trials to MLflow; none with tracking off."""
    if not config.tracking.mlflow:
        return []
    # Here, not at the top: importing Ray's MLflow logger imports MLflow itself (seconds), which a
    # sweep without tracking should not wait for.
    from lstm_sweep.search.mlflow_logger import EpochsToMLflow

    ensure_experiment(config.tracking.mlflow, experiment_name(run_dir))
    print(f"MLflow: experiment {experiment_name(run_dir)} at {config.tracking.mlflow}")
    return [EpochsToMLflow(config.tracking.mlflow, experiment_name=experiment_name(run_dir),
                           tags={"run_folder": str(Path(run_dir).resolve())})]


def log_winner(run_dir: str | Path, config: SweepConfig, card: dict[str, Any], history: Any,
               export_dir: str | Path) -> str | None:
    """Log the retrained winner as one MLflow run in the run folder's experiment; its id (None:
    tracking off).

    Params: the winner's config as retrained (``card["config"]``: searched values, dropout, the
    batch it used, cell, vocabulary size). Metrics: each column of the retrain's ``history``
    (one row an epoch, ``winner/history.csv``) at its epoch, and the card's ``best_*`` figures and
    ``best_epoch`` (the kept epoch's). Artifact: ``export_dir`` as ``export``.
    """
    if not config.tracking.mlflow:
        return None
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=config.tracking.mlflow)
    name = experiment_name(run_dir)
    experiment_id = ensure_experiment(config.tracking.mlflow, name)
    run = client.create_run(experiment_id, run_name=f"winner {card['trial_id']}")
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, str(v)) for k, v in card["config"].items()]
    metrics = [Metric(column, float(row[column]), now, int(row["epoch"]))
               for row in history.to_dict("records") for column in history.columns if column != "epoch"]
    # The card's summary: the kept epoch's figures, the last epoch's, the trial's in the sweep.
    metrics += [Metric(k, float(v), now, 0) for k, v in card.items()
                if k.startswith(("best_", "final_", "sweep_")) and isinstance(v, (int, float))]
    tags = [RunTag("run_folder", str(Path(run_dir).resolve())), RunTag("trial_id", str(card["trial_id"])),
            RunTag("role", "winner")]
    client.log_batch(run_id, params=params, tags=tags)
    for start in range(0, len(metrics), 1000):  # MLflow takes 1000 metrics a batch at most
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    client.log_artifacts(run_id, str(export_dir), artifact_path="export")
    client.set_terminated(run_id)
    print(f"MLflow: run {run_id} (winner {card['trial_id']}) in experiment {name} at {config.tracking.mlflow}")
    return run_id


def _scheme(uri: str) -> str:
    if uri in NAMED_STORES:
        return uri
    scheme, sep, _ = uri.partition(":")
    if not sep or "/" in scheme or len(scheme) == 1:  # a path (a Windows drive letter too)
        return ""
    return scheme.split("+")[0].lower()  # postgresql+psycopg2: postgresql


def _check_server(uri: str, key: str) -> None:
    """A tracking server must accept a TCP connection (a few seconds at most); MLflow itself
    retries a request for minutes before it gives up."""
    from lstm_sweep.search.cluster import listens

    parsed = urlparse(uri)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"{key}: its port is not a number from 0 to 65535") from None
    if not parsed.hostname:
        raise ConfigError(f"{key}: no host in it: e.g. http://127.0.0.1:5000")
    why = listens(parsed.hostname, port)
    if why:
        raise ConfigError(f"{key}: no MLflow server answers at {parsed.hostname}:{port} ({why}): start one "
                          "(mlflow server --backend-store-uri sqlite:///mlruns.db) or fix the URI")


def _why_not(error: Exception, scheme: str) -> str:
    if scheme in ("", "file") and "MLFLOW_ALLOW_FILE_STORE" in str(error):
        return ("this MLflow refuses file stores (maintenance mode): use a SQLite file instead, e.g. "
                "sqlite:///mlruns.db, or set MLFLOW_ALLOW_FILE_STORE=true")
    if scheme in ("", "file", "sqlite"):
        return f"cannot open this MLflow store ({_first_line(error)}): check the path, and that it can be written"
    known = getattr(error, "supported_uri_schemes", None)  # MLflow's own list, plug-ins included
    if known:
        return f"MLflow knows no store of scheme {scheme!r}: use one of {', '.join(s + ':' for s in known if s)}"
    return f"MLflow cannot use it ({_first_line(error)})"


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
