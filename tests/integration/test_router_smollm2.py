"""The router on the embedded SmolLM2: trained on one split, judged on another (small sizes; the full
measurement is benchmarks/bench_router.py)."""

import pytest

from adaptive_moe.config import GenerationConfig, RouterConfig
from adaptive_moe.creation import general_knowledge_questions
from adaptive_moe.routing import Query, UncertaintyRouter, label_base_answers, train_router
from adaptive_moe.routing.evaluation import evaluate_router

pytestmark = pytest.mark.integration
GEN = GenerationConfig(max_new_tokens=16, batch_size=16)


@pytest.fixture(scope="module")
def splits(smollm2, trained_experts, tmp_path_factory):
    general = general_knowledge_questions()
    fit = [(q, a, "") for q, a in general[0:80:2]]
    test = [(q, a, "") for q, a in general[1:80:2]]
    for kind, expert in trained_experts.items():
        fit += [(q.question, q.answers, kind) for q in expert.domain.train_qa]
        test += [(q.question, q.answers, kind) for q in expert.domain.test_qa]
    cache = tmp_path_factory.mktemp("labels")
    return (label_base_answers(smollm2, fit, generation=GEN, cache_dir=cache, progress=False),
            label_base_answers(smollm2, test, generation=GEN, cache_dir=cache, progress=False))  # fmt: skip


def test_router_separates_known_from_unknown_and_matches_experts(smollm2, trained_experts, splits, tmp_path):
    fit, test = splits
    experts = {kind: [q.question for q in e.domain.train_qa] for kind, e in trained_experts.items()}
    cfg = RouterConfig(estimator="probe", calibration="isotonic", matcher="knn", threshold=0.5)
    router, _ = train_router(smollm2, fit, config=cfg, expert_questions=experts, progress=False)
    report = evaluate_router(router, test, bootstrap=100)
    assert report.estimators["router:probe"]["auroc"] >= 0.8, report.estimators
    assert report.matching["domain_to_own_expert"] >= 0.8, report.matching
    assert report.matching["general_to_any_expert"] <= 0.2, report.matching

    question = trained_experts["people"].domain.test_qa[0].question
    s = smollm2.generate_with_signals(question, GEN)[0]
    decision = UncertaintyRouter.load(router.save(tmp_path / "r")).route(Query(question, signals=s))
    assert decision.route == "expert" and decision.experts[0][0] == "people", decision


def test_pre_mode_decides_from_the_prompt_alone(smollm2, trained_experts, splits):
    fit, test = splits
    cfg = RouterConfig(mode="pre", estimator="prompt_probe", calibration="platt")
    router, _ = train_router(smollm2, fit, config=cfg, progress=False)
    questions = [r["question"] for r in test]
    states = smollm2.prompt_states(questions, GEN)
    decisions = router.route_batch([Query(q, states=s) for q, s in zip(questions, states, strict=True)])
    domain = [d.route != "base" for d, r in zip(decisions, test, strict=True) if r["domain"]]
    assert sum(domain) / len(domain) >= 0.8  # invented entities: the base is not trusted, before answering
