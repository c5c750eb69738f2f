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


def _quiet_dependency_noise() -> None:
    """Two messages our dependencies print on every run that say nothing to a user of this library:
    bitsandbytes' notice that an optional kernels package is missing (printed whenever PEFT imports it,
    even for an fp32 base), and transformers' deprecation of ``is_gradient_checkpointing``, which PEFT
    and the Trainer call. Only these exact messages are dropped."""
    import warnings

    class _DropKernelsNotice(_logging.Filter):
        def filter(self, record: _logging.LogRecord) -> bool:
            return "kernels-community" not in record.getMessage()

    _logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropKernelsNotice())
    warnings.filterwarnings("ignore", message=r".*`is_gradient_checkpointing` is deprecated", category=FutureWarning)


_quiet_dependency_noise()

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
