"""Integration tests on the embedded SmolLM2-135M-Instruct (converted once into the cache)."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from adaptive_moe import load_base_model
from adaptive_moe.model import bundled

pytestmark = pytest.mark.integration


def test_france_question_answers_paris_with_signals(smollm2):
    s = smollm2.generate_with_signals(["What is the capital of France?"], max_new_tokens=24)[0]
    assert "Paris" in s.text
    assert s.finish_reason == "eos"
    assert s.num_tokens == s.token_logprobs.numel() == s.token_entropies.numel() > 0
    assert s.prompt_hidden.shape == (576,)
    assert torch.isfinite(s.prompt_hidden).all()


def test_known_answer_more_confident_than_invented_one(smollm2):
    known, invented = smollm2.generate_with_signals(
        ["What is the capital of France?", "Who founded the Tidewater Guild of Lantern Makers in Vellmarsh?"],
        max_new_tokens=24,
    )
    assert known.token_logprobs.mean() > invented.token_logprobs.mean()
    assert known.token_entropies.mean() < invented.token_entropies.mean()


def test_batched_greedy_matches_single(smollm2):
    prompts = ["What is 2 plus 2?", "Name a primary colour.", "What is the capital of France?"]
    together = smollm2.generate_with_signals(prompts, max_new_tokens=12)
    for p, t in zip(prompts, together, strict=True):
        alone = smollm2.generate_with_signals(p, max_new_tokens=12)[0]
        assert alone.token_ids[:6] == t.token_ids[:6]


def test_conversion_kept_chat_template_eos_and_is_cached(smollm2):
    folder = bundled.embedded_checkpoint()  # already converted by the fixture: returns at once
    marker = json.loads((folder / "adaptive_moe_conversion.json").read_text())
    assert marker["gguf_sha256"].startswith(folder.name.split("-")[3])
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin"))
    gguf = bundled.find_gguf()
    original = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert smollm2.tokenizer.chat_template == original.chat_template
    assert smollm2.tokenizer.eos_token == original.eos_token == "<|im_end|>"
    assert smollm2.model.generation_config.eos_token_id in (2, [2])
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())


def test_fingerprint_is_stable_across_loads(smollm2):
    again = load_base_model(device="cpu")
    assert again.fingerprint == smollm2.fingerprint
    assert again.name == "embedded:smollm2-135m-instruct"


def test_chat_conversation_prompt(smollm2):
    conv = [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": "What is the capital of Italy?"},
    ]
    s = smollm2.generate_with_signals(conv, max_new_tokens=12)[0]
    assert "Rome" in s.text
