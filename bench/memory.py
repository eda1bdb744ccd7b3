"""Predicted against measured peak memory of a training step (``model.memory`` vs reality).

The measuring is ``model.calibration``'s (the same child and fit ``lstm-sweep calibrate`` uses):
each config trains in its own fresh child process *as a trial does* (seeded, one TensorFlow
thread, Ray Tune imported, padded batches of varying width, epochs with validation and a
checkpoint save), two children at once; the measure is its resident high-water mark above its
baseline (data ready, no model yet) on the CPU, TensorFlow's allocator peak on a GPU. See that
module's docstring for how. This script is the caller that prints tables and writes files:

* the grid (default): 20 configs, predicted with the built-in ``CPU_CALIBRATION``;
* ``--held-out``: the calibration ``lstm-sweep calibrate`` stored for this machine's device
  against 8 configs that were not in its fit (target: each within -10% ... +25% of its measured
  peak), beside the built-in calibration's error;
* ``--fit MARGIN``: the constants that fit OUT/memory.csv (``model.calibration.fit``).

The resident peak of one config varies between fresh processes (the allocator places the big
buffers differently; usually by under 10%, once by 40%), so ``--repeats N`` measures each config
in N processes and keeps the highest, and ``--merge`` combines earlier runs the same way.

The parent prints a markdown table (error = (predicted - measured) / measured), writes
``OUT/memory.csv`` (``OUT/heldout.csv`` with ``--held-out``) and ``OUT/memory.png`` (log-log,
with the target band) and says whether every prediction is within the target: at most 10%
below, 25% above.

Usage (from the repository root)::

    .venv/bin/python bench/memory.py              # the grid, 20 configs (about 25 minutes on 2 cores)
    .venv/bin/python bench/memory.py --repeats 2  # each config in 2 fresh processes, the higher counts
    .venv/bin/python bench/memory.py --quick      # 4 small configs, a smoke check (~1 minute)
    .venv/bin/python bench/memory.py --held-out   # after `lstm-sweep calibrate`: 8 configs outside its fit
    .venv/bin/python bench/memory.py --configs h2048-l2-b1024,h256-l1-b32
    .venv/bin/python bench/memory.py --reuse      # recompute predictions for OUT/memory.csv, no training
    .venv/bin/python bench/memory.py --merge bench/results/run1 bench/results/run2  # highest of all runs
    .venv/bin/python bench/memory.py --fit -0.10  # the constants that fit OUT/memory.csv
    .venv/bin/python bench/memory.py --measure '{"hidden_size": 256, "batch_size": 32}'  # one child
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lstm_sweep.model.calibration import (BASE, calibration_file, config_of, default_steps, device_key, fit,
                                          gpu_visible, load_calibration, measure_one, name_of)
from lstm_sweep.model.memory import CPU_CALIBRATION, Calibration, estimate_memory

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MiB = 2**20
UNDER, OVER = -0.10, 0.25  # target band of (predicted - measured) / measured

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
# Outside model.calibration.GRID (and QUICK): hidden 256-2048, batch 128-1024, 1-2 layers, dropout.
HELD_OUT = [(256, 1, 128), (256, 1, 1024), (512, 1, 512), (512, 2, 1024), (1024, 1, 128), (1024, 2, 512, 0.2),
            (2048, 1, 128), (2048, 1, 256)]


def grid_configs(quick: bool = False) -> list[dict]:
    if quick:
        return [config_of(*c) for c in QUICK]
    return [config_of(*c) for c in GRID] + [config_of(**c) for c in SIDE]


def run_child(cfg: dict, threads: int, steps: int, timeout: float, epochs: int = 2) -> dict:
    """One config in one fresh trial-like process (``model.calibration.measure_one``)."""
    return measure_one(cfg, threads=threads, steps=steps, epochs=epochs, timeout=timeout)


def predict(row: dict, calibration: Calibration = CPU_CALIBRATION) -> dict:
    est = estimate_memory({k: row[k] for k in ("vocab_size", "embedding_size", "hidden_size", "num_layers",
                                               "batch_size", "seq_len", "dropout")},
                          precision=row.get("precision") or "float32", calibration=calibration)
    predicted = est.total / MiB
    return {"predicted_mb": predicted, "state_mb": est.state / MiB, "activations_mb": est.activations / MiB,
            "workspace_mb": est.workspace / MiB, "checkpoint_mb": est.checkpoint / MiB,
            "error_pct": 100 * (predicted - row["measured_mb"]) / row["measured_mb"]}


COLUMNS = ["name", "vocab_size", "embedding_size", "hidden_size", "num_layers", "batch_size", "seq_len",
           "dropout", "precision", "params", "epochs", "predicted_mb", "measured_mb", "error_pct",
           "builtin_predicted_mb", "builtin_error_pct", "state_mb", "activations_mb",
           "workspace_mb", "checkpoint_mb", "checkpoint_peak_mb", "tf_peak_mb", "gpu_process_mb", "peak_first_mb",
           "peak_steady_mb", "sampled_peak_mb", "baseline_mb", "first_step_s", "sec_per_step", "steps",
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
                elif k in ("name", "device", "precision"):
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
    builtin = any("builtin_error_pct" in r for r in rows)
    out = ["| config | params | predicted MB | measured MB | error % |" + (" built-in predicted MB | built-in error % |"
                                                                          if builtin else "")
           + " runs MB | 1st-step RSS MB | later-steps RSS MB | checkpoint RSS MB | TF allocator peak MB | s/step |",
           "|---|---:|---:|---:|---:|" + "---:|---:|" * builtin + "---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        runs = "/".join(f"{x:.0f}" for x in r.get("measured_runs_mb") or [r["measured_mb"]])
        old = f" {r['builtin_predicted_mb']:,.0f} | {r['builtin_error_pct']:+.1f} |" if builtin else ""
        out.append(f"| {r['name']} | {r['params']:,} | {r['predicted_mb']:,.0f} | {r['measured_mb']:,.0f} "
                   f"| {r['error_pct']:+.1f} |{old} {runs} | {r['peak_first_mb']:,.0f} | {r['peak_steady_mb']:,.0f} "
                   f"| {r.get('checkpoint_peak_mb', float('nan')):,.0f} "
                   f"| {r.get('tf_peak_mb', float('nan')):,.0f} | {r['sec_per_step']:.2f} |")
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
    lines.append(f"process baseline (TensorFlow and Ray Tune imported, data ready): "
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
        if not sel:
            continue
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


def report(rows: list[dict], out_dir: Path, calibration: Calibration = CPU_CALIBRATION,
           name: str = "memory") -> None:
    rows = [dict(r, **predict(r, calibration)) for r in rows]
    if calibration != CPU_CALIBRATION:
        rows = [dict(r, builtin_predicted_mb=p["predicted_mb"], builtin_error_pct=p["error_pct"])
                for r, p in ((r, predict(r)) for r in rows)]
    write_csv(rows, out_dir / f"{name}.csv")
    plot(rows, out_dir / f"{name}.png")
    print(table(rows))
    print()
    print(verdict(rows))
    print(f"wrote {out_dir / f'{name}.csv'} and {out_dir / f'{name}.png'}")


def held_out_configs() -> tuple[list[dict], Calibration, str]:
    """The held-out configs, and the calibration ``lstm-sweep calibrate`` stored for this device
    (SystemExit when there is none, or when a held-out config was in its fit)."""
    key = device_key(gpu_visible())
    calibration, line = load_calibration(key)
    if not calibration_file(key).exists() or calibration == CPU_CALIBRATION:
        raise SystemExit(f"--held-out: {line}")
    fitted = {c["name"] for c in json.loads(calibration_file(key).read_text())["configs"]}
    grid = [config_of(*c) for c in HELD_OUT]
    if gpu_visible():
        grid += [config_of(*c, precision="mixed_float16") for c in HELD_OUT]
    overlap = sorted(fitted & {c["name"] for c in grid})
    if overlap:
        raise SystemExit(f"--held-out: {', '.join(overlap)} were in the calibration's fit; not held out")
    return grid, calibration, line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few small configs, a smoke check")
    p.add_argument("--held-out", action="store_true", help="the calibration `lstm-sweep calibrate` stored for "
                   "this device against 8 configs outside its fit")
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
    p.add_argument("--measure", metavar="JSON", help="one config in one child; print its figures as JSON")
    args = p.parse_args(argv)

    if args.measure:
        cfg = {**BASE, "num_layers": 1, **json.loads(args.measure)}
        cfg.setdefault("name", name_of(cfg))
        print(json.dumps(run_child(cfg, args.threads, args.steps or default_steps(cfg, args.threads), args.timeout,
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

    calibration, name = CPU_CALIBRATION, "memory"
    grid = grid_configs(args.quick)
    if args.held_out:
        grid, calibration, line = held_out_configs()
        name = "heldout"
        print(f"predicting with the {line}", flush=True)
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
        row.update(predict(row, calibration))
        print(f"{cfg['name']:>18}: measured {row['measured_mb']:7.0f} MB, predicted {row['predicted_mb']:7.0f} MB "
              f"({row['error_pct']:+.1f}%), baseline {row['baseline_mb']:.0f} MB, {row['sec_per_step']:.2f} s/step, "
              f"{time.perf_counter() - started:.0f} s in all", flush=True)
        return row

    rows = []
    started = time.perf_counter()
    # ``--parallel`` children at once, as a sweep runs that many trials side by side.
    with ThreadPoolExecutor(args.parallel) as pool:
        for row in pool.map(measure_config, grid):
            if row:
                rows.append(row)
                write_csv(rows, args.out / f"{name}.csv")  # partial results survive an interruption
    if not rows:
        return 1
    print(f"\n{len(rows)} configs measured in {time.perf_counter() - started:.0f} s\n")
    report(rows, args.out, calibration, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
