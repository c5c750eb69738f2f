"""Retrieval recall on the training and development documents: does the passage that holds a reader
question's gold answer come back in the top k? Cosine similarity of MiniLM embeddings alone (weight 0),
BM25 alone, and the hybrid a retrieval expert uses (cosine plus ``creation.retrieval_lexical_weight``
times the passages' BM25 score relative to the best one: :meth:`PassageIndex.search`).

Training and development splits only (the test documents are for ``bench_documents.py``); the weight was
chosen here on both.

    python benchmarks/probe_retrieval.py            # about a minute
    python benchmarks/probe_retrieval.py --weights 0,0.15 --splits dev
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/probe_retrieval.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

KS = (1, 2, 3, 4)


def recall(split: str, weights: list[float]) -> dict[str, dict[int, list[bool]]]:
    """For each ranking of ``split``'s passages and each k of :data:`KS`, whether each reader question's gold
    answer is in the top k."""
    from adaptive_moe.documents import load_passages
    from adaptive_moe.evaluation.scoring import get_scorer
    from adaptive_moe.experts.retrieval import PassageIndex
    from adaptive_moe.model.encoders import make_embedder
    from benchmarks.bench_documents import load_corpus

    judge, embedder, found = get_scorer("contains"), make_embedder("minilm"), {}
    for doc in load_corpus(split):
        index = PassageIndex.build(load_passages([str(doc["path"])]), embedder)
        questions = [q for q, _ in doc["questions"]]
        vectors = np.asarray(embedder.encode(questions))
        rankings = {f"cosine + {w:g} x BM25" if w else "cosine (MiniLM)": index.search(vectors, max(KS), questions, w)
                    for w in weights}  # fmt: skip
        lexical = index.lexical_scores(questions)
        rankings["BM25 alone"] = [[(int(i), 0.0) for i in np.argsort(-row, kind="stable")[: max(KS)]]
                                  for row in lexical]  # fmt: skip
        for name, hits in rankings.items():
            for row, (_, golds) in zip(hits, doc["questions"], strict=True):
                for k in KS:
                    found.setdefault(name, {}).setdefault(k, []).append(
                        any(judge.score(index.passages[i].text, golds) for i, _ in row[:k])
                    )
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="0,0.1,0.15,0.2,0.3,0.5", help="lexical weights, comma-separated")
    parser.add_argument("--splits", default="train,dev", help="corpus splits, comma-separated (not test)")
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    if "test" in splits:
        parser.error("the test documents are for bench_documents.py; choose among train and dev")
    weights = [float(w) for w in args.weights.split(",")]
    for split in splits:
        found = recall(split, weights)
        print(f"\n{split}: {len(next(iter(found.values()))[1])} reader questions\n")
        print("| retrieval | " + " | ".join(f"top {k}" for k in KS) + " |\n|---|" + "---|" * len(KS))
        for name, by_k in found.items():
            print(f"| {name} | " + " | ".join(f"{np.mean(by_k[k]):.3f}" for k in KS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
