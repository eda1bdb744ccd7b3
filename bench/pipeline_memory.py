"""Memory of the training input pipeline: ``lm_dataset`` against a buffered ``Dataset.shuffle``.

A trial's peak memory includes its ``tf.data`` pipeline. ``Dataset.shuffle(n)`` keeps all n
rows in its buffer, each a separate element at a few hundred bytes; ``data_pipeline.lm_dataset``
draws one permutation of the row numbers per pass instead. Each variant runs in its own fresh
process over the same random corpus (rows of 15 token ids, the size of the lyrics corpus's
training split by default): two passes (epochs) of batches, the process's resident high-water
mark above its resident set just before the pipeline was built, and the seconds of each pass.

Usage (from the repository root; about 20 seconds)::

    .venv/bin/python bench/pipeline_memory.py                 # 124,593 rows, batch 64
    .venv/bin/python bench/pipeline_memory.py --rows 500000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "lm_dataset": "data_pipeline.lm_dataset (a permutation of row numbers per pass)",
    "buffered_shuffle": "from_tensor_slices(rows).cache().shuffle(n) (lm_dataset before 2026-11-23)",
}


def measure(variant: str, rows: int, batch: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from lstm_sweep.data_pipeline import lm_dataset
    from lstm_sweep.data_pipeline.dataset import _shift_and_trim
    from lstm_sweep.model.devices import _current_rss_bytes, _high_water_mark_bytes, _reset_high_water_mark

    array = np.random.default_rng(0).integers(4, 2000, size=(rows, 15)).astype(np.int32)
    next(iter(tf.data.Dataset.range(1)))  # tf.data's own start-up is not the pipeline's
    baseline = _current_rss_bytes()
    _reset_high_water_mark()
    if variant == "lm_dataset":
        ds = lm_dataset(array, batch, shuffle=True, seed=0)
    else:
        ds = (tf.data.Dataset.from_tensor_slices(array).cache().shuffle(rows, seed=0, reshuffle_each_iteration=True)
              .batch(batch).map(_shift_and_trim).prefetch(tf.data.AUTOTUNE))
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        for _ in ds:
            pass
        seconds.append(time.perf_counter() - start)
    return {"variant": variant, "rows": rows, "batch": batch,
            "peak_mb": (_high_water_mark_bytes() - baseline) / 2**20, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=124_593, help="training sentences (default: the lyrics split)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--measure", help=argparse.SUPPRESS)  # child mode: one variant
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.rows, args.batch)))
        return 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    print("| pipeline | rows | peak above baseline MB | 1st pass s | 2nd pass s |\n|---|---:|---:|---:|---:|")
    for variant, label in VARIANTS.items():
        done = subprocess.run([sys.executable, __file__, "--measure", variant, "--rows", str(args.rows),
                               "--batch", str(args.batch)], capture_output=True, text=True, env=env, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {label} | {r['rows']:,} | {r['peak_mb']:.0f} | {r['seconds'][0]:.2f} | {r['seconds'][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
