"""Keras language models and sequence classifiers, their cells and spec, the memory model, training.

    cells.py       the registry of recurrent cells (plain Python)
    spec.py        ModelSpec: one trial's model, built once from its config (plain Python)
    memory.py      the memory model: a spec's predicted peak, the largest batch that fits
    lm.py          the language model and its masked loss
    classifier.py  the sequence classifier
    train.py       compile, fit, exact validation figures, checkpoints, seeds
    export.py      the export folder (SavedModel, .keras, vocabulary, card) and loading it back
    generation.py  continuing a prompt with the carried recurrent state
    devices.py     capping TensorFlow's GPU memory, measuring a trial's peak

Importing this package imports no TensorFlow: each name below loads its module when first
used, so reading a config or printing a user error stays fast.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "Cell": "cells", "cell_names": "cells", "get_cell": "cells", "register_cell": "cells",
    "registered_cells": "cells",
    "ModelSpec": "spec",
    "build_classifier": "classifier", "class_probabilities": "classifier", "classify_texts": "classifier",
    "compile_classifier": "classifier", "fit_classifier": "classifier",
    "export_classifier": "export", "export_model": "export", "load_classifier_export": "export",
    "load_export": "export",
    "encode_prompt": "generation", "encode_char_prompt": "generation", "generate": "generation",
    "generate_by_rerunning_prefix": "generation",
    "build_language_model": "lm", "masked_cross_entropy": "lm", "token_cross_entropy_sums": "lm",
    "ValidationMetrics": "train", "compile_language_model": "train", "configure_threads": "train",
    "evaluate_language_model": "train", "fit_language_model": "train", "save_checkpoint": "train",
    "set_seed": "train",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
