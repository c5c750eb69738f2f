"""``benchmarks/probe_retrieval.py``: recall at k grows with k; re-ranking with weight 0 is the hybrid it starts
from; re-ranking only reorders the candidates; the test split and bad weights are refused (a tiny random model
reads; the shipped MiniLM embeds)."""

from __future__ import annotations

import itertools

import pytest

from benchmarks import bench_documents
from benchmarks import probe_retrieval as probe


def test_recall_grows_with_k_and_a_zero_rerank_weight_keeps_the_hybrid(tiny_base, monkeypatch):
    first = bench_documents.load_corpus("dev")[0]
    monkeypatch.setattr(bench_documents, "load_corpus", lambda split: [first])  # one document: quick
    found = probe.recall("dev", [0.0, probe.LEXICAL], rerank=[0.0, 5.0], candidates=3, base=tiny_base)
    hybrid = found[f"cosine + {probe.LEXICAL:g} x BM25"]
    zero = found[f"cosine + {probe.LEXICAL:g} x BM25, top 3 + 0 x question likelihood"]
    heavy = found[f"cosine + {probe.LEXICAL:g} x BM25, top 3 + 5 x question likelihood"]
    assert zero == hybrid
    for by_k in found.values():
        assert [len(by_k[k]) for k in probe.KS] == [len(first["questions"])] * len(probe.KS)
        for a, b in itertools.pairwise(probe.KS):  # found in the top k: found in the top k + 1
            assert all(b_ >= a_ for a_, b_ in zip(by_k[a], by_k[b], strict=True))
    assert heavy[3] == hybrid[3]  # the top 3 are the same 3 candidates, only ordered again
    assert heavy[4] == hybrid[4]  # and the passages after them keep their places


def test_the_probe_refuses_the_test_split_and_bad_weights(capsys):
    for args in (["--splits", "test"], ["--rerank", "x"], ["--rerank", "-1"], ["--candidates", "0", "--rerank", "1"]):
        with pytest.raises(SystemExit) as stop:
            probe.main(args)
        assert stop.value.code == 2, args
    err = capsys.readouterr().err
    assert "choose among train and dev" in err and "take numbers" in err and "0 or more" in err
