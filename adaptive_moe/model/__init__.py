"""Base model: loading (precision, quantization, freezing), the embedded default, generation with signals."""

from .generation import GenerationSignals, PromptStates, normalize_prompts, render_prompt
from .loading import BaseModel, compute_fingerprint, load_base_model

__all__ = [
    "BaseModel",
    "GenerationSignals",
    "PromptStates",
    "compute_fingerprint",
    "load_base_model",
    "normalize_prompts",
    "render_prompt",
]
