"""Tokens per second of stateful generation against re-running the whole prefix (the notebooks' way).

One model (LSTM, embedding 64, hidden 256, vocabulary 2000, untrained: speed does not depend on
the weights), ``<end>`` made impossible through the logits bias so every line has exactly
``tokens`` new tokens. For each length (20 and 100 new tokens) and batch (``--num``), both
methods run once to trace their ``tf.function`` and then ``--repeats`` timed times; the table
shows the median tokens/s (new tokens x lines / seconds) and the ratio. Three methods:

* ``stateful``: :func:`model.generate` (state carried, the whole loop one ``tf.function``);
* ``stateful_python_loop``: the same step model called once per token from Python;
* ``rerun_prefix``: :func:`model.generate_by_rerunning_prefix`, the notebooks' way (one
  ``tf.function`` call of the whole model on the whole line per token).

The python-loop column separates the two gains: O(n) against O(n^2) work, and one call per line
against one per token. Every model call is a compiled ``tf.function``, never eager. Sampling as
the CLI does: temperature 0.8, top-k 40.

Usage (from the repository root)::

    .venv/bin/python bench/generate.py                 # writes bench/results/generate.csv
    .venv/bin/python bench/generate.py --threads 1 --repeats 3 --num 1,3
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = REPO / "bench" / "results"
PROMPT = "i love you so"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", default="20,100", help="new tokens per line, comma-separated")
    parser.add_argument("--num", default="1,3", help="lines per batch, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: its default)")
    parser.add_argument("--out", type=Path, default=RESULTS / "generate.csv")
    args = parser.parse_args()

    import tensorflow as tf

    from lstm_sweep.data_pipeline import Vocabulary
    from lstm_sweep.data_pipeline.vocab import END_ID
    from lstm_sweep.model import build_language_model, configure_threads, generate, generate_by_rerunning_prefix, set_seed

    if args.threads:
        configure_threads(args.threads)
    set_seed(0)
    vocab = Vocabulary(["<pad>", "<unk>", "<start>", "<end>"] + [f"w{i}" for i in range(1996)])
    model = build_language_model(len(vocab), embedding_size=64, hidden_size=256)
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    bias[END_ID] = -1e4  # every line runs to its full length
    dense.set_weights([kernel, bias])

    methods = {"stateful": generate, "stateful_python_loop": _stateful_python_loop,
               "rerun_prefix": generate_by_rerunning_prefix}
    rows = []
    for tokens in map(int, args.tokens.split(",")):
        for num in map(int, args.num.split(",")):
            row = {"tokens": tokens, "num": num}
            for name, fn in methods.items():
                def run():
                    return fn(model, vocab, PROMPT, max_tokens=tokens, temperature=0.8, top_k=40, num=num, seed=0)

                lines = run()  # traces once per model; later calls reuse the graph
                assert all(len(line.split()) == len(PROMPT.split()) + tokens for line in lines)
                seconds = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    run()
                    seconds.append(time.perf_counter() - started)
                row[f"{name}_tokens_per_s"] = round(tokens * num / statistics.median(seconds), 1)
            row["ratio"] = round(row["stateful_tokens_per_s"] / row["rerun_prefix_tokens_per_s"], 2)
            row["ratio_python_loop"] = round(row["stateful_python_loop_tokens_per_s"]
                                             / row["rerun_prefix_tokens_per_s"], 2)
            rows.append(row)
            print(f"  tokens {tokens:4d}  num {num}: stateful {row['stateful_tokens_per_s']:8.1f} tok/s, "
                  f"stateful python loop {row['stateful_python_loop_tokens_per_s']:8.1f}, "
                  f"rerun {row['rerun_prefix_tokens_per_s']:8.1f} tok/s, x{row['ratio']}", flush=True)

    print(f"\nTensorFlow {tf.__version__}, {os.cpu_count()} CPUs, threads {args.threads or 'default'}, "
          f"median of {args.repeats}; LSTM emb 64, hidden 256, vocab 2000; prompt {PROMPT!r} "
          f"({len(PROMPT.split()) + 1} tokens with <start>)\n")
    print("| new tokens | lines | stateful tok/s | stateful, Python loop tok/s | rerun-prefix tok/s "
          "| stateful / rerun | Python-loop stateful / rerun |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tokens']} | {r['num']} | {r['stateful_tokens_per_s']:.1f} | "
              f"{r['stateful_python_loop_tokens_per_s']:.1f} | {r['rerun_prefix_tokens_per_s']:.1f} | "
              f"{r['ratio']:.2f} | {r['ratio_python_loop']:.2f} |")
    _write_csv(args.out, rows)
    print(f"\nwrote {args.out}")


def _stateful_python_loop(model, vocab, prompt, *, max_tokens, temperature, top_k, num, seed):
    """The stateful step model called once per token from Python (how generate() worked before
    its loop moved into one tf.function): separates the O(n) vs O(n^2) gain from the call overhead."""
    import numpy as np
    import tensorflow as tf

    from lstm_sweep.data_pipeline.vocab import END_ID
    from lstm_sweep.model.generation import (_detokenize, _pick, _pick_arguments, _state_sizes, _step_function, _until_end,
                                encode_prompt)

    words, ids = encode_prompt(vocab, prompt)
    step = _step_function(model)
    _, temperature_t, top_k_t, seed_t, banned = _pick_arguments(len(vocab), max_tokens, temperature, top_k,
                                                                seed, False)
    logits, states = step(tf.constant(np.tile(np.asarray(ids, np.int32), (num, 1))),
                          [tf.zeros((num, size), dtype) for size, dtype in _state_sizes(model)])
    chosen, done = [], np.zeros(num, bool)
    for t in range(max_tokens):
        token = _pick(logits, temperature_t, top_k_t, seed_t, tf.constant(t, tf.int64), banned)
        chosen.append(token.numpy())
        done |= chosen[-1] == END_ID
        if done.all() or t == max_tokens - 1:
            break
        logits, states = step(token[:, None], states)
    return [_detokenize(words + [vocab.tokens[i] for i in _until_end(row)]) for row in np.stack(chosen, 1)]


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
