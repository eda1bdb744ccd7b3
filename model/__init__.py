"""Keras language models and sequence classifiers, their losses, and how they are trained."""

from lstm_sweep.model.classifier import (build_classifier, class_probabilities, classify_texts, compile_classifier,
                              fit_classifier)
from lstm_sweep.model.export import export_classifier, export_model, load_classifier_export, load_export
from lstm_sweep.model.generation import encode_prompt, generate, generate_by_rerunning_prefix
from lstm_sweep.model.lm import CELLS, build_language_model, masked_cross_entropy, token_cross_entropy_sums
from lstm_sweep.model.train import (
    ValidationMetrics,
    compile_language_model,
    configure_threads,
    evaluate_language_model,
    fit_language_model,
    save_checkpoint,
    set_seed,
)

__all__ = [
    "CELLS",
    "ValidationMetrics",
    "build_classifier",
    "build_language_model",
    "class_probabilities",
    "classify_texts",
    "compile_classifier",
    "compile_language_model",
    "configure_threads",
    "encode_prompt",
    "evaluate_language_model",
    "export_classifier",
    "export_model",
    "fit_classifier",
    "fit_language_model",
    "generate",
    "generate_by_rerunning_prefix",
    "load_classifier_export",
    "load_export",
    "masked_cross_entropy",
    "save_checkpoint",
    "set_seed",
    "token_cross_entropy_sums",
]
