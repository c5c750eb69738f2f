"""The routing examples run end to end in their fast mode (a tiny random model)."""

from __future__ import annotations

from test_examples_experts import _run_example


def test_custom_estimator_example_fast():
    out = _run_example("custom_estimator.py", "--fast")
    assert out.count("hedging score") == 2 and out.count("-> route ") == 2


def test_custom_router_example_fast():
    out = _run_example("custom_router.py", "--fast")
    assert "route expert [('guilds', 1.0)]" in out and "route expert [('harbours', 1.0)]" in out
    assert "Q: What is 2 + 2?" in out
