"""How well the base reads: the reader of retrieval experts, on development documents it was not fitted on.

Development split only (the test documents are for ``bench_documents.py``): the six dev documents are cut
into two folds. For each held-out document's reader questions, the MiniLM index of that document gives
the top 1 or 2 passages, and the base answers from them (``context_prompt``, greedy, 24 new tokens):

- ``untrained``: the base as it is;
- ``synthetic``: a reader trained on invented entities alone (what a base with no shipped reader gets);
- ``synthetic+dev``: a reader trained on invented entities and the reader questions of the *other*
  fold's dev documents (how the shipped reader is made, minus the held-out fold).

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

if not __package__:  # run as `python benchmarks/bench_reader.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from peft import PeftModel

from adaptive_moe import load_base_model
from adaptive_moe.config import GenerationConfig
from adaptive_moe.creation.reader import READER_STEPS, synthetic_reading_examples, train_reader
from adaptive_moe.evaluation.scoring import get_scorer
from adaptive_moe.experts.retrieval import context_prompt
from adaptive_moe.model.encoders import make_embedder
from adaptive_moe.model.generation import generate_with_signals
from benchmarks.bench_documents import is_right, load_corpus
from benchmarks.common import add_run_arguments, command_line, machine_info, say, write_json_and_markdown
from benchmarks.fit_embedded_reader import corpus_examples, retrieved_passages

FOLDS = (("lake_tessaly_encyclopedia", "orrin_vale_company_history", "pinecrest_allotment_minutes"),
         ("saffron_barley_bread_recipe", "strand9_buoy_specs", "wickball_glossary"))  # fmt: skip


def read(base, docs, k: int, judge, embedder) -> dict[str, dict[str, float]]:
    """Accuracy and retrieval recall per document with the top ``k`` passages."""
    out = {}
    for doc in docs:
        questions = doc["questions"]
        shown = retrieved_passages(doc, k, embedder)
        prompts = [context_prompt(q, s) for (q, _), s in zip(questions, shown, strict=True)]
        answers = generate_with_signals(base, prompts, GenerationConfig(max_new_tokens=24, batch_size=4))
        right = [is_right(a.text, g, judge) for a, (_, g) in zip(answers, questions, strict=True)]
        found = [any(x.lower() in " ".join(s).lower() for x in g) for s, (_, g) in zip(shown, questions, strict=True)]
        out[doc["name"]] = {"accuracy": sum(right) / len(right), "recall": sum(found) / len(found), "n": len(right)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=READER_STEPS)
    parser.add_argument("--synthetic", type=int, default=560)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    judge, embedder = get_scorer("contains"), make_embedder("minilm")
    corpus = {d["name"]: d for d in load_corpus("dev")}
    rows = []
    all_docs = [corpus[n] for f in FOLDS for n in f]
    plans = [("untrained", None, all_docs), ("synthetic", synthetic_reading_examples(args.synthetic), all_docs)]
    for held in FOLDS:
        others = [n for f in FOLDS if f is not held for n in f]
        examples = synthetic_reading_examples(args.synthetic) + corpus_examples("dev", 2, 3, seed=0, only=others)
        plans.append(("synthetic+dev", examples, [corpus[n] for n in held]))
    with tempfile.TemporaryDirectory(prefix="bench_reader_") as tmp:
        for i, (name, examples, docs) in enumerate(plans):
            base = load_base_model(device="cpu")
            if examples is not None:
                say(f"training the {name} reader ({len(examples)} examples) for {len(docs)} documents", "reader")
                folder = train_reader(base, Path(tmp) / f"reader-{i}", examples, steps=args.steps, progress=False)
                base.model = PeftModel.from_pretrained(base.model, str(folder))
            for k in (1, 2):
                say(f"{name} reading the top {k}", "reader")
                for doc, r in read(base, docs, k, judge, embedder).items():
                    rows.append({"reader": name, "k": k, "doc": doc, **r})
    result = {"machine": machine_info(args.threads), "command": command_line(__file__, argv),
              "settings": {"steps": args.steps, "synthetic": args.synthetic}, "rows": rows,
              "elapsed_s": time.perf_counter() - started}  # fmt: skip
    lines = [
        "# How well the base reads (dev documents held out from the reader's fit)",
        "",
        f"`{result['command']}` on {result['machine']['date']}, {result['machine']['cpus']} CPUs; "
        f"{result['elapsed_s'] / 60:.1f} min. Readers: {args.steps} steps. An answer is right when it contains a "
        "gold answer and has at most 20 words; recall: the gold answer is in the passages shown.",
        "",
        "| document | passages | recall | untrained | synthetic | synthetic+dev |",
        "|---|---|---|---|---|---|",
    ]
    for k in (1, 2):
        for doc in [n for f in FOLDS for n in f]:
            cell = {r["reader"]: r for r in rows if r["doc"] == doc and r["k"] == k}
            if cell:
                first = next(iter(cell.values()))
                accs = [f"{cell[n]['accuracy']:.2f}" if n in cell else "—" for n in ("untrained", "synthetic",
                                                                                     "synthetic+dev")]  # fmt: skip
                lines.append(f"| {doc} | {k} | {first['recall']:.2f} | " + " | ".join(accs) + " |")
        means = []
        for n in ("untrained", "synthetic", "synthetic+dev"):
            picked = [r for r in rows if r["k"] == k and r["reader"] == n]
            total = sum(r["n"] for r in picked)
            means.append(f"**{sum(r['accuracy'] * r['n'] for r in picked) / total:.2f}**" if total else "—")
        lines.append(f"| **all** | {k} | | " + " | ".join(means) + " |")
    write_json_and_markdown(Path(args.out), "reader", result, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
