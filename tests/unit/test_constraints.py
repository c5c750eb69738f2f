"""Constrained decoding (answers that only quote their sources) and cancelling a generation under way."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive_moe.errors import InvalidInputError
from adaptive_moe.model.constraints import QuoteConstraint, normalise_quote
from adaptive_moe.model.generation import cancellable

SOURCES = ["The relief steamer Pharos came out on Tuesday.", "Two rockets were fired at dusk."]


def _quoted(answer: str, sources: list[str]) -> bool:
    probe = normalise_quote(answer).rstrip(" .,;:!?")
    return any(probe in normalise_quote(s) for s in sources)


def test_normalise_quote_folds_case_spacing_and_typography():
    assert normalise_quote("  The  “Pharos”\u00a0—  Tuesday ") == 'the "pharos" - tuesday'


def test_each_row_quotes_its_own_sources_and_an_empty_row_is_free(tiny_base):
    prompts = ["Which steamer came?", "How did they warn the ship?", "Say anything."]
    free = tiny_base.generate_with_signals(prompts, max_new_tokens=8)
    out = tiny_base.generate_with_signals(prompts, max_new_tokens=8, quotes=[[SOURCES[0]], [SOURCES[1]], []])
    assert _quoted(out[0].text, [SOURCES[0]]) and _quoted(out[1].text, [SOURCES[1]])
    assert out[2].text == free[2].text  # no sources: the row generates as it would have
    assert not all(_quoted(f.text, SOURCES) for f in free[:2])  # the random model does not quote by itself
    for o in out[:2]:  # the signals are the raw model's: log-probs of the chosen tokens, alternatives best first
        assert len(o.token_logprobs) == len(o.token_ids) and o.top_logprobs.shape[0] == len(o.token_ids)
        assert bool((o.top_logprobs[:, :-1] >= o.top_logprobs[:, 1:]).all())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40),
                min_size=1, max_size=3))  # fmt: skip
def test_any_sources_any_answer_is_a_quote(tiny_base, sources):
    [out] = tiny_base.generate_with_signals(["Answer from the passages."], max_new_tokens=6, quotes=[sources])
    assert out.text == "" or _quoted(out.text, sources)


def test_a_batch_of_the_wrong_size_is_refused(tiny_base):
    constraint = QuoteConstraint(tiny_base.tokenizer, [SOURCES], eos_token_ids=[0])
    with pytest.raises(InvalidInputError, match="sources for 1 rows, got 2"):
        constraint(torch.zeros((2, 3), dtype=torch.long), torch.zeros((2, 10)))
    with pytest.raises(InvalidInputError, match="one list of texts per prompt"):
        tiny_base.generate_with_signals(["a", "b"], max_new_tokens=2, quotes=[SOURCES])


def test_a_cancelled_generation_stops_at_the_next_token(tiny_base):
    steps = []
    with cancellable(lambda: steps.append(1) or len(steps) >= 3):  # gone after the third token
        [out] = tiny_base.generate_with_signals(["Tell me a long story."], max_new_tokens=40)
    [full] = tiny_base.generate_with_signals(["Tell me a long story."], max_new_tokens=40)
    assert full.finish_reason == "length"  # the random model does not end by itself
    assert out.finish_reason == "cancelled" and out.token_ids == full.token_ids[:3]
    with cancellable(lambda: False):
        [kept] = tiny_base.generate_with_signals(["Tell me a long story."], max_new_tokens=40)
    assert kept.token_ids == full.token_ids and kept.finish_reason == full.finish_reason
