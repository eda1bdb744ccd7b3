"""Calibrate the memory model where it runs: measure peaks here, fit the constants, store them.

The flow of ``lstm-sweep calibrate`` (``bench/memory.py`` uses the same pieces)::

    calibration_grid(quick, gpu) ──► measure: each config trains in its own fresh child process
        (python -m lstm_sweep.model.calibration JSON), two at once, as a trial does; its peak above
        its baseline is the measure
    ──► fit: the model.memory.Calibration with the smallest worst over-prediction and none more
        than HEADROOM (10%) below its measured peak
    ──► save_calibration: <cache folder>/calibrations/<device_key>.json, written atomically
    plan, sweeps ──► load_calibration(device_key(gpus)) ──► those constants and a line saying so,
        or the built-in CPU_CALIBRATION (a missing, corrupt or foreign file never stops a sweep)

The child trains as a trial does: seeded, ``threads`` TensorFlow threads, Ray Tune imported,
random sentences of 3 to ``max_tokens`` tokens in padded batches of varying width, ``epochs``
epochs of ``steps`` steps, each with validation and a checkpoint save. Its baseline is taken with
the data ready and no model yet (where a trial's ``PeakMemory`` starts). On the CPU the measure
is the kernel's resident high-water mark (``VmHWM``, reset to the current resident set through
``/proc/self/clear_refs`` at the baseline and after every step, so it holds only the model's
life, exact to the page); a thread sampling ``VmRSS`` every 2 ms is the fallback where the reset
is refused. On a GPU it is TensorFlow's allocator peak (``get_memory_info('GPU:0')['peak']``)
above its ``current`` at the baseline, which is what a trial's memory cap limits; the process's
whole use (``nvidia-smi``: CUDA context, cuDNN handles) is recorded beside it. ``mixed_float16``
configs (GPUs only) train under Keras' mixed-precision policy.

``--quick`` (8 configs, one epoch of 3 steps) is a rough calibration for a first sweep; the
full grid (12 configs, two epochs of about 20 s each on a CPU) is the one to keep.

The child, the fit and the file share one module (about 590 lines, over the ~400 the style
asks for) so that ``lstm-sweep calibrate`` and ``bench/memory.py`` cannot drift apart; the
child is its last part and runs only in the child processes.

Example:
    >>> path, calibration, rows, seconds = calibrate(quick=True)  # doctest: +SKIP
    >>> load_calibration(device_key(gpus=False))[1]  # doctest: +SKIP
    'calibration measured on cpu on 2026-12-01 (8 configs), ~/.cache/lstm-sweep/calibrations/cpu.json'
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from lstm_sweep.model.memory import CPU_CALIBRATION, HEADROOM, Calibration, estimate_memory

MiB = 2**20
FORMAT = "lstm-sweep calibration 1"  # bumped when the file's meaning changes: older files are ignored
BUILT_IN = "built-in CPU calibration (bench/memory.py, 2026-11-23)"
BASE = dict(vocab_size=7000, embedding_size=256, max_tokens=15, dropout=0.0, precision="float32")
# (hidden, layers, batch): every hidden size 256-2048 at small and large batches, 1 and 2 layers, the
# notebooks' out-of-memory config last. bench/memory.py's held-out check measures others.
GRID = [(256, 1, 32), (256, 1, 512), (256, 2, 1024), (512, 1, 128), (512, 2, 512), (1024, 1, 32),
        (1024, 1, 512), (1024, 2, 1024), (2048, 1, 32), (2048, 2, 128), (2048, 1, 512), (2048, 2, 1024)]
# --quick: under 3 minutes on a 2-core CPU (two children at once, each mostly start-up and tracing).
QUICK = [(256, 1, 32), (256, 1, 512), (256, 2, 256), (512, 1, 128), (512, 2, 64), (1024, 1, 32), (1024, 2, 128),
         (2048, 1, 32)]
QUICK_STEPS, QUICK_EPOCHS = 3, 1
SPEC_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_layers", "batch_size", "seq_len", "dropout",
               "precision")
_FITTED = ("state_copies", "workspace_share", "logit_copies", "workspace_bytes", "layer_bytes")


def config_of(hidden: int, layers: int, batch: int, dropout: float = 0.0, **sizes: Any) -> dict:
    """A grid config: ``BASE`` with these sizes, named as tables show it (``h256-l1-b32``)."""
    cfg = {**BASE, "hidden_size": hidden, "num_layers": layers, "batch_size": batch, "dropout": dropout, **sizes}
    cfg["name"] = name_of(cfg)
    return cfg


def name_of(cfg: Mapping) -> str:
    name = f"h{cfg['hidden_size']}-l{cfg['num_layers']}-b{cfg['batch_size']}"
    for key, tag in (("embedding_size", "e"), ("vocab_size", "v")):
        if cfg.get(key, BASE[key]) != BASE[key]:
            name += f"-{tag}{cfg[key]}"
    name += f"-d{cfg['dropout']:g}" if cfg.get("dropout") else ""
    return name + ("-mixed" if cfg.get("precision", "float32") == "mixed_float16" else "")


def calibration_grid(quick: bool = False, gpu: bool = False) -> list[dict]:
    """The configs ``calibrate`` measures: float32, and on a GPU each again in ``mixed_float16``.

    Example:
        >>> [c["name"] for c in calibration_grid(quick=True)][:2]
        ['h256-l1-b32', 'h256-l1-b512']
    """
    grid = [config_of(*c) for c in (QUICK if quick else GRID)]
    return grid + ([config_of(*c, precision="mixed_float16") for c in (QUICK if quick else GRID)] if gpu else [])


def device_key(gpus: bool) -> str:
    """The name of this machine's device in calibration files: ``"cpu"``, or the first visible GPU's
    name and memory slugged (``nvidia-smi``), e.g. ``"gpu-nvidia-h100-80gb-hbm3-81559mib"``;
    ``"gpu-unknown"`` when ``nvidia-smi`` cannot say.

    Example:
        >>> device_key(gpus=False)
        'cpu'
    """
    if not gpus:
        return "cpu"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    line = nvidia_smi("--query-gpu=name,memory.total", *(["-i", visible] if visible else []))
    parts = [p.strip() for p in (line.splitlines() or [""])[0].split(",")]
    if len(parts) < 2 or not parts[0] or not parts[1].replace(".", "").isdigit():
        return "gpu-unknown"
    return "gpu-" + "-".join(filter(None, re.split(r"[^a-z0-9]+", f"{parts[0]} {int(float(parts[1]))}mib".lower())))


def calibration_file(key: str) -> Path:
    """Where the calibration of device ``key`` is stored: ``calibrations/<key>.json`` in the cache
    folder (``$LSTM_SWEEP_CACHE``, default ``~/.cache/lstm-sweep``).

    Example:
        >>> calibration_file("cpu").name
        'cpu.json'
    """
    if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", key):
        raise ValueError(f"key={key!r} must be a device key: lower-case letters, digits and '-' (device_key())")
    from lstm_sweep.data_pipeline.cache import cache_folder

    return cache_folder(None) / "calibrations" / f"{key}.json"


def load_calibration(key: str) -> tuple[Calibration, str]:
    """The stored calibration of device ``key`` and a line saying which one it is; the built-in
    ``CPU_CALIBRATION`` where none was measured. A corrupt or foreign file warns and is ignored.

    Example:
        >>> calibration, line = load_calibration("cpu")  # doctest: +SKIP
        >>> line  # doctest: +SKIP
        'calibration measured on cpu on 2026-12-01 (8 configs), ~/.cache/lstm-sweep/calibrations/cpu.json'
    """
    path = calibration_file(key)
    if not path.exists():
        return CPU_CALIBRATION, f"{BUILT_IN}: no calibration measured for {key}; run `lstm-sweep calibrate`"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        calibration = _checked(record, key)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        warnings.warn(f"{path}: ignored ({e}); using the {BUILT_IN}. Run `lstm-sweep calibrate` to measure again.",
                      stacklevel=2)
        return CPU_CALIBRATION, f"{BUILT_IN}: {_home(path)} ignored ({e}); run `lstm-sweep calibrate`"
    quick = ", --quick" if record.get("quick") else ""
    line = f"calibration measured on {key} on {record['date']} ({len(record['configs'])} configs{quick}), {_home(path)}"
    now = _versions()["tensorflow"]
    if now and record["versions"].get("tensorflow") != now:
        line += (f" (TensorFlow {record['versions'].get('tensorflow')} then, {now} now: "
                 "run `lstm-sweep calibrate` again)")
    return calibration, line


def save_calibration(key: str, calibration: Calibration, rows: Sequence[Mapping], *, quick: bool = False,
                     margin: float = -HEADROOM, seconds: float | None = None) -> Path:
    """Write ``calibration`` for device ``key`` with the measured ``rows`` it was fitted to (each
    with its predicted peak under it) to :func:`calibration_file`, atomically; returns the path.

    Example:
        >>> save_calibration("cpu", calibration, rows)  # doctest: +SKIP
        PosixPath('/home/me/.cache/lstm-sweep/calibrations/cpu.json')
    """
    path = calibration_file(key)
    if not isinstance(calibration, Calibration):
        raise ValueError(f"calibration={calibration!r} must be a model.memory.Calibration")
    if not rows:
        raise ValueError("rows=[] must hold the measured configs the calibration was fitted to")
    versions = {**_versions(), **{k: rows[0][k] for k in ("tensorflow", "keras") if rows[0].get(k)}}
    configs = [dict({k: r[k] for k in ("name", *SPEC_FIELDS)}, measured_mb=round(r["measured_mb"], 1),
                    **_prediction(r, calibration), **{k: r[k] for k in ("steps", "epochs", "threads", "tf_peak_mb",
                                                                        "gpu_process_mb") if k in r})
               for r in rows]
    record = {"format": FORMAT, "device": key, "device_name": rows[0].get("device_name", key),
              "date": datetime.date.today().isoformat(),
              "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "versions": versions, "quick": quick, "margin": margin, "seconds": seconds,
              "constants": dataclasses.asdict(calibration),
              "band": {"low_pct": min(c["error_pct"] for c in configs), "high_pct": max(c["error_pct"] for c in configs)},
              "configs": configs}
    from lstm_sweep.atomic import write_text  # temporary file beside it, fsync, rename

    write_text(path, json.dumps(_finite(record), indent=2) + "\n")
    return path


def measure(configs: Sequence[Mapping], *, parallel: int = 2, threads: int = 1, steps: int = 0, epochs: int = 2,
            timeout: float = 3600, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Train each config in a fresh child process (``parallel`` at once, as a sweep's trials run
    side by side) and return one row each: the config, ``measured_mb`` and the child's figures.
    ``steps`` per epoch (0: about 20 s worth, 3 to 40). A child that fails or runs past ``timeout``
    seconds (generous: on a busy 2-core CPU hidden 2048, 2 layers, batch 1024 took over 900) is
    reported through ``progress`` and left out.

    Example:
        >>> rows = measure(calibration_grid(quick=True), steps=4, epochs=1)  # doctest: +SKIP
        >>> sorted(rows[0])[:3]  # doctest: +SKIP
        ['baseline_mb', 'batch_size', 'checkpoint_peak_mb']
    """
    for name, value, low in (("parallel", parallel, 1), ("threads", threads, 1), ("epochs", epochs, 1),
                             ("steps", steps, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an int >= {low}")

    def one(cfg: Mapping) -> dict | None:
        started = time.perf_counter()
        try:
            row = measure_one(cfg, threads=threads, steps=steps or default_steps(cfg, threads), epochs=epochs,
                              timeout=timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            if progress:
                progress(f"FAILED {cfg.get('name', name_of(cfg))}: {e}")
            return None
        if progress:
            progress(f"{row['name']:>20}: {row['measured_mb']:7.0f} MB on {row['device']}, "
                     f"{row['sec_per_step']:.2f} s/step, {time.perf_counter() - started:.0f} s")
        return row

    # The costliest first, so no long child starts last while the other slots stand idle.
    order = sorted(range(len(configs)),
                   key=lambda i: -_tflop_per_step(configs[i]) * (steps or default_steps(configs[i], threads)))
    with ThreadPoolExecutor(parallel) as pool:
        rows = dict(zip(order, pool.map(one, [configs[i] for i in order])))
    return [rows[i] for i in range(len(configs)) if rows[i]]


def measure_one(cfg: Mapping, threads: int = 1, steps: int = 5, epochs: int = 2, timeout: float = 900) -> dict:
    """One config measured in one fresh child process; RuntimeError with its stderr if it fails."""
    cfg = {**BASE, "num_layers": 1, **cfg}
    cfg.setdefault("name", name_of(cfg))
    job = json.dumps({"cfg": cfg, "threads": threads, "steps": steps, "epochs": epochs})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    # -P: the working directory is not put on the path, so no folder there shadows the installed package.
    done = subprocess.run([sys.executable, "-P", "-m", "lstm_sweep.model.calibration", job], capture_output=True,
                          text=True, timeout=timeout, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{cfg['name']}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def default_steps(cfg: Mapping, threads: int = 1) -> int:
    """Steps an epoch: about 20 s of training at ~110 GFLOP/s a CPU thread, between 3 and 40."""
    seconds = _tflop_per_step(cfg) / (0.11 * threads)
    return max(3, min(40, round(20 / max(seconds, 1e-3))))


def _tflop_per_step(cfg: Mapping) -> float:
    """Rough floating-point work of one training step (forward + backward = 3 x forward)."""
    cfg = {**BASE, "num_layers": 1, **cfg}
    h, e, v = cfg["hidden_size"], cfg["embedding_size"], cfg["vocab_size"]
    width, per_token = e, h * v
    for _ in range(cfg["num_layers"]):
        per_token += 4 * h * (width + h)
        width = h
    return 6 * cfg["batch_size"] * (cfg["max_tokens"] - 1) * per_token / 1e12


def fit(rows: Sequence[Mapping], margin: float = -HEADROOM, base: Calibration = CPU_CALIBRATION
        ) -> tuple[Calibration, float, float]:
    """The calibration whose worst over-prediction of ``rows``' ``measured_mb`` is smallest among
    those that predict no peak more than ``-margin`` below it; returns it and its worst under- and
    over-prediction (fractions). Constants the fit does not search (the checkpoint's copies,
    measured on their own, and any others) are ``base``'s.

    A minimax fit (Chebyshev's criterion, with a floor): every peak is linear in five unknowns
    (the state's copies, the workspace share, ``q`` = logit copies x (1 + share), the fixed
    workspace and the per-layer cost), so the worst error is convex in them; a box of 9^5
    points is searched and shrunk around its best point until the constants stop moving.

    Example:
        >>> calibration, low, high = fit(rows, margin=-0.10)  # doctest: +SKIP
        >>> low >= -0.10  # doctest: +SKIP
        True
    """
    import numpy as np

    if not -1 < margin <= 0.5:
        raise ValueError(f"margin={margin!r} must be in (-1, 0.5]: the lowest (predicted - measured) / measured")
    if len(rows) < len(_FITTED):
        raise ValueError(f"rows: {len(rows)} measured configs cannot fit {len(_FITTED)} constants; need >= 5")
    zero = base.replace(**{k: 0 for k in _FITTED})
    probes = [dict(state_copies=1), dict(workspace_share=1), dict(logit_copies=1), dict(workspace_bytes=MiB),
              dict(layer_bytes=MiB)]
    fixed, coef = [], []
    for r in rows:
        p0 = _estimate(r, zero).total
        fixed.append(p0)
        coef.append([_estimate(r, zero.replace(**p)).total - p0 for p in probes])
    fixed_, coef_ = np.array(fixed, float)[:, None], np.array(coef, float)
    measured = np.array([r["measured_mb"] * MiB for r in rows], float)[:, None]
    if (measured <= 0).any():
        raise ValueError("rows: every measured_mb must be > 0")

    # In units that each move the typical relative error by 1, so the box is equally fine along
    # every axis (a copy of the parameters and a MiB differ by orders of magnitude).
    unit = np.median(coef_ / measured, axis=0)
    unit = np.where(unit > 0, unit, 1.0)
    scaled = coef_ / unit

    def worst(points: "np.ndarray") -> "np.ndarray":  # points (5, n) -> penalised worst over-prediction
        error = (fixed_ + scaled @ points - measured) / measured
        return error.max(axis=0) + 100 * np.clip(margin - error.min(axis=0), 0, None)

    center, half, axis = np.full(5, 1.0), np.full(5, 1.0), np.linspace(-1, 1, 9)
    for _ in range(80):
        mesh = np.meshgrid(*[np.clip(c + h * axis, 0, None) for c, h in zip(center, half)], indexing="ij")
        points = np.stack([m.ravel() for m in mesh])
        center, half = points[:, int(np.argmin(worst(points)))], half * 0.7
    center = center / unit
    s, share, q, w, lb = center
    calibration = base.replace(state_copies=round(float(s), 4), workspace_share=round(float(share), 4),
                               logit_copies=round(float(q / (1 + share)), 4), workspace_bytes=int(w * MiB),
                               layer_bytes=int(lb * MiB))
    errors = [_prediction(r, calibration)["error_pct"] / 100 for r in rows]
    if min(errors) < margin - 1e-3:
        raise ValueError(f"no calibration keeps every prediction above {margin:+.0%} of its measured peak")
    return calibration, min(errors), max(errors)


def calibrate(quick: bool = False, parallel: int = 2, progress: Callable[[str], None] | None = None
              ) -> tuple[Path, Calibration, list[dict], float]:
    """``lstm-sweep calibrate``: measure this machine's device on the grid, fit, save. Returns the
    file, the calibration, the measured rows (with predictions under it) and the seconds it took."""
    from lstm_sweep.errors import UserError

    started = time.perf_counter()
    gpu = gpu_visible()
    key = device_key(gpu)
    kwargs = dict(steps=QUICK_STEPS, epochs=QUICK_EPOCHS) if quick else {}
    progress = progress or (lambda line: print(line, flush=True))
    rows = measure(calibration_grid(quick, gpu), parallel=parallel, progress=progress, **kwargs)
    if len(rows) < len(_FITTED):
        raise UserError(f"calibrate: only {len(rows)} configs were measured (see the failures above); "
                        "free memory or CPUs and run it again")
    seen = {r["device"] for r in rows}
    if seen != {"gpu" if gpu else "cpu"}:
        raise UserError(f"calibrate: nvidia-smi {'shows' if gpu else 'shows no'} GPU but TensorFlow trained on "
                        f"{'/'.join(sorted(seen))}: install a CUDA build of TensorFlow (pip install "
                        "'tensorflow[and-cuda]') or hide the GPUs with CUDA_VISIBLE_DEVICES=''")
    for r in rows:
        r["device_name"] = _device_name(gpu)
    calibration, _, _ = fit(rows, margin=-HEADROOM)
    rows = [dict(r, **_prediction(r, calibration)) for r in rows]
    seconds = time.perf_counter() - started
    return save_calibration(key, calibration, rows, quick=quick, seconds=round(seconds, 1)), calibration, rows, seconds


def gpu_visible() -> bool:
    """Whether this process would train on a GPU: ``nvidia-smi`` lists one and CUDA_VISIBLE_DEVICES
    does not hide them all (no TensorFlow is imported to ask)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return bool(nvidia_smi("--query-gpu=name").strip())


def nvidia_smi(*args: str) -> str:
    """``nvidia-smi ARGS --format=csv,noheader,nounits``'s output, or "" without it (or on error)."""
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        return subprocess.run(["nvidia-smi", *args, "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def gpu_process_mb() -> dict[int, float]:
    """MiB each process uses on the GPUs (``nvidia-smi --query-compute-apps``), by pid (host pids:
    a process in a container may not find its own)."""
    used: dict[int, float] = {}
    for line in nvidia_smi("--query-compute-apps=pid,used_memory").splitlines():
        pid, _, mb = line.partition(",")
        if pid.strip().isdigit() and mb.strip().replace(".", "").isdigit():
            used[int(pid)] = used.get(int(pid), 0.0) + float(mb)
    return used


def _estimate(row: Mapping, calibration: Calibration):
    # The precision as an argument: a mapping's "precision" key is not read by estimate_memory.
    return estimate_memory({k: row[k] for k in SPEC_FIELDS if k != "precision"},
                           precision=row.get("precision") or "float32", calibration=calibration)


def _prediction(row: Mapping, calibration: Calibration) -> dict:
    predicted = _estimate(row, calibration).total / MiB
    return {"predicted_mb": round(predicted, 1),
            "error_pct": round(100 * (predicted - row["measured_mb"]) / row["measured_mb"], 2)}


def _checked(record: Any, key: str) -> Calibration:
    """The calibration in a file's ``record``, or ValueError saying why it is not ours to use."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"not a calibration file of this lstm-sweep (format {FORMAT!r} expected)")
    if record.get("device") != key:
        raise ValueError(f"it was measured on {record.get('device')!r}, not on {key!r}")
    constants = record["constants"]
    fields = {f.name for f in dataclasses.fields(Calibration)}
    if set(constants) != fields:
        raise ValueError(f"its constants {sorted(constants)} are not the memory model's {sorted(fields)}")
    for name, value in constants.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"constants.{name}={value!r} must be a number >= 0")
    if not record.get("configs") or not record.get("date") or not isinstance(record.get("versions"), dict):
        raise ValueError("it lacks its configs, date or versions")
    return Calibration(**constants)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    from lstm_sweep import __version__

    return {"tensorflow": version("tensorflow"), "keras": version("keras"), "lstm_sweep": __version__,
            "python": sys.version.split()[0]}


def _device_name(gpu: bool) -> str:
    lines = nvidia_smi("--query-gpu=name,memory.total").splitlines() if gpu else []
    return f"{lines[0].strip()} MiB" if lines else ("gpu" if gpu else "cpu")


def _home(path: Path) -> str:
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ the child: one config, measured


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def _reset_hwm() -> bool:
    """Reset the kernel's resident high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _RssSampler(threading.Thread):
    """The largest ``VmRSS`` seen, read every 2 ms until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.samples, self._stop_event = _status_bytes("VmRSS"), 0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak, self.samples = max(self.peak, _status_bytes("VmRSS")), self.samples + 1
            time.sleep(0.002)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, _status_bytes("VmRSS"))


def _measure_here(cfg: dict, threads: int, steps: int, epochs: int) -> dict:
    """Train ``cfg`` as a trial does in this (fresh) process; its peak above the baseline."""
    rss_start = _status_bytes("VmRSS")
    from lstm_sweep.model.train import configure_threads  # imports TensorFlow

    configure_threads(threads)
    import keras
    import numpy as np
    import tensorflow as tf

    from lstm_sweep.data_pipeline.dataset import lm_dataset
    from lstm_sweep.model import build_language_model, compile_language_model, fit_language_model, save_checkpoint
    from lstm_sweep.model import set_seed
    from lstm_sweep.model.devices import configure_gpu

    on_gpu = configure_gpu(None)
    if cfg["precision"] == "mixed_float16":
        if not on_gpu:
            raise SystemExit(f"{cfg['name']}: mixed_float16 is measured on GPUs only")
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:  # a trial process also holds Ray Tune
        import ray.tune  # noqa: F401
        with_ray = True
    except ImportError:
        with_ray = False
    set_seed(0, deterministic_ops=bool(cfg.get("deterministic_ops", False)))
    v, b, n_tok = cfg["vocab_size"], cfg["batch_size"], cfg["max_tokens"]
    train = lm_dataset(_sentences(np, steps * b, v, n_tok, seed=0), b, shuffle=True, seed=0)
    val = lm_dataset(_sentences(np, 2 * b, v, n_tok, seed=1), b, shuffle=False)
    device = "GPU:0" if on_gpu else "CPU:0"

    baseline = _status_bytes("VmRSS")  # the data ready, no model yet: where a trial's PeakMemory starts
    reset = _reset_hwm()
    tf_base = (_tf_memory(tf, device, reset_stats=True) or {}).get("current", 0)
    sampler = _RssSampler()
    sampler.start()
    seen: list[dict] = []
    saves: list[float] = []

    def high_water() -> int:
        return (_status_bytes("VmHWM") if reset else sampler.peak) - baseline

    class EveryStep(keras.callbacks.Callback):
        """Each step's high-water marks (then reset); at each epoch's end the checkpoint save, alone."""

        def on_train_batch_end(self, batch, logs=None):
            info = _tf_memory(tf, device, reset_stats=True)
            seen.append({"end": time.perf_counter(), "rss": high_water(), "tf": info["peak"] - tf_base if info else None})
            if reset:
                _reset_hwm()

        def on_epoch_end(self, epoch, logs=None):
            seen[-1]["rss"] = max(seen[-1]["rss"], high_water())  # validation
            if reset:
                _reset_hwm()
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(self.model, folder)
                saves.append(high_water())
                info = _tf_memory(tf, device, reset_stats=True)
                if info:
                    seen[-1]["tf"] = max(seen[-1]["tf"] or 0, info["peak"] - tf_base)
            if reset:
                _reset_hwm()

    model = build_language_model(v, cfg["embedding_size"], cfg["hidden_size"], cfg["num_layers"], cfg["dropout"])
    compile_language_model(model, 1e-3)
    t0 = time.perf_counter()
    history = fit_language_model(model, train, val, epochs=epochs, callbacks=[EveryStep()])
    ends = [s["end"] for s in seen[:steps]]
    step_times = sorted(later - earlier for earlier, later in zip(ends, ends[1:])) or [ends[0] - t0]
    sampled = sampler.stop() - baseline
    rss = [s["rss"] / MiB for s in seen]
    tf_peaks = [s["tf"] / MiB for s in seen if s["tf"] is not None]
    out = dict(cfg, seq_len=n_tok - 1, params=int(model.count_params()), steps=steps, epochs=epochs,
               threads=threads, device="gpu" if on_gpu else "cpu", with_ray=with_ray, hwm_reset=reset,
               tensorflow=tf.__version__, keras=keras.__version__,
               rss_start_mb=rss_start / MiB, baseline_mb=baseline / MiB, sampled_peak_mb=sampled / MiB,
               step_rss_peak_mb=[round(x, 1) for x in rss], step_tf_peak_mb=[round(x, 1) for x in tf_peaks],
               first_step_s=seen[0]["end"] - t0, sec_per_step=step_times[len(step_times) // 2],
               checkpoint_peak_mb=max(saves) / MiB, peak_first_mb=rss[0], peak_steady_mb=max(rss[1:] or rss),
               tf_peak_mb=max(tf_peaks) if tf_peaks else float("nan"), loss=float(history.history["loss"][-1]))
    if on_gpu:  # what the trial's cap limits; the process's whole use beside it
        out["measured_mb"] = out["tf_peak_mb"]
        out["gpu_process_mb"] = gpu_process_mb().get(os.getpid())
    else:  # the high-water marks are exact; the sampler adds only where the reset was refused
        out["measured_mb"] = max(max(rss), out["checkpoint_peak_mb"], out["sampled_peak_mb"])
    return out


def _sentences(np, n: int, vocab: int, max_tokens: int, seed: int):
    """``n`` random sentences as a corpus gives them: <start> (2), 1 to ``max_tokens - 2`` words in
    ``[4, vocab)``, <end> (3), right-padded with 0, so batches vary in width as a trial's do."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, max_tokens), np.int32)
    for row, length in zip(rows, rng.integers(3, max_tokens + 1, size=n)):
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


if __name__ == "__main__":  # the child: python -m lstm_sweep.model.calibration '{"cfg": {...}, ...}'
    print(json.dumps(_measure_here(**json.loads(sys.argv[1]))), flush=True)
