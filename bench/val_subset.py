"""How large a validation subset ranks trials as the full split does, and the curves behind it.

A trial that reports several times an epoch (``budget.reports_per_epoch``) scores its in-epoch
reports on a fixed, seeded subset of the validation split (``search.tasks.validation_subset``),
the epoch-end report on the whole split. This measures how large that subset must be for ASHA
to rank trials as the full split would, and records the curves ``bench/stop_rules.py`` judges
the stop rules on.

The task is issue 15's: ``--train`` + ``--val`` sentences (default 20,000 + 5,000) of the lyrics
corpus, vocabulary 5000 (``bench/search_efficiency.py``'s subset; batch 512 is 40 steps an
epoch). ``CONFIGS`` trains a small LSTM (embedding 32, hidden 64) at learning rates 1e-5 to 3e-2
and batches 64 and 512 for ``--epochs`` epochs, two at a time, one thread each (as two trials
run here). ``--reports`` times an epoch it scores the model on every validation sentence and
keeps each sentence's summed loss and tokens, so that any subset's ``val_loss`` is exact and free
to compute afterwards: for each subset size and ``--subset-seeds`` seeds, at every report point
(all configs at the same fraction of training, as ASHA compares them at a rung):

* Kendall's tau between the subset's order of the configs and the full split's;
* ``cut``: the share of configs on the same side of ASHA's cut (``reduction_factor`` 2: the
  better half) as on the full split;
* ``close``: the share of pairs less than 0.05 nats apart on the full split that the subset
  orders the same way (the hard cases);
* the subset's ``val_loss`` against the full split's (mean absolute difference).

Usage (19 minutes on the 2 shared cores of 2026-12-01, the CPUs busy with other work; 12
configs x 4 epochs of one core each)::

    .venv/bin/python bench/val_subset.py
    .venv/bin/python bench/val_subset.py --data builtin --train 2000 --val 1000 --epochs 1   # smoke run
    .venv/bin/python bench/val_subset.py --report bench/results/val_subset_<date>.npz         # tables again
    .venv/bin/python bench/val_subset.py --cost       # what an in-epoch report costs (a minute)

Writes ``bench/results/val_subset_<date>.npz`` (per config and report: epoch, optimizer steps,
training seconds, the running training loss, each validation sentence's loss sum; the untrained
model's sums (``start_sums``; files from before 2026-12-02 lack them); the token counts, the
splits and the unigram baseline) and ``val_subset_<date>.csv`` (the table), and prints the table
for BENCHMARKS.md. ``bench/stop_rules.py`` replays the stop rules on the same file.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (learning rate, batch): issue 15's extremes (1e-4 and batch 512), the usual middle, and two that
# should get nowhere: 1e-5 (hardly moves) and 3e-2 (too large for Adam on this model).
CONFIGS = [(lr, batch) for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2) for batch in (64, 512)] + [(1e-5, 512), (3e-2, 64)]
MODEL = {"embedding_size": 32, "hidden_size": 64, "num_layers": 1, "dropout": 0.0}
SIZES = (128, 256, 512, 1024, 2048)
CLOSE = 0.05  # nats: pairs of configs this close on the full split are the hard ones to order


def _train(job):
    """One config in its own process: train, scoring every validation sentence ``reports`` times an epoch."""
    (lr, batch), prepared, epochs, reports, seed = job
    import keras
    import tensorflow as tf

    from lstm_sweep.data_pipeline import lm_dataset
    from lstm_sweep.model import configure_threads, set_seed
    from search_efficiency import build_and_compile

    configure_threads(1)
    set_seed(seed)
    model = build_and_compile(prepared, {**MODEL, "learning_rate": lr})
    val = lm_dataset(prepared.val, 256, shuffle=False)  # sentences in their order

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)] * 2)
    def row_sums(source, target):
        per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=model(source, training=False))
        return tf.reduce_sum(per_token * tf.cast(tf.not_equal(target, 0), tf.float32), axis=1)

    out = {"epoch": [], "steps": [], "seconds": [], "loss": [], "sums": []}

    class Score(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            out["start_sums"] = np.concatenate([row_sums(s, t).numpy() for s, t in val])  # the untrained model
            self.steps, self.trained, self.since = self.params["steps"], 0.0, time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.marks = epoch, {round(k * self.steps / reports) for k in range(1, reports + 1)}

        def on_train_batch_end(self, step, logs=None):
            if step + 1 not in self.marks:
                return
            self.trained += time.perf_counter() - self.since
            out["sums"].append(np.concatenate([row_sums(s, t).numpy() for s, t in val]))
            out["epoch"].append(self.epoch + (step + 1) / self.steps)
            out["steps"].append(int(self.model.optimizer.iterations.numpy()))
            out["seconds"].append(self.trained)
            out["loss"].append(float(logs["loss"]))
            self.since = time.perf_counter()

    train = lm_dataset(prepared.train, batch, shuffle=True, seed=seed, buckets=True)
    model.fit(train, epochs=epochs, callbacks=[Score()], verbose=0, shuffle=False)
    return {k: np.asarray(v, np.float32 if k.endswith("sums") else np.float64) for k, v in out.items()}


def _numbered(job):
    return job[0], _train(job[1])


def measure(args) -> Path:
    from lstm_sweep.data_pipeline import prepare
    from lstm_sweep.data_pipeline.baselines import unigram_loss
    from search_efficiency import data_settings, lyrics_path, write_subset

    work = Path(args.work)
    folder = write_subset(lyrics_path(args.data), work / "corpus", args.train, args.val)
    prepared = prepare(data_settings(folder, args.train, args.val))
    targets = prepared.val[:, 1:]
    print(f"{len(prepared.train)} train / {len(prepared.val)} val sentences, vocabulary {len(prepared.vocab)}; "
          f"{len(CONFIGS)} configs x {args.epochs} epochs, {args.reports} reports an epoch", flush=True)
    started, runs = time.perf_counter(), [None] * len(CONFIGS)
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        jobs = [(c, prepared, args.epochs, args.reports, 0) for c in CONFIGS]
        for i, run in pool.imap_unordered(_numbered, list(enumerate(jobs))):
            runs[i] = run
            print(f"  lr {CONFIGS[i][0]:g} batch {CONFIGS[i][1]}: {run['steps'][-1]:.0f} steps, final val_loss "
                  f"{run['sums'][-1].sum() / np.count_nonzero(targets):.3f} ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
    path = Path(args.out or REPO / "bench" / "results" / f"val_subset_{args.date}.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, lr=np.array([c[0] for c in CONFIGS]), batch=np.array([c[1] for c in CONFIGS]),
                        **{k: np.stack([r[k] for r in runs]) for k in runs[0]},
                        tokens=np.count_nonzero(targets, axis=1).astype(np.float64),
                        baseline=unigram_loss(prepared.train, prepared.val), val_rows=prepared.val,
                        train_rows=prepared.train)
    return path


def cost(args) -> None:
    """What an in-epoch report costs: one training epoch, a validation of the whole split and one of
    the subset (``search.tasks.VAL_SUBSET``), timed for the middle config at batch 64 and 512 on one thread."""
    from lstm_sweep.data_pipeline import lm_dataset, prepare
    from lstm_sweep.model import configure_threads, evaluate_language_model, set_seed
    from lstm_sweep.search.tasks import VAL_SUBSET, validation_subset
    from search_efficiency import build_and_compile, data_settings, lyrics_path, write_subset

    configure_threads(1)
    folder = write_subset(lyrics_path(args.data), Path(args.work) / "corpus", args.train, args.val)
    prepared = prepare(data_settings(folder, args.train, args.val))
    subset = prepared.val[validation_subset(len(prepared.val), VAL_SUBSET, 0)]
    print(f"| batch | training epoch, s | validation of {len(prepared.val):,} sentences, s | of the "
          f"{len(subset):,}-sentence subset, s | one in-epoch report, share of an epoch and its validation |")
    print("|---:|---:|---:|---:|---:|")
    for batch in (64, 512):
        set_seed(0)
        model = build_and_compile(prepared, {**MODEL, "learning_rate": 1e-3})
        train = lm_dataset(prepared.train, batch, shuffle=True, seed=0, buckets=True)
        full, sub = (lm_dataset(rows, batch, shuffle=False) for rows in (prepared.val, subset))
        model.fit(train.take(5), epochs=1, verbose=0)  # traced once, as a trial's first steps are
        evaluate_language_model(model, full), evaluate_language_model(model, sub)
        started = time.perf_counter()
        model.fit(train, epochs=1, verbose=0)
        epoch = time.perf_counter() - started
        started = time.perf_counter()
        evaluate_language_model(model, full)
        whole = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(3):
            evaluate_language_model(model, sub)
        part = (time.perf_counter() - started) / 3
        print(f"| {batch} | {epoch:.1f} | {whole:.2f} | {part:.2f} | {part / (epoch + whole):.1%} |")


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-a between two orderings of the same items (no ties in these losses)."""
    i, j = np.triu_indices(len(a), 1)
    return float(np.mean(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])))


def subset_table(path: Path, subset_seeds: int) -> list[dict]:
    data = np.load(path)
    sums, tokens = data["sums"], data["tokens"]  # (configs, reports, sentences), (sentences,)
    full = sums.sum(axis=2) / tokens.sum()
    n_val, rows = len(tokens), []
    for size in [s for s in SIZES if s < n_val] + [n_val]:
        taus, cuts, close, gaps = [], [], [], []
        for seed in range(subset_seeds):
            picked = np.sort(np.random.default_rng(seed).choice(n_val, size, replace=False))
            sub = sums[:, :, picked].sum(axis=2) / tokens[picked].sum()
            gaps.append(np.abs(sub - full).mean())
            for r in range(full.shape[1]):
                f, s = full[:, r], sub[:, r]
                taus.append(kendall_tau(f, s))
                cuts.append(np.mean((f <= np.median(f)) == (s <= np.median(s))))
                i, j = np.triu_indices(len(f), 1)
                near = np.abs(f[i] - f[j]) < CLOSE
                if near.any():
                    close.append(np.mean(np.sign(f[i] - f[j])[near] == np.sign(s[i] - s[j])[near]))
        rows.append({"sentences": size, "tokens": round(float(tokens.mean() * size)), "share": size / n_val,
                     "tau_mean": np.mean(taus), "tau_min": np.min(taus), "cut_mean": np.mean(cuts),
                     "cut_min": np.min(cuts), "close": np.mean(close) if close else float("nan"),
                     "abs_gap": np.mean(gaps)})
    return rows


def print_table(rows: list[dict], path: Path) -> None:
    import pandas as pd

    table = pd.DataFrame(rows)
    table.to_csv(path.with_suffix(".csv"), index=False, float_format="%.4g")
    print("| subset, sentences | tokens | share of val | Kendall tau, mean (min) | same side of the cut, "
          "mean (min) | close pairs ordered as on the full split | abs(subset - full) val_loss |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sentences']:,} | {r['tokens']:,} | {r['share']:.0%} | {r['tau_mean']:.3f} ({r['tau_min']:.3f}) | "
              f"{r['cut_mean']:.3f} ({r['cut_min']:.3f}) | {r['close']:.3f} | {r['abs_gap']:.4f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="the lyrics corpus (default $LSTM_SWEEP_LYRICS, ../shared/data/lyrics); builtin")
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--reports", type=int, default=4, help="scores of the whole validation split an epoch")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--subset-seeds", type=int, default=20)
    parser.add_argument("--date", default=f"{datetime.date.today():%Y%m%d}")
    parser.add_argument("--work", default="/tmp/lstm-sweep-val-subset")
    parser.add_argument("--out", help="the .npz to write")
    parser.add_argument("--report", help="an .npz written before: only print its tables")
    parser.add_argument("--cost", action="store_true", help="only time an epoch, a validation and a subset's")
    args = parser.parse_args(argv)
    if args.cost:
        cost(args)
        return 0
    path = Path(args.report) if args.report else measure(args)
    print_table(subset_table(path, args.subset_seeds), path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
