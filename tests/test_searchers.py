"""The searcher and the scheduler, built from ``searcher.kind`` and ``scheduler.kind``: Ray Tune's own classes."""

import dataclasses

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule
from ray.tune.search.optuna import OptunaSearch

from lstm_sweep.errors import ConfigError
from lstm_sweep.search import searcher as searcher_module
from lstm_sweep.search.config import SchedulerSettings, SearcherSettings, load_config, parse_config
from lstm_sweep.search.searcher import ResumableOptunaSearch, make_scheduler, make_searcher

SEARCHED = {"hidden_size": {"choice": [8, 16]}, "learning_rate": {"loguniform": [1e-3, 1e-2]}}


def config_with(**sections):
    return parse_config({"budget": {"max_epochs": 8}, "asha": {"grace_period": 2, "reduction_factor": 3},
                         "space": SEARCHED} | sections)


def same_seed(sampler, seed: int) -> bool:
    """Whether an Optuna sampler's random state is the one ``seed`` starts."""
    return sampler._rng.rng.randint(2**30) == np.random.RandomState(seed).randint(2**30)


# --- defaults: today's TPE and ASHA ---------------------------------------------------------------

def test_the_defaults_are_tpe_and_asha():
    config = parse_config({})
    assert config.searcher.kind == "tpe" and config.scheduler.kind == "asha"


def test_the_factories_build_exactly_the_kinds_the_config_allows():
    assert tuple(searcher_module._SCHEDULERS) == SchedulerSettings.KINDS
    assert tuple(searcher_module._SAMPLERS) == SearcherSettings.KINDS


# --- schedulers -------------------------------------------------------------------------------------

def test_asha_gets_max_epochs_grace_period_and_reduction_factor():
    scheduler = make_scheduler(config_with(scheduler={"kind": "asha"}))
    assert isinstance(scheduler, ASHAScheduler)
    assert scheduler._time_attr == "epoch"  # the trainable's, fractional for in-epoch reports
    assert scheduler._max_t == 8 and scheduler._reduction_factor == 3
    assert len(scheduler._brackets) == 1
    assert [milestone for milestone, _ in scheduler._brackets[0]._rungs] == [6, 2]  # grace_period * 3**k < 8


def test_fifo_stops_nothing():
    assert type(make_scheduler(config_with(scheduler={"kind": "fifo"}))) is FIFOScheduler


def test_hyperband_gets_max_epochs_and_reduction_factor():
    scheduler = make_scheduler(config_with(scheduler={"kind": "hyperband"}))
    assert type(scheduler) is HyperBandScheduler
    assert scheduler._time_attr == "training_iteration"
    assert scheduler._max_t_attr == 8 and scheduler._eta == 3


def test_median_stopping_gets_the_grace_period():
    scheduler = make_scheduler(config_with(scheduler={"kind": "median"}))
    assert type(scheduler) is MedianStoppingRule
    assert scheduler._time_attr == "training_iteration" and scheduler._grace_period == 2
    assert scheduler._hard_stop  # stops, never pauses, a trial below the median


class _Trial:
    """What ASHA reads of a trial: its id."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def _asha_decisions(rejudge: bool, reports: list[tuple[str, float, float]],
                    reduction_factor: int = 2) -> list[tuple[str, float, str]]:
    """Feed ``(trial, epoch, val_loss)`` reports, in order, to the sweep's ASHA (rungs from 0.5
    epochs, ``reduction_factor`` apart: 0.5, 1, 2 by default); every decision, as
    ``(trial, epoch, decision)``, up to a trial's first STOP."""
    config = parse_config({"budget": {"max_epochs": 4, "reports_per_epoch": 2},
                           "asha": {"grace_period": 0.5, "reduction_factor": reduction_factor, "rejudge": rejudge},
                           "space": SEARCHED})
    scheduler = make_scheduler(config)
    scheduler.set_search_properties("val_loss", "min")
    trials = {name: _Trial(name) for name, *_ in reports}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    decisions, stopped = [], set()
    for name, epoch, loss in reports:
        if name in stopped:
            continue
        decision = scheduler.on_trial_result(None, trials[name], {"epoch": epoch, "val_loss": loss})
        decisions.append((name, epoch, decision))
        if decision == "STOP":
            stopped.add(name)
    return decisions


# A slow configuration starts first and is the first at each rung (its own cut-off); a better one
# reaches the rungs later; a third, worse than both, comes last.
FIRST_AT_EACH_RUNG = [("slow", 0.5, 6.0), ("slow", 1.0, 5.8), ("good", 0.5, 5.7), ("good", 1.0, 5.3),
                      ("slow", 1.5, 5.7), ("slow", 2.0, 5.6), ("good", 1.5, 5.1), ("good", 2.0, 4.9),
                      ("slow", 2.5, 5.5), ("worse", 0.5, 6.5), ("good", 2.5, 4.8)]


def test_asha_lets_the_first_trial_at_a_rung_go_on_however_it_compares_later():
    decisions = _asha_decisions(False, FIRST_AT_EACH_RUNG)
    assert ("slow", 2.5, "CONTINUE") in decisions  # worse than good at every rung, still running
    assert ("worse", 0.5, "STOP") in decisions


def test_asha_rejudging_stops_the_first_trial_once_a_better_one_reaches_its_rung():
    decisions = _asha_decisions(True, FIRST_AT_EACH_RUNG)
    assert isinstance(make_scheduler(config_with(asha={"rejudge": True})), searcher_module.RejudgingASHA)
    # slow passed rung 1 alone; good reached it with 5.3 against its 5.8, so slow's next report stops it.
    assert [d for d in decisions if d[0] == "slow"] == [("slow", 0.5, "CONTINUE"), ("slow", 1.0, "CONTINUE"),
                                                        ("slow", 1.5, "STOP")]
    assert all(d == "CONTINUE" for name, _, d in decisions if name == "good")  # the better half stays
    assert ("worse", 0.5, "STOP") in decisions  # a trial worse at its first rung stops as in ASHA


def test_asha_rejudging_keeps_the_better_half_not_only_the_best():
    # Four trials reach half an epoch in the order b, a, c, d, then a and b report again before the
    # next rung. With reduction factor 2 the rung's cut-off is the median of those there: b (5.9)
    # went on as the first, and is in the worse half once the others have come; a (5.5) is not.
    reports = [("b", 0.5, 5.9), ("a", 0.5, 5.5), ("c", 0.5, 5.6), ("d", 0.5, 5.7), ("a", 0.75, 5.4), ("b", 0.75, 5.8)]
    assert _asha_decisions(False, reports) == [("b", 0.5, "CONTINUE"), ("a", 0.5, "CONTINUE"), ("c", 0.5, "CONTINUE"),
                                               ("d", 0.5, "STOP"), ("a", 0.75, "CONTINUE"), ("b", 0.75, "CONTINUE")]
    assert _asha_decisions(True, reports)[-2:] == [("a", 0.75, "CONTINUE"), ("b", 0.75, "STOP")]


def test_asha_rejudging_never_stops_a_trial_at_the_report_that_got_it_past_its_rung():
    # Reduction factor 3: ASHA's cut-off is the 67th percentile of the others at the rung. A trial
    # that just met it must not then fail a cut-off that counts its own value in.
    reports = [("a", 0.5, 10.0), ("b", 0.5, 0.0), ("c", 0.5, 3.3)]  # c: 3.3 against the others' cut-off 3.33
    assert _asha_decisions(True, reports, reduction_factor=3) == [(name, 0.5, "CONTINUE") for name, *_ in reports]


def test_the_metric_and_mode_are_left_to_the_tuner():
    # TuneConfig(metric, mode) reaches every scheduler; one given twice would make Tune refuse.
    for kind in ("asha", "hyperband", "median"):
        scheduler = make_scheduler(config_with(scheduler={"kind": kind}))
        assert scheduler._metric is None and scheduler._mode is None


# --- searchers --------------------------------------------------------------------------------------

def test_tpe_is_today_s_optuna_search_with_its_study_in_the_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    searcher = make_searcher(config_with(searcher={"seed": 7, "n_startup_trials": 3}), run_dir)
    assert type(searcher) is ResumableOptunaSearch and isinstance(searcher, OptunaSearch)
    assert type(searcher._sampler) is optuna.samplers.TPESampler
    assert searcher._sampler._n_startup_trials == 3 and same_seed(searcher._sampler, 7)
    assert searcher._storage.url == f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
    assert searcher._study_name == "run"
    assert (run_dir / "optuna.db").is_file()


def test_random_is_optuna_s_random_sampler_with_the_same_study(tmp_path):
    searcher = make_searcher(config_with(searcher={"kind": "random", "seed": 5}), tmp_path)
    assert type(searcher) is ResumableOptunaSearch
    assert type(searcher._sampler) is optuna.samplers.RandomSampler and same_seed(searcher._sampler, 5)
    assert searcher._storage.url.endswith("/optuna.db") and searcher._study_name == tmp_path.name


@pytest.mark.parametrize("kind", ["tpe", "random"])
def test_nothing_searched_means_no_searcher(tmp_path, kind):
    # Tune's default generator then repeats the one config num_samples times.
    config = parse_config({"searcher": {"kind": kind}})
    assert config.searched() == []
    assert make_searcher(config, tmp_path) is None
    assert not (tmp_path / "optuna.db").exists()


def test_every_kind_survives_the_pickle_a_resume_reads_back(tmp_path):
    # Ray Tune keeps the searcher and the scheduler in tuner.pkl; resume_sweep unpickles them.
    import ray.cloudpickle as pickle

    for kind in SchedulerSettings.KINDS:
        scheduler = make_scheduler(config_with(scheduler={"kind": kind}))
        assert type(pickle.loads(pickle.dumps(scheduler))) is type(scheduler)
    for kind in SearcherSettings.KINDS:
        searcher = make_searcher(config_with(searcher={"kind": kind}), tmp_path)
        again = pickle.loads(pickle.dumps(searcher))
        assert type(again._sampler) is type(searcher._sampler) and again._storage.url == searcher._storage.url


def test_a_retried_trial_reports_its_steps_again_without_a_warning(tmp_path, recwarn):
    # A trial whose worker died starts again (resources.max_failures) and reports step 1 again:
    # Optuna would warn on the user's terminal; the first value stays.
    searcher = make_searcher(config_with(), tmp_path)
    searcher.set_search_properties("val_loss", "min", config_with().param_space())
    searcher.suggest("t1")
    for value in (3.0, 2.5):
        searcher.on_trial_result("t1", {"val_loss": value, "training_iteration": 1})
    assert [str(w.message) for w in recwarn if "already reported" in str(w.message)] == []
    assert searcher._ot_trials["t1"].study.trials[0].intermediate_values == {1: 3.0}


def test_optuna_holds_each_trial_s_best_full_validation_not_where_it_stopped(tmp_path):
    # The sweep ranks a trial by its best report on the whole validation split (trials.csv);
    # Ray's OptunaSearch would tell Optuna the last result: a later, worse epoch, or a value on
    # the validation subset where ASHA or the baseline stop ended a trial within an epoch.
    searcher = make_searcher(config_with(), tmp_path)
    searcher.set_search_properties("val_loss", "min", config_with().param_space())
    reports = {
        "overfit": [(0.5, "subset", 5.1), (1, "full", 4.8), (1.5, "subset", 4.7), (2, "full", 4.9)],
        "stopped within its second epoch": [(1, "full", 5.0), (1.25, "subset", 4.85)],
        "stopped at a quarter epoch": [(0.25, "subset", 5.6)],
        "diverged after an epoch": [(1, "full", 5.2), (2, "full", float("nan"))],
        "best at its last epoch, where ASHA stopped it": [(1, "full", 5.0), (2, "full", 4.6)],
    }
    for name, results in reports.items():
        searcher.suggest(name)
        for iteration, (epoch, val_on, value) in enumerate(results, 1):
            last = {"val_loss": value, "epoch": epoch, "val_on": val_on, "training_iteration": iteration}
            if iteration < len(results):  # as Tune does: the result a scheduler stops the trial at
                searcher.on_trial_result(name, last)  # goes to on_trial_complete alone
        searcher.on_trial_complete(name, last)
    told = {t.number: t.value for t in searcher._ot_study.trials}
    assert told == {0: 4.8, 1: 5.0, 2: 5.6, 3: 5.2, 4: 4.6}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in searcher._ot_study.trials)
    assert searcher._best_full() == {}  # nothing kept past a trial's end
    # An errored trial is still a failure, whatever it reported before.
    searcher.suggest("errored")
    searcher.on_trial_result("errored", {"val_loss": 4.5, "val_on": "full", "training_iteration": 1})
    searcher.on_trial_complete("errored", None, error=True)
    assert searcher._ot_study.trials[-1].state == optuna.trial.TrialState.FAIL


# --- searcher.startup: cheap start-up trials ----------------------------------------------------------

SIZES = {"embedding_size": {"logint": [16, 256]}, "hidden_size": {"logint": [32, 512]},
         "num_layers": {"int": [1, 2]}, "learning_rate": {"loguniform": [1e-4, 1e-2]},
         "batch_size": {"choice": [64, 512]}, "dropout": 0.1}


def sized(run_dir, startup, n_startup=4, seed=0, warm_start=None):
    """A TPE searcher over ``SIZES`` as a sweep sets it up, and the sizer its cost is read with."""
    from lstm_sweep.search.resources import TrialSizer

    run_dir.mkdir(exist_ok=True)
    config = parse_config({"space": SIZES, "searcher": {"seed": seed, "n_startup_trials": n_startup,
                                                        "startup": startup}})
    sizer = TrialSizer(vocab_size=5000, seq_len=14, host_budget_bytes=2**32)
    searcher = make_searcher(config, run_dir, warm_start, sizer)
    searcher.set_search_properties("val_loss", "min", config.param_space())
    return searcher, sizer


def work(sizer, params):
    from lstm_sweep.model.memory import training_work_per_token

    return training_work_per_token(sizer.spec({"dropout": 0.1, **params}))


def test_cheap_start_up_trials_are_each_the_cheapest_of_a_pool_and_then_tpe_proposes(tmp_path):
    searcher, sizer = sized(tmp_path / "cheap", "cheap")
    design = searcher._cheap_start.design(searcher._space)
    first = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [{k: c[k] for k in design[0]} for c in first] == design  # enqueued, in order
    study = searcher._ot_study
    assert [t.user_attrs.get(searcher_module.CHEAP_ATTR) for t in study.trials] == ["cheap"] * 4
    fifth = searcher.suggest("t4")  # nothing enqueued any more: TPE's own proposal
    assert searcher_module.CHEAP_ATTR not in study.trials[4].user_attrs and fifth not in first

    # Each is the cheapest of its pool, so the design costs less than draws at random do.
    random, _ = sized(tmp_path / "random", "random")
    drawn = [random.suggest(f"t{i}") for i in range(4)]
    assert random._cheap_start is None and not any(t.user_attrs for t in random._ot_study.trials)
    assert sum(work(sizer, c) for c in first) < 0.5 * sum(work(sizer, c) for c in drawn)
    for seed in range(5):  # and for every seed: the median of 4 cheapest-of-4 below the median of 16 draws
        cheap, _ = sized(tmp_path / f"cheap{seed}", "cheap", seed=seed)
        design = cheap._cheap_start.design(cheap._space)
        random, _ = sized(tmp_path / f"r{seed}", "random", seed=seed)
        drawn = [random.suggest(f"t{i}") for i in range(16)]
        assert np.median([work(sizer, c) for c in design]) < np.median([work(sizer, c) for c in drawn])


def test_the_cheap_design_is_seeded_and_its_own_stream(tmp_path):
    one, _ = sized(tmp_path / "a", "cheap", seed=3)
    two, _ = sized(tmp_path / "b", "cheap", seed=3)
    other, _ = sized(tmp_path / "c", "cheap", seed=4)
    assert one._cheap_start.design(one._space) == two._cheap_start.design(two._space)
    assert one._cheap_start.design(one._space) != other._cheap_start.design(other._space)
    # TPE's random start-up, seeded by the same searcher.seed, never repeats a cheap trial.
    design = one._cheap_start.design(one._space)
    tpe, _ = sized(tmp_path / "d", "random", seed=3)
    assert not any(tpe.suggest(f"t{i}") in design for i in range(8))


def test_a_resumed_or_warm_started_study_gets_only_the_start_up_trials_it_lacks(tmp_path):
    searcher, sizer = sized(tmp_path / "run", "cheap", n_startup=3)
    study = searcher._ot_study
    assert len(study.trials) == 3
    searcher._cheap_start.apply(study, searcher._space)  # a resume sets the study up again
    assert len(study.trials) == 3

    from lstm_sweep.search.warmstart import CarriedTrial, WarmStart

    carried = CarriedTrial(params={"embedding_size": 64, "hidden_size": 128, "num_layers": 1,
                                   "learning_rate": 1e-3, "batch_size": 64}, state="complete", value=5.0,
                           intermediate={1: 5.0}, source="runs/earlier")
    warm, _ = sized(tmp_path / "warm", "cheap", n_startup=3, warm_start=WarmStart(trials=(carried, carried)))
    attrs = [t.user_attrs for t in warm._ot_study.trials]
    assert len(attrs) == 3 and attrs[2] == {searcher_module.CHEAP_ATTR: "cheap"}


def test_a_cheap_start_survives_the_pickle_a_resume_reads_back(tmp_path):
    import ray.cloudpickle as pickle

    searcher, _ = sized(tmp_path / "run", "cheap")
    again = pickle.loads(pickle.dumps(searcher))
    assert again._cheap_start == searcher._cheap_start


def test_training_work_ranks_models_as_their_epochs_cost():
    from lstm_sweep.model.memory import training_work_per_token
    from lstm_sweep.model.spec import ModelSpec

    base = ModelSpec(vocab_size=5000, embedding_size=32, hidden_size=64)
    assert training_work_per_token(base.replace(hidden_size=512)) > 8 * training_work_per_token(base)
    assert training_work_per_token(base.replace(num_layers=2)) > training_work_per_token(base)
    assert training_work_per_token(base.replace(embedding_size=256)) > training_work_per_token(base)
    # The batch changes only the optimizer's share; a classifier's head runs once an example.
    assert training_work_per_token(base.replace(batch_size=512)) < training_work_per_token(base)
    assert training_work_per_token(base.replace(batch_size=512)) > 0.95 * training_work_per_token(base)
    classifier = base.replace(num_classes=2, seq_len=128)
    assert training_work_per_token(classifier) < training_work_per_token(base) / 10


# --- bad kinds: one line naming the key and what is allowed ------------------------------------

@pytest.mark.parametrize("raw, message", [
    ({"scheduler": {"kind": "pbt"}}, r"sweep.yaml: scheduler.kind: 'pbt' must be one of asha, fifo, hyperband, median$"),
    ({"scheduler": {"kind": "bohb"}}, r"scheduler.kind: 'bohb' must be one of"),
    ({"searcher": {"kind": "cmaes"}}, r"sweep.yaml: searcher.kind: 'cmaes' must be one of tpe, random$"),
    ({"searcher": {"kind": "bohb"}, "space": SEARCHED}, r"searcher.kind: 'bohb' must be one of tpe, random"),
    ({"scheduler": {"kind": "ASHA"}}, r"scheduler.kind: 'ASHA' must be one of"),  # names are lower case
    ({"scheduler": {"type": "asha"}}, r"unknown key scheduler.type: expected one of kind"),
    ({"scheduler": "asha"}, r"scheduler: must be a mapping"),
    ({"searcher": {"startup": "fast"}}, r"sweep.yaml: searcher.startup: 'fast' must be one of random, cheap$"),
    ({"searcher": {"kind": "random", "startup": "cheap"}}, r"searcher.startup: 'cheap' must be random with "
     r"searcher.kind random \(it draws every trial at random\)"),
    ({"scheduler": {"kind": "median"}, "asha": {"rejudge": True}},
     r"sweep.yaml: asha.rejudge: True must be false with scheduler.kind median: re-judging is ASHA's$"),
])
def test_a_bad_kind_is_a_config_error_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, source="sweep.yaml")


def test_the_factories_refuse_a_kind_built_by_hand(tmp_path):
    config = config_with()
    with pytest.raises(ConfigError, match="scheduler.kind: 'pbt' must be one of asha, fifo"):
        make_scheduler(dataclasses.replace(config, scheduler=SchedulerSettings(kind="pbt")))
    with pytest.raises(ConfigError, match="searcher.kind: 'grid' must be one of tpe, random"):
        make_searcher(dataclasses.replace(config, searcher=SearcherSettings(kind="grid")), tmp_path)


# --- sweep.yaml round trip -------------------------------------------------------------------------

def test_the_kinds_round_trip_through_sweep_yaml(tmp_path):
    config = config_with(searcher={"kind": "random", "seed": 2}, scheduler={"kind": "median"})
    raw = config.to_dict()
    assert raw["searcher"] == {"kind": "random", "seed": 2, "n_startup_trials": 4, "startup": "random"}
    assert raw["scheduler"] == {"kind": "median"}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))  # as run_sweep writes it
    assert load_config(path) == config
    # --set scheduler.kind=hyperband on the command line goes through the same mechanism.
    assert config.with_overrides(**{"scheduler.kind": "hyperband"}).scheduler.kind == "hyperband"


def test_an_old_sweep_yaml_without_the_kinds_reads_as_tpe_and_asha():
    raw = parse_config({"space": SEARCHED}).to_dict()
    del raw["scheduler"], raw["searcher"]["kind"]
    config = parse_config(raw)
    assert config.scheduler.kind == "asha" and config.searcher.kind == "tpe"


def test_quick_yaml_names_the_defaults():
    config = load_config("sweeps/quick.yaml")
    assert config.searcher.kind == "tpe" and config.scheduler.kind == "asha"


# --- one real sweep -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_random_search_without_early_stopping_runs_every_trial_to_the_end(tmp_path, local_ray, tiny_sweep):
    from lstm_sweep.search.sweep import run_sweep

    config = tiny_sweep(tmp_path, samples=2, epochs=2, searcher={"kind": "random", "seed": 3},
                        scheduler={"kind": "fifo"},
                        # the baseline stop is the trainable's, not the scheduler's: off, so nothing stops
                        asha={"grace_period": 1, "reduction_factor": 2, "stop_at_baseline": False})
    outcome = run_sweep(config, name="run")
    run_dir = tmp_path / "run"
    assert not outcome.interrupted
    assert load_config(run_dir / "sweep.yaml") == config

    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 2 and set(trials.status) == {"completed"} and set(trials.epochs) == {2}
    # Random proposals land in the same Optuna study as TPE's would.
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert len(study.trials) == 2
    assert sorted(t.params["learning_rate"] for t in study.trials) == pytest.approx(sorted(trials.learning_rate))


@pytest.mark.slow
def test_a_hyperband_sweep_that_ran_to_its_end_is_not_an_interruption(tmp_path, local_ray, tiny_sweep):
    """HyperBand ends the trials it paused at a milestone without another report (their last
    ``done`` stays false): the sweep's end is read from Ray's trial statuses instead."""
    from lstm_sweep.search.sweep import run_sweep

    config = tiny_sweep(tmp_path, samples=4, epochs=3, scheduler={"kind": "hyperband"},
                        asha={"grace_period": 1, "reduction_factor": 3, "stop_at_baseline": False})
    outcome = run_sweep(config, name="run")
    assert not outcome.interrupted
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert len(trials) == 4 and set(trials.status) <= {"completed", "early_stopped"}


@pytest.mark.slow
def test_a_sweep_with_a_cheap_start_runs_its_cheap_trials_first(tmp_path, local_ray, tiny_sweep):
    from lstm_sweep.search.sweep import run_sweep

    config = tiny_sweep(tmp_path, samples=3, epochs=1, searcher={"seed": 3, "n_startup_trials": 2, "startup": "cheap"},
                        space={"hidden_size": {"choice": [8, 24, 64]}})
    outcome = run_sweep(config, name="run")
    assert not outcome.interrupted
    run_dir = tmp_path / "run"
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    cheap = [t for t in study.trials if t.user_attrs.get(searcher_module.CHEAP_ATTR) == "cheap"]
    assert len(study.trials) == 3 and len(cheap) == 2
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3
    # The cheap ones are the trials the sweep ran, with the values the design chose.
    ran = {(int(r.embedding_size), int(r.hidden_size), round(r.learning_rate, 9)) for r in trials.itertuples()}
    assert {(t.params["embedding_size"], t.params["hidden_size"], round(t.params["learning_rate"], 9))
            for t in cheap} <= ran
