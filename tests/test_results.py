"""results/: tables, plot, atomic writers and the run folder, from hand-built TrialRecords (no Ray)."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lstm_sweep.results import (TrialRecord, atomic_write_csv, atomic_write_json, atomic_write_text, best_trial, curves_table,
                     format_leaderboard, plot_val_loss, trials_table, write_results)
from lstm_sweep.results.plots import format_params

PARAMS = {"embedding_size": 32, "hidden_size": 64, "num_layers": 1, "dropout": 0.1, "learning_rate": 0.0032,
          "batch_size": 64}
STANDARD_TAIL = ["epochs", "best_val_loss", "last_val_loss", "best_val_loss_padded", "seconds", "node", "error"]


def history(val_losses, **more):
    n = len(val_losses)
    val = np.asarray(val_losses, dtype=float)
    return pd.DataFrame({"epoch": np.arange(1, n + 1), "loss": val + 0.1, "val_loss": val,
                         "val_loss_padded": val - 1.0, "seconds": np.full(n, 2.5), **more})


def record(trial_id, val_losses, status="completed", **params):
    return TrialRecord(trial_id=trial_id, status=status, params={**PARAMS, **params}, history=history(val_losses),
                       seconds=2.5 * len(val_losses), node="10.0.0.7",
                       extra={"batch_size_requested": 64, "batch_size_used": 64, "oom_retries": 0})


def failed(trial_id, error="ResourceExhaustedError: OOM when allocating tensor"):
    return TrialRecord(trial_id, "failed", dict(PARAMS), pd.DataFrame(), seconds=1.0, error=error)


@pytest.fixture
def records():
    return [
        record("t3", [5.0, 4.5, 4.2, 4.3], learning_rate=0.01),  # best 4.2 at epoch 3
        record("t1", [5.2, 4.9], status="early_stopped", hidden_size=128),
        record("t2", [4.9, 4.4, 4.1, 4.05], learning_rate=0.0005),  # the winner
        failed("t0"),
        record("t4", [5.0, 4.5, 4.2, 4.2]),  # ties t3 on best: trial_id decides
    ]


# --- tables -----------------------------------------------------------------------------------

def test_trials_table_columns_order_and_values(records):
    trials = trials_table(records)
    assert list(trials.columns) == ["trial_id", "status", *PARAMS, "batch_size_requested", "batch_size_used",
                                    "oom_retries", *STANDARD_TAIL]
    assert trials.trial_id.tolist() == ["t2", "t3", "t4", "t1", "t0"]  # best first, tie by id, failed last
    best = trials.iloc[0]
    assert best.epochs == 4 and best.best_val_loss == pytest.approx(4.05)
    assert best.last_val_loss == pytest.approx(4.05) and best.best_val_loss_padded == pytest.approx(3.05)
    t3 = trials.set_index("trial_id").loc["t3"]
    assert t3.best_val_loss == pytest.approx(4.2) and t3.last_val_loss == pytest.approx(4.3)
    t0 = trials.set_index("trial_id").loc["t0"]
    assert t0.epochs == 0 and math.isnan(t0.best_val_loss) and t0.error.startswith("ResourceExhausted")


def test_trials_table_takes_the_union_of_params_in_first_seen_order():
    a = TrialRecord("a", "completed", {"hidden_size": 8, "dropout": 0.0}, history([3.0]), 1.0)
    b = TrialRecord("b", "completed", {"cell": "gru", "hidden_size": 16}, history([2.0]), 1.0, extra={"oom_retries": 1})
    trials = trials_table([a, b])
    assert list(trials.columns[:6]) == ["trial_id", "status", "hidden_size", "dropout", "cell", "oom_retries"]
    assert trials.trial_id.tolist() == ["b", "a"]
    assert trials.cell.tolist()[0] == "gru" and pd.isna(trials.cell.tolist()[1])


def test_diverged_epochs_never_win():
    diverged = record("nan", [float("nan"), float("inf"), 9.0])
    trials = trials_table([diverged, record("ok", [5.0])])
    assert trials.trial_id.tolist() == ["ok", "nan"]
    assert trials.best_val_loss.tolist() == [5.0, 9.0]


def test_curves_table_one_row_per_trial_and_epoch(records):
    records[0].history["learning_rate_now"] = 0.001  # an extra numeric column is kept, after the standard ones
    records[0].history["host"] = "a"  # text is not a curve
    curves = curves_table(records)
    assert len(curves) == sum(r.epochs for r in records) == 14
    assert list(curves.columns) == ["trial_id", "epoch", "loss", "val_loss", "val_loss_padded", "seconds",
                                    "learning_rate_now"]
    order = {r.trial_id: i for i, r in enumerate(records)}  # trials in the order given, epochs ascending
    keys = [(order[t], e) for t, e in zip(curves.trial_id, curves.epoch)]
    assert keys == sorted(keys)
    assert curves.epoch.dtype == "int64"
    assert curves.groupby("trial_id").val_loss.min().to_dict() == pytest.approx(
        {"t1": 4.9, "t2": 4.05, "t3": 4.2, "t4": 4.2})


def test_curves_table_of_nothing_has_the_columns():
    curves = curves_table([failed("x")])
    assert curves.empty and list(curves.columns) == ["trial_id", "epoch", "loss", "val_loss", "val_loss_padded",
                                                     "seconds"]


def test_best_trial_and_its_error(records):
    assert best_trial(records).trial_id == "t2"
    with pytest.raises(ValueError, match="no trial reported val_loss: 2 trial.*2 failed"):
        best_trial([failed("a"), failed("b")])
    with pytest.raises(ValueError, match="no trial reported val_loss"):
        best_trial([])


def test_mode_max_ranks_the_highest_first():
    def acc(trial_id, values):
        return TrialRecord(trial_id, "completed", {"hidden_size": 8},
                           history([3.0] * len(values), val_accuracy=values), 1.0)
    records = [acc("low", [0.2, 0.3]), acc("high", [0.5, 0.4]), failed("none")]
    trials = trials_table(records, metric="val_accuracy", mode="max")
    assert trials.trial_id.tolist() == ["high", "low", "none"]
    assert {"best_val_accuracy", "last_val_accuracy"} <= set(trials.columns)
    assert trials.best_val_accuracy.iloc[0] == 0.5 and trials.last_val_accuracy.iloc[0] == 0.4
    assert best_trial(records, metric="val_accuracy", mode="max").trial_id == "high"


def test_bad_arguments_are_refused_with_the_rule(records):
    with pytest.raises(ValueError, match="mode='lowest'"):
        trials_table(records, mode="lowest")
    with pytest.raises(ValueError, match="metric=''"):
        best_trial(records, metric="")
    with pytest.raises(ValueError, match="'t1' appears twice"):
        trials_table([records[1], records[1]])
    with pytest.raises(ValueError, match="status='done'"):
        TrialRecord("x", "done", {}, pd.DataFrame(), 0.0)
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        TrialRecord("x", "failed", {}, None, 0.0)
    with pytest.raises(ValueError, match="'epochs' has the name of a standard"):
        trials_table([TrialRecord("x", "completed", {"epochs": 3}, history([1.0]), 0.0)])
    with pytest.raises(ValueError, match="top=0"):
        format_leaderboard(trials_table(records), top=0)


def test_leaderboard_puts_the_best_trial_on_the_first_data_row(records):
    text = format_leaderboard(trials_table(records), top=3)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["trial_id", "status"] and "best val_loss" in lines[0]
    assert lines[1].split()[0] == "t2"
    assert "lr" in lines[0].split() and "5.0e-04" in lines[1]  # learning rates compact
    assert "4.0500" in lines[1]
    assert len(lines) == 1 + 3 + 1 and "2 more" in lines[-1]
    assert len({len(line) for line in lines[:4]}) <= 2  # fixed width (trailing blanks stripped)


def test_leaderboard_reads_a_trials_csv_back(tmp_path, records):
    write_results(tmp_path, records)
    text = format_leaderboard(pd.read_csv(tmp_path / "trials.csv"))
    assert text.splitlines()[1].startswith("t2 ")
    assert "batch_used" in text.splitlines()[0]  # without attrs, every column before epochs is shown


# --- plot -------------------------------------------------------------------------------------

def test_plot_has_one_line_per_trial_with_epochs(records):
    figure = plot_val_loss(records)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 4  # t0 failed before its first epoch
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0].startswith("4.050") and "lr5e-4" in labels[0]  # best first, compact params
    assert lines[0].get_linewidth() > max(line.get_linewidth() for line in lines[1:])
    assert lines[0].get_zorder() > max(line.get_zorder() for line in lines[1:])
    assert len(lines[labels.index(next(l for l in labels if "h128" in l))].get_xdata()) == 2  # early-stopped
    assert "5 trials, 1 early-stopped, 1 failed" in ax.get_title()


def test_plot_of_fifty_trials_stays_readable(tmp_path):
    rng = np.random.default_rng(0)
    records = [record(f"t{i:02d}", 4.0 + rng.random() + 2.0 / np.arange(1, 2 + i % 8),
                      status="early_stopped" if i % 8 < 3 else "completed",
                      hidden_size=int(rng.choice([64, 128, 256])), learning_rate=float(10 ** rng.uniform(-4, -2)))
               for i in range(50)]
    small = plot_val_loss(records[:3])
    figure = plot_val_loss(records)
    ax = figure.axes[0]
    assert len(ax.get_lines()) == 50
    legend = ax.get_legend()
    assert len(legend.get_texts()) == 50
    assert legend.get_texts()[0].get_fontsize() < small.axes[0].get_legend().get_texts()[0].get_fontsize()
    width, height = figure.get_size_inches()
    assert 8 <= width <= 18 and 4 <= height <= 12
    FigureCanvasAgg(figure).draw()
    # The legend sits right of the axes and inside the figure: it covers no curve and is not cut off.
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= axes_box.x1 and box.x1 <= figure.bbox.x1 + 1 and box.y0 >= -1 and box.y1 <= figure.bbox.y1 + 1


def test_plot_with_no_trial_reported_says_so(tmp_path):
    figure = plot_val_loss([failed("a"), failed("b")], tmp_path / "p.png")
    assert len(figure.axes[0].get_lines()) == 0
    assert "no trial reported val_loss" in figure.axes[0].get_title()
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


def test_format_params_is_compact_and_generic():
    assert format_params(PARAMS) == "e32 h64 l1 d0.10 lr3.2e-3 b64"
    assert format_params({"learning_rate": 0.003, "dropout": 0.125}) == "lr3e-3 d0.125"
    assert format_params({"learning_rate": 0.02}, exponent={"learning_rate"}) == "lr2e-2"
    assert format_params({"cell": "gru", "clipnorm": 1.0}) == "cell=gru clipnorm=1"


# --- files ------------------------------------------------------------------------------------

def test_write_results_writes_every_file(tmp_path, records):
    run_dir = tmp_path / "run"
    paths = write_results(run_dir, records)
    assert paths == {"trials": run_dir / "trials.csv", "curves": run_dir / "curves.csv",
                     "plot": run_dir / "val_loss.png", "best": run_dir / "best.json"}
    assert sorted(os.listdir(run_dir)) == ["best.json", "curves.csv", "trials.csv", "val_loss.png"]  # no temp files

    trials = pd.read_csv(paths["trials"])
    assert list(trials.columns) == list(trials_table(records).columns)
    assert len(trials) == 5 and trials.trial_id[0] == "t2"
    assert trials.learning_rate[0] == 0.0005 and trials.best_val_loss[0] == 4.05
    curves = pd.read_csv(paths["curves"])
    assert len(curves) == trials.epochs.sum()
    best_per_trial = trials.set_index("trial_id").best_val_loss.dropna().to_dict()
    assert curves.groupby("trial_id").val_loss.min().to_dict() == best_per_trial  # same values in both files

    png = paths["plot"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000

    best = json.loads(paths["best"].read_text())
    assert best["trial_id"] == "t2" and best["status"] == "completed"
    assert best["params"] == {**PARAMS, "learning_rate": 0.0005}
    assert best["best_val_loss"] == pytest.approx(4.05) and best["best_epoch"] == 4 and best["epochs"] == 4
    assert best["extra"]["batch_size_used"] == 64 and best["metric"] == "val_loss" and best["mode"] == "min"

    write_results(run_dir, records)  # rewriting the same run gives the same tables
    pd.testing.assert_frame_equal(pd.read_csv(paths["trials"]), trials)


def test_write_results_without_a_reported_trial(tmp_path, records):
    write_results(tmp_path, records)  # an earlier best.json must not outlive its winner
    paths = write_results(tmp_path, [failed("a"), TrialRecord("b", "infeasible", {}, pd.DataFrame(), 0.0,
                                                              error="needs 9.1 GB, node has 8 GB")])
    assert "best" not in paths and not (tmp_path / "best.json").exists()
    trials = pd.read_csv(paths["trials"])
    assert trials.trial_id.tolist() == ["a", "b"] and trials.error[1] == "needs 9.1 GB, node has 8 GB"
    assert pd.read_csv(paths["curves"]).empty
    assert paths["plot"].read_bytes().startswith(b"\x89PNG")


def test_write_results_of_no_records(tmp_path):
    paths = write_results(tmp_path, [])
    assert list(pd.read_csv(paths["trials"]).columns) == ["trial_id", "status", *STANDARD_TAIL]
    assert "best" not in paths


def test_csv_keeps_float32_losses_exactly(tmp_path):
    losses = np.float32([4.123456789, 3.000001, 1e-7]).astype(float)
    atomic_write_csv(tmp_path / "x.csv", pd.DataFrame({"v": losses}))
    assert (pd.read_csv(tmp_path / "x.csv").v.to_numpy(dtype=np.float32) == losses.astype(np.float32)).all()


def test_json_writes_nan_as_null_and_numpy_as_plain(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"z": float("nan"), "a": np.float32(0.5), "n": np.int64(3),
                                            "l": (1, float("inf"))})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text) == {"z": None, "a": 0.5, "n": 3, "l": [1, None]}
    assert text.index('"z"') < text.index('"a"') and '\n  "a"' in text  # own key order, indent 2


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "sweep.yaml"
    atomic_write_text(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["sweep.yaml"]
    with pytest.raises(ValueError, match="cannot write a object to JSON"):
        atomic_write_json(target, {"x": object()})
    assert os.listdir(tmp_path) == ["sweep.yaml"]


def test_written_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a" / "b.txt", "x")  # parent folders are made
    finally:
        os.umask(umask)
    assert (tmp_path / "a" / "b.txt").stat().st_mode & 0o777 == 0o644
