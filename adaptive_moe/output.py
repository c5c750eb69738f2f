"""``MoEOutput``: what :meth:`AdaptiveMoE.generate` returns for one prompt."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from .integration.attribution import Attribution


@dataclass
class MoEOutput:
    """One answer of the adaptive system.

    Attributes:
        prompt: the prompt as given.
        text: the answer.
        route: ``"base"`` (the base was confident), ``"expert"`` (experts answered), ``"gap"`` (the
            base was unsure and no expert covers the query: the base answer, flagged, and the query
            recorded as a knowledge gap) or ``"abstain"`` (the experts' answers were below the
            confidence floor; ``text`` is ``integrator.abstain_text``).
        confidence: the base model's calibrated confidence in [0, 1] (higher = more confident).
        expert_confidence: the answering experts' calibrated confidence in [0, 1], or ``None``.
        experts: ``(name, weight)`` of the experts that produced ``text`` (weights sum to 1).
        attribution: per token, each source's weight; per answer, the sources' shares, confidences,
            the router's reason and the pool's cache events.
        timings: milliseconds per stage of the call that produced it (``base``, ``route``, ``experts``,
            ``total``; batch stages are shared by the prompts of the batch).
        cache: pool events of this answer (``hits``, ``misses``, ``evictions``, ``hotswaps``).
        reason: why the route was taken, in words.
        flagged: the answer should not be trusted as is (a gap, or a low-confidence best answer).
        base_text: the base model's own answer, when it generated one.
        candidates: the expert answers tried, in order: ``{"experts", "text", "confidence"}``.
        signals: the :class:`~adaptive_moe.model.generation.GenerationSignals` of ``text`` (not in
            :meth:`to_dict`).
    """

    prompt: Any
    text: str
    route: str
    confidence: float | None
    expert_confidence: float | None
    experts: list[tuple[str, float]]
    attribution: Attribution
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)
    reason: str = ""
    flagged: bool = False
    base_text: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    signals: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (no tensors)."""
        return {
            "prompt": self.prompt,
            "text": self.text,
            "route": self.route,
            "confidence": self.confidence,
            "expert_confidence": self.expert_confidence,
            "experts": [list(e) for e in self.experts],
            "reason": self.reason,
            "flagged": self.flagged,
            "base_text": self.base_text,
            "candidates": [dict(c) for c in self.candidates],
            "timings": dict(self.timings),
            "cache": dict(self.cache),
            "attribution": self.attribution.to_dict(),
        }

    def _head(self) -> str:
        conf = "n/a" if self.confidence is None else f"{self.confidence:.2f}"
        parts = [f"route={self.route}", f"confidence={conf}"]
        if self.experts:
            parts.append("experts=" + ", ".join(f"{n} ({w:.2f})" for n, w in self.experts))
        if self.expert_confidence is not None:
            parts.append(f"expert_confidence={self.expert_confidence:.2f}")
        if self.flagged:
            parts.append("FLAGGED")
        return "  ".join(parts)

    def __str__(self) -> str:
        total = self.timings.get("total")
        lines = [self.text, f"[{self._head()}]", f"[reason: {self.reason}]"]
        if total is not None:
            lines.append(f"[{total:.0f} ms; cache {self.cache or {}}]")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return (f'<div style="margin-bottom:4px;color:#666;font-size:smaller">{html.escape(self._head())}</div>'
                f"{self.attribution._repr_html_()}")  # fmt: skip
