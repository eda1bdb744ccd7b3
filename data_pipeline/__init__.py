"""Corpora in, token arrays and ``tf.data`` pipelines out.

The flow, top to bottom, and the module that does each step::

    read_lines(folder) | synthetic_lines()   raw lines                     corpus, synthetic
      -> clean_line                          "<start> words . <end>", or dropped        text
      -> length filter (max_tokens)          too-long sentences dropped              dataset
      -> seeded train/val split                                                      dataset
      -> Vocabulary.build(train)             ids: <pad> 0, <unk> 1, <start> 2, <end> 3  vocab
      -> int32 arrays, cached on disk        prepare(DataSettings(...)) -> PreparedData  dataset
           fingerprint, load or build+save   one cache for both tasks                  cache
      -> lm_dataset(arrays, batch_size)      (source, target), target = source shifted  batching

Characters (``data.tokens: char``, ``chars``) take their own steps: the files as one stream
of characters (cleaned only with ``data.clean``), a seeded split by contiguous blocks, a
:class:`CharVocabulary`, and windows of ``seq_len + 1`` ids cut inside the blocks; ``prepare``
returns them as the same :class:`PreparedData`, a window a row.

Labelled text for classification (``labelled``) takes the same steps with a CSV or a folder
per class in, and ragged ids plus label ids out: :func:`prepare_labelled` (cached by ``cache``
too), then per trial :func:`pad_to` a ``seq_len`` and :func:`classify_dataset` (``batching``).
The argument checks both share are ``checks``; the baselines a model must beat, ``baselines``.

Only ``batching`` needs TensorFlow or Keras, and imports them inside the functions that use
them, so importing this package (to parse a config, to print an error) stays fast.
"""

from .batching import classify_dataset, lm_dataset, pad_to
from .corpus import read_lines
from .dataset import DataSettings, PreparedData, prepare
from .labelled import LabelledData, LabelledSettings, labels_from_json, labels_to_json, prepare_labelled
from .synthetic import synthetic_labelled, synthetic_lines
from .text import END, PAD, START, UNK, CorpusError, clean_document, clean_line
from .vocab import CharVocabulary, Vocabulary

__all__ = ["CorpusError", "clean_line", "clean_document", "read_lines", "synthetic_lines", "synthetic_labelled",
           "Vocabulary", "CharVocabulary", "DataSettings", "PreparedData", "prepare", "lm_dataset", "LabelledSettings", "LabelledData",
           "prepare_labelled", "pad_to", "classify_dataset", "labels_to_json", "labels_from_json",
           "PAD", "UNK", "START", "END"]
