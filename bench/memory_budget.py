"""A real sweep whose requested batches do not fit the per-trial budget: does sizing hold?

The second measurement of issue 3. A sweep over hidden sizes {512, 1024, 2048} (embedding
256, one LSTM layer) with batches up to 1024 runs under a per-trial memory budget that the
requested batches exceed. Sizing must give:

* zero out-of-memory crashes (no trial failed, ``oom_retries`` 0 everywhere);
* every trial's measured peak (``measured_peak_mb``, the trial's own resident high-water mark
  above its baseline) within its budget;
* the batch chosen at least 70% of the largest batch that really fits (of the requested
  batch, when that fits: such a trial is not cut). "Really fits" is
  measured, not predicted: for each cut trial, ``bench/memory.py``'s trial-like child trains
  at the batch it used and at the one it asked for, each in a fresh process, both at once;
  the line through the two peaks gives the largest batch whose measured peak stays within
  the budget. Each trial's peak includes its epoch-end validation and checkpoint save.

The corpus is the synthetic one (3000 lines, a vocabulary of 396 words): its logits are small,
so the budget bites through the weights, Adam's slots and the LSTM's activations. At 1.25 GB
neither requested batch fits hidden 2048 (predicted 1.34 and 2.0 GB, and the planner keeps 10%
of a budget as headroom for the model's error), while hidden 512 fits both.

Usage (about 10 minutes on 2 cores):

    .venv/bin/python bench/memory_budget.py                  # budget 1.25 GB per trial, 8 trials
    .venv/bin/python bench/memory_budget.py --budget-gb 1.0 --samples 6

Writes ``bench/results/memory_budget.csv`` and prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402

from memory import default_steps, run_child  # noqa: E402  (bench/memory.py, beside this file)
from tables import markdown  # noqa: E402

MiB, GiB = 2**20, 2**30
HIDDEN = [512, 1024, 2048]
BATCHES = [512, 1024]


def sweep_config(out: Path, budget_gb: float, samples: int):
    from lstm_sweep.search.config import parse_config

    return parse_config({
        "name": "memory-budget", "output": str(out),
        "data": {"path": "builtin", "builtin_lines": 3000, "vocab_size": 7000, "seed": 0},
        "space": {"embedding_size": 256, "hidden_size": {"choice": HIDDEN}, "num_layers": 1, "dropout": 0.0,
                  "learning_rate": 1e-3, "batch_size": {"choice": BATCHES}},
        "budget": {"num_samples": samples, "max_epochs": 1, "max_concurrent": 2},
        "searcher": {"seed": 0, "n_startup_trials": samples},
        "resources": {"cpus_per_trial": 1, "trial_memory_gb": budget_gb, "min_batch_size": 8},
    })


def largest_that_really_fits(hidden: int, vocab: int, budget_bytes: float, batches: tuple[int, int]
                             ) -> tuple[int, list[float]]:
    """From peaks measured at two batch sizes, the largest batch within ``budget_bytes``.

    Each peak is ``bench/memory.py``'s trial-like child (a fresh process training as a trial
    does: two epochs of padded batches with validation and checkpoints, one thread), the two
    measured at once, as a sweep runs two trials at once on two cores. The two batches bracket
    the answer (the batch the trial used and the one it asked for): peaks are close to linear
    in the batch between them, while far below it a fixed cost that grows over the first tens
    of steps dominates and bends the line.
    """
    cfgs = [{"vocab_size": vocab, "embedding_size": 256, "hidden_size": hidden, "num_layers": 1,
             "batch_size": batch, "dropout": 0.0, "max_tokens": 15, "name": f"h{hidden}-b{batch}"}
            for batch in batches]
    with ThreadPoolExecutor(len(cfgs)) as pool:
        runs = list(pool.map(lambda c: run_child(c, threads=1, steps=default_steps(c, 1), timeout=1800), cfgs))
    peaks = [r["measured_mb"] * MiB for r in runs]
    slope = (peaks[1] - peaks[0]) / (batches[1] - batches[0])
    fixed = peaks[0] - slope * batches[0]
    return int((budget_bytes - fixed) // slope), [p / MiB for p in peaks]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget-gb", type=float, default=1.25, help="per-trial memory budget (default 1.25)")
    p.add_argument("--samples", type=int, default=8, help="trials (default 8)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)

    from lstm_sweep.data_pipeline import prepare
    from lstm_sweep.search.resources import TrialSizer
    from lstm_sweep.search.sweep import run_sweep

    budget = args.budget_gb * GiB
    config = sweep_config(Path(tempfile.mkdtemp(prefix="memory-budget-")), args.budget_gb, args.samples)
    vocab = len(prepare(config.data).vocab)
    unsized = TrialSizer(vocab_size=vocab, seq_len=14, trial_memory_bytes=64 * GiB)
    over = [(h, b, unsized.plan({"embedding_size": 256, "hidden_size": h, "batch_size": b}).predicted_peak_bytes)
            for h in HIDDEN for b in BATCHES]
    print(f"budget {args.budget_gb} GB per trial; unsized, {sum(peak > budget for *_, peak in over)} of "
          f"{len(over)} (hidden, batch) pairs would need more (up to {max(p for *_, p in over) / MiB:,.0f} MB)")

    outcome = run_sweep(config, name="run")
    trials = pd.read_csv(outcome.run_dir / "trials.csv")

    # What really fits is measured where the planner cut a batch; a trial that got its
    # requested batch and stayed within its budget shows on its own that the batch fits.
    cut = trials[trials.batch_size_used < trials.batch_size_requested]
    really = {}
    for (h, used, asked), _ in cut.groupby(["hidden_size", "batch_size_used", "batch_size_requested"]):
        really[(h, used, asked)] = largest_that_really_fits(h, vocab, budget, (used, asked))
    trials["largest_really_fits"] = [
        really[(t.hidden_size, t.batch_size_used, t.batch_size_requested)][0]
        if (t.hidden_size, t.batch_size_used, t.batch_size_requested) in really else t.batch_size_requested
        for t in trials.itertuples()]
    # A trial whose requested batch fits is not cut: the target is against what it could use.
    could_use = trials[["batch_size_requested", "largest_really_fits"]].min(axis=1).clip(lower=1)
    trials["used_share_of_largest"] = trials.batch_size_used / could_use
    trials["within_budget"] = trials.measured_peak_mb <= trials.budget_mb
    columns = ["hidden_size", "batch_size_requested", "batch_size_used", "largest_really_fits",
               "used_share_of_largest", "predicted_peak_mb", "measured_peak_mb", "budget_mb", "within_budget",
               "oom_retries", "status", "seconds"]
    table = trials[columns].sort_values(["hidden_size", "batch_size_requested"])
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "memory_budget.csv", index=False)

    print(markdown(table, floatfmt=".3g"))
    for (h, used, asked), (fit, peaks) in really.items():
        print(f"hidden {h}: measured {peaks[0]:.0f} MB at batch {used}, {peaks[1]:.0f} MB at {asked} "
              f"-> largest batch within {budget / MiB:.0f} MB: {fit}")
    failed = (trials.status == "failed").sum() + (trials.oom_retries > 0).sum()
    ok = failed == 0 and trials.within_budget.all() and (trials.used_share_of_largest >= 0.7).all()
    print(f"OOM crashes or retries: {failed}; all within budget: {trials.within_budget.all()}; "
          f"smallest used/largest: {trials.used_share_of_largest.min():.2f} (target >= 0.70) -> "
          f"{'HOLDS' if ok else 'DOES NOT HOLD'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
