"""The AdaptiveMoE facade end to end on the embedded SmolLM2 with the session's trained experts."""

import json

import pytest

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.evaluation.scoring import get_scorer
from adaptive_moe.routing.bundled import EMBEDDED_ROUTER_DIR

pytestmark = pytest.mark.integration
# exp(mean token log-prob) of SmolLM2's answers: 0.69-0.90 on the general questions below, 0.29-0.53 on
# questions about invented people (measured with 64 new tokens); 0.6 lies between
CONFIDENT = ["What is the capital of France?", "What is the capital of Japan?", "What is the capital of Greece?"]
UNCOVERED = "Which river flows through the invented harbour town of Quellmarsh-by-Tarn?"


@pytest.fixture(scope="module")
def moe(smollm2, trained_experts, tmp_path_factory):
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path_factory.mktemp("moe-ws")),
                                      **{"router.threshold": 0.6, "generation.max_new_tokens": 32})  # fmt: skip
    with AdaptiveMoE(cfg, base=smollm2) as system:  # closing unloads its experts from the shared base
        for kind, expert in trained_experts.items():
            system.add_expert(expert.adapter_dir, kind, domain=expert.domain.description,
                              questions=[q.question for q in expert.domain.train_qa])  # fmt: skip
        yield system
    assert smollm2.adapter_host is None


def test_confident_general_questions_stay_on_the_base_with_its_text(moe, smollm2):
    outs = moe.generate(CONFIDENT)
    plain = smollm2.generate_with_signals(CONFIDENT, moe.config.generation)
    assert [o.route for o in outs] == ["base"] * 3, [o.reason for o in outs]
    assert [o.text for o in outs] == [s.text for s in plain]
    assert all(o.attribution.sources == {"base": 1.0} for o in outs)


def test_domain_questions_go_to_their_expert_and_are_answered(moe, trained_experts):
    judge = get_scorer("contains")
    for kind, expert in trained_experts.items():
        qa = expert.domain.train_qa
        outs = moe.generate([q.question for q in qa])
        routed = [o.route == "expert" and o.experts[0][0] == kind for o in outs]
        assert sum(routed) >= 0.9 * len(qa), [(o.route, o.experts, o.reason) for o in outs]
        correct = [judge.score(o.text, q.answers) for o, q in zip(outs, qa, strict=True)]
        assert sum(correct) >= 0.5 * len(qa), [(q.question, o.text) for q, o in zip(qa, outs, strict=True)]
        for o in outs:
            if o.route != "expert":
                continue
            weights = [w for t in o.attribution.tokens for w in t.weights.values()]
            assert all(0.0 <= w <= 1.0 for w in weights) and o.attribution.sources == {kind: pytest.approx(1.0)}
            assert "".join(t.token for t in o.attribution.tokens).strip() == o.text
        # reworded questions reach the same expert
        reworded = moe.generate([q.question for q in expert.domain.test_qa])
        assert sum(o.route == "expert" and o.experts[0][0] == kind for o in reworded) >= 0.8 * len(reworded)


def test_a_query_no_expert_covers_is_a_gap(moe):
    before = moe.gaps.count()
    out = moe.generate(UNCOVERED)
    assert out.route == "gap" and out.flagged, out.reason
    assert moe.gaps.count() == before + 1 and moe.gaps.entries()[-1].query == UNCOVERED


def test_save_and_load_give_the_same_answers(moe, smollm2, trained_experts, tmp_path):
    questions = [*CONFIDENT[:1], trained_experts["people"].domain.train_qa[0].question, UNCOVERED]
    before = moe.generate(questions)
    moe.save_pretrained(tmp_path / "saved")
    with AdaptiveMoE.from_pretrained(tmp_path / "saved", base=smollm2) as loaded:
        after = loaded.generate(questions)
    assert [(o.route, o.text) for o in after] == [(o.route, o.text) for o in before]


def test_the_shipped_router_takes_the_users_match_settings(smollm2, tmp_path):
    changes = {"router.top_k": 2, "router.min_match_score": 0.45, "router.override_match_score": 0.8}
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **changes)
    with AdaptiveMoE(cfg, base=smollm2) as system:
        router = system.router.config
        shipped = json.loads((EMBEDDED_ROUTER_DIR / "router.json").read_text())["config"]
        assert (router.estimator, router.threshold) == (shipped["estimator"], shipped["threshold"])  # shipped ...
        assert (router.top_k, router.min_match_score, router.override_match_score) == (2, 0.45, 0.8)  # ... used so
