"""The sweep configuration schema: what it accepts, and the one-line errors for what it does not."""

import textwrap

import pytest

from lstm_sweep.search.config import ConfigError, load_config, parse_config

QUICK = "sweeps/quick.yaml"


def test_quick_sweep_loads_and_round_trips(tmp_path):
    config = load_config(QUICK)
    assert config.budget.num_samples >= 1 and config.data.path == "builtin"
    assert set(config.searched()) == {"embedding_size", "hidden_size", "num_layers", "dropout",
                                      "learning_rate", "batch_size"}
    # What sweep.yaml holds reads back to the same config.
    assert parse_config(config.to_dict()) == config


def test_param_space_maps_to_ray_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = parse_config({"space": {
        "embedding_size": {"choice": [8, 16]}, "hidden_size": {"logint": [16, 64]},
        "num_layers": {"int": [1, 2]}, "dropout": {"uniform": [0, 0.5]},
        "learning_rate": {"loguniform": ["1e-4", 1e-2]}, "batch_size": 32}}).param_space()
    assert isinstance(space["embedding_size"], Categorical)
    assert isinstance(space["hidden_size"], Integer)
    assert (space["num_layers"].lower, space["num_layers"].upper) == (1, 3)  # our bounds include high
    assert isinstance(space["dropout"], Float)
    assert space["learning_rate"].lower == pytest.approx(1e-4)  # "1e-4" read as the number
    assert space["batch_size"] == 32


def test_missing_hyperparameters_take_documented_defaults():
    config = parse_config({})
    assert {n: p.args[0] for n, p in config.space.items()} == {
        "embedding_size": 64, "hidden_size": 128, "num_layers": 1, "dropout": 0.0,
        "learning_rate": 1e-3, "batch_size": 64}


def test_overrides_are_validated_too():
    config = load_config(QUICK).with_overrides(**{"budget.max_epochs": 2, "data.path": "x", "output": None})
    assert config.budget.max_epochs == 2 and config.data.path == "x"
    with pytest.raises(ConfigError, match="asha.grace_period"):
        parse_config({"asha": {"grace_period": 3}}).with_overrides(**{"budget.max_epochs": 2})


@pytest.mark.parametrize("raw, match", [
    ({"budjet": {}}, "unknown key budjet"),
    ({"space": {"hiden_size": 3}}, "unknown key space.hiden_size"),
    ({"data": {"vocab": 10}}, "unknown key data.vocab"),
    ({"space": {"hidden_size": 0}}, "space.hidden_size: 0 is out of range"),
    ({"space": {"hidden_size": {"int": [64, 32]}}}, "low 64 > high 32"),
    ({"space": {"hidden_size": {"uniform": [32, 64]}}}, "is an integer"),
    ({"space": {"dropout": {"int": [0, 1]}}}, "is not an integer"),
    ({"space": {"learning_rate": {"loguniform": [0, 1]}}}, "low > 0"),
    ({"space": {"dropout": 1.5}}, "space.dropout: 1.5 is out of range"),
    ({"space": {"batch_size": {"normal": [1, 2]}}}, "expected a value or one of"),
    ({"space": {"batch_size": "many"}}, "'many' is not a number"),
    ({"space": {"embedding_size": 2.5}}, "must be an integer"),
    ({"budget": {"num_samples": 0}}, "budget.num_samples"),
    ({"budget": {"max_epochs": -1}}, "budget.max_epochs"),
    ({"asha": {"grace_period": 5}, "budget": {"max_epochs": 4}}, r"grace_period: 5.0 must be <= budget.max_epochs \(4\)"),
    ({"asha": {"reduction_factor": 1}}, "reduction_factor"),
    ({"data": {"vocab_size": -5}}, "vocab_size"),
    ({"data": {"val_fraction": 1.5}}, "val_fraction"),
    ({"model": {"cell": "transformer"}}, "model.cell"),
    ({"resources": {"cpus_per_trial": 0}}, "cpus_per_trial"),
    (["not", "a", "mapping"], "top level must be a mapping"),
])
def test_bad_configs_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_config(raw, source="s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml") and "\n" not in message


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent("""
        space:
          learning_rate: {loguniform: [1e-4, 1e-2]}
        budget: {max_epochs: 2}
        asha: {grace_period: 2}
    """))
    assert load_config(good).space["learning_rate"].args == (1e-4, 1e-2)
