"""Per-trial overhead with and without reused worker processes, and one Ray node against two.

The same sweep runs three times in this process, side by side: on a Ray cluster of one node
with a fresh worker process for every trial (``resources.reuse_workers: false``, the
default), on the same cluster with Ray Tune reusing a finished trial's worker for the next
(``reuse_workers: true``), and on a cluster of two such nodes with reuse (``ray.cluster_utils.Cluster`` on
127.0.0.1: each node its own raylet and object store with ``--cpus`` CPUs, its processes pinned
to ``--cpus`` cores of this machine of their own, as separate machines would be). The sweep is
``--trials`` copies of one fixed config (nothing searched, no early stopping), so every run
does the same work and only the workers and nodes differ.

Per trial it records:

* **overhead**: what a worker slot spends on a trial besides training it. With one CPU a node,
  a node is one slot; its trials run one after another, so a trial's overhead is the time from
  the previous trial's last report on that node (or, for a node's first trial, from its worker
  process's start) to its own first training step: Ray Tune ending the last trial and starting
  this one, a new worker process (Python, Ray's worker, importing TensorFlow and the
  trainable) unless it is reused, loading the cached token arrays, building the input
  pipeline and the model. A node's first trial always pays for a new process; the table gives
  the later trials' overhead (the per-trial cost) beside it.
* the node it ran on, and when it started and ended (the timeline plot).

Trials per hour are counted over the trials' own span (the first worker's start to the last
trial's end), beside the sweep's whole wall time (with Ray's start, tokenizing and writing
the results). Targets: per-trial overhead at most 1 s with reuse (issue 15); two nodes finish at
least 1.8 times as many trials per hour as one (issue 5).

Usage (about 7 minutes on 2 cores)::

    .venv/bin/python bench/scale.py                      # 8 trials, 1 CPU a node
    .venv/bin/python bench/scale.py --trials 12 --epochs 3

Writes ``bench/results/scale.csv`` (one row per trial) and ``bench/results/scale.png`` (which
trial ran where and when) and prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every node on 127.0.0.1
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402
from tables import markdown  # noqa: E402  (bench/tables.py, beside this file)

TARGET = 1.8  # two nodes' trials per hour over one node's
OVERHEAD_TARGET_S = 1.0  # a reused worker's per-trial overhead
RUNS = (("1 node, a process a trial", 1, False), ("1 node, reused workers", 1, True), ("2 nodes, reused workers", 2, True))


def sweep_config(out: Path, trials: int, epochs: int, lines: int, reuse: bool = True):
    from lstm_sweep.search.config import parse_config

    return parse_config({
        "name": "scale", "output": str(out),
        "data": {"path": "builtin", "builtin_lines": lines, "vocab_size": 2000, "seed": 0},
        "space": {"embedding_size": 32, "hidden_size": 128, "num_layers": 1, "dropout": 0.0,
                  "learning_rate": 3e-3, "batch_size": 64},
        "budget": {"num_samples": trials, "max_epochs": epochs, "max_concurrent": trials},
        "asha": {"grace_period": epochs},
        "resources": {"cpus_per_trial": 1, "trial_memory_gb": 1, "reuse_workers": reuse},
    })


def run_on(nodes: int, cpus: int, config, label: str) -> tuple[pd.DataFrame, float]:
    """The sweep on a fresh cluster of ``nodes`` nodes; per-trial rows and the sweep's wall time."""
    import ray
    from ray.cluster_utils import Cluster

    from lstm_sweep.search.sweep import run_sweep

    # Each node's processes (its raylet, and the trial workers it starts, which inherit the
    # affinity) are pinned to cores of their own, as if they were separate machines; the
    # driver keeps every core. Without it the nodes share all cores, and a one-CPU trial,
    # which uses about 1.3 cores (TensorFlow's two inter-op threads), borrows from the other node.
    every_core = os.sched_getaffinity(0)
    cores = sorted(every_core)
    try:
        cluster = None
        for i in range(nodes):
            os.sched_setaffinity(0, set(cores[i * cpus:(i + 1) * cpus]) or every_core)
            args = {"num_cpus": cpus, "node_ip_address": "127.0.0.1"}
            if cluster is None:
                cluster = Cluster(initialize_head=True, head_node_args={**args, "include_dashboard": False})
            else:
                cluster.add_node(**args)
    finally:
        os.sched_setaffinity(0, every_core)
    cluster.wait_for_nodes()
    try:
        began = time.perf_counter()
        outcome = run_sweep(config, name=label.replace(" ", "-").replace(",", ""), address=cluster.address)
        wall = time.perf_counter() - began
    finally:
        ray.shutdown()
        cluster.shutdown()
    rows = []
    for record in outcome.records:
        reports = _reports(outcome.run_dir, record.trial_id)
        last = reports.iloc[-1]
        rows.append({"run": label, "nodes": nodes, "trial_id": record.trial_id, "status": record.status,
                     "node": record.node.split("/")[-1], "pid": int(last["pid"]),
                     "process_started": float(last["process_started_at"]),
                     "first_step": float(last["first_step_at"]), "ended": float(last["reported_at"]),
                     "reused": int(last["worker_trials_before"]) > 0,
                     "process_baseline_mb": float(last["process_baseline_mb"]),
                     "measured_peak_mb": float(last["measured_peak_mb"]),
                     "build_s": float(last["build_seconds"]), "train_s": float(reports["epoch_seconds"].sum())})
    return _overheads(pd.DataFrame(rows)), wall


def _overheads(trials: pd.DataFrame) -> pd.DataFrame:
    """Each trial's overhead: from the previous trial's end on its node (one slot a node), or from
    its worker's start for a node's first trial, to its first training step; ``started`` is that
    beginning (the timeline's gray bar)."""
    trials = trials.sort_values("first_step").copy()
    previous = trials.groupby("node").ended.shift()
    trials["started"] = previous.fillna(trials.process_started)
    trials["first_on_node"] = previous.isna()
    trials["overhead_s"] = trials.first_step - trials.started
    return trials


def _reports(run_dir: Path, trial_id: str) -> pd.DataFrame:
    (folder,) = [p for p in (run_dir / "ray").glob(f"*{trial_id}*") if p.is_dir()]
    return pd.read_json(folder / "result.json", lines=True, dtype=False)


def plot(trials: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(dict.fromkeys(trials.run))
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 1.2 + 1.1 * len(runs) * 1.2), sharex=True)
    for ax, label in zip(axes, runs):
        run = trials[trials.run == label]
        zero = run.started.min()
        lanes = {node: i for i, node in enumerate(sorted(run.node.unique()))}
        for _, t in run.iterrows():
            lane = lanes[t.node]
            ax.barh(lane, t.overhead_s, left=t.started - zero, color="tab:gray", edgecolor="k", lw=0.5)
            ax.barh(lane, t.ended - t.started - t.overhead_s, left=t.started - zero + t.overhead_s,
                    color="tab:blue", edgecolor="k", lw=0.5)
        ax.set_yticks(list(lanes.values()), [f"node {n}" for n in lanes])
        ax.set_title(f"{label}: {len(run)} trials in {run.ended.max() - zero:.0f} s", fontsize=9)
    axes[-1].set_xlabel("seconds since the first worker started (gray: overhead, blue: training)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=8, help="trials in the sweep (default 8)")
    p.add_argument("--epochs", type=int, default=2, help="epochs a trial (default 2)")
    p.add_argument("--lines", type=int, default=30000, help="synthetic corpus lines (default 30000)")
    p.add_argument("--cpus", type=int, default=1, help="CPUs of each node (default 1)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="scale-"))
    frames, walls = [], {}
    for label, nodes, reuse in RUNS:
        config = sweep_config(work, args.trials, args.epochs, args.lines, reuse=reuse)
        trials, walls[label] = run_on(nodes, args.cpus, config, label)
        frames.append(trials)
    trials = pd.concat(frames, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    trials.to_csv(args.out / "scale.csv", index=False)
    plot(trials, args.out / "scale.png")

    rows, rates, overheads = [], {}, {}
    for label, nodes, _ in RUNS:
        run = trials[trials.run == label]
        span = run.ended.max() - run.process_started.min()
        rates[label] = 3600 * len(run) / span
        later = run[~run.first_on_node]
        overheads[label] = later.overhead_s.median()
        rows.append({"run": label, "trials": len(run), "completed": int((run.status == "completed").sum()),
                     "nodes used": run.node.nunique(), "worker processes": run.pid.nunique(),
                     "sweep wall s": round(walls[label], 1), "trials' span s": round(span, 1),
                     "trials/hour": round(rates[label]),
                     "overhead a trial s (median / max)": f"{later.overhead_s.median():.2f} / {later.overhead_s.max():.2f}",
                     "a node's first trial s": round(run[run.first_on_node].overhead_s.median(), 2),
                     "build s": round(run.build_s.median(), 2),
                     "training s a trial": round(run.train_s.median(), 1),
                     "process baseline MB (min-max)": f"{run.process_baseline_mb.min():.0f}-{run.process_baseline_mb.max():.0f}",
                     "measured peak MB (min-max)": f"{run.measured_peak_mb.min():.0f}-{run.measured_peak_mb.max():.0f}"})
    print(markdown(pd.DataFrame(rows)))
    fresh, reused, two = (label for label, _, _ in RUNS)
    speedup = rates[two] / rates[reused]
    holds = overheads[reused] <= OVERHEAD_TARGET_S and speedup >= TARGET
    print(f"per-trial overhead, a process a trial / reused: {overheads[fresh]:.2f} s / {overheads[reused]:.2f} s "
          f"(target <= {OVERHEAD_TARGET_S} s); trials per hour reused / fresh: {rates[reused] / rates[fresh]:.2f}x")
    print(f"sweep wall time, one node / two nodes: {walls[reused] / walls[two]:.2f}x")
    print(f"two nodes / one node, trials per hour: {speedup:.2f}x (target >= {TARGET}x)")
    print(f"-> {'HOLDS' if holds else 'DOES NOT HOLD'}; wrote {args.out / 'scale.csv'} and {args.out / 'scale.png'}")
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
