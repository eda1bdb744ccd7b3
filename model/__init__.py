"""Keras language models, their masked loss, and how they are trained."""

from model.export import export_model, load_export
from model.generation import encode_prompt, generate, generate_by_rerunning_prefix
from model.lm import CELLS, build_language_model, masked_cross_entropy, token_cross_entropy_sums
from model.train import (
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
    "build_language_model",
    "compile_language_model",
    "configure_threads",
    "encode_prompt",
    "evaluate_language_model",
    "export_model",
    "fit_language_model",
    "generate",
    "generate_by_rerunning_prefix",
    "load_export",
    "masked_cross_entropy",
    "save_checkpoint",
    "set_seed",
    "token_cross_entropy_sums",
]
