"""The recurrent cells a model can use, in one registry of plain Python (no TensorFlow here).

Each entry says what the rest of the project needs to know of a cell::

    name   Keras layer        gates  states  biases  values kept a step (memory model)
    lstm   keras.layers.LSTM      4       2       1  10 H (calibrated)
    gru    keras.layers.GRU       3       1       2  11 H (measured; Keras' reset_after GRU has 2 bias vectors)
    rnn    keras.layers.SimpleRNN 1       1       1   3 H (2 x gates + states, as counted)

* the model builders (``model.lm``, ``model.classifier``) make the cell's Keras layer;
* the memory model (``model.memory``) counts its parameters (gates, biases) and what the
  backward pass keeps per time step (``step_values``);
* generation (``model.generation``) carries its ``states`` from token to token;
* the config schema (``search.config``) accepts its name in ``model.cell`` and ``space.cell``.

Adding a cell is one :func:`register_cell` call (and its tests). The Keras layer is named by
its import path and loaded only when a model is built, so reading a config stays light.

Example:
    >>> get_cell("lstm").gates
    4
    >>> gru_v1 = register_cell(Cell("gru_v1", "keras.layers.GRU", gates=3, states=1, biases=1,
    ...                             step_values=11, layer_options=(("reset_after", False),)))
    >>> "gru_v1" in cell_names()
    True
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cell:
    """One recurrent cell type.

    Args:
        name: what configs call it (``model.cell``, ``space.cell``); lowercase, no spaces.
        layer: import path of its Keras layer class, e.g. ``"keras.layers.LSTM"``; the layer
            takes ``units`` first and ``return_sequences``, ``name`` and ``layer_options``.
        gates: weight blocks of the layer's kernels (and gate activations) a step; >= 1.
        states: recurrent state tensors carried from step to step (LSTM: h and c); >= 1.
        biases: bias vectors per weight block; >= 1.
        step_values: values of ``hidden_size`` kept per step and layer for the backward pass
            (the memory model's activation term); > 0.
        layer_options: extra keyword arguments of the Keras layer, as ``(key, value)`` pairs.
    """

    name: str
    layer: str
    gates: int
    states: int
    biases: int = 1
    step_values: float = 0.0
    layer_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip().lower() \
                or " " in self.name:
            raise ValueError(f"name={self.name!r} must be a non-empty lowercase name without spaces")
        if not isinstance(self.layer, str) or "." not in self.layer:
            raise ValueError(f"layer={self.layer!r} must be the import path of a Keras layer class, "
                             "e.g. 'keras.layers.LSTM'")
        for field in ("gates", "states", "biases"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field}={value!r} must be an int >= 1")
        if not self.step_values > 0:
            raise ValueError(f"step_values={self.step_values!r} must be > 0 (values of H kept a step)")
        object.__setattr__(self, "layer_options", tuple((str(k), v) for k, v in self.layer_options))

    def layer_class(self) -> type:
        """The Keras layer class (imports Keras)."""
        module, _, attribute = self.layer.rpartition(".")
        return getattr(importlib.import_module(module), attribute)

    def make_layer(self, units: int, **kwargs: Any):
        """A new Keras layer of this cell with ``units`` units (``return_sequences``, ``name``, ...)."""
        return self.layer_class()(units, **dict(self.layer_options), **kwargs)


_REGISTRY: dict[str, Cell] = {}


def register_cell(cell: Cell, replace: bool = False) -> Cell:
    """Add ``cell`` to the registry and return it; a second cell of the same name needs ``replace``.

    A cell registered in a driver process travels with a sweep to its trials (``search.trainable``
    registers the sweep's cells in each worker), so a plug-in cell needs no import in the workers.
    """
    if not isinstance(cell, Cell):
        raise ValueError(f"cell={cell!r} must be a Cell")
    if cell.name in _REGISTRY and _REGISTRY[cell.name] != cell and not replace:
        raise ValueError(f"a different cell named {cell.name!r} is registered: pass replace=True to override it")
    _REGISTRY[cell.name] = cell
    return cell


def get_cell(name: str | Cell) -> Cell:
    """The registered cell called ``name`` (a :class:`Cell` is returned as it is)."""
    if isinstance(name, Cell):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"cell={name!r} must be one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def cell_names() -> tuple[str, ...]:
    """The registered cells' names, built-in ones first."""
    return tuple(_REGISTRY)


def registered_cells() -> tuple[Cell, ...]:
    """Every registered cell (what a sweep carries to its trials)."""
    return tuple(_REGISTRY.values())


# The built-in cells. GRU keeps more per step than its gate count says: 7 H counted, about 11 H
# measured (model.memory, "Classifiers"); the LSTM's 10 H is the calibrated figure.
LSTM = register_cell(Cell("lstm", "keras.layers.LSTM", gates=4, states=2, biases=1, step_values=10))
GRU = register_cell(Cell("gru", "keras.layers.GRU", gates=3, states=1, biases=2, step_values=11))
RNN = register_cell(Cell("rnn", "keras.layers.SimpleRNN", gates=1, states=1, biases=1, step_values=3))
