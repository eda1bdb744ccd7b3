"""Trials per hour on one Ray node against two, and what a trial costs before it trains.

The same sweep runs twice in this process, side by side: on a Ray cluster of one node, then on
one of two nodes of the same size (``ray.cluster_utils.Cluster`` on 127.0.0.1: each node its
own raylet and object store with ``--cpus`` CPUs, its processes pinned to ``--cpus`` cores of
this machine of their own, as separate machines would be). The sweep is ``--trials`` copies of one fixed config (nothing searched, no
early stopping), so both runs do the same work and only the nodes differ.

Per trial it records:

* **start-up overhead**: from the start of the trial's worker process (Ray starts one per
  trial) to its first training step, minus building and compiling its model: starting
  Python and Ray's worker, importing TensorFlow and our trainable, loading the cached token
  arrays and building the input pipeline. (``actor_up_s`` in the CSV: from the process's
  start to Ray Tune's ``Callback.on_trial_start`` on the driver, which comes once the
  trial's actor is up.)
* the node it ran on, and when it started and ended (the timeline plot).

Trials per hour are counted over the trials' own span (the first worker's start to the last
trial's end), beside the sweep's whole wall time (with Ray's start, tokenizing and writing
the results). Target (issue 5): two nodes finish at least 1.8 times as many trials per hour
as one.

Usage (about 6 minutes on 2 cores)::

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
from ray import tune  # noqa: E402
from tables import markdown  # noqa: E402  (bench/tables.py, beside this file)

TARGET = 1.8


class TrialStarts(tune.Callback):
    """When Ray Tune started each trial, by the driver's clock (the trials share the machine's)."""

    def __init__(self):
        self.started: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.time())


def sweep_config(out: Path, trials: int, epochs: int, lines: int):
    from lstm_sweep.search.config import parse_config

    return parse_config({
        "name": "scale", "output": str(out),
        "data": {"path": "builtin", "builtin_lines": lines, "vocab_size": 2000, "seed": 0},
        "space": {"embedding_size": 32, "hidden_size": 128, "num_layers": 1, "dropout": 0.0,
                  "learning_rate": 3e-3, "batch_size": 64},
        "budget": {"num_samples": trials, "max_epochs": epochs, "max_concurrent": trials},
        "asha": {"grace_period": epochs},
        "resources": {"cpus_per_trial": 1, "trial_memory_gb": 1},
    })


def run_on(nodes: int, cpus: int, config) -> tuple[pd.DataFrame, float]:
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
    starts = TrialStarts()
    try:
        began = time.perf_counter()
        outcome = run_sweep(config, name=f"{nodes}-nodes", address=cluster.address, callbacks=[starts])
        wall = time.perf_counter() - began
    finally:
        ray.shutdown()
        cluster.shutdown()
    rows = []
    for record in outcome.records:
        reports = _reports(outcome.run_dir, record.trial_id)
        last = reports.iloc[-1]
        started = float(last["process_started_at"])
        rows.append({"nodes": nodes, "trial_id": record.trial_id, "status": record.status,
                     "node": record.node.split("/")[-1], "started": started, "ended": float(last["timestamp"]),
                     "actor_up_s": starts.started[record.trial_id] - started,
                     "overhead_s": float(last["first_step_at"]) - started - float(last["build_seconds"]),
                     "build_s": float(last["build_seconds"]), "train_s": float(reports["epoch_seconds"].sum())})
    return pd.DataFrame(rows), wall


def _reports(run_dir: Path, trial_id: str) -> pd.DataFrame:
    (folder,) = [p for p in (run_dir / "ray").glob(f"*{trial_id}*") if p.is_dir()]
    return pd.read_json(folder / "result.json", lines=True, dtype=False)


def plot(trials: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(trials.nodes.unique())
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 1.2 + 1.1 * len(runs) * 1.2), sharex=True)
    for ax, nodes in zip(axes, runs):
        run = trials[trials.nodes == nodes]
        zero = run.started.min()
        lanes = {node: i for i, node in enumerate(sorted(run.node.unique()))}
        for _, t in run.iterrows():
            lane = lanes[t.node]
            ax.barh(lane, t.overhead_s, left=t.started - zero, color="tab:gray", edgecolor="k", lw=0.5)
            ax.barh(lane, t.ended - t.started - t.overhead_s, left=t.started - zero + t.overhead_s,
                    color="tab:blue", edgecolor="k", lw=0.5)
        ax.set_yticks(list(lanes.values()), [f"node {n}" for n in lanes])
        ax.set_title(f"{nodes} node{'s' if nodes > 1 else ''}: {len(run)} trials in {run.ended.max() - zero:.0f} s",
                     fontsize=9)
    axes[-1].set_xlabel("seconds since the first trial started (gray: start-up, blue: training)")
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
    config = sweep_config(work, args.trials, args.epochs, args.lines)
    frames, walls = [], {}
    for nodes in (1, 2):
        trials, walls[nodes] = run_on(nodes, args.cpus, config)
        frames.append(trials)
    trials = pd.concat(frames, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    trials.to_csv(args.out / "scale.csv", index=False)
    plot(trials, args.out / "scale.png")

    rows, rates = [], {}
    for nodes, run in trials.groupby("nodes"):
        span = run.ended.max() - run.started.min()
        rates[nodes] = 3600 * len(run) / span
        rows.append({"nodes": nodes, "CPUs a node": args.cpus, "trials": len(run),
                     "completed": int((run.status == "completed").sum()),
                     "nodes used": run.node.nunique(), "sweep wall s": round(walls[nodes], 1),
                     "trials' span s": round(span, 1), "trials/hour": round(rates[nodes]),
                     "start-up s (median)": round(run.overhead_s.median(), 2),
                     "start-up s (max)": round(run.overhead_s.max(), 2),
                     "build s (median)": round(run.build_s.median(), 2),
                     "training s a trial (median)": round(run.train_s.median(), 1)})
    table = pd.DataFrame(rows)
    print(markdown(table))
    speedup = rates[2] / rates[1]
    print(f"sweep wall time, one node / two nodes: {walls[1] / walls[2]:.2f}x")
    print(f"two nodes / one node, trials per hour: {speedup:.2f}x (target >= {TARGET}x) -> "
          f"{'HOLDS' if speedup >= TARGET else 'DOES NOT HOLD'}")
    print(f"wrote {args.out / 'scale.csv'} and {args.out / 'scale.png'}")
    return 0 if speedup >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
