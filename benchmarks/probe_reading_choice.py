"""Which reading a retrieval expert keeps: its reader answers each question once with its nearest 1, 2 and 3
passages (ranked as the expert ranks them, ``creation.retrieval_lexical_weight``), and one answer is kept.
This probe measures, on questions the reader was not fitted on, how often the kept answer is right when the
readings are ranked by sureness (mean token log-probability) plus a weight times :func:`sentence_match` (how
well the sentence the answer was taken from matches the question: ``creation.retrieval_sentence_match_weight``),
against the best any chooser could do (some reading right).

Training and development documents only (the test documents are for ``bench_documents.py``). The reader must
not have been fitted on the documents measured: a reader fitted on one fold of the training documents
(``fit_embedded_reader.py --splits train --fold 0``) for ``--split train --fold 1``, or on the training
documents alone for ``--split dev``.

    python benchmarks/fit_embedded_reader.py --splits train --fold 0 --target /tmp/reader_fold0   # ~17 min
    python benchmarks/probe_reading_choice.py --reader /tmp/reader_fold0 --split train --fold 1    # ~12 min
    python benchmarks/probe_reading_choice.py --rescore benchmarks/results/reading_choice.json --weights 0,0.25,0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/probe_reading_choice.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_run_arguments, command_line, machine_info, say, write_json_and_markdown

READINGS = (1, 2, 3)


def read_all(reader: str, split: str, fold: int | None, lexical_weight: float,
             quote: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Each reader question of ``split`` (of ``fold``'s documents) read with its nearest 1, 2 and 3 passages:
    per question, the passages shown and each reading's answer, sureness and whether it is right. With
    ``quote``, each answer may only quote the passages its reading showed (``creation.retrieval_quote``)."""
    import torch
    from peft import PeftModel

    from adaptive_moe import load_base_model
    from adaptive_moe.config import GenerationConfig
    from adaptive_moe.evaluation.scoring import get_scorer
    from adaptive_moe.experts.retrieval import context_prompt
    from adaptive_moe.model.encoders import make_embedder
    from adaptive_moe.model.generation import generate_with_signals
    from adaptive_moe.uncertainty.base import MeanTokenLogProb
    from benchmarks.bench_documents import is_right, load_corpus
    from benchmarks.fit_embedded_reader import retrieved_passages, training_fold

    judge, embedder, start = get_scorer("contains"), make_embedder("minilm"), time.perf_counter()
    base = load_base_model(device="cpu")
    base.model = PeftModel.from_pretrained(base.model, reader)
    only = None if fold is None else set(training_fold(split, fold))
    questions: list[dict[str, Any]] = []
    with torch.inference_mode():
        for doc in load_corpus(split):
            if only is not None and doc["name"] not in only:
                continue
            texts = [q for q, _ in doc["questions"]]
            shown = retrieved_passages(doc, max(READINGS), embedder, lexical_weight)  # ranked as the expert ranks
            prompts = [context_prompt(q, s[:k]) for q, s in zip(texts, shown, strict=True) for k in READINGS]
            quotes = [s[:k] for s in shown for k in READINGS] if quote else None
            answers = generate_with_signals(base, prompts, GenerationConfig(max_new_tokens=48, batch_size=4),
                                            quotes=quotes)  # fmt: skip
            for n, ((question, golds), passages) in enumerate(zip(doc["questions"], shown, strict=True)):
                mine = answers[n * len(READINGS) : (n + 1) * len(READINGS)]
                questions.append({
                    "doc": doc["name"], "question": question, "gold": golds, "passages": passages,
                    "answers": [a.text for a in mine], "sureness": [MeanTokenLogProb().score(a) for a in mine],
                    "right": [is_right(a.text, golds, judge) for a in mine],
                })  # fmt: skip
            say(f"{doc['name']}: {len(texts)} questions, {time.perf_counter() - start:.0f}s", "probe")
    return questions


def kept_right(questions: list[dict[str, Any]], weight: float) -> list[bool]:
    """Whether the reading a retrieval expert keeps (:func:`rank_reading`, :func:`best_readings`) is right, per
    question, with ``weight`` as its ``sentence_match_weight``."""
    from adaptive_moe.experts.retrieval import best_readings, rank_reading

    out = []
    for q in questions:
        rank = [rank_reading(q["question"], a, q["passages"][:k], s, weight)
                for a, s, k in zip(q["answers"], q["sureness"], READINGS, strict=True)]  # fmt: skip
        [row] = best_readings(rank, [0] * len(rank)).values()
        out.append(q["right"][row])
    return out


def _row(name: str, right: int, n: int, flips: dict[str, int] | None = None) -> str:
    against = f"{flips['turned_right']} / {flips['turned_wrong']}" if flips else ""
    return f"| {name} | {right} | {right / n:.3f} | {against} |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", help="a reader adapter folder not fitted on what is measured")
    parser.add_argument("--split", default="train", choices=("train", "dev"), help="corpus split (never test)")
    parser.add_argument("--fold", type=int, choices=(0, 1), default=None, help="the split's fold measured")
    parser.add_argument("--weights", default="0,0.5,1,2,3", help="sentence-match weights, comma-separated")
    parser.add_argument("--lexical-weight", type=float, default=0.15, help="retrieval's lexical weight (0.15)")
    parser.add_argument("--quote", action="store_true", help="answers may only quote the passages shown")
    parser.add_argument("--name", default="reading_choice", help="results file name (reading_choice)")
    parser.add_argument(
        "--rescore", type=Path, default=None, help="choose again among an earlier run's answers (its JSON)"
    )
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if (args.reader is None) == (args.rescore is None):
        parser.error("give --reader (read the questions) or --rescore (choose among an earlier run's answers)")
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        parser.error(f"--weights {args.weights!r}: give numbers from 0 to 10, comma-separated")
    if not all(0 <= w <= 10 for w in weights):
        parser.error(f"--weights {args.weights!r}: give numbers from 0 to 10, comma-separated")
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.rescore is not None:  # the same answers, chosen again: the run that read them is kept as it was
        earlier = json.loads(args.rescore.read_text())
        questions, run = earlier["rows"], {k: earlier[k] for k in ("machine", "command", "settings", "elapsed_s")}
    else:
        questions = read_all(args.reader, args.split, args.fold, args.lexical_weight, args.quote)
        run = {"machine": machine_info(args.threads), "command": command_line(__file__, argv),
               "settings": {"reader": args.reader, "split": args.split, "fold": args.fold,
                            "readings": list(READINGS), "lexical_weight": args.lexical_weight, "quote": args.quote},
               "elapsed_s": time.perf_counter() - start}  # fmt: skip
    kept = {w: kept_right(questions, w) for w in weights}
    surest = kept_right(questions, 0.0)
    n = len(questions)
    any_right = sum(any(q["right"]) for q in questions)
    result = {
        **run, "questions": n, "any_reading_right": any_right,
        "reading_right": {k: sum(q["right"][i] for q in questions) for i, k in enumerate(READINGS)},
        "kept_right": {f"{w:g}": sum(r) for w, r in kept.items()},
        "against_surest": {f"{w:g}": {"turned_right": sum(b and not a for a, b in zip(surest, r, strict=True)),
                                      "turned_wrong": sum(a and not b for a, b in zip(surest, r, strict=True))}
                           for w, r in kept.items()},
        "rows": questions,
    }  # fmt: skip
    settings = result["settings"]
    scope = f"the {settings['split']} documents" + ("" if settings["fold"] is None else f" (fold {settings['fold']})")
    lines = [
        "# Which reading a retrieval expert keeps",
        "",
        f"`{result['command']}` on {result['machine']['date']}, {result['machine']['cpus']} CPUs; "
        f"{result['elapsed_s'] / 60:.1f} min. {n} reader questions of {scope}, read by a reader not fitted on "
        f"them with their nearest {', '.join(map(str, READINGS))} passages"
        f"{' (answers may only quote them)' if settings.get('quote') else ''}. Kept: the backed reading with the "
        "highest mean token log-probability plus the weight times its sentence match.",
        "",
        "| kept reading | right | share | against the surest alone: turned right / wrong |",
        "|---|---|---|---|",
        *(_row(f"always {k} passage{'s' if k > 1 else ''}", c, n) for k, c in result["reading_right"].items()),
        *(
            _row(
                f"sentence-match weight {w}{' (surest alone)' if float(w) == 0 else ''}",
                c,
                n,
                result["against_surest"][w],
            )
            for w, c in result["kept_right"].items()
        ),
        _row("some reading right (no chooser does better)", any_right, n),
    ]
    write_json_and_markdown(args.out, args.name, result, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
