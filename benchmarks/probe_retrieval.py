"""Retrieval recall on the development documents: does the passage that holds a reader question's gold
answer come back in the top k? MiniLM (what experts use) against BM25 and two hybrids.

Development split only (the test documents are for ``bench_documents.py``). Needs ``rank-bm25``
(``pip install rank-bm25``; not a dependency of the library).

    python benchmarks/probe_retrieval.py            # about a minute
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/probe_retrieval.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def main() -> int:
    from rank_bm25 import BM25Okapi

    from adaptive_moe.documents import load_passages
    from adaptive_moe.evaluation.scoring import get_scorer
    from adaptive_moe.experts.retrieval import PassageIndex, _content_words
    from adaptive_moe.model.encoders import make_embedder
    from benchmarks.bench_documents import load_corpus

    judge, embedder, found = get_scorer("contains"), make_embedder("minilm"), {}
    for doc in load_corpus("dev"):
        passages = load_passages([str(doc["path"])])
        index = PassageIndex.build(passages, embedder)
        queries = np.asarray(embedder.encode([q for q, _ in doc["questions"]]))
        dense = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ index.embeddings.T
        bm25 = BM25Okapi([sorted(_content_words(p.text)) or ["_"] for p in passages])
        for row, (question, golds) in enumerate(doc["questions"]):
            lexical = np.asarray(bm25.get_scores(sorted(_content_words(question))))
            fused = np.zeros(len(passages))
            for ranking in (np.argsort(-dense[row], kind="stable"), np.argsort(-lexical, kind="stable")):
                for r, i in enumerate(ranking):
                    fused[i] += 1 / (60 + r)  # reciprocal rank fusion
            rankings = {"MiniLM": -dense[row], "BM25": -lexical, "reciprocal rank fusion": -fused,
                        "MiniLM + 0.3 x BM25": -(dense[row] + 0.3 * lexical / (lexical.max() or 1))}  # fmt: skip
            for name, score in rankings.items():
                order = np.argsort(score, kind="stable")
                for k in (1, 2, 3, 4):
                    hit = any(judge.score(passages[i].text, golds) for i in order[:k])
                    found.setdefault((name, k), []).append(hit)
    print("| retrieval | top 1 | top 2 | top 3 | top 4 |\n|---|---|---|---|---|")
    for name in ("MiniLM", "BM25", "reciprocal rank fusion", "MiniLM + 0.3 x BM25"):
        print(f"| {name} | " + " | ".join(f"{np.mean(found[(name, k)]):.3f}" for k in (1, 2, 3, 4)) + " |")
    print(f"\n{len(found[('MiniLM', 1)])} reader questions of the development documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
