"""Training data for an expert that learns its documents by heart without parsing them
(``creation.method: augment``).

The knowledge-injection recipe (facts become answerable by questions when the model has seen them stated
several ways and asked for them piece by piece), with no parser and no model, only the tokens and closed word
classes of :mod:`adaptive_moe.creation.qa_words`:

- **the documents themselves**: every passage as written (with its title and heading), ``restatements``
  permutations of its sentences, and each sentence on its own under the passage's title;
- **cloze items**: for every span of a sentence that is a name (a run of capitalised words), a number (with
  a year told apart) or a noun phrase (the content words after a determiner, "the *first storm lantern*"),
  the sentence with that span blanked out, answered by the span;
- **questions in place**: the same sentence with the span replaced by a question word ("which year", "how
  many metres", "what") and a question mark ("It was founded in which year?"). A ``heldout_fraction`` of
  these are kept out of training to check the expert before admission; their cloze items stay in.

What it cannot do: resolve "it" or "she" (a question in place keeps the pronoun), or ask in words unlike the
document's. That is what the reader questions of the benchmark measure (``benchmarks/bench_documents.py
--approach augment``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from ..documents import load_documents, load_passages, split_sentences
from ..errors import InvalidInputError
from .qa_words import (
    _BE,
    _CONJUNCTIONS,
    _DETERMINERS,
    _HAVE,
    _MODALS,
    _NEGATIONS,
    _PRONOUNS,
    _RELATIVES,
    _SUBORDINATORS,
    _cap,
    _is_number,
    _verbish,
    join_tokens,
    tokenize,
)

__all__ = ["BLANK", "Span", "augmented_training_data", "sentence_spans"]

BLANK = "___"
#: the longest span blanked out, in tokens: longer runs are clauses, not names or phrases
MAX_SPAN_TOKENS = 6
_FUNCTION = _DETERMINERS | _CONJUNCTIONS | _PRONOUNS | _RELATIVES | _NEGATIONS | _SUBORDINATORS | _MODALS
_FUNCTION |= frozenset(_BE) | frozenset(_HAVE) | {"been", "being", "be", "do", "does", "did", "not", "than", "i"}
_NAME_JOINERS = frozenset({"of", "&", "de", "van", "von", "la", "le", "du", "and"})
_WORD = re.compile(r"[a-z][a-z'-]*")


@dataclass(frozen=True)
class Span:
    """A stretch of a sentence's tokens that can be asked about: ``tokens[start:end]``.

    ``kind``: ``"name"``, ``"year"``, ``"number"`` or ``"phrase"``; ``determiner``: the token before a phrase
    or a name that goes with it when it is asked about ("the" in "the first storm lantern"), or -1.
    """

    start: int
    end: int
    kind: str
    determiner: int = -1


def sentence_spans(tokens: list[str]) -> list[Span]:
    """The names, numbers and noun phrases of a tokenised sentence, left to right, none overlapping."""
    spans: list[Span] = []
    taken: set[int] = set()

    def add(span: Span) -> None:
        if span.end - span.start <= MAX_SPAN_TOKENS and not taken & set(range(span.start, span.end)):
            spans.append(span)
            taken.update(range(span.start, span.end))

    for i, tok in enumerate(tokens):  # numbers first: "1794", "4,200", "twelve"
        if _is_number(tok):
            year = re.fullmatch(r"1\d{3}|20\d{2}", tok) is not None and (i == 0 or tokens[i - 1].lower() != "the")
            add(Span(i, i + 1, "year" if year else "number"))
    i = 0
    while i < len(tokens):  # names: capitalised runs, joined by "of", "&", ...; not a sentence's first word alone
        if _cap(tokens[i]) and tokens[i].lower() not in _FUNCTION and i not in taken:
            j = i + 1
            while j < len(tokens) and (
                (_cap(tokens[j]) and j not in taken)
                or (tokens[j] in _NAME_JOINERS and j + 1 < len(tokens) and _cap(tokens[j + 1]))
            ):
                j += 1
            if j - i > 1 or i > 0:  # "the Kessel Gorge": the article goes with the name when it is asked about
                article = i - 1 if i > 0 and tokens[i - 1].lower() in ("the", "a", "an") else -1
                add(Span(i, j, "name", determiner=article))
            i = j
        else:
            i += 1
    for i, tok in enumerate(tokens):  # noun phrases: the content words after a determiner or a number
        if (tok.lower() in _DETERMINERS or (i in taken and _is_number(tok))) and i + 1 < len(tokens):
            j = i + 1
            while j < len(tokens) and _content(tokens[j]) and j not in taken:
                if j > i + 1 and _verbish(tokens[j]):
                    break  # a verb after the noun ends the phrase: "the lake | formed at ..."
                j += 1
            if j > i + 1 and not _is_number(tok):
                add(Span(i + 1, j, "phrase", determiner=i))
    return sorted(spans, key=lambda s: s.start)


def _content(tok: str) -> bool:
    return _WORD.fullmatch(tok) is not None and tok not in _FUNCTION


def cloze(tokens: list[str], span: Span) -> str:
    """The sentence with ``span`` blanked out."""
    return join_tokens([*tokens[: span.start], BLANK, *tokens[span.end :]])


def question_in_place(tokens: list[str], span: Span) -> str:
    """The sentence asking for ``span`` where it stands: "It was founded in which year?", "The lighthouse is
    how many metres tall?", "What designed the first storm lantern?"."""
    start, end = span.start, span.end
    if span.kind == "year":
        wh = ["which", "year"]
    elif span.kind == "number":
        wh = ["how", "many"]
        if end < len(tokens) and _content(tokens[end]):  # "38 metres": "how many metres"
            wh.append(tokens[end])
            end += 1
    else:
        wh = ["what"]
        if span.determiner >= 0:
            start = span.determiner
    body = [*tokens[:start], *wh, *tokens[end:]]
    while body and body[-1] in (".", "!", ";", ":", ","):
        body.pop()
    text = join_tokens(body) + "?"
    return text[:1].upper() + text[1:]


def augmented_training_data(documents: Any, *, questions: Any = None, heldout_questions: Any = None,
                            restatements: int = 3, heldout_fraction: float = 0.2, seed: int = 0):  # fmt: skip
    """An expert's training set from ``documents`` by augmentation alone (see the module's docstring): a
    :class:`~adaptive_moe.creation.data.TrainingData` whose ``train`` holds the cloze items and questions in
    place (``(prompt, answer)``), then the passages, their permutations and their sentences (texts), and whose
    ``heldout`` holds the questions in place kept out. The user's own pairs are added as given.

    Raises:
        InvalidInputError: bad settings, or documents in which nothing can be asked.
    """
    from .data import TrainingData, _qa_list

    if not isinstance(restatements, int) or restatements < 0:
        raise InvalidInputError(f"restatements must be an integer >= 0, got {restatements!r}")
    if not 0 < heldout_fraction < 1:
        raise InvalidInputError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
    sources = [source for source, _, _ in load_documents(documents)]
    passages = load_passages(documents)
    user_train, user_heldout = _qa_list(questions, "questions"), _qa_list(heldout_questions, "heldout_questions")
    rng = random.Random(seed)
    qa: list[tuple[str, str]] = []
    heldout: list[tuple[str, list[str]]] = []
    texts: list[str] = []
    seen: set[str] = set()
    spans_found = 0

    def keep(text: str) -> None:
        if text not in seen:
            seen.add(text)
            texts.append(text)

    for passage in passages:
        title = passage.context or passage.source
        sentences = split_sentences(passage.body)
        keep(passage.text)
        for _ in range(restatements if len(sentences) > 1 else 0):
            order = sentences[:]
            rng.shuffle(order)
            keep(f"{title}\n{' '.join(order)}")
        for sentence in sentences:
            keep(f"{title}: {sentence}")
            tokens = tokenize(sentence)
            for span in sentence_spans(tokens):
                answer = join_tokens(tokens[span.start : span.end])
                spans_found += 1
                qa.append((f"Fill in the blank ({title}): {cloze(tokens, span)}", answer))
                asked = question_in_place(tokens, span)
                if rng.random() < heldout_fraction:
                    heldout.append((asked, [answer]))
                else:
                    qa.append((asked, answer))
    if not spans_found and not user_train:
        raise InvalidInputError(
            f"no name, number or noun phrase to ask about in {len(passages)} passages of {len(sources)} documents; "
            "give documents with sentences of prose, or pass questions="
        )
    if not heldout and not user_heldout and qa:  # a short document: hold out one question in place at least
        i = next((k for k in range(len(qa) - 1, -1, -1) if not qa[k][0].startswith("Fill in the blank")), None)
        if i is not None:
            q, a = qa.pop(i)
            heldout.append((q, [a]))
    qa += [(q, answers[0]) for q, answers in user_train]
    heldout += [(q, list(answers)) for q, answers in user_heldout]
    settings = {"method": "augment", "restatements": restatements, "heldout_fraction": heldout_fraction,
                "seed": seed}  # fmt: skip
    key = {"settings": settings, "sources": [s.sha256 for s in sources], "questions": user_train,
           "heldout_questions": user_heldout}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    stats = {"documents": len(sources), "passages": len(passages), "spans": spans_found, "qa_train": len(qa),
             "qa_heldout": len(heldout), "texts": len(texts), "facts": 0, "user_questions": len(user_train),
             "user_heldout_questions": len(user_heldout)}  # fmt: skip
    return TrainingData(train=[*qa, *texts], heldout=heldout, facts=[], sources=sources, stats=stats, sha256=digest,
                        settings=settings)  # fmt: skip
