"""Predict the peak memory of one training step of our language model, before it runs.

Peers find a batch size by trial and error (Lightning's BatchSizeFinder, Accelerate's
``find_executable_batch_size``: run, crash with OOM, halve). We count instead:

    peak = state + activations + workspace

* **state**: parameters, their gradients and Adam's two moment slots: ``4 x params`` values.
* **activations** kept for the backward pass, per batch of ``B`` sentences of ``T`` steps:
  the embedding output (``B T E``); per recurrent layer and step, the gate pre-activations
  and activations and the states (``k_gates H`` for the gates + ``k_states H`` for the
  states: LSTM 4 gates, 2 states; GRU 3, 1; SimpleRNN 1, 1); the dropout masks; and the
  logits with their softmax and gradient (``3 B T V``), the term that dominates at
  vocabularies of thousands.
* **workspace**: the framework's own overhead (kernels, allocator slack, the input
  pipeline), a constant plus a share of the activations, calibrated by measurement in
  ``bench/memory.py``.

All sizes in bytes. float32 is 4 bytes a value; ``mixed_float16`` (GPUs) stores
activations in 2 bytes but keeps float32 weights, slots and logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks (and gate activations) per step
STATES = {"lstm": 2, "gru": 1, "rnn": 1}  # states kept per step: h (and c for an LSTM)
PRECISIONS = {"float32": 4, "mixed_float16": 2}  # bytes per activation value

# Calibration (bench/memory.py fits these against measured peaks; see BENCHMARKS.md).
WORKSPACE_BYTES = 64 * 2**20  # framework constant: kernels, allocator slack, input pipeline
WORKSPACE_SHARE = 0.25  # extra activation-sized temporaries (gradient buffers in flight)
# A trial process's own resident memory before its model exists (Python, TensorFlow, Ray, the
# token arrays); reserved on top of the predicted peak. Provisional until bench/memory.py measures it.
PROCESS_BASELINE_BYTES = 1024 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of a predicted training-step peak, in bytes."""

    parameters: int  # number of trainable values, not bytes
    state: int  # weights + gradients + Adam slots
    activations: int
    workspace: int

    @property
    def total(self) -> int:
        return self.state + self.activations + self.workspace


def count_parameters(vocab_size: int, embedding_size: int, hidden_size: int,
                     num_layers: int = 1, cell: str = "lstm") -> int:
    """Trainable values of :func:`model.build_language_model` with these sizes.

    Example:
        >>> count_parameters(vocab_size=7000, embedding_size=256, hidden_size=1024, num_layers=1)
        14213976
    """
    _check(vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden_size,
           num_layers=num_layers)
    gates = _gates(cell)
    total = vocab_size * embedding_size  # embedding
    width = embedding_size
    for _ in range(num_layers):
        # kernel (in x gH) + recurrent kernel (H x gH) + bias; Keras' GRU (reset_after=True)
        # has two bias vectors.
        biases = 2 if cell == "gru" else 1
        total += gates * hidden_size * (width + hidden_size) + biases * gates * hidden_size
        width = hidden_size
    return total + hidden_size * vocab_size + vocab_size  # output layer


def estimate_memory(config: Mapping, precision: str = "float32") -> MemoryEstimate:
    """The parts of the predicted peak memory of one training step for ``config``.

    ``config`` needs ``vocab_size``, ``embedding_size``, ``hidden_size``, ``batch_size``
    and ``seq_len`` (time steps of the longest batch: ``max_tokens - 1``); ``num_layers``
    (default 1), ``dropout`` (default 0) and ``cell`` (default ``lstm``) are optional.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of {sorted(PRECISIONS)}")
    v, e, h = int(config["vocab_size"]), int(config["embedding_size"]), int(config["hidden_size"])
    b, t = int(config["batch_size"]), int(config["seq_len"])
    layers, cell = int(config.get("num_layers", 1)), str(config.get("cell", "lstm"))
    _check(batch_size=b, seq_len=t)
    params = count_parameters(v, e, h, layers, cell)
    act = PRECISIONS[precision]

    steps = b * t
    per_layer = (2 * _gates(cell) + STATES[cell]) * h  # pre-activations, activations, states
    if float(config.get("dropout", 0.0)) > 0:
        per_layer += h  # the dropout mask
    activations = steps * (e + layers * per_layer) * act
    activations += 3 * steps * v * 4  # logits, softmax and their gradient: float32 always
    return MemoryEstimate(
        parameters=params,
        state=4 * params * 4,
        activations=activations,
        workspace=int(WORKSPACE_BYTES + WORKSPACE_SHARE * activations),
    )


def estimate_peak_bytes(config: Mapping, precision: str = "float32") -> int:
    """Predicted peak bytes of one training step (Adam) of our language model.

    Example:
        >>> cfg = dict(vocab_size=7000, embedding_size=256, hidden_size=2048, num_layers=2,
        ...            batch_size=1024, seq_len=14)
        >>> estimate_peak_bytes(cfg) > 2**30  # the notebooks' OOM at shape [1024, 2048]
        True
    """
    return estimate_memory(config, precision).total


def largest_batch_that_fits(config: Mapping, budget_bytes: int, precision: str = "float32",
                            max_batch: int = 1 << 16) -> int:
    """The largest batch size whose predicted peak is within ``budget_bytes``; 0 if none.

    The peak is linear in the batch size, so this is a closed form rather than a search;
    ``batch_size`` in ``config`` is ignored.

    Example:
        >>> cfg = dict(vocab_size=7000, embedding_size=256, hidden_size=512, seq_len=14)
        >>> largest_batch_that_fits(cfg, budget_bytes=2 * 2**30)
        1066
    """
    if budget_bytes <= 0:
        raise ValueError(f"budget_bytes={budget_bytes} must be > 0")
    one = estimate_peak_bytes({**config, "batch_size": 1}, precision)
    two = estimate_peak_bytes({**config, "batch_size": 2}, precision)
    per_sentence, fixed = two - one, 2 * one - two
    if fixed + per_sentence > budget_bytes:
        return 0
    return int(min(max_batch, (budget_bytes - fixed) // per_sentence))


def _gates(cell: str) -> int:
    if cell not in GATES:
        raise ValueError(f"cell={cell!r} must be one of {sorted(GATES)}")
    return GATES[cell]


def _check(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name}={value} must be >= 1")
