"""Retrieval recall on the training and development documents: does the passage that holds a reader
question's gold answer come back in the top k? Cosine similarity of MiniLM embeddings alone (weight 0),
BM25 alone, and the hybrid a retrieval expert uses (cosine plus ``creation.retrieval_lexical_weight``
times the passages' BM25 score relative to the best one: :meth:`PassageIndex.search`).

With ``--rerank``, also the hybrid's nearest ``--candidates`` passages ordered again by their score plus each
given weight times how likely the embedded base model finds the question after each passage
(:func:`~adaptive_moe.experts.retrieval.question_likelihood`, ``creation.retrieval_rerank_weight``): one
forward pass per question and passage, about 1.5 s a question on 2 CPU cores.

Training and development splits only (the test documents are for ``bench_documents.py``); the weights were
chosen here on both.

    python benchmarks/probe_retrieval.py            # about a minute
    python benchmarks/probe_retrieval.py --weights 0,0.15 --splits dev
    python benchmarks/probe_retrieval.py --weights 0.15 --rerank 0.1,0.2,0.3,0.5 --splits dev   # 4 minutes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/probe_retrieval.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

KS = (1, 2, 3, 4)


LEXICAL = 0.15  # the hybrid whose candidates --rerank orders again (creation.retrieval_lexical_weight)


def recall(split: str, weights: list[float], rerank: list[float] = (), candidates: int = 6,
           base=None) -> dict[str, dict[int, list[bool]]]:  # fmt: skip
    """For each ranking of ``split``'s passages and each k of :data:`KS`, whether each reader question's gold
    answer is in the top k. With ``rerank`` weights (and ``base``, the model that reads), also the hybrid's
    nearest ``candidates`` passages ordered again as :func:`~adaptive_moe.experts.retrieval.rerank` does (the
    question likelihoods worked out once for every weight)."""
    from adaptive_moe.documents import load_passages
    from adaptive_moe.evaluation.scoring import get_scorer
    from adaptive_moe.experts.retrieval import PassageIndex, question_likelihood, reorder
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
        if rerank:
            near = index.search(vectors, max(candidates, max(KS)), questions, LEXICAL)
            likely = [question_likelihood(base, q, [index.passages[i].text for i, _ in row[:candidates]])
                      for q, row in zip(questions, near, strict=True)]  # fmt: skip
            for w in rerank:
                rankings[f"cosine + {LEXICAL:g} x BM25, top {candidates} + {w:g} x question likelihood"] = [
                    reorder(row[:candidates], q, w) + row[candidates:] for row, q in zip(near, likely, strict=True)
                ]
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
    parser.add_argument("--rerank", default="", help="question-likelihood weights, comma-separated (loads the model)")
    parser.add_argument("--candidates", type=int, default=6, help="passages --rerank orders again (6)")
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    if "test" in splits:
        parser.error("the test documents are for bench_documents.py; choose among train and dev")
    try:
        weights = [float(w) for w in args.weights.split(",") if w]
        rerank = [float(w) for w in args.rerank.split(",") if w]
    except ValueError:
        parser.error(f"--weights and --rerank take numbers, comma-separated; got {args.weights!r}, {args.rerank!r}")
    if any(w < 0 for w in weights + rerank) or args.candidates < 1:
        parser.error("weights are 0 or more and --candidates at least 1")
    base = None
    if rerank:
        from adaptive_moe import load_base_model

        base = load_base_model()
    for split in splits:
        found = recall(split, weights, rerank, args.candidates, base)
        print(f"\n{split}: {len(next(iter(found.values()))[1])} reader questions\n")
        print("| retrieval | " + " | ".join(f"top {k}" for k in KS) + " |\n|---|" + "---|" * len(KS))
        for name, by_k in found.items():
            print(f"| {name} | " + " | ".join(f"{np.mean(by_k[k]):.3f}" for k in KS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
