"""Attribution: which source produced each token of an answer, with what weight and confidence.

A *source* is ``"base"`` or an expert's name. Every token carries a weight per source in [0, 1],
summing to 1 (a single expert or the base: 1.0; a token-level mixture: each expert's share of the
chosen token's mixed probability). An answer's source shares are the mean of its token weights, so
they match its tokens by construction.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

BASE = "base"

# token background colours in a notebook, by source order (base first); readable on light and dark themes
_COLOURS = ("#9e9e9e", "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948")


@dataclass
class TokenAttribution:
    """One generated token: its text, id, and each source's weight in [0, 1] (summing to 1)."""

    token: str
    token_id: int
    weights: dict[str, float]

    @property
    def top_source(self) -> str:
        """The source with the largest weight on this token."""
        return max(self.weights, key=self.weights.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"token": self.token, "token_id": self.token_id, "weights": dict(self.weights)}


@dataclass
class Attribution:
    """Who produced an answer.

    Attributes:
        route: the route the answer came by (``"base"``, ``"expert"``, ``"gap"``, ``"abstain"``).
        tokens: per generated token, each source's weight.
        base_confidence: the base model's calibrated confidence in [0, 1] (``None`` when not judged).
        expert_confidence: per expert that answered, its calibrated confidence in [0, 1].
        reason: the router's reason, plus what the integrator did (fallbacks, flags).
        cache: pool events of this answer (``hits``, ``misses``, ``evictions``, ``hotswaps``).
        strategy: the integrator that combined the experts (``select``, ``mixture``, ``merge``), if any.
        citations: the passages of the experts' documents the answer rests on, best first: ``source``
            (file), ``lines`` ([first, last], 1-based), ``score`` (how it ranked for the question: cosine
            similarity, plus the expert's ``lexical_weight`` times its share of the best BM25 score),
            ``text`` and ``cite`` (``source:first-last``); empty when the answer did not come from passages.
        supported: whether those passages contain the answer's words (``None`` without citations); an
            answer no passage supports is flagged.
    """

    route: str
    tokens: list[TokenAttribution] = field(default_factory=list)
    base_confidence: float | None = None
    expert_confidence: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    cache: dict[str, int] = field(default_factory=dict)
    strategy: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    supported: bool | None = None

    @classmethod
    def single(cls, source: str, tokenizer, token_ids: Sequence[int], **fields_: Any) -> Attribution:
        """Every token from one source (the base, or one expert)."""
        pieces = token_pieces(tokenizer, token_ids)
        return cls(tokens=[TokenAttribution(p, t, {source: 1.0}) for p, t in zip(pieces, token_ids, strict=True)],
                   **fields_)  # fmt: skip

    @property
    def sources(self) -> dict[str, float]:
        """Each source's share of the answer in [0, 1]: the mean of its token weights (sums to 1)."""
        if not self.tokens:
            return {}
        totals: dict[str, float] = {}
        for t in self.tokens:
            for name, w in t.weights.items():
                totals[name] = totals.get(name, 0.0) + w
        return {name: total / len(self.tokens) for name, total in totals.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the route, the sources' shares and confidences, the reason, and every token."""
        return {
            "route": self.route,
            "strategy": self.strategy,
            "sources": self.sources,
            "base_confidence": self.base_confidence,
            "expert_confidence": dict(self.expert_confidence),
            "reason": self.reason,
            "cache": dict(self.cache),
            "citations": [dict(c) for c in self.citations],
            "supported": self.supported,
            "tokens": [t.to_dict() for t in self.tokens],
        }

    def __str__(self) -> str:
        shares = ", ".join(f"{n} {w:.0%}" for n, w in sorted(self.sources.items(), key=lambda kv: -kv[1]))
        conf = "n/a" if self.base_confidence is None else f"{self.base_confidence:.2f}"
        experts = ", ".join(f"{n} {c:.2f}" for n, c in self.expert_confidence.items()) or "none"
        strategy = f" ({self.strategy})" if self.strategy else ""
        lines = [f"route {self.route}{strategy}: {shares or 'no tokens'}",
                 f"base confidence {conf}; expert confidence: {experts}"]  # fmt: skip
        if self.reason:
            lines.append(f"reason: {self.reason}")
        lines += self._citation_lines()
        return "\n".join(lines)

    def _citation_lines(self) -> list[str]:
        if not self.citations:
            return []
        lines = [f"from {c['cite']} (score {c['score']:.2f}): {c['text']}" for c in self.citations]
        if self.supported is False:
            lines.append("no passage supports this answer")
        return lines

    def _repr_html_(self) -> str:
        names = sorted(self.sources, key=lambda n: (n != BASE, n))
        colour = {n: _COLOURS[i % len(_COLOURS)] for i, n in enumerate(names)}
        spans = []
        for t in self.tokens:
            top = t.top_source
            alpha = 0.25 + 0.6 * t.weights[top]  # stronger colour for a clearer source
            tip = ", ".join(f"{n}: {w:.2f}" for n, w in t.weights.items())
            spans.append(f'<span title="{html.escape(tip)}" style="background:{colour[top]}{int(alpha * 255):02x};'
                         f'border-radius:3px">{html.escape(t.token)}</span>')  # fmt: skip
        legend = " ".join(f'<span style="background:{colour[n]};padding:0 4px;border-radius:3px">{html.escape(n)} '
                          f"{self.sources[n]:.0%}</span>" for n in names)  # fmt: skip
        body = f'<div style="font-family:monospace;white-space:pre-wrap">{"".join(spans)}</div>'
        cites = "".join(f"<li>{html.escape(line)}</li>" for line in self._citation_lines())
        cites = f'<ul style="font-size:smaller;margin:4px 0">{cites}</ul>' if cites else ""
        return (
            body + f'<div style="font-size:smaller;margin-top:4px">{legend} · {html.escape(self.reason)}</div>' + cites
        )


def token_pieces(tokenizer, token_ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded answer (so the pieces concatenate to the answer text,
    including multi-byte characters split across tokens, which come out on the token that completes them)."""
    pieces, previous = [], ""
    ids = list(token_ids)
    for i in range(len(ids)):
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
        if text.endswith("\ufffd") and i < len(ids) - 1:  # an incomplete UTF-8 sequence: wait for the rest
            pieces.append("")
            continue
        pieces.append(text[len(previous) :] if text.startswith(previous) else text)
        previous = text
    return pieces


def alternative_pieces(tokenizer, token_ids: Sequence[int], alternatives: Sequence[Sequence[int]]) -> list[list[str]]:
    """For each step of an answer, the text each alternative token would have added there, cut the way
    :func:`token_pieces` cuts the chosen ones (so the chosen token among its alternatives reads the same)."""
    ids, out, previous = list(token_ids), [], ""
    for i, alts in enumerate(alternatives):
        wait = i < len(ids) - 1
        row = []
        for a in alts:
            text = tokenizer.decode([*ids[:i], int(a)], skip_special_tokens=True)
            row.append("" if text.endswith("\ufffd") and wait else text[len(previous) :] if text.startswith(previous)
                       else text)  # fmt: skip
        out.append(row)
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
        if not (text.endswith("\ufffd") and wait):
            previous = text
    return out
