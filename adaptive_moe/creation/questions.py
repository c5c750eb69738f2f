"""Questions written by a generator model (``creation.question_model``, off by default).

For each passage of an expert's documents the generator is asked for one question a reader could answer
from that passage alone, and the answer in a few words. A pair is kept only when it can check the expert
honestly: the answer is in the passage (word for word, up to case and spacing), it is not in the question,
the question asks something (ends with "?", has at least four words) and the answer is short (at most
eight words). Kept pairs check the expert before admission (with the rule-made questions) and teach the
router's matcher the expert's domain; a ``reader: document`` expert also trains on them.

The generator is the expert's own base (``question_model: base``) or another local model
(``question_model: <folder or model id>``, loaded like a base: safetensors only, ``trust_remote_code`` off).
The embedded 135M base writes none that pass (0 of 26 passages of three development documents: it answers
instead of asking); it is meant for a larger instruct model, on a GPU.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..config import GenerationConfig
from ..evaluation.scoring import ContainsScorer

logger = logging.getLogger(__name__)

__all__ = ["PROMPT", "generated_questions", "keep_question", "parse_question", "question_generator"]

PROMPT = (
    "Write one question that a reader could answer from this passage alone, then its answer: a few words "
    "copied from the passage.\n\nPassage: {passage}\n\nReply in exactly two lines:\nQuestion: <the question>\n"
    "Answer: <the answer>"
)
MAX_ANSWER_WORDS = 8
MIN_QUESTION_WORDS = 4
# "Question: ...", "**Question:** ..." or "**Question**: ..."
_LABEL = r"^\s*(?:\*\*)?{}(?:\s*:\s*\*\*|\*\*\s*:|\s*:)\s*(?P<text>.+?)\s*$"
_QUESTION = re.compile(_LABEL.format("question"), re.IGNORECASE | re.MULTILINE)
_ANSWER = re.compile(_LABEL.format("answer"), re.IGNORECASE | re.MULTILINE)


def parse_question(text: str) -> tuple[str, str] | None:
    """The ``(question, answer)`` of a generator's reply (``Question: ...`` and ``Answer: ...`` lines), or
    None when either line is missing."""
    q, a = _QUESTION.search(text or ""), _ANSWER.search(text or "")
    if not q or not a:
        return None
    return q["text"].strip(), a["text"].strip().rstrip(".").strip()


def keep_question(question: str, answer: str, passage: str) -> bool:
    """Whether a generated pair can check an expert: the answer is in the passage and not in the question
    (as whole words, after :func:`~adaptive_moe.evaluation.scoring.normalize_answer`: the ``contains``
    scorer), the question ends with "?" and has at least four words, the answer at most eight."""
    if not question.rstrip().endswith("?") or len(question.split()) < MIN_QUESTION_WORDS:
        return False
    if len(answer.split()) > MAX_ANSWER_WORDS:
        return False
    contains = ContainsScorer()
    return contains.match(passage, answer) and not contains.match(question, answer)


def generated_questions(generator: Any, passages: list[Any], *, max_new_tokens: int = 48,
                        batch_size: int = 8) -> list[tuple[str, list[str]]]:  # fmt: skip
    """One generated ``(question, [answer])`` per passage that :func:`keep_question` keeps (greedy, so the
    same documents give the same questions). ``passages`` are :class:`~adaptive_moe.documents.Passage`
    objects (their title and section are shown with the text) or strings."""
    texts = [getattr(p, "text", p) for p in passages]
    if not texts:
        return []
    prompts = [PROMPT.format(passage=t) for t in texts]
    gen = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    with generator.lock:
        replies = generator.generate_with_signals(prompts, gen)
    out, seen = [], set()
    for text, reply in zip(texts, replies, strict=True):
        pair = parse_question(reply.text)
        if pair is None or not keep_question(*pair, text) or pair[0] in seen:
            continue
        seen.add(pair[0])
        out.append((pair[0], [pair[1]]))
    logger.info("question generator: %d of %d passages gave a question kept", len(out), len(texts))
    return out


def question_generator(moe: Any, name: str) -> Any:
    """The generator ``creation.question_model`` names: ``base`` is ``moe``'s own base; anything else is
    loaded like a base (the model section's device and precision, safetensors only, no remote code)."""
    if name == "base":
        return moe.base
    from ..model.loading import load_base_model

    model = moe.config.model
    return load_base_model(model.replace(name_or_path=name, revision=None))
