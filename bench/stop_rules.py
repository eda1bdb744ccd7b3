"""The stop rules replayed on measured curves: whom each rule stops, when, and whether they would have ended well.

Reads the curves ``bench/val_subset.py`` measured (issue 15's task: 20,000 lyric sentences,
vocabulary 5000, 12 configurations of learning rate 1e-5..3e-2 and batch 64 or 512, 4 epochs,
4 reports an epoch, every validation sentence scored at every report) and replays on them, with
no training:

1. **the curves**: each configuration's ``val_loss`` at 0.25, 0.5, 1, 2 and 4 epochs, its steps
   an epoch, and how it ended against the unigram baseline;
2. **the baseline stop**, as ``search.trainable._Baseline`` judges a trial's report stream,
   at one report an epoch (``grace_period`` 1: the stop as it was, without the falling rule),
   two (grace 0.5) and four (grace 0.25, 0.5, 1), in-epoch reports on the validation subset of
   ``search.tasks.VAL_SUBSET`` sentences (seed 0) against that subset's own baseline, without
   and with the still-falling rule (``asha.spare_falling``) at several values. The untrained
   model's loss, the first epoch's reference, is measured when the file has it (``start_sums``),
   else the lr-1e-5 configuration's first report stands in for it;
3. **ASHA** counting in epochs, in optimizer steps and in training seconds: Ray's own ASHA
   bracket (``reduction_factor`` 2; four reports an epoch, and two and one for epochs) fed the
   12 configurations one after the other, in ``--orders`` random orders. For each: how often
   the configuration with the best final ``val_loss`` (and one of the final top 3) runs to the
   end, the best final ``val_loss`` among those that did, how many batch-512 configurations the
   first rung stops, and the training seconds spent;
4. **both together**, as a sweep runs them (the report the baseline stops on still reaches ASHA):
   how often the best configuration completes, how many of those that end below the baseline
   do, and the training seconds, with the in-epoch reports' cost (``--report-cost``).

Usage (10 s)::

    .venv/bin/python bench/stop_rules.py bench/results/val_subset_<date>.npz
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


class Curves:
    """The measured curves: per configuration ``c`` and report ``r``, ``epoch[c, r]``,
    ``steps[c, r]``, ``seconds[c, r]`` (training only), ``full[c, r]`` (the whole validation
    split's val_loss) and ``sub[c, r]`` (the validation subset's); the baselines of both."""

    def __init__(self, path: Path):
        from lstm_sweep.data_pipeline.baselines import unigram_loss
        from lstm_sweep.search.tasks import VAL_SUBSET, validation_subset

        data = np.load(path)
        self.lr, self.batch = data["lr"], data["batch"]
        # Reports fall after round(k * steps / 4) steps; the trainable calls that epoch k / 4.
        self.epoch = np.round(data["epoch"] * 4) / 4
        self.steps, self.seconds = data["steps"], data["seconds"]
        sums, tokens = data["sums"], data["tokens"]
        self.full = sums.sum(axis=2) / tokens.sum()
        rows = validation_subset(len(tokens), VAL_SUBSET, 0)
        self.sub = sums[:, :, rows].sum(axis=2) / tokens[rows].sum()
        # The untrained model on the subset: measured when the file has it; else the lr-1e-5 config's
        # first report stands in (every config starts from the same seeded weights, and 11 steps of
        # 1e-5 move its val_loss by less than 0.001).
        if "start_sums" in data:
            self.start = data["start_sums"][:, rows].sum(axis=1) / tokens[rows].sum()
        else:
            self.start = np.full(len(self.lr), self.sub[int(np.argmin(self.lr)), 0])
        self.baseline = float(data["baseline"])
        self.sub_baseline = unigram_loss(data["train_rows"], data["val_rows"][rows])
        self.subset_size = len(rows)
        self.final = self.full[:, -1]

    def name(self, c: int) -> str:
        return f"lr {self.lr[c]:.0e} b{self.batch[c]}"

    def stream(self, c: int, reports_per_epoch: int):
        """``(epoch, value, baseline of its set)`` of the reports a trial with ``reports_per_epoch`` makes."""
        per_epoch = round(1 / (self.epoch[c, 1] - self.epoch[c, 0]))
        step = per_epoch // reports_per_epoch
        for r in range(step - 1, self.epoch.shape[1], step):
            whole = abs(self.epoch[c, r] - round(self.epoch[c, r])) < 1e-9
            yield (float(self.epoch[c, r]), float(self.full[c, r] if whole else self.sub[c, r]),
                   self.baseline if whole else self.sub_baseline, r)


class _CurvesJob:
    """The part of a task ``_Baseline`` reads: the baseline's name and value, here the curves'."""

    baseline_name = "the unigram model"

    def __init__(self, value: float):
        self.value = value

    def baseline(self, prepared) -> dict[str, float]:
        return {"val_loss": self.value}


def baseline_stop(curves: Curves, c: int, reports_per_epoch: int, grace: float, spare_falling: float):
    """The report index where ``search.trainable._Baseline`` stops configuration ``c``, or None."""
    from lstm_sweep.search.trainable import _Baseline

    # No time budget (no deadline): the rules as the curves judge them.
    judge = _Baseline(_CurvesJob(curves.baseline), None, "val_loss", "min", grace,
                      subset_value=curves.sub_baseline, spare_falling=spare_falling)
    if spare_falling:
        judge.start({"val_loss": float(curves.start[c]), "val_on": "subset"})
    for epoch, value, _, r in curves.stream(c, reports_per_epoch):
        val_on = "full" if abs(epoch - round(epoch)) < 1e-9 else "subset"
        if judge.verdict(epoch, {"val_loss": value, "val_on": val_on}):
            return r
    return None


def print_curves(curves: Curves) -> None:
    marks = (0.25, 0.5, 1, 2, 4)
    print(f"unigram baseline: {curves.baseline:.3f} on the whole split, {curves.sub_baseline:.3f} on the "
          f"{curves.subset_size}-sentence subset")
    print("| config | steps an epoch | " + " | ".join(f"val_loss at {m:g}" for m in marks) + " | final rank |")
    print("|---|---:|" + "---:|" * len(marks) + "---:|")
    order = np.argsort(curves.final)
    for c in order:
        values = []
        for m in marks:
            r = int(np.argmin(np.abs(curves.epoch[c] - m)))
            whole = float(m).is_integer()
            values.append(f"{curves.full[c, r]:.3f}" + ("" if whole else f" ({curves.sub[c, r]:.3f})"))
        print(f"| {curves.name(c)} | {curves.steps[c, 3] / curves.epoch[c, 3]:.0f} | " + " | ".join(values)
              + f" | {int(np.flatnonzero(order == c)[0]) + 1} |")
    print("(in brackets: the same report on the validation subset)")


def print_baseline_rules(curves: Curves, falls: list[float]) -> None:
    rules = []
    for reports, grace in ((1, 1.0), (2, 0.5), (4, 0.25), (4, 0.5), (4, 1.0)):
        where = f"{reports} report{'s' * (reports > 1)} an epoch, grace {grace:g}"
        rules.append((f"{where}, no falling rule" + (" (before)" * (reports == 1)), reports, grace, 0.0))
        rules += [(f"{where}, spare_falling {f:g}", reports, grace, f) for f in falls]
    print("| rule | stopped (at epoch) | stopped that ended below the baseline | training seconds saved |")
    print("|---|---|---|---:|")
    for label, reports, grace, fall in rules:
        stopped, wrong, saved = [], [], 0.0
        for c in range(len(curves.lr)):
            r = baseline_stop(curves, c, reports, grace, fall)
            if r is None:
                continue
            stopped.append(f"{curves.name(c)} ({curves.epoch[c, r]:g})")
            saved += curves.seconds[c, -1] - curves.seconds[c, r]
            if curves.final[c] < curves.baseline:
                wrong.append(f"{curves.name(c)} (ended {curves.final[c]:.3f})")
        print(f"| {label} | {', '.join(stopped) or '-'} | {', '.join(wrong) or 'none'} | {saved:.0f} |")


def asha(curves: Curves, attr: str, grace: float, max_t: float, order: list[int], reports_per_epoch: int):
    """Ray's own ASHA bracket (``reduction_factor`` 2) fed each configuration's reports, one
    configuration after the other in ``order`` (one trial at a time: the earlier ones meet fewer
    rivals, as in a real sweep): ``{config: report index where it stopped}``."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    class Trial:
        def __init__(self, c):
            self.trial_id = str(c)

    bracket = _Bracket(grace, max_t, 2, 0)
    ended = {}
    for c in order:
        trial, ended[c] = Trial(c), None
        for _, value, _, r in curves.stream(c, reports_per_epoch):
            if bracket.on_result(trial, float(getattr(curves, attr)[c, r]), -value) == "STOP":
                ended[c] = r
                break
    return ended


def print_asha(curves: Curves, orders: int) -> None:
    n, best = len(curves.lr), int(np.argmin(curves.final))
    top = set(np.argsort(curves.final)[:3].tolist())
    rng = np.random.default_rng(0)
    permutations = [rng.permutation(n).tolist() for _ in range(orders)]
    big, small = curves.batch.max(), curves.batch.min()
    steps_big = float(np.median(curves.steps[curves.batch == big, 3] / curves.epoch[curves.batch == big, 3]))
    steps_small = float(np.median(curves.steps[curves.batch == small, 3] / curves.epoch[curves.batch == small, 3]))
    seconds_epoch = float(np.median(curves.seconds[:, 3] / curves.epoch[:, 3]))
    max_epochs = float(curves.epoch[0, -1])
    # (attribute, unit, its amount in one epoch, ASHA's max_t: the most any configuration reaches)
    units = [("epoch", "epochs", 1.0, max_epochs),
             ("steps", f"steps, an epoch at batch {big}", steps_big, max_epochs * steps_small),
             ("steps", f"steps, an epoch at batch {small}", steps_small, max_epochs * steps_small),
             ("seconds", "training seconds", seconds_epoch, float(curves.seconds[:, -1].max()))]
    print(f"the best final val_loss: {curves.final[best]:.3f} ({curves.name(best)}); the 12 run to the end: "
          f"{curves.seconds[:, -1].sum():.0f} training seconds; {orders} orders of the configurations")
    print("| ASHA counts | reports an epoch | grace (epochs) | first rung | best config completes | a final top-3 "
          "config completes | best final val_loss completed, mean | b512 configs stopped at the first rung | "
          "training seconds, mean |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    settings = [(4, grace, unit) for grace in (0.25, 0.5, 1.0) for unit in units]
    settings += [(reports, grace, units[0]) for reports, grace in ((2, 0.5), (2, 1.0), (1, 1.0))]
    for reports, grace, (attr, unit, scale, max_t) in settings:
        kept = kept_top = 0
        bests, firsts, spent = [], [], []
        for order in permutations:
            ended = asha(curves, attr, grace * scale, max_t, order, reports)
            done = [c for c, r in ended.items() if r is None]
            kept += best in done
            kept_top += bool(top & set(done))
            bests.append(min(curves.final[c] for c in done) if done else math.nan)
            first = [c for c, r in ended.items() if r is not None and curves.batch[c] == big
                     and getattr(curves, attr)[c, r] < 2 * grace * scale]  # at the first rung
            firsts.append(len(first))
            spent.append(sum(curves.seconds[c, -1 if r is None else r] for c, r in ended.items()))
        print(f"| {attr} | {reports} | {grace:g} | {grace * scale:.4g} {unit} | {kept / orders:.0%} | "
              f"{kept_top / orders:.0%} | {np.nanmean(bests):.3f} | {np.mean(firsts):.1f} of "
              f"{int((curves.batch == big).sum())} | {np.mean(spent):.0f} |")
    print(f"(seconds: rungs at the median training seconds an epoch, {seconds_epoch:.1f} s, measured on a shared "
          "machine: noisy)")


def print_together(curves: Curves, orders: int, report_cost: float) -> None:
    """ASHA (counting epochs) and the baseline stop together, as a sweep runs them: a report the
    baseline stops on still reaches ASHA. ``report_cost``: an in-epoch report's share of an epoch
    (``bench/val_subset.py --cost``), added to the training seconds."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    class Trial:
        def __init__(self, c):
            self.trial_id = str(c)

    n, best = len(curves.lr), int(np.argmin(curves.final))
    well = {c for c in range(n) if curves.final[c] < curves.baseline}
    rng = np.random.default_rng(1)
    permutations = [rng.permutation(n).tolist() for _ in range(orders)]
    print(f"ASHA and the baseline stop together, {orders} orders; {len(well)} configurations end below the baseline")
    print("| reports an epoch | grace | spare_falling | best config completes | best final val_loss completed, mean | "
          "configs that end below the baseline completed, mean | training seconds, mean (with the reports' cost) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for reports, grace, fall in ((1, 1.0, 0.0), (1, 1.0, 0.5), (2, 1.0, 0.5), (2, 0.5, 0.5), (4, 0.5, 0.5),
                                 (4, 0.25, 0.5)):
        stops = {c: baseline_stop(curves, c, reports, grace, fall) for c in range(n)}
        kept, bests, kept_well, spent = 0, [], [], []
        for order in permutations:
            bracket, ended = _Bracket(grace, float(curves.epoch[0, -1]), 2, 0), {}
            for c in order:
                ended[c] = None
                for epoch, value, _, r in curves.stream(c, reports):
                    if bracket.on_result(Trial(c), epoch, -value) == "STOP" or (stops[c] is not None and r >= stops[c]):
                        ended[c] = r
                        break
            done = [c for c, r in ended.items() if r is None]
            kept += best in done
            bests.append(min(curves.final[c] for c in done))
            kept_well.append(len(well & set(done)))
            spent.append(sum(curves.seconds[c, -1 if r is None else r] for c, r in ended.items()))
        seconds = np.mean(spent)
        print(f"| {reports} | {grace:g} | {fall:g} | {kept / orders:.0%} | {np.mean(bests):.3f} | "
              f"{np.mean(kept_well):.1f} | {seconds:.0f} ({seconds * (1 + report_cost * (reports - 1)):.0f}) |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("curves", help="the .npz bench/val_subset.py wrote")
    parser.add_argument("--falls", default="0.25,0.5,0.75", help="asha.spare_falling values to try")
    parser.add_argument("--orders", type=int, default=200, help="orders of the configurations ASHA sees")
    parser.add_argument("--report-cost", type=float, default=0.048,
                        help="an in-epoch report's share of an epoch (bench/val_subset.py --cost)")
    args = parser.parse_args(argv)
    curves = Curves(Path(args.curves))
    print_curves(curves)
    print()
    print_baseline_rules(curves, [float(f) for f in args.falls.split(",")])
    print()
    print_asha(curves, args.orders)
    print()
    print_together(curves, 2 * args.orders, args.report_cost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
