"""The memory model and the per-trial plan built on it: no Ray, no training."""

import subprocess
import sys

import pytest
from conftest import REPO

from lstm_sweep.model import build_language_model
from lstm_sweep.model.memory import count_parameters, estimate_memory, estimate_peak_bytes, largest_batch_that_fits
from lstm_sweep.search.config import parse_config
from lstm_sweep.search.plan import plan_table, space_configs
from lstm_sweep.search.resources import GiB, MiB, NodeInfo, TrialSizer, make_sizer

BASE = dict(vocab_size=7000, embedding_size=256, hidden_size=512, num_layers=1, batch_size=64, seq_len=14)


def peak(**changes):
    return estimate_peak_bytes({**BASE, **changes})


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
def test_parameter_count_matches_keras(cell, layers):
    model = build_language_model(vocab_size=50, embedding_size=8, hidden_size=12, num_layers=layers, cell=cell)
    assert count_parameters(50, 8, 12, layers, cell) == model.count_params()


def test_peak_grows_with_every_size_and_is_linear_in_batch():
    for name, small, big in [("batch_size", 32, 1024), ("hidden_size", 256, 2048), ("vocab_size", 7000, 12000),
                             ("embedding_size", 16, 256), ("num_layers", 1, 2), ("seq_len", 5, 14)]:
        assert peak(**{name: small}) < peak(**{name: big}), name
    steps = [peak(batch_size=b) for b in (1, 2, 3, 100)]
    slope = steps[1] - steps[0]
    assert steps[2] - steps[1] == pytest.approx(slope, abs=4)
    assert steps[3] - steps[0] == pytest.approx(99 * slope, abs=400)
    parts = estimate_memory({**BASE, "batch_size": 64})
    assert parts.total == parts.state + parts.activations + parts.workspace + parts.checkpoint
    assert parts.parameters == count_parameters(7000, 256, 512)


def test_half_precision_activations_need_less():
    assert estimate_peak_bytes({**BASE, "batch_size": 512}, "mixed_float16") < peak(batch_size=512)
    with pytest.raises(ValueError, match="precision"):
        estimate_peak_bytes(BASE, "float8")


@pytest.mark.parametrize("budget_gb", [0.5, 2, 8])
def test_largest_batch_fits_and_one_more_does_not(budget_gb):
    budget = int(budget_gb * GiB)
    fits = largest_batch_that_fits(BASE, budget)
    assert fits >= 1
    assert peak(batch_size=fits) <= budget < peak(batch_size=fits + 1)


def test_nothing_fits_a_budget_below_the_fixed_cost():
    assert largest_batch_that_fits({**BASE, "hidden_size": 2048, "num_layers": 2}, 100 * MiB) == 0
    with pytest.raises(ValueError, match="budget_bytes"):
        largest_batch_that_fits(BASE, 0)


def test_bad_sizes_are_refused_with_the_name():
    with pytest.raises(ValueError, match="hidden_size=0"):
        peak(hidden_size=0)
    with pytest.raises(ValueError, match="cell"):
        estimate_peak_bytes({**BASE, "cell": "transformer"})


# --- the plan of one trial ------------------------------------------------------------------

NOTEBOOK_OOM = {"embedding_size": 256, "hidden_size": 2048, "num_layers": 2, "dropout": 0.2, "batch_size": 1024}
SMALL = {"embedding_size": 16, "hidden_size": 64, "num_layers": 1, "dropout": 0.0, "batch_size": 64}


def test_cpu_trial_batch_is_cut_to_its_budget_and_reserves_its_peak():
    sizer = TrialSizer(vocab_size=7000, seq_len=14, host_budget_bytes=4 * GiB)
    plan = sizer.plan(NOTEBOOK_OOM)
    shape = sizer.spec(NOTEBOOK_OOM)
    assert plan.feasible and plan.batch_size_requested == 1024
    # The batch is planned against the budget less the headroom kept for the model's error.
    assert plan.batch_size_used == largest_batch_that_fits(shape, int(0.9 * 4 * GiB)) < 1024
    assert plan.predicted_peak_bytes == estimate_peak_bytes(shape.with_batch(plan.batch_size_used))
    assert plan.predicted_peak_bytes <= 0.9 * plan.budget_bytes and plan.budget_bytes == 4 * GiB
    assert plan.need_bytes == pytest.approx(plan.predicted_peak_bytes / 0.9, abs=1) and plan.need_bytes <= 4 * GiB
    # Ray's memory: the need and the process baseline, rounded up to an eighth of budget and baseline.
    most, eighth = 4 * GiB + sizer.process_baseline_bytes, (4 * GiB + sizer.process_baseline_bytes) / 8
    reserved = plan.resources()["memory"]
    assert plan.resources()["cpu"] == 1.0 and plan.resources()["gpu"] == 0.0
    assert plan.need_bytes + sizer.process_baseline_bytes <= reserved < plan.need_bytes + sizer.process_baseline_bytes + eighth
    assert reserved <= most and round(reserved / eighth, 6) == int(round(reserved / eighth, 6))
    small = sizer.plan(SMALL)
    assert small.batch_size_used == 64  # what fits is never more than what was asked


def test_similar_cpu_trials_ask_for_the_same_resources_so_their_workers_can_be_reused():
    sizer = TrialSizer(vocab_size=2000, seq_len=15, host_budget_bytes=10 * GiB)
    asks = {str(sizer.plan({**SMALL, "hidden_size": h, "embedding_size": e}).resources())
            for h in (32, 64, 128, 256) for e in (16, 32, 64)}
    assert len(asks) == 1
    # However big, a trial never reserves more than its share of the node: budget and baseline.
    big = sizer.plan({**NOTEBOOK_OOM, "batch_size": 64})
    assert big.resources()["memory"] <= 10 * GiB + sizer.process_baseline_bytes


def test_headroom_trades_batch_for_safety():
    shape = dict(embedding_size=256, hidden_size=1024, num_layers=1, dropout=0.0, batch_size=4096)
    plans = {h: TrialSizer(vocab_size=7000, seq_len=14, trial_memory_bytes=2 * GiB, headroom=h).plan(shape)
             for h in (0.0, 0.1, 0.3)}
    assert plans[0.0].batch_size_used > plans[0.1].batch_size_used > plans[0.3].batch_size_used > 0
    assert all(p.need_bytes <= p.budget_bytes for p in plans.values())
    with pytest.raises(ValueError, match="headroom"):
        TrialSizer(vocab_size=7000, seq_len=14, trial_memory_bytes=2 * GiB, headroom=1.0)


def test_config_that_fits_at_no_allowed_batch_is_infeasible():
    sizer = TrialSizer(vocab_size=7000, seq_len=14, trial_memory_bytes=300 * MiB, min_batch_size=8)
    plan = sizer.plan(NOTEBOOK_OOM)
    assert not plan.feasible and plan.batch_size_used == 0
    assert plan.predicted_peak_bytes > plan.budget_bytes == 300 * MiB
    assert "budget" in plan.reason and "batch 8" in plan.reason
    assert plan.resources()["memory"] == 0  # it will not train: reserve nothing
    assert plan.metrics()["predicted_peak_mb"] > plan.metrics()["budget_mb"]


def test_gpu_shares_pack_small_trials_and_give_big_ones_more():
    sizer = TrialSizer(vocab_size=7000, seq_len=14, gpus_per_trial=1, gpu_memory_bytes=16 * GiB, gpu_share_grid=8)
    small, big = sizer.plan(SMALL), sizer.plan(NOTEBOOK_OOM)
    assert small.gpu == 1 / 8 and small.batch_size_used == 64
    assert big.gpu > small.gpu and (big.gpu * 8).is_integer()
    reserve = sizer.gpu_process_reserve_bytes  # the CUDA context and libraries, outside TensorFlow's cap
    assert big.gpu * 16 * GiB - reserve >= big.predicted_peak_bytes  # its TensorFlow cap holds its peak
    assert big.budget_bytes == big.gpu * 16 * GiB - reserve
    assert big.batch_size_used == 1024  # hidden 2048 at batch 1024 fits a 16 GB GPU
    on_small_gpu = TrialSizer(vocab_size=7000, seq_len=14, gpus_per_trial=1, gpu_memory_bytes=4 * GiB)
    cut = on_small_gpu.plan(NOTEBOOK_OOM)
    assert cut.gpu == 1 and 0 < cut.batch_size_used < 1024  # the whole GPU, a smaller batch
    assert cut.resources()["memory"] == on_small_gpu.process_baseline_bytes  # host memory: the process only


def test_half_a_gpu_at_most():
    sizer = TrialSizer(vocab_size=7000, seq_len=14, gpus_per_trial=0.5, gpu_memory_bytes=8 * GiB)
    plan = sizer.plan(NOTEBOOK_OOM)
    assert plan.gpu == 0.5 and plan.need_bytes <= 4 * GiB - sizer.gpu_process_reserve_bytes


def test_sizer_from_a_cluster_uses_the_smallest_nodes_share():
    config = parse_config({"resources": {"cpus_per_trial": 2}})
    nodes = [NodeInfo(cpus=8, memory_bytes=32 * GiB), NodeInfo(cpus=4, memory_bytes=8 * GiB)]
    sizer = make_sizer(config, vocab_size=500, nodes=nodes)
    assert sizer.host_budget_bytes == 4 * GiB - sizer.process_baseline_bytes
    assert sizer.seq_len == config.data.max_tokens - 1 and sizer.vocab_size == 500


def test_a_searched_vocabulary_is_planned_per_trial():
    sizer = TrialSizer(vocab_size=7000, seq_len=14, host_budget_bytes=8 * GiB)
    assert sizer.plan({**SMALL, "vocab_size": 12000}).predicted_peak_bytes > sizer.plan(SMALL).predicted_peak_bytes


def test_plan_covers_the_grid_or_a_sample_with_the_largest_corner():
    grid = parse_config({"space": {"hidden_size": {"choice": [64, 2048]}, "batch_size": {"choice": [32, 1024]}}})
    configs = space_configs(grid, samples=20)
    assert sorted((c["hidden_size"], c["batch_size"]) for c in configs) == [(64, 32), (64, 1024), (2048, 32),
                                                                          (2048, 1024)]
    wide = parse_config({"space": {"hidden_size": {"logint": [32, 2048]}, "learning_rate": {"loguniform": [1e-4, 1e-2]}}})
    sample = space_configs(wide, samples=5, seed=1)
    assert len(sample) == 5 and sample[0]["hidden_size"] == 2048
    assert all(32 <= c["hidden_size"] <= 2048 and 1e-4 <= c["learning_rate"] <= 1e-2 for c in sample)
    assert space_configs(wide, samples=5, seed=1) == sample
    table = plan_table(configs, TrialSizer(vocab_size=7000, seq_len=14, trial_memory_bytes=1 * GiB))
    assert set(table.status) <= {"ok", "batch cut", "infeasible"} and len(table) == 4
    assert table.loc[(table.hidden == 64) & (table.batch == 32), "status"].item() == "ok"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lstm_sweep", *args], capture_output=True, text=True, timeout=120)


def test_plan_command_shows_the_lyrics_sweep_without_training():
    done = run_cli("plan", "--config", str(REPO / "sweeps" / "lyrics.yaml"), "--samples", "6")
    assert done.returncode == 0, done.stderr
    assert "2048" in done.stdout and "gpu" in done.stdout and "6 configs" in done.stdout


def test_plan_command_refuses_gpu_trials_without_gpu_memory(tmp_path):
    config = tmp_path / "gpu.yaml"
    config.write_text("resources: {gpus_per_trial: 1}\n")
    done = run_cli("plan", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("lstm-sweep: error: resources.gpu_memory_gb")
