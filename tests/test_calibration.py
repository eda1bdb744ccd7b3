"""model/calibration.py: device keys, the calibration file (round trip, fallbacks), the fit, `calibrate --quick`."""

import datetime
import json
import os
import subprocess
import sys
import time

import pytest

from lstm_sweep.model.calibration import (FORMAT, SPEC_FIELDS, calibration_file, calibration_grid,
                                          device_key, fit, gpu_visible, load_calibration, save_calibration)
from lstm_sweep.model.memory import CPU_CALIBRATION, estimate_memory

MiB = 2**20
TRUTH = CPU_CALIBRATION.replace(state_copies=5.3, logit_copies=1.8, workspace_bytes=40 * MiB, workspace_share=0.06,
                                layer_bytes=60 * MiB)


def synthetic_rows(calibration, configs=None):
    """Rows as `measure` returns them, each "measured" exactly as `calibration` predicts."""
    rows = []
    for cfg in configs or calibration_grid():
        row = dict(cfg, seq_len=cfg["max_tokens"] - 1, device="cpu", steps=3, epochs=1, threads=1)
        spec = {k: row[k] for k in SPEC_FIELDS if k != "precision"}
        row["measured_mb"] = estimate_memory(spec, precision=row["precision"], calibration=calibration).total / MiB
        rows.append(row)
    return rows


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_SWEEP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_nvidia_smi(folder, lines):
    """An `nvidia-smi` that prints ``lines`` whatever it is asked."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + "".join(f"echo '{line}'\n" for line in lines))
    script.chmod(0o755)
    return folder


def test_device_key_names_the_first_gpu_from_nvidia_smi(tmp_path, monkeypatch):
    bin_dir = fake_nvidia_smi(tmp_path / "bin", ["NVIDIA H100 80GB HBM3, 81559", "Tesla T4, 15360"])
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device_key(gpus=True) == "gpu-nvidia-h100-80gb-hbm3-81559mib"
    assert device_key(gpus=False) == "cpu"
    assert gpu_visible()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every GPU hidden: TensorFlow trains on the CPU
    assert not gpu_visible()


def test_device_key_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert device_key(gpus=False) == "cpu"
    assert device_key(gpus=True) == "gpu-unknown"
    assert not gpu_visible()


def test_calibration_round_trip(cache):
    rows = synthetic_rows(TRUTH, calibration_grid(quick=True))
    path = save_calibration("cpu", TRUTH, rows, quick=True, seconds=12.5)
    assert path == cache / "calibrations" / "cpu.json" == calibration_file("cpu")
    record = json.loads(path.read_text())
    assert record["format"] == FORMAT and record["device"] == "cpu" and record["quick"]
    assert record["versions"]["tensorflow"] and record["versions"]["keras"]
    assert [c["name"] for c in record["configs"]] == [r["name"] for r in rows]
    assert all(abs(c["error_pct"]) < 0.1 for c in record["configs"])  # measured = predicted here
    assert not list(path.parent.glob(".*tmp"))  # written through a temporary file, renamed

    calibration, line = load_calibration("cpu")
    assert calibration == TRUTH
    today = datetime.date.today().isoformat()
    assert line.startswith(f"calibration measured on cpu on {today} (8 configs, --quick), ")
    assert line.endswith("cpu.json")


def test_a_device_never_measured_gets_the_built_in_calibration(cache):
    calibration, line = load_calibration("gpu-nvidia-h100-80gb-hbm3-81559mib")
    assert calibration == CPU_CALIBRATION
    assert "built-in CPU calibration" in line
    assert "no calibration measured for gpu-nvidia-h100-80gb-hbm3-81559mib; run `lstm-sweep calibrate`" in line


@pytest.mark.parametrize("damage", ["corrupt", "foreign", "unknown_constant", "negative", "old_format"])
def test_a_bad_or_foreign_file_warns_and_falls_back(cache, damage):
    path = save_calibration("cpu", TRUTH, synthetic_rows(TRUTH, calibration_grid(quick=True)))
    record = json.loads(path.read_text())
    if damage == "corrupt":
        path.write_text(path.read_text()[:200])
    else:
        if damage == "foreign":  # copied from another machine
            record["device"] = "gpu-tesla-t4-15360mib"
        elif damage == "unknown_constant":
            record["constants"]["cudnn_copies"] = 2.0
        elif damage == "negative":
            record["constants"]["state_copies"] = -1
        else:
            record["format"] = "lstm-sweep calibration 0"
        path.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="ignored"):
        calibration, line = load_calibration("cpu")
    assert calibration == CPU_CALIBRATION
    assert "built-in CPU calibration" in line and "ignored" in line and "lstm-sweep calibrate" in line


def test_fit_recovers_known_constants_from_synthetic_measurements():
    # The CPU's grids, and a GPU's (each config again in mixed_float16, with its own terms).
    for configs in (calibration_grid(), calibration_grid(quick=True), calibration_grid(quick=True, gpu=True)):
        calibration, low, high = fit(synthetic_rows(TRUTH, configs), margin=0.0)
        for name in ("state_copies", "logit_copies", "workspace_bytes", "workspace_share", "layer_bytes"):
            assert getattr(calibration, name) == pytest.approx(getattr(TRUTH, name), rel=0.01), name
        assert calibration.checkpoint_copies == TRUTH.checkpoint_copies  # not fitted: the base's
        assert -0.001 <= low <= high <= 0.001


def test_fit_keeps_every_prediction_above_its_margin():
    rows = synthetic_rows(TRUTH)
    for i, row in enumerate(rows):  # noise of +-8% around the truth
        row["measured_mb"] *= 1 + 0.08 * ((-1) ** i)
    calibration, low, high = fit(rows, margin=-0.10)
    assert -0.1001 <= low and high < 0.2  # +-8% noise costs at most about 2 x 8% of over-prediction


def test_bad_arguments_name_the_value_and_the_rule():
    rows = synthetic_rows(TRUTH)
    with pytest.raises(ValueError, match=r"margin=-1\.5 must be in"):
        fit(rows, margin=-1.5)
    with pytest.raises(ValueError, match="3 measured configs cannot fit 5 constants"):
        fit(rows[:3])
    with pytest.raises(ValueError, match=r"key='../cpu' must be a device key"):
        calibration_file("../cpu")
    with pytest.raises(ValueError, match="rows=\\[\\] must hold"):
        save_calibration("cpu", TRUTH, [])


def test_calibrate_refuses_a_bad_flag_in_one_line():
    done = subprocess.run([sys.executable, "-m", "lstm_sweep", "calibrate", "--parallel", "0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "lstm-sweep: error: --parallel 0: must be >= 1"


@pytest.mark.slow
def test_calibrate_quick_writes_this_machines_calibration(tmp_path):
    env = {**os.environ, "LSTM_SWEEP_CACHE": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lstm_sweep", "calibrate", "--quick"], capture_output=True,
                          text=True, timeout=600, env=env)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    path = tmp_path / "cache" / "calibrations" / "cpu.json"
    record = json.loads(path.read_text())
    assert record["device"] == "cpu" and record["quick"] and len(record["configs"]) == len(calibration_grid(True))
    assert record["band"]["low_pct"] >= -10.1
    assert f"wrote: {path}" in done.stdout and "calibration measured on cpu" in done.stdout
    print(f"calibrate --quick: {seconds:.0f} s")  # under 3 minutes on a quiet 2-core CPU
