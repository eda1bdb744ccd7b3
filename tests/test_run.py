"""The whole job in one command, then retrain, export and generate on their own.

A real local Ray, real training on the synthetic corpus, the real CLI entry point (called in
this process, so it joins the session's Ray instead of starting another).
"""

import json

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from lstm_sweep.data_pipeline import lm_dataset, prepare
from lstm_sweep.model import evaluate_language_model
from lstm_sweep.search.cli import main
from lstm_sweep.search.config import load_config

pytestmark = pytest.mark.slow

RUN_FILES = ["sweep.yaml", "vocab.json", "trials.csv", "curves.csv", "val_loss.png", "best.json", "report.html",
             "winner/best.keras", "winner/history.csv", "winner/loss.png", "winner/samples.txt",
             "winner/export/model.keras", "winner/export/vocab.json", "winner/export/model_card.json",
             "winner/export/saved_model/saved_model.pb"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, local_ray):
    """One `lstm-sweep run` on the synthetic corpus: 3 trials, 2 epochs, a 4-epoch retrain."""
    from lstm_sweep.search.config import parse_config

    out = tmp_path_factory.mktemp("runs")
    config = parse_config({
        "name": "t", "output": str(out),
        "data": {"path": "builtin", "builtin_lines": 1500, "vocab_size": 400, "seed": 0},
        "space": {"embedding_size": 16, "hidden_size": {"choice": [16, 32]}, "num_layers": 1,
                  "dropout": 0.0, "learning_rate": {"loguniform": [3e-3, 2e-2]}, "batch_size": 64},
        "budget": {"num_samples": 3, "max_epochs": 2, "max_concurrent": 2},
        "searcher": {"seed": 1, "n_startup_trials": 2},
    })
    config_file = out / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    code = main(["run", "--config", str(config_file), "--name", "run", "--epochs", "4", "--patience", "2"])
    assert code == 0
    return out / "run"


def test_run_writes_every_file_and_three_samples(finished_run, capsys):
    for name in RUN_FILES:
        assert (finished_run / name).is_file(), name
    samples = (finished_run / "winner" / "samples.txt").read_text().splitlines()
    assert len(samples) == 3 and all(line.startswith("i love") for line in samples)
    page = (finished_run / "report.html").read_text()
    # The plots as images inside the page (the sweep's curves and the winner's loss among them), no link out.
    assert all(f'alt="{alt}"' in page for alt in ("val loss of every trial per epoch",
                                                   "training and validation loss of the retrained winner"))
    assert page.count("data:image/png;base64,") >= 2 and "http" not in page.replace("http-equiv", "")
    assert samples[0] in page


def test_retrain_kept_the_checkpoint_with_the_lowest_val_loss(finished_run):
    history = pd.read_csv(finished_run / "winner" / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "val_loss", "val_loss_padded", "seconds"]
    assert 1 <= len(history) <= 4
    config = load_config(finished_run / "sweep.yaml")
    model = keras.models.load_model(finished_run / "winner" / "best.keras", safe_mode=True)
    val = lm_dataset(prepare(config.data).val, 64, shuffle=False)
    assert evaluate_language_model(model, val)["val_loss"] == pytest.approx(history.val_loss.min(), rel=1e-5)

    card = json.loads((finished_run / "winner" / "export" / "model_card.json").read_text())
    assert card["best_val_loss"] == pytest.approx(history.val_loss.min())
    assert card["best_epoch"] == int(history.val_loss.idxmin()) + 1
    assert card["config"]["dropout"] == 0.2  # dropout was not searched: the notebooks' 0.2
    best = json.loads((finished_run / "best.json").read_text())
    assert card["config"]["hidden_size"] == best["params"]["hidden_size"]


def test_generate_from_the_export_is_seeded(finished_run, capsys):
    export = str(finished_run / "winner" / "export")
    outputs = []
    for _ in range(2):
        assert main(["generate", export, "--prompt", "I love", "--num", "2", "--seed", "7"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 2
    assert main(["generate", export, "--prompt", "i love", "--temperature", "0", "--num", "1",
                 "--max-tokens", "3"]) == 0
    assert 2 <= len(capsys.readouterr().out.split()) <= 2 + 3  # the prompt, then at most 3 words


@pytest.mark.parametrize("argv, problem", [
    (["generate", "{export}", "--prompt", "i love", "--temperature", "-1"], "--temperature"),
    (["generate", "{export}", "--prompt", "i love", "--top-k", "0"], "--top-k"),
    (["generate", "{export}", "--prompt", "!!! ..."], "prompt"),
    (["generate", "{run}/nowhere", "--prompt", "i love"], "nowhere"),
    (["retrain", "{run}/winner"], "sweep.yaml"),
    (["retrain", "{run}", "--epochs", "0"], "--epochs"),
])
def test_bad_input_is_one_line_and_exit_2(finished_run, capsys, argv, problem):
    export = finished_run / "winner" / "export"
    argv = [a.format(export=export, run=finished_run) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lstm-sweep: error:") and problem in err[0]


def test_a_run_with_no_finished_trial_cannot_be_retrained(tmp_path, capsys):
    (tmp_path / "sweep.yaml").write_text("name: x\n")
    assert main(["retrain", str(tmp_path)]) == 2
    assert "no trial finished" in capsys.readouterr().err


def test_export_refuses_a_folder_missing_a_file(finished_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "export"
    shutil.copytree(finished_run / "winner" / "export", broken)
    (broken / "vocab.json").unlink()
    assert main(["generate", str(broken), "--prompt", "i love"]) == 2
    assert "vocab.json" in capsys.readouterr().err
    assert np.isfinite(json.loads((finished_run / "winner" / "export" / "model_card.json").read_text())["best_val_loss"])
