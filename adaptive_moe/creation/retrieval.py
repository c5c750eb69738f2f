"""Training data for a retrieval expert (``creation.method: retrieval``), in the manner of RAFT: each
question-answer pair is shown with the passages the expert's index returns for the question (the
passage that holds the answer when retrieval finds it, and the distractors it finds with it), so the
LoRA learns to answer from what it reads at answer time, in the very prompt format it will see."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..documents import Passage, load_passages
from ..experts.retrieval import PassageIndex, context_prompt


def build_index(documents: Any, embedder: Any) -> PassageIndex:
    """The passages of ``documents`` embedded with ``embedder``."""
    return PassageIndex.build(load_passages(documents), embedder)


def reading_examples(qa_pairs: list[tuple[str, str]], index: PassageIndex, embedder: Any, top_k: int,
                     lexical_weight: float = 0.0) -> list[tuple[str, str]]:  # fmt: skip
    """``(passages + question, answer)`` pairs: each question with its ``top_k`` retrieved passages
    (:meth:`PassageIndex.search` with ``lexical_weight``, as the expert will retrieve)."""
    if not qa_pairs:
        return []
    questions = [q for q, _ in qa_pairs]
    hits = index.search(np.asarray(embedder.encode(questions)), top_k, questions, lexical_weight)
    return [(context_prompt(q, [index.passages[i].text for i, _ in row]), a)
            for (q, a), row in zip(qa_pairs, hits, strict=True)]  # fmt: skip


_KEY_VALUE = re.compile(r"^(?P<key>[^:.;!?]{2,40}):\s+(?P<value>[^:]{1,120})$")


def key_value_questions(passages: list[Passage]) -> list[tuple[str, list[str]]]:
    """A check question for every ``label: value`` line of a table or list (a spec sheet's rows, a
    card's fields), about the document's subject, with the value's first clause as the answer; a line
    whose label runs past four words is prose and is skipped."""
    out = []
    for p in passages:
        m = _KEY_VALUE.match(p.body.strip())
        if not m or len(m["key"].split()) > 4:
            continue
        value = re.split(r",\s|;|\(", m["value"].strip().rstrip("."), maxsplit=1)[0].strip()
        subject = re.split(r"[:\u2014]", p.context or p.source, maxsplit=1)[0].strip()
        if value and subject:
            out.append((f"What is the {m['key'].strip().lower()} of the {subject}?", [value]))
    return out
