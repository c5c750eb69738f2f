"""``merge``: a weighted merge of the chosen adapters (PEFT ``add_weighted_adapter``), cached.

The merged adapter is built once per (experts, weights rounded to 0.05) from the experts' loaded
slots, written as a plain PEFT adapter folder under the integrator's cache folder, and added to the
pool under a derived name (``merge-<hash>``), so the next query with the same experts finds it
resident (or on disk). Its tokens are attributed to the sources by the merge weights: a merged
model cannot tell which source produced a token.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import GenerationConfig
from ..errors import IncompatibleExpertError
from ..experts.card import ExpertCard
from ..experts.expert import LoRAExpert
from ..model.adapters import check_adapter_folder
from .base import ExpertAnswer, Integrator, check_experts, register_integrator
from .select import SelectIntegrator

WEIGHT_STEP = 0.05  # merge weights are rounded to this, so nearby router weights share one merged adapter


def merged_name(experts: Sequence[tuple[str, float]]) -> str:
    """The derived name of a merge: stable for the same experts and rounded weights."""
    key = ",".join(f"{n}:{w:.2f}" for n, w in sorted(experts))
    return "merge-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def round_weights(experts: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Weights rounded to 3 places and renormalised: the key of a cached merged adapter."""
    rounded = [(n, max(WEIGHT_STEP, round(w / WEIGHT_STEP) * WEIGHT_STEP)) for n, w in experts]
    total = sum(w for _, w in rounded)
    return [(n, w / total) for n, w in rounded]


@register_integrator
class MergeIntegrator(Integrator):
    """The chosen experts merged into one adapter by their weights (see the module docstring)."""

    name = "merge"

    def generate(
        self, prompts: Sequence[Any], experts: Sequence[tuple[str, float]], generation: GenerationConfig
    ) -> list[ExpertAnswer]:
        """Answer with one adapter merged from ``experts`` (PEFT ``add_weighted_adapter``), cached by weights."""
        experts = check_experts(experts)
        if len(experts) == 1:
            return SelectIntegrator(self.config, self.pool, self.cache_dir).generate(prompts, experts, generation)
        experts = round_weights(experts)
        name = self.ensure_merged(experts)
        with self.pool.acquire([name]) as [merged]:
            signals = merged.generate(list(prompts), generation)
        weights = dict(experts)
        return [ExpertAnswer(s, list(experts), [dict(weights)] * s.num_tokens, self.name) for s in signals]

    def ensure_merged(self, experts: Sequence[tuple[str, float]]) -> str:
        """Make the merged expert available in the pool (built and written on first use); its name."""
        name = merged_name(experts)
        with self.base.lock:
            if name in self.pool.extra_names:
                return name
            folder = self._folder(name)
            if not (folder / "adapter_config.json").is_file():
                self._build(experts, folder)
            check_adapter_folder(folder)
            card = ExpertCard(
                name=name, domain="merge of " + ", ".join(f"{n} ({w:.2f})" for n, w in experts),
                base_fingerprint=self.base.fingerprint, base_name=self.base.name,
                extra={"merged_from": [list(e) for e in experts]},
            )  # fmt: skip
            self.pool.add(LoRAExpert(card, folder))
        return name

    def _folder(self, name: str) -> Path:
        if self.cache_dir is None:
            self._tmp = getattr(self, "_tmp", None) or tempfile.TemporaryDirectory(prefix="adaptive_moe_merged_")
            return Path(self._tmp.name) / name
        return self.cache_dir / name

    def _build(self, experts: Sequence[tuple[str, float]], folder: Path) -> None:
        names = [n for n, _ in experts]
        with self.pool.acquire(names) as loaded:
            slots = [getattr(e, "slot", None) for e in loaded]
            if any(s is None for s in slots):
                raise IncompatibleExpertError("the merge strategy needs LoRA experts: " + ", ".join(names))
            folder.parent.mkdir(parents=True, exist_ok=True)
            self.base.adapter_host.merge_to_folder(slots, [w for _, w in experts], folder)
