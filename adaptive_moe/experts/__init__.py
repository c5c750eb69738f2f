"""Experts on one shared base model: classes users extend, the on-disk registry, and the LRU pool."""

from .card import ExpertCard, validate_expert_name
from .expert import Expert, LoRAExpert, expert_class, read_adapter_layout, register_expert_kind
from .host import AdapterHost
from .pool import ExpertPool, PoolStats
from .registry import ExpertRegistry
from .retrieval import PassageIndex, RetrievalExpert

__all__ = [
    "AdapterHost",
    "Expert",
    "ExpertCard",
    "ExpertPool",
    "ExpertRegistry",
    "LoRAExpert",
    "PassageIndex",
    "PoolStats",
    "RetrievalExpert",
    "expert_class",
    "read_adapter_layout",
    "register_expert_kind",
    "validate_expert_name",
]
