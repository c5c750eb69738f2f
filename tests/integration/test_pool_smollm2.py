"""The expert pool on the embedded SmolLM2 with the session's trained experts: registry cards carry
the training provenance, hot-swapped experts answer exactly as when attached alone, the base stays pure."""

import pytest
import torch

from adaptive_moe.creation import evaluate_qa
from adaptive_moe.experts import ExpertPool, ExpertRegistry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(smollm2, trained_experts, tmp_path_factory):
    reg = ExpertRegistry(tmp_path_factory.mktemp("registry"))
    for kind, expert in trained_experts.items():
        reg.import_adapter(expert.adapter_dir, kind, domain=f"invented {kind}", base=smollm2)
    return reg


def test_cards_carry_training_provenance(smollm2, trained_experts, registry):
    card = registry.card("people")
    assert card.base_fingerprint == smollm2.fingerprint and card.base_name == smollm2.name
    assert card.data["qa_pairs"] == len(trained_experts["people"].domain.train_qa)
    assert card.lora["r"] == 16 and card.weights_bytes > 1_000_000


def test_hot_swapped_experts_answer_as_when_attached_alone(smollm2, trained_experts, registry, probe_logits):
    questions = {kind: e.domain.train_qa[:4] for kind, e in trained_experts.items()}
    alone = {
        kind: evaluate_qa(smollm2, qa, adapter=trained_experts[kind].adapter_dir, max_new_tokens=12).predictions
        for kind, qa in questions.items()
    }
    pool = ExpertPool(smollm2, registry, capacity=1)
    try:
        for kind in ["people", "companies", "people"]:  # capacity 1: each miss reuses the other's slot
            with pool.acquire([kind]) as [expert]:
                got = [s.text for s in expert.generate([q.question for q in questions[kind]], max_new_tokens=12)]
            assert got == alone[kind], kind
            assert torch.equal(probe_logits(smollm2), trained_experts[kind].base_logits_before)
        assert pool.stats.misses == 3 and pool.stats.hotswaps == 2
    finally:
        pool.clear()
    assert smollm2.adapter_host is None
