"""The command line: bad input ends in one line on stderr and exit status 2, nothing written."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lstm_sweep(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lstm_sweep", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=os.environ | {"PYTHONPATH": str(REPO)})


def assert_user_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_missing_data_folder(tmp_path):
    result = lstm_sweep("search", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "runs"),
                        cwd=tmp_path)
    assert_user_error(result, "nowhere")
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = lstm_sweep("search", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "runs"),
                        cwd=tmp_path)
    assert_user_error(result, "empty")
    assert not (tmp_path / "runs").exists()


def test_every_line_filtered_out(tmp_path):
    write(tmp_path / "corpus" / "a.txt", "this line has far too many words for the limit\n" * 20)
    config = write(tmp_path / "s.yaml", """
        data: {max_tokens: 4}
    """)
    result = lstm_sweep("search", "--config", str(config), "--data", str(tmp_path / "corpus"),
                        "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(result, "max_tokens")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, needles", [
    ("budget: {num_sample: 3}\n", ["unknown key budget.num_sample"]),
    ("space: {hidden_size: 0}\n", ["space.hidden_size"]),
    ("asha: {grace_period: 9}\nbudget: {max_epochs: 2}\n", ["asha.grace_period"]),
    ("space: [oops\n", ["not valid YAML"]),
])
def test_bad_config(tmp_path, text, needles):
    config = write(tmp_path / "s.yaml", text)
    result = lstm_sweep("search", "--config", str(config), "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(result, "s.yaml", *needles)


def test_bad_flag_value_is_checked_like_the_file(tmp_path):
    result = lstm_sweep("search", "--samples", "0", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(result, "budget.num_samples")


def test_unreadable_config(tmp_path):
    result = lstm_sweep("search", "--config", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert_user_error(result, "missing.yaml", "not found")


def test_report_on_a_folder_without_a_run(tmp_path):
    result = lstm_sweep("report", str(tmp_path), cwd=tmp_path)
    assert_user_error(result, str(tmp_path))


def test_resume_of_a_folder_without_a_run(tmp_path):
    (tmp_path / "run").mkdir()
    assert_user_error(lstm_sweep("search", "--resume", str(tmp_path / "run"), cwd=tmp_path), "nothing to resume")


def test_resume_refuses_flags_that_would_change_the_sweep(tmp_path):
    result = lstm_sweep("search", "--resume", str(tmp_path / "run"), "--samples", "9", cwd=tmp_path)
    assert_user_error(result, "--samples", "sweep.yaml")


def test_ray_client_address_is_refused_with_what_to_do(tmp_path):
    result = lstm_sweep("search", "--address", "ray://head:10001", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(result, "ray://", "--address auto")
    assert not (tmp_path / "runs").exists()
