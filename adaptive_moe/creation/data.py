"""Training data for a LoRA expert, built from the user's documents.

A 135M base learns facts from LoRA training best from many short question-answer pairs in varied wordings,
with the loss on a short answer: in the measurement behind this module, three question phrasings per fact
took held-out, differently worded questions from 0% to 83%, while long prose profiles lowered it. So
:func:`build_training_data` turns documents into

* question-answer pairs, several wordings per fact, each paired with the fact's short value ("1794",
  "Maren Tolliver", "Velmora"), from the rules in :mod:`adaptive_moe.creation.qa_rules` (which work without
  any model), plus the user's own questions and, optionally, questions the base model writes;
* a few short restatements per fact and the document's sentences one by one (pronouns resolved), as
  documents with the loss on every token;
* a held-out split *by wording*: for a fraction of the facts one wording is held out for evaluation while
  the fact's other wordings stay in training, so evaluation measures recall under rewording, not facts
  never trained on.

Documents are file paths (``.txt``, ``.md``, ``.jsonl`` with a ``"text"`` field per line), folders of such
files, raw strings or a ``datasets.Dataset`` with a ``"text"`` column. Markdown is reduced to its prose.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..documents import Source, load_documents, markdown_to_text, split_passages, split_sentences
from ..errors import InvalidInputError
from ..evaluation.scoring import normalize_answer
from .qa_rules import MAX_ANSWER_WORDS, Fact, extract_facts

__all__ = ["Fact", "TrainingData", "build_training_data"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class TrainingData:
    """The training set built from documents, with its held-out questions and provenance.

    ``train``: items :func:`~adaptive_moe.creation.train_lora` accepts, question-answer tuples
    ``(question, answer)`` first, then documents (strings). ``heldout``: ``(question, [answers])`` pairs
    for evaluation, each asking a trained fact in a wording kept out of training. ``facts``: every fact
    found, with its wordings. ``stats``: counts (documents, sentences, facts, qa_train, qa_heldout,
    restatements, duplicates_removed, sentences_without_facts, ...). ``sha256``: over the sources' text and
    the settings.
    """

    train: list[Any]
    heldout: list[tuple[str, list[str]]]
    facts: list[Fact]
    sources: list[Source]
    stats: dict[str, int]
    sha256: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def qa_pairs(self) -> list[tuple[str, str]]:
        """The question-answer items of :attr:`train`."""
        return [item for item in self.train if isinstance(item, tuple)]

    @property
    def documents(self) -> list[str]:
        """The document items of :attr:`train` (restatements and sentences)."""
        return [item for item in self.train if isinstance(item, str)]

    def to_dataset(self):
        """A ``datasets.Dataset`` with columns ``kind`` ("qa", "document" or "heldout"), ``prompt`` (the
        question; empty for documents), ``text`` (the answer, or the document) and ``answers``: for saving and
        inspecting. It holds the held-out rows too; train on :attr:`train`, not on this."""
        from datasets import Dataset

        rows = [
            {"kind": "qa", "prompt": item[0], "text": item[1], "answers": [item[1]]}
            if isinstance(item, tuple)
            else {"kind": "document", "prompt": "", "text": item, "answers": []}
            for item in self.train
        ]
        rows += [{"kind": "heldout", "prompt": q, "text": a[0], "answers": list(a)} for q, a in self.heldout]
        return Dataset.from_list(rows)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (the pipeline saves it next to the adapter)."""
        return {
            "format_version": FORMAT_VERSION,
            "sha256": self.sha256,
            "settings": dict(self.settings),
            "stats": dict(self.stats),
            "sources": [asdict(s) for s in self.sources],
            "train": [list(item) if isinstance(item, tuple) else item for item in self.train],
            "heldout": [[q, list(a)] for q, a in self.heldout],
            "facts": [f.to_dict() for f in self.facts],
        }

    def summary(self) -> str:
        """One line of counts for logs and the CLI."""
        s = self.stats
        return (
            f"{s['documents']} documents, {s['sentences']} sentences -> {s['facts']} facts; "
            f"{s['qa_train']} training questions, {s['qa_heldout']} held out, {s['restatements']} restatements, "
            f"{s['sentence_documents']} sentences as documents; {s['duplicates_removed']} duplicate questions "
            f"removed, {s['sentences_without_facts']} sentences without a fact (sha256 {self.sha256[:12]})"
        )


# -- the builder ----------------------------------------------------------------------------------
def build_training_data(
    documents: Any,
    *,
    questions: Any = None,
    heldout_questions: Any = None,
    base: Any = None,
    model_questions: bool = False,
    restatements: int = 3,
    heldout_fraction: float = 0.2,
    seed: int = 0,
    min_facts: int = 1,
    max_new_tokens: int = 48,
) -> TrainingData:
    """Build an expert's training set from documents.

    Args:
        documents: file paths (``.txt``, ``.md``, ``.jsonl`` with a ``"text"`` field per line), folders (their
            files, sorted), raw strings or a ``datasets.Dataset`` with a ``"text"`` column.
        questions: the user's own question-answer pairs, used for training as given: ``(question, answer)``,
            ``(question, [answers])``, ``{"question": ..., "answer"/"answers": ...}`` or QA objects.
        heldout_questions: the user's pairs for evaluation only (never trained on), in the same shapes.
        base: a ``BaseModel`` (anything with ``generate_with_signals(prompts, max_new_tokens=...)``), used
            only when ``model_questions`` is true.
        model_questions: also ask ``base`` to write a question about each passage for a candidate answer,
            keeping only well-formed questions that do not contain the answer and whose answer appears in the
            passage.
        restatements: declarative restatements per fact added as documents (0 for none).
        heldout_fraction: share of the generated questions held out for evaluation, one wording per chosen
            fact; the fact's other wordings stay in training. In [0, 1).
        seed: makes the held-out split reproducible.
        min_facts: fewer facts (plus user questions) than this is an error (0: none needed, as for an expert
            that reads its passages with a shared reader).
        max_new_tokens: length limit of a model-written question.

    Returns:
        :class:`TrainingData`. ``train`` goes to :func:`~adaptive_moe.creation.train_lora` as it is,
        ``heldout`` to :func:`~adaptive_moe.creation.evaluate_qa`.

    Raises:
        InvalidInputError: empty, binary or non-UTF-8 documents, unknown extensions, bad settings or
            questions, or documents too short to yield ``min_facts`` facts.
        ModelNotFoundError: a document path that does not exist.
    """
    if not isinstance(restatements, int) or isinstance(restatements, bool) or restatements < 0:
        raise InvalidInputError(f"restatements must be an integer >= 0, got {restatements!r}")
    if not isinstance(heldout_fraction, (int, float)) or not 0 <= heldout_fraction < 1:
        raise InvalidInputError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    if not isinstance(min_facts, int) or min_facts < 0:
        raise InvalidInputError(f"min_facts must be an integer >= 0, got {min_facts!r}")
    if model_questions and base is None:
        raise InvalidInputError("model_questions=True needs base= (a model with generate_with_signals)")
    docs = load_documents(documents)
    user_train = _qa_list(questions, "questions")
    user_heldout = _qa_list(heldout_questions, "heldout_questions")

    facts: list[Fact] = []
    sentence_texts: list[str] = []
    passages: list[tuple[str, list[str]]] = []
    stats = dict.fromkeys(("sentences", "sentences_without_facts", "model_questions", "model_questions_rejected"), 0)
    for source, text, is_markdown in docs:
        doc_passages = split_passages(markdown_to_text(text) if is_markdown else text)
        passages += [(source.name, p) for p in doc_passages]
        for found in extract_facts(doc_passages, source.name):
            stats["sentences"] += 1
            stats["sentences_without_facts"] += not found.facts
            sentence_texts.append(found.resolved)
            facts += found.facts
    if model_questions:
        written, rejected = _model_written_facts(base, passages, facts, max_new_tokens)
        facts += written
        stats["model_questions"], stats["model_questions_rejected"] = len(written), rejected

    facts, duplicates = _deduplicate(facts, [q for q, _ in user_train + user_heldout])
    if len(facts) + len(user_train) < min_facts:
        raise InvalidInputError(
            f"documents too short to yield a question: found {len(facts)} facts (and {len(user_train)} given "
            f"questions) in {stats['sentences']} sentences of {len(docs)} documents; min_facts={min_facts}. "
            "Give longer documents with declarative sentences, or pass questions="
        )
    train_qa, heldout = _split_by_wording(facts, heldout_fraction, seed)
    train_qa += [(q, answers[0]) for q, answers in user_train]
    heldout += [(q, list(answers)) for q, answers in user_heldout]

    documents_out: list[str] = []
    seen: set[str] = set()
    for fact in facts:
        for statement in fact.statements[:restatements]:
            if statement not in seen:
                seen.add(statement)
                documents_out.append(statement)
    n_restatements = len(documents_out)
    for sentence in sentence_texts:  # every sentence once, also those no rule matched
        if sentence not in seen:
            seen.add(sentence)
            documents_out.append(sentence)

    settings = {
        "restatements": restatements,
        "heldout_fraction": heldout_fraction,
        "seed": seed,
        "min_facts": min_facts,
        "model_questions": bool(model_questions),
        "base": getattr(base, "fingerprint", None) if model_questions else None,
        "max_answer_words": MAX_ANSWER_WORDS,
    }
    stats.update(
        documents=len(docs),
        passages=len(passages),
        facts=len(facts),
        qa_train=len(train_qa),
        qa_heldout=len(heldout),
        restatements=n_restatements,
        sentence_documents=len(documents_out) - n_restatements,
        duplicates_removed=duplicates,
        user_questions=len(user_train),
        user_heldout_questions=len(user_heldout),
    )
    digest = hashlib.sha256(
        json.dumps(
            {"version": FORMAT_VERSION, "settings": settings, "sources": [s.sha256 for s, _, _ in docs],
             "questions": user_train, "heldout_questions": user_heldout},
            sort_keys=True, default=str,
        ).encode()
    ).hexdigest()  # fmt: skip
    data = TrainingData(
        train=[*train_qa, *documents_out],
        heldout=heldout,
        facts=facts,
        sources=[s for s, _, _ in docs],
        stats=stats,
        sha256=digest,
        settings=settings,
    )
    logger.info("training data: %s", data.summary())
    return data


def _qa_list(items: Any, what: str) -> list[tuple[str, list[str]]]:
    """The user's question-answer pairs as ``(question, [answers])``."""
    if items is None:
        return []
    if isinstance(items, (str, bytes)):
        raise InvalidInputError(f"{what} must be a list of (question, answer) pairs, not a string")
    if isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], str):
        items = [items]  # one pair given on its own
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            q = item.get("question")
            a = item.get("answers", item.get("answer"))
        elif hasattr(item, "question") and hasattr(item, "answers"):
            q, a = item.question, item.answers
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            q, a = item
        else:
            raise InvalidInputError(
                f"{what}[{i}] has type {type(item).__name__}; give (question, answer), (question, [answers]) "
                "or {'question': ..., 'answer': ...}"
            )
        answers = [a] if isinstance(a, str) else list(a) if isinstance(a, (list, tuple)) else []
        if not isinstance(q, str) or not q.strip():
            raise InvalidInputError(f"{what}[{i}]: the question must be non-empty text")
        if not answers or not all(isinstance(x, str) and x.strip() for x in answers):
            raise InvalidInputError(f"{what}[{i}]: the answer must be non-empty text (or a list of texts)")
        out.append((q.strip(), [x.strip() for x in answers]))
    return out


def _question_key(question: str) -> str:
    return normalize_answer(question)


def _deduplicate(facts: list[Fact], user_questions: Sequence[str]) -> tuple[list[Fact], int]:
    """Each normalised question once over all facts (the first fact keeps it); a user's question wins."""
    taken = {_question_key(q) for q in user_questions}
    out, removed = [], 0
    for fact in facts:
        kept = []
        for q in fact.questions:
            key = _question_key(q)
            if key in taken:
                removed += 1
                continue
            taken.add(key)
            kept.append(q)
        if kept:
            out.append(replace(fact, questions=tuple(kept)))
    return out, removed


def _similarity(a: str, b: str) -> float:
    wa, wb = set(normalize_answer(a).split()), set(normalize_answer(b).split())
    return len(wa & wb) / max(len(wa | wb), 1)


def _split_by_wording(
    facts: list[Fact], fraction: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, list[str]]]]:
    """Hold out one wording of a ``fraction`` share of the questions' facts (only facts with two wordings
    or more, so each keeps at least one in training). The wording held out is the one least like the
    fact's others, so evaluation asks in words the expert has not trained on."""
    rng = random.Random(seed)
    eligible = [i for i, f in enumerate(facts) if len(f.questions) >= 2]
    total = sum(len(f.questions) for f in facts)
    chosen = set(rng.sample(eligible, min(len(eligible), round(fraction * total))))
    train, heldout = [], []
    for i, fact in enumerate(facts):
        held = None
        if i in chosen:
            qs = fact.questions
            closeness = [max(_similarity(q, o) for k, o in enumerate(qs) if k != j) for j, q in enumerate(qs)]
            best = min(closeness)
            held = rng.choice([j for j, c in enumerate(closeness) if c == best])
        for j, q in enumerate(fact.questions):
            if j == held:
                heldout.append((q, fact.answers))
            else:
                train.append((q, fact.answer))
    return train, heldout


# -- questions the base model writes ------------------------------------------------------------
_WH = re.compile(r"\b(?:what|who|whom|whose|when|where|which|how)\b", re.I)
_PRONOUN = re.compile(r"\b(?:it|its|he|she|his|her|him|they|their|them|this|these|those)\b", re.I)
_SPAN = re.compile(
    r"\b(?:\d{1,2} (?:January|February|March|April|May|June|July|August|September|October|November|December) )?"
    r"\d[\d,.]*\b|\b(?!(?:The|A|An|In|On|At|By)\b)[A-Z][a-z]+(?: (?:of |de |van )?[A-Z][a-z]+)+\b"
)


def _model_written_facts(
    base: Any, passages: list[tuple[str, list[str]]], facts: list[Fact], max_new_tokens: int, per_passage: int = 4
) -> tuple[list[Fact], int]:
    """Questions the base writes for candidate answers in each passage, kept when well formed, free of the
    answer and answerable from the passage (the answer span appears in it)."""
    by_sentence: dict[str, list[str]] = {}
    for f in facts:
        by_sentence.setdefault(f.sentence, []).append(f.answer)
    prompts, meta = [], []
    for name, sentences in passages:
        for start in range(0, len(sentences), 6):  # passages of up to six sentences fit a small model's attention
            chunk = " ".join(sentences[start : start + 6])
            candidates: list[str] = []
            for s in sentences[start : start + 6]:
                candidates += by_sentence.get(s, [])
            candidates += [m.group() for m in _SPAN.finditer(chunk)]
            unique = list(dict.fromkeys(c for c in candidates if len(c.split()) <= MAX_ANSWER_WORDS))
            for answer in unique[:per_passage]:
                content = (
                    f'Text: {chunk}\n\nWrite one question about this text whose answer is "{answer}". '
                    "Name everything in full, so the question makes sense on its own. Reply with the question only."
                )
                prompts.append([{"role": "user", "content": content}])
                meta.append((name, chunk, answer))
    if not prompts:
        return [], 0
    outputs = list(base.generate_with_signals(prompts, max_new_tokens=max_new_tokens))
    if len(outputs) != len(prompts):
        raise InvalidInputError(f"the base returned {len(outputs)} generations for {len(prompts)} prompts")
    written, rejected = [], 0
    for (name, chunk, answer), out in zip(meta, outputs, strict=True):
        question = _clean_question(getattr(out, "text", ""))
        if question is None or _mentions(question, answer) or not _mentions(chunk, answer):
            rejected += 1
            continue
        sentence = next((s for s in split_sentences(chunk) if _mentions(s, answer)), chunk)
        fact = Fact("", "model question", answer, (), sentence, name, (question,), ())
        written.append(fact)
    return written, rejected


def _clean_question(text: str) -> str | None:
    """The first question in a model's reply, or None when the reply is not a self-contained wh-question."""
    text = text.strip().split("\n", 1)[0].strip().strip("\"'“”")
    text = re.sub(r"^(?:question|q)\s*[:.-]\s*", "", text, flags=re.I).strip()
    if "?" not in text:
        return None
    text = text[: text.index("?") + 1].strip()
    words = text.split()
    if not 4 <= len(words) <= 30 or not _WH.search(" ".join(words[:3])) or _PRONOUN.search(text):
        return None
    return text[:1].upper() + text[1:]


def _mentions(text: str, answer: str) -> bool:
    a = normalize_answer(answer)
    return bool(a) and f" {a} " in f" {normalize_answer(text)} "
