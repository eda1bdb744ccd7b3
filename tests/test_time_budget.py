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
