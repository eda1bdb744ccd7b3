"""Corpora in, token arrays and ``tf.data`` pipelines out.

The flow, top to bottom::

    read_lines(folder) | synthetic_lines()   raw lines
      -> clean_line                          "<start> words . <end>", or dropped
      -> length filter (max_tokens)          too-long sentences dropped
      -> seeded train/val split
      -> Vocabulary.build(train)             ids: <pad> 0, <unk> 1, <start> 2, <end> 3, words
      -> int32 arrays, cached on disk        prepare(DataSettings(...)) -> PreparedData
      -> lm_dataset(arrays, batch_size)      (source, target) batches, target = source shifted

Only :func:`lm_dataset` needs TensorFlow, and imports it when called, so importing this package
(to parse a config, to print an error) stays fast.
"""

from .corpus import read_lines
from .dataset import DataSettings, PreparedData, lm_dataset, prepare
from .synthetic import synthetic_lines
from .text import END, PAD, START, UNK, CorpusError, clean_line
from .vocab import Vocabulary

__all__ = ["CorpusError", "clean_line", "read_lines", "synthetic_lines", "Vocabulary",
           "DataSettings", "PreparedData", "prepare", "lm_dataset", "PAD", "UNK", "START", "END"]
