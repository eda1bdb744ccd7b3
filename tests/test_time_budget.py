"""``lstm-sweep run --time``: one wall-clock budget, split between the sweep and the retrain."""

import time

import pandas as pd
import pytest
import yaml

from lstm_sweep.errors import ConfigError
from lstm_sweep.search.cli import main
from lstm_sweep.search.timebudget import RESERVE_S, SWEEP_SHARE, parse_duration, plan_time

# What `run --time` may overrun its budget by here: the last epoch's rounding, the export and the
# report on a busy 2-core machine (README, "A time budget").
MARGIN_S = 30


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("1h30m", 5400), ("90s", 90), ("2h", 7200),
                                           ("45", 2700), ("1.5h", 5400), ("1h 5m 30s", 3930)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("argv, problem", [
    (["--time", "3x"], "not a duration"),
    (["--time", "5m5m"], "twice"),
    (["--time", "1m"], "too short"),
    (["--time", "10m", "--max-minutes", "5"], "drop --max-minutes"),
])
def test_a_bad_time_is_one_line_before_anything_runs(tmp_path, capsys, argv, problem):
    assert main(["run", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lstm-sweep: error: --time") and problem in err[0]
    assert not any(tmp_path.iterdir())


def test_the_split_leaves_the_retrain_what_the_sweep_does_not_take():
    plan = plan_time(1800, started=1000.0)
    assert plan.sweep_s == pytest.approx(SWEEP_SHARE * (1800 - RESERVE_S))
    assert plan.deadline == 2800.0
    with pytest.raises(ConfigError):
        plan_time(60)


@pytest.mark.slow
def test_run_ends_within_its_time_budget(tmp_path, local_ray, tiny_sweep, capsys):
    budget = 120
    # More trials and retrain epochs than fit: the budget, not the counts, ends each part.
    config = tiny_sweep(tmp_path / "runs", samples=40, epochs=4, space={"learning_rate": {"loguniform": [3e-3, 2e-2]}})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    started = time.monotonic()
    code = main(["run", "--config", str(path), "--name", "run", "--time", f"{budget}s", "--epochs", "500",
                 "--patience", "500"])
    spent = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 0
    assert spent <= budget + MARGIN_S, out
    assert out.index("time budget 2 min,") < out.index("run folder:")  # the plan comes first
    assert "time left for the retrain" in out and "spent " in out.splitlines()[-1]
    trials = pd.read_csv(tmp_path / "runs" / "run" / "trials.csv")
    assert 1 <= len(trials) < 40  # the sweep's share of the time ended it
    history = pd.read_csv(tmp_path / "runs" / "run" / "winner" / "history.csv")
    assert 1 <= len(history) < 500  # so did the retrain's


class _Trial:  # what BudgetCuts and ProgressView read of Ray Tune's Trial
    def __init__(self, trial_id, status="RUNNING", **last_result):
        self.trial_id, self.status, self.last_result = trial_id, status, last_result


def test_the_budget_notes_when_it_was_spent_and_keeps_the_trials_it_cut(tmp_path, capsys):
    import pickle

    from lstm_sweep.results.experiment import read_budget_cuts
    from lstm_sweep.search.budget import BudgetCuts, SweepBudget
    from lstm_sweep.search.terminal import ProgressView

    budget = SweepBudget(0.2)
    cuts, view = BudgetCuts(budget, tmp_path, max_epochs=4), ProgressView("val_loss", "min", 4, 10, 0.2 / 60,
                                                                            budget=budget)
    # Tune pickles its run config (the stopper and the callbacks together) for a resume: the
    # callbacks' copies still share one stopper.
    budget, cuts, view = pickle.loads(pickle.dumps((budget, cuts, view)))
    assert cuts.watch.budget is budget and view.budget is budget
    cuts.setup()
    view.setup()
    callbacks = (cuts, view)
    # What TuneController.step does: a trial ASHA stops ends through on_trial_complete ...
    asha, cut, done, base, new, waiting, old = (
        _Trial("asha0001", epoch=1.0), _Trial("cut00001", epoch=2.5), _Trial("done0001", epoch=3.75),
        _Trial("base0001", epoch=0.5), _Trial("new00001"), _Trial("wait0001", "PENDING"),
        _Trial("old00001", "TERMINATED", epoch=1.0))  # the last from before a resume
    trials = [asha, cut, done, base, new, waiting, old]
    assert not budget.stop_all()
    for callback in callbacks:
        callback.on_step_end(0, trials)
    asha.status = "TERMINATED"
    for callback in callbacks:
        callback.on_trial_complete(1, trials, asha)
    # ... and in a later step, with the budget spent, one finishes its last epoch and ends itself
    # (on_trial_complete), one stops at the baseline, and Ray's _stop_experiment_if_needed ends
    # all the others at once: no on_trial_complete, only TERMINATED at that step's on_step_end.
    time.sleep(0.3)
    done.last_result, base.last_result = {"epoch": 4.0}, {"epoch": 0.5, "outcome": "at_baseline"}
    for trial in (done, base):
        trial.status = "TERMINATED"
        for callback in callbacks:
            callback.on_trial_complete(1, trials, trial)
    assert budget.stop_all() and budget.spent_at is not None
    spent_at = budget.spent_at
    assert budget.stop_all() and budget.spent_at == spent_at  # the first moment stays
    for trial in trials:
        trial.status = "TERMINATED"
    for callback in callbacks:
        callback.on_step_end(2, trials)
        callback.on_experiment_end(trials)  # tells nothing twice
    assert read_budget_cuts(tmp_path) == {"cut00001": 2.5, "new00001": 0.0}
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2:4] for line in lines] == [["asha0001", "stopped"], ["done0001", "completed"],
                                                     ["base0001", "at"], ["cut00001", "cut"], ["new00001", "cut"]]
    assert "cut by the time budget at epoch 2.5" in lines[3] and "cut by the time budget at the start" in lines[4]
    assert "stopped by ASHA at epoch 1" in lines[0] and "completed 4 epochs" in lines[1]
    # A resumed sweep's callback keeps what the file says.
    again = BudgetCuts(SweepBudget(60), tmp_path, max_epochs=4)
    again.setup()
    assert again.cuts == {"cut00001": 2.5, "new00001": 0.0}
    assert read_budget_cuts(tmp_path / "elsewhere") == {}
    with pytest.raises(ValueError, match="positive"):
        SweepBudget(0)


@pytest.mark.parametrize("result, epochs", [({"epoch": 2.2500000004}, 2.25), ({"epoch": 3, "training_iteration": 6}, 3.0),
                                            ({"training_iteration": 2}, 2.0), ({}, 0.0), ({"epoch": None}, 0.0),
                                            ({"epoch": float("nan")}, 0.0), ({"epoch": "?"}, 0.0)])
def test_the_budget_file_and_the_terminal_read_a_trials_epochs_alike(result, epochs):
    from lstm_sweep.results.experiment import epochs_reported

    assert epochs_reported(result) == epochs
