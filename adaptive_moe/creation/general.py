"""The general-knowledge check set: short questions the base model already knows (or half-knows).

It measures what experts and routing do to the base's own knowledge: score the base on it, force an
expert on, score again, and compare the two paired answer lists. About 200 questions, written for this
project, in six topics; each has a short gold answer and aliases, scorable with the ``"contains"``
scorer (see :mod:`adaptive_moe.evaluation.scoring`). The data ships as
``adaptive_moe/data/general_knowledge.jsonl``, one ``{"question", "answers", "topic"}`` object a line.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources

from ..errors import AdaptiveMoEError, InvalidInputError

__all__ = ["GENERAL_TOPICS", "general_knowledge_items", "general_knowledge_questions"]

GENERAL_TOPICS: tuple[str, ...] = ("geography", "science", "history", "arithmetic", "language", "everyday")
_RESOURCE = "data/general_knowledge.jsonl"


@functools.lru_cache(maxsize=1)
def _load() -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """(question, answers, topic) per line, checked once; immutable so the cache cannot be altered."""
    text = resources.files("adaptive_moe").joinpath(_RESOURCE).read_text(encoding="utf-8")
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"adaptive_moe/{_RESOURCE}:{lineno}"
        try:
            obj = json.loads(line)
            question, answers, topic = obj["question"], obj["answers"], obj["topic"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise AdaptiveMoEError(f"{where}: not a {{question, answers, topic}} object ({exc})") from exc
        if not (isinstance(question, str) and question.strip()):
            raise AdaptiveMoEError(f"{where}: question must be a non-empty string")
        if not (isinstance(answers, list) and answers and all(isinstance(a, str) and a.strip() for a in answers)):
            raise AdaptiveMoEError(f"{where}: answers must be a non-empty list of non-empty strings")
        if topic not in GENERAL_TOPICS:
            raise AdaptiveMoEError(f"{where}: topic {topic!r} is not one of {GENERAL_TOPICS}")
        rows.append((question, tuple(answers), topic))
    return tuple(rows)


def _select(topics: Sequence[str] | str | None) -> frozenset[str]:
    if topics is None:
        return frozenset(GENERAL_TOPICS)
    if isinstance(topics, str):  # one topic by name
        topics = [topics]
    topics = list(topics)
    if not topics:
        raise InvalidInputError(f"topics is empty; pass None for all, or some of {list(GENERAL_TOPICS)}")
    unknown = [t for t in topics if t not in GENERAL_TOPICS]
    if unknown:
        raise InvalidInputError(f"unknown topic(s) {unknown}; topics are {list(GENERAL_TOPICS)}")
    return frozenset(topics)


def general_knowledge_questions(topics: Sequence[str] | str | None = None) -> list[tuple[str, list[str]]]:
    """``(question, [gold answer, alias, ...])`` pairs, in file order, optionally only from ``topics``.

    ``topics`` is ``None`` (all of :data:`GENERAL_TOPICS`), one topic name, or a list of them; an unknown
    or empty selection raises :class:`InvalidInputError`. Each call returns fresh lists.
    """
    wanted = _select(topics)
    return [(q, list(answers)) for q, answers, topic in _load() if topic in wanted]


def general_knowledge_items() -> list[dict]:
    """Every item as ``{"question": str, "answers": list[str], "topic": str}``, in file order."""
    return [{"question": q, "answers": list(answers), "topic": topic} for q, answers, topic in _load()]
