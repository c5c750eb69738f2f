"""Crash consistency, a short run of ``benchmarks/bench_reliability.py``: a worker importing and removing
experts and recording gaps is killed with SIGKILL at random moments; every store reopens, keeps every
acknowledged write and takes the next writer at once. Then a worker creating experts and saving the
system is killed: the workspace opens, the saved system loads, an interrupted creation runs again."""

from __future__ import annotations

from adaptive_moe.testing import make_tiny_model
from benchmarks.bench_reliability import make_source, system_config, system_trial, trial


def test_sigkill_at_random_moments_loses_and_blocks_nothing(tmp_path):
    source = make_source(tmp_path / "source")
    root = tmp_path / "ws"
    root.mkdir()
    rows = [trial(root, source, seed=s, max_delay=1.0) for s in range(5)]  # one workspace: state accumulates
    assert [r["violations"] for r in rows] == [[]] * 5
    assert sum(r["acks"] for r in rows) > 20  # the kills landed among real writes


def test_sigkill_while_creating_experts_and_saving_the_system_leaves_it_loadable(tmp_path):
    model_dir = make_tiny_model(tmp_path / "tiny", "llama", chat_template=True)
    root = tmp_path / "ws"
    root.mkdir()
    system_config(root, model_dir)
    rows = [system_trial(root, seed=s, max_delay=6.0) for s in range(2)]
    assert [r["violations"] for r in rows] == [[]] * 2
