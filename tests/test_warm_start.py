"""``--warm-start RUN_DIR``: a sweep that starts from an earlier sweep's finished trials.

One real earlier sweep (3 trials of 2 epochs on the built-in corpus, run once for the module)
is carried into real sweeps: its trials land in the new run folder's Optuna study with their
results (same data), or its best configurations run first (other data); a folder that cannot
be carried over is refused by the CLI in one line, before anything is made.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from ray import tune

from lstm_sweep.errors import ConfigError
from lstm_sweep.search.cli import main
from lstm_sweep.search.warmstart import (ATTR, CarriedTrial, WarmStart, load_warm_start, plan_warm_start,
                                         read_earlier_sweeps)

# No baseline stop: the trials that end sooner are the ones ASHA stopped at epoch 1.
ASHA = {"grace_period": 1, "reduction_factor": 2, "stop_at_baseline": False}
_EARLIER: dict[str, Path] = {}


@pytest.fixture
def earlier(tmp_path_factory, local_ray, tiny_sweep) -> Path:
    """The earlier run folder, made by the first test that asks for it: one sweep for the module."""
    if "run" not in _EARLIER:
        from lstm_sweep.search.sweep import run_sweep

        out = tmp_path_factory.mktemp("earlier")
        run_sweep(tiny_sweep(out, samples=3, epochs=2, asha=ASHA), name="quick")
        _EARLIER["run"] = out / "quick"
    return _EARLIER["run"]


def study_of(run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'optuna.db'}")


def carried(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if ATTR in t.user_attrs]


def finished(run_dir: Path) -> pd.DataFrame:
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    return trials[trials.status.isin(["completed", "early_stopped"])]


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


# --- same data and space: the earlier trials with their results ---------------------------------

@pytest.mark.slow
def test_a_warm_started_sweep_s_study_holds_the_earlier_trials_with_their_results(tmp_path, earlier, tiny_sweep,
                                                                                 capsys):
    from lstm_sweep.search.sweep import run_sweep

    outcome = run_sweep(tiny_sweep(tmp_path, samples=2, epochs=2, asha=ASHA), name="warm", warm_start=[earlier])
    run_dir = tmp_path / "warm"
    assert not outcome.interrupted
    before = finished(earlier)
    assert f"warm start: {len(before)} trials of {earlier} carried with their results" in capsys.readouterr().out

    study = study_of(run_dir)
    old = {t.user_attrs[ATTR].rsplit("/", 1)[1]: t for t in carried(study)}
    assert sorted(old) == sorted(before.trial_id)
    curves = pd.read_csv(earlier / "curves.csv", dtype={"trial_id": str})
    for row in before.itertuples():
        trial = old[row.trial_id]
        assert trial.params == {"embedding_size": row.embedding_size, "hidden_size": row.hidden_size,
                                "learning_rate": pytest.approx(row.learning_rate, rel=1e-9)}
        curve = curves[curves.trial_id == row.trial_id]
        assert trial.intermediate_values == pytest.approx(dict(zip(curve.epoch, curve.val_loss)), rel=1e-9)
        if row.status == "completed":  # its best val_loss, as trials.csv ranks it
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == pytest.approx(row.best_val_loss, rel=1e-9)
        else:  # stopped by ASHA: pruned, its epochs as intermediate values, no value
            assert trial.state == optuna.trial.TrialState.PRUNED and trial.value is None
    # The carried trials come first; this sweep's own two follow, proposed by TPE with them in view.
    own = [t for t in study.get_trials() if ATTR not in t.user_attrs]
    assert len(own) == 2 and min(t.number for t in own) == len(old)

    assert load_warm_start(run_dir).runs == (str(earlier),)
    data = [yaml.safe_load((folder / "data.json").read_text())["fingerprint"] for folder in (earlier, run_dir)]
    assert data[0] == data[1] and len(data[0]) == 64  # the corpus fingerprint, recorded for the next warm start


@pytest.mark.slow
def test_trials_outside_the_new_space_are_skipped_and_counted(earlier, tiny_sweep, tmp_path):
    rates = sorted(finished(earlier).learning_rate)
    assert len(rates) == 3 and len(set(rates)) == 3
    # A range that ends at the middle value: the largest rate falls outside it.
    config = tiny_sweep(tmp_path, epochs=2, space={"learning_rate": {"loguniform": [rates[0], rates[1]]}})
    (sweep,) = read_earlier_sweeps(config, [earlier, earlier])  # a folder given twice is read once
    assert len(sweep.trials) == 2 and sweep.outside == 1
    plan = plan_warm_start((sweep,), sweep.fingerprint, config)
    assert plan.lines[0].startswith(f"warm start: 2 trials of {earlier} carried with their results")
    assert plan.lines[0].endswith(", 1 outside the space skipped")
    assert sorted(t.params["learning_rate"] for t in plan.trials) == pytest.approx(rates[:2])

    longer = tiny_sweep(tmp_path, epochs=4)  # trials of 2 epochs were cut short by this sweep's budget
    plan = plan_warm_start(read_earlier_sweeps(longer, [earlier]), sweep.fingerprint, longer)
    assert {t.state for t in plan.trials} == {"pruned"} and all(t.value is None for t in plan.trials)


# --- other data: the best configurations first, without their values -----------------------------

@pytest.mark.slow
def test_a_sweep_on_other_data_runs_the_earlier_best_configurations_first(tmp_path, earlier, tiny_sweep, capsys):
    from lstm_sweep.search.sweep import run_sweep

    config = tiny_sweep(tmp_path, samples=2, epochs=2, asha=ASHA,
                        data={"path": "builtin", "builtin_lines": 1200, "vocab_size": 400, "seed": 0})
    run_sweep(config, name="other", warm_start=[earlier])
    assert (f"warm start: {earlier} read other data (data.builtin_lines 1500 there, 1200 here): its best 3 "
            "configurations run first, without their results") in capsys.readouterr().out

    best = finished(earlier).head(3)  # trials.csv: best first
    study = study_of(tmp_path / "other")
    enqueued = sorted(carried(study), key=lambda t: t.number)
    assert [t.user_attrs[ATTR].rsplit("/", 1)[1] for t in enqueued] == best.trial_id.tolist()
    # The two trials of this sweep were the two best earlier configurations, measured afresh;
    # the third waits (num_samples 2).
    assert [t.state for t in enqueued] == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.WAITING]
    for trial, row in zip(enqueued, best.itertuples()):
        assert trial.system_attrs["fixed_params"] == {"embedding_size": row.embedding_size,
                                                      "hidden_size": row.hidden_size,
                                                      "learning_rate": pytest.approx(row.learning_rate, rel=1e-9)}
    assert len(study.get_trials()) == 3  # nothing carried with a value


# --- refused: one line, exit 2, nothing made --------------------------------------------------------

def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("change, reason", [
    ({"task": "classify", "data": {"path": "builtin"}},
     "a language_model sweep, and this one is classify: a warm start carries trials of the same task only"),
    ({"metric": "val_loss_padded"}, "its trials were ranked by val_loss (min), this sweep's by val_loss_padded (min)"),
    ({"space": {"dropout": {"uniform": [0.0, 0.3]}}}, "(dropout only here): a warm start needs the same searched"),
    ({"space": {"hidden_size": {"choice": [32, 64]}}}, "finished trials lies inside this sweep's space (hidden_size "),
], ids=["task", "metric", "searched-names", "no-trial-inside"])
def test_the_cli_refuses_a_run_folder_that_cannot_be_carried_over(tmp_path, earlier, tiny_sweep, capsys,
                                                                 change, reason):
    raw = tiny_sweep(tmp_path / "runs", epochs=2).to_dict()
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if key == "space" else value
    config = write_config(tmp_path / "sweep.yaml", raw)
    capsys.readouterr()
    assert main(["search", "--config", str(config), "--warm-start", str(earlier), "--name", "new"]) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"lstm-sweep: error: --warm-start {earlier}: ") and reason in line
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made


def test_the_cli_refuses_a_folder_that_is_no_run_folder_and_warm_start_with_resume(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for folder, reason in [(tmp_path / "nowhere", "no such folder"), (tmp_path / "empty", "no sweep.yaml in it")]:
        assert main(["search", "--out", str(tmp_path / "runs"), "--warm-start", str(folder)]) == 2
        assert one_line_error(capsys).endswith(f"--warm-start {folder}: {reason}: pass a run folder made by "
                                               "`lstm-sweep search`")
    assert not (tmp_path / "runs").exists()
    assert main(["search", "--resume", str(tmp_path / "run"), "--warm-start", str(tmp_path / "empty")]) == 2
    assert "--warm-start cannot change a sweep that has started" in one_line_error(capsys)


def test_nothing_to_search_has_no_searcher_to_warm_start(tmp_path, tiny_sweep):
    config = tiny_sweep(tmp_path, space={"embedding_size": 8, "hidden_size": 8, "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="this sweep searches nothing"):
        read_earlier_sweeps(config, [tmp_path])


# --- resume: the searcher is pickled, its study set up again ------------------------------------

PLAN = WarmStart(
    trials=(CarriedTrial({"embedding_size": 16, "hidden_size": 24, "learning_rate": 3e-3}, "complete", 4.9,
                         {1: 5.2, 2: 4.9}, "runs/a/t1"),
            CarriedTrial({"embedding_size": 8, "hidden_size": 8, "learning_rate": 2e-4}, "pruned", None, {1: 6.1},
                         "runs/a/t2")),
    enqueued=(CarriedTrial({"embedding_size": 8, "hidden_size": 24, "learning_rate": 1e-3}, "complete", 5.0, {},
                           "runs/b/t9"),),
    runs=("runs/a", "runs/b"), lines=("warm start: ...",))


def test_the_searcher_puts_the_trials_into_its_study_once_across_a_resume(tmp_path, tiny_sweep):
    import ray.cloudpickle

    from lstm_sweep.search.searcher import make_searcher

    config = tiny_sweep(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    searcher = make_searcher(config, run_dir, warm_start=PLAN)
    # tuner.pkl holds the searcher as it was before Tune set it up; a resume sets it up again.
    pickled = ray.cloudpickle.dumps(searcher)
    assert searcher.set_search_properties(config.metric, config.mode, config.param_space())
    again = ray.cloudpickle.loads(pickled)
    assert again.set_search_properties(config.metric, config.mode, config.param_space())

    trials = study_of(run_dir).get_trials()
    states = optuna.trial.TrialState
    assert [(t.state, t.value, t.user_attrs[ATTR]) for t in trials] == [
        (states.COMPLETE, 4.9, "runs/a/t1"), (states.PRUNED, None, "runs/a/t2"), (states.WAITING, None, "runs/b/t9")]
    assert trials[1].intermediate_values == {1: 6.1}
    # Their distributions are the ones OptunaSearch built from the Tune space, so TPE reads them.
    assert trials[0].distributions == searcher._space
    assert again.suggest("first") == {**PLAN.enqueued[0].params}  # the enqueued one runs first
    assert WarmStart.from_json(PLAN.to_json()) == PLAN and pickle.loads(pickle.dumps(PLAN)) == PLAN


class _CtrlCAfterFirstEpoch(tune.Callback):
    """Ctrl-C for the driver (its own SIGINT) at the first epoch reported, once (a marker file:
    Tune keeps its callbacks in tuner.pkl, so a resumed sweep has a fresh copy)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_a_warm_started_sweep_stopped_by_ctrl_c_resumes_and_carries_nothing_twice(tmp_path, earlier, tiny_sweep):
    from lstm_sweep.search.sweep import resume_sweep, run_sweep

    # One trial at a time: the second has not started when Ctrl-C comes, so the sweep is unfinished.
    config = tiny_sweep(tmp_path, samples=2, epochs=2, concurrent=1, asha=ASHA, scheduler={"kind": "fifo"})
    outcome = run_sweep(config, name="warm", warm_start=[earlier], callbacks=[_CtrlCAfterFirstEpoch(tmp_path / "x")])
    run_dir = tmp_path / "warm"
    assert outcome.interrupted
    resumed = resume_sweep(run_dir)
    assert not resumed.interrupted
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 2 and set(trials.status) == {"completed"}
    study = study_of(run_dir)
    assert len(carried(study)) == len(finished(earlier))  # set up twice, given once
    own = [t for t in study.get_trials() if ATTR not in t.user_attrs]
    assert [t.state for t in own] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(math.isfinite(t.value) for t in own)
