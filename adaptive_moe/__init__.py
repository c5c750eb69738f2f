"""adaptive_moe: a frozen base language model that knows what it does not know, and grows LoRA
experts to fill the gaps.

Public names are listed in ``__all__``; see the README for a tour.
"""

import logging as _logging

from .config import AdaptiveMoEConfig
from .errors import AdaptiveMoEError
from .logging_utils import setup_logging
from .model import BaseModel, GenerationSignals, load_base_model
from .moe import AdaptiveMoE, MoEStream
from .output import MoEOutput

__version__ = "0.1.0"

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "AdaptiveMoE",
    "AdaptiveMoEConfig",
    "AdaptiveMoEError",
    "BaseModel",
    "GenerationSignals",
    "MoEOutput",
    "MoEStream",
    "__version__",
    "load_base_model",
    "setup_logging",
]
