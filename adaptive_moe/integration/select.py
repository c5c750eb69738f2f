"""``select``: the router's top expert answers alone (every token 100% that expert).

With ``integrator.merged_fast_path`` a LoRA expert answers with its adapter merged into the weights
(:meth:`~adaptive_moe.experts.host.AdapterHost.merged`): the base model's speed instead of the
unmerged LoRA's extra matmuls, at the memory cost of one cached copy of each adapted weight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ..config import GenerationConfig
from ..experts.expert import LoRAExpert
from .base import ExpertAnswer, Integrator, check_experts, register_integrator


@register_integrator
class SelectIntegrator(Integrator):
    """The highest-weighted expert generates alone; the others are ignored."""

    name = "select"

    def generate(
        self, prompts: Sequence[Any], experts: Sequence[tuple[str, float]], generation: GenerationConfig
    ) -> list[ExpertAnswer]:
        """Answer with the top-weighted expert alone."""
        name = max(check_experts(experts), key=lambda e: e[1])[0]
        with self.pool.acquire([name]) as [expert], self.fast_path(expert):
            signals = expert.generate(list(prompts), generation)
        return [ExpertAnswer(s, [(name, 1.0)], [{name: 1.0}] * s.num_tokens, self.name) for s in signals]

    def fast_path(self, expert) -> contextlib.AbstractContextManager:
        """The merged fast path for ``expert`` when ``merged_fast_path`` is on and it is a
        :class:`LoRAExpert` that generates the default way (an overridden ``generate`` may run more
        than its own slot, so it keeps the unmerged path); otherwise a block that changes nothing."""
        host = expert.base.adapter_host if expert.base is not None else None
        if (not self.config.merged_fast_path or not isinstance(expert, LoRAExpert) or expert.slot is None
                or host is None or type(expert).generate is not LoRAExpert.generate):  # fmt: skip
            return contextlib.nullcontext()
        return host.merged(expert.slot, keep=self.config.merged_cache)
