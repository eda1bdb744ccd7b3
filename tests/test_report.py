"""report.html from a run folder built in the test from files: no Ray, no training.

`make_run_folder` writes what `lstm-sweep search` (and `retrain`) would leave: sweep.yaml,
vocab.json, trials.csv / curves.csv / val_loss.png / best.json (through results.write_results),
ray/*/result.json lines with the trainable's fields, ray/experiment_state-*.json, optuna.db
(one Optuna trial per trial, written with optuna directly) and winner/. bench/screenshot_report.py
uses it for its synthetic run.
"""

from __future__ import annotations

import base64
import html
import html.parser
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lstm_sweep.results import TrialRecord, write_report, write_results
from lstm_sweep.results import analysis
from lstm_sweep.results.plots import plot_history, plot_val_loss
from lstm_sweep.results.run_folder import read_confusion, read_run_folder, read_timeline, searched_parameters

BASELINE = 4.7
T0 = 1_796_000_000.0  # Unix time the synthetic sweep starts
LM_SPACE = {"embedding_size": {"choice": [16, 32, 64]}, "hidden_size": {"logint": [32, 256]},
            "num_layers": {"int": [1, 2]}, "dropout": {"uniform": [0.0, 0.3]},
            "learning_rate": {"loguniform": [1.0e-3, 2.0e-2]}, "batch_size": {"choice": [32, 64, 128]}}
CLASSIFY_SPACE = {**LM_SPACE, "cell": {"choice": ["rnn", "lstm", "gru"]}, "bidirectional": {"choice": [False, True]},
                  "seq_len": {"choice": [16, 32]}, "padding": {"choice": ["pre", "post"]}, "truncating": "pre",
                  "num_layers": 1}
LABELS = ["bob-dylan", "dickinson", "eminem"]
INFEASIBLE_REASON = "needs 912 MB at batch 8 (the smallest), the trial's budget is 500 MB"
FAILED_REASON = "RayActorError: the worker died unexpectedly"


def make_run_folder(path: Path, trials: int = 16, task: str = "language_model", retrained: bool = True,
                    confusion: bool = True) -> Path:
    """A run folder of ``trials`` trials: the last infeasible, the one before failed after an
    epoch, the one before that stopped at the baseline, a few stopped by ASHA, the rest completed."""
    import optuna

    path.mkdir(parents=True, exist_ok=True)
    classify = task == "classify"
    space = CLASSIFY_SPACE if classify else LM_SPACE
    config = {"name": "synthetic", "output": str(path.parent), "task": task, "metric": "val_loss", "mode": "min",
              "data": ({"path": "artists.csv", "text_column": "text", "label_column": "artist", "vocab_size": 400,
                        "val_fraction": 0.2, "seed": 0} if classify else
                       {"path": "builtin", "vocab_size": 400, "max_tokens": 15, "val_fraction": 0.2, "seed": 0,
                        "builtin_lines": 2000}),
              "model": {"cell": "lstm", "precision": "float32"}, "space": space,
              "budget": {"num_samples": trials, "max_epochs": 4, "max_concurrent": 2, "max_minutes": 0.0},
              "scheduler": {"kind": "asha"}, "asha": {"grace_period": 1, "reduction_factor": 2, "stop_at_baseline": True},
              "searcher": {"kind": "tpe", "seed": 0, "n_startup_trials": 4}}
    (path / "sweep.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    tokens = ["<pad>", "<unk>", "<start>", "<end>"] + [f"w{i}" for i in range(396)]
    (path / "vocab.json").write_text(json.dumps({"format": "lstm-sweep-vocabulary", "version": 1, "tokens": tokens}))
    if classify:
        (path / "labels.json").write_text(json.dumps({"format": "lstm-sweep-labels", "version": 1, "labels": LABELS}))

    rng = np.random.default_rng(0)
    records, starts, clock = [], [], [T0 + 5.0, T0 + 5.5]  # two worker slots
    for i in range(trials):
        params = {"embedding_size": int(rng.choice([16, 32, 64])), "hidden_size": int(np.exp(rng.uniform(np.log(32), np.log(256)))),
                  "num_layers": int(rng.integers(1, 3)), "dropout": float(rng.uniform(0, 0.3)),
                  "learning_rate": float(np.exp(rng.uniform(np.log(1e-3), np.log(2e-2)))),
                  "batch_size": int(rng.choice([32, 64, 128]))}
        if classify:
            params.update(num_layers=1, cell=str(rng.choice(["rnn", "lstm", "gru"])), bidirectional=bool(rng.integers(2)),
                          seq_len=int(rng.choice([16, 32])), padding=str(rng.choice(["pre", "post"])), truncating="pre")
        status, error, epochs = "completed", "", 4
        if i == trials - 1:
            status, error, epochs = "infeasible", INFEASIBLE_REASON, 0
        elif i == trials - 2:
            status, error, epochs = "failed", FAILED_REASON, 1
        elif i == trials - 3 or i % 4 == 3:
            status, epochs = "early_stopped", 1 if i == trials - 3 else 2
        floor = 1.9 + 0.4 * abs(np.log10(params["learning_rate"]) + 2.0) + 0.002 * (256 - params["hidden_size"])
        if i == trials - 3:
            floor = BASELINE + 0.2  # learned nothing: stopped at the baseline
        epoch = np.arange(1, epochs + 1)
        val = floor + (BASELINE + 0.5 - floor) * np.exp(-1.2 * epoch) if i != trials - 3 else floor + 0 * epoch
        history = pd.DataFrame({"epoch": epoch, "loss": val + 0.3, "val_loss": val, "val_loss_padded": val * 0.65,
                                "seconds": 3.0 + 0.02 * params["hidden_size"] + 0 * epoch})
        seconds = float(history.seconds.sum()) + 1.0
        extra = {"batch_size_requested": params["batch_size"], "batch_size_used": params["batch_size"],
                 "predicted_peak_mb": 80.0 + params["hidden_size"] / 4, "measured_peak_mb": 78.0 + params["hidden_size"] / 4,
                 "budget_mb": 500.0, "gpu_share": 0.0, "oom_retries": 0, "baseline": BASELINE}
        records.append(TrialRecord(f"t{i:02d}", status, params, history, seconds=seconds, node="127.0.0.1/ab12cd34",
                                   error=error, extra=extra))
        slot = int(np.argmin(clock))
        starts.append(clock[slot])
        clock[slot] += seconds + 2.0  # Ray starting the next worker

    write_results(path, records)
    _write_ray_folder(path / "ray", records, starts, trials)
    storage = f"sqlite:///{path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name=path.name, direction="minimize")
    distributions = _distributions(space)
    for record in records:
        value = float(record.history.val_loss.iloc[-1]) if record.epochs else math.inf  # the worst, as Tune reports
        study.add_trial(optuna.trial.create_trial(
            params={k: v for k, v in record.params.items() if k in distributions},
            distributions={k: d for k, d in distributions.items() if k in record.params}, value=value))
    if retrained:
        _write_winner(path / "winner", records, classify, confusion)
    return path


def _distributions(space: dict) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    made = {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            continue
        kind, args = next(iter(spec.items()))
        made[name] = {"choice": lambda: CategoricalDistribution(args), "int": lambda: IntDistribution(*args),
                      "logint": lambda: IntDistribution(*args, log=True),
                      "uniform": lambda: FloatDistribution(*args),
                      "loguniform": lambda: FloatDistribution(*args, log=True)}[kind]()
    return made


def _write_ray_folder(folder: Path, records: list[TrialRecord], starts: list[float], trials: int) -> None:
    folder.mkdir()
    (folder / "experiment_state-2026-12-01_10-00-00.json").write_text(json.dumps({"runner_data": {"_start_time": T0}}))
    for i, (record, start) in enumerate(zip(records, starts)):
        trial = folder / f"train_trial_{record.trial_id}_{i + 1}_batch_size={record.params['batch_size']}"
        trial.mkdir()
        common = {"trial_id": record.trial_id, "node": record.node, "baseline": BASELINE}
        if record.status == "infeasible":
            lines = [{**common, "epoch": 0, "outcome": "infeasible", "reason": INFEASIBLE_REASON,
                      "timestamp": int(start + 1.0), "time_this_iter_s": 1.0, "training_iteration": 1}]
        else:
            lines, at = [], start + 1.0
            for n, row in enumerate(record.history.itertuples(), start=1):
                at += row.seconds
                last = n == record.epochs
                outcome = "at_baseline" if last and i == trials - 3 else ""
                lines.append({**common, "epoch": row.epoch, "val_loss": row.val_loss, "trial_started": start,
                              "timestamp": int(at), "time_this_iter_s": row.seconds, "training_iteration": n,
                              "outcome": outcome,
                              "reason": f"val_loss {row.val_loss:.4f} after 1 epoch is no better than the unigram "
                                        f"model ({BASELINE:.4f})" if outcome else ""})
        (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _write_winner(folder: Path, records: list[TrialRecord], classify: bool, confusion: bool) -> None:
    folder.mkdir()
    best = min((r for r in records if r.epochs), key=lambda r: r.history.val_loss.min())
    history = best.history.copy()
    history.to_csv(folder / "history.csv", index=False)
    plot_history(history, folder / "loss.png", title=f"winner {best.trial_id}")
    data = ({"path": "artists.csv", "labels": LABELS, "train_examples": 1200, "val_examples": 300} if classify else
            {"path": "builtin", "max_tokens": 15, "train_sentences": 1290, "val_sentences": 322})
    (folder / "card.json").write_text(json.dumps({"trial_id": best.trial_id, "config": best.params, "metric": "val_loss",
                                                  "best_val_loss": float(history.val_loss.min()), "best_epoch": 4,
                                                  "epochs": 4, "data": data}))
    if classify:
        (folder / "predictions.txt").write_text(
            "validation accuracy 0.8011 over 300 examples (always answering the majority class: 0.3741)\n\n"
            f"{'predicted':<14} {'prob':>5}  {'true':<14} text (cleaned)\n"
            "eminem         0.504  bob-dylan      no reason to get excited\n"
            "bob-dylan      0.531  bob-dylan      once upon a time you dressed so fine\n"
            "dickinson      0.941  dickinson      i .\n"
            "eminem         0.795  eminem         but i m only going to get this one chance\n")
        if confusion:
            (folder / "confusion.json").write_text(json.dumps(
                {"labels": LABELS, "matrix": [[80, 5, 15], [4, 90, 6], [12, 3, 85]], "split": "the validation split"}))


class _Page(html.parser.HTMLParser):
    """The parts of a page the tests look at: element ids, images, tables' headers, tags."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.images, self.tags, self.headers, self.row_classes = set(), [], [], [], []
        self._in_th = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs)
        if tag == "table":
            self.headers.append([])
        if tag == "th":
            self._in_th = True
        if tag == "tr" and attrs.get("class", "").startswith("ending-"):
            self.row_classes.append(attrs["class"])

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_th and self.headers:
            self.headers[-1].append(data)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    run = make_run_folder(tmp_path_factory.mktemp("runs") / "lm")
    write_report(run)
    return run


@pytest.fixture(scope="module")
def lm_page(lm_run) -> str:
    return (lm_run / "report.html").read_text(encoding="utf-8")


def test_every_section_is_there_and_every_image_decodes(lm_page):
    from PIL import Image
    from matplotlib.image import imread

    page = _Page(lm_page)
    for section in ("summary", "trials", "curves", "parameters", "importance", "timeline", "cost", "winner"):
        assert section in page.ids, section
    assert [image["alt"] for image in page.images] == [
        "val loss of every trial per epoch", "parallel coordinates of the searched parameters",
        "the metric against each parameter", "parameter importance", "timeline of the trials per worker slot",
        "the metric against training seconds and parameter count", "training and validation loss of the retrained winner"]
    for image in page.images:
        assert image["alt"]
        data = base64.b64decode(image["src"].removeprefix("data:image/png;base64,"), validate=True)
        Image.open(io.BytesIO(data)).verify()
        assert imread(io.BytesIO(data), format="png").shape[1] >= 400
    # Self-contained and script-free: nothing fetched, nothing run; no view failed.
    assert "<script" not in lm_page and "http" not in lm_page.replace("http-equiv", "")
    assert "could not" not in lm_page


def test_summary_says_the_winner_in_words_and_why_trials_ended(lm_run, lm_page):
    best = json.loads((lm_run / "best.json").read_text())
    words = analysis.describe_winner(read_run_folder(lm_run))
    assert f"embedding {best['params']['embedding_size']} · hidden {best['params']['hidden_size']}" in words
    assert words in lm_page and f"{best['best_val_loss']:.4f}" in lm_page and f"{BASELINE:.4f}" in lm_page
    assert "1,290 train / 322 validation" in lm_page  # winner/card.json's data, after the retrain
    endings = re.findall(r'<tr class="ending-(\w+)[^"]*"><td class="left">([^<]+)</td><td>(\d+)</td>', lm_page)
    counts = {label: int(n) for _, label, n in endings}
    assert counts == {"completed": 10, "stopped by ASHA": 3, "cut by the time budget": 0, "at baseline": 1,
                      "infeasible": 1, "failed": 1}
    assert html.escape(INFEASIBLE_REASON) in lm_page and FAILED_REASON in lm_page
    assert "no better than the unigram" in lm_page  # from the trial's last report in ray/
    assert "trial-hours" in lm_page and "wall time" in lm_page


def test_trial_table_shows_key_columns_first_and_the_rest_behind_details(lm_page):
    page = _Page(lm_page)
    key = next(h for h in page.headers if h and h[0] == "trial")
    assert key[:5] == ["trial", "ended", "best val loss", "best val loss padded", "epochs"]
    assert key[5:11] == ["embedding size", "hidden size", "num layers", "dropout", "learning rate", "batch size"]
    assert key[-1] == "seconds" and "node" not in key
    assert "details" in page.tags
    details = lm_page[lm_page.index("<details"):]
    for shown in ("batch requested", "predicted MB", "measured MB", "device", "node", FAILED_REASON):
        assert shown in details
    assert {"ending-completed", "ending-stopped", "ending-at_baseline", "ending-failed", "ending-infeasible"} <= set(
        page.row_classes)


def test_importance_comes_from_optuna_db(lm_run, lm_page):
    importances, note = analysis.parameter_importances(read_run_folder(lm_run))
    assert set(importances) == set(LM_SPACE) and sum(importances.values()) == pytest.approx(1.0)
    assert "PED-ANOVA" in note and "15 finished trials" in note  # the infeasible trial's inf is left out
    assert 'alt="parameter importance"' in lm_page


def test_too_few_trials_give_a_sentence_not_an_importance_chart(tmp_path):
    run = make_run_folder(tmp_path / "small", trials=5, retrained=False)
    page = (write_report(run)).read_text()
    assert "too few finished trials" in page and 'alt="parameter importance"' not in page
    assert "not retrained yet" in page and "kept" in page  # the split is not recorded before a retrain


def test_timeline_packs_trials_into_worker_slots_and_marks_the_stops(lm_run):
    timeline = analysis.assign_slots(read_timeline(lm_run / "ray"))
    assert len(timeline) == 16 and set(timeline.slot) == {0, 1}
    for _, lane in timeline.groupby("slot"):  # no two trials at once on one slot
        lane = lane.sort_values("start")
        assert (lane.start.to_numpy()[1:] >= lane.end.to_numpy()[:-1] - 1.0).all()
    outcome = dict(zip(timeline.trial_id, timeline.outcome))
    assert outcome["t13"] == "at_baseline" and outcome["t15"] == "infeasible"
    run = read_run_folder(lm_run)
    assert run.tune_started == T0 and run.wall_seconds > 0
    assert 0 < analysis.busy_share(timeline, run.wall_seconds) <= 1


def test_pareto_front_and_close_to_best():
    cost, value = np.array([1.0, 2.0, 3.0, 4.0, np.nan]), np.array([3.0, 2.0, 2.5, 1.0, 0.5])
    assert analysis.pareto_front(cost, value).tolist() == [True, True, False, True, False]
    assert analysis.pareto_front(cost, -value, mode="max").tolist() == [True, True, False, True, False]
    close, distance = analysis.close_to_best(np.array([2.0, 2.05, 2.2, np.nan]), baseline=4.0)
    assert close.tolist() == [True, True, False, False] and distance == pytest.approx(0.1)
    with pytest.raises(ValueError, match="mode"):
        analysis.pareto_front(cost, value, mode="best")


def test_parameter_counts_follow_the_memory_model(lm_run):
    from lstm_sweep.model.memory import count_parameters

    run = read_run_folder(lm_run)
    row = run.trials.iloc[0]
    assert analysis.parameter_counts(run).iloc[0] == count_parameters(
        vocab_size=400, embedding_size=int(row.embedding_size), hidden_size=int(row.hidden_size),
        num_layers=int(row.num_layers))


def test_searched_parameters_know_log_axes():
    searched = {p.name: p for p in searched_parameters({**LM_SPACE, "cell": {"choice": ["lstm"]}, "seq_len": 16})}
    assert list(searched) == list(LM_SPACE)  # a fixed value and a choice of one are not searched
    assert searched["learning_rate"].log and searched["hidden_size"].log and not searched["dropout"].log
    assert searched["batch_size"].categorical


def test_format_value():
    from lstm_sweep.results.views import format_value

    assert format_value("learning_rate", 0.006256) == "6.3e-3"
    assert format_value("learning_rate", 0.0142, exponent=True) == "1.4e-2"
    assert format_value("dropout", 0.00082, exponent=False) == "0.00082"
    assert format_value("best_val_loss", 2.0) == "2.0000" and format_value("seconds", 13.42) == "13.4"
    assert format_value("dropout", math.nan) == "" and format_value("node", "127.0.0.1/ab") == "127.0.0.1/ab"


def test_classifier_report_draws_the_confusion_matrix(tmp_path):
    run = make_run_folder(tmp_path / "cls", trials=12, task="classify")
    page = write_report(run).read_text()
    assert 'alt="confusion matrix of the winner"' in page and "Predictions on validation examples" in page
    assert "counted from" not in page  # confusion.json covers the whole split
    confusion = read_confusion(read_run_folder(run))
    assert confusion.complete and confusion.matrix.sum() == 300 and confusion.labels == LABELS
    assert "seq_len" in analysis.describe_winner(read_run_folder(run))  # the classifier's own settings in words

    (run / "winner" / "confusion.json").unlink()  # then the few lines of predictions.txt, and the page says so
    confusion = read_confusion(read_run_folder(run))
    assert not confusion.complete and confusion.matrix.sum() == 4 and confusion.matrix[0, 2] == 1
    assert "counted from the 4 examples of winner/predictions.txt" in write_report(run).read_text()


def test_a_folder_with_only_the_tables_still_gets_a_page(tmp_path):
    full = make_run_folder(tmp_path / "full", trials=6, retrained=False)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("sweep.yaml", "trials.csv"):
        (bare / name).write_bytes((full / name).read_bytes())
    page = write_report(bare).read_text()
    assert "no trial results under ray/" in page and "no optuna.db" in page and "no val_loss.png" in page
    assert "could not" not in page
    with pytest.raises(Exception, match="no trials.csv"):
        write_report(tmp_path / "nowhere")


def test_val_loss_png_draws_the_baseline_and_a_key():
    from matplotlib.collections import LineCollection

    history = pd.DataFrame({"epoch": [1, 2], "val_loss": [4.9, 3.9], "seconds": [1.0, 1.0]})
    records = [TrialRecord("a", "completed", {"hidden_size": 64}, history, 2.0, extra={"baseline": 4.7}),
               TrialRecord("b", "early_stopped", {"hidden_size": 32}, history.head(1) + 0.1, 1.0, extra={"baseline": 4.7})]
    figure = plot_val_loss(records)
    ax = figure.axes[0]
    assert len(ax.get_lines()) == 2  # still one line per trial
    baselines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert baselines and baselines[0].get_segments()[0][0][1] == pytest.approx(4.7)
    key = " ".join(t.get_text() for legend in figure.legends for t in legend.get_texts())
    assert "baseline 4.7" in key and "stopped early" in key and "best trial" in key
    assert not [c for c in plot_val_loss(records, baseline=None).axes[0].collections if isinstance(c, LineCollection)]
