"""continuation_logprobs: the mean log-probability of a continuation after a prefix, batched with padding and
equal to the same sum worked out from one unpadded forward pass (tiny random model)."""

from __future__ import annotations

import pytest
import torch

from adaptive_moe.errors import AdaptiveMoEError, InvalidInputError
from adaptive_moe.model.likelihood import continuation_logprobs


def _by_hand(base, prefix: str, continuation: str) -> float:
    tok = base.tokenizer
    return _ids_by_hand(base, tok(prefix, add_special_tokens=False)["input_ids"],
                        tok(continuation, add_special_tokens=False)["input_ids"])  # fmt: skip


def _ids_by_hand(base, head: list[int], tail: list[int]) -> float:
    with torch.no_grad():
        logits = base.model(input_ids=torch.tensor([head + tail])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(logp[len(head) - 1 + j, t].item() for j, t in enumerate(tail)) / len(tail)


def test_the_mean_log_probability_of_each_continuation_matches_one_unpadded_pass(tiny_base):
    prefixes = ["Passage: a", "Passage: a much longer passage about the widget and its colour green", "x y"]
    continuations = [" what is it?", " what colour is the widget?", " z"]
    got = continuation_logprobs(tiny_base, prefixes, continuations, batch_size=2)  # rows of unequal length
    want = [_by_hand(tiny_base, p, c) for p, c in zip(prefixes, continuations, strict=True)]
    assert got == pytest.approx(want, abs=1e-4)
    assert all(v < 0 for v in got)
    assert continuation_logprobs(tiny_base, prefixes, continuations, batch_size=8) == pytest.approx(got, abs=1e-4)
    assert continuation_logprobs(tiny_base, [], []) == []


def test_a_prefix_longer_than_the_context_loses_its_start(tiny_base):
    limit = tiny_base.context_length
    assert limit is not None
    long_prefix = "word " * (limit + 40)
    [score] = continuation_logprobs(tiny_base, [long_prefix], [" end of it"])
    ids = tiny_base.tokenizer(long_prefix, add_special_tokens=False)["input_ids"]
    tail = tiny_base.tokenizer(" end of it", add_special_tokens=False)["input_ids"]
    assert len(ids) + len(tail) > limit
    assert score == pytest.approx(_ids_by_hand(tiny_base, ids[len(ids) + len(tail) - limit :], tail), abs=1e-4)


def test_bad_input_is_refused_with_what_is_allowed(tiny_base):
    with pytest.raises(InvalidInputError, match="one continuation per prefix: got 2 prefixes, 1"):
        continuation_logprobs(tiny_base, ["a", "b"], [" c"])
    with pytest.raises(AdaptiveMoEError, match="continuation 1 is empty"):
        continuation_logprobs(tiny_base, ["a", "b"], [" c", ""])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        continuation_logprobs(tiny_base, ["a"], [" c"], batch_size=0)
