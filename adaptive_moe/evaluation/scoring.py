"""Answer scoring in one place: normalisation, pluggable scorers and a validating registry.

A scorer decides whether a free-text prediction answers a question, given its gold answer and aliases.
Both sides go through :func:`normalize_answer` first (case, accents, punctuation, articles, number
words), so ``"The capital is Paris."`` matches ``"paris"`` and ``"seven"`` matches ``"7"``.

Two scorers ship: ``"contains"`` (the gold appears in the prediction as whole words, so ``"4"`` does
not match ``"14"``) and ``"exact"`` (normalised equality). Add your own with :func:`register_scorer`;
a scorer needs one method, :meth:`AnswerScorer.match`.
"""

from __future__ import annotations

import abc
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

from ..errors import InvalidInputError
from ..utils.registry import Registry

__all__ = [
    "AnswerScorer",
    "ContainsScorer",
    "ExactScorer",
    "accuracy",
    "get_scorer",
    "is_correct",
    "normalize_answer",
    "register_scorer",
    "registered_scorers",
]

_ARTICLES = frozenset({"a", "an", "the"})
_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_SMALL = {w: i for i, w in enumerate(_UNITS)}  # 0..19
_TENS = {
    w: 10 * i for i, w in enumerate(("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), 2)
}
_NUMBER_WORDS = frozenset(_SMALL) | frozenset(_TENS) | {"hundred", "thousand"}

# "1,000,000" -> "1000000": a comma between a digit and exactly three digits is a thousands separator.
_THOUSANDS_SEP = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# A token is a decimal number ("3.14") or a run of letters and digits ("h2o", "56th"); the rest is punctuation.
_TOKEN = re.compile(r"\d+(?:\.\d+)+|[^\W_]+")


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _number_runs(tokens: list[str]) -> list[str]:
    """Turn runs of number words into digits: "seven" -> "7", "twenty one" -> "21", "two hundred" -> "200".

    A word that cannot continue the number being read ("one two") starts a new one, so every number word
    still becomes digits. "and" is not read ("two hundred and five" -> "200 and 5").
    """
    out: list[str] = []
    total = current = 0
    last: str | None = None  # kind of the previous number word in the run: small / tens / hundred / thousand

    def flush() -> None:
        nonlocal total, current, last
        if last is not None:
            out.append(str(total + current))
        total = current = 0
        last = None

    for tok in tokens:
        if tok not in _NUMBER_WORDS:
            flush()
            out.append(tok)
            continue
        if tok in _SMALL:
            value = _SMALL[tok]
            # a unit ends "twenty" (-> 21) or follows "hundred"/"thousand" (-> 105); zero only stands alone
            ok = 0 < value < 10 if last == "tens" else last is None or (last in ("hundred", "thousand") and value > 0)
            if not ok:
                flush()
            current += value
            last = "small"
        elif tok in _TENS:
            if last not in (None, "hundred", "thousand"):
                flush()
            current += _TENS[tok]
            last = "tens"
        elif tok == "hundred":
            if last not in (None, "small") or current >= 100:
                flush()
            current = (current or 1) * 100
            last = "hundred"
        else:  # thousand
            if last == "thousand":
                flush()
            elif total:  # "two thousand five thousand": the first number ends, "five" starts the next
                out.append(str(total))
                total = 0
            total, current = (current or 1) * 1000, 0
            last = "thousand"
    flush()
    return out


def normalize_answer(text: str) -> str:
    """Normalise an answer for comparison; the result is lowercase tokens joined by single spaces.

    Steps: Unicode NFKC (``"H₂O"`` -> ``"H2O"``), lowercase, strip accents (``"Pelé"`` -> ``"pele"``),
    drop thousands separators (``"1,000"`` -> ``"1000"``), split on punctuation and whitespace (a
    decimal point between digits is kept, trailing decimal zeros dropped: ``"56.0"`` -> ``"56"``),
    drop the articles a / an / the, and write number words as digits (``"seven"`` -> ``"7"``,
    ``"twenty-one"`` -> ``"21"``, ``"a hundred"`` -> ``"100"``).
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"normalize_answer expects a str, got {type(text).__name__}")
    text = _strip_accents(unicodedata.normalize("NFKC", text).lower())
    text = _THOUSANDS_SEP.sub("", text)
    tokens = []
    for tok in _TOKEN.findall(text):
        if tok in _ARTICLES:
            continue
        if "." in tok:  # a decimal number: "2.50" -> "2.5", "56.0" -> "56"
            tok = tok.rstrip("0").rstrip(".")
        tokens.append(tok)
    return " ".join(_number_runs(tokens))


class AnswerScorer(abc.ABC):
    """Decides whether a prediction answers a question. Subclasses implement :meth:`match` only.

    Contract: ``match(prediction, gold)`` returns ``True`` when the free-text ``prediction`` gives the
    single gold answer ``gold``, else ``False``. It is a pure function of its two strings (no model, no
    state), should compare normalised text (see :func:`normalize_answer`), and must return ``False``
    (never raise) for any pair of strings, including an empty prediction or a gold that normalises to
    nothing. :meth:`score` validates its inputs and tries every alias.
    """

    name: str = ""

    @abc.abstractmethod
    def match(self, prediction: str, gold: str) -> bool:
        """True when ``prediction`` gives the answer ``gold``."""

    def score(self, prediction: str, golds: Sequence[str]) -> bool:
        """True when ``prediction`` matches any of ``golds`` (the gold answer and its aliases)."""
        _check_prediction(prediction)
        _check_golds(golds)
        return any(self.match(prediction, gold) for gold in golds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ContainsScorer(AnswerScorer):
    """The normalised gold appears in the normalised prediction as whole words, in order.

    ``"The capital is Paris."`` matches ``"Paris"``; ``"14"`` does not match ``"4"``; ``"New Delhi"``
    matches ``"Delhi"`` but ``"Delhi"`` does not match ``"New Delhi"``.
    """

    name = "contains"

    def match(self, prediction: str, gold: str) -> bool:
        """Whether the normalised gold appears in the prediction as whole words."""
        g = normalize_answer(gold)
        # tokens are joined by single spaces and hold none, so padding makes this a token-boundary match
        return bool(g) and f" {g} " in f" {normalize_answer(prediction)} "


class ExactScorer(AnswerScorer):
    """The normalised prediction equals the normalised gold (``"The Nile."`` matches ``"nile"``)."""

    name = "exact"

    def match(self, prediction: str, gold: str) -> bool:
        """Whether prediction and gold are equal after normalisation."""
        g = normalize_answer(gold)
        return bool(g) and normalize_answer(prediction) == g


class TokenF1Scorer(ContainsScorer):
    """The gold appears in the prediction (as :class:`ContainsScorer`), or the two share enough words: the
    token F1 of their normalised words (SQuAD's overlap measure) is at least :attr:`min_f1` (0.5).

    For golds that are whole spans cut from a sentence, as rule-made check questions have: ``"River
    Aumbry"`` answers ``"the River Aumbry and drains"`` (two words of four shared: F1 0.67), which
    ``contains`` refuses; ``"chapel"`` for ``"the ruins of a twelfth-century chapel"`` (one of five: F1
    0.33) is still wrong.
    """

    name = "f1"
    min_f1: float = 0.5

    def match(self, prediction: str, gold: str) -> bool:
        """Whether the gold is in the prediction or their token F1 reaches :attr:`min_f1`."""
        if super().match(prediction, gold):
            return True
        g, p = normalize_answer(gold).split(), normalize_answer(prediction).split()
        common = sum((Counter(g) & Counter(p)).values())
        return common > 0 and 2 * common / (len(g) + len(p)) >= self.min_f1


_SCORERS: Registry[type[AnswerScorer]] = Registry("scorer", AnswerScorer)


def register_scorer(name: str, cls: type[AnswerScorer], *, overwrite: bool = False) -> None:
    """Register ``cls`` under ``name`` so ``get_scorer(name)`` and ``method=name`` find it; see
    :meth:`~adaptive_moe.utils.registry.Registry.register` for the rules."""
    _SCORERS.register(cls, name, overwrite=overwrite)


def registered_scorers() -> list[str]:
    """Names of the registered scorers, sorted."""
    return _SCORERS.names()


def get_scorer(name: str) -> AnswerScorer:
    """A new instance of the scorer registered as ``name``; :class:`UnknownNameError` lists the known ones."""
    if not isinstance(name, str):
        raise InvalidInputError(f"scorer name must be a str, got {type(name).__name__}")
    return _SCORERS.get(name)()


def _resolve(method: str | AnswerScorer) -> AnswerScorer:
    return method if isinstance(method, AnswerScorer) else get_scorer(method)


def is_correct(prediction: str, golds: Sequence[str], method: str | AnswerScorer = "contains") -> bool:
    """True when ``prediction`` matches any of ``golds`` under ``method`` (a registered name or a scorer)."""
    return _resolve(method).score(prediction, golds)


def accuracy(
    predictions: Sequence[str], golds: Sequence[Sequence[str]], method: str | AnswerScorer = "contains"
) -> float:
    """Fraction in [0, 1] of ``predictions`` that match their ``golds`` (one list of aliases per prediction).

    Raises :class:`InvalidInputError` when the sequences are empty or of different lengths.
    """
    scorer = _resolve(method)
    if isinstance(predictions, str) or not isinstance(predictions, Sequence):
        raise InvalidInputError(f"predictions must be a sequence of str, got {type(predictions).__name__}")
    if isinstance(golds, str) or not isinstance(golds, Sequence):
        raise InvalidInputError(f"golds must be a sequence of alias lists, got {type(golds).__name__}")
    if len(predictions) != len(golds):
        raise InvalidInputError(f"got {len(predictions)} predictions but {len(golds)} gold lists; they must match")
    if not predictions:
        raise InvalidInputError("accuracy of no predictions is undefined; pass at least one")
    return sum(scorer.score(p, g) for p, g in zip(predictions, golds, strict=True)) / len(predictions)


def _check_prediction(prediction: object) -> None:
    if not isinstance(prediction, str):
        raise InvalidInputError(f"prediction must be a str, got {type(prediction).__name__}")


def _check_golds(golds: object) -> None:
    # a bare str is a Sequence too, and would be scored letter by letter
    if isinstance(golds, str) or not isinstance(golds, Sequence):
        raise InvalidInputError(f"golds must be a list of str (the answer and its aliases), got {golds!r}")
    if not golds:
        raise InvalidInputError("golds is empty; give at least one gold answer")
    bad = [g for g in golds if not isinstance(g, str) or not g.strip()]
    if bad:
        raise InvalidInputError(f"every gold answer must be a non-empty str; bad: {bad!r}")


register_scorer(ContainsScorer.name, ContainsScorer)
register_scorer(ExactScorer.name, ExactScorer)
register_scorer(TokenF1Scorer.name, TokenF1Scorer)
