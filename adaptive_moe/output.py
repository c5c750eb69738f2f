"""``MoEOutput``: what :meth:`AdaptiveMoE.generate` returns for one prompt."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from .integration.attribution import BASE, Attribution, TokenAttribution, token_pieces


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


def base_output(prompt: Any, decision: Any, signals: Any, tokenizer: Any) -> MoEOutput:
    """The output of a query answered by the base (route ``base`` or ``gap``), attributed 100% to the base."""
    flagged = decision.route == "gap"
    reason = decision.reason + ("; the base answer is returned, flagged, and the query logged as a gap"
                                if flagged else "")  # fmt: skip
    attribution = Attribution.single(BASE, tokenizer, signals.token_ids, route=decision.route,
                                     base_confidence=decision.confidence, reason=reason)  # fmt: skip
    return MoEOutput(prompt=prompt, text=signals.text, route=decision.route, confidence=decision.confidence,
                     expert_confidence=None, experts=[], attribution=attribution, reason=reason,
                     flagged=flagged, base_text=signals.text, signals=signals)  # fmt: skip


def expert_output(prompt: Any, decision: Any, tried: list, floor: float, base_signals: Any, tokenizer: Any,
                  integrator: Any, forced: bool = False) -> MoEOutput:  # fmt: skip
    """The output of a query sent to experts: ``tried`` holds ``(answer, confidence, cache events)`` of each
    expert answer in the order asked; the first at or above ``floor`` is chosen, else the system abstains
    (``integrator.on_low_confidence: abstain``) or returns the best one, flagged."""
    best_answer, best_conf, _ = max(tried, key=lambda t: t[1])
    chosen = next(((a, c, e) for a, c, e in tried if c >= floor), None)
    cache = sum_cache([e for _, _, e in tried])
    candidates = [{"experts": [list(x) for x in a.experts], "text": a.signals.text, "confidence": c}
                  for a, c, _ in tried]  # fmt: skip
    reason = decision.reason
    if len(tried) > 1:
        reason += "; " + ", ".join(f"{'+'.join(n for n, _ in a.experts)} answered with confidence {c:.2f}"
                                   for a, c, _ in tried)  # fmt: skip
    flagged, route = False, "expert"
    if chosen is None:
        if integrator.on_low_confidence == "abstain" and not forced:
            route = "abstain"
            reason += f"; no expert answer reached the confidence floor {floor:.2f}: abstaining"
        else:
            chosen, flagged = (best_answer, best_conf, None), True
            what = "the answer of the experts asked for" if forced else "the best one"
            reason += f"; no expert answer reached the floor {floor:.2f}: {what} is returned, flagged"
    if route == "abstain":
        attribution = Attribution(route="abstain", base_confidence=decision.confidence, reason=reason,
                                  cache=cache, strategy=best_answer.strategy,
                                  expert_confidence={n: best_conf for n, _ in best_answer.experts})  # fmt: skip
        return MoEOutput(prompt=prompt, text=integrator.abstain_text, route="abstain",
                         confidence=decision.confidence, expert_confidence=best_conf, experts=[],
                         attribution=attribution, cache=cache, reason=reason, flagged=True,
                         base_text=getattr(base_signals, "text", None), candidates=candidates)  # fmt: skip
    answer, conf, _ = chosen
    pieces = token_pieces(tokenizer, answer.signals.token_ids)
    tokens = [TokenAttribution(p, t, dict(w)) for p, t, w in
              zip(pieces, answer.signals.token_ids, answer.token_weights, strict=True)]  # fmt: skip
    citations = list(getattr(answer.signals, "citations", None) or [])
    supported = getattr(answer.signals, "supported", None) if citations else None
    if supported is False:
        flagged = True
        reason += "; no passage of the expert's documents supports this answer"
    attribution = Attribution(route="expert", tokens=tokens, base_confidence=decision.confidence,
                              expert_confidence={n: conf for n, _ in answer.experts}, reason=reason,
                              cache=cache, strategy=answer.strategy, citations=citations,
                              supported=supported)  # fmt: skip
    return MoEOutput(prompt=prompt, text=answer.signals.text, route="expert", confidence=decision.confidence,
                     expert_confidence=conf, experts=list(answer.experts), attribution=attribution, cache=cache,
                     reason=reason, flagged=flagged, base_text=getattr(base_signals, "text", None),
                     candidates=candidates, signals=answer.signals)  # fmt: skip


def cache_events(stats: Any) -> dict[str, int]:
    """The pool's cache events in a :class:`~adaptive_moe.experts.PoolStats` difference, as a dict."""
    return {"hits": stats.hits, "misses": stats.misses, "evictions": stats.evictions, "hotswaps": stats.hotswaps}


def sum_cache(events: list[dict[str, int]]) -> dict[str, int]:
    """Cache events of several answers, added up."""
    out: dict[str, int] = {}
    for e in events:
        for k, v in e.items():
            out[k] = out.get(k, 0) + v
    return out
