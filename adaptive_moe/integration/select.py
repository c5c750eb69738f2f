"""``select``: the router's top expert answers alone (every token 100% that expert)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import GenerationConfig
from .base import ExpertAnswer, Integrator, check_experts, register_integrator


@register_integrator
class SelectIntegrator(Integrator):
    """The highest-weighted expert generates alone; the others are ignored."""

    name = "select"

    def generate(
        self, prompts: Sequence[Any], experts: Sequence[tuple[str, float]], generation: GenerationConfig
    ) -> list[ExpertAnswer]:
        name = max(check_experts(experts), key=lambda e: e[1])[0]
        with self.pool.acquire([name]) as [expert]:
            signals = expert.generate(list(prompts), generation)
        return [ExpertAnswer(s, [(name, 1.0)], [{name: 1.0}] * s.num_tokens, self.name) for s in signals]
