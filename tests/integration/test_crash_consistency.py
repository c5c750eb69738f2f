"""Crash consistency, a short run of ``benchmarks/bench_reliability.py``: a worker importing and removing
experts and recording gaps is killed with SIGKILL at random moments; every store reopens, keeps every
acknowledged write and takes the next writer at once."""

from __future__ import annotations

from benchmarks.bench_reliability import make_source, trial


def test_sigkill_at_random_moments_loses_and_blocks_nothing(tmp_path):
    source = make_source(tmp_path / "source")
    root = tmp_path / "ws"
    root.mkdir()
    rows = [trial(root, source, seed=s, max_delay=1.0) for s in range(5)]  # one workspace: state accumulates
    assert [r["violations"] for r in rows] == [[]] * 5
    assert sum(r["acks"] for r in rows) > 20  # the kills landed among real writes
