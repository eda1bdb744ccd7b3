"""One import name, one place for each fact: what a user's site-packages and our tree hold."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lstm_sweep import __version__

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("common", "data_pipeline", "model", "search", "results", "sweeps")


@pytest.mark.slow
def test_the_wheel_installs_lstm_sweep_and_nothing_else(tmp_path):
    """``pip install .`` adds one top-level name: a user's ``import model`` never finds ours."""
    source = tmp_path / "source"  # a copy: setuptools leaves build/ and *.egg-info where it builds
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv*", "__pycache__", "build", "runs",
                                                                "*.egg-info", "bench", "tests", ".cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    wheel, = tmp_path.glob("lstm_sweep-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = archive.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode()
        record = archive.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert top_level.split() == ["lstm_sweep"]
    installed = {line.split(",")[0].split("/")[0] for line in record.splitlines() if line}
    assert installed == {"lstm_sweep", wheel.name.split("-py3")[0] + ".dist-info"}
    for package in ("data_pipeline", "model", "search", "results", "sweeps"):
        assert f"lstm_sweep/{package}/__init__.py" in names
    assert "lstm_sweep/sweeps/quick.yaml" in names
    assert "lstm-sweep = lstm_sweep.search.cli:main" in entry_points


def test_python_dash_m_and_version():
    done = subprocess.run([sys.executable, "-m", "lstm_sweep", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"lstm-sweep {__version__}"
    assert done.stderr == ""


def test_reading_a_config_and_the_registries_imports_no_tensorflow():
    code = ("import sys; import lstm_sweep.search.config as c, lstm_sweep.search.tasks, lstm_sweep.model.cells, "
            "lstm_sweep.model.spec, lstm_sweep.model; c.parse_config({'task': 'classify'}); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_only_the_tasks_module_asks_which_task_it_is():
    """``search/tasks.py`` is the one place that knows the tasks; everyone else asks a task."""
    asking = re.compile(r"""[!=]=\s*["'](classify|language_model)["']|["'](classify|language_model)["']\s*[!=]=""")
    found = []
    for folder in PACKAGE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "search" / "tasks.py":
                continue
            found += [f"{path.relative_to(REPO)}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                      if asking.search(line)]
    assert found == []


def test_every_user_error_is_one_family():
    from lstm_sweep.data_pipeline import CorpusError
    from lstm_sweep.errors import ConfigError, RunFolderError, UserError
    from lstm_sweep.search.config import ConfigError as config_error

    assert config_error is ConfigError
    assert all(issubclass(error, UserError) for error in (ConfigError, CorpusError, RunFolderError))
    assert issubclass(UserError, ValueError)


def test_no_folder_of_the_checkout_shadows_the_installed_package():
    """``python -m pytest`` puts the checkout first on sys.path: a folder named ``lstm_sweep`` there
    would be imported instead of the installed package, without the subpackages the packaging maps."""
    assert not (REPO / "lstm_sweep").exists()


def test_python_requires_names_the_pythons_tensorflow_has_wheels_for():
    """TensorFlow 2.21 ships wheels for 3.10-3.13 and Keras 3.15 needs 3.11: pip should refuse
    another Python with our line, not fail in the resolver."""
    import configparser

    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert setup["options"]["python_requires"] == ">=3.11,<3.14"
