"""bench/gpu_acceptance.py --dry-run: the CPU checks run for real, every GPU check SKIPs with its reason."""

import re
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "bench" / "gpu_acceptance.py"
CPU_CHECKS = ["memory-model", "calibration-file", "plan-gpu-memory", "tf-build"]
GPU_CHECKS = ["gpu-driver", "cudnn-kernel", "peaks", "four-trials", "batch-cut"]


def test_dry_run_passes_the_cpu_checks_and_skips_the_gpu_ones():
    done = subprocess.run([sys.executable, "-P", str(SCRIPT), "--dry-run"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    status = [re.fullmatch(r"(PASS|FAIL|SKIP) ([a-z0-9-]+): (.+)", line) for line in lines[:-1]]
    # Every line is a check's status line, a detail line indented under it, or the closing line.
    for line, match in zip(lines, status):
        assert match or line.startswith("    "), line
    checks = {m.group(2): (m.group(1), m.group(3)) for m in status if m}
    assert list(checks) == CPU_CHECKS + GPU_CHECKS
    for name in CPU_CHECKS:
        # tf-build SKIPs on a TensorFlow without CUDA (it then says what a GPU machine needs).
        assert checks[name][0] == "PASS" or (name == "tf-build" and checks[name][0] == "SKIP"), checks[name]
    for name in GPU_CHECKS:
        assert checks[name] == ("SKIP", "--dry-run: needs a GPU")
    counts = {s: sum(1 for v, _ in checks.values() if v == s) for s in ("PASS", "FAIL", "SKIP")}
    assert lines[-1] == f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"
    assert re.fullmatch(r"\d+ passed, 0 failed(, \d+ skipped)?", lines[-1])
