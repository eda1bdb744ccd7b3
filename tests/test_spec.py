"""The model spec: read once from a trial's config, checked there, passed whole."""

import numpy as np
import pytest

from lstm_sweep.model.memory import estimate_peak_bytes
from lstm_sweep.model.spec import ModelSpec
from lstm_sweep.search.config import parse_config
from lstm_sweep.search.resources import GiB, TrialSizer

TRIAL = {"embedding_size": np.int64(32), "hidden_size": 104, "num_layers": 1, "dropout": 0.19,
         "learning_rate": np.float64(6.3e-3), "batch_size": 64}


def test_a_trial_config_becomes_a_spec_with_its_casts_and_the_sweeps_fixed_settings():
    spec = ModelSpec.from_config(TRIAL, vocab_size=2000, seq_len=14, cell="gru")
    assert spec == ModelSpec(vocab_size=2000, embedding_size=32, hidden_size=104, num_layers=1, dropout=0.19,
                             cell="gru", learning_rate=6.3e-3, batch_size=64, seq_len=14)
    assert type(spec.embedding_size) is int and type(spec.learning_rate) is float
    # The trial's own values win over the sweep's fixed ones.
    own = ModelSpec.from_config({**TRIAL, "cell": "rnn", "vocab_size": 500, "seq_len": 64,
                                 "bidirectional": np.bool_(True)}, vocab_size=2000, seq_len=14, num_classes=3)
    assert (own.cell, own.vocab_size, own.seq_len, own.bidirectional, own.output_units) == ("rnn", 500, 64, True, 3)
    assert spec.describe() == "gru · embedding 32 · hidden 104 · 1 layer · dropout 0.19 · lr 6.3e-3 · batch 64"


@pytest.mark.parametrize("change, needle", [
    ({"hidden_size": 0}, "hidden_size=0 must be an int >= 1"), ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
    ({"learning_rate": 0.0}, "learning_rate=0.0 must be a finite number > 0"),
    ({"cell": "transformer"}, "cell='transformer' must be one of"), ({"num_classes": 1}, "num_classes=1"),
    ({"padding": "middle"}, "padding='middle'"), ({"precision": "float8"}, "precision='float8'"),
])
def test_a_bad_spec_names_the_field_and_the_rule(change, needle):
    with pytest.raises(ValueError, match=needle):
        ModelSpec(vocab_size=100, **change)


def test_the_sizer_plans_the_spec_and_carries_its_calibration():
    from lstm_sweep.model.memory import CPU_CALIBRATION

    sizer = TrialSizer(vocab_size=7000, seq_len=14, host_budget_bytes=2 * GiB)
    config = {**TRIAL, "hidden_size": 2048, "batch_size": 1024}
    plan = sizer.plan(config)
    assert plan.predicted_peak_bytes == estimate_peak_bytes(sizer.spec(config).with_batch(plan.batch_size_used))
    # A calibration that predicts 30% more gets a smaller batch from the same budget.
    heavier = CPU_CALIBRATION.replace(state_copies=CPU_CALIBRATION.state_copies * 1.3,
                                      logit_copies=CPU_CALIBRATION.logit_copies * 1.3)
    other = TrialSizer(vocab_size=7000, seq_len=14, host_budget_bytes=2 * GiB, calibration=heavier).plan(config)
    assert 0 < other.batch_size_used < plan.batch_size_used < 1024
    assert other.predicted_peak_bytes == estimate_peak_bytes(sizer.spec(config).with_batch(other.batch_size_used),
                                                             calibration=heavier)


def test_the_task_builds_the_spec_of_the_real_vocabulary_and_classes():
    from lstm_sweep.data_pipeline import LabelledSettings, prepare_labelled
    from lstm_sweep.search.tasks import get_task

    config = parse_config({"task": "classify", "space": {"seq_len": {"choice": [16, 48]}},
                           "model": {"cell": "gru"}})
    prepared = prepare_labelled(LabelledSettings(builtin_examples=300, builtin_classes=3))
    spec = get_task("classify").spec({**TRIAL, "seq_len": 16, "bidirectional": False, "padding": "post",
                                      "truncating": "pre"}, prepared, config, dropout=0.2)
    assert (spec.vocab_size, spec.num_classes, spec.cell, spec.seq_len, spec.padding, spec.dropout) == \
        (len(prepared.vocab), 3, "gru", 16, "post", 0.2)
