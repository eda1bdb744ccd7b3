"""Training throughput: real tokens per second of our trial's training against the notebooks' way.

The same model (embedding 256, hidden 512, two LSTM layers, vocabulary 7000 by default) on the
same sentences (the lyrics corpus, else the synthetic one), in one process, one variant after
the other:

* ``notebook``: the original notebooks' training: every sentence padded to the longest the
  corpus allows (``max_tokens - 1`` steps), Keras' unmasked sparse cross-entropy, ``model.fit``.
* ``ours``: a trial's training: ``data_pipeline.lm_dataset`` (each batch cut to its longest
  sentence) and the padding-masked loss (``model.compile_language_model``).
* ``ours+buckets``: the same with batches of sentences of one length (``lm_dataset(...,
  buckets=True)``), so next to no padding is computed.
* ``ours+xla``, ``ours+buckets+xla``: the same compiled with XLA (``jit_compile=True``), which
  compiles once per batch shape.

Each variant trains ``1 + --passes`` passes over the same ``--batches`` batches (cached, so
the input pipeline is no part of the figure); the first pass traces every batch shape (and,
for XLA, compiles it) and the fastest of the others is the figure: on this shared machine
one pass in two or three runs up to 1.6 times slower than the next, whatever the variant. Real tokens are
the targets that are not padding; positions are every target position computed.

Useful GFLOP/s = 6 x (matmul parameters) x real tokens per second (forward and backward, the
embedding lookups and biases left out), against this machine's float32 matrix-multiply peak,
measured in the same process with large square ``tf.matmul``s.

Usage (about 8 minutes on 2 cores)::

    .venv/bin/python bench/throughput.py
    .venv/bin/python bench/throughput.py --variants notebook,ours --batches 20   # a smoke run

Writes ``bench/results/throughput.csv`` and prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIANTS = ("notebook", "ours", "ours+buckets", "ours+xla", "ours+buckets+xla")
TARGETS = {"speedup": 1.5, "peak_share": 0.60}  # issue 6: vs the notebook; of the matmul peak


def matmul_parameters(vocab: int, embedding: int, hidden: int, layers: int) -> int:
    """Weights that take part in a matrix multiply per token (an LSTM's 4 gates, the output layer)."""
    total, width = 0, embedding
    for _ in range(layers):
        total += 4 * hidden * (width + hidden)
        width = hidden
    return total + hidden * vocab


def matmul_peak_gflops(tf, n: int = 2048, repeats: int = 20) -> float:
    """The best float32 GFLOP/s of ``repeats`` chained ``n x n`` matmuls (after a warm-up)."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))

    @tf.function
    def chain(x):
        for _ in range(repeats):
            x = tf.matmul(x, b) * 1e-3
        return x

    chain(a).numpy()
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        chain(a).numpy()
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9)
    return best


def batches_for(variant: str, rows, batch: int, count: int, tf):
    """``count`` batches of ``(source, target)`` as the variant trains on them, cached."""
    from lstm_sweep.data_pipeline import lm_dataset

    if variant == "notebook":
        ds = tf.data.Dataset.from_tensor_slices(rows).shuffle(len(rows), seed=0).batch(batch, drop_remainder=True)
        ds = ds.map(lambda b: (b[:, :-1], b[:, 1:]))
    else:
        ds = lm_dataset(rows, batch, shuffle=True, seed=0, buckets="buckets" in variant)
    return ds.take(count).cache()


def run_variant(variant: str, rows, vocab: int, args, tf, keras) -> dict:
    from lstm_sweep.model import build_language_model, compile_language_model, set_seed

    set_seed(0)
    ds = batches_for(variant, rows, args.batch, args.batches, tf)
    real = positions = steps = 0
    for _, target in ds:  # fills the cache and counts what the timed pass will compute
        real += int(tf.math.count_nonzero(target))
        positions += int(tf.size(target))
        steps += 1
    model = build_language_model(vocab, args.embedding, args.hidden, args.layers)
    if variant == "notebook":
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    else:
        compile_language_model(model, 1e-3)
        if variant.endswith("+xla"):
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=model.loss, jit_compile=True)

    seconds = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(ds, epochs=1 + args.passes, verbose=0, callbacks=[Clock()])
    timed = min(seconds[1:])
    return {"variant": variant, "batches": steps, "batch_size": args.batch, "real_tokens": real,
            "positions": positions, "real_share": real / positions, "seconds": timed,
            "first_pass_s": seconds[0], "real_tok_s": real / timed, "positions_s": positions / timed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "lyrics"),
                   help="corpus folder (default ../shared/data/lyrics; 'builtin' for the synthetic one)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--batches", type=int, default=30, help="batches a pass (default 30)")
    p.add_argument("--passes", type=int, default=3, help="timed passes after the first; the fastest counts (default 3)")
    p.add_argument("--batch", type=int, default=128, help="sentences a batch (default 128)")
    p.add_argument("--vocab", type=int, default=7000)
    p.add_argument("--embedding", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow threads (default 2: the machine)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")

    from lstm_sweep.model import configure_threads

    configure_threads(args.threads)
    import keras
    import pandas as pd
    import tensorflow as tf

    from lstm_sweep.data_pipeline import DataSettings, prepare

    data = args.data if args.data == "builtin" or Path(args.data).is_dir() else "builtin"
    if data != args.data:
        print(f"{args.data} not found: the synthetic corpus instead", file=sys.stderr)
    prepared = prepare(DataSettings(path=data, vocab_size=args.vocab, max_tokens=15, seed=0))
    rows = prepared.train[: args.batch * args.batches * 4]
    vocab = len(prepared.vocab)
    peak = matmul_peak_gflops(tf)
    flops_per_token = 6 * matmul_parameters(vocab, args.embedding, args.hidden, args.layers)

    results = []
    for variant in variants:
        r = run_variant(variant, rows, vocab, args, tf, keras)
        r["useful_gflops"] = flops_per_token * r["real_tok_s"] / 1e9
        r["computed_gflops"] = flops_per_token * r["positions_s"] / 1e9
        r["share_of_peak"] = r["useful_gflops"] / peak
        results.append(r)
        print(f"{variant:>13}: {r['real_tok_s']:8.0f} real tokens/s, {r['useful_gflops']:6.1f} useful GFLOP/s "
              f"({r['real_share']:.0%} of positions real)", flush=True)
    table = pd.DataFrame(results)
    table["vs_notebook"] = table.real_tok_s / table.real_tok_s[table.variant == "notebook"].max() \
        if "notebook" in variants else float("nan")
    args.out.mkdir(parents=True, exist_ok=True)
    table.assign(matmul_peak_gflops=peak, corpus=data).to_csv(args.out / "throughput.csv", index=False)

    print(f"\ncorpus {data}: vocabulary {vocab}; model embedding {args.embedding}, hidden {args.hidden} x "
          f"{args.layers}; batch {args.batch}; {args.threads} threads; float32 matmul peak {peak:.0f} GFLOP/s\n")
    print("| variant | real tokens/s | x notebook | real share of positions | useful GFLOP/s | of matmul peak "
          "| computed GFLOP/s | first pass s | fastest pass s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in table.itertuples():
        print(f"| {r.variant} | {r.real_tok_s:,.0f} | {r.vs_notebook:.2f} | {r.real_share:.0%} | "
              f"{r.useful_gflops:.1f} | {r.share_of_peak:.0%} | {r.computed_gflops:.1f} | {r.first_pass_s:.1f} | "
              f"{r.seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
