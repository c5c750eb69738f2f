"""How well the base reads: the reader of retrieval experts, on development documents it was not fitted on.

Development split only (the test documents are for ``bench_documents.py``): the six dev documents are cut
into two folds. For each held-out document's reader questions, the MiniLM index of that document gives
the top 1 or 2 passages, and the base answers from them (``context_prompt``, greedy, 24 new tokens):

- ``untrained``: the base as it is;
- ``synthetic``: a reader trained on invented entities alone (what a base with no shipped reader gets);
- ``synthetic+dev``: a reader trained on invented entities and the reader questions of the *other*
  fold's dev documents;
- ``synthetic+train``: a reader trained on invented entities and the reader questions of the training
  documents (``corpus/train``, written for the reader's fit and never measured on); every dev document
  is held out from it.

The corpus questions are shown with their top ``--train-passages`` retrieved passages (default ``2``;
``1,2,3`` shows each question once with each number, as the readings of a retrieval expert do).

An answer is right when it contains a gold answer and has at most 20 words. Also reported: the share
of questions whose gold answer is in the passages shown (retrieval recall).

    python benchmarks/bench_reader.py                 # ~30 min on 2 CPU cores (two readers trained)
    python benchmarks/bench_reader.py --steps 2 --synthetic 16 --out /tmp/r   # the plumbing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/bench_reader.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from peft import PeftModel

from adaptive_moe import load_base_model
from adaptive_moe.config import GenerationConfig
from adaptive_moe.creation.reader import READER_LORA, READER_STEPS, synthetic_reading_examples, train_reader
from adaptive_moe.evaluation.scoring import get_scorer
from adaptive_moe.experts.retrieval import context_prompt, supported_by
from adaptive_moe.model.encoders import make_embedder
from adaptive_moe.model.generation import generate_with_signals
from benchmarks.bench_documents import is_right, load_corpus
from benchmarks.common import add_run_arguments, command_line, machine_info, say, write_json_and_markdown
from benchmarks.fit_embedded_reader import corpus_examples, retrieved_passages

FOLDS = (("lake_tessaly_encyclopedia", "orrin_vale_company_history", "pinecrest_allotment_minutes"),
         ("saffron_barley_bread_recipe", "strand9_buoy_specs", "wickball_glossary"))  # fmt: skip


def read(base, docs, k: int, judge, embedder, decoding: str = "plain") -> dict[str, dict[str, Any]]:
    """Accuracy and retrieval recall per document with the top ``k`` passages; ``decoding`` ``quote``
    lets the answer only quote the passages shown (``generate_with_signals(quotes=...)``). Each document
    also keeps every answer's mean token log-probability and whether it was right."""
    out = {}
    for doc in docs:
        questions = doc["questions"]
        shown = retrieved_passages(doc, k, embedder)
        prompts = [context_prompt(q, s) for (q, _), s in zip(questions, shown, strict=True)]
        answers = generate_with_signals(base, prompts, GenerationConfig(max_new_tokens=24, batch_size=4),
                                        quotes=shown if decoding == "quote" else None)  # fmt: skip
        right = [is_right(a.text, g, judge) for a, (_, g) in zip(answers, questions, strict=True)]
        found = [any(x.lower() in " ".join(s).lower() for x in g) for s, (_, g) in zip(shown, questions, strict=True)]
        scores = [float(a.token_logprobs.mean()) if len(a.token_logprobs) else -1e3 for a in answers]
        backed = [supported_by(a.text, s) for a, s in zip(answers, shown, strict=True)]
        out[doc["name"]] = {"accuracy": sum(right) / len(right), "recall": sum(found) / len(found), "n": len(right),
                            "right": right, "mean_logprob": scores, "supported": backed,
                          "answers": [a.text for a in answers]}  # fmt: skip
    return out


READERS = ("untrained", "synthetic", "synthetic+dev", "synthetic+train")
DECODINGS = ("plain", "quote")


def _auroc(right: list[bool], scores: list[float]) -> float | None:
    """How well ``scores`` separate right answers from wrong ones (None when one class is missing)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(right, scores)) if 0 < sum(right) < len(right) else None


def surest_rows(rows: list[dict[str, Any]], ks: list[int]) -> list[dict[str, Any]]:
    """For each reader, decoding and document read with every ``k`` of ``ks``: the accuracy of keeping, per
    question, the answer of the reading with the highest mean token log-probability (a tie keeps the smaller
    ``k``) among those its passages back (``supported_by``; rows written before that was recorded count as
    backed), which is what a retrieval expert with ``creation.retrieval_readings: ks`` answers."""
    out = []
    keys = {(r["reader"], r.get("decoding", "plain"), r["doc"]) for r in rows}
    for reader, decoding, doc in sorted(keys):
        cell = {r["k"]: r for r in rows if (r["reader"], r.get("decoding", "plain"), r["doc"]) == (reader, decoding,
                                                                                                    doc)}  # fmt: skip
        if not set(ks) <= set(cell):
            continue
        right, scores = [], []
        for i in range(cell[ks[0]]["n"]):
            k = max(
                ks, key=lambda k: (cell[k].get("supported", [True] * cell[k]["n"])[i], cell[k]["mean_logprob"][i], -k)
            )
            right.append(cell[k]["right"][i])
            scores.append(cell[k]["mean_logprob"][i])
        out.append({"reader": reader, "k": "surest of " + ",".join(map(str, ks)), "decoding": decoding, "doc": doc,
                    "accuracy": sum(right) / len(right), "recall": cell[max(ks)]["recall"], "n": len(right),
                    "right": right, "mean_logprob": scores})  # fmt: skip
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=READER_STEPS)
    parser.add_argument("--synthetic", type=int, default=560)
    parser.add_argument("--k", default="1,2", help="passages shown, comma-separated (default 1,2)")
    parser.add_argument("--train-passages", default="2", help="passages shown with a corpus question in training")
    parser.add_argument("--targets", default=READER_LORA.target_modules, help="the readers' LoRA target modules")
    parser.add_argument("--readers", default=",".join(READERS), help=f"comma-separated subset of {READERS}")
    parser.add_argument("--decodings", default=",".join(DECODINGS), help=f"comma-separated subset of {DECODINGS}")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="write the report again from a reader.json this script wrote (no model run)",
    )
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.render is not None:
        import json

        return report(json.loads(args.render.read_text()), args)
    ks = [int(k) for k in args.k.split(",")]
    readers = [r for r in args.readers.split(",") if r]
    decodings = [d for d in args.decodings.split(",") if d]
    if not set(readers) <= set(READERS) or not set(decodings) <= set(DECODINGS):
        parser.error(f"--readers takes {READERS}, --decodings {DECODINGS}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    judge, embedder = get_scorer("contains"), make_embedder("minilm")
    corpus = {d["name"]: d for d in load_corpus("dev")}
    rows = []
    all_docs = [corpus[n] for f in FOLDS for n in f]
    plans = []
    if "untrained" in readers:
        plans.append(("untrained", None, all_docs))
    if "synthetic" in readers:
        plans.append(("synthetic", synthetic_reading_examples(args.synthetic), all_docs))
    shown = tuple(int(k) for k in args.train_passages.split(","))
    if "synthetic+dev" in readers:
        for held in FOLDS:
            others = [n for f in FOLDS if f is not held for n in f]
            dev = corpus_examples("dev", shown, 3, seed=0, only=others)
            examples = synthetic_reading_examples(args.synthetic) + dev
            plans.append(("synthetic+dev", examples, [corpus[n] for n in held]))
    if "synthetic+train" in readers:
        examples = synthetic_reading_examples(args.synthetic) + corpus_examples("train", shown, 3, seed=0)
        plans.append(("synthetic+train", examples, all_docs))
    with tempfile.TemporaryDirectory(prefix="bench_reader_") as tmp:
        for i, (name, examples, docs) in enumerate(plans):
            base = load_base_model(device="cpu")
            if examples is not None:
                say(f"training the {name} reader ({len(examples)} examples) for {len(docs)} documents", "reader")
                lora = READER_LORA.replace(target_modules=args.targets)
                folder = train_reader(base, Path(tmp) / f"reader-{i}", examples, lora=lora, steps=args.steps,
                                      progress=False)  # fmt: skip
                base.model = PeftModel.from_pretrained(base.model, str(folder))
            for k in ks:
                for decoding in decodings:
                    say(f"{name} reading the top {k} ({decoding})", "reader")
                    for doc, r in read(base, docs, k, judge, embedder, decoding).items():
                        rows.append({"reader": name, "k": k, "decoding": decoding, "doc": doc, **r})
    result = {"machine": machine_info(args.threads), "command": command_line(__file__, argv),
              "settings": {"steps": args.steps, "synthetic": args.synthetic, "train_passages": list(shown),
                           "targets": args.targets},
              "rows": rows,
              "elapsed_s": time.perf_counter() - started}  # fmt: skip
    return report(result, args)


def report(result: dict[str, Any], args: Any) -> int:
    """Write ``reader.{json,md}`` under ``args.out`` (with the surest-of-readings rows when several k ran)."""
    rows = [r for r in result["rows"] if isinstance(r["k"], int)]
    ks = sorted({r["k"] for r in rows})
    readers = list(dict.fromkeys(r["reader"] for r in rows))
    decodings = list(dict.fromkeys(r.get("decoding", "plain") for r in rows))
    if len(ks) > 1:
        rows = rows + surest_rows(rows, ks)
        ks = [*ks, "surest of " + ",".join(map(str, ks))]
    result = {**result, "rows": rows}
    steps = result["settings"]["steps"]
    columns = [(r, d) for r in readers for d in decodings]
    lines = [
        "# How well the base reads (dev documents held out from the reader's fit)",
        "",
        f"`{result['command']}` on {result['machine']['date']}, {result['machine']['cpus']} CPUs; "
        f"{result['elapsed_s'] / 60:.1f} min. Readers: {steps} steps. An answer is right when it contains a "
        "gold answer and has at most 20 words; recall: the gold answer is in the passages shown. Decoding `plain`: "
        "greedy; `quote`: greedy, the answer may only quote the passages shown. AUROC: how well the answer's mean "
        "token log-probability separates right answers from wrong ones.",
        "",
        "| document | passages | recall | " + " | ".join(f"{r} {d}" for r, d in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for k in ks:
        for doc in [n for f in FOLDS for n in f]:
            cell = {(r["reader"], r.get("decoding", "plain")): r for r in rows if r["doc"] == doc and r["k"] == k}
            if cell:
                first = next(iter(cell.values()))
                accs = [f"{cell[c]['accuracy']:.2f}" if c in cell else "—" for c in columns]
                lines.append(f"| {doc} | {k} | {first['recall']:.2f} | " + " | ".join(accs) + " |")
        means, aurocs = [], []
        for reader, decoding in columns:
            picked = [
                r for r in rows if r["k"] == k and r["reader"] == reader and r.get("decoding", "plain") == decoding
            ]
            right = [x for r in picked for x in r["right"]]
            scores = [x for r in picked for x in r["mean_logprob"]]
            means.append(f"**{sum(right) / len(right):.2f}**" if right else "—")
            auroc = _auroc(right, scores)
            aurocs.append(f"{auroc:.2f}" if auroc is not None else "—")
        lines.append(f"| **all** | {k} | | " + " | ".join(means) + " |")
        lines.append(f"| AUROC | {k} | | " + " | ".join(aurocs) + " |")
    write_json_and_markdown(Path(args.out), "reader", result, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
