"""Predicted against measured peak memory of a training step (``model.memory`` vs reality).

Each config is trained for a few real steps in its own fresh Python process (``--measure``
child mode), so one config's peak cannot leak into another's:

* the child sets TensorFlow to ``--threads`` threads (``configure_threads``), imports Ray Tune
  as a trial process does, builds random sentences of exactly ``max_tokens`` tokens
  (``seq_len = max_tokens - 1`` steps after the source/target shift, ids in ``[4, vocab)``) and
  the trainer's input pipeline (``data_pipeline.lm_dataset``), then takes its **baseline**;
* it builds and compiles the model as a trial does (``build_language_model``,
  ``compile_language_model``: Adam, masked cross-entropy), runs one warm-up step (build, trace,
  first step) and then ``--steps`` steps (5, or 3 above 1 TFLOP a step), both with
  ``model.fit`` on the ``tf.data`` dataset as our trainer does;
* **measured peak** on the CPU: the process's resident-memory high-water mark above the
  baseline. The baseline is the current ``VmRSS`` of ``/proc/self/status``, not ``ru_maxrss``:
  that is a high-water mark since the process started, and importing TensorFlow and Ray peaks
  above what stays resident. Right at the baseline the kernel's high-water mark (``VmHWM``, the
  figure ``ru_maxrss`` reports) is reset to the current RSS by writing ``5`` to
  ``/proc/self/clear_refs`` (Linux >= 4.0), so afterwards it holds the peak of the model's life
  only, exact to the page however short the spike; it is read (and reset) after every step. A
  thread also samples ``VmRSS`` every 2 ms, a cross-check and the measure where the reset is
  refused. TensorFlow's own CPU allocator peak (``get_memory_info('CPU:0')``, the oneDNN build's
  allocator keeps statistics) is recorded beside it: the tensors alone, without what the
  allocator holds besides. On a GPU the measure is ``get_memory_info('GPU:0')['peak']`` above
  its ``current`` at the baseline (untested here);
* then it saves a checkpoint as a trial does after each epoch (an unzipped Keras folder, one
  variable at a time); the high-water mark of the save counts too;
* seconds per step: the median of the measured steps, timed between the ends of consecutive
  steps (a whole ``fit()`` also waits for tf.data's autotuning thread to stop).

The resident peak of one config varies between fresh processes (the allocator places the big
buffers differently; usually by under 10%, once by 40%), so ``--repeats N`` measures each config
in N processes and keeps the highest, and ``--merge`` combines earlier runs the same way.

The parent prints a markdown table (error = (predicted - measured) / measured), writes
``bench/results/memory.csv`` and ``bench/results/memory.png`` (log-log, with the target band)
and says whether every prediction is within the target: at most 10% below, 25% above.

Usage (from the repository root)::

    .venv/bin/python bench/memory.py              # the grid, 20 configs (about 25 minutes on 2 cores)
    .venv/bin/python bench/memory.py --repeats 2  # each config in 2 fresh processes, the higher counts
    .venv/bin/python bench/memory.py --quick      # 4 small configs, a smoke check (~1 minute)
    .venv/bin/python bench/memory.py --configs h2048-l2-b1024,h256-l1-b32
    .venv/bin/python bench/memory.py --reuse      # recompute predictions for OUT/memory.csv, no training
    .venv/bin/python bench/memory.py --merge bench/results/run1 bench/results/run2  # highest of all runs
    .venv/bin/python bench/memory.py --measure '{"hidden_size": 256, "batch_size": 32}'  # one child
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RESULTS = REPO / "bench" / "results"
MiB = 2**20
UNDER, OVER = -0.10, 0.25  # target band of (predicted - measured) / measured

BASE = dict(vocab_size=7000, embedding_size=256, max_tokens=15, dropout=0.0)
# (hidden, layers, batch[, dropout]): every hidden size at several batches, 1 and 2 layers; the
# last one is the notebooks' out-of-memory config (hidden 2048, 2 layers, batch 1024).
GRID = [
    (256, 1, 32), (256, 1, 128), (256, 1, 512), (256, 1, 1024), (256, 2, 1024),
    (512, 1, 128), (512, 1, 512), (512, 2, 1024),
    (1024, 1, 32), (1024, 1, 512), (1024, 2, 512, 0.2), (1024, 2, 1024),
    (2048, 1, 32), (2048, 2, 128), (2048, 1, 512), (2048, 2, 1024),
]
# With the embedding and vocabulary fixed, the per-token terms (embedding, logits) scale alike; these
# four vary them, so the logits' share and the embedding's can be told apart.
SIDE = [dict(hidden=512, layers=1, batch=512, vocab_size=v) for v in (2000, 20000)] + \
       [dict(hidden=512, layers=1, batch=512, embedding_size=e) for e in (64, 1024)]
QUICK = [(64, 1, 32), (256, 1, 128), (256, 2, 256), (512, 1, 512)]


def config_of(hidden: int, layers: int, batch: int, dropout: float = 0.0, **sizes) -> dict:
    cfg = {**BASE, "hidden_size": hidden, "num_layers": layers, "batch_size": batch, "dropout": dropout, **sizes}
    cfg["name"] = name_of(cfg)
    return cfg


def name_of(cfg: dict) -> str:
    name = f"h{cfg['hidden_size']}-l{cfg['num_layers']}-b{cfg['batch_size']}"
    if cfg.get("embedding_size", BASE["embedding_size"]) != BASE["embedding_size"]:
        name += f"-e{cfg['embedding_size']}"
    if cfg.get("vocab_size", BASE["vocab_size"]) != BASE["vocab_size"]:
        name += f"-v{cfg['vocab_size']}"
    return name + (f"-d{cfg['dropout']:g}" if cfg.get("dropout") else "")


def grid_configs(quick: bool = False) -> list[dict]:
    if quick:
        return [config_of(*c) for c in QUICK]
    return [config_of(*c) for c in GRID] + [config_of(**c) for c in SIDE]


# ------------------------------------------------------------------ child: measure one config

def _status_kib(*keys: str) -> dict[str, int]:
    with open("/proc/self/status") as f:
        text = f.read()
    return {k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1)) for k in keys}


def _rss() -> int:
    return _status_kib("VmRSS")["VmRSS"] * 1024


def _hwm() -> int:
    return _status_kib("VmHWM")["VmHWM"] * 1024


def _reset_hwm() -> bool:
    """Reset the kernel's resident high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """The largest ``VmRSS`` seen, read every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.interval, self.peak, self.samples = interval, _rss(), 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss())
            self.samples += 1
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _rss())
        return self.peak


def measure(cfg: dict, threads: int, steps: int, epochs: int = 2) -> dict:
    """Train ``cfg`` as a trial does for ``epochs`` epochs of ``steps`` steps; its peak above the baseline."""
    rss_start = _rss()
    from lstm_sweep.model.train import configure_threads  # imports TensorFlow

    configure_threads(threads)
    import keras
    import numpy as np
    import tensorflow as tf

    from lstm_sweep.data_pipeline.dataset import lm_dataset
    from lstm_sweep.model import build_language_model, compile_language_model, fit_language_model, save_checkpoint, set_seed
    from lstm_sweep.model.devices import configure_gpu

    on_gpu = configure_gpu(None)
    rss_tf = _rss()
    try:  # a trial process also holds Ray Tune; reserve for it too
        import ray.tune  # noqa: F401
        with_ray = True
    except ImportError:
        with_ray = False
    rss_ray = _rss()
    # As every trial: seeded. `"deterministic_ops": true` in the config measures TensorFlow's
    # deterministic kernels too (model.set_seed says what they cost).
    set_seed(0, deterministic_ops=bool(cfg.get("deterministic_ops", False)))

    v, b, n_tok = cfg["vocab_size"], cfg["batch_size"], cfg["max_tokens"]
    train_rows, val_rows = _sentences(np, steps * b, v, n_tok, seed=0), _sentences(np, 2 * b, v, n_tok, seed=1)
    train = lm_dataset(train_rows, b, shuffle=True, seed=0)
    val = lm_dataset(val_rows, b, shuffle=False)
    seq_len = n_tok - 1

    # Baseline: TensorFlow (and Ray) imported, data ready, no model yet (where a trial's
    # PeakMemory starts).
    baseline = _rss()
    hwm_before = _hwm()
    reset = _reset_hwm()
    tf_base = (_tf_memory(tf, "GPU:0" if on_gpu else "CPU:0", reset_stats=True) or {}).get("current", 0)
    sampler = RssSampler()
    sampler.start()
    steps_seen: list[dict] = []
    saves: list[float] = []

    def high_water() -> int:
        return (_hwm() if reset else sampler.peak) - baseline

    class EveryStep(keras.callbacks.Callback):
        """The high-water marks of each step (RSS and TensorFlow's allocator), then reset them;
        at each epoch's end (after validation) the trial's checkpoint save, measured alone."""

        def on_train_batch_end(self, batch, logs=None):
            tf_info = _tf_memory(tf, "GPU:0" if on_gpu else "CPU:0", reset_stats=True)
            steps_seen.append({"end": time.perf_counter(), "rss_peak": high_water(),
                               "tf_peak": tf_info["peak"] - tf_base if tf_info else None,
                               "tf_current": tf_info["current"] - tf_base if tf_info else None})
            if reset:
                _reset_hwm()

        def on_epoch_end(self, epoch, logs=None):
            steps_seen[-1]["rss_peak"] = max(steps_seen[-1]["rss_peak"], high_water())  # validation
            if reset:
                _reset_hwm()
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(self.model, folder)
                saves.append(high_water())
            if reset:
                _reset_hwm()

    model = build_language_model(v, cfg["embedding_size"], cfg["hidden_size"],
                                 cfg["num_layers"], cfg["dropout"])
    compile_language_model(model, 1e-3)
    t0 = time.perf_counter()
    history = fit_language_model(model, train, val, epochs=epochs, callbacks=[EveryStep()])
    first_s = steps_seen[0]["end"] - t0  # build, trace and the first step
    # Per step from the callback's clock, the first epoch's later steps (no tracing, no validation).
    ends = [s["end"] for s in steps_seen[:steps]]
    step_times = sorted(later - earlier for earlier, later in zip(ends, ends[1:])) or [first_s]
    step_s = step_times[len(step_times) // 2]  # the median
    sampled = sampler.stop()

    rss = [s["rss_peak"] / MiB for s in steps_seen]
    tf_peaks = [s["tf_peak"] / MiB for s in steps_seen if s["tf_peak"] is not None]
    out = dict(cfg, seq_len=seq_len, params=int(model.count_params()), steps=steps, epochs=epochs, threads=threads,
               device="gpu" if on_gpu else "cpu", with_ray=with_ray, hwm_reset=reset,
               rss_start_mb=rss_start / MiB, rss_tf_mb=rss_tf / MiB, rss_ray_mb=rss_ray / MiB,
               baseline_mb=baseline / MiB, hwm_before_baseline_mb=hwm_before / MiB,
               sampled_peak_mb=(sampled - baseline) / MiB, sampler_reads=sampler.samples,
               step_rss_peak_mb=[round(x, 1) for x in rss], step_tf_peak_mb=[round(x, 1) for x in tf_peaks],
               tf_current_mb=(steps_seen[-1]["tf_current"] or 0) / MiB,
               first_step_s=first_s, sec_per_step=step_s, step_s=[round(x, 3) for x in step_times],
               loss=float(history.history["loss"][-1]))
    out["checkpoint_peak_mb"] = max(saves) / MiB
    out["peak_first_mb"] = rss[0]
    out["peak_steady_mb"] = max(rss[1:] or rss)
    out["tf_peak_mb"] = max(tf_peaks) if tf_peaks else float("nan")
    if on_gpu:  # TensorFlow's own peak is the measure on a GPU
        out["measured_mb"] = out["tf_peak_mb"]
    else:  # the high-water marks are exact; the sampler only adds where the reset was refused
        out["measured_mb"] = max(max(rss), out["checkpoint_peak_mb"], out["sampled_peak_mb"])
    return out


def _sentences(np, n: int, vocab: int, max_tokens: int, seed: int):
    """``n`` random sentences as a corpus gives them: <start> (2), 1 to ``max_tokens - 2`` words in
    ``[4, vocab)``, <end> (3), right-padded with 0, so batches vary in width as a trial's do."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, max_tokens), np.int32)
    lengths = rng.integers(3, max_tokens + 1, size=n)  # tokens with <start> and <end>
    for row, length in zip(rows, lengths):
        row[0], row[length - 1] = 2, 3
        row[1:length - 1] = rng.integers(4, vocab, size=length - 2)
    return rows


def _tf_memory(tf, device: str, reset_stats: bool = False) -> dict | None:
    """TensorFlow's allocator figures for ``device`` (bytes in use now, peak since the last reset)."""
    try:
        info = tf.config.experimental.get_memory_info(device)
        if reset_stats:
            tf.config.experimental.reset_memory_stats(device)
        return info
    except (ValueError, RuntimeError):  # an allocator without statistics
        return None


# ------------------------------------------------------------------ parent: the grid

def predict(row: dict) -> dict:
    from lstm_sweep.model.memory import estimate_memory

    est = estimate_memory({k: row[k] for k in ("vocab_size", "embedding_size", "hidden_size", "num_layers",
                                               "batch_size", "seq_len", "dropout")})
    predicted = est.total / MiB
    return {"predicted_mb": predicted, "state_mb": est.state / MiB, "activations_mb": est.activations / MiB,
            "workspace_mb": est.workspace / MiB, "checkpoint_mb": est.checkpoint / MiB,
            "error_pct": 100 * (predicted - row["measured_mb"]) / row["measured_mb"]}


def run_child(cfg: dict, threads: int, steps: int, timeout: float, epochs: int = 2) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", json.dumps(cfg),
           "--threads", str(threads), "--steps", str(steps), "--epochs", str(epochs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{cfg['name']}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def default_steps(cfg: dict, threads: int) -> int:
    """Steps an epoch: about 20 s of training at ~110 GFLOP/s a thread, between 3 and 40."""
    seconds = _tflop_per_step(cfg) / (0.11 * threads)
    return max(3, min(40, round(20 / max(seconds, 1e-3))))


COLUMNS = ["name", "vocab_size", "embedding_size", "hidden_size", "num_layers", "batch_size", "seq_len",
           "dropout", "params", "epochs", "predicted_mb", "measured_mb", "error_pct", "state_mb", "activations_mb",
           "workspace_mb", "checkpoint_mb", "checkpoint_peak_mb", "tf_peak_mb", "tf_current_mb", "peak_first_mb",
           "peak_steady_mb", "sampled_peak_mb",
           "baseline_mb", "rss_tf_mb", "rss_ray_mb", "with_ray", "first_step_s", "sec_per_step", "steps",
           "threads", "device", "repeats", "measured_min_mb", "measured_runs_mb", "step_rss_peak_mb",
           "step_tf_peak_mb"]


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: round(v, 3) if isinstance(v, float) else json.dumps(v) if isinstance(v, list) else v
                        for k, v in r.items()})
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict]:
    ints = {"vocab_size", "embedding_size", "hidden_size", "num_layers", "batch_size", "seq_len", "params",
            "steps", "epochs", "threads", "repeats"}
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                if v == "" or v is None:
                    continue
                if k in ints:
                    row[k] = int(v)
                elif k in ("name", "device", "with_ray"):
                    row[k] = v
                elif k.startswith("step_") or k == "measured_runs_mb":
                    row[k] = json.loads(v) if v else []
                else:
                    row[k] = float(v)
            rows.append(row)
    return rows


def merge(runs: list[list[dict]]) -> list[dict]:
    """One row a config: the row of its highest run, with every run's measure in ``measured_runs_mb``."""
    rows: dict[str, dict] = {}
    for run in runs:
        for r in run:
            seen = r.get("measured_runs_mb") or [r["measured_mb"]]
            old = rows.get(r["name"])
            if old is None:
                rows[r["name"]] = dict(r, measured_runs_mb=list(seen))
                continue
            best = r if r["measured_mb"] > old["measured_mb"] else old
            timing = {k: r[k] for k in ("sec_per_step", "first_step_s") if k in r}  # the latest run's
            rows[r["name"]] = dict(best, **timing, measured_runs_mb=old["measured_runs_mb"] + list(seen))
    for run in runs:  # TensorFlow's allocator peak: the highest any run recorded (older runs lack it)
        for r in run:
            tf_peak = r.get("tf_peak_mb")
            if tf_peak is not None and tf_peak == tf_peak:
                row = rows[r["name"]]
                row["tf_peak_mb"] = max(tf_peak, row.get("tf_peak_mb") or 0.0)
    for r in rows.values():
        r["repeats"] = len(r["measured_runs_mb"])
        r["measured_min_mb"] = min(r["measured_runs_mb"])
    return list(rows.values())


def table(rows: list[dict]) -> str:
    out = ["| config | params | predicted MB | measured MB | error % | runs MB | 1st-step RSS MB "
           "| later-steps RSS MB | checkpoint RSS MB | TF allocator peak MB | s/step |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        runs = "/".join(f"{x:.0f}" for x in r.get("measured_runs_mb") or [r["measured_mb"]])
        out.append(f"| {r['name']} | {r['params']:,} | {r['predicted_mb']:.0f} | {r['measured_mb']:.0f} "
                   f"| {r['error_pct']:+.1f} | {runs} | {r['peak_first_mb']:.0f} | {r['peak_steady_mb']:.0f} "
                   f"| {r.get('checkpoint_peak_mb', float('nan')):.0f} "
                   f"| {r.get('tf_peak_mb', float('nan')):.0f} | {r['sec_per_step']:.2f} |")
    return "\n".join(out)


def verdict(rows: list[dict]) -> str:
    under = min(rows, key=lambda r: r["error_pct"])
    over = max(rows, key=lambda r: r["error_pct"])
    outside = [r["name"] for r in rows if not 100 * UNDER <= r["error_pct"] <= 100 * OVER]
    holds = (f"HOLDS on all {len(rows)} configs" if not outside else
             f"MISSED on {len(outside)} of {len(rows)} configs ({', '.join(outside)})")
    lines = [f"worst under-prediction: {under['error_pct']:+.1f}% ({under['name']}); "
             f"worst over-prediction: {over['error_pct']:+.1f}% ({over['name']})",
             f"target (none below measured by > {-100 * UNDER:.0f}%, none above by > {100 * OVER:.0f}%): {holds}"]
    runs = sum(len(r.get("measured_runs_mb") or [1]) for r in rows)
    if runs > len(rows):  # against each fresh process alone, not only the highest of a config's runs
        each = [100 * (r["predicted_mb"] - m) / m for r in rows for m in r["measured_runs_mb"]]
        lines.append(f"against each of the {runs} runs alone: from {min(each):+.1f}% to {max(each):+.1f}%")
    ray = " + Ray Tune" if rows[0].get("with_ray") in (True, "True") else ""
    lines.append(f"process baseline (TensorFlow{ray} imported, data ready): "
                 f"{min(r['baseline_mb'] for r in rows):.0f}-{max(r['baseline_mb'] for r in rows):.0f} MB")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    measured = [r["measured_mb"] for r in rows]
    predicted = [r["predicted_mb"] for r in rows]
    lo, hi = min(measured + predicted) / 1.5, max(measured + predicted) * 1.5
    fig, ax = plt.subplots(figsize=(6.5, 6))
    xs = [lo, hi]
    ax.fill_between(xs, [x * (1 + UNDER) for x in xs], [x * (1 + OVER) for x in xs], color="tab:green",
                    alpha=0.15, label=f"target band ({100 * UNDER:+.0f}% / {100 * OVER:+.0f}%)")
    ax.plot(xs, xs, color="gray", lw=1, label="predicted = measured")
    for layers, marker in ((1, "o"), (2, "s")):
        sel = [r for r in rows if r["num_layers"] == layers]
        sc = ax.scatter([r["measured_mb"] for r in sel], [r["predicted_mb"] for r in sel], marker=marker,
                        c=[r["hidden_size"] for r in sel], cmap="viridis", norm=matplotlib.colors.LogNorm(64, 2048),
                        label=f"{layers} layer{'s' * (layers > 1)}", edgecolors="k", linewidths=0.5)
    fig.colorbar(sc, ax=ax, label="hidden size")
    for r in rows:
        ax.annotate(f"b{r['batch_size']}", (r["measured_mb"], r["predicted_mb"]), fontsize=7,
                    xytext=(3, -9), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured peak above baseline (MB)",
           ylabel="predicted peak (MB)",
           title=f"Training-step peak memory, {rows[0]['device'].upper()}: model.memory vs measured")
    ticks = [t for t in (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000) if lo <= t <= hi]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(rows: list[dict], out_dir: Path) -> None:
    rows = [dict(r, **predict(r)) for r in rows]
    write_csv(rows, out_dir / "memory.csv")
    plot(rows, out_dir / "memory.png")
    print(table(rows))
    print()
    print(verdict(rows))
    print(f"wrote {out_dir / 'memory.csv'} and {out_dir / 'memory.png'}")


def fit(rows: list[dict], margin: float = 0.0) -> tuple[object, float, float]:
    """The calibration (``model.memory.Calibration``) whose worst over-prediction on ``rows`` is
    smallest among those that predict no peak lower than ``margin`` below the measured one.

    A grid search over the constants (the checkpoint's copies are measured on their own and
    kept); returns the calibration and its worst under- and over-prediction.
    """
    import numpy as np

    from lstm_sweep.model.memory import CPU_CALIBRATION, estimate_memory

    unit = CPU_CALIBRATION.replace(state_copies=1, logit_copies=0, workspace_bytes=0, workspace_share=0,
                                   layer_bytes=0)
    parts = []
    for r in rows:
        cfg = {k: r[k] for k in ("vocab_size", "embedding_size", "hidden_size", "num_layers", "batch_size",
                                 "seq_len", "dropout")}
        base = estimate_memory(cfg, calibration=unit)
        logits = estimate_memory(cfg, calibration=unit.replace(logit_copies=1)).activations - base.activations
        parts.append((base.state, base.activations, logits, r["num_layers"], base.checkpoint, r["measured_mb"] * MiB))
    state, act, logits, layers, checkpoint, measured = (np.array(x, float)[:, None] for x in zip(*parts))

    def search(axes):
        s, g, w, share, lb = (x.ravel()[None, :] for x in np.meshgrid(*axes, indexing="ij"))
        predicted = s * state + (act + g * logits) * (1 + share) + w + layers * lb + checkpoint
        error = (predicted - measured) / measured
        low, high = error.min(axis=0), error.max(axis=0)
        ok = low >= margin
        if not ok.any():
            raise ValueError(f"no calibration in the grid keeps every prediction above {margin:+.0%}")
        best = np.flatnonzero(ok)[np.argmin(high[ok])]
        return [float(x[0, best]) for x in (s, g, w, share, lb)], float(low[best]), float(high[best])

    # A coarse grid, then a fine one around its best point.
    steps = [0.25, 0.125, 8 * MiB, 0.02, 8 * MiB]
    coarse, *_ = search([np.arange(4.0, 10.01, 0.25), np.arange(0.5, 3.01, 0.125), np.arange(0, 193, 8) * MiB,
                         np.arange(0.0, 0.301, 0.02), np.arange(0, 129, 8) * MiB])
    fine = [np.clip(np.linspace(c - 2 * d, c + 2 * d, 17), 0, None) for c, d in zip(coarse, steps)]
    (s, g, w, share, lb), low, high = search(fine)
    calibration = CPU_CALIBRATION.replace(state_copies=round(s, 4), logit_copies=round(g, 4),
                                          workspace_bytes=int(w), workspace_share=round(share, 4), layer_bytes=int(lb))
    return calibration, low, high


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few small configs, a smoke check")
    p.add_argument("--configs", help="comma-separated names from the grid, e.g. h2048-l2-b1024,h256-l1-b32")
    p.add_argument("--steps", type=int, default=0, help="training steps an epoch (default: about 20 s "
                   "worth, 3 to 40)")
    p.add_argument("--epochs", type=int, default=2, help="epochs, each with validation and a checkpoint (default 2)")
    p.add_argument("--parallel", type=int, default=2, help="children at once, as trials side by side (default 2)")
    p.add_argument("--repeats", type=int, default=1, help="fresh processes per config; the measure is "
                   "their highest peak (default 1)")
    p.add_argument("--threads", type=int, default=1, help="TensorFlow threads (configure_threads), "
                   "as a trial's CPUs (default 1)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per config before giving up")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of memory.csv and memory.png")
    p.add_argument("--reuse", action="store_true", help="no training: recompute the predictions for the "
                   "measurements in OUT/memory.csv (after changing model/memory.py)")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="no training: combine the memory.csv of "
                   "earlier runs, each config measured as the highest of all its runs, into OUT")
    p.add_argument("--fit", type=float, nargs="?", const=0.0, metavar="MARGIN", help="no training: the constants "
                   "of model.memory that fit OUT/memory.csv best while no prediction is more than MARGIN "
                   "(default 0.0: none) below its measured peak")
    p.add_argument("--measure", metavar="JSON", help=argparse.SUPPRESS)  # child mode: one config
    args = p.parse_args(argv)

    if args.measure:
        cfg = {**BASE, "num_layers": 1, **json.loads(args.measure)}
        cfg.setdefault("name", name_of(cfg))
        print(json.dumps(measure(cfg, args.threads, args.steps or default_steps(cfg, args.threads),
                                 args.epochs)), flush=True)
        return 0

    if args.reuse:
        report(read_csv(args.out / "memory.csv"), args.out)
        return 0
    if args.fit is not None:
        calibration, low, high = fit(read_csv(args.out / "memory.csv"), margin=args.fit)
        print(f"{calibration}\npredictions from {low:+.1%} to {high:+.1%} of the measured peaks")
        return 0
    if args.merge:
        report(merge([read_csv(Path(d) / "memory.csv") for d in args.merge]), args.out)
        return 0

    grid = grid_configs(args.quick)
    if args.configs:
        wanted = set(args.configs.split(","))
        known = {c["name"]: c for c in grid_configs() + grid_configs(quick=True)}
        unknown = wanted - set(known)
        if unknown:
            p.error(f"unknown configs {sorted(unknown)}; known: {', '.join(known)}")
        grid = [known[n] for n in known if n in wanted]
    def measure_config(cfg: dict) -> dict | None:
        steps = args.steps or default_steps(cfg, args.threads)
        started = time.perf_counter()
        runs = []
        for _ in range(args.repeats):
            try:
                runs.append(run_child(cfg, args.threads, steps, args.timeout, args.epochs))
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"FAILED {cfg['name']}: {e}", file=sys.stderr, flush=True)
        if not runs:
            return None
        # The highest of the fresh-process runs: the allocator's placement varies from run to run.
        row = max(runs, key=lambda r: r["measured_mb"])
        row.update(repeats=len(runs), measured_min_mb=min(r["measured_mb"] for r in runs),
                   measured_runs_mb=[round(r["measured_mb"], 1) for r in runs])
        row.update(predict(row))
        print(f"{cfg['name']:>18}: measured {row['measured_mb']:7.0f} MB, predicted {row['predicted_mb']:7.0f} MB "
              f"({row['error_pct']:+.1f}%), baseline {row['baseline_mb']:.0f} MB, {row['sec_per_step']:.2f} s/step, "
              f"{time.perf_counter() - started:.0f} s in all", flush=True)
        return row

    rows = []
    # ``--parallel`` children at once, as a sweep runs that many trials side by side.
    with ThreadPoolExecutor(args.parallel) as pool:
        for row in pool.map(measure_config, grid):
            if row:
                rows.append(row)
                write_csv(rows, args.out / "memory.csv")  # partial results survive an interruption
    if not rows:
        return 1
    print()
    report(rows, args.out)
    return 0


def _tflop_per_step(cfg: dict) -> float:
    """Rough floating-point work of one training step (forward + backward = 3 x forward)."""
    h, e, v = cfg["hidden_size"], cfg["embedding_size"], cfg["vocab_size"]
    width, per_token = e, h * v
    for _ in range(cfg["num_layers"]):
        per_token += 4 * h * (width + h)
        width = h
    return 6 * cfg["batch_size"] * (cfg["max_tokens"] - 1) * per_token / 1e12


if __name__ == "__main__":
    sys.exit(main())
