"""The searcher and the scheduler of a sweep, built from its config: Ray Tune's own classes.

``searcher.kind`` says how configurations are proposed, ``scheduler.kind`` how trials are
stopped early; the ``asha`` section holds the knobs the schedulers share::

    searcher.kind   tpe (default)    OptunaSearch + TPESampler(seed, n_startup_trials)   study in optuna.db
                    random           OptunaSearch + RandomSampler(seed)                   study in optuna.db
    searcher.startup random (default) TPE's start-up trials are its own random draws
                    cheap            each start-up trial the cheapest of CHEAP_POOL draws (CheapStart)
    scheduler.kind  asha (default)   ASHAScheduler(max_t=max_epochs, grace_period, reduction_factor)
                                     asha.progress seconds: time_attr train_seconds, grace_seconds
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
shows while the sweep runs and after it. Ray Tune still owns the searcher's state for a
resume: it pickles the searcher (the storage reconnects by its URL) with every experiment
checkpoint.

Its own module so that ``ResumableOptunaSearch`` can be unpickled from ``tuner.pkl`` when a sweep resumes.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from lstm_sweep.errors import ConfigError

if TYPE_CHECKING:
    from lstm_sweep.search.config import SweepConfig
    from lstm_sweep.search.resources import TrialSizer
    from lstm_sweep.search.warmstart import WarmStart

log = logging.getLogger("lstm_sweep.search")

STUDY_FILE = "optuna.db"
CHEAP_POOL = 4  # random draws a cheap start-up trial is the cheapest of
OPTUNA_GOOD_SHARE = 0.1  # the share of trials Optuna's TPE counts as good (its default_gamma)
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


class SweepTPE(optuna.samplers.TPESampler):
    """Optuna's TPE with two changes for a sweep of few, long, asynchronous trials under ASHA
    (``searcher.compare: same_progress``, ``searcher.good_share``); Optuna's ``TPESampler`` otherwise.

    TPE splits the trials into a good few and the rest, and proposes where a density model of the
    good beats that of the bad (Bergstra, Bardenet, Bengio and Kégl, NeurIPS 2011). Two things make
    that split weak in a sweep of ten trials (BENCHMARKS.md, issue 15):

    - **What it compares** (``same_progress``). As Ray's ``OptunaSearch`` tells it, a trial ASHA
      stopped is COMPLETE with its value from half an epoch in, and a running trial counts as the
      worst of all (Optuna's constant liar, which keeps parallel proposals apart). With two trials
      at a time and epochs of a minute, the most promising trial is often a running one. Here every
      trial that has reported is ranked by its value at the deepest report that at least
      ``gamma(n) + 1`` trials reached (``training_iteration``: the same point of training for every
      trial of a sweep), or at its last report if it stopped or is still running short of it, as
      successive halving compares them (BOHB, Falkner, Klein and Hutter, ICML 2018, models the largest
      budget with enough results in the same spirit). A running trial with no report yet stays the
      constant liar's worst; the trials a warm start carried keep their own state and value.
    - **How many are good** (``good_share``). Optuna's ``gamma`` takes the best 10% (rounded up):
      one trial until there are eleven, and a density of one point and the prior proposes nearly at
      random. Hyperopt's TPE takes 25%. ``gamma(n) = min(ceil(good_share * n), 25)``.

    The start-up (random) trials, the candidates and the acquisition are TPE's own.

    Example:
        >>> sampler = SweepTPE(seed=0, n_startup_trials=4, same_progress=True, good_share=0.25)
        >>> study = optuna.create_study(sampler=sampler)  # then study.ask() / tell() as with TPESampler
    """

    def __init__(self, *, same_progress: bool = True, good_share: float = 0.1, **kwargs):
        if not 0 < good_share <= 1:
            raise ValueError(f"good_share={good_share} must be in (0, 1]: the share of trials TPE counts as good")
        super().__init__(**kwargs)
        self._same_progress, self._good_share = same_progress, good_share
        # Optuna deprecated TPESampler's gamma argument (4.9); the attribute is what _sample reads.
        self._gamma = functools.partial(_good_count, good_share)

    def _sample(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                search_space: dict[str, optuna.distributions.BaseDistribution]) -> dict:
        if self._same_progress:
            study = _AtSameProgress(study, self._gamma)
        return super()._sample(study, trial, search_space)


def _good_count(share: float, n: int) -> int:
    """How many of ``n`` trials TPE counts as good: Optuna's ``default_gamma`` with ``share`` for its 0.1."""
    return min(math.ceil(share * n), 25)


class _AtSameProgress:
    """A study as :class:`SweepTPE` shows it to TPE: its trials, each scored at a common report."""

    def __init__(self, study: optuna.Study, gamma: Callable[[int], int]):
        self._study, self._gamma = study, gamma

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = False, states=None, use_cache: bool = False):
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return same_progress_view(trials, self._gamma)


def same_progress_view(trials: list[optuna.trial.FrozenTrial],
                       gamma: Callable[[int], int]) -> list[optuna.trial.FrozenTrial]:
    """``trials`` with each one that reported (and was not carried by a warm start) turned into a
    COMPLETE trial whose value is its report at the deepest step at least ``gamma(n) + 1`` of them
    reached, or its last report before that; the others as they are (see :class:`SweepTPE`)."""
    import copy

    from lstm_sweep.search.warmstart import ATTR as WARM_START

    scored = [t for t in trials if t.intermediate_values and WARM_START not in t.user_attrs]
    ids = {id(t) for t in scored}
    if not scored:
        return trials
    finished = sum(t.state != optuna.trial.TrialState.RUNNING or id(t) in ids for t in trials)  # TPE's n
    depths = sorted((max(t.intermediate_values) for t in scored), reverse=True)
    step = depths[min(len(depths), gamma(finished) + 1) - 1]  # the deepest that gamma(n) + 1 reached
    view = []
    for t in trials:
        if id(t) in ids:
            steps = [k for k in t.intermediate_values if k <= step]
            value = t.intermediate_values[max(steps)] if steps else t.intermediate_values[min(t.intermediate_values)]
            t = copy.copy(t)
            t.state, t.values = optuna.trial.TrialState.COMPLETE, [value if math.isfinite(value) else math.inf]
        view.append(t)
    return view


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
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.debug("trial %s: its Optuna trial has already finished; report not recorded", trial_id)


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
    "tpe": lambda s: (optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
                      if s.compare == "last" and s.good_share == OPTUNA_GOOD_SHARE else
                      SweepTPE(seed=s.seed, n_startup_trials=s.n_startup_trials,
                               same_progress=s.compare == "same_progress", good_share=s.good_share)),
    "random": lambda s: optuna.samplers.RandomSampler(seed=s.seed),
}


def make_scheduler(config: SweepConfig) -> TrialScheduler:
    """The trial scheduler ``config.scheduler.kind`` names, with its knobs from ``config.asha``.

    Time is counted in epochs: for ASHA the reported ``epoch`` (0.25, 0.5, ... for in-epoch
    reports: ``grace_period`` may be a fraction), for the others ``training_iteration`` (they take
    one report an epoch: ``search.config`` refuses more); metric and mode come from the Tuner.
    Epochs by default, not optimizer steps: replayed on measured curves (bench/stop_rules.py,
    BENCHMARKS.md), ASHA counting steps stopped the best configuration more often and spared
    big batches no more. With ``asha.progress: seconds`` ASHA counts each trial's training
    seconds instead (its reports' ``train_seconds``), from ``asha.grace_seconds`` on: a trial
    whose epoch costs ten times another's is judged against what the others reached in the
    same seconds, so under a wall-clock budget a slow configuration cannot hold a slot on the
    strength of being the first to reach a rung measured in epochs (BENCHMARKS.md, issue 15).
    Seconds follow whatever else the machine runs; epochs do not.

    - ``asha``: Asynchronous Successive Halving (Li et al., "A System for Massively Parallel
      Hyperparameter Tuning", arXiv 2018, MLSys 2020): from ``grace_period`` epochs on, at
      rungs ``reduction_factor`` times apart up to ``budget.max_epochs``, a trial not in the
      best ``1/reduction_factor`` of those that reached the rung stops.
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
_SECONDS = "train_seconds"  # the trainable's training seconds so far (asha.progress: seconds)
_SECONDS_MAX_T = 7 * 24 * 3600  # no trial trains longer: its rungs go that far; it ends at max_epochs itself


def _asha(max_epochs: int, asha) -> ASHAScheduler:
    if asha.progress == "seconds":
        return ASHAScheduler(time_attr=_SECONDS, max_t=_SECONDS_MAX_T, grace_period=asha.grace_seconds,
                             reduction_factor=asha.reduction_factor)
    return ASHAScheduler(time_attr=_PROGRESS, max_t=max_epochs, grace_period=asha.grace_period,
                         reduction_factor=asha.reduction_factor)


_SCHEDULERS: dict[str, Callable[..., TrialScheduler]] = {
    "asha": _asha,
    "fifo": lambda max_epochs, asha: FIFOScheduler(),
    "hyperband": lambda max_epochs, asha: HyperBandScheduler(time_attr=_EPOCHS, max_t=max_epochs,
                                                             reduction_factor=asha.reduction_factor),
    "median": lambda max_epochs, asha: MedianStoppingRule(time_attr=_EPOCHS, grace_period=asha.grace_period),
}


def _check_kind(key: str, kind: str, known: tuple[str, ...]) -> None:
    """``parse_config`` refuses an unknown kind already; this guards a config built by hand."""
    if kind not in known:
        raise ConfigError(f"{key}: {kind!r} must be one of {', '.join(known)}")
