"""Integrators: how the experts a router chose answer together.

An integrator implements one method, :meth:`Integrator.generate`: answer a group of prompts that
share the same experts and weights, returning one :class:`ExpertAnswer` per prompt with each token's
source weights. ``select`` (the top expert alone), ``mixture`` (a token-level mixture of the top-k
from one batched forward per step) and ``merge`` (a weighted merge of the adapters) are built in;
register your own with :func:`register_integrator` and name it in ``integrator.strategy``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..config import GenerationConfig, IntegratorConfig
from ..errors import InvalidInputError
from ..experts.pool import ExpertPool
from ..utils.registry import Registry


@dataclass
class ExpertAnswer:
    """One prompt's answer from a group of experts.

    Attributes:
        signals: the answer's :class:`~adaptive_moe.model.generation.GenerationSignals`; its
            ``token_logprobs`` are the log-probabilities of the chosen tokens under the combination
            that chose them (the mixture's for ``mixture``).
        experts: ``(name, weight)`` of the experts that answered, weights summing to 1.
        token_weights: per generated token, each expert's weight in [0, 1] (summing to 1).
        strategy: the integrator's name.
        per_expert_logprobs: for ``mixture``, each expert's own log-probability of every chosen token.
    """

    signals: Any
    experts: list[tuple[str, float]]
    token_weights: list[dict[str, float]]
    strategy: str
    per_expert_logprobs: dict[str, Any] = field(default_factory=dict)


class Integrator(ABC):
    """Base class of integrators. Subclass it, set ``name``, implement :meth:`generate`, and
    :func:`register_integrator` it.

    Args:
        config: the ``integrator`` section (strategy, confidence floor, per-step re-weighting).
        pool: the :class:`~adaptive_moe.experts.ExpertPool` that holds the experts.
        cache_dir: a folder the integrator may keep derived artefacts in (merged adapters).
    """

    name: ClassVar[str] = ""

    def __init__(self, config: IntegratorConfig, pool: ExpertPool, cache_dir: str | Path | None = None) -> None:
        self.config = config
        self.pool = pool
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    @property
    def base(self):
        """The base model the pool's experts sit on."""
        return self.pool.base

    @abstractmethod
    def generate(
        self, prompts: Sequence[Any], experts: Sequence[tuple[str, float]], generation: GenerationConfig
    ) -> list[ExpertAnswer]:
        """Answer every prompt with the same ``experts`` (``(name, weight)``, weights summing to 1)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_experts(experts: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """``(name, weight)`` pairs with positive weights, renormalised to sum to 1."""
    experts = [(str(n), float(w)) for n, w in experts]
    if not experts:
        raise InvalidInputError("an integrator needs at least one expert")
    if any(not w > 0 for _, w in experts):
        raise InvalidInputError(f"expert weights must be positive, got {experts}")
    if len({n for n, _ in experts}) != len(experts):
        raise InvalidInputError(f"an expert is named twice in {experts}")
    total = sum(w for _, w in experts)
    return [(n, w / total) for n, w in experts]


INTEGRATORS: Registry[type[Integrator]] = Registry("integrator", Integrator)


def register_integrator(cls: type[Integrator], *, overwrite: bool = False) -> type[Integrator]:
    """Register an integrator class under its ``name`` (usable as a class decorator); see
    :meth:`~adaptive_moe.utils.registry.Registry.register`."""
    return INTEGRATORS.register(cls, overwrite=overwrite)


def integrator_class(name: str) -> type[Integrator]:
    """The integrator class registered as ``name``."""
    return INTEGRATORS.get(name)


def list_integrators() -> list[str]:
    """Names of the registered integrators, sorted."""
    return INTEGRATORS.names()
