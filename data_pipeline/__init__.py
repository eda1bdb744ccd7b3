"""Corpora in, token arrays and ``tf.data`` pipelines out.

The flow, top to bottom::

    read_lines(folder) | synthetic_lines()   raw lines
      -> clean_line                          "<start> words . <end>", or dropped
      -> length filter (max_tokens)          too-long sentences dropped
      -> seeded train/val split
      -> Vocabulary.build(train)             ids: <pad> 0, <unk> 1, <start> 2, <end> 3, words
      -> int32 arrays, cached on disk        prepare(DataSettings(...)) -> PreparedData
      -> lm_dataset(arrays, batch_size)      (source, target) batches, target = source shifted

Labelled text for classification (``data_pipeline.labelled``) takes the same steps with a CSV or
a folder per class in, and ragged ids plus label ids out: :func:`prepare_labelled`, then per
trial :func:`pad_to` a ``seq_len`` and :func:`classify_dataset`.

Only :func:`lm_dataset` needs TensorFlow, and imports it when called, so importing this package
(to parse a config, to print an error) stays fast.
"""

from .corpus import read_lines
from .dataset import DataSettings, PreparedData, lm_dataset, prepare
from .labelled import (LabelledData, LabelledSettings, classify_dataset, labels_from_json, labels_to_json, pad_to,
                       prepare_labelled)
from .synthetic import synthetic_labelled, synthetic_lines
from .text import END, PAD, START, UNK, CorpusError, clean_document, clean_line
from .vocab import Vocabulary

__all__ = ["CorpusError", "clean_line", "clean_document", "read_lines", "synthetic_lines", "synthetic_labelled",
           "Vocabulary", "DataSettings", "PreparedData", "prepare", "lm_dataset", "LabelledSettings", "LabelledData",
           "prepare_labelled", "pad_to", "classify_dataset", "labels_to_json", "labels_from_json",
           "PAD", "UNK", "START", "END"]
