"""GPU acceptance: does lstm-sweep work on this GPU machine? At most about 10 minutes on one GPU.

Run it where the sweeps will run, with lstm-sweep installed (``pip install -e '.[gpu]'``)::

    python bench/gpu_acceptance.py             # every check, on the first visible GPU
    python bench/gpu_acceptance.py --dry-run   # no GPU needed: the CPU checks run, the GPU checks SKIP

It prints one line per check, ``PASS``, ``FAIL`` or ``SKIP``, its name and its figures (a FAIL says
what to do), detail lines indented below it, and closes with ``N passed, N failed, N skipped``.
Exit status 0 when nothing failed. Each GPU check runs in fresh child processes, so no
TensorFlow in this process holds GPU memory while the trials run.

The checks, in order:

* ``memory-model`` (CPU): the predicted peak grows with every size and is linear in the batch,
  mixed precision predicts smaller activations, the largest batch that fits does and one more
  does not.
* ``calibration-file`` (CPU): a calibration written and read back is the same; a corrupt file
  falls back to the built-in one with a warning; the line naming this device's calibration.
* ``plan-gpu-memory`` (CPU): ``lstm-sweep plan`` of GPU trials at ``--gpu-memory 8`` cuts batches
  of 1024 (hidden 512 and 2048, 2 layers) to a quarter of that GPU, or finds them infeasible.
* ``tf-build`` (CPU): this TensorFlow is a CUDA build; its CUDA, cuDNN and compute capabilities.
* ``gpu-driver``: nvidia-smi and TensorFlow see the GPU; its compute capability has machine code
  in the wheel (else CUDA compiles PTX on first use, minutes per process: TensorFlow 2.21 has
  none for 9.0, H100/H200, tensorflow/tensorflow#62320) and the driver can run the wheel's CUDA.
* ``cudnn-kernel``: a Keras LSTM train step of our model has ``CudnnRNNV3`` in its traced graph,
  and is faster than the same model with ``use_cudnn=False``.
* ``peaks``: predicted (this device's calibration) against measured peaks, hidden 512/1024/2048
  x batch 64/256/1024, float32 and mixed_float16, each in a trial-like child: TensorFlow's
  allocator peak within -10% ... +25%; the process's whole use (nvidia-smi) beside it, whose
  excess over the allocator must fit ``resources.gpu_process_reserve_mb``.
* ``four-trials``: a real ``lstm-sweep search`` of four trials at ``--gpus-per-trial 0.25``
  sharing the GPU: all complete, 0 OOM retries, their summed use under the GPU's memory.
* ``batch-cut``: a hidden-2048, 2-layer, batch-1024 trial under a deliberately small
  ``--gpu-memory`` cuts its batch and completes without an out-of-memory error.
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
import warnings
from pathlib import Path

import yaml

from lstm_sweep.model import calibration as cal
from lstm_sweep.model.memory import (CPU_CALIBRATION, HEADROOM, estimate_memory, estimate_peak_bytes,
                                     largest_batch_that_fits)

MiB, GiB = 2**20, 2**30
BUDGET_S = 600  # the whole script
LM = dict(vocab_size=7000, embedding_size=256, seq_len=14)


class Fail(Exception):
    """The check failed; the message says what was seen and what to do."""


class Skip(Exception):
    """The check cannot run here; the message says why."""


# ------------------------------------------------------------------ CPU checks

def check_memory_model(ctx: dict) -> str:
    spec = dict(LM, hidden_size=1024, num_layers=1, batch_size=64)
    peak = lambda **c: estimate_peak_bytes({**spec, **c}, calibration=ctx["calibration"])  # noqa: E731
    for name, small, large in (("batch_size", 64, 128), ("hidden_size", 512, 1024), ("num_layers", 1, 2),
                               ("vocab_size", 2000, 7000), ("embedding_size", 64, 256)):
        if not peak(**{name: small}) < peak(**{name: large}):
            raise Fail(f"the predicted peak does not grow with {name} ({small} -> {large}): model/memory.py is broken")
    if abs((peak(batch_size=192) - peak(batch_size=128)) - (peak(batch_size=128) - peak(batch_size=64))) > 16:
        raise Fail("the predicted peak is not linear in the batch size: model/memory.py is broken")
    half, full = (estimate_memory(spec, precision=p, calibration=ctx["calibration"])
                  for p in ("mixed_float16", "float32"))
    if not (half.activations < full.activations and half.state == full.state):
        raise Fail("mixed_float16 does not predict smaller activations and the same float32 state: "
                   "model/memory.py is broken")
    budget = 4 * GiB
    fits = largest_batch_that_fits(spec, budget, calibration=ctx["calibration"])
    if not (fits and peak(batch_size=fits) <= budget < peak(batch_size=fits + 1)):
        raise Fail(f"largest_batch_that_fits gave {fits} for 4 GiB, which its own peaks contradict")
    big = peak(hidden_size=2048, num_layers=2, batch_size=1024) / MiB
    return f"hidden 2048, 2 layers, batch 1024: {big:,.0f} MB predicted; {fits} sentences fit 4 GiB at hidden 1024"


def check_calibration_file(ctx: dict) -> str:
    rows = []
    for cfg in cal.calibration_grid(quick=True):
        row = dict(cfg, seq_len=cfg["max_tokens"] - 1)
        spec = {k: row[k] for k in cal.SPEC_FIELDS if k != "precision"}
        rows.append(dict(row, measured_mb=estimate_peak_bytes(spec, calibration=CPU_CALIBRATION) / MiB))
    saved_cache = os.environ.get("LSTM_SWEEP_CACHE")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["LSTM_SWEEP_CACHE"] = folder
        try:
            other = CPU_CALIBRATION.replace(state_copies=5.0)
            cal.save_calibration("gpu-acceptance-test", other, rows)
            back, line = cal.load_calibration("gpu-acceptance-test")
            if back != other:
                raise Fail(f"a calibration read back differs from the one written ({back} != {other})")
            cal.calibration_file("gpu-acceptance-test").write_text("{not json")
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                fallback, _ = cal.load_calibration("gpu-acceptance-test")
            if fallback != CPU_CALIBRATION or not seen:
                raise Fail("a corrupt calibration file was not ignored with a warning")
        finally:
            if saved_cache is None:
                os.environ.pop("LSTM_SWEEP_CACHE", None)
            else:
                os.environ["LSTM_SWEEP_CACHE"] = saved_cache
    return f"round trip and corrupt-file fallback; this device: {ctx['calibration_line']}"


def check_plan(ctx: dict) -> str:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "gpu.yaml"
        config.write_text(yaml.safe_dump({
            "name": "acceptance-plan", "data": {"path": "builtin", "vocab_size": 7000},
            "space": {"embedding_size": 256, "hidden_size": {"choice": [512, 2048]}, "num_layers": 2,
                      "batch_size": 1024}, "resources": {"gpus_per_trial": 0.25}}))
        done = _lstm_sweep("plan", "--config", str(config), "--gpu-memory", "8", "--samples", "4", timeout=300)
    if done.returncode != 0:
        raise Fail(f"lstm-sweep plan --gpu-memory 8 exited {done.returncode}: {_last_line(done)}")
    if "GPU trials" not in done.stdout or "batch cut" not in done.stdout:
        raise Fail("lstm-sweep plan --gpu-memory 8 cut no batch of 1024 (hidden 512 and 2048, 2 layers) to a "
                   "quarter of an 8 GiB GPU: search/resources.py plans GPU trials wrongly\n" + _indent(done.stdout))
    return "batch 1024 of hidden 512/2048, 2 layers, at a quarter of an 8 GiB GPU\n" + _indent(done.stdout.strip())


def check_tf_build(ctx: dict) -> str:
    import tensorflow as tf

    info = dict(tf.sysconfig.get_build_info())
    ctx["build"] = info
    if not info.get("is_cuda_build"):
        message = (f"TensorFlow {tf.__version__} is not a CUDA build: install it with its CUDA libraries, "
                   "pip install 'tensorflow[and-cuda]' (lstm-sweep's [gpu] extra)")
        raise Skip(message) if ctx["dry_run"] else Fail(message)
    return (f"TensorFlow {tf.__version__}: CUDA {info.get('cuda_version')}, cuDNN {info.get('cudnn_version')}, "
            f"compute capabilities {', '.join(info.get('cuda_compute_capabilities', []))}")


# ------------------------------------------------------------------ GPU checks (each in child processes)

def check_gpu_driver(ctx: dict) -> str:
    lines = cal.nvidia_smi("--query-gpu=name,driver_version,memory.total", *ctx["gpu_arg"]).splitlines()
    if not lines:
        raise Fail("nvidia-smi finds no GPU: run this on the GPU machine with its NVIDIA driver installed, "
                   "or pass --dry-run for the CPU checks alone")
    name, driver, memory = [p.strip() for p in lines[0].split(",")][:3]
    reserved = cal.nvidia_smi("--query-gpu=memory.reserved", *ctx["gpu_arg"]).split()  # older drivers: none
    ctx["gpu_memory_mb"] = float(memory)
    ctx["usable_mb"] = float(memory) - (float(reserved[0]) if reserved and reserved[0].isdigit() else 0.0)
    child = _child("devices", timeout=300)
    if not child.get("gpus"):
        raise Fail(f"TensorFlow sees no GPU although nvidia-smi shows {name}: install the CUDA build "
                   "(pip install 'tensorflow[and-cuda]'), check that LD_LIBRARY_PATH does not shadow its CUDA "
                   f"libraries, and read TensorFlow's log: {child.get('log', '')[-300:]}")
    ctx["gpu_ok"] = True
    major, minor = child["gpus"][0].get("compute_capability") or (0, 0)
    capability = f"{major}.{minor}"
    caps = ctx["build"].get("cuda_compute_capabilities", [])
    sass = f"sm_{major}{minor}" in caps
    ptx = [c for c in caps if c.startswith("compute_") and int(c[8:]) <= 10 * major + minor]
    top = max([int(c.split('_')[1]) for c in caps if "_" in c] or [0])
    driver_cuda = _driver_cuda_version()
    build_cuda = tuple(int(x) for x in str(ctx["build"].get("cuda_version", "0")).split(".")[:2])
    detail = f"{name}, {memory} MiB, driver {driver} (CUDA {'.'.join(map(str, driver_cuda)) or '?'}), compute {capability}"
    if sass:
        return f"{detail}: machine code in this TensorFlow (sm_{major}{minor})"
    if not ptx:
        raise Fail(f"{detail}: TensorFlow {ctx['build'].get('cuda_version')} was built for {', '.join(caps)}, "
                   "nothing this GPU can run: use a TensorFlow build that supports it")
    if driver_cuda and driver_cuda < build_cuda:
        raise Fail(f"{detail}: CUDA must compile this TensorFlow's PTX ({ptx[-1]}, CUDA {build_cuda[0]}.{build_cuda[1]}) "
                   f"for compute {capability} and this driver supports CUDA {driver_cuda[0]}.{driver_cuda[1]} only: "
                   "update the NVIDIA driver")
    return (f"{detail}; note: no machine code for sm_{major}{minor} in this TensorFlow (newest sm_{top}): CUDA "
            f"compiles its PTX ({ptx[-1]}) on first use in every fresh process, which can take minutes "
            "(tensorflow/tensorflow#62320); lstm-sweep keeps the compiled kernels in CUDA_CACHE_PATH")


def check_cudnn(ctx: dict) -> str:
    _need_gpu(ctx)
    out = _child("cudnn", timeout=240)
    if not out["cudnn_ops"]:
        raise Fail(f"no CudnnRNNV3 in the traced train step (op types seen: {', '.join(out['rnn_ops']) or 'none'}): "
                   "the LSTM runs as a while-loop, several times slower. Check TensorFlow's log for "
                   "'Loaded cuDNN version', and that the layers keep tanh/sigmoid, no recurrent_dropout, unroll=False")
    speedup = out["plain_s"] / out["cudnn_s"]
    detail = (f"{', '.join(out['cudnn_ops'])} in the train step; {out['cudnn_s'] * 1e3:.1f} ms a step against "
              f"{out['plain_s'] * 1e3:.1f} ms with use_cudnn=False ({speedup:.1f}x; hidden 1024, batch 256)")
    if speedup < 1.2:
        raise Fail(f"{detail}: cuDNN is not faster; is the GPU shared with other work (nvidia-smi)?")
    return detail


def check_peaks(ctx: dict) -> str:
    _need_gpu(ctx)
    grid = [cal.config_of(h, 1, b, precision=p) for p in ("float32", "mixed_float16") for h in (512, 1024, 2048)
            for b in (64, 256, 1024)]
    rows = cal.measure(grid, parallel=ctx["parallel"], steps=5, epochs=1, timeout=_left(ctx, 0.45),
                       progress=None)
    if len(rows) < len(grid):
        missing = sorted({c["name"] for c in grid} - {r["name"] for r in rows})
        raise Fail(f"{len(missing)} configs failed to train ({', '.join(missing)}): run bench/memory.py --measure "
                   "on one of them to see its error")
    table, outside, overhead = [], [], []
    for r in rows:
        predicted = estimate_peak_bytes({k: r[k] for k in cal.SPEC_FIELDS if k != "precision"},
                                        precision=r["precision"], calibration=ctx["calibration"]) / MiB
        error = 100 * (predicted - r["measured_mb"]) / r["measured_mb"]
        whole = r.get("gpu_process_mb")
        if whole is not None:
            overhead.append(whole - r["measured_mb"])
        table.append(f"{r['name']:>22}  predicted {predicted:8,.0f} MB  TensorFlow peak {r['measured_mb']:8,.0f} MB "
                     f"{error:+6.1f}%  process {'?' if whole is None else f'{whole:,.0f}'} MB")
        if not -100 * HEADROOM <= error <= 25:
            outside.append(r["name"])
    reserve = _reserve_mb()
    lines = "\n" + _indent("\n".join(table)) + f"\n    calibration: {ctx['calibration_line']}"
    if outside:
        raise Fail(f"{len(outside)} of {len(rows)} predictions outside -10% ... +25% ({', '.join(outside)}): run "
                   "`lstm-sweep calibrate` on this machine, then this script again" + lines)
    if overhead and max(overhead) > reserve:
        raise Fail(f"processes use up to {max(overhead):,.0f} MB beyond TensorFlow's allocator, more than the "
                   f"{reserve:,.0f} MB reserved: set resources.gpu_process_reserve_mb: {50 * (max(overhead) // 50 + 2):.0f}"
                   + lines)
    seen = (f"; beyond the allocator {min(overhead):,.0f}-{max(overhead):,.0f} MB a process (reserve {reserve:,.0f} MB)"
            if overhead else "; nvidia-smi shows no process of ours (a container's pids): whole use not checked")
    return f"{len(rows)} configs within -10% ... +25%{seen}" + lines


def check_four_trials(ctx: dict) -> str:
    _need_gpu(ctx)
    # A quarter of the usable memory each (the share is that budget rounded up to the grid, at most
    # 0.25); the batch asked for is larger than a quarter holds, so the planner fills the quarter.
    quarter_gb = 0.999 * ctx["usable_mb"] / 1024 / 4
    space = {"embedding_size": 256, "hidden_size": {"choice": [1024, 2048]}, "num_layers": 2, "batch_size": 8192,
             "dropout": 0.0, "learning_rate": 1e-3}
    trials, peak_used = _sweep(ctx, "four", space, samples=4, flags=["--gpus-per-trial", "0.25", "--trial-memory",
                                                                      f"{quarter_gb:.3f}", "--max-concurrent", "4"])
    bad = [t for t in trials if t["status"] != "completed" or int(float(t.get("oom_retries") or 0)) > 0]
    shares = sorted({t.get("gpu_share") for t in trials})
    batches = sorted({t.get("batch_size_used") for t in trials})
    detail = (f"{len(trials)} trials, GPU shares {', '.join(map(str, shares))}, batches {', '.join(map(str, batches))} "
              f"of 8192, peak GPU use {peak_used['gpu']:,.0f} of "
              f"{ctx['gpu_memory_mb']:,.0f} MiB, up to {peak_used['apps']} processes at once")
    if len(trials) != 4 or bad:
        raise Fail(f"{detail}; not completed or retried after an out-of-memory error: "
                   f"{', '.join(t['trial_id'] + ' ' + t['status'] + ' oom_retries=' + str(t.get('oom_retries')) for t in bad)}"
                   " — see trials.csv's error column; raise resources.gpu_process_reserve_mb or run `lstm-sweep calibrate`")
    if peak_used["gpu"] >= ctx["gpu_memory_mb"]:
        raise Fail(f"{detail}: the trials filled the GPU: raise resources.gpu_process_reserve_mb")
    return detail


def check_batch_cut(ctx: dict) -> str:
    _need_gpu(ctx)
    spec = dict(LM, hidden_size=2048, num_layers=2, batch_size=256)
    need = estimate_peak_bytes(spec, calibration=ctx["calibration"]) / (1 - HEADROOM) + _reserve_mb() * MiB
    small_gb = max(1.0, round(2 * need / GiB + 0.25, 1))  # half of it is a trial's share: batch ~256 of 1024
    space = {"embedding_size": 256, "hidden_size": 2048, "num_layers": 2, "batch_size": 1024, "dropout": 0.0,
             "learning_rate": 1e-3}
    trials, _ = _sweep(ctx, "cut", space, samples=1, flags=["--gpus-per-trial", "0.5", "--gpu-memory", f"{small_gb}"])
    t = trials[0] if trials else {}
    used, budget = int(float(t.get("batch_size_used") or 0)), float(t.get("budget_mb") or 0)
    measured = float(t.get("measured_peak_mb") or 0)
    detail = (f"--gpu-memory {small_gb}: batch 1024 -> {used}, peak {measured:,.0f} MB of a {budget:,.0f} MB budget, "
              f"{t.get('status')}, oom_retries {t.get('oom_retries')}")
    if not trials or t["status"] != "completed" or not 0 < used < 1024:
        raise Fail(f"{detail}: expected a cut batch and a completed trial; see trials.csv's error column")
    if int(float(t.get("oom_retries") or 0)) > 0 or measured > budget:
        raise Fail(f"{detail}: the memory model under-predicts here: run `lstm-sweep calibrate` on this machine")
    return detail


# ------------------------------------------------------------------ helpers

def _sweep(ctx: dict, name: str, space: dict, samples: int, flags: list[str]) -> tuple[list[dict], dict]:
    """A real ``lstm-sweep search`` on the built-in corpus, one epoch a trial; its trials.csv rows and
    the highest GPU use (MiB, nvidia-smi) and process count seen while it ran."""
    folder = Path(ctx["tmp"]) / name
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "sweep.yaml"
    config.write_text(yaml.safe_dump({
        "name": name, "data": {"path": "builtin", "builtin_lines": 20000, "vocab_size": 7000, "max_tokens": 15},
        "space": space, "budget": {"num_samples": samples, "max_epochs": 1}, "scheduler": {"kind": "fifo"},
        "searcher": {"kind": "random", "seed": 0},
        "resources": {"cpus_per_trial": max(0.5, min(1.0, (os.cpu_count() or 2) / 5))}}))
    before = set(cal.gpu_process_mb())
    peak = {"gpu": 0.0, "apps": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            used = cal.nvidia_smi("--query-gpu=memory.used", *ctx["gpu_arg"]).split()
            apps = {p: m for p, m in cal.gpu_process_mb().items() if p not in before}
            peak["gpu"] = max(peak["gpu"], float(used[0]) if used else 0.0)
            peak["apps"] = max(peak["apps"], len(apps))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        done = _lstm_sweep("search", "--config", str(config), "--out", str(folder), "--name", name, *flags,
                           timeout=_left(ctx, 0.5), env={"CUDA_VISIBLE_DEVICES": ctx["gpu_index"]})
    finally:
        stop.set()
        watcher.join()
    path = folder / name / "trials.csv"
    if done.returncode != 0 or not path.exists():
        unknown = "unrecognized arguments" in done.stderr
        raise Fail(f"lstm-sweep search {' '.join(flags)} exited {done.returncode}: {_last_line(done)}"
                   + (" — this lstm-sweep lacks those flags: update it" if unknown else ""))
    with open(path, newline="") as f:
        return list(csv.DictReader(f)), peak


def _lstm_sweep(*args: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "lstm_sweep", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _child(what: str, timeout: float) -> dict:
    """Run ``what`` in a fresh process (its own TensorFlow, its GPU memory freed when it ends)."""
    done = subprocess.run([sys.executable, "-P", str(Path(__file__).resolve()), "--child", what],
                          capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise Fail(f"the {what} child exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


def _child_devices() -> dict:
    """The GPUs TensorFlow sees, with their compute capability (``get_device_details``)."""
    import io
    from contextlib import redirect_stderr

    log = io.StringIO()
    with redirect_stderr(log):
        import tensorflow as tf

        details = [tf.config.experimental.get_device_details(g) for g in tf.config.list_physical_devices("GPU")]
    return {"gpus": [{"name": d.get("device_name", "?"), "compute_capability": list(d.get("compute_capability", ()))}
                     for d in details], "log": log.getvalue()[-2000:]}


def _child_cudnn() -> dict:
    """Trace our model's Keras train step, find the cuDNN op, time it against use_cudnn=False."""
    import keras
    import numpy as np
    import tensorflow as tf

    from lstm_sweep.model import build_language_model, compile_language_model
    from lstm_sweep.model.devices import configure_gpu

    configure_gpu(None)
    v, e, h, b, t = 7000, 256, 1024, 256, 14
    rng = np.random.default_rng(0)
    data = (tf.constant(rng.integers(4, v, (b, t)), tf.int32), tf.constant(rng.integers(4, v, (b, t)), tf.int32))
    out: dict = {}
    for cudnn in (True, False):
        if cudnn:
            model = build_language_model(v, e, h)
        else:
            tokens = keras.Input(shape=(None,), dtype="int32")
            x = keras.layers.Embedding(v, e)(tokens)
            x = keras.layers.LSTM(h, return_sequences=True, use_cudnn=False)(x)
            model = keras.Model(tokens, keras.layers.Dense(v, dtype="float32")(x))
        compile_language_model(model, 1e-3)
        model.optimizer.build(model.trainable_variables)
        step = tf.function(model.train_step)
        graph = step.get_concrete_function((tf.TensorSpec((b, t), tf.int32), tf.TensorSpec((b, t), tf.int32))).graph
        ops = {op.type for op in graph.get_operations()}
        for function in graph.as_graph_def().library.function:  # the while-loops' and gradients' bodies
            ops |= {node.op for node in function.node_def}
        if cudnn:
            out["cudnn_ops"] = sorted(op for op in ops if op.startswith("CudnnRNN"))
            out["rnn_ops"] = sorted(op for op in ops if "RNN" in op or op in ("While", "StatelessWhile"))
        for _ in range(3):  # tracing, cuDNN's algorithm search, kernels compiled from PTX
            float(step(data)["loss"])
        times = []
        for _ in range(15):
            started = time.perf_counter()
            float(step(data)["loss"])  # waits for the step's end
            times.append(time.perf_counter() - started)
        out["cudnn_s" if cudnn else "plain_s"] = sorted(times)[len(times) // 2]
    return out


def _need_gpu(ctx: dict) -> None:
    if ctx["dry_run"]:
        raise Skip("--dry-run: needs a GPU")
    if not ctx.get("gpu_ok"):
        raise Skip("needs a GPU TensorFlow can use (see gpu-driver)")


def _left(ctx: dict, share: float) -> float:
    """A child's timeout: ``share`` of the script's time left, at least a minute."""
    return max(60.0, share * (ctx["deadline"] - time.monotonic()))


def _reserve_mb() -> float:
    from lstm_sweep.search.config import Resources

    return float(getattr(Resources(), "gpu_process_reserve_mb", 0.0))


def _driver_cuda_version() -> tuple[int, ...]:
    try:
        text = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
    return tuple(int(x) for x in found.groups()) if found else ()


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


CHECKS = [("memory-model", check_memory_model), ("calibration-file", check_calibration_file),
          ("plan-gpu-memory", check_plan), ("tf-build", check_tf_build), ("gpu-driver", check_gpu_driver),
          ("cudnn-kernel", check_cudnn), ("peaks", check_peaks), ("four-trials", check_four_trials),
          ("batch-cut", check_batch_cut)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="no GPU: run the CPU checks, SKIP the GPU ones")
    p.add_argument("--parallel", type=int, default=2, help="trial-like children at once in `peaks` (default 2)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps({"devices": _child_devices, "cudnn": _child_cudnn}[args.child]()), flush=True)
        return 0
    if args.parallel < 1:
        p.error(f"--parallel {args.parallel}: must be >= 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:  # the kernels CUDA compiles from PTX, kept between processes (lstm-sweep's CLI sets the same)
        from lstm_sweep.search.cli import cuda_kernel_cache
        for name, value in cuda_kernel_cache().items():
            os.environ.setdefault(name, value)
    except ImportError:
        pass
    gpu = not args.dry_run and cal.gpu_visible()
    index = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"
    key = cal.device_key(gpu)
    calibration, line = cal.load_calibration(key)
    ctx = dict(dry_run=args.dry_run, parallel=args.parallel, calibration=calibration, calibration_line=line,
               gpu_index=index, gpu_arg=["-i", index], deadline=time.monotonic() + BUDGET_S, build={})
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    with tempfile.TemporaryDirectory(prefix="lstm-sweep-acceptance-") as tmp:
        ctx["tmp"] = tmp
        for name, check in CHECKS:
            if check is check_gpu_driver and args.dry_run:
                status, detail = "SKIP", "--dry-run: needs a GPU"
            elif time.monotonic() > ctx["deadline"]:
                status, detail = "SKIP", f"out of time ({BUDGET_S // 60} minutes in all)"
            else:
                try:
                    status, detail = "PASS", check(ctx)
                except Fail as e:
                    status, detail = "FAIL", str(e)
                except Skip as e:
                    status, detail = "SKIP", str(e)
                except subprocess.TimeoutExpired as e:
                    status, detail = "FAIL", (f"timed out after {e.timeout:.0f} s: on a GPU without machine code in "
                                              "this TensorFlow (gpu-driver's note) CUDA may still be compiling "
                                              "kernels; run the script again (they are cached)")
                except Exception as e:  # noqa: BLE001 - a check's bug must not hide the other checks
                    status, detail = "FAIL", f"{type(e).__name__}: {e} (a bug: report it with this output)"
            counts[status] += 1
            first, *rest = str(detail).splitlines() or [""]
            print(f"{status} {name}: {first}", flush=True)
            for line in rest:  # detail lines, indented: only the status lines start at the margin
                print(line if line.startswith("    ") else f"    {line}", flush=True)
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
