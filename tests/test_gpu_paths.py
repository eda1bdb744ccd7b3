"""The GPU paths, proved without a GPU: fakes that raise TensorFlow's real errors and messages, a
fake ``nvidia-smi``, and Ray's fake GPU count (TensorFlow on the CPU sees none)."""

import json
import os
import stat
import subprocess
import sys

import pandas as pd
import pytest
import tensorflow as tf

from lstm_sweep.model.devices import describe_error, is_out_of_memory
from lstm_sweep.model.memory import estimate_memory
from lstm_sweep.model.spec import ModelSpec
from lstm_sweep.search.config import parse_config
from lstm_sweep.search.correction import CORRECTION_FILE, MemoryCorrectingSearcher
from lstm_sweep.search.resources import (CORRECTION_KEY, GiB, MiB, NodeInfo, TrialSizer, local_gpu_memory_bytes,
                                         make_sizer)
from lstm_sweep.search.trainable import FAULTS, InjectOutOfMemory

SMALL = {"embedding_size": 32, "hidden_size": 128, "num_layers": 1, "dropout": 0.0, "learning_rate": 1e-3,
         "batch_size": 64}
BIG = {**SMALL, "embedding_size": 256, "hidden_size": 2048, "num_layers": 2, "batch_size": 1024}


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """``nvidia-smi`` on PATH answering the memory queries as ``lines`` say (a query -> output or None to fail)."""
    def install(answers: dict[str, str | None]) -> None:
        cases = "\n".join(f'  *"{query}"*) {"echo " + repr(out) if out is not None else "exit 6"};;'
                          for query, out in answers.items())
        script = tmp_path / "nvidia-smi"
        script.write_text(f'#!/bin/sh\ncase "$*" in\n{cases}\n  *) exit 9;;\nesac\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    return install


# ---------------------------------------------------------------- 1. memory outside TensorFlow's cap

def test_the_usable_memory_of_a_gpu_is_the_drivers_total_less_its_reserve(fake_nvidia_smi):
    fake_nvidia_smi({"memory.total,memory.reserved": "15360, 243"})  # a T4
    assert local_gpu_memory_bytes() == (15360 - 243) * MiB
    fake_nvidia_smi({"memory.total,memory.reserved": None, "memory.total": "15360"})  # an older driver
    assert local_gpu_memory_bytes() == 15360 * MiB


def test_each_trials_cap_leaves_its_process_reserve_and_a_full_gpu_never_overflows():
    usable, reserve = 16 * GiB, 1 * GiB
    sizer = TrialSizer(vocab_size=7000, seq_len=14, gpus_per_trial=1, gpu_memory_bytes=usable,
                       gpu_share_grid=8, gpu_process_reserve_bytes=reserve)
    small, big = sizer.plan(SMALL), sizer.plan(BIG)
    for plan in (small, big):
        # TensorFlow's cap is the share less the CUDA context and libraries, and holds the need.
        assert plan.budget_bytes + reserve == plan.gpu * usable
        assert plan.need_bytes <= plan.budget_bytes
    # As many small trials as their shares allow fit the GPU with their reserves.
    packed = int(1 / small.gpu)
    assert packed * (small.budget_bytes + reserve) <= usable
    # A share too small for need + reserve is rounded up: the reserve counts in the packing.
    assert small.gpu >= (small.need_bytes + reserve) / usable


def test_a_gpu_share_that_holds_only_the_reserve_is_infeasible_with_the_reason():
    sizer = TrialSizer(vocab_size=7000, seq_len=14, gpus_per_trial=0.125, gpu_memory_bytes=8 * GiB,
                       gpu_process_reserve_bytes=1 * GiB)
    plan = sizer.plan(SMALL)
    assert not plan.feasible and "CUDA context" in plan.reason


def test_the_reserve_comes_from_the_config_and_the_gpu_memory_from_the_driver(fake_nvidia_smi):
    fake_nvidia_smi({"memory.total,memory.reserved": "81559, 559"})
    config = parse_config({"resources": {"gpus_per_trial": 0.25, "gpu_process_reserve_mb": 700}})
    sizer = make_sizer(config, vocab_size=7000, nodes=[NodeInfo(cpus=8, memory_bytes=64 * GiB, gpus=1)])
    assert sizer.gpu_memory_bytes == 81000 * MiB and sizer.gpu_process_reserve_bytes == 700 * MiB


# ---------------------------------------------------------------- 2. every GPU out of memory is one

@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_real_out_of_memory_errors_are_recognised(fault):
    error, message = FAULTS[fault]
    assert is_out_of_memory(error(None, None, message.format(batch=512)))


def test_other_errors_are_not_out_of_memory():
    assert not is_out_of_memory(tf.errors.InternalError(None, None, "Graph execution error: a shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # a bug of ours, not the device
    assert is_out_of_memory(tf.errors.UnknownError(None, None, "Could not create cudnn handle: "
                                                               "CUDNN_STATUS_INTERNAL_ERROR"))


def test_the_failure_keeps_the_shape_that_did_not_fit():
    error, message = FAULTS["resource_exhausted"]
    assert describe_error(error(None, None, message.format(batch=16) + "\n[[{{node ...}}]]")) == (
        "ResourceExhaustedError: " + message.format(batch=16))


# ---------------------------------------------------------------- 6. mixed precision's own memory

def test_mixed_precision_counts_its_weight_copies_not_only_half_activations():
    spec = ModelSpec(vocab_size=7000, embedding_size=256, hidden_size=2048, num_layers=2, batch_size=32, seq_len=14)
    full, mixed = estimate_memory(spec), estimate_memory(spec.replace(precision="mixed_float16"))
    assert full.mixed_precision == 0 and mixed.activations < full.activations
    params = mixed.parameters
    recurrent = params - 7000 * 256 - (2048 * 7000 + 7000)
    assert mixed.mixed_precision == params * 8 + recurrent * 4
    # At a small batch the weights dominate: mixed precision needs more memory, not less.
    assert mixed.total > full.total


# ---------------------------------------------------------------- 7. the compile cache

def test_every_command_keeps_cuda_compiled_kernels_in_a_large_cache(tmp_path):
    code = ("import os; from lstm_sweep.search.cli import main; main(['plan', '--samples', '1']); "
            "print(os.environ['CUDA_CACHE_PATH'], os.environ['CUDA_CACHE_MAXSIZE'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_CACHE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**env, "LSTM_SWEEP_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    path, size = done.stdout.split()[-2:]
    assert path == str(tmp_path / "cuda") and int(size) >= 2**32


# ---------------------------------------------------------------- the sweep corrects its own memory model


def _wrapped(tmp_path):
    from ray.tune.search import Searcher

    class Proposes(Searcher):
        def suggest(self, trial_id):
            return dict(SMALL)

        def on_trial_complete(self, trial_id, result=None, error=False):
            pass

    return MemoryCorrectingSearcher(Proposes(metric="val_loss", mode="min"), headroom=0.1, run_dir=tmp_path)


def test_trials_that_measure_above_their_predictions_tighten_the_plans_of_later_trials(tmp_path):
    searcher = _wrapped(tmp_path)
    assert CORRECTION_KEY not in searcher.suggest("t0")
    # Within the headroom: the model is right enough, nothing changes.
    searcher.on_trial_result("t0", {"predicted_peak_mb": 100.0, "measured_peak_mb": 108.0, "epoch": 1})
    assert searcher.factor == 1.0 and not (tmp_path / CORRECTION_FILE).exists()
    # A calibration that under-predicts by 30%: measured 1/0.7 of the prediction.
    searcher.on_trial_result("t0", {"predicted_peak_mb": 70.0, "measured_peak_mb": 100.0, "epoch": 2})
    assert searcher.factor == pytest.approx(1 / 0.7, rel=1e-3)
    later = searcher.suggest("t1")
    assert later[CORRECTION_KEY] == searcher.factor
    record = json.loads((tmp_path / CORRECTION_FILE).read_text())
    assert record["factor"] == searcher.factor and record["measurements"][0]["trial_id"] == "t0"
    # A corrected trial measuring as now predicted changes nothing; the factor never goes down.
    searcher.on_trial_result("t1", {"predicted_peak_mb": 100.0, "measured_peak_mb": 100.0,
                                    CORRECTION_KEY: searcher.factor})
    searcher.on_trial_result("t2", {"predicted_peak_mb": 100.0, "measured_peak_mb": 50.0})
    assert searcher.factor == pytest.approx(1 / 0.7, rel=1e-3)

    sizer = TrialSizer(vocab_size=7000, seq_len=14, trial_memory_bytes=512 * MiB)
    before, after = sizer.plan({**SMALL, "batch_size": 4096}), sizer.plan({**later, "batch_size": 4096})
    assert after.batch_size_used < before.batch_size_used
    assert after.metrics()[CORRECTION_KEY] == searcher.factor
    assert after.predicted_peak_bytes <= 0.9 * 512 * MiB


# ---------------------------------------------------------------- real sweeps: Ray's fake GPU, TensorFlow's CPU

@pytest.mark.slow
def test_a_cudnn_workspace_failure_halves_the_batch_and_the_plan_follows(tmp_path, local_ray, tiny_sweep):
    """Before: only ResourceExhaustedError counted, and cuDNN's InternalError failed the trial."""
    from lstm_sweep.search.sweep import run_sweep

    config = tiny_sweep(tmp_path, samples=1, epochs=2, space={"batch_size": 64},
                        asha={"grace_period": 1, "reduction_factor": 2, "stop_at_baseline": False})
    run_sweep(config, name="run", trial_hooks=[InjectOutOfMemory(above=32, from_epoch=1, fault="cudnn")])
    row = pd.read_csv(tmp_path / "run" / "trials.csv").iloc[0]
    assert row.status == "completed" and (row.batch_size_used, row.oom_retries) == (32, 1)
    vocab = len(json.loads((tmp_path / "run" / "vocab.json").read_text())["tokens"])
    at_32 = TrialSizer(vocab_size=vocab, seq_len=14, trial_memory_bytes=64 * GiB).plan(
        {k: row[k] for k in ("embedding_size", "hidden_size", "num_layers", "dropout", "learning_rate")}
        | {"batch_size": 64}, batch_size=32)
    assert row.predicted_peak_mb == round(at_32.predicted_peak_bytes / MiB, 1)  # the new batch's, not 64's
    assert row.measured_peak_mb > 0


@pytest.mark.slow
def test_a_trial_out_of_retries_says_which_tensor_did_not_fit(tmp_path, local_ray, tiny_sweep):
    from lstm_sweep.search.sweep import run_sweep

    config = tiny_sweep(tmp_path, samples=1, epochs=1, space={"batch_size": 32}, resources={"max_oom_retries": 1})
    run_sweep(config, name="run", trial_hooks=[InjectOutOfMemory(above=8)])
    row = pd.read_csv(tmp_path / "run" / "trials.csv").iloc[0]
    assert row.status == "failed"
    assert "OOM when allocating tensor with shape[16,2048]" in row.error


@pytest.mark.slow
def test_a_gpu_trial_that_sees_no_gpu_fails_unless_the_fallback_is_allowed(tmp_path, local_ray, tiny_sweep):
    """Ray grants the fake GPU; TensorFlow on this machine sees none: no silent hours on a CPU."""
    from lstm_sweep.search.sweep import run_sweep

    gpu = {"gpus_per_trial": 0.5, "gpu_memory_gb": 8, "gpu_process_reserve_mb": 256}
    refused = tiny_sweep(tmp_path / "a", samples=1, epochs=1, resources=gpu)
    run_sweep(refused, name="run")
    row = pd.read_csv(tmp_path / "a" / "run" / "trials.csv").iloc[0]
    assert row.status == "failed" and row.epochs == 0 and "TensorFlow sees no GPU" in row.error
    assert row.device == "CPU"

    allowed = tiny_sweep(tmp_path / "b", samples=1, epochs=1, resources={**gpu, "allow_cpu_fallback": True})
    run_sweep(allowed, name="run")
    row = pd.read_csv(tmp_path / "b" / "run" / "trials.csv").iloc[0]
    assert row.status == "completed" and row.device == "CPU" and row.gpu_share > 0


@pytest.mark.slow
def test_a_sweep_whose_calibration_under_predicts_corrects_itself(tmp_path, local_ray, tiny_sweep):
    from lstm_sweep.model.memory import CPU_CALIBRATION
    from lstm_sweep.search.sweep import run_sweep

    low = CPU_CALIBRATION.replace(state_copies=CPU_CALIBRATION.state_copies * 0.3,
                                  logit_copies=CPU_CALIBRATION.logit_copies * 0.3,
                                  layer_bytes=int(CPU_CALIBRATION.layer_bytes * 0.3))
    config = tiny_sweep(tmp_path, samples=3, epochs=1, concurrent=1)
    run_sweep(config, name="run", calibration=low)
    record = json.loads((tmp_path / "run" / CORRECTION_FILE).read_text())
    assert record["factor"] > 1 / 0.9
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert (trials[CORRECTION_KEY] > 1).sum() >= 1  # the trials proposed after the first measurement
    assert CORRECTION_KEY not in json.loads((tmp_path / "run" / "best.json").read_text())["params"]


# ---------------------------------------------------------------- 5. the command line says "use the GPUs"

def test_search_and_run_take_the_gpu_flags(capsys, tmp_path):
    from lstm_sweep.search.cli import _parser, main

    for command in ("search", "run"):
        args = _parser().parse_args([command, "--gpus-per-trial", "0.25", "--gpu-memory", "14.7"])
        assert (args.gpus_per_trial, args.gpu_memory) == (0.25, 14.7)
    assert main(["search", "--gpus-per-trial", "2", "--out", str(tmp_path)]) == 2  # before Ray starts
    assert "gpus" in capsys.readouterr().err
    assert main(["search", "--resume", str(tmp_path), "--gpus-per-trial", "0.5"]) == 2
    assert "--gpus-per-trial" in capsys.readouterr().err
