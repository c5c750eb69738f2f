"""Base model: loading (precision, quantization, freezing), the embedded default, generation with signals, and
the decoding engine (continuous batching) that a server puts on a base."""

from .engine import DecodeEngine, EngineUnsupportedError
from .generation import GenerationSignals, PromptStates, adapter_rows, normalize_prompts, render_prompt
from .loading import BaseModel, ModelLock, compute_fingerprint, load_base_model

__all__ = [
    "BaseModel",
    "DecodeEngine",
    "EngineUnsupportedError",
    "GenerationSignals",
    "ModelLock",
    "PromptStates",
    "adapter_rows",
    "compute_fingerprint",
    "load_base_model",
    "normalize_prompts",
    "render_prompt",
]
