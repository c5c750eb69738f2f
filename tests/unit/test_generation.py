import json
import logging
import math

import pytest
import torch

from adaptive_moe import load_base_model
from adaptive_moe.config import GenerationConfig
from adaptive_moe.errors import ConfigError, InvalidInputError
from adaptive_moe.model import render_prompt
from adaptive_moe.model.generation import encode_prompts

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]


def _teacher_forced(base, prompt, token_ids):
    """Log-probs, entropies and last prompt hidden state from one plain forward pass."""
    batch, _ = encode_prompts(base, [prompt], GenerationConfig())
    ids = torch.cat([batch["input_ids"], torch.tensor([token_ids])], dim=1)
    with torch.no_grad():
        out = base.model(input_ids=ids, output_hidden_states=True)
    p = batch["input_ids"].shape[1]
    logp = torch.log_softmax(out.logits[0, p - 1 : p - 1 + len(token_ids)].float(), -1)
    chosen = logp.gather(-1, torch.tensor(token_ids).unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return chosen, entropy, out.hidden_states[-1][0, p - 1]


def test_signals_match_a_teacher_forced_forward(tiny_base):
    s = tiny_base.generate_with_signals(["What is the capital of France?"], max_new_tokens=6)[0]
    assert s.num_tokens > 0
    chosen, entropy, hidden = _teacher_forced(tiny_base, s.prompt, s.token_ids)
    torch.testing.assert_close(s.token_logprobs, chosen, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s.token_entropies, entropy, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s.prompt_hidden, hidden, atol=1e-4, rtol=1e-4)


def test_signal_shapes_and_ranges(tiny_base):
    sigs = tiny_base.generate_with_signals(["hello", "Who wrote Hamlet?", CONV], max_new_tokens=5)
    assert len(sigs) == 3
    vocab = tiny_base.model.config.vocab_size
    for s in sigs:
        n = s.num_tokens
        assert s.token_logprobs.shape == s.token_entropies.shape == (n,)
        assert (s.token_logprobs <= 0).all()
        assert (s.token_entropies >= 0).all() and (s.token_entropies <= math.log(vocab) + 1e-4).all()
        assert s.prompt_hidden.shape == s.prompt_hidden_mean.shape == (tiny_base.model.config.hidden_size,)
        assert s.finish_reason in ("eos", "length")
        assert (n == 5) == (s.finish_reason == "length")
        assert tiny_base.tokenizer.eos_token_id not in s.token_ids
    json.dumps([s.to_dict(hidden=True) for s in sigs])


def test_batching_and_left_padding_do_not_change_answers(tiny_base):
    prompts = ["hi", "What is the capital of France? Tell me in one word please.", CONV]
    together = tiny_base.generate_with_signals(prompts, max_new_tokens=6)
    alone = [tiny_base.generate_with_signals(p, max_new_tokens=6)[0] for p in prompts]
    for a, b in zip(together, alone, strict=True):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.token_logprobs, b.token_logprobs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a.prompt_hidden, b.prompt_hidden, atol=1e-4, rtol=1e-4)
    small = tiny_base.generate_with_signals(prompts, max_new_tokens=6, batch_size=1)
    assert [s.token_ids for s in small] == [s.token_ids for s in together]


def test_entropy_comes_from_raw_logits_not_processed_scores(tiny_base):
    greedy = tiny_base.generate_with_signals("hello", max_new_tokens=5)[0]
    # top_k=1 sampling picks the same tokens as greedy; processed scores would give entropy 0.
    top1 = tiny_base.generate_with_signals("hello", max_new_tokens=5, do_sample=True, top_k=1, seed=0)[0]
    assert top1.token_ids == greedy.token_ids
    torch.testing.assert_close(top1.token_entropies, greedy.token_entropies)
    assert (greedy.token_entropies > 0.1).all()


def test_seeded_sampling_is_reproducible_and_leaves_global_rng(tiny_base):
    kw = {"max_new_tokens": 8, "do_sample": True, "temperature": 1.5, "top_p": 0.95, "seed": 11}
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tiny_base.generate_with_signals("hello", **kw)[0]
    after = torch.rand(1)
    assert torch.equal(before, after)  # sampling with a seed does not disturb the caller's RNG
    b = tiny_base.generate_with_signals("hello", **kw)[0]
    assert a.token_ids == b.token_ids
    others = {tuple(tiny_base.generate_with_signals("hello", **{**kw, "seed": s})[0].token_ids) for s in range(5)}
    assert len(others) > 1


def test_stop_strings_cut_the_answer(tiny_base):
    kw = {"max_new_tokens": 12, "do_sample": True, "temperature": 2.0, "seed": 0}
    free = tiny_base.generate_with_signals("hello", **kw)[0]
    assert len(free.text) >= 4
    stop = free.text[2:4]
    s = tiny_base.generate_with_signals("hello", **kw, stop=[stop])[0]
    assert s.finish_reason == "stop"
    assert stop not in s.text
    assert free.text.startswith(s.text)
    # the signals cover exactly the returned text, not the removed stop string
    assert tiny_base.tokenizer.decode(s.token_ids, skip_special_tokens=True).strip() == s.text
    assert s.token_ids == free.token_ids[: s.num_tokens]
    assert s.token_logprobs.numel() == s.token_entropies.numel() == s.num_tokens


def test_chat_template_and_system_prompt(tiny_base):
    gen = GenerationConfig(system_prompt="You are terse.")
    text = render_prompt(tiny_base, "hi", gen)
    assert text.startswith("<|im_start|>system\nYou are terse.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    assert render_prompt(tiny_base, "hi", GenerationConfig(use_chat_template=False)) == "hi"


@pytest.mark.parametrize(
    ("prompts", "match"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ([], "empty"),
        ([42], "type int"),
        (None, "got NoneType"),
        ([{"role": "robot", "content": "x"}], "role 'robot' is not allowed"),
        ([{"role": "user", "content": ""}], "non-empty"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "end with a user message"),
        (["ok", ""], "prompt 1 is empty"),
    ],
)
def test_bad_prompts_are_clear_value_errors(tiny_base, prompts, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        tiny_base.generate_with_signals(prompts, max_new_tokens=2)
    assert isinstance(info.value, ValueError)


def test_bad_generation_overrides(tiny_base):
    with pytest.raises(ConfigError, match="max_new_tokens"):
        tiny_base.generate_with_signals("hi", max_new_tokens=0)
    with pytest.raises(ConfigError, match="unknown key; did you mean 'temperature'"):
        tiny_base.generate_with_signals("hi", temprature=0.5)


def test_long_prompt_truncated_from_the_left_with_warning(tiny_llama_dir, caplog):
    base = load_base_model(name_or_path=str(tiny_llama_dir), max_input_tokens=16)
    long_prompt = "word " * 100 + "What is the capital of France?"
    with caplog.at_level(logging.WARNING, logger="adaptive_moe"):
        s = base.generate_with_signals(long_prompt, max_new_tokens=3)[0]
    assert s.truncated and s.prompt_tokens == 16
    assert "keeping its last 16" in caplog.text
    short = base.generate_with_signals("hi", max_new_tokens=3)[0]
    assert not short.truncated


def test_long_prompt_raises_when_configured(tiny_llama_dir):
    base = load_base_model(name_or_path=str(tiny_llama_dir), max_input_tokens=16, truncation="error")
    with pytest.raises(InvalidInputError, match="the limit is 16"):
        base.generate_with_signals("word " * 100, max_new_tokens=3)


def test_context_limit_from_model(tiny_base):
    # tiny llama has 256 positions: max_new_tokens must leave room for a prompt
    with pytest.raises(InvalidInputError, match="leaves no room"):
        tiny_base.generate_with_signals("hi", max_new_tokens=256)
    s = tiny_base.generate_with_signals("word " * 400, max_new_tokens=6)[0]
    assert s.truncated and s.prompt_tokens == 250


def test_max_input_tokens_never_exceeds_the_context(tiny_llama_dir):
    base = load_base_model(name_or_path=str(tiny_llama_dir), max_input_tokens=1000)  # context is 256
    s = base.generate_with_signals("word " * 400, max_new_tokens=8)[0]
    assert s.truncated and s.prompt_tokens == 248


def test_long_prompt_on_learned_positions_model(tiny_gpt2_dir):
    base = load_base_model(name_or_path=str(tiny_gpt2_dir))  # GPT-2 style: 128 learned positions
    s = base.generate_with_signals("word " * 300, max_new_tokens=8)[0]
    assert s.truncated and s.prompt_tokens == 120
    assert s.num_tokens <= 8


def test_query_hidden_pools_only_the_users_words(tiny_base):
    from adaptive_moe.config import GenerationConfig
    from adaptive_moe.model.generation import encode_prompts

    prompt = "Who wrote Hamlet?"
    batch, _ = encode_prompts(tiny_base, [prompt, "A much longer question about the capital of France?"],
                              GenerationConfig(), query_mask=True)  # fmt: skip
    row = batch["input_ids"][0][batch["query_mask"][0].bool()]
    assert tiny_base.tokenizer.decode(row).strip() == prompt  # exactly the user's tokens, no template
    assert batch["query_mask"][0].sum() < batch["attention_mask"][0].sum()
    s = tiny_base.generate_with_signals([prompt], max_new_tokens=2)[0]
    assert s.query_hidden.shape == s.prompt_hidden.shape and not torch.allclose(s.query_hidden, s.prompt_hidden_mean)
    chat = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": prompt},
    ]
    batch, _ = encode_prompts(tiny_base, [chat], GenerationConfig(), query_mask=True)
    row = batch["input_ids"][0][batch["query_mask"][0].bool()]
    assert tiny_base.tokenizer.decode(row).strip() == prompt  # the last user turn, not "Hi"


def test_prompt_states_without_generating_equal_those_of_generation(tiny_base):
    prompts = ["Who wrote Hamlet?", "What is the capital of France? Answer in one word please."]
    signals = tiny_base.generate_with_signals(prompts, max_new_tokens=3)
    states = tiny_base.prompt_states(prompts)
    for s, p in zip(signals, states, strict=True):
        assert p.prompt_tokens == s.prompt_tokens
        for name in ("prompt_hidden", "prompt_hidden_mean", "query_hidden"):
            assert torch.allclose(getattr(p, name), getattr(s, name), atol=1e-5), name


def test_shallow_prompt_states_read_that_layer_and_skip_the_rest(tiny_base):
    from adaptive_moe.model.generation import decoder_layers, encode_prompts

    prompts = ["Who wrote Hamlet?", "What is the capital of France? Answer in one word please."]
    layers = decoder_layers(tiny_base.model)
    ran: list[int] = []
    handles = [block.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, block in enumerate(layers)]
    try:
        shallow = tiny_base.prompt_states(prompts, layers=1)
    finally:
        for h in handles:
            h.remove()
    assert ran == [0]  # the blocks after the first never ran
    batch, _ = encode_prompts(tiny_base, prompts, GenerationConfig(), query_mask=True)
    batch.pop("query_mask")
    positions = (batch["attention_mask"].cumsum(-1) - 1).masked_fill(batch["attention_mask"] == 0, 0)
    with torch.inference_mode():
        out = tiny_base.model(**batch, position_ids=positions, output_hidden_states=True)
    for row, s in enumerate(shallow):
        assert torch.allclose(s.prompt_hidden, out.hidden_states[1][row, -1].float(), atol=1e-5)
    full = tiny_base.prompt_states(prompts)
    assert tiny_base.prompt_states(prompts, layers=len(layers))[0].prompt_hidden.equal(full[0].prompt_hidden)
    assert not torch.allclose(shallow[0].prompt_hidden, full[0].prompt_hidden)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError, match="layers"):
            tiny_base.prompt_states(prompts, layers=bad)
    after = tiny_base.generate_with_signals(prompts, max_new_tokens=2)  # no hook left behind
    assert torch.allclose(after[0].prompt_hidden, full[0].prompt_hidden, atol=1e-5)
