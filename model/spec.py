"""The model spec: one trial's model and how it trains, built once and passed whole.

A trial's config is a dict from Ray Tune (the searched values) and the sweep's fixed settings
(the corpus vocabulary, the longest batch, the default cell, the precision, a classifier's
classes). :meth:`ModelSpec.from_config` is the one place that reads that dict, with its casts
and defaults; everything after it — the sizer, the memory model, the task's model builder,
``lstm-sweep plan``, the retrain and every description in tables and plots — takes the spec,
as nanoGPT passes its ``GPTConfig``.

No TensorFlow is imported here.

Example:
    >>> spec = ModelSpec.from_config({"embedding_size": 32, "hidden_size": 104, "num_layers": 1,
    ...                               "dropout": 0.19, "learning_rate": 6.3e-3, "batch_size": 64},
    ...                              vocab_size=2000, seq_len=14)
    >>> spec.describe()
    'lstm · embedding 32 · hidden 104 · 1 layer · dropout 0.19 · lr 6.3e-3 · batch 64'
    >>> spec.with_batch(32).batch_size
    32
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from lstm_sweep.model.cells import Cell, get_cell

PRECISIONS = {"float32": 4, "mixed_float16": 2}  # bytes per activation value
SIDES = ("pre", "post")  # where a classifier's short examples are padded and long ones cut


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides one model's shape, cost and training step.

    Every field is checked when the spec is made; a bad one raises ``ValueError`` naming the
    field, the value and the rule.
    """

    vocab_size: int  # token ids, <pad> and <unk> included; >= 2
    embedding_size: int = 64  # width of the token embedding; >= 1
    hidden_size: int = 128  # units per recurrent layer (per direction); >= 1
    num_layers: int = 1  # stacked recurrent layers; >= 1
    dropout: float = 0.0  # dropout after each recurrent layer, in [0, 1)
    cell: str = "lstm"  # a registered cell (model.cells): lstm, gru, rnn, ...
    learning_rate: float = 1e-3  # Adam's step size; > 0
    batch_size: int = 64  # examples per training batch; >= 1
    seq_len: int = 14  # time steps of the longest batch; >= 1
    num_classes: int = 0  # 0: a language model (logits over the vocabulary); >= 2: a classifier
    bidirectional: bool = False  # classifier: each layer run both ways
    padding: str = "pre"  # classifier: where a short example's zeros go
    truncating: str = "pre"  # classifier: which end of a long example is cut
    precision: str = "float32"  # float32 | mixed_float16 (half-size activations, GPUs)

    def __post_init__(self) -> None:
        for name, minimum in (("vocab_size", 2), ("embedding_size", 1), ("hidden_size", 1), ("num_layers", 1),
                              ("batch_size", 1), ("seq_len", 1), ("num_classes", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}={value!r} must be an int >= {minimum}")
        if self.num_classes == 1:
            raise ValueError("num_classes=1 must be 0 (a language model) or >= 2 (a classifier)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"learning_rate={self.learning_rate!r} must be a finite number > 0")
        get_cell(self.cell)  # a registered cell, or ValueError naming the registered ones
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} must be one of {sorted(PRECISIONS)}")
        for name in ("padding", "truncating"):
            if getattr(self, name) not in SIDES:
                raise ValueError(f"{name}={getattr(self, name)!r} must be 'pre' or 'post'")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"bidirectional={self.bidirectional!r} must be true or false")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, vocab_size: int, seq_len: int, cell: str = "lstm",
                    precision: str = "float32", num_classes: int = 0) -> "ModelSpec":
        """The spec of a trial's ``config`` (Ray Tune's dict) under the sweep's fixed settings.

        A key of ``config`` wins over the fixed setting of the same name (a searched
        ``vocab_size``, ``cell`` or a classifier's ``seq_len``); hyperparameters the config
        lacks take the spec's defaults.
        """
        values = {**_FIXED_DEFAULTS, "vocab_size": vocab_size, "seq_len": seq_len, "cell": cell,
                  "precision": precision, "num_classes": num_classes}
        for name, cast in _CASTS.items():
            if name in config and config[name] is not None:
                values[name] = cast(config[name])
        for name in ("vocab_size", "seq_len", "num_classes"):
            values[name] = int(values[name])
        return cls(**values)

    def with_batch(self, batch_size: int) -> "ModelSpec":
        """The same model at another batch size."""
        return dataclasses.replace(self, batch_size=int(batch_size))

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    @property
    def recurrent(self) -> Cell:
        """The cell's registry entry (gates, states, the Keras layer)."""
        return get_cell(self.cell)

    @property
    def is_classifier(self) -> bool:
        return self.num_classes >= 2

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_units(self) -> int:
        """Units of the output layer: the vocabulary's logits, or the head's (1 sigmoid for two classes)."""
        if not self.is_classifier:
            return self.vocab_size
        return 1 if self.num_classes == 2 else self.num_classes

    def hyperparameters(self) -> dict[str, Any]:
        """The fields as plain data (for JSON cards and tables)."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The spec in words with rounded values, as tables, plots and logs show a trial."""
        parts = [f"{'bidirectional ' if self.bidirectional else ''}{self.cell}",
                 f"embedding {self.embedding_size}", f"hidden {self.hidden_size}",
                 f"{self.num_layers} layer{'s' * (self.num_layers > 1)}",
                 f"dropout {self.dropout:.2g}", f"lr {self.learning_rate:.1e}".replace("e-0", "e-"), f"batch {self.batch_size}"]
        if self.is_classifier:
            parts.append(f"seq_len {self.seq_len} ({self.padding}-padded, {self.truncating}-truncated)")
        return " · ".join(parts)


def _boolean(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):  # numpy's, from Tune's choice
        return bool(value)
    raise ValueError(f"bidirectional={value!r} must be true or false")


# How each hyperparameter a trial config may hold is read (numpy values from Tune included).
_CASTS = {"vocab_size": int, "embedding_size": int, "hidden_size": int, "num_layers": int, "dropout": float,
          "cell": str, "learning_rate": float, "batch_size": int, "seq_len": int, "bidirectional": _boolean,
          "padding": str, "truncating": str, "precision": str}
_FIXED_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelSpec)
                   if f.default is not dataclasses.MISSING}
