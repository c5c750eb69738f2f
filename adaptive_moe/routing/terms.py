"""Term matching: a query that names a rare word of an expert's documents is about that expert.

Sentence encoders place "What instrument does Margit ask Tomas to bring?" near other questions about
instruments, not near a letter signed by Margit; the name is what ties the question to the documents.
:class:`TermMatcher` keeps each expert's vocabulary (the words of its example questions and passages)
and scores a query by the rarest word it shares with an expert:

    score(query, expert) = max over words w in both of  rarity(w) / (number of experts whose vocabulary has w)

``rarity`` comes from the word's frequency in general English (``wordfreq``'s Zipf scale: ~7 for "the",
~5 for "capital", ~3 for "fiddle", ~1.5 for most surnames): 0 at or above ``common`` (5.0), 1 at or
below ``rare`` (2.5), linear between. A word with both letters and digits (a model number such as
"TR-20") counts as rare; a plain number does not (years and amounts recur across unrelated texts). A
word several experts share is split between them, so the dense matcher decides among them. The router
uses the larger of this score and its embedding matcher's (``router.term_match``).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import InvalidInputError, UnknownNameError

_WORD = re.compile(r"[^\W_](?:[\w'’-]*[^\W_])?")
#: Zipf frequency at or above which a word is too common to tie a query to an expert, and at or below which
#: it counts fully (wordfreq's scale: log10 of occurrences per billion words)
COMMON_ZIPF, RARE_ZIPF = 5.0, 2.5


def words(text: str) -> set[str]:
    """The distinct lower-cased words of ``text`` (possessive 's dropped, at least two characters)."""
    out = set()
    for m in _WORD.finditer(text.lower().replace("’", "'")):
        w = m.group(0)
        w = w[:-2] if w.endswith("'s") else w
        if len(w) >= 2:
            out.add(w)
    return out


@functools.lru_cache(maxsize=65536)
def rarity(word: str, language: str = "en", common: float = COMMON_ZIPF, rare: float = RARE_ZIPF) -> float:
    """How rare ``word`` is in general ``language`` text, in [0, 1] (1: rare enough to name a document)."""
    has_digit, has_alpha = any(c.isdigit() for c in word), any(c.isalpha() for c in word)
    if has_digit:
        return 1.0 if has_alpha else 0.0
    from wordfreq import zipf_frequency

    return max(0.0, min(1.0, (common - zipf_frequency(word, language)) / (common - rare)))


class TermMatcher:
    """Each expert's vocabulary, and how strongly a query's rare words tie it to each expert.

    Args:
        language: the language whose word frequencies say what is rare (a ``wordfreq`` code, ``"en"``).
    """

    def __init__(self, language: str = "en") -> None:
        if not isinstance(language, str) or not language:
            raise InvalidInputError(f"language must be a wordfreq language code such as 'en', got {language!r}")
        self.language = language
        self._vocab: dict[str, frozenset[str]] = {}
        self._df: Counter[str] = Counter()

    @property
    def experts(self) -> list[str]:
        """Names of the experts whose vocabulary is known, sorted."""
        return sorted(self._vocab)

    def add(self, name: str, texts: Iterable[str]) -> None:
        """Learn (or replace) the vocabulary of expert ``name`` from texts it covers."""
        vocab: set[str] = set()
        for t in texts:
            if not isinstance(t, str):
                raise InvalidInputError(f"texts of expert {name!r} must be strings, got {type(t).__name__}")
            vocab |= words(t)
        self._put(name, frozenset(vocab))

    def _put(self, name: str, vocab: frozenset[str]) -> None:
        if name in self._vocab:
            self._df.subtract(self._vocab[name])
        self._vocab[name] = vocab
        self._df.update(vocab)

    def remove(self, name: str) -> None:
        """Forget expert ``name``."""
        if name not in self._vocab:
            raise UnknownNameError("expert in the term matcher", name, self._vocab)
        self._df.subtract(self._vocab.pop(name))

    def discard(self, name: str) -> None:
        """Forget expert ``name`` if known."""
        if name in self._vocab:
            self.remove(name)

    def explain(self, text: str, name: str) -> tuple[str, float] | None:
        """The word of ``text`` that ties it most to expert ``name``, with its score (None: no shared word)."""
        vocab = self._vocab.get(name, frozenset())
        best = max(((w, self._weight(w)) for w in words(text) & vocab), key=lambda p: (p[1], p[0]), default=None)
        return best if best is None or best[1] > 0 else None

    def _weight(self, word: str) -> float:
        return rarity(word, self.language) / max(self._df[word], 1)

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per text, a score in [0, 1] for every known expert."""
        out = []
        for text in texts:
            found = words(text)
            row = {}
            for name, vocab in self._vocab.items():
                row[name] = max((self._weight(w) for w in found & vocab), default=0.0)
            out.append(row)
        return out

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"language": self.language, "experts": {n: sorted(v) for n, v in sorted(self._vocab.items())}}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TermMatcher:
        """Rebuild a matcher written by :meth:`to_dict`."""
        if not isinstance(state, dict) or not isinstance(state.get("experts", {}), dict):
            raise InvalidInputError("term matcher state: expected an object with an 'experts' object")
        matcher = cls(state.get("language", "en"))
        for name, vocab in state.get("experts", {}).items():
            if not isinstance(vocab, list):
                raise InvalidInputError(f"term matcher state: the words of {name!r} must be a list")
            matcher._put(name, frozenset(str(w) for w in vocab))
        return matcher
