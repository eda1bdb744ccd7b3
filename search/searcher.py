"""The searcher and the scheduler of a sweep, built from its config: Ray Tune's own classes.

``searcher.kind`` says how configurations are proposed, ``scheduler.kind`` how trials are
stopped early; the ``asha`` section holds the knobs the schedulers share::

    searcher.kind   tpe (default)    OptunaSearch + TPESampler(seed, n_startup_trials)   study in optuna.db
                    random           OptunaSearch + RandomSampler(seed)                   study in optuna.db
    searcher.startup random (default) TPE's start-up trials are its own random draws
                    cheap            each start-up trial the cheapest of CHEAP_POOL draws (CheapStart)
    scheduler.kind  asha (default)   ASHAScheduler(max_t=max_epochs, grace_period, reduction_factor)
                    fifo             FIFOScheduler: no early stopping
                    hyperband        HyperBandScheduler(max_t=max_epochs, reduction_factor)
                    median           MedianStoppingRule(grace_period)

Each counts time in epochs: ASHA the trainable's ``epoch``, fractional for its in-epoch reports
(``budget.reports_per_epoch``); HyperBand and the median rule, which take one report an epoch,
Tune's ``training_iteration``.

Not offered, on purpose: PBT, whose exploit step restarts a trial from another's checkpoint
with perturbed values: our checkpoint is the whole Keras model (layers, dropout, optimizer and
its learning rate) with the batch size beside it, so the new values would never take effect.
BOHB (``TuneBOHB`` + ``HyperBandForBOHB``): it needs ``hpbandster`` and ``ConfigSpace``, which
are not among our dependencies, and it leaves trials paused at the end of a sweep whose
``num_samples`` does not fill its brackets.

The study in ``RUN_DIR/optuna.db`` is what ``optuna-dashboard sqlite:///RUN_DIR/optuna.db``
shows while the sweep runs and after it, each finished trial with the value the sweep ranks
it by (its best on the whole validation split, trials.csv's ``best_val_loss``). Ray Tune still
owns the searcher's state for a resume: it pickles the searcher (the storage reconnects by its
URL) with every experiment checkpoint.

Its own module so that ``ResumableOptunaSearch`` can be unpickled from ``tuner.pkl`` when a sweep resumes.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from lstm_sweep.errors import ConfigError
from lstm_sweep.results.records import VAL_ON

if TYPE_CHECKING:
    from lstm_sweep.search.config import SweepConfig
    from lstm_sweep.search.resources import TrialSizer
    from lstm_sweep.search.warmstart import WarmStart

log = logging.getLogger("lstm_sweep.search")

STUDY_FILE = "optuna.db"
CHEAP_POOL = 4  # random draws a cheap start-up trial is the cheapest of
CHEAP_ATTR = "startup"  # the user attribute of an Optuna trial the cheap start-up design enqueued


@dataclass(frozen=True)
class CheapStart:
    """TPE's start-up trials drawn cheap (``searcher.startup: cheap``): each is the cheapest to
    train of :data:`CHEAP_POOL` random draws from the space, by the training work per token of
    its model (``model.memory.training_work_per_token``, with the sweep's fixed settings).

    Why: a random start-up trial at hidden 350 and two layers costs five to ten times the epoch of
    one at hidden 60, and under a wall-clock budget of a few epochs a trial, the first expensive
    draws are most of the budget before TPE has a model (BENCHMARKS.md, issue 15). A cost-aware
    initial design (Lee et al., "Cost-aware Bayesian Optimization", arXiv 2020) spends the
    start-up on cheap points; the cheapest of 4 lies at the 20th percentile of cost on average,
    and the draws still spread over the space, and over every parameter the cost does not depend
    on (learning rate, dropout) at random. TPE's prior, and its proposals after the start-up,
    still reach the expensive part.

    Enqueued into the study when it is set up, up to ``count`` start-up trials in all (what a
    warm start carried or enqueued counts), so a resumed sweep, whose study has them, gets none twice.
    """

    sizer: TrialSizer
    fixed: dict  # the space's fixed values, which a trial's model also takes
    count: int
    seed: int

    def apply(self, study: optuna.Study, distributions: dict[str, optuna.distributions.BaseDistribution]) -> None:
        missing = self.count - len(study.get_trials(deepcopy=False))
        if missing <= 0:
            return
        for params in self.design(distributions)[:missing]:
            study.enqueue_trial(params, user_attrs={CHEAP_ATTR: "cheap"})

    def design(self, distributions: dict[str, optuna.distributions.BaseDistribution]) -> list[dict]:
        """``count`` configurations, each the cheapest of ``CHEAP_POOL`` draws of Optuna's own
        ``RandomSampler``, seeded by a stream of its own: the same sweep draws the same design, and
        TPE's own random draws (seeded by ``searcher.seed``) are other draws, not the design's again."""
        import numpy as np

        from lstm_sweep.model.memory import training_work_per_token

        seed = int(np.random.SeedSequence([self.seed, CHEAP_POOL]).generate_state(1)[0])
        draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        pools = [[draws.ask(fixed_distributions=distributions).params for _ in range(CHEAP_POOL)]
                 for _ in range(self.count)]
        return [min(pool, key=lambda params: training_work_per_token(self.sizer.spec({**self.fixed, **params})))
                for pool in pools]


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that lets a trial report again after its study trial has finished.

    After the driver is killed, the SQLite study can be ahead of the searcher state that Ray
    Tune checkpointed (every 10 s or so): a trial that finished in between is resumed from its
    checkpoint, and its next report would raise ``UpdateFinishedTrialError`` in Optuna and
    stop the whole sweep. The study already holds that trial's result; the report is dropped.

    ``warm_start`` (:class:`search.warmstart.WarmStart`) puts earlier sweeps' trials into the
    study when it is set up, with the distributions built from the Tune space, once: a resumed
    sweep sets its study up again, and finds them there.
    """

    def __init__(self, *args, warm_start: WarmStart | None = None, cheap_start: CheapStart | None = None, **kwargs):
        self._warm_start = warm_start
        self._cheap_start = cheap_start
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode) -> None:
        super()._setup_study(mode)
        # Each None in a searcher pickled before it existed. The warm start first: what it
        # carries counts among the start-up trials.
        for design in (getattr(self, "_warm_start", None), getattr(self, "_cheap_start", None)):
            if design is not None:
                design.apply(self._ot_study, self._space)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._keep_best(trial_id, result)
        try:
            with warnings.catch_warnings():
                # A trial Tune retried after its worker died (resources.max_failures) reports
                # its steps again from its last checkpoint, or from the start; Optuna keeps the
                # first value of a step and warns on the user's terminal. Nothing is lost: the
                # intermediate values are for Optuna's pruners, and Tune's scheduler stops trials here.
                warnings.filterwarnings("ignore", message=r"The reported value is ignored because this `step=",
                                        category=UserWarning)
                super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.debug("trial %s: its Optuna trial has already finished; report not recorded", trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Optuna the value the sweep ranks the trial by: its best report on the whole
        validation split (``val_on: full``; ``results.records.best_value``, trials.csv's figure),
        not Ray's last result. The last is where the trial stopped: a value on the validation
        subset when ASHA, the baseline stop or the budget ended it within an epoch, or a later,
        worse epoch than its best. A trial with no full validation is told its last value.

        The result ASHA stops a trial at (its last rung, or ``max_epochs``) reaches the searcher
        only here: Tune calls ``on_trial_result`` only for a trial that goes on."""
        if result:
            self._keep_best(trial_id, result)
        best = self._best_full().pop(trial_id, None)
        if result and not error and best is not None and isinstance(self.metric, str):
            result = {**result, self.metric: best}
        super().on_trial_complete(trial_id, result, error)

    def _keep_best(self, trial_id: str, result: dict) -> None:
        if not isinstance(self.metric, str) or str(result.get(VAL_ON)) == "subset":
            return  # an in-epoch report: not a full validation (results.records.full_validation)
        value = result.get(self.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        best = self._best_full().get(trial_id)
        if best is None or (value < best if self.mode == "min" else value > best):
            self._best_full()[trial_id] = float(value)

    def _best_full(self) -> dict[str, float]:
        """Each running trial's best full-validation value (kept in the pickle a resume reads;
        absent from a searcher pickled before it existed)."""
        if getattr(self, "_best_full_values", None) is None:
            self._best_full_values: dict[str, float] = {}
        return self._best_full_values


def make_searcher(config: SweepConfig, run_dir: str | Path, warm_start: WarmStart | None = None,
                  sizer: TrialSizer | None = None) -> Searcher | None:
    """The searcher ``config.searcher.kind`` names, seeded by ``searcher.seed``.

    - ``tpe``: the Tree-structured Parzen Estimator (Bergstra, Bardenet, Bengio and Kégl,
      "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011), Optuna's ``TPESampler``:
      ``n_startup_trials`` random proposals, then each one where a density model of the good
      results beats that of the bad.
    - ``random``: random search (Bergstra and Bengio, JMLR 2012), Optuna's ``RandomSampler``
      through the same ``OptunaSearch`` rather than Tune's ``BasicVariantGenerator``: the run
      folder keeps its ``optuna.db`` (optuna-dashboard shows a random sweep beside a TPE one)
      and a resume goes on the same way.

    The Optuna study lives in ``run_dir/optuna.db``, named after the run folder. With every
    value fixed there is nothing to search: None, and Tune's default generator repeats the one
    config ``num_samples`` times (seeds aside, a repeatability check).

    ``warm_start`` (``search.warmstart.plan_warm_start``) gives the study earlier sweeps' trials,
    with their results or to run first, when the Tuner starts (``--warm-start RUN_DIR``).
    ``sizer`` (``search.resources.TrialSizer``) builds a trial's model spec: with
    ``searcher.startup: cheap`` TPE's start-up trials are drawn cheap (:class:`CheapStart`).

    Example:
        >>> from lstm_sweep.search.config import parse_config
        >>> config = parse_config({"searcher": {"kind": "random", "seed": 3},
        ...                        "space": {"hidden_size": {"choice": [32, 64]}}})
        >>> make_searcher(config, "runs/demo")  # creates runs/demo/optuna.db  # doctest: +SKIP
        <lstm_sweep.search.searcher.ResumableOptunaSearch object at 0x...>
    """
    if not config.searched():
        return None
    settings = config.searcher
    _check_kind("searcher.kind", settings.kind, tuple(_SAMPLERS))
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial is noise
    path = (Path(run_dir) / STUDY_FILE).resolve()  # absolute: the URL is kept as given
    cheap_start = None
    if settings.kind == "tpe" and settings.startup == "cheap" and sizer is not None:
        cheap_start = CheapStart(sizer, config.fixed(), settings.n_startup_trials, settings.seed)
    return ResumableOptunaSearch(
        sampler=_SAMPLERS[settings.kind](settings),
        storage=optuna.storages.RDBStorage(f"sqlite:///{path}"),
        study_name=Path(run_dir).name,
        warm_start=warm_start,
        cheap_start=cheap_start,
    )


_SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": lambda s: optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials),
    "random": lambda s: optuna.samplers.RandomSampler(seed=s.seed),
}


def make_scheduler(config: SweepConfig) -> TrialScheduler:
    """The trial scheduler ``config.scheduler.kind`` names, with its knobs from ``config.asha``.

    Time is counted in epochs: for ASHA the reported ``epoch`` (0.25, 0.5, ... for in-epoch
    reports: ``grace_period`` may be a fraction), for the others ``training_iteration`` (they take
    one report an epoch: ``search.config`` refuses more); metric and mode come from the Tuner.
    Epochs, not optimizer steps or seconds: replayed on measured curves (bench/stop_rules.py,
    BENCHMARKS.md), ASHA counting steps stopped the best configuration more often and spared
    big batches no more, and seconds depend on what else the machine runs.

    - ``asha``: Asynchronous Successive Halving (Li et al., "A System for Massively Parallel
      Hyperparameter Tuning", arXiv 2018, MLSys 2020): from ``grace_period`` epochs on, at
      rungs ``reduction_factor`` times apart up to ``budget.max_epochs``, a trial not in the
      best ``1/reduction_factor`` of those that reached the rung stops. With ``asha.rejudge``,
      :class:`RejudgingASHA`: a running trial is judged again at its rung as later trials reach it.
    - ``fifo``: every trial runs to ``max_epochs`` (the baseline stop aside).
    - ``hyperband``: HyperBand (Li et al., "Hyperband: A Novel Bandit-Based Approach to
      Hyperparameter Optimization", ICLR 2017, JMLR 2018): successive halving over brackets
      of different starting budgets, synchronous: a trial pauses at each milestone until its
      bracket's others get there, and resumes from its checkpoint. With ``max_concurrent``
      below a bracket's size it halves less (ASHA, its asynchronous successor, does not wait).
    - ``median``: the median stopping rule (Golovin et al., "Google Vizier: A Service for
      Black-Box Optimization", KDD 2017): after ``grace_period`` epochs, a trial whose best
      result is worse than the median of the others' running averages stops. It needs 3
      others to compare with (Ray's default); until then it may pause a trial so that waiting
      ones run.

    The baseline stop (``asha.stop_at_baseline``) is the trainable's, whatever the scheduler.

    Example:
        >>> from lstm_sweep.search.config import parse_config
        >>> config = parse_config({"scheduler": {"kind": "hyperband"}, "asha": {"reduction_factor": 3}})
        >>> make_scheduler(config)  # doctest: +ELLIPSIS
        <ray.tune.schedulers.hyperband.HyperBandScheduler object at 0x...>
    """
    kind = config.scheduler.kind
    _check_kind("scheduler.kind", kind, tuple(_SCHEDULERS))
    return _SCHEDULERS[kind](config.budget.max_epochs, config.asha)


_EPOCHS = "training_iteration"  # one report per epoch, so Tune's iteration count is the epoch count
_PROGRESS = "epoch"  # the trainable's epoch: fractional for an in-epoch report (search.trainable)
_SCHEDULERS: dict[str, Callable[..., TrialScheduler]] = {
    "asha": lambda max_epochs, asha: (RejudgingASHA if asha.rejudge else ASHAScheduler)(
        time_attr=_PROGRESS, max_t=max_epochs, grace_period=asha.grace_period,
        reduction_factor=asha.reduction_factor),
    "fifo": lambda max_epochs, asha: FIFOScheduler(),
    "hyperband": lambda max_epochs, asha: HyperBandScheduler(time_attr=_EPOCHS, max_t=max_epochs,
                                                             reduction_factor=asha.reduction_factor),
    "median": lambda max_epochs, asha: MedianStoppingRule(time_attr=_EPOCHS, grace_period=asha.grace_period),
}


class RejudgingASHA(ASHAScheduler):
    """Ray Tune's ASHA whose promotions are not final (``asha.rejudge``).

    ASHA lets a trial past a rung when it is in the best ``1/reduction_factor`` of the trials
    that reached the rung before it, so the first trial to reach a rung is its own cut-off and
    always goes on. Li et al. accept such mispromotions as the price of never waiting; with a
    handful of trials under a wall-clock budget they are most of the decisions, and a slow
    configuration that is first at every rung holds its slot for the whole budget
    (BENCHMARKS.md, issue 15: a 2-layer hidden-512 model that ran 280 of 300 s). Here every
    report of a running trial also judges it again at the highest rung it passed, by ASHA's own
    rule, against all the other trials that have reached that rung, and stops it when it is now in
    the worse part: the decision synchronous successive halving would make, taken as soon as the
    rung holds the trials to make it. Each trial is still compared at the same progress (its value at the rung).

    Example:
        >>> scheduler = RejudgingASHA(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
        >>> scheduler.set_search_properties("val_loss", "min")
        True
    """

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.CONTINUE or trial.trial_id not in self._trial_info:
            return action
        bracket = self._trial_info[trial.trial_id]
        recorded = next((r for _, r in bracket._rungs if trial.trial_id in r), {})  # highest milestone first
        # ASHA's own rule, again: the trial against the others at its rung, as they stand now.
        cutoff = bracket.cutoff({other: value for other, value in recorded.items() if other != trial.trial_id})
        if cutoff is not None and recorded[trial.trial_id] < cutoff:  # Ray's sign: higher is better
            self._num_stopped += 1
            return TrialScheduler.STOP
        return action


def _check_kind(key: str, kind: str, known: tuple[str, ...]) -> None:
    """``parse_config`` refuses an unknown kind already; this guards a config built by hand."""
    if kind not in known:
        raise ConfigError(f"{key}: {kind!r} must be one of {', '.join(known)}")
