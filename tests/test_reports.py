"""Reports within an epoch (budget.reports_per_epoch): the validation subset, the stop rules on
its reports, the results that keep full-validation values apart, and a real sweep whose ASHA
stops a trial before its first epoch ends."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from lstm_sweep.data_pipeline import DataSettings, LabelledSettings, prepare, prepare_labelled
from lstm_sweep.results import TrialRecord, curves_table, trials_table, write_results
from lstm_sweep.search.config import ConfigError, parse_config
from lstm_sweep.search.tasks import VAL_SUBSET, get_task, validation_subset
from lstm_sweep.search.trainable import _Baseline, _report_steps


# --- the validation subset ------------------------------------------------------------------------

def test_the_validation_subset_is_fixed_for_a_seed_and_differs_between_seeds():
    first, again, other = (validation_subset(5000, 1024, seed) for seed in (0, 0, 1))
    assert first.tolist() == again.tolist()
    assert len(first) == len(set(first.tolist())) == 1024 and np.all(np.diff(first) > 0)
    assert first.min() >= 0 and first.max() < 5000
    assert first.tolist() != other.tolist()
    assert validation_subset(300, 1024, 0).tolist() == list(range(300))  # a small split: all of it
    with pytest.raises(ValueError, match="size=0"):
        validation_subset(10, 0, 0)


def test_a_task_scores_its_subset_against_the_subsets_own_baseline():
    from lstm_sweep.data_pipeline.baselines import unigram_loss

    prepared = prepare(DataSettings(builtin_lines=8 * VAL_SUBSET, vocab_size=400, seed=0))
    task = get_task("language_model")
    spec = task.spec({"embedding_size": 8, "hidden_size": 8, "num_layers": 1, "dropout": 0.0,
                      "learning_rate": 1e-3, "batch_size": 64}, prepared, parse_config({}))
    batches, baseline = task.val_subset(prepared, spec, seed=3)
    again, _ = task.val_subset(prepared, spec, seed=3)
    rows = prepared.val[validation_subset(len(prepared.val), VAL_SUBSET, 3)]
    assert len(prepared.val) > VAL_SUBSET  # a real subset here
    assert sum(int(s.shape[0]) for s, _ in batches) == VAL_SUBSET
    assert all(np.array_equal(a.numpy(), b.numpy()) for (a, _), (b, _) in zip(batches, again))
    assert baseline == {"val_loss": pytest.approx(unigram_loss(prepared.train, rows))}
    model = task.build(spec)
    figures = task.evaluate(model, batches)
    assert set(figures) == {"val_loss", "val_loss_padded"} and figures["val_loss"] > 0


def test_a_classifier_is_scored_on_its_subset_as_keras_validates():
    prepared = prepare_labelled(LabelledSettings(builtin_examples=600, builtin_classes=3, seed=0))
    task = get_task("classify")
    config = parse_config({"task": "classify", "space": {"seq_len": 16}})
    spec = task.spec({"embedding_size": 8, "hidden_size": 8, "num_layers": 1, "dropout": 0.0,
                      "learning_rate": 1e-3, "batch_size": 32, "seq_len": 16}, prepared, config)
    batches, baseline = task.val_subset(prepared, spec, seed=0)
    assert set(baseline) == {"val_loss", "val_accuracy"}
    model = task.build(spec)
    ours = task.evaluate(model, batches)
    theirs = model.evaluate(batches, return_dict=True, verbose=0)
    assert ours["val_loss"] == pytest.approx(theirs["loss"], rel=1e-4)
    assert ours["val_accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-6)


# --- where an epoch's reports fall ------------------------------------------------------------------

def test_in_epoch_reports_fall_at_even_fractions_of_the_steps():
    assert _report_steps(40, 4) == {10: 1, 20: 2, 30: 3}
    assert _report_steps(39, 4) == {10: 1, 20: 2, 29: 3}
    assert _report_steps(2, 4) == {1: 2}  # an epoch of 2 steps has room for one
    assert _report_steps(40, 1) == {} and _report_steps(0, 4) == {}


# --- the config ---------------------------------------------------------------------------------------

def test_reports_per_epoch_and_a_fractional_grace_period_are_checked():
    config = parse_config({"budget": {"reports_per_epoch": 4}, "asha": {"grace_period": 0.25}})
    assert (config.budget.reports_per_epoch, config.asha.grace_period) == (4, 0.25)
    assert parse_config({}).budget.reports_per_epoch == 1
    with pytest.raises(ConfigError, match="budget.reports_per_epoch: 0 must be >= 1"):
        parse_config({"budget": {"reports_per_epoch": 0}})
    with pytest.raises(ConfigError, match=r"asha.grace_period: 0.25 must be >= 1 / budget.reports_per_epoch \(0.5\)"):
        parse_config({"budget": {"reports_per_epoch": 2}, "asha": {"grace_period": 0.25}})
    for kind in ("hyperband", "median"):  # they pause trials, which would lose the part of an epoch
        with pytest.raises(ConfigError, match=f"budget.reports_per_epoch: 4 must be 1 with scheduler.kind {kind}"):
            parse_config({"budget": {"reports_per_epoch": 4}, "scheduler": {"kind": kind}})
    fifo = parse_config({"budget": {"reports_per_epoch": 4}, "scheduler": {"kind": "fifo"}})
    assert fifo.budget.reports_per_epoch == 4
    with pytest.raises(ConfigError, match=r"asha.spare_falling: 1.0 must be in \[0, 1\)"):
        parse_config({"asha": {"spare_falling": 1}})


# --- results: subset reports are drawn and listed, never ranked ------------------------------------

def reported(trial_id, rows, status="completed"):
    """A record from ``(epoch, val_loss, val_on)`` rows, as load_experiment builds it."""
    history = pd.DataFrame(rows, columns=["epoch", "val_loss", "val_on"]).assign(
        loss=lambda f: f.val_loss + 0.1, val_loss_padded=lambda f: f.val_loss - 1.0, seconds=1.0)
    return TrialRecord(trial_id, status, {"learning_rate": 1e-3}, history, seconds=4.0, extra={"baseline": 6.0})


def test_a_trials_best_is_its_best_full_validation_and_curves_keep_every_report(tmp_path):
    lucky = reported("a", [(0.5, 3.9, "subset"), (1, 4.6, "full"), (1.5, 4.4, "subset"), (2, 4.5, "full")])
    steady = reported("b", [(0.5, 4.8, "subset"), (1, 4.55, "full"), (1.5, 4.3, "subset"), (2, 4.2, "full")])
    cut = reported("c", [(0.5, 6.1, "subset")], status="early_stopped")  # ASHA stopped it at half an epoch
    records = [lucky, steady, cut]
    assert [r.epochs for r in records] == [2, 2, 0]  # finished epochs
    trials = trials_table(records)
    assert trials.trial_id.tolist() == ["b", "a", "c"]  # a's subset 3.9 is no best
    assert trials.best_val_loss.tolist()[:2] == [4.2, 4.5] and np.isnan(trials.best_val_loss.iloc[2])
    assert trials.epochs.tolist() == [2, 2, 0]

    curves = curves_table(records)
    assert list(curves.columns[:3]) == ["trial_id", "epoch", "val_on"]
    assert curves.epoch.tolist() == [0.5, 1, 1.5, 2, 0.5, 1, 1.5, 2, 0.5]
    assert curves.val_on.tolist() == ["subset", "full"] * 4 + ["subset"]

    paths = write_results(tmp_path, records)
    best = json.loads(paths["best"].read_text())
    assert (best["trial_id"], best["best_val_loss"], best["best_epoch"]) == ("b", 4.2, 2)
    written = pd.read_csv(paths["curves"])
    assert written.epoch.tolist() == curves.epoch.tolist() and written.val_on.tolist() == curves.val_on.tolist()


def test_the_plot_draws_in_epoch_reports_and_a_trial_stopped_before_its_first_epoch():
    from lstm_sweep.results import plot_val_loss

    records = [reported("a", [(0.25, 5.0, "subset"), (0.5, 4.8, "subset"), (0.75, 4.7, "subset"), (1, 4.6, "full")]),
               reported("c", [(0.25, 6.1, "subset")], status="early_stopped")]
    figure = plot_val_loss(records)
    lines = figure.axes[0].get_lines()
    assert len(lines) == 2
    assert list(lines[0].get_xdata()) == [0.25, 0.5, 0.75, 1.0]
    assert any("validation subset" in t.get_text() for legend in figure.legends for t in legend.get_texts())


# --- the baseline stop's still-falling rule, on curves bench/stop_rules.py measured -----------------

class _Job:
    baseline_name = "the unigram model"

    def baseline(self, prepared):
        return {"val_loss": 5.556}  # the unigram model on the whole validation split


def judge(after=0.5, spare_falling=0.5, max_epochs=0, deadline=None, started=None):
    baseline = _Baseline(_Job(), None, "val_loss", "min", after, subset_value=5.550, spare_falling=spare_falling,
                         max_epochs=max_epochs, deadline=deadline)
    baseline.start({"val_loss": 8.517, "val_on": "subset", "reported_at": started})  # the untrained model
    return baseline


def first_stop(baseline, reports, seconds_an_epoch=None, started=None):
    """The epoch of the first report the baseline stops, None if none: reports are (epoch, val_loss),
    made ``seconds_an_epoch`` apart from ``started`` if given (else timed by the clock)."""
    for epoch, value in reports:
        report = {"val_loss": value, "val_on": "full" if float(epoch).is_integer() else "subset"}
        if seconds_an_epoch is not None:
            report["reported_at"] = started + epoch * seconds_an_epoch
        if baseline.verdict(epoch, report):
            return epoch
    return None


# Measured (20,000 lyric sentences, vocabulary 5000; val_loss at 0.5, 1, 1.5, 2 epochs): learning
# rate 1e-2 at batch 512 (45 steps an epoch) sits on the unigram plateau for its first epoch, then
# leaves it and ends at 5.30, fifth of 12; 1e-5 at batch 512 never moves; 1e-4 at batch 64 has
# hardly left its start at half an epoch and ends above the baseline (5.60).
SLOW_STARTER = [(0.5, 5.714), (1, 5.736), (1.5, 5.576), (2, 5.561), (2.5, 5.328)]
FLAT = [(0.5, 8.517), (1, 8.516), (1.5, 8.516), (2, 8.516)]
PLATEAU_LATE = [(0.5, 8.071), (1, 6.248), (1.5, 5.802), (2, 5.674)]


def test_a_slow_starter_still_falling_is_spared_and_a_flat_one_stops_at_the_first_rung():
    assert first_stop(judge(), SLOW_STARTER) is None  # its shortfall fell from 2.97 to 0.16, then on
    assert first_stop(judge(), FLAT) == 0.5
    assert first_stop(judge(), PLATEAU_LATE) == 0.5  # fell 15% in half an epoch: 29% asked
    # Without the rule (spare_falling 0) the slow starter stops at the first rung, as before.
    assert first_stop(judge(spare_falling=0), SLOW_STARTER) == 0.5


def test_a_falling_slow_starter_is_spared_only_if_its_epochs_end_within_the_time_budget():
    t0 = 1_000_000.0  # the untrained model's report; then 60 s an epoch, 4 epochs at most
    # 3.5 epochs left at half an epoch: 210 s more, ending at t0 + 240; the budget ends at t0 + 300.
    in_time = judge(max_epochs=4, deadline=t0 + 300, started=t0)
    assert first_stop(in_time, SLOW_STARTER, seconds_an_epoch=60, started=t0) is None
    # The same trial when the budget ends at t0 + 200: stopped at its first rung, and told why.
    late = judge(max_epochs=4, deadline=t0 + 200, started=t0)
    assert first_stop(late, SLOW_STARTER[:1], seconds_an_epoch=60, started=t0) == 0.5
    reason = late.verdict(1, {"val_loss": 5.736, "val_on": "full", "reported_at": t0 + 60})
    assert reason.endswith("; it is still falling, but its 3 epochs left, at 60 s an epoch, "
                           "would end 40 s after the sweep's time budget")
    # A budget ending just as its fourth epoch would (t0 + 240): spared at every report.
    assert first_stop(judge(max_epochs=4, deadline=t0 + 240, started=t0), SLOW_STARTER,
                      seconds_an_epoch=60, started=t0) is None
    # A flat trial stops for being flat, whatever the time left; a better one never stops.
    assert first_stop(judge(max_epochs=4, deadline=t0 + 10_000, started=t0), FLAT,
                      seconds_an_epoch=60, started=t0) == 0.5
    assert first_stop(judge(max_epochs=4, deadline=t0 + 1, started=t0), [(0.5, 5.4), (1, 5.2)],
                      seconds_an_epoch=60, started=t0) is None
    # No deadline (no budget.max_minutes, or asha.spare_within_budget false): spared as before.
    assert first_stop(judge(max_epochs=4, deadline=None, started=t0), SLOW_STARTER,
                      seconds_an_epoch=60, started=t0) is None


def test_the_trials_get_the_deadline_of_the_sweeps_time_budget_and_none_without_one():
    from lstm_sweep.search.trainable import trial_arguments

    before = time.time()
    arguments = trial_arguments(parse_config({"budget": {"max_minutes": 5}}), sizer=None)
    assert before + 300 <= arguments["deadline"] <= time.time() + 300
    assert trial_arguments(parse_config({}), sizer=None)["deadline"] is None


def test_a_trial_on_the_plateau_stops_one_epoch_after_it_got_there():
    # At the baseline from epoch 1 on, no lower: 1.5 is compared with 0.5 (still falling), 2 with 1.
    baseline = judge()
    assert first_stop(baseline, [(0.5, 6.2), (1, 5.60), (1.5, 5.59)]) is None
    reason = baseline.verdict(2, {"val_loss": 5.60, "val_on": "full"})
    assert reason.startswith("val_loss 5.6000 after 2 epochs is no better than the unigram model (5.5560)")
    assert reason.endswith("fell by less than 50% of its distance to it in its last epoch")


def test_a_subset_report_is_compared_with_the_subsets_baseline_and_one_report_an_epoch_works_too():
    baseline = judge(after=1)
    assert baseline.verdict(0.5, {"val_loss": 5.553, "val_on": "subset"}) == ""  # in the grace period
    # 5.553 is above the subset's 5.550 but below the whole split's 5.556: better, on its own set.
    assert baseline.verdict(1.5, {"val_loss": 5.553, "val_on": "full"}) == ""
    once = judge(after=1)  # budget.reports_per_epoch 1: the first epoch's fall is measured from the start
    # shortfalls 0.144 (from 2.967: spared), 0.064 (from 0.144: 56%, spared), 0.044 (31%: stopped)
    assert first_stop(once, [(1, 5.70), (2, 5.62), (3, 5.60)]) == 3


# --- a real sweep: ASHA reads the in-epoch reports -------------------------------------------------

@pytest.mark.slow
def test_asha_stops_a_trial_before_its_first_epoch_ends(tmp_path, local_ray, tiny_sweep):
    from lstm_sweep.search.sweep import run_sweep

    # One at a time, so later trials meet the earlier ones' results at the first rung (a quarter
    # epoch); a learning rate of 1e-7 has learned nothing there. The baseline stop is off: what
    # stops a trial here is ASHA.
    # Random search with seed 11 proposes 3e-2 first, then 1e-7 twice (the only searched value).
    space = {"learning_rate": {"choice": [3e-2, 1e-7]}, "embedding_size": 8, "hidden_size": 8}
    config = tiny_sweep(tmp_path, space=space,
                        budget={"num_samples": 3, "max_epochs": 1, "max_concurrent": 1, "reports_per_epoch": 4},
                        asha={"grace_period": 0.25, "reduction_factor": 2, "stop_at_baseline": False},
                        searcher={"kind": "random", "seed": 11})
    run_sweep(config, name="run")
    run_dir = tmp_path / "run"
    trials = pd.read_csv(run_dir / "trials.csv")
    reports = {}
    for path in (run_dir / "ray").glob("*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        reports[lines[-1]["trial_id"]] = lines
    cut = trials[(trials.status == "early_stopped") & (trials.epochs == 0)]
    assert len(cut) == 2 and set(cut.learning_rate) == {1e-7}, trials[["trial_id", "status", "epochs", "learning_rate"]]
    for trial_id in cut.trial_id:
        last = reports[trial_id][-1]
        assert last["epoch"] < 1 and last["val_on"] == "subset" and last["outcome"] == ""  # ASHA's stop
        assert np.isnan(cut.set_index("trial_id").best_val_loss[trial_id])  # no full-validation value
    # Every finished trial reported a quarter, a half and three quarters, then the epoch's end.
    finished = trials[trials.status == "completed"]
    assert len(finished)
    for trial_id in finished.trial_id:
        assert [(r["epoch"], r["val_on"]) for r in reports[trial_id]] == [
            (0.25, "subset"), (0.5, "subset"), (0.75, "subset"), (1, "full")]
        assert "checkpoint_dir_name" in reports[trial_id][-1]  # checkpoints stay one an epoch
    curves = pd.read_csv(run_dir / "curves.csv")
    assert len(curves) == sum(len(r) for r in reports.values())
    assert set(curves.val_on) == {"subset", "full"} and set(curves.epoch) <= {0.25, 0.5, 0.75, 1.0}
    best = json.loads((run_dir / "best.json").read_text())
    full = curves[(curves.val_on == "full")]
    assert best["best_val_loss"] == pytest.approx(full.val_loss.min()) and best["best_epoch"] == 1
