"""Continue a prompt with a trained language model, one token at a time, carrying the state.

The flow, top to bottom (as in nanoGPT's ``sample.py``)::

    prompt --clean_line--> "<start> i love you" --vocab--> ids      (the trailing <end> dropped)
      -> step model: the prompt in one call, keep each recurrent layer's final state
      -> repeat: logits of the last token -> pick the next token -> feed only that token
      -> stop when every line has said <end>, or after max_tokens new tokens
      -> "i love you and me"                                         (prompt words + new words)

The whole loop is one ``tf.function`` (a ``tf.while_loop``), traced once per model with a fixed
input signature: one call per batch of lines, not one per token, so Python's per-call overhead
(a third of a millisecond, more than a step of a hidden-256 LSTM costs) is paid once.

The lyricist notebooks re-ran the whole prefix through the model for every new token:
O(n^2) work for n tokens. A recurrent model does not need that: its state after the prefix
is all it needs, so the *step model* (the trained layers, each recurrent cell run with
``return_state=True`` and the states as inputs) does O(1) work per token.
:func:`generate_by_rerunning_prefix` keeps the notebooks' way, for the benchmark and as the
reference the step model is tested against.

A character model (``data.tokens: char``; its vocabulary a ``CharVocabulary``) takes the same
path with characters for words: the prompt as typed (cleaned only if its corpus was), no
``<start>``, ``max_tokens`` new characters, a line ending at its first newline or at the limit
(``stop_at``). :class:`SampleEveryEpochs` continues a fixed prompt at a few temperatures every
few epochs while a model trains (``lstm-sweep retrain --samples-every``), words or characters.

Choices a reader should know:

* the output is the prompt's cleaned words followed by the new words, as the notebooks'
  ``generate_text`` returned; a prompt word outside the vocabulary is shown as typed (the model
  saw ``<unk>``); marks are glued to the word before them (``"you, baby."``) and ``¿`` to the
  word after it, so the text reads as text; ``clean_line`` splits it back into the same tokens.
* ``<pad>`` and ``<start>`` are never picked; ``<unk>`` is not either unless ``allow_unk=True``
  (nobody wants ``"<unk>"`` in a lyric): the choice is among the other tokens, greedy or sampled.
* sampling draws from ``softmax(logits / temperature)`` restricted to the ``top_k`` likeliest
  allowed tokens (Fan et al. 2018, "Hierarchical Neural Story Generation") with TensorFlow's
  stateless random ops seeded by ``(seed, step)``: the same seed gives the same lines on the
  same kind of device, and each line of a batch is its own draw.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from lstm_sweep.data_pipeline.text import END, PAD, START, char_prompt_text, prompt_words
from lstm_sweep.data_pipeline.vocab import END_ID, PAD_ID, START_ID, UNK_ID, CharVocabulary, Vocabulary
from lstm_sweep.model.cells import Cell, registered_cells

# Traced functions per model, dropped with the model.
_STEP_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FORWARD_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DECODE_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

STOP_AT = ("newline", "limit")  # what ends a character model's line: its first newline, or max_tokens
# (ids of shape (batch, time), states) -> (logits of the last step, states after it).
StepFunction = Callable[[tf.Tensor, list[tf.Tensor]], tuple[tf.Tensor, list[tf.Tensor]]]


def generate(
    model: keras.Model,
    vocab: Vocabulary,
    prompt: str,
    *,
    max_tokens: int = 20,  # most new tokens per line, <end> included; >= 1
    temperature: float = 0.8,  # 0: greedy (argmax); higher: flatter, more surprising; >= 0
    top_k: int = 40,  # sample among the k likeliest allowed tokens; >= 1
    num: int = 1,  # lines to generate, as one batch; >= 1
    seed: int | None = None,  # seed of the sampling; None: a fresh random seed
    allow_unk: bool = False,  # may <unk> be generated
    stop_at: str = "newline",  # a character model: "newline" ends a line at its first "\n", "limit" at max_tokens
) -> list[str]:
    """Continue ``prompt`` ``num`` times, carrying the recurrent state from token to token.

    The prompt is cleaned like the corpus (:func:`data_pipeline.clean_line`) and fed to the
    model once; then each step feeds only the token just chosen. Dropout is off.

    A character model (its ``vocab`` a :class:`data_pipeline.CharVocabulary`) continues the
    prompt character by character: the prompt is taken as typed (cleaned only if its corpus
    was: ``vocab.clean``), ``max_tokens`` counts characters, and a line ends at its first
    newline (``stop_at="newline"``, the newline not shown) or after ``max_tokens`` characters
    (``"limit"``, newlines kept).

    Args:
        model: a model from :func:`model.build_language_model` (Embedding, LSTM/GRU/SimpleRNN
            layers, optional Dropout, Dense logits), trained or loaded.
        vocab: the vocabulary the model was trained with; ``len(vocab)`` must equal the
            model's number of logits.
        prompt: raw text; it must keep at least one word after cleaning.
        max_tokens, temperature, top_k, num, seed, allow_unk: see the signature's comments.

    Returns:
        ``num`` strings: the prompt's words followed by the generated words, without
        ``<start>``, ``<end>`` or ``<pad>``.

    Raises:
        ValueError: an argument is out of range, or the model does not match ``vocab``.
        CorpusError: the prompt has no words after cleaning (``""``, ``"!!!"``, ``"[Chorus:"``).

    Example:
        >>> generate(model, vocab, "I love", temperature=0, max_tokens=5)  # doctest: +SKIP
        ['i love you and me.']
        >>> generate(model, vocab, "I love", num=2, seed=7)  # doctest: +SKIP
        ['i love the night, baby', 'i love you tonight']
    """
    line = _check(model, vocab, prompt, max_tokens, temperature, top_k, num, seed, stop_at)
    decode = _decode_function(model)
    new = decode(tf.constant(np.tile(np.asarray(line.ids, np.int32), (num, 1))),
                 *_pick_arguments(len(vocab), max_tokens, temperature, top_k, seed, allow_unk, line.banned),
                 tf.constant(line.stop, tf.int32))
    return [line.text(row) for row in new.numpy()]


def generate_by_rerunning_prefix(
    model: keras.Model,
    vocab: Vocabulary,
    prompt: str,
    *,
    max_tokens: int = 20,
    temperature: float = 0.8,
    top_k: int = 40,
    num: int = 1,
    seed: int | None = None,
    allow_unk: bool = False,
    stop_at: str = "newline",
) -> list[str]:
    """:func:`generate` the notebooks' way: run the whole prefix through the model at every step.

    Same arguments, checks and token choice as :func:`generate` (so the same seed gives the same
    lines, up to float rounding); O(n^2) in the line length, with one model call per token from
    Python, as the notebooks did. Kept as the benchmark's baseline and as the reference the
    stateful step model is tested against. Each forward pass is a ``tf.function`` (never eager).

    Example:
        >>> a = generate(model, vocab, "I love", temperature=0)  # doctest: +SKIP
        >>> a == generate_by_rerunning_prefix(model, vocab, "I love", temperature=0)  # doctest: +SKIP
        True
    """
    prompt_line = _check(model, vocab, prompt, max_tokens, temperature, top_k, num, seed, stop_at)
    forward = _last_logits_function(model)
    _, temperature_t, top_k_t, seed_t, banned = _pick_arguments(
        len(vocab), max_tokens, temperature, top_k, seed, allow_unk, prompt_line.banned)
    line = np.tile(np.asarray(prompt_line.ids, np.int32), (num, 1))
    done = np.zeros(num, bool)
    for t in range(max_tokens):
        logits = forward(tf.constant(line))  # the whole line so far, again
        chosen = _pick(logits, temperature_t, top_k_t, seed_t, tf.constant(t, tf.int64), banned).numpy()
        line = np.concatenate([line, chosen[:, None]], axis=1)
        done |= chosen == prompt_line.stop
        if done.all():
            break
    return [prompt_line.text(row) for row in line[:, len(prompt_line.ids):]]


def encode_prompt(vocab: Vocabulary, prompt: str) -> tuple[list[str], list[int]]:
    """The cleaned words of ``prompt`` and the model's input ids (``<start>`` first, no ``<end>``).

    Raises:
        CorpusError: the prompt keeps no word after cleaning (marks alone do not count).

    Example:
        >>> encode_prompt(Vocabulary(["<pad>", "<unk>", "<start>", "<end>", "love"]), "Love, zorg")
        (['love', ',', 'zorg'], [2, 4, 1, 1])
    """
    words = prompt_words(prompt)  # the CLI checks a prompt with it before anything runs
    return words, [START_ID, *(vocab.id_of(w) for w in words)]


def encode_char_prompt(vocab: CharVocabulary, prompt: str) -> tuple[str, list[int]]:
    """A character model's prompt as its corpus was prepared and its ids
    (:func:`data_pipeline.text.char_prompt_text`).

    Raises:
        CorpusError: no character is left (an empty prompt; with ``vocab.clean``, one of no letters).

    Example:
        >>> encode_char_prompt(CharVocabulary(["<pad>", "<unk>", "a", "b"]), "abc")
        ('abc', [2, 3, 1])
    """
    text = char_prompt_text(prompt, vocab.clean)
    return text, vocab.encode(text)


@dataclass(frozen=True)
class _Line:
    """A prompt ready to continue: its ids, which ids may not be picked, which one ends a line
    (-1: none), and how the new ids read as text after it."""

    ids: list[int]
    banned: tuple[int, ...]
    stop: int
    text: Callable[[np.ndarray], str]


def _line(vocab: Vocabulary, prompt: str, stop_at: str) -> _Line:
    if isinstance(vocab, CharVocabulary):
        text, ids = encode_char_prompt(vocab, prompt)
        stop = vocab.id_of("\n") if stop_at == "newline" and "\n" in vocab.tokens else -1
        return _Line(ids, (PAD_ID,), stop, lambda row: text + vocab.decode(_until_end(row, stop)))
    words, ids = encode_prompt(vocab, prompt)
    return _Line(ids, (PAD_ID, START_ID), END_ID,
                 lambda row: _detokenize(words + [vocab.tokens[i] for i in _until_end(row)]))


# ---------------------------------------------------------------- the step model

def _step_function(model: keras.Model) -> StepFunction:
    """A traced-once function running ``model``'s layers with their recurrent state in and out.

    Each recurrent layer's *cell* (its weights) is wrapped in a ``keras.layers.RNN`` with
    ``return_state=True``; Embedding and Dense are the model's own layers; Dropout is skipped.
    Nothing is copied, so the function always sees the current weights (generating samples
    between training epochs is safe). Cached per model: later calls do not trace again.
    """
    if model in _STEP_FUNCTIONS:
        return _STEP_FUNCTIONS[model]
    layers, state_specs = [], []
    for layer in _layers(model):
        if _cell_of(layer):
            # The generic RNN loop over the same cell; the LSTM/GRU layers differ only by a cuDNN
            # fast path on a GPU, which changes nothing for one step at a time.
            rnn = keras.layers.RNN(layer.cell, return_sequences=True, return_state=True,
                                   go_backwards=layer.go_backwards, name=f"{layer.name}_step")
            n_states = _cell_of(layer).states
            state_specs += [tf.TensorSpec((None, layer.units), layer.compute_dtype)] * n_states
            layers.append((rnn, n_states))
        else:
            layers.append((layer, 0))

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32), state_specs])
    def step(tokens, states):
        x, new_states, i = tokens, [], 0
        for layer, n_states in layers:
            if n_states:
                x, *s = layer(x, initial_state=states[i:i + n_states], training=False)
                new_states += s
                i += n_states
            elif isinstance(layer, keras.layers.Dense):
                x = layer(x[:, -1, :])  # only the last step's logits are needed
            else:
                x = layer(x)
        return tf.cast(x, tf.float32), new_states

    _STEP_FUNCTIONS[model] = step
    return step


def _last_logits_function(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """The whole model on a whole prefix, logits of its last step; traced once per model."""
    if model not in _FORWARD_FUNCTIONS:
        model_ref = weakref.ref(model)  # a strong reference would keep the cache entry alive

        @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)])
        def forward(tokens):
            return tf.cast(model_ref()(tokens, training=False)[:, -1, :], tf.float32)

        _FORWARD_FUNCTIONS[model] = forward
    return _FORWARD_FUNCTIONS[model]


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order, InputLayer and Dropout left out; checks the shape we know."""
    layers = [layer for layer in model.layers
              if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout))]
    kinds = [type(layer) for layer in layers]
    ok = (len(layers) >= 3 and kinds[0] is keras.layers.Embedding and kinds[-1] is keras.layers.Dense
          and all(_cell_of(layer) for layer in layers[1:-1]))
    if not ok:
        raise ValueError(f"model {model.name!r} has layers {[k.__name__ for k in kinds]}: expected "
                         "Embedding, recurrent layers of registered cells (model.cells), Dense "
                         "(as build_language_model makes)")
    return layers


def _cell_of(layer: keras.layers.Layer) -> Cell | None:
    """The registered cell whose Keras layer ``layer`` is, or None."""
    return next((cell for cell in registered_cells() if type(layer) is cell.layer_class()), None)


def _state_sizes(model: keras.Model) -> list[tuple[int, str]]:
    """(units, dtype) of each recurrent state in order (the cell's ``states``: an LSTM's h and c, a GRU's h)."""
    sizes = []
    for layer in _layers(model)[1:-1]:
        sizes += [(layer.units, layer.compute_dtype)] * _cell_of(layer).states
    return sizes


# ---------------------------------------------------------------- choosing tokens

def _decode_function(model: keras.Model):
    """The generation loop of :func:`generate` as one ``tf.function``; traced once per model.

    ``(prompt ids (num, time), max_tokens, temperature, top_k, seed, banned, stop) -> new ids
    (num, steps)``, ``steps <= max_tokens``; a row's ids after its first ``stop`` (``<end>``; a
    character model's newline, or -1: none) are filler.
    """
    if model in _DECODE_FUNCTIONS:
        return _DECODE_FUNCTIONS[model]
    step = _step_function(model)
    state_sizes = _state_sizes(model)
    vocab_size = model.output_shape[-1]

    @tf.function(input_signature=[
        tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.float32),
        tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int64), tf.TensorSpec((vocab_size,), tf.bool),
        tf.TensorSpec((), tf.int32)])
    def decode(prompt, max_tokens, temperature, top_k, seed, banned, stop):
        num = tf.shape(prompt)[0]
        logits, states = step(prompt, [tf.zeros((num, size), dtype) for size, dtype in state_sizes])
        chosen = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=(None,))
        done = tf.zeros((num,), tf.bool)
        t = tf.constant(0)
        while t < max_tokens:
            token = _pick(logits, temperature, top_k, seed, tf.cast(t, tf.int64), banned)
            chosen = chosen.write(t, token)
            done = done | tf.equal(token, stop)
            t += 1
            if tf.reduce_all(done) or t == max_tokens:
                break
            logits, states = step(token[:, None], states)  # feed only the token just chosen
        return tf.transpose(chosen.stack())

    _DECODE_FUNCTIONS[model] = decode
    return decode


@tf.function(input_signature=[
    tf.TensorSpec((None, None), tf.float32), tf.TensorSpec((), tf.float32), tf.TensorSpec((), tf.int32),
    tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64), tf.TensorSpec((None,), tf.bool)])
def _pick(logits, temperature, top_k, seed, t, banned):
    """One id per row of ``logits``: argmax when ``temperature`` is 0, else a top-k sample."""
    logits = tf.where(banned, tf.constant(-np.inf, logits.dtype), logits)
    if temperature == 0:
        return tf.argmax(logits, axis=1, output_type=tf.int32)
    top_logits, top_ids = tf.math.top_k(logits, k=top_k)  # sorted; top_k <= the allowed tokens
    # Relative to the best (<= 0) before dividing: a tiny temperature gives -inf, never inf or nan.
    scaled = (top_logits - top_logits[:, :1]) / temperature
    draw = tf.random.stateless_categorical(scaled, 1, seed=tf.stack([seed, t]), dtype=tf.int32)
    return tf.gather(top_ids, draw[:, 0], batch_dims=1)


def _pick_arguments(vocab_size: int, max_tokens: int, temperature: float, top_k: int, seed: int | None,
                    allow_unk: bool, never: tuple[int, ...] = (PAD_ID, START_ID)) -> tuple[tf.Tensor, ...]:
    """The tensors :func:`_pick` and the decode loop take, from checked Python values; ``never``:
    the ids never picked besides ``<unk>`` (a word model's ``<pad>`` and ``<start>``)."""
    banned = np.zeros(vocab_size, bool)
    banned[list(never) + ([] if allow_unk else [UNK_ID])] = True
    if seed is None:
        seed = int(np.random.default_rng().integers(2**62))
    return (tf.constant(max_tokens, tf.int32), tf.constant(temperature, tf.float32),
            tf.constant(min(top_k, vocab_size - int(banned.sum())), tf.int32),
            tf.constant(seed, tf.int64), tf.constant(banned))


def _until_end(row, stop: int = END_ID) -> list[int]:
    """The ids of ``row`` before its first ``stop`` (``<end>``; -1: all of them)."""
    row = list(row)
    return row[:row.index(stop)] if stop in row else row


# ---------------------------------------------------------------- checks and text

def _check(model, vocab, prompt, max_tokens, temperature, top_k, num, seed, stop_at="newline") -> _Line:
    for name, value in (("max_tokens", max_tokens), ("top_k", top_k), ("num", num)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} must be an int >= 1")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature={temperature!r} must be a number >= 0 (0 means greedy)")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not 0 <= seed < 2**63):
        raise ValueError(f"seed={seed!r} must be None or an int in [0, 2**63)")
    if not isinstance(vocab, Vocabulary):
        raise ValueError(f"vocab={vocab!r} must be a data_pipeline.Vocabulary")
    outputs = model.output_shape[-1]
    if outputs != len(vocab):
        raise ValueError(f"the model has {outputs} logits but the vocabulary {len(vocab)} tokens: "
                         "pass the vocab.json the model was trained with")
    if stop_at not in STOP_AT:
        raise ValueError(f"stop_at={stop_at!r} must be one of {', '.join(STOP_AT)}")
    return _line(vocab, prompt, stop_at)


_HIDDEN = (PAD, START, END)
_BEFORE_MARK = re.compile(r" ([?.!,])")
_AFTER_OPENING = re.compile(r"¿ ")


def _detokenize(tokens: list[str]) -> str:
    """Words joined by spaces, ``? . ! ,`` glued to the word before and ``¿`` to the word after."""
    text = " ".join(t for t in tokens if t not in _HIDDEN)
    return _AFTER_OPENING.sub("¿", _BEFORE_MARK.sub(r"\1", text))


# ---------------------------------------------------------------- samples while training

TEMPERATURES = (0.2, 0.5, 1.0, 1.2)  # the notebook's: near greedy to past the model's own distribution


class SampleEveryEpochs(keras.callbacks.Callback):
    """A Keras callback that continues a fixed prompt at each temperature every ``every`` epochs,
    prints the lines and keeps them all in ``file``: watching a model learn, as the character
    notebook's callback did (it sampled from the whole distribution; so does this: ``top_k`` is
    the vocabulary, and the seed is fixed, so epochs differ by the model only).

    Args:
        vocab: the model's vocabulary (a ``CharVocabulary`` continues character by character).
        prompt: the text to continue (see :func:`sample_prompt`).
        every: epochs between samples; >= 1.
        temperatures: each > 0.
        file: where the samples so far are written (atomically, after each sampling epoch).
        max_tokens: new tokens a sample (characters for a character model).
        seed: the sampling seed.

    Example:
        >>> model.fit(train, callbacks=[SampleEveryEpochs(vocab, "i love", 1, (0.5, 1.0), "s.txt")])  # doctest: +SKIP
    """

    def __init__(self, vocab: Vocabulary, prompt: str, every: int, temperatures=TEMPERATURES, file=None,
                 max_tokens: int | None = None, seed: int = 0) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be an int >= 1 (epochs between samples)")
        temperatures = tuple(float(t) for t in temperatures)
        if not temperatures or not all(t > 0 for t in temperatures):
            raise ValueError(f"temperatures={temperatures!r} must be one or more numbers > 0")
        self.vocab, self.prompt, self.every, self.temperatures = vocab, prompt, every, temperatures
        self.file, self.seed = file, seed
        self.chars = isinstance(vocab, CharVocabulary)
        self.max_tokens = max_tokens or (200 if self.chars else 20)
        self.lines = [f"samples every {every} epoch{'s' * (every > 1)} at temperatures "
                      f"{', '.join(f'{t:g}' for t in temperatures)} (seed {seed}), continuing {prompt!r}"]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every:
            return
        self.lines.append(f"\nepoch {epoch + 1}")
        print(f"  samples after epoch {epoch + 1}:", flush=True)
        for t in self.temperatures:
            [text] = generate(self.model, self.vocab, self.prompt, max_tokens=self.max_tokens, temperature=t,
                              top_k=len(self.vocab), seed=self.seed, stop_at="limit")
            if self.chars:  # the text as it is, newlines included
                self.lines += [f"--- temperature {t:g}", text]
                print(f"  --- temperature {t:g}\n{text}", flush=True)
            else:
                self.lines.append(f"  temperature {t:g}: {text}")
                print(f"    temperature {t:g}: {text}", flush=True)
        if self.file is not None:
            from lstm_sweep import atomic

            atomic.write_text(self.file, "\n".join(self.lines) + "\n")


def sample_prompt(vocab: Vocabulary, rows: np.ndarray, seed: int = 0) -> str:
    """A fixed prompt from validation ``rows``, drawn by ``seed``: a character model's window
    (its first ``seq_len`` characters, as the notebook took 40 characters at a random start), a
    word model's first three words of a sentence with no ``<unk>`` (``"i love"`` if none has two).

    Example:
        >>> sample_prompt(vocab, prepared.val, seed=0)  # doctest: +SKIP
        'when the rain'
    """
    rows = np.asarray(rows)
    order = np.random.default_rng(seed).permutation(len(rows))
    if isinstance(vocab, CharVocabulary):
        return vocab.decode(rows[order[0], :-1])
    for i in order:
        words = [int(t) for t in rows[i] if t not in (PAD_ID, START_ID, END_ID)]
        if len(words) >= 2 and UNK_ID not in words[:3]:
            return vocab.decode(words[:3])
    return "i love"
