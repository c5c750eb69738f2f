"""Train small experts on the embedded SmolLM2 (once per session, see conftest) and check what they learned."""

import json

import pytest
import torch
from peft import PeftModel

from adaptive_moe import load_base_model
from adaptive_moe.creation import evaluate_qa, general_knowledge_questions
from adaptive_moe.creation.training import TRAINING_RECORD

pytestmark = pytest.mark.integration


def test_base_does_not_know_the_invented_facts(smollm2, trained_experts):
    for expert in trained_experts.values():
        assert evaluate_qa(smollm2, expert.domain.test_qa, max_new_tokens=16).accuracy <= 0.1


def test_expert_learns_its_facts(smollm2, trained_experts):
    for kind, expert in trained_experts.items():
        train = evaluate_qa(smollm2, expert.domain.train_qa, adapter=expert.adapter_dir, max_new_tokens=16)
        test = evaluate_qa(smollm2, expert.domain.test_qa, adapter=expert.adapter_dir, max_new_tokens=16)
        # a few minutes of training on 10 facts lands between 0.6 and 1.0 depending on the machine's numerics
        assert train.accuracy >= 0.5, (kind, train.predictions)
        assert test.accuracy >= 0.2, (kind, test.predictions)  # reworded questions: generalisation (base <= 0.1)


def test_training_leaves_the_base_exactly_as_it_was(smollm2, trained_experts, probe_logits):
    for expert in trained_experts.values():
        assert torch.equal(probe_logits(smollm2), expert.base_logits_before)
    assert all(not p.requires_grad for p in smollm2.model.parameters())
    assert "Paris" in smollm2.generate_with_signals("What is the capital of France?", max_new_tokens=16)[0].text


def test_adapter_is_plain_peft_with_provenance(smollm2, trained_experts):
    expert = trained_experts["people"]
    record = json.loads((expert.adapter_dir / TRAINING_RECORD).read_text())
    assert record["base_fingerprint"] == smollm2.fingerprint
    assert record["data"]["qa_pairs"] == len(expert.domain.train_qa)
    config = json.loads((expert.adapter_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16
    fresh = load_base_model(device="cpu")
    model = PeftModel.from_pretrained(fresh.model, str(expert.adapter_dir))
    qa = expert.domain.train_qa[:6]
    plain = []
    for item in qa:
        ids = fresh.tokenizer.apply_chat_template(
            [{"role": "user", "content": item.question}], add_generation_prompt=True, return_tensors="pt",
            return_dict=True,
        )  # fmt: skip
        out = model.generate(**ids, max_new_tokens=16, do_sample=False)
        plain.append(fresh.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    ours = evaluate_qa(smollm2, qa, adapter=expert.adapter_dir, max_new_tokens=16, batch_size=1)
    assert plain == [p.strip() for p in ours.predictions]  # plain PEFT reproduces what the library generates
    assert sum(ours.correct) >= 2, ours.predictions  # and what it generates is the learned facts


def test_forced_on_expert_changes_general_answers(smollm2, trained_experts):
    general = general_knowledge_questions()[:24]
    base = evaluate_qa(smollm2, general)
    forced = evaluate_qa(smollm2, general, adapter=trained_experts["companies"].adapter_dir)
    assert base.accuracy >= 0.4
    assert forced.predictions != base.predictions
