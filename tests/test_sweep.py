"""Real sweeps: a local Ray cluster, real TensorFlow training on the synthetic corpus."""

import json
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import yaml

from lstm_sweep.data_pipeline import Vocabulary, prepare
from lstm_sweep.results import load_experiment, plot_val_loss
from lstm_sweep.results.analysis import trial_endings
from lstm_sweep.results.run_folder import read_run_folder
from lstm_sweep.search.sweep import rebuild_results, run_sweep

pytestmark = pytest.mark.slow


def test_sweep_writes_every_file_and_asha_stops_a_trial(tmp_path, local_ray, tiny_sweep):
    config = tiny_sweep(tmp_path)
    outcome = run_sweep(config, name="run")
    run_dir = tmp_path / "run"
    assert outcome.run_dir == run_dir

    assert yaml.safe_load((run_dir / "sweep.yaml").read_text()) == config.to_dict()
    vocab = Vocabulary.from_json(run_dir / "vocab.json")
    assert vocab == prepare(config.data).vocab and vocab.tokens[:2] == ["<pad>", "<unk>"]

    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 4 and trials.trial_id.is_unique
    assert list(trials.columns[:2]) == ["trial_id", "status"]
    for column in ["embedding_size", "hidden_size", "learning_rate", "batch_size", "epochs",
                   "best_val_loss", "last_val_loss", "seconds", "node"]:
        assert column in trials.columns
    assert set(trials.status) <= {"completed", "early_stopped"}
    assert "early_stopped" in set(trials.status), "ASHA stopped no trial"
    assert (trials.loc[trials.status == "completed", "epochs"] == 3).all()
    assert (trials.loc[trials.status == "early_stopped", "epochs"] < 3).all()
    assert trials.best_val_loss.is_monotonic_increasing  # best trial first
    assert trials.node.str.startswith("127.0.0.1").all()

    curves = pd.read_csv(run_dir / "curves.csv")
    assert len(curves) == trials.epochs.sum()
    assert {"trial_id", "epoch", "loss", "val_loss", "val_loss_padded", "seconds"} <= set(curves.columns)
    assert (curves.val_loss_padded < curves.val_loss).all()
    best = curves.groupby("trial_id").val_loss.min()
    assert best.to_dict() == pytest.approx(trials.set_index("trial_id").best_val_loss.to_dict())

    png = (run_dir / "val_loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    figure = plot_val_loss(outcome.records)
    assert len(figure.axes[0].get_lines()) == 4  # one curve per trial

    best_json = json.loads((run_dir / "best.json").read_text())
    assert best_json["trial_id"] == trials.trial_id[0]

    # Only the best checkpoint (and the latest, for restarts) stays on disk; TensorBoard files beside it.
    for trial_dir in (run_dir / "ray").iterdir():
        if trial_dir.is_dir():
            assert len(list(trial_dir.glob("checkpoint_*"))) <= 2
            assert list(trial_dir.glob("events.out.tfevents.*")), f"no TensorBoard file in {trial_dir.name}"

    # The searcher's Optuna study, in SQLite, as optuna-dashboard reads it: a value per trial,
    # the best_val_loss the sweep ranks it by (every trial here finished an epoch).
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert len(study.trials) == 4
    assert sorted(t.value for t in study.trials if t.value is not None) == pytest.approx(
        sorted(trials.best_val_loss.tolist()))

    # `lstm-sweep report` rebuilds the same tables from the Ray experiment alone.
    (run_dir / "trials.csv").unlink()
    rebuild_results(run_dir)
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "trials.csv"), trials)


def test_one_trial_at_a_time_is_reproducible(tmp_path, local_ray, tiny_sweep):
    runs = []
    for name in ("a", "b"):
        run_sweep(tiny_sweep(tmp_path, samples=3, epochs=2, concurrent=1), name=name)
        runs.append(pd.read_csv(tmp_path / name / "curves.csv"))
    a, b = (load_experiment(tmp_path / n / "ray", max_epochs=2) for n in ("a", "b"))
    assert [r.params for r in a] == [r.params for r in b]
    assert runs[0].val_loss.tolist() == pytest.approx(runs[1].val_loss.tolist(), rel=1e-5)


def test_a_reused_worker_starts_each_trial_as_a_fresh_process_would(tmp_path, local_ray, tiny_sweep):
    """One config three times, one trial at a time: Ray Tune hands the first trial's worker to the
    next two (same resources), and each of them trains exactly as the first did, from the same
    process baseline, to about the same measured peak."""
    config = tiny_sweep(tmp_path, samples=3, epochs=2, concurrent=1, scheduler={"kind": "fifo"},
                        resources={"reuse_workers": True},
                        space={"embedding_size": 8, "hidden_size": 24, "learning_rate": 1e-2})
    run_dir = run_sweep(config, name="run").run_dir
    reports = pd.concat([pd.read_json(f, lines=True) for f in (run_dir / "ray").glob("*/result.json")])
    last = reports.sort_values("trial_started").groupby("trial_id", sort=False).last()
    assert last.worker_trials_before.tolist() == [0, 1, 2], "the worker was not reused"
    assert last.pid.nunique() == 1
    curves = pd.read_csv(run_dir / "curves.csv").set_index(["trial_id", "epoch"]).val_loss.unstack()
    assert curves.nunique().max() == 1, curves  # the same losses in the reused process, to the bit
    first = last.iloc[0]
    assert (last.process_baseline_mb <= first.process_baseline_mb + 64).all(), last.process_baseline_mb
    assert (last.measured_peak_mb <= first.measured_peak_mb * 1.25 + 16).all(), last.measured_peak_mb
    assert (last.measured_peak_mb <= last.predicted_peak_mb).all()


def test_a_reused_worker_collects_only_what_trials_made_and_frees_each_trials_model():
    # In a process of its own: the first trial freezes what the imports made (gc.freeze), which
    # would otherwise stay frozen in pytest's process.
    script = """
import gc, weakref
import keras
from lstm_sweep.search.trainable import _start_clean
assert _start_clean() == 0 and gc.get_freeze_count() > 100_000, gc.get_freeze_count()
model = keras.Sequential([keras.Input((4,)), keras.layers.Embedding(50, 8), keras.layers.LSTM(8)])
model.compile("adam", "mse")
gone = weakref.ref(model)
del model
assert _start_clean() == 1 and gone() is None, "the last trial's model outlived the next trial's start"
assert len(gc.get_objects()) < gc.get_freeze_count() / 10, "the collector still scans the imports"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_without_reuse_each_trial_has_a_process_of_its_own(tmp_path, local_ray, tiny_sweep):
    config = tiny_sweep(tmp_path, samples=2, epochs=1, concurrent=1, scheduler={"kind": "fifo"},
                        space={"embedding_size": 8, "hidden_size": 8, "learning_rate": 1e-2})
    run_dir = run_sweep(config, name="run").run_dir
    reports = pd.concat([pd.read_json(f, lines=True) for f in (run_dir / "ray").glob("*/result.json")])
    assert reports.pid.nunique() == 2 and set(reports.worker_trials_before) == {0}


@pytest.mark.slow
def test_a_space_with_nothing_to_search_trains_the_one_config(tmp_path, local_ray, tiny_sweep, monkeypatch):
    # Optuna refuses an empty search space; the fixed config is trained num_samples times.
    # The output folder is relative, as in sweeps/quick.yaml (`output: runs`).
    monkeypatch.chdir(tmp_path)
    config = tiny_sweep("runs", samples=2, epochs=1, space={"embedding_size": 8, "hidden_size": 8,
                                                            "learning_rate": 1e-2})
    assert config.searched() == []
    trials = pd.read_csv(run_sweep(config, name="run").run_dir / "trials.csv")
    assert (tmp_path / "runs" / "run" / "val_loss.png").is_file()
    assert len(trials) == 2 and set(trials.status) == {"completed"}
    assert set(trials.hidden_size) == {8} and set(trials.learning_rate) == {1e-2}


def test_the_time_budget_ends_the_sweep_and_is_no_interruption(tmp_path, local_ray, tiny_sweep, capsys):
    # 200 trials of 1000 epochs cannot finish in 25 s: Tune stops the running trials there.
    # (50 epochs could: a fast CI machine finished such a trial in 14 s.)
    config = tiny_sweep(tmp_path, samples=200, epochs=1000,
                        budget={"num_samples": 200, "max_epochs": 1000, "max_concurrent": 2, "max_minutes": 25 / 60})
    began = time.monotonic()
    outcome = run_sweep(config, name="budget")
    assert time.monotonic() - began < 25 + 60  # stopped near the budget (Ray's start and the writing on top)
    assert not outcome.interrupted
    trials = pd.read_csv(outcome.run_dir / "trials.csv")
    assert 1 <= len(trials) < 200
    assert trials.epochs.max() < 1000 and "completed" not in set(trials.status)
    out = capsys.readouterr().out
    assert "the running trials were stopped" in out
    # The trials running when the budget ran out (2 at a time) say so, in trials.csv, the
    # report's endings and the terminal; those ASHA stopped before it do not.
    # ("at epoch 1.5", or "before its first report" for one the budget caught in its first steps)
    cut = trials[trials.error.fillna("").str.startswith("cut by the sweep's time budget ")]
    assert 1 <= len(cut) <= 2 and set(cut.status) == {"early_stopped"}
    assert set(cut.trial_id) == set(json.loads((outcome.run_dir / "budget_cuts.json").read_text())["trials"])
    endings = trial_endings(read_run_folder(outcome.run_dir))
    assert set(trials.trial_id[endings == "budget"]) == set(cut.trial_id)
    assert set(endings[~trials.trial_id.isin(cut.trial_id)]) <= {"stopped", "at_baseline"}
    assert sum(f"{t}  cut by the time budget at " in out for t in cut.trial_id) == len(cut)
