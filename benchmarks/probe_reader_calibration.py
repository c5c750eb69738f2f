"""Whose confidence calibrator should a retrieval expert use? Each expert's own (fitted at admission on
its rule-made check questions, the default) against one for the shared reader (fitted on the reader's
answers to reader questions of documents it never saw), and against none (``exp`` of the mean log-prob).

Reads two development runs, no model: a ``bench_documents.py --split dev --reader DIR`` run (DIR a reader
fitted without the development documents) and a ``bench_reader.py --k 1,2,3`` run (the same recipe held
out), whose surest-reading answers fit the reader's calibrator; each document's questions are scored by a
calibrator fitted on the other documents' answers. For every question its expert was tried on, the
answer it gave (or would have given, for an abstention) is kept or withheld by each policy at the
confidence floor.

    python benchmarks/probe_reader_calibration.py   # seconds; the committed runs by default
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/probe_reader_calibration.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def raw_logprob(confidence: float, calibrator) -> float:
    """The mean log-prob behind a confidence the expert's Platt calibrator (or ``exp``, without one) gave."""
    if calibrator is None:
        return math.log(max(confidence, 1e-12))
    c = min(max(confidence, 1e-12), 1 - 1e-12)
    return (math.log(c / (1 - c)) - calibrator.intercept) / calibrator.slope


def main(argv: list[str] | None = None) -> int:
    from adaptive_moe.evaluation.scoring import get_scorer
    from adaptive_moe.uncertainty.calibration import Calibrator, make_calibrator
    from benchmarks.bench_documents import is_right

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(RESULTS / "documents_dev_heldout_reader.json"))
    parser.add_argument("--reader-run", default=str(RESULTS / "reader_train_more.json"))
    parser.add_argument("--floor", type=float, default=0.3)
    args = parser.parse_args(argv)
    run, reader_run = json.loads(Path(args.run).read_text()), json.loads(Path(args.reader_run).read_text())
    if run["settings"]["split"] != "dev":
        parser.error("development runs only: the test documents are for bench_documents.py's report")
    judge = get_scorer("contains")
    surest = [r for r in reader_run["rows"] if str(r["k"]).startswith("surest of")]

    def fitted_without(doc: str):
        keep = [r for r in surest if r["doc"] != doc]
        scores = np.concatenate([r["mean_logprob"] for r in keep])
        return make_calibrator("platt").fit(scores, np.concatenate([r["right"] for r in keep]).astype(int))

    reader_calibrator = {doc: fitted_without(doc) for doc in {row["doc"] for row in run["rows"]}}  # one per document

    policies = ("each expert's own (default)", "none: exp of the mean log-prob", "the reader's")
    tally = {p: {"right": 0, "abstained": 0, "abstained_right": 0} for p in policies}
    for row in run["rows"]:
        tried = row["route"] in ("expert", "abstain") and row.get("candidates")
        if not tried:
            for p in policies:
                tally[p]["right"] += row["right"]
            continue
        state = (run["documents"][row["doc"]].get("metrics") or {}).get("confidence_calibrator")
        own = Calibrator.from_dict(state) if state else None
        first = row["candidates"][0]
        raw = raw_logprob(first["confidence"], own)
        ok = is_right(first["text"], row["gold"], judge)
        for p, confidence in zip(policies, (first["confidence"], math.exp(min(raw, 0.0)),
                                            float(reader_calibrator[row["doc"]](raw))), strict=True):  # fmt: skip
            if confidence >= args.floor:
                tally[p]["right"] += ok
            else:
                tally[p]["abstained"] += 1
                tally[p]["abstained_right"] += ok
    n = len(run["rows"])
    print(f"{n} reader questions of the development documents; confidence floor {args.floor}\n")
    print("| calibrator | right | abstained | right among the withheld | right among the answers given |")
    print("|---|---|---|---|---|")
    for p, t in tally.items():
        given = n - t["abstained"]
        print(f"| {p} | {t['right'] / n:.3f} ({t['right']}) | {t['abstained']} | {t['abstained_right']} | "
              f"{t['right'] / given:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
