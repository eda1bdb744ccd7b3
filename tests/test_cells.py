"""The cell registry: a fourth cell is one registry entry, and every part of the job then knows it."""

import numpy as np
import pandas as pd
import pytest

from lstm_sweep.model import cells
from lstm_sweep.model.cells import Cell, cell_names, get_cell, register_cell
from lstm_sweep.model.memory import count_parameters, estimate_peak_bytes
from lstm_sweep.model.spec import ModelSpec
from lstm_sweep.search.config import ConfigError, parse_config

# The GRU of Cho et al. (2014) as TensorFlow 1 had it: the reset gate applied before the matrix
# product, so one bias vector a gate block (Keras' default GRU, reset_after=True, has two).
GRU_V1 = Cell("gru_v1", "keras.layers.GRU", gates=3, states=1, biases=1, step_values=11,
              layer_options=(("reset_after", False),))


@pytest.fixture
def gru_v1():
    register_cell(GRU_V1)
    yield GRU_V1
    cells._REGISTRY.pop(GRU_V1.name)


def test_the_built_in_cells_are_registered_with_their_costs():
    assert cell_names()[:3] == ("lstm", "gru", "rnn")
    assert (get_cell("lstm").gates, get_cell("lstm").states) == (4, 2)
    assert (get_cell("gru").gates, get_cell("gru").biases, get_cell("rnn").states) == (3, 2, 1)
    with pytest.raises(ValueError, match="cell='transformer' must be one of lstm, gru, rnn"):
        get_cell("transformer")


@pytest.mark.parametrize("bad, needle", [
    (dict(name="Big Cell"), "lowercase name"), (dict(layer="LSTM"), "import path"),
    (dict(gates=0), "gates=0"), (dict(states=1.5), "states=1.5"), (dict(step_values=0), "step_values"),
])
def test_a_cell_is_checked_when_made(bad, needle):
    fields = dict(name="x", layer="keras.layers.LSTM", gates=4, states=2, step_values=10) | bad
    with pytest.raises(ValueError, match=needle):
        Cell(**fields)


def test_a_different_cell_of_a_registered_name_needs_replace(gru_v1):
    with pytest.raises(ValueError, match="replace=True"):
        register_cell(Cell("gru_v1", "keras.layers.GRU", gates=3, states=1, step_values=7))
    assert register_cell(GRU_V1) is GRU_V1  # the same entry again is fine


def test_a_registered_cell_is_built_counted_and_accepted_by_the_config(gru_v1):
    from lstm_sweep.model import build_classifier, build_language_model

    model = build_language_model(vocab_size=50, embedding_size=8, hidden_size=12, num_layers=2, cell="gru_v1")
    assert not model.get_layer("gru_v1_0").reset_after
    assert count_parameters(50, 8, 12, 2, "gru_v1") == model.count_params()
    assert count_parameters(50, 8, 12, 2, "gru_v1") < count_parameters(50, 8, 12, 2, "gru")  # one bias, not two
    classifier = build_classifier(vocab_size=50, num_classes=3, embedding_size=8, hidden_size=12, cell="gru_v1",
                                  bidirectional=True)
    assert count_parameters(50, 8, 12, 1, "gru_v1", num_classes=3, bidirectional=True) == classifier.count_params()
    spec = ModelSpec(vocab_size=7000, embedding_size=64, hidden_size=256, cell="gru_v1", batch_size=64)
    assert estimate_peak_bytes(spec) > 0
    assert parse_config({"model": {"cell": "gru_v1"}}).model.cell == "gru_v1"
    assert parse_config({"space": {"cell": {"choice": ["lstm", "gru_v1"]}}}).space["cell"].args == ("lstm", "gru_v1")


def test_an_unregistered_cell_is_a_config_error_naming_the_registered_ones():
    with pytest.raises(ConfigError, match="model.cell: 'gru_v1' must be one of lstm, gru, rnn"):
        parse_config({"model": {"cell": "gru_v1"}})
    with pytest.raises(ConfigError, match="space.cell: 'gru_v1' is not one of lstm, gru, rnn"):
        parse_config({"space": {"cell": "gru_v1"}})


def test_generation_carries_a_registered_cells_state(gru_v1):
    from lstm_sweep.data_pipeline import Vocabulary
    from lstm_sweep.model import build_language_model, generate, generate_by_rerunning_prefix

    vocab = Vocabulary(["<pad>", "<unk>", "<start>", "<end>", "i", "love", "you", "me"])
    model = build_language_model(vocab_size=len(vocab), embedding_size=8, hidden_size=16, num_layers=2,
                                 cell="gru_v1")
    stateful = generate(model, vocab, "i love", max_tokens=6, temperature=0)
    assert stateful == generate_by_rerunning_prefix(model, vocab, "i love", max_tokens=6, temperature=0)


@pytest.mark.slow
def test_a_sweep_trains_a_cell_registered_only_in_the_driver(gru_v1, tmp_path, local_ray, tiny_sweep):
    """The Ray workers never import this test: the cell travels to them with the sweep."""
    from lstm_sweep.search.sweep import run_sweep

    config = tiny_sweep(tmp_path, samples=2, epochs=1, space={"cell": "gru_v1", "learning_rate": 1e-2})
    outcome = run_sweep(config, name="run")
    trials = pd.read_csv(outcome.paths["trials"])
    assert set(trials.status) == {"completed"}, trials.to_dict("records")
    assert np.isfinite(trials.best_val_loss).all()
    assert all(record.params["cell"] == "gru_v1" for record in outcome.records)
