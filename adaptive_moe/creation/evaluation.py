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
from ..evaluation.scoring import get_scorer
from ..model.adapters import attached_adapter


@dataclass
class QAEvaluation:
    """Per-question results of one evaluation run (the order of the questions given)."""

    questions: list[str]
    predictions: list[str]
    correct: list[bool]
    confidences: list[float] = field(default_factory=list)  # exp(mean token log-prob), uncalibrated

    @property
    def n(self) -> int:
        """Number of questions."""
        return len(self.correct)

    @property
    def accuracy(self) -> float:
        """Share of questions answered right (0.0 for none)."""
        return sum(self.correct) / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
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


# -- admission of a new expert --------------------------------------------------------------------
SMALL_CALIBRATION_SET = 100  # fewer held-out answers than this: Platt scaling, else isotonic
# A calibrator fitted on fewer wrong (or right) answers than this cannot tell what a wrong answer looks
# like: on the demo's 25 held-out questions (3 wrong) it sent two right answers under the floor and
# kept both wrong ones above it. The expert then has no calibrator (uncalibrated confidence).
MIN_CLASS_FOR_CALIBRATION = 5


@dataclass
class AdmissionReport:
    """What the admission gate measured for a candidate expert, and its verdict.

    Attributes:
        admitted: the domain gain reached ``creation.domain_margin`` and the routed system lost no more
            than ``creation.general_tolerance`` of general accuracy.
        reasons: one line per criterion, passed or failed, with the numbers.
        domain: held-out domain questions: ``base`` (the base alone), ``expert`` (the expert forced
            on), ``routed`` (the whole system with the candidate in it).
        general_routed: paired comparison on the general check set, the routed system without the
            candidate against with it (flips both ways; McNemar p).
        general_vs_base: the same for the base alone against the routed system with the candidate.
        general_forced: paired comparison on a sample of the general set, base against expert forced on.
        routed_to_candidate: general questions the routed system sent to the candidate.
        calibrator: the expert's confidence calibrator fitted on its held-out answers (``to_dict``), or
            ``None`` when fewer than ``MIN_CLASS_FOR_CALIBRATION`` of them were wrong (or right).
        misses: held-out domain questions the routed system got wrong, with its answer and route.
    """

    admitted: bool
    reasons: list[str]
    domain: dict[str, float]
    general_routed: dict[str, Any]
    general_vs_base: dict[str, Any]
    general_forced: dict[str, Any]
    routed_to_candidate: int
    calibrator: dict[str, Any] | None
    misses: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The numbers an expert card keeps."""
        return {
            "domain_accuracy": self.domain["expert"],
            "domain_accuracy_base": self.domain["base"],
            "domain_accuracy_routed": self.domain["routed"],
            "domain_questions": self.domain["n"],
            "general_routed_before": self.general_routed["accuracy_before"],
            "general_routed_after": self.general_routed["accuracy_after"],
            "general_base": self.general_vs_base["accuracy_before"],
            "general_flips_to_wrong": self.general_routed["flipped_to_wrong"],
            "general_flips_to_right": self.general_routed["flipped_to_right"],
            "general_forced_on": self.general_forced.get("accuracy_after"),
            "general_routed_to_expert": self.routed_to_candidate,
            "confidence_calibrator": self.calibrator,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the card's ``metrics``)."""
        from dataclasses import asdict

        return asdict(self)

    def __str__(self) -> str:
        verdict = "ADMITTED" if self.admitted else "REJECTED"
        return "\n".join([f"{verdict}", *[f"  - {r}" for r in self.reasons]])


def _evaluation(questions: list[str], predictions: list[str], golds: list[list[str]], scorer: str) -> QAEvaluation:
    judge = get_scorer(scorer)
    return QAEvaluation(list(questions), list(predictions),
                        [bool(judge.score(p, g)) for p, g in zip(predictions, golds, strict=True)])  # fmt: skip


def evaluate_candidate(
    moe,
    name: str,
    adapter_dir: str | Path,
    heldout: Sequence[Any],
    *,
    training_questions: Sequence[str],
    general: Sequence[Any] | None = None,
    forced_general: int = 48,
    scorer: str = "contains",
    domain_scorer: str | None = None,
    progress: bool = True,
    kind: str = "lora",
    extra: dict[str, Any] | None = None,
) -> AdmissionReport:
    """Measure a trained adapter as expert ``name`` of ``moe`` (an :class:`~adaptive_moe.AdaptiveMoE`)
    before it is registered, and decide whether to admit it.

    The candidate joins the system for the measurement only (an in-memory expert in the pool, its
    ``training_questions`` in the router's matcher) and leaves it afterwards, whatever the verdict:
    registering is the caller's step. Measured: held-out domain accuracy of the base, of the expert
    forced on and of the routed system; the general check set through the routed system without and
    with the candidate (only questions whose route changes are answered again; the base's answers come
    from a cache keyed by its fingerprint and settings), and a sample with the expert forced on.
    ``scorer`` judges the general answers, ``domain_scorer`` (default: ``scorer``) the held-out domain ones.
    """
    from ..experts.card import ExpertCard
    from ..experts.expert import expert_class
    from ..model.bundled import cache_root
    from ..routing import Query
    from ..routing.training import label_base_answers, signals_from_row
    from ..uncertainty.calibration import make_calibrator
    from .general import general_knowledge_questions

    cfg = moe.config
    gen = cfg.generation
    domain_scorer = domain_scorer or scorer
    h_questions, h_golds = _split_qa(heldout)
    general = list(general) if general is not None else general_knowledge_questions()
    g_questions, g_golds = _split_qa(general)

    # the general set through the routed system without the candidate (the base's answers are cached)
    labelled = label_base_answers(moe.base, general, generation=gen, scorer=scorer,
                                  cache_dir=cache_root() / "labels", progress=progress)  # fmt: skip
    base_signals = [signals_from_row(r) for r in labelled]
    queries = [Query(q, signals=s) for q, s in zip(g_questions, base_signals, strict=True)]
    before = moe.router.route_batch(queries)
    answers_before = [o.text for o in moe.complete(g_questions, before, base_signals)]

    card = ExpertCard(name=name, domain="candidate", kind=kind, base_fingerprint=moe.base.fingerprint,
                      base_name=moe.base.name, extra=dict(extra or {}))  # fmt: skip
    with _candidate_in(moe, expert_class(kind)(card, adapter_dir), training_questions):
        # the expert forced on: held-out domain accuracy, its confidence calibrator, a general sample
        sample = list(zip(g_questions, g_golds, strict=True))[: max(0, forced_general)]
        with moe.pool.acquire([name]) as [expert]:
            forced_sig = expert.generate(h_questions + [q for q, _ in sample], gen)
        forced = _evaluation(h_questions, [x.text for x in forced_sig[: len(h_questions)]], h_golds, domain_scorer)
        mean_lp = [float(x.token_logprobs.mean()) if x.num_tokens else -1e3 for x in forced_sig[: len(h_questions)]]
        calibrator = None
        n_right = sum(forced.correct)
        if min(n_right, forced.n - n_right) >= MIN_CLASS_FOR_CALIBRATION:
            # isotonic is a step function: on a few dozen answers it puts whole score ranges at 0 and the
            # floor then rejects right answers (25 held-out questions: 2 of 25 abstained); Platt is smooth
            kind = "platt" if forced.n < SMALL_CALIBRATION_SET else "isotonic"
            calibrator = make_calibrator(kind).fit(mean_lp, forced.correct)
            moe.set_expert_calibrator(name, calibrator)
        general_forced: dict[str, Any] = {}
        if sample:
            n = len(sample)
            forced_general_eval = _evaluation([q for q, _ in sample], [x.text for x in forced_sig[len(h_questions):]],
                                              [g for _, g in sample], scorer)  # fmt: skip
            base_sample = _evaluation([q for q, _ in sample], [r["answer"] for r in labelled][:n],
                                      [g for _, g in sample], scorer)  # fmt: skip
            general_forced = paired_comparison(base_sample, forced_general_eval)

        after = moe.router.route_batch(queries)
        routed_to_candidate = sum(a.route == "expert" and name in dict(a.experts) for a in after)
        # only a question whose route changed gets another answer; the rest keep theirs
        changed = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if _route_key(b) != _route_key(a)]
        answers_after = list(answers_before)
        if changed:
            redone = moe.complete([g_questions[i] for i in changed], [after[i] for i in changed],
                                  [base_signals[i] for i in changed])  # fmt: skip
            for i, o in zip(changed, redone, strict=True):
                answers_after[i] = o.text
        # held-out domain questions through the routed system (its base answers come with it)
        routed = moe.generate(h_questions, record_gaps=False)
    base_general = _evaluation(g_questions, [r["answer"] for r in labelled], g_golds, scorer)
    sys_before = _evaluation(g_questions, answers_before, g_golds, scorer)
    sys_after = _evaluation(g_questions, answers_after, g_golds, scorer)

    base_domain = _evaluation(h_questions, [o.base_text or "" for o in routed], h_golds, domain_scorer)
    routed_domain = _evaluation(h_questions, [o.text for o in routed], h_golds, domain_scorer)
    domain = {"n": len(h_questions), "base": base_domain.accuracy, "expert": forced.accuracy,
              "routed": routed_domain.accuracy, "scorer": domain_scorer}  # fmt: skip
    general_routed = paired_comparison(sys_before, sys_after)
    gain = domain["expert"] - domain["base"]
    loss = sys_before.accuracy - sys_after.accuracy
    margin, tolerance = cfg.creation.domain_margin, cfg.creation.general_tolerance
    reasons = [
        f"domain gain {gain:+.3f} (expert {domain['expert']:.3f} vs base {domain['base']:.3f} on {domain['n']} "
        f"held-out questions, judged by {domain_scorer!r}) {'>=' if gain >= margin else '<'} margin {margin:.3f}",
        f"routed general accuracy {sys_before.accuracy:.3f} -> {sys_after.accuracy:.3f} ({loss:+.3f} lost; "
        f"{routed_to_candidate} of {len(g_questions)} general questions routed to the expert) "
        f"{'within' if loss <= tolerance else 'beyond'} tolerance {tolerance:.3f}",
    ]
    rows = zip(h_questions, h_golds, routed, routed_domain.correct, strict=True)
    misses = [{"question": q, "answer": o.text, "gold": g, "route": o.route, "experts": o.experts}
              for q, g, o, ok in rows if not ok]  # fmt: skip
    return AdmissionReport(
        admitted=gain >= margin and loss <= tolerance, reasons=reasons, domain=domain, general_routed=general_routed,
        general_vs_base=paired_comparison(base_general, sys_after), general_forced=general_forced,
        routed_to_candidate=routed_to_candidate, calibrator=calibrator.to_dict() if calibrator else None,
        misses=misses,
    )  # fmt: skip


def _route_key(decision) -> tuple:
    return decision.route, tuple(n for n, _ in decision.experts)


class _candidate_in:  # a context manager: "with _candidate_in(moe, expert, questions):"
    """Within the block ``expert`` is part of ``moe``: in its pool (in memory) and in its router's matcher,
    learnt from ``questions``. Afterwards both are as they were."""

    def __init__(self, moe, expert, questions: Sequence[str]) -> None:
        self.moe, self.expert, self.questions = moe, expert, list(questions)

    def __enter__(self):
        moe, name = self.moe, self.expert.name
        if name in moe.pool.extra_names:
            raise InvalidInputError(f"a candidate named {name!r} is already being evaluated")
        # a new version of a registered expert stands in for the current one (the pool serves in-memory
        # experts first; the matcher's examples are replaced) until the block ends
        moe.pool.add(self.expert)
        moe.teach_router(name, self.questions, save=False)
        return self

    def __exit__(self, *exc) -> None:
        name = self.expert.name
        if name in self.moe.router.experts:
            self.moe.router.remove_expert(name)
        self.moe.pool.discard(name)
        self.moe.set_expert_calibrator(name, None)
        self.moe.sync_experts()  # a registered expert of this name is matched from its card again
