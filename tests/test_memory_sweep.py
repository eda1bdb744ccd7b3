"""Memory-aware trials in real sweeps: infeasible configs, the OOM safety net, GPU shares.

A real local Ray and real TensorFlow training on tiny data. The GPU is the one fake part:
the session's Ray cluster counts one GPU, which Ray schedules shares of, while TensorFlow
(finding none) trains on the CPU.
"""

import itertools

import pandas as pd
import pytest

from lstm_sweep.results import load_experiment
from lstm_sweep.search.resources import GiB, TrialSizer
from lstm_sweep.search.sweep import run_sweep
from lstm_sweep.search.trainable import InjectOutOfMemory

pytestmark = pytest.mark.slow

SMALL = {"embedding_size": 8, "hidden_size": 8, "num_layers": 1, "batch_size": 64}


def plan_of(config, vocab=400):
    """The plan for ``config`` at its own batch size."""
    plan = TrialSizer(vocab_size=vocab, seq_len=14, trial_memory_bytes=64 * GiB).plan(config)
    assert plan.batch_size_used == config["batch_size"]
    return plan


def predicted(config, vocab=400):
    """The memory model's peak for ``config`` at its own batch size."""
    return plan_of(config, vocab).predicted_peak_bytes


def test_a_config_that_cannot_fit_is_reported_infeasible_and_not_run(tmp_path, local_ray, tiny_sweep):
    big = {**SMALL, "hidden_size": 1024, "batch_size": 8}  # at the smallest allowed batch
    small_need, big_need = predicted(SMALL), predicted(big)
    assert small_need < big_need
    budget = (small_need + big_need) / 2
    config = tiny_sweep(tmp_path, samples=4, epochs=1, space={"hidden_size": {"choice": [8, 1024]}},
                        resources={"trial_memory_gb": budget / GiB, "min_batch_size": 8})
    run_sweep(config, name="run")
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")

    assert {"infeasible", "completed"} <= set(trials.status)
    infeasible = trials[trials.status == "infeasible"]
    assert (infeasible.hidden_size == 1024).all() and (infeasible.epochs == 0).all()
    assert (infeasible.batch_size_used == 0).all()
    assert (infeasible.predicted_peak_mb > infeasible.budget_mb).all()
    assert infeasible.error.str.contains("budget").all()
    ran = trials[trials.status != "infeasible"]
    assert (ran.hidden_size == 8).all()
    assert (ran.batch_size_used == ran.batch_size_requested).all()
    assert (ran.predicted_peak_mb <= ran.budget_mb).all() and (ran.measured_peak_mb > 0).all()
    assert (ran.oom_retries == 0).all()
    # Infeasible trials left no epochs in curves.csv and no checkpoint.
    curves = pd.read_csv(tmp_path / "run" / "curves.csv")
    assert set(curves.trial_id) == set(ran.trial_id)


def test_an_oom_halves_the_batch_and_resumes_from_the_last_epoch(tmp_path, local_ray, tiny_sweep):
    # Epochs of 19 steps: a trial may still trail the unigram model after the first; it must go on.
    config = tiny_sweep(tmp_path, samples=1, epochs=3, space={"batch_size": 64},
                        asha={"grace_period": 1, "reduction_factor": 2, "stop_at_baseline": False})
    run_sweep(config, name="run", trial_hooks=[InjectOutOfMemory(above=32, from_epoch=1)])
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    curves = pd.read_csv(tmp_path / "run" / "curves.csv")

    row = trials.iloc[0]
    assert row.status == "completed" and row.epochs == 3
    assert (row.batch_size_requested, row.batch_size_used, row.oom_retries) == (64, 32, 1)
    # Epoch 1 trained at 64; the OOM hit epoch 2, which was redone at 32 from epoch 1's
    # checkpoint: every epoch once, in order, and no restart from scratch.
    assert curves.epoch.tolist() == [1, 2, 3]
    assert curves.val_loss.iloc[-1] < curves.val_loss.iloc[0]


def test_a_trial_out_of_retries_fails_with_the_reason(tmp_path, local_ray, tiny_sweep):
    config = tiny_sweep(tmp_path, samples=1, epochs=1, space={"batch_size": 64},
                        resources={"max_oom_retries": 2})
    run_sweep(config, name="run", trial_hooks=[InjectOutOfMemory(above=8)])
    row = pd.read_csv(tmp_path / "run" / "trials.csv").iloc[0]
    assert row.status == "failed" and row.epochs == 0
    assert row.oom_retries == 3
    assert row.error.startswith("out of memory at batch 16 after 2 halvings")


def test_small_trials_share_a_gpu_and_big_ones_get_more(tmp_path, local_ray, tiny_sweep):
    small = {**SMALL, "embedding_size": 16}
    big = {**small, "hidden_size": 256}
    gpu_memory = 8 * plan_of(small).need_bytes  # a small trial needs exactly 1/8 of this "GPU"
    assert plan_of(big).need_bytes > gpu_memory / 8
    config = tiny_sweep(tmp_path, samples=6, epochs=2, concurrent=4,
                        space={"embedding_size": 16, "hidden_size": {"choice": [8, 256]}},
                        # Ray's fake GPU: TensorFlow trains on the CPU; packing is what this test is about.
                        resources={"cpus_per_trial": 0.5, "gpus_per_trial": 1, "gpu_process_reserve_mb": 0,
                                   "gpu_memory_gb": gpu_memory / GiB, "gpu_share_grid": 8,
                                   "allow_cpu_fallback": True})
    outcome = run_sweep(config, name="run")
    trials = pd.read_csv(tmp_path / "run" / "trials.csv").set_index("trial_id")

    assert set(trials.hidden_size) == {8, 256}
    assert (trials.loc[trials.hidden_size == 8, "gpu_share"] == 1 / 8).all()
    assert (trials.loc[trials.hidden_size == 256, "gpu_share"] > 1 / 8).all()
    assert (trials.predicted_peak_mb <= trials.budget_mb).all()

    # Which trials ran at the same time, from each trial's start and its running time.
    frames = load_experiment_frames(tmp_path / "run" / "ray")
    spans = {tid: (f.trial_started.iloc[0], f.trial_started.iloc[0] + f.time_total_s.iloc[-1])
             for tid, f in frames.items()}
    overlapping = [(a, b) for a, b in itertools.combinations(spans, 2)
                   if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]
    assert overlapping, "no two trials shared the one GPU"
    for a, b in overlapping:  # Ray never granted more than the whole GPU at once
        assert trials.gpu_share[a] + trials.gpu_share[b] <= 1
    assert len(outcome.records) == 6


def load_experiment_frames(experiment_dir):
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment_dir))
    ids = {r.trial_id for r in load_experiment(experiment_dir, max_epochs=2)}
    return {tid: frame for tid, frame in analysis.trial_dataframes.items() if tid in ids and len(frame)}
