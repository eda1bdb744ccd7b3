"""Tracking in MLflow: a real tiny sweep and retrain logged to a real local MLflow store (SQLite),
read back with MLflow's own client; the refusals before anything runs."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lstm_sweep.errors import ConfigError
from lstm_sweep.search import cli
from lstm_sweep.search.config import parse_config
from lstm_sweep.search.tracking import absolute_uri, check_tracking

REPO = Path(__file__).resolve().parents[1]
EXTRA = 'pip install "lstm-sweep[mlflow]"'


def tracked(uri: str):
    return parse_config({"tracking": {"mlflow": uri}})


@pytest.mark.slow
def test_trials_and_winner_are_logged_to_mlflow(tmp_path, local_ray, tiny_sweep):
    from mlflow import MlflowClient

    from lstm_sweep.search.retrain import retrain
    from lstm_sweep.search.sweep import run_sweep

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    run_sweep(tiny_sweep(tmp_path, samples=2, epochs=2, tracking={"mlflow": uri}), name="tracked")
    run_dir = tmp_path / "tracked"
    assert yaml.safe_load((run_dir / "sweep.yaml").read_text())["tracking"] == {"mlflow": uri}

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")  # the run folder's name
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    curves = pd.read_csv(run_dir / "curves.csv", dtype={"trial_id": str})
    assert len(runs) == len(trials) == 2  # one MLflow run per trial
    for trial in trials.itertuples():
        run = next(r for r in runs if r.data.tags.get("trial_name", "").endswith(trial.trial_id))
        assert run.info.status == "FINISHED"
        assert run.data.tags["run_folder"] == str(run_dir.resolve())
        params = run.data.params
        for name in ("embedding_size", "hidden_size", "num_layers", "batch_size"):
            assert int(params[name]) == getattr(trial, name)
        assert float(params["learning_rate"]) == pytest.approx(trial.learning_rate)
        assert not any(key.startswith("config/") for key in run.data.metrics)  # config: params only
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(1, trial.epochs + 1))  # one value an epoch
        own = curves[curves.trial_id == trial.trial_id].sort_values("epoch")
        assert [m.value for m in history] == pytest.approx(own.val_loss.tolist())
        assert len(client.get_metric_history(run.info.run_id, "loss")) == trial.epochs

    paths = retrain(run_dir, epochs=2, patience=1, verbose=0)
    card = json.loads((run_dir / "winner" / "card.json").read_text())
    winner, = client.search_runs([experiment.experiment_id], filter_string="tags.role = 'winner'")
    assert winner.info.run_name == f"winner {card['trial_id']}" and winner.info.status == "FINISHED"
    assert winner.data.params == {k: str(v) for k, v in card["config"].items()}
    table = pd.read_csv(paths["history"])
    history = client.get_metric_history(winner.info.run_id, "val_loss")
    assert [m.step for m in history] == table.epoch.tolist()
    assert [m.value for m in history] == pytest.approx(table.val_loss.tolist())
    assert winner.data.metrics["best_val_loss"] == pytest.approx(card["best_val_loss"])
    logged = {Path(a.path).name for a in client.list_artifacts(winner.info.run_id, "export")}
    assert {"model.keras", "vocab.json", "model_card.json", "saved_model"} <= logged
    assert logged == {p.name for p in paths["export"].iterdir()}  # the export folder as it is
    # Beside the store, not in ./mlruns of whatever folder the command ran from (MLflow's default).
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert (tmp_path / "mlartifacts").is_dir() and not Path("mlruns").exists()


def test_tracking_section_round_trips_and_is_off_by_default():
    assert parse_config({}).tracking.mlflow == ""
    config = tracked("sqlite:///mlruns.db")
    assert config.to_dict()["tracking"] == {"mlflow": "sqlite:///mlruns.db"}
    assert parse_config(config.to_dict()) == config
    with pytest.raises(ConfigError, match="tracking.server"):
        parse_config({"tracking": {"server": "x"}})
    assert check_tracking(parse_config({})) == parse_config({})  # off: nothing to check, MLflow or not


def test_without_mlflow_tracking_is_refused_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with pytest.raises(ConfigError) as refused:
        check_tracking(tracked("sqlite:///mlruns.db"))
    assert str(refused.value) == f"tracking.mlflow: sqlite:///mlruns.db: MLflow is not installed: {EXTRA}"


def test_cli_without_mlflow_refuses_before_anything_runs(tmp_path):
    # The real command, in a Python where `import mlflow` fails.
    code = ("import sys; sys.modules['mlflow'] = None; from lstm_sweep.search.cli import main; "
            "sys.exit(main(['search', '--data', 'builtin', '--mlflow', 'sqlite:///m.db', '--out', 'runs']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=os.environ | {"PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"lstm-sweep: error: tracking.mlflow: sqlite:///m.db: "
                                                  f"MLflow is not installed: {EXTRA}"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "m.db").exists()  # nothing made


def test_mlflow_flag_reaches_the_config(tmp_path, monkeypatch):
    from lstm_sweep.search import sweep

    seen = []

    def run_sweep(config, **_):
        seen.append(config)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    for name in ("CUDA_CACHE_PATH", "CUDA_CACHE_MAXSIZE"):  # main() sets them: put them back afterwards
        monkeypatch.setenv(name, os.environ.get(name, ""))
    assert cli.main(["search", "--mlflow", "sqlite:///m.db", "--out", str(tmp_path)]) == 2
    assert seen[0].tracking.mlflow == "sqlite:///m.db"
    assert cli.FLAG_OF_KEY["tracking.mlflow"] == "--mlflow"
    with pytest.raises(ConfigError, match="--mlflow"):
        cli._refuse_with_resume(cli._parser().parse_args(["search", "--resume", "r", "--mlflow", "sqlite:///m.db"]))


def test_a_local_store_is_made_absolute_and_opened_up_front(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = check_tracking(tracked("sqlite:///sub/../mlruns.db"))
    assert config.tracking.mlflow == f"sqlite:///{tmp_path / 'mlruns.db'}"  # sqlite:////abs/...
    assert (tmp_path / "mlruns.db").is_file()  # MLflow made its tables
    assert check_tracking(config) == config
    assert absolute_uri("sqlite:///a.db?timeout=5") == f"sqlite:///{tmp_path / 'a.db'}?timeout=5"
    assert absolute_uri("file:mlruns") == (tmp_path / "mlruns").as_uri()
    assert absolute_uri("./mlruns") == str(tmp_path / "mlruns")
    for uri in ("http://127.0.0.1:5000", "databricks", "postgresql://u@db/mlflow"):
        assert absolute_uri(uri) == uri


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("uri, needles", [
    ("sqlite://", ["in-memory", "sqlite:///mlruns.db"]),
    ("sqlite:///:memory:", ["in-memory"]),
    ("sqlite:///{tmp}/a_file/mlruns.db", ["cannot open this MLflow store", "a_file"]),
    ("file:{tmp}/mlruns", ["file stores", "sqlite:///mlruns.db", "MLFLOW_ALLOW_FILE_STORE"]),
    ("http://127.0.0.1:{port}", ["no MLflow server answers at 127.0.0.1:{port}", "mlflow server"]),
    ("http://127.0.0.1:99999", ["port"]),
    ("bogus://somewhere", ["no store of scheme 'bogus'", "sqlite:"]),
    (" sqlite:///mlruns.db", ["spaces"]),
])
def test_a_bad_uri_is_refused_up_front(tmp_path, monkeypatch, uri, needles):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    (tmp_path / "a_file").write_text("not a folder")
    port = _closed_port()
    uri = uri.format(tmp=tmp_path, port=port)
    with pytest.raises(ConfigError) as refused:
        check_tracking(tracked(uri))
    message = str(refused.value)
    assert message.startswith("tracking.mlflow: ") and "\n" not in message
    for needle in needles:
        assert needle.format(port=port) in message
