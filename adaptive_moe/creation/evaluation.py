"""Answer accuracy of the base (optionally with an adapter forced on) on question sets, and paired
before/after comparisons. The admission gate for new experts builds on these."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import GenerationConfig
from ..errors import InvalidInputError
from ..model.adapters import attached_adapter
from .scoring import get_scorer


@dataclass
class QAEvaluation:
    """Per-question results of one evaluation run (the order of the questions given)."""

    questions: list[str]
    predictions: list[str]
    correct: list[bool]
    confidences: list[float] = field(default_factory=list)  # exp(mean token log-prob), uncalibrated

    @property
    def n(self) -> int:
        return len(self.correct)

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "n": self.n, "questions": self.questions,
                "predictions": self.predictions, "correct": self.correct, "confidences": self.confidences}  # fmt: skip


def _split_qa(qa: Sequence[Any]) -> tuple[list[str], list[list[str]]]:
    if not qa:
        raise InvalidInputError("no questions to evaluate")
    questions, golds = [], []
    for i, item in enumerate(qa):
        question, answers = (item.question, item.answers) if hasattr(item, "answers") else (item[0], item[1])
        answers = [answers] if isinstance(answers, str) else list(answers)
        if not isinstance(question, str) or not question.strip() or not answers:
            raise InvalidInputError(f"question {i} needs non-empty text and at least one gold answer")
        questions.append(question)
        golds.append(answers)
    return questions, golds


def evaluate_qa(
    base,
    qa: Sequence[Any],
    *,
    adapter: str | Path | None = None,
    scorer: str = "contains",
    max_new_tokens: int = 32,
    batch_size: int = 16,
    generation: GenerationConfig | None = None,
) -> QAEvaluation:
    """Greedy answers to ``qa`` (``(question, golds)`` pairs or QA objects), scored against the golds.

    With ``adapter`` (a PEFT adapter folder) the adapter is forced on for every question and the base
    is restored afterwards.
    """
    questions, golds = _split_qa(qa)
    judge = get_scorer(scorer)
    gen = generation or GenerationConfig()
    gen = gen.replace(max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=False)
    if adapter is not None:
        with attached_adapter(base, adapter):
            signals = base.generate_with_signals(questions, gen)
    else:
        signals = base.generate_with_signals(questions, gen)
    predictions = [s.text for s in signals]
    correct = [judge.score(p, g) for p, g in zip(predictions, golds, strict=True)]
    conf = [math.exp(float(s.token_logprobs.mean())) if s.num_tokens else 0.0 for s in signals]
    return QAEvaluation(questions, predictions, correct, conf)


def paired_comparison(before: QAEvaluation, after: QAEvaluation) -> dict[str, float | int]:
    """Accuracy before and after on the same questions, answers that flipped each way, and the exact
    two-sided McNemar p-value of the flips."""
    if before.questions != after.questions:
        raise InvalidInputError("a paired comparison needs the same questions in the same order")
    to_right = sum(1 for b, a in zip(before.correct, after.correct, strict=True) if not b and a)
    to_wrong = sum(1 for b, a in zip(before.correct, after.correct, strict=True) if b and not a)
    flips = to_right + to_wrong
    tail = sum(math.comb(flips, k) for k in range(min(to_right, to_wrong) + 1)) / 2**flips if flips else 1.0
    return {
        "n": before.n,
        "accuracy_before": before.accuracy,
        "accuracy_after": after.accuracy,
        "delta": after.accuracy - before.accuracy,
        "flipped_to_right": to_right,
        "flipped_to_wrong": to_wrong,
        "mcnemar_p": min(1.0, 2 * tail),
    }
