"""`task: classify` end to end: a real sweep, retrain, export, predict, on a local Ray.

One `lstm-sweep run` on the synthetic labelled verses (3 classes, softmax head), ranked by
`val_accuracy` (mode max), serves most tests; the artist task on the real lyrics corpus
(Dickinson against Eminem, a sigmoid head, ranked by the default val_loss) checks that a sweep
learns something real.
"""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from lstm_sweep.data_pipeline import LabelledSettings, pad_to, prepare_labelled, synthetic_labelled
from lstm_sweep.model import class_probabilities, classify_texts, load_classifier_export
from lstm_sweep.search.cli import main
from lstm_sweep.search.config import parse_config
from lstm_sweep.search.sweep import run_sweep
from test_classify_data import artist_lines, write_csv

pytestmark = pytest.mark.slow

RUN_FILES = ["sweep.yaml", "vocab.json", "labels.json", "trials.csv", "curves.csv", "val_loss.png",
             "val_accuracy.png", "best.json", "report.html", "winner/best.keras", "winner/history.csv",
             "winner/loss.png", "winner/predictions.txt", "winner/export/model.keras", "winner/export/vocab.json",
             "winner/export/labels.json", "winner/export/model_card.json", "winner/export/saved_model/saved_model.pb"]


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory, local_ray):
    """`lstm-sweep run` of a classify config: 4 trials of 2 epochs, a 3-epoch retrain."""
    out = tmp_path_factory.mktemp("runs")
    config = parse_config({
        "name": "c", "output": str(out), "task": "classify", "metric": "val_accuracy", "mode": "max",
        "data": {"path": "builtin", "builtin_examples": 1500, "builtin_classes": 3, "vocab_size": 400},
        "space": {"embedding_size": 16, "hidden_size": {"choice": [16, 32]}, "num_layers": 1, "dropout": 0.0,
                  "learning_rate": {"loguniform": [5e-3, 2e-2]}, "batch_size": 64,
                  "cell": {"choice": ["rnn", "gru"]}, "seq_len": {"choice": [16, 48]},
                  "padding": {"choice": ["pre", "post"]}, "bidirectional": {"choice": [False, True]}},
        "budget": {"num_samples": 4, "max_epochs": 2, "max_concurrent": 2},
        "searcher": {"seed": 1, "n_startup_trials": 2},
    })
    config_file = out / "classify.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    assert main(["run", "--config", str(config_file), "--name", "run", "--epochs", "3", "--patience", "2"]) == 0
    return out / "run"


def test_run_ranks_by_val_accuracy_and_writes_both_metrics(classify_run):
    for name in RUN_FILES:
        assert (classify_run / name).is_file(), name
    trials = pd.read_csv(classify_run / "trials.csv")
    assert len(trials) == 4
    for column in ["cell", "bidirectional", "seq_len", "padding", "truncating", "best_val_accuracy",
                   "last_val_accuracy", "best_val_loss", "batch_size_used", "predicted_peak_mb"]:
        assert column in trials.columns, column
    assert "best_val_loss_padded" not in trials.columns
    assert trials.best_val_accuracy.is_monotonic_decreasing  # mode max: the best first

    curves = pd.read_csv(classify_run / "curves.csv")
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(curves.columns)
    assert "val_loss_padded" not in curves.columns
    assert curves.groupby("trial_id").val_accuracy.max().to_dict() == pytest.approx(
        trials.set_index("trial_id").best_val_accuracy.to_dict())
    assert curves.groupby("trial_id").val_loss.min().to_dict() == pytest.approx(
        trials.set_index("trial_id").best_val_loss.to_dict())

    best = json.loads((classify_run / "best.json").read_text())
    assert best["metric"] == "val_accuracy" and best["mode"] == "max" and best["trial_id"] == trials.trial_id[0]
    assert json.loads((classify_run / "labels.json").read_text())["labels"] == ["love", "night", "road"]
    page = (classify_run / "report.html").read_text()
    # val_loss.png, val_accuracy.png, the winner's loss.png, among the page's other views
    assert all(f'alt="{alt}"' in page for alt in ("val loss of every trial per epoch",
                                                   "val accuracy of every trial per epoch",
                                                   "training and validation loss of the retrained winner"))
    assert "Predictions on validation examples" in page


def test_retrain_kept_the_epoch_with_the_best_val_accuracy(classify_run):
    history = pd.read_csv(classify_run / "winner" / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    card = json.loads((classify_run / "winner" / "export" / "model_card.json").read_text())
    assert card["task"] == "classify" and card["metric"] == "val_accuracy"
    assert card["best_val_accuracy"] == pytest.approx(history.val_accuracy.max())
    assert card["best_epoch"] == int(history.val_accuracy.idxmax()) + 1
    assert card["labels"] == ["love", "night", "road"] and card["preprocessing"]["seq_len"] in (16, 48)

    # The kept checkpoint really is that epoch's model: its accuracy on the validation split.
    data = prepare_labelled(LabelledSettings(builtin_examples=1500, builtin_classes=3, vocab_size=400))
    cut = card["preprocessing"]
    model = keras.models.load_model(classify_run / "winner" / "best.keras", safe_mode=True)
    predicted = class_probabilities(model, pad_to(data.val_ids, cut["seq_len"], cut["padding"], cut["truncating"]))
    assert np.mean(predicted.argmax(axis=1) == data.val_labels) == pytest.approx(card["best_val_accuracy"], abs=1e-6)
    assert card["best_val_accuracy"] > data.stats["majority_share_val"] + 0.2
    first = (classify_run / "winner" / "predictions.txt").read_text().splitlines()[0]
    assert first.startswith(f"validation accuracy {card['best_val_accuracy']:.4f}")


def test_export_round_trip_in_a_fresh_process(classify_run):
    export = classify_run / "winner" / "export"
    texts = [text for text, _ in synthetic_labelled(5, num_classes=3, seed=9)] + ["Zorglub, ZORGLUB... the moon?"]
    model, vocab, labels, card = load_classifier_export(export)
    cut = card["preprocessing"]
    expected = classify_texts(model, vocab, texts, cut["seq_len"], cut["padding"], cut["truncating"])
    code = (
        "import json, sys, tensorflow as tf\n"
        f"loaded = tf.saved_model.load({str(export / 'saved_model')!r})\n"
        "out = loaded.signatures['serving_default'](texts=tf.constant(json.load(sys.stdin)))\n"
        "names = loaded.signatures['labels']()['labels'].numpy()\n"
        "print(json.dumps({'p': out['probabilities'].numpy().tolist(),\n"
        "                  'labels': [s.decode() for s in out['labels'].numpy()],\n"
        "                  'names': [s.decode() for s in names]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True,
                          timeout=300, check=True)
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["names"] == labels == ["love", "night", "road"]
    np.testing.assert_allclose(np.array(served["p"]), expected, atol=1e-5)
    assert served["labels"] == [labels[i] for i in expected.argmax(axis=1)]


def test_predict_prints_one_label_per_input(classify_run, tmp_path, capsys):
    export = str(classify_run / "winner" / "export")
    texts = tmp_path / "texts.txt"
    texts.write_text("When the rain falls, I cry\n\nThe engine roars on the long highway\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", export, "I love you, my sweet darling", "the moon rises", "--file", str(texts)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    for line, text in zip(lines, ["I love you, my sweet darling", "the moon rises"]):
        label, probability, echoed = line.split("\t")
        assert label in ("love", "night", "road") and 1 / 3 <= float(probability) <= 1 and echoed == text
    assert lines[2].endswith("When the rain falls, I cry")

    # Each command refuses the other task's export, in one line.
    assert main(["generate", export, "--prompt", "i love"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "holds a classifier" in error[0] and "lstm-sweep predict" in error[0]
    assert main(["predict", export, "1234 ###"]) == 2
    assert "no words after cleaning" in capsys.readouterr().err


def test_artist_sweep_beats_the_majority_class(lyrics, tmp_path, local_ray):
    # Lines of Emily Dickinson against lines of Eminem: the three cells on one task.
    table = write_csv(tmp_path / "artists.csv", artist_lines(lyrics, per_artist=900))
    config = parse_config({
        "name": "artists", "output": str(tmp_path), "task": "classify",
        "data": {"path": str(table), "label_column": "artist", "vocab_size": 3000},
        "space": {"cell": {"choice": ["rnn", "lstm", "gru"]}, "seq_len": 24, "embedding_size": 32,
                  "hidden_size": 32, "num_layers": 1, "dropout": 0.0,
                  "learning_rate": {"loguniform": [5e-3, 2e-2]}, "batch_size": 64},
        "budget": {"num_samples": 3, "max_epochs": 2, "max_concurrent": 2},
        "searcher": {"seed": 0, "n_startup_trials": 3},
    })
    outcome = run_sweep(config, name="artists")
    trials = pd.read_csv(outcome.run_dir / "trials.csv")
    assert len(trials) == 3 and set(trials.status) <= {"completed", "early_stopped"}
    assert trials.best_val_loss.is_monotonic_increasing  # the default metric: val_loss, lowest first
    majority = prepare_labelled(config.data).stats["majority_share_val"]
    assert majority == pytest.approx(0.5, abs=0.01)  # 900 lines each
    winner = trials.iloc[0]
    curves = pd.read_csv(outcome.run_dir / "curves.csv")
    best_epoch = curves[curves.trial_id == winner.trial_id].sort_values("val_loss").iloc[0]
    assert best_epoch.val_accuracy > majority + 0.15, trials[["cell", "best_val_loss", "best_val_accuracy"]]
