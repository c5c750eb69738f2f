"""Constrained decoding: answers that can only quote their sources.

:class:`QuoteConstraint` is a ``transformers`` logits processor that lets each row of a batch generate only
text found in that row's source texts (case and spacing aside): at every step the most likely next tokens
are tried in order, and a token is allowed when the answer with it is still a piece of one of the row's
sources. A small reader given retrieved passages then cannot invent a name or a number the passages do
not hold ("Harposhea" for "Pharos"); it can still pick the wrong span. The end of the answer is allowed
once something was quoted; when no candidate continues a quote, the answer ends.

The model's own probabilities are untouched where it matters: the generation records the *raw* logits,
so a quote the model did not want scores a low confidence and the integrator's floor still applies.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import torch

from ..errors import InvalidInputError

__all__ = ["QuoteConstraint", "normalise_quote"]

_SPACE = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.,;:!?]{0,2}$")
_FOLD = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


def normalise_quote(text: str) -> str:
    """``text`` as quotes are compared: NFKC, typographic quotes and dashes folded, lower case, one space."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).lower()
    return _SPACE.sub(" ", text).strip()


class QuoteConstraint:
    """A logits processor (``transformers`` calls it as ``processor(input_ids, scores)``) that keeps each
    row's generation inside its ``sources``.

    Args:
        tokenizer: the model's tokenizer (to decode candidate answers).
        sources: for each row of the batch, the texts its answer may quote.
        eos_token_ids: the ids that end a generation (allowed once the answer quotes something).
        candidates: how many of the most likely tokens are tried at each step.
    """

    def __init__(self, tokenizer: Any, sources: list[list[str]], eos_token_ids: Any, candidates: int = 48) -> None:
        self.tokenizer = tokenizer
        self.sources = [[normalise_quote(s) for s in row if s and s.strip()] for row in sources]
        eos = eos_token_ids if isinstance(eos_token_ids, (list, tuple, set)) else [eos_token_ids]
        self.eos = [int(e) for e in eos if e is not None]
        self.candidates = int(candidates)
        self._start: int | None = None

    def _quotes(self, row: int, text: str) -> bool:
        probe = normalise_quote(text)
        if not probe:
            return True
        probe = _TRAILING.sub("", probe) or probe
        return any(probe in s for s in self.sources[row])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """``scores`` with every token that would leave a row's sources set to ``-inf``."""
        if self._start is None:
            self._start = input_ids.shape[1]
        if input_ids.shape[0] != len(self.sources):
            raise InvalidInputError(
                f"QuoteConstraint holds sources for {len(self.sources)} rows, got {input_ids.shape[0]}"
            )
        out = torch.full_like(scores, float("-inf"))
        k = min(self.candidates, scores.shape[-1])
        top = torch.topk(scores, k, dim=-1).indices.tolist()
        for row, ids in enumerate(input_ids[:, self._start :].tolist()):
            if not self.sources[row]:  # nothing to quote from: the row generates freely
                out[row] = scores[row]
                continue
            so_far = self.tokenizer.decode(ids, skip_special_tokens=True)
            allowed = []
            for t in top[row]:
                text = self.tokenizer.decode([*ids, t], skip_special_tokens=True)
                if t not in self.eos and len(text) > len(so_far) and self._quotes(row, text):
                    allowed.append(t)
            if normalise_quote(so_far) or not allowed:
                allowed += self.eos
            if not allowed:  # no end token known and nothing quotes: leave the row as it was
                out[row] = scores[row]
                continue
            index = torch.tensor(allowed, device=scores.device)
            out[row, index] = scores[row, index]
        return out
