"""Shared pieces of the benchmark report: its constants, the mixed question set, base answers, arms."""

from __future__ import annotations

from typing import Any

EXPERT_KINDS = ("people", "companies", "places")
UNCOVERED_KIND = "products"
DOMAINS = ("general", *EXPERT_KINDS, UNCOVERED_KIND)
DOMAIN_HEADERS = {"general": "general", UNCOVERED_KIND: f"{UNCOVERED_KIND} (no expert)"}
BATCH = 16
MIXTURE_TOP_K = 2
ARROW_TOP_K = 2
MEMORY_EXPERTS = 50
MEMORY_CAPACITY = 8
ZIPF_EXPONENT = 1.1
PROBE = "Explain in one short paragraph why the sky looks blue during the day."
ROUTED = ("moe_select", "moe_mixture")
TO_EXPERTS = ("expert", "abstain")  # routes the router sent to experts (abstain: every expert answer was unsure)


# ----------------------------------------------------------------------------------------------------------------
# Data


def build_questions(entities: int, general_n: int | None, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The mixed set: general questions (``index``: their position in the check set), then each synthetic
    domain's ``test_qa``. Returns the questions and the synthetic domains by kind."""
    from adaptive_moe.creation import general_knowledge_questions, make_synthetic_domain

    general = list(enumerate(general_knowledge_questions()))
    if general_n:  # the odd-numbered ones first: the shipped router was fitted on the even-numbered ones
        general = sorted(general, key=lambda item: (item[0] % 2 == 0, item[0]))[:general_n]
        general.sort()
    questions = [{"question": q, "answers": list(a), "domain": "general", "index": i}
                 for i, (q, a) in general]  # fmt: skip
    domains = {}
    for i, kind in enumerate((*EXPERT_KINDS, UNCOVERED_KIND)):
        dom = make_synthetic_domain(kind, n_entities=entities, seed=seed + i)
        domains[kind] = dom
        questions += [{"question": qa.question, "answers": list(qa.answers), "domain": kind, "index": j}
                      for j, qa in enumerate(dom.test_qa)]  # fmt: skip
    return questions, domains


def _router_domain(domain: str) -> str:
    from adaptive_moe.routing.training import GENERAL

    return GENERAL if domain == "general" else domain


def label_mixed(base, questions: list[dict[str, Any]], max_new_tokens: int, progress: bool):
    from adaptive_moe.config import GenerationConfig
    from adaptive_moe.routing import label_base_answers

    rows = [(q["question"], q["answers"], _router_domain(q["domain"])) for q in questions]
    generation = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=BATCH, do_sample=False)
    return label_base_answers(base, rows, generation=generation, progress=progress)


def make_arm(label: str, answers: list[str], correct: list[bool], seconds: float, **extra: Any) -> dict[str, Any]:
    return {"label": label, "available": True, "answers": list(answers), "correct": [bool(c) for c in correct],
            "seconds": seconds, **extra}  # fmt: skip


def unavailable(label: str, reason: str) -> dict[str, Any]:
    return {"label": label, "available": False, "reason": reason}
