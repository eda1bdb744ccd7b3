"""Predict the peak memory of one training step of our language model (or classifier), before it runs.

Peers find a batch size by trial and error (Lightning's BatchSizeFinder, Accelerate's
``find_executable_batch_size``: run, crash with OOM, halve). We count instead:

    peak = state + activations + workspace + checkpoint

* **state**: parameters, their gradients and Adam's two moment slots (4 values a
  parameter), plus the parameter-sized temporaries of the backward pass and the update, and
  the allocator's share of them: ``state_copies x params`` float32 values (see below).
* **activations** kept for the backward pass, per batch of ``B`` sentences of ``T`` steps:
  the embedding output (``B T E``); per recurrent layer and step, the gate pre-activations
  and activations and the states (``k_gates H`` for the gates + ``k_states H`` for the
  states: LSTM 4 gates, 2 states; GRU 3, 1; SimpleRNN 1, 1); the dropout masks; and the
  logits (``logit_copies x B T V``, float32 always), the term that dominates at
  vocabularies of thousands.
* **workspace**: what the framework holds besides the tensors, a fixed cost per recurrent
  layer plus a share of the activations for the allocator's slack.
* **checkpoint**: saving the epoch's checkpoint (an unzipped Keras folder,
  ``model.train.save_checkpoint``) copies one variable at a time out of TensorFlow:
  ``checkpoint_copies x`` the largest variable, on top of what the allocator still holds.

All sizes in bytes. float32 is 4 bytes a value; ``mixed_float16`` (GPUs) stores
activations in 2 bytes but keeps float32 weights, slots and logits, and adds float16 copies of the
weights and gradients, the loss scale's temporaries and cuDNN's flat parameter buffers
(``mixed_precision``; counted, not measured). The peak is linear in
the batch size and grows with every other size.

Calibration (``CPU_CALIBRATION``; ``bench/memory.py`` then ``bench/memory.py --fit -0.10``;
TensorFlow 2.21, Keras 3.15, CPU; embedding 256, vocabulary 7000 (and 2000, 20000), 15
tokens, hidden 256-2048, batch 32-1024, 1-2 layers). Each config trains in a fresh process
*as a trial does* (``set_seed``, one TensorFlow thread, two such processes at once, two
epochs of padded batches of varying width with validation and a checkpoint save after each),
and the measure is the process's resident-set peak above its resident set just before the
model is built. The first calibration measured a quiet process (fixed-shape batches, two
threads, a few steps); real trials peaked up to 40% above it, mostly through a cost that
builds up over the first tens of steps (+190 MB at hidden 1024, batch 32). TensorFlow's CPU
allocator statistics (``get_memory_info``) were read as well: they show which tensors are
alive; the resident set adds what the allocator holds besides. The constants and their reasons:

* ``state_copies = 6.625``. Weights, gradients and Adam's ``m`` and ``v`` are 4 copies. The
  allocator's own peak shows about 5, most likely because the backward ``while_loop`` of a
  Keras 3 LSTM on the CPU (no cuDNN) adds each step's recurrent-kernel gradient into an
  accumulator while that step's product is alive, and Adam's element-wise update makes
  parameter-sized temporaries. The resident set holds more: freed parameter-sized buffers
  are not placed at the same addresses every step. At small batches (hidden 2048, batch
  32-128) this term is most of the peak.
* per recurrent layer ``(2 k_gates + k_states) H`` values a token (10 H for an LSTM), kept:
  the allocator's peak fits 9-10 H, which is what the ``while_loop`` stores for its gradient
  (``h`` and ``c`` of the previous step, the 4 gate activations, ``tanh(c)``) plus the layer
  output in its time-major array and its batch-major copy.
* ``logit_copies = 1.47`` (3 would be logits, softmax and gradient). The allocator's peak
  holds about 1.0 logits-sized buffer: TensorFlow forwards buffers, so the fused
  ``sparse_softmax_cross_entropy_with_logits`` writes its gradient into the logits buffer
  once nothing else reads it. Op determinism replaces that fused kernel with a
  ``log_softmax`` and a ``gather`` holding about two more: ``model.set_seed`` leaves it off.
* ``layer_bytes = 78 MiB`` a recurrent layer, ``workspace_bytes = 0``: what a model holds
  beyond its tensors grows with its recurrent layers (each one's traced ``while_loop``, its
  oneDNN primitives and per-step buffers of every batch width seen), not with the process.
* ``workspace_share = 0.085``: further allocator slack, growing with the activations.
* ``checkpoint_copies = 2``: the epoch's checkpoint save, measured above the steps' own peak.

Against ``bench/memory.py`` on 2026-11-23 (20 trial-like configs) every prediction lies
between 9.9% below and 24.6% above the measured peak (target: at most 10% below, 25% above).
The constants were fitted to that run (``--fit``: the smallest worst over-prediction with no
prediction more than 10% below), so the band holds in-sample and at its edges: no model
linear in the batch does much better, since at hidden 256 the peaks at batch 128, 512 and
1024 are 279, 649 and 781 MB. ``HEADROOM`` (10%) is that worst under-prediction: the
planner (``search.resources``) sizes a trial against 90% of its budget. Trials now train on
batches of one sentence length (``lm_dataset(buckets=True)``) and peak lower than the
calibration's child, which cuts each batch to its longest sentence: the model over-states
them (by 30-40% for small and middle models in ``bench/memory_budget.py``). On a GPU (cuDNN, no
while-loop stash, TensorFlow's own peak as the measure) the figures are expected to
over-state; not measured.

``PROCESS_BASELINE_BYTES`` is not in the peak: it is what a trial process holds before its
model exists, reserved besides it.

**Classifiers** (``task: classify``, ``model.build_classifier``; ``num_classes`` >= 2 in the
config). The same terms, with three differences in what is counted: only the last step reaches
the head, so its outputs are ``B x units`` (1 for two classes, else one a class) instead of the
language model's ``B x T x V`` logits, and ``T`` is the trial's ``seq_len`` (every batch is
padded to it: no shorter batches); a bidirectional layer is two recurrent layers (each
direction's per-step values, its fixed ``layer_bytes`` and parameters, and the layer after it
reads ``2 H``); the output layer is ``(directions x H) x units``. *Assumed*, not fitted: the
language model's calibration (state copies, workspace share, per-layer cost, checkpoint), and
that the last layer, which returns only its final output, keeps per step what a layer
returning its sequence keeps. *Measured* (2026-11-23, TensorFlow 2.21, Keras 3.15, CPU, one
thread, two processes at once; a one-off script, not yet in ``bench/``, that trains as
``bench/memory.py``'s child does: two epochs of 3-4 pre-padded batches with validation and a
checkpoint save after each, measured as a trial measures itself, ``model.devices.PeakMemory``
created after the data and before the model; vocabulary 10,000) on 14 configs (cells lstm,
gru, rnn; uni- and bidirectional; 1-2 layers; hidden 64-512; ``seq_len`` 64-1024; batch
32-512; 2 and 5 classes): every prediction lies between 4% below and 38% above the measured
peak, inside the planner's 10% headroom on the low side. GRU layers
keep more per step than their gate count says: 7 H counted, about 11 H measured
(``step_values`` in ``model.cells``), which this calibration uses for language models too (their GRU was never
measured; the LSTM's 10 H is the calibrated figure). The worst over-predictions are small or
single-layer models, where the fixed per-layer cost dominates (a 1-layer GRU, hidden 256:
496 MB predicted, 360 MB measured; in ``tests/``' sweeps, hidden 16-32, 82 MB predicted
against 66-76 MB measured, 158 MB against 79-113 MB when bidirectional): they cost batch size,
not crashes. Not measured: GPUs, 3+ layers, mixed precision.

**What is measured and what is not.** Measured, on this project's CPU: every constant of
``CPU_CALIBRATION`` (language models, 20 configs) and the classifier band (14 configs). Counted,
never measured here (no GPU could run TensorFlow): the mixed-precision terms
(:func:`_mixed_precision_bytes`); the GPU process reserve outside TensorFlow's allocator
(``search.resources.GPU_PROCESS_RESERVE_BYTES``); cuDNN's kernels instead of the CPU
``while_loop``. Two things close the gap on a user's device: ``lstm-sweep calibrate`` measures
the constants there (``model.calibration``; sweeps and ``plan`` load them by device), and a sweep
corrects its plans from its own trials' measured peaks (``search.correction``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from lstm_sweep.model.spec import PRECISIONS, ModelSpec

@dataclass(frozen=True)
class Calibration:
    """The measured constants of the model; ``bench/memory.py --fit`` finds them from a run.

    Each is explained in the module docstring.
    """

    state_copies: float  # float32 copies of the parameters: weights, grads, Adam m and v, temporaries, slack
    logit_copies: float  # float32 B x T x V buffers: the logits (forwarded into their gradient), slack
    workspace_bytes: int  # framework constant: traced graphs, oneDNN primitives, small-tensor arenas
    workspace_share: float  # allocator slack growing with the activations
    layer_bytes: int  # a fixed cost per recurrent layer (its while-loop's graph and buffers)
    checkpoint_copies: float  # saving the checkpoint: copies of the largest variable

    def replace(self, **changes) -> "Calibration":
        return dataclasses.replace(self, **changes)


# Against trial-like CPU peaks (bench/memory.py, 2026-11-23; the module docstring gives the reasons).
CPU_CALIBRATION = Calibration(state_copies=6.625, logit_copies=1.47, workspace_bytes=0, workspace_share=0.085,
                              layer_bytes=78 * 2**20, checkpoint_copies=2.0)
# The calibration's worst under-prediction (bench/memory.py): a planner that must keep a trial
# within its budget sizes it against (1 - HEADROOM) of the budget.
HEADROOM = 0.10
# A trial process's own resident memory before its model exists; reserved on top of the predicted
# peak. Measured: 705 MiB in bench/memory.py's children (Python, TensorFlow 2.21, Keras 3.15,
# Ray Tune 2.60 imported, token arrays and tf.data pipeline built), 729 MiB in a Ray worker that
# imported search.trainable and read one batch of a 20,000-sentence pipeline; rounded up.
PROCESS_BASELINE_BYTES = 768 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of a predicted training-step peak, in bytes."""

    parameters: int  # number of trainable values, not bytes
    state: int  # weights, gradients, Adam slots, parameter-sized temporaries and their slack
    activations: int
    workspace: int
    checkpoint: int = 0  # saving the epoch's checkpoint, one variable at a time
    mixed_precision: int = 0  # mixed_float16 only: float16 weight and gradient copies, cuDNN's buffers

    @property
    def total(self) -> int:
        return self.state + self.activations + self.workspace + self.checkpoint + self.mixed_precision


def count_parameters(vocab_size: int, embedding_size: int, hidden_size: int,
                     num_layers: int = 1, cell: str = "lstm", num_classes: int = 0,
                     bidirectional: bool = False) -> int:
    """Trainable values of :func:`model.build_language_model` (``num_classes=0``) or of
    :func:`model.build_classifier` (``num_classes >= 2``) with these sizes.

    Example:
        >>> count_parameters(vocab_size=7000, embedding_size=256, hidden_size=1024, num_layers=1)
        14213976
    """
    spec = ModelSpec(vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden_size,
                     num_layers=num_layers, cell=cell, num_classes=num_classes, bidirectional=bidirectional)
    return _parameters(spec)


def training_work_per_token(spec: ModelSpec) -> float:
    """Multiply-adds of training per training token, up to a constant factor: what one model costs
    an epoch against another on the same data (a rough ranking, not a time).

    The recurrent layers' weights every token; a language model's output layer every token too, a
    classifier's once an example of ``seq_len`` tokens; Adam's update of every weight once a batch
    of ``batch_size x seq_len`` tokens. The embedding is a lookup, counted in the update only.

    Example:
        >>> small = ModelSpec(vocab_size=5000, embedding_size=32, hidden_size=64)
        >>> training_work_per_token(small.replace(hidden_size=512)) > 8 * training_work_per_token(small)
        True
    """
    params = _parameters(spec)
    head = _head_parameters(spec)
    recurrent = params - spec.vocab_size * spec.embedding_size - head
    per_token = recurrent + (head / spec.seq_len if spec.is_classifier else head)
    return per_token + params / (spec.batch_size * spec.seq_len)


def largest_variable(vocab_size: int, embedding_size: int, hidden_size: int,
                     cell: str = "lstm", num_classes: int = 0, bidirectional: bool = False) -> int:
    """Values in the largest weight matrix of the model: embedding, a kernel, or the output layer.

    Example:
        >>> largest_variable(vocab_size=7000, embedding_size=256, hidden_size=2048)  # 2048 x 8192
        16777216
    """
    spec = ModelSpec(vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden_size, cell=cell,
                     num_classes=num_classes, bidirectional=bidirectional)
    return _largest_variable(spec)


def estimate_memory(config: ModelSpec | Mapping, precision: str | None = None,
                    calibration: Calibration = CPU_CALIBRATION) -> MemoryEstimate:
    """The parts of the predicted peak memory of one training step of the model ``config``.

    ``config`` is a :class:`model.spec.ModelSpec`, or a mapping of its fields (``vocab_size``,
    ``embedding_size``, ``hidden_size``, ``batch_size`` and ``seq_len`` — time steps of the
    longest batch: ``max_tokens - 1`` for the language model, the padded length for a
    classifier — and optionally ``num_layers``, ``dropout``, ``cell``, ``num_classes`` >= 2
    for a classifier, ``bidirectional``). ``precision`` overrides the spec's;
    ``calibration`` holds the measured constants of the device the trial runs on.
    """
    spec = _spec(config, precision)
    c = calibration
    b, t, h = spec.batch_size, spec.seq_len, spec.hidden_size
    act = PRECISIONS[spec.precision]
    recurrent_layers = spec.num_layers * spec.directions

    per_layer = spec.recurrent.step_values * h  # pre-activations, activations, states
    if spec.dropout > 0:
        per_layer += h  # the dropout mask
    activations = int(b * t * (spec.embedding_size + recurrent_layers * per_layer) * act)
    # The logits (language model: every step) or the head's outputs (classifier: the last
    # step only), and their gradient: float32 always.
    outputs = b * (1 if spec.is_classifier else t) * spec.output_units
    activations += int(c.logit_copies * outputs * 4)
    return MemoryEstimate(
        parameters=_parameters(spec),
        state=int(c.state_copies * _parameters(spec) * 4),
        activations=activations,
        workspace=int(c.workspace_bytes + recurrent_layers * c.layer_bytes + c.workspace_share * activations),
        checkpoint=int(c.checkpoint_copies * 4 * _largest_variable(spec)),
        mixed_precision=_mixed_precision_bytes(spec),
    )


def estimate_peak_bytes(config: ModelSpec | Mapping, precision: str | None = None,
                        calibration: Calibration = CPU_CALIBRATION) -> int:
    """Predicted peak bytes of one training step (Adam) of the model ``config`` (see :func:`estimate_memory`).

    Example:
        >>> cfg = dict(vocab_size=7000, embedding_size=256, hidden_size=2048, num_layers=2,
        ...            batch_size=1024, seq_len=14)
        >>> estimate_peak_bytes(cfg) > 2**30  # the notebooks' OOM at shape [1024, 2048]
        True
    """
    return estimate_memory(config, precision, calibration).total


def largest_batch_that_fits(config: ModelSpec | Mapping, budget_bytes: int, precision: str | None = None,
                            max_batch: int = 1 << 16, calibration: Calibration = CPU_CALIBRATION) -> int:
    """The largest batch size whose predicted peak is within ``budget_bytes``; 0 if none.

    The peak is linear in the batch size, so this is a closed form rather than a search;
    the batch size of ``config`` is ignored.

    Example:
        >>> cfg = dict(vocab_size=7000, embedding_size=256, hidden_size=512, seq_len=14)
        >>> largest_batch_that_fits(cfg, budget_bytes=2 * 2**30)
        1946
    """
    if budget_bytes <= 0:
        raise ValueError(f"budget_bytes={budget_bytes} must be > 0")
    spec = _spec(config, precision)
    one = estimate_peak_bytes(spec.with_batch(1), calibration=calibration)
    two = estimate_peak_bytes(spec.with_batch(2), calibration=calibration)
    per_sentence, fixed = two - one, 2 * one - two
    if fixed + per_sentence > budget_bytes:
        return 0
    return int(min(max_batch, (budget_bytes - fixed) // per_sentence))


def _spec(config: ModelSpec | Mapping, precision: str | None) -> ModelSpec:
    """``config`` as a spec (a mapping read the way a trial's is), at ``precision`` when given."""
    if not isinstance(config, ModelSpec):
        fields = {f.name for f in dataclasses.fields(ModelSpec)}
        values = {k: v for k, v in config.items() if k in fields}
        values.setdefault("batch_size", 1)
        config = ModelSpec.from_config(values, vocab_size=int(values.pop("vocab_size")),
                                       seq_len=int(values.pop("seq_len")),
                                       num_classes=int(values.pop("num_classes", 0) or 0))
    if precision is not None:
        config = config.replace(precision=precision)
    return config


def _mixed_precision_bytes(spec: ModelSpec) -> int:
    """What ``mixed_float16`` adds beside its half-size activations (counted, not measured: no GPU
    has run it here; ``bench/gpu_acceptance.py`` measures it).

    Per parameter: the float16 copy each layer computes with (Keras' autocast variables, 2 bytes),
    its float16 gradient before the cast to the float32 variable's dtype (2), and the loss-scale
    optimizer's unscaled float32 gradient and finiteness check (4). Per recurrent parameter: cuDNN's
    flat parameter buffer and its gradient, in float16 (2 + 2).
    """
    if spec.precision != "mixed_float16":
        return 0
    params = _parameters(spec)
    embedding, head = spec.vocab_size * spec.embedding_size, _head_parameters(spec)
    return int(params * (2 + 2 + 4) + (params - embedding - head) * (2 + 2))


def _head_parameters(spec: ModelSpec) -> int:
    width = spec.directions * spec.hidden_size
    return width * spec.output_units + spec.output_units


def _parameters(spec: ModelSpec) -> int:
    """Trainable values: embedding, each recurrent layer's kernels and biases, the output layer."""
    cell = spec.recurrent
    total = spec.vocab_size * spec.embedding_size
    width = spec.embedding_size
    for _ in range(spec.num_layers):
        # kernel (in x gH) + recurrent kernel (H x gH) + biases, per direction.
        gh = cell.gates * spec.hidden_size
        total += spec.directions * (gh * (width + spec.hidden_size) + cell.biases * gh)
        width = spec.directions * spec.hidden_size
    return total + _head_parameters(spec)


def _largest_variable(spec: ModelSpec) -> int:
    width = spec.recurrent.gates * spec.hidden_size  # a recurrent layer's kernels are (input, gH) and (H, gH)
    inputs = spec.directions * spec.hidden_size  # what a layer after the first reads
    return max(spec.vocab_size * spec.embedding_size, spec.embedding_size * width,
               max(spec.hidden_size, inputs) * width, inputs * spec.output_units)
