"""Which language a document reads as, from word frequencies (``wordfreq``), so that an expert is not
created from documents its base cannot read (``creation.languages``).

A document's words are scored by their mean Zipf frequency (log10 of occurrences per billion words, 0 for a
word the list does not know) in each compared language: the 65 English documents of the benchmark corpus and
the demo score 4.6-5.8 in English and at most 4.2 in any other compared language; French prose about 5.8
in French and 3.2 in English; Russian or Chinese under 1 in all of them. A document reads as a language when
that language scores highest; one that scores low in every allowed language (another script, a list of codes)
reads as none of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidInputError

__all__ = [
    "COMPARED_LANGUAGES",
    "MIN_WORDS",
    "check_language",
    "check_languages",
    "language_scores",
    "reading_language",
]

#: the languages a document is compared against besides the allowed ones (common languages in Latin script,
#: which share words with English; a language in another script scores low in all of them)
COMPARED_LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl", "sv", "pl", "tr", "id")
#: fewer words than this say too little to tell a language: the document is not checked
MIN_WORDS = 20
#: most words of a document scored
MAX_WORDS = 2000
#: the least mean Zipf frequency of a document in the language it reads as (the English corpus documents: 4.6-5.8)
MIN_SCORE = 3.0
#: how much better another language must score than every allowed one for the document to read as it
MARGIN = 0.5
_WORD = re.compile(r"[^\W\d_]+")


def language_scores(text: str, languages: Sequence[str]) -> dict[str, float]:
    """The mean Zipf frequency of ``text``'s words (the first :data:`MAX_WORDS`) in each of ``languages``."""
    from wordfreq import zipf_frequency

    words = [w.lower() for w in _WORD.findall(text)][:MAX_WORDS]
    if not words:
        return dict.fromkeys(languages, 0.0)
    return {lang: sum(zipf_frequency(w, lang) for w in words) / len(words) for lang in languages}


def reading_language(text: str, allowed: Sequence[str] = ("en",)) -> tuple[str | None, dict[str, float]]:
    """The language ``text`` reads as among ``allowed`` and :data:`COMPARED_LANGUAGES` (``None``: it reads as
    none of the allowed ones and no compared one stands out), and every language's score. A text of fewer than
    :data:`MIN_WORDS` words reads as the first allowed language."""
    languages = list(dict.fromkeys([*allowed, *COMPARED_LANGUAGES]))
    if len(_WORD.findall(text)) < MIN_WORDS:
        return (allowed[0] if allowed else None), {}
    scores = language_scores(text, languages)
    best_allowed = max((scores[a] for a in allowed), default=0.0)
    best = max(scores, key=scores.__getitem__)
    if best not in allowed and scores[best] >= best_allowed + MARGIN:
        return best, scores
    if best_allowed < MIN_SCORE:
        return None, scores
    return max(allowed, key=scores.__getitem__), scores


def check_languages(documents: Any, allowed: Sequence[str]) -> None:
    """Refuse documents (as :func:`~adaptive_moe.documents.load_documents` reads them) that do not read as one
    of the ``allowed`` languages (``wordfreq`` codes); an empty ``allowed`` accepts any.

    Raises:
        InvalidInputError: naming the document, the language it reads as, and the setting that allows it.
    """
    from .reading import load_documents

    for source, text, _ in load_documents(documents) if allowed else []:
        check_language(source.name, text, allowed)


def check_language(name: str, text: str, allowed: Sequence[str]) -> None:
    """Refuse document ``name`` (its ``text``) unless it reads as one of the ``allowed`` languages ([]: any).

    Raises:
        InvalidInputError: as :func:`check_languages`.
    """
    if allowed:
        lang, scores = reading_language(text, allowed)
        if lang in allowed:
            return
        told = f"reads as {lang!r}" if lang else f"reads as none of {list(allowed)}"
        detail = ", ".join(f"{k} {v:.1f}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1])[:3])
        raise InvalidInputError(
            f"document {name!r} {told} (mean word frequency {detail}); creation.languages is "
            f"{list(allowed)}: the base and its reader were made for those. Translate it, or add its language "
            "to creation.languages (a wordfreq code; [] accepts any) if the base reads it"
        )
