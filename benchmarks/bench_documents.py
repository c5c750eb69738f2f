"""Experts from documents no one tuned the extractor to (issue 15): the reader-question protocol.

The corpus (``benchmarks/corpus/``) holds short invented documents of different genres, seven for
development (``dev/``) and six for the report (``test/``), each with 18-21 reader questions worded
unlike the document and written before anyone looked at the extractor (``train/`` holds more, for the
shipped reader's fit alone). For every document of a split,
through the public API as a new user would: ``moe.create_expert(name, documents=[path])`` on one
system that keeps every expert it admits; then every reader question of the split through
``moe.generate`` with all the experts registered, and a held-out slice of the general check set before
and after. Reported per document:

- coverage: share of the questions whose gold answer is among the answers the expert was trained on
  (for an expert that reads its documents: in the passages it retrieved for the question);
- learning: accuracy on the covered questions;
- routing: share of the questions sent to this document's expert (the top expert of an ``expert``
  route, or the expert that was tried and abstained, its answer below the confidence floor);
- abstained: share of the questions its expert was tried on and abstained ("I don't know");
- accuracy: share answered right; an answer is right when it contains a gold answer and has at most
  20 words (an expert that recites its passage is not answering);
- admitted, creation time, and the training set's counts;

and for the general questions: right before, right after, lost, and the share sent to any expert.

    python benchmarks/bench_documents.py --split test                 # the report (about 13 min on 2 cores)
    python benchmarks/bench_documents.py --split test --approach rules  # rule-made experts (about 25 min)
    python benchmarks/bench_documents.py --split test --approach generated  # + questions by the base (12 min)
    python benchmarks/bench_documents.py --split dev --docs 2         # a quick development look
    python benchmarks/fit_embedded_reader.py --splits train --steps 300 --target /tmp/reader_train
    python benchmarks/bench_documents.py --split dev --reader /tmp/reader_train  # dev, held out from the reader
    python benchmarks/bench_documents.py --split dev --reader /tmp/reader_train --set creation.retrieval_readings=[2]
    python benchmarks/bench_documents.py --tiny --docs 1 --out /tmp/d # the plumbing, on a tiny random model

Writes ``documents_<split>_<approach>.{json,md}`` under ``--out`` (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

if not __package__:  # run as `python benchmarks/bench_documents.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, AdaptiveMoEError
from adaptive_moe.creation import general_knowledge_questions
from adaptive_moe.creation import reader as reader_module
from adaptive_moe.creation.augment import augmented_training_data
from adaptive_moe.creation.data import build_training_data
from adaptive_moe.evaluation.scoring import get_scorer
from adaptive_moe.routing import Query
from benchmarks.common import add_run_arguments, command_line, load_base, machine_info, say, write_json_and_markdown

CORPUS = Path(__file__).resolve().parent / "corpus"
SPLITS = ("dev", "test")
#: reader-training documents (``corpus/train``): never measured on, not part of ``all``
TRAIN_SPLIT = "train"
MAX_ANSWER_WORDS = 20
#: how the expert is made from its documents; each approach is a set of config changes
APPROACHES: dict[str, dict[str, Any]] = {
    "rules": {"creation.method": "rules"},  # rule-made questions, restatements, sentences (creation/qa_rules.py)
    # a passage index + the base's shared reader (shipped for the embedded model): creation trains nothing
    "retrieval": {"creation.method": "retrieval", "creation.reader": "shared"},
    # the same, and the answer may only quote the passages read (constrained decoding)
    "retrieval_quote": {"creation.method": "retrieval", "creation.reader": "shared", "creation.retrieval_quote": True},
    # the default, and questions written by the base itself (one per passage, kept when the answer is in the
    # passage and not in the question) check the expert and teach the router its domain
    "generated": {"creation.method": "retrieval", "creation.reader": "shared", "creation.question_model": "base"},
    # documents learnt by heart with no parse: restatements, cloze items, questions in place (creation/augment.py)
    "augment": {"creation.method": "augment"},
    # a passage index + a LoRA trained on the document's rule-made questions shown with their passages (RAFT)
    "retrieval_document": {
        "creation.method": "retrieval",
        "creation.reader": "document",
        "creation.retrieval_top_k": 2,
        "creation.retrieval_max_length": 256,
        "creation.lora.min_steps": 100,
    },
}


def load_corpus(split: str) -> list[dict[str, Any]]:
    """The documents of ``split`` (``dev``, ``test``, ``all`` = both, or ``train``, the documents the shipped
    reader is also fitted on) with their reader questions, by name."""
    splits = SPLITS if split == "all" else (split,)
    docs = []
    for s in splits:
        for spec in sorted((CORPUS / s).glob("*.json")):
            data = json.loads(spec.read_text(encoding="utf-8"))
            docs.append({"name": spec.stem, "split": s, "genre": data["genre"], "path": spec.parent / data["document"],
                         "questions": [(q, list(g)) for q, g in data["questions"]]})  # fmt: skip
    return docs


def is_right(answer: str, golds: list[str], judge) -> bool:
    """Contains a gold answer and is short: the protocol's notion of a right answer."""
    return len(answer.split()) <= MAX_ANSWER_WORDS and bool(judge.score(answer, golds))


def covered(golds: list[str], trained_answers: list[str], judge) -> bool:
    """Whether a gold answer is among the answers the expert was trained on."""
    return any(judge.score(a, golds) for a in trained_answers)


def _covering_texts(out, trained_answers: list[str]) -> list[str]:
    """Where an answer could come from: the passages an expert that reads its documents retrieved for the
    question (its citations), else the answers the expert was trained on."""
    citations = out.attribution.citations if out.route == "expert" else []
    return [c["text"] for c in citations] if citations else trained_answers


def general_slice(n: int) -> list[tuple[str, list[str]]]:
    """``n`` questions of the shipped check set, odd-numbered first (the shipped router was fitted on the
    even-numbered ones)."""
    rows = list(enumerate(general_knowledge_questions()))
    rows = sorted(rows, key=lambda item: (item[0] % 2 == 0, item[0]))[:n]
    return [(q, list(a)) for _, (q, a) in sorted(rows)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Create one expert per document of the split, then ask every question; returns the result."""
    torch.set_num_threads(args.threads)
    judge = get_scorer("contains")
    docs = load_corpus(args.split)
    if args.only:
        wanted = set(args.only.split(","))
        docs = [d for d in docs if d["name"] in wanted]
    docs = docs[: args.docs or None]
    general = general_slice(args.general if args.general is not None else (8 if args.tiny else 60))
    started = time.perf_counter()
    # the shipped reader is fitted on the development documents' questions: --reader puts one fitted without
    # them in its place, so a development run measures documents the reader never saw
    swap = (mock.patch.object(reader_module, "EMBEDDED_READER_DIR", Path(args.reader)) if args.reader
            else contextlib.nullcontext())  # fmt: skip
    with swap, tempfile.TemporaryDirectory(prefix="bench_documents_") as tmp:
        work = Path(tmp)
        base, _ = load_base(args.tiny, work)
        changes = {"gaps.enabled": False, **APPROACHES[args.approach], **args.changes}
        if args.tiny:
            changes.update({"creation.lora.min_steps": 0, "creation.lora.epochs": 1.0,
                            "creation.forced_general_questions": 4})  # fmt: skip
        cfg = AdaptiveMoEConfig().replace(workspace=str(work / "workspace"), **changes)
        gen = {"max_new_tokens": args.max_new_tokens}
        with AdaptiveMoE(cfg, base=base) as moe:
            say(f"{len(general)} general questions before any expert", "documents")
            before = moe.generate([q for q, _ in general], record_gaps=False, **gen)
            per_doc: dict[str, dict[str, Any]] = {}
            for doc in docs:
                say(f"create_expert {doc['name']} ({doc['genre']})", "documents")
                t = time.perf_counter()
                try:
                    result = moe.create_expert(doc["name"], documents=[str(doc["path"])], progress=False)
                    outcome = {"admitted": result.admitted, "timings": result.timings, "data": result.data,
                               "reasons": result.reasons, "metrics": result.metrics, "error": None}  # fmt: skip
                except AdaptiveMoEError as e:  # what a user would see: a clear refusal, no expert
                    outcome = {"admitted": False, "error": str(e), "reasons": [], "metrics": {}, "data": {}}
                    say(f"  refused: {e}", "documents")
                seconds = time.perf_counter() - t
                try:
                    make = augmented_training_data if cfg.creation.method == "augment" else build_training_data
                    data = make([str(doc["path"])], restatements=cfg.creation.restatements,
                                heldout_fraction=cfg.creation.heldout_fraction)  # fmt: skip
                    trained = [a for _, a in data.qa_pairs] + [a for _, golds in data.heldout for a in golds]
                except AdaptiveMoEError:
                    trained = []
                per_doc[doc["name"]] = {"genre": doc["genre"], "creation_s": seconds, **outcome,
                                        "trained_answers": trained}  # fmt: skip
            say("every reader question with all the experts registered", "documents")
            questions = [(doc["name"], q, g) for doc in docs for q, g in doc["questions"]]
            outs = moe.generate([q for _, q, _ in questions], record_gaps=False, **gen)
            say("general questions with all the experts registered", "documents")
            after = moe.generate([q for q, _ in general], record_gaps=False, **gen)
            match = match_scores(moe, [q for _, q, _ in questions])
            general_match = match_scores(moe, [q for q, _ in general])
    rows = []
    for (name, q, golds), out, m in zip(questions, outs, match, strict=True):
        top = max(out.experts, key=lambda e: e[1])[0] if out.experts else None
        rows.append({"doc": name, "question": q, "gold": golds, "answer": out.text, "route": out.route,
                     "expert": top, "reason": out.reason,
                     "confidence": out.confidence, "expert_confidence": out.expert_confidence, "match": m,
                     "candidates": out.candidates,
                     "covered": covered(golds, _covering_texts(out, per_doc[name]["trained_answers"]), judge),
                     "right": is_right(out.text, golds, judge)})  # fmt: skip
    summarise(per_doc, rows)
    g_before = [is_right(o.text, g, judge) for o, (_, g) in zip(before, general, strict=True)]
    g_after = [is_right(o.text, g, judge) for o, (_, g) in zip(after, general, strict=True)]
    general_result = {
        "n": len(general), "right_before": sum(g_before), "right_after": sum(g_after),
        "lost": sum(b and not a for b, a in zip(g_before, g_after, strict=True)),
        "gained": sum(a and not b for b, a in zip(g_before, g_after, strict=True)),
        "sent_to_experts": _share(o.route in ("expert", "abstain") for o in after),
        "rows": [{"question": q, "before": b.text, "after": a.text, "route_after": a.route, "right_before": rb,
                  "right_after": ra, "confidence": a.confidence, "match": m}
                 for (q, _), b, a, rb, ra, m in zip(general, before, after, g_before, g_after, general_match,
                                                    strict=True)],
    }  # fmt: skip
    return {"machine": machine_info(args.threads), "command": command_line(__file__, args.argv),
            "settings": {"split": args.split, "approach": args.approach, "tiny": args.tiny, "docs": len(docs),
                         "reader": args.reader or "shipped", "set": args.changes,
                         "max_new_tokens": args.max_new_tokens, "max_answer_words": MAX_ANSWER_WORDS},
            "documents": per_doc, "general": general_result, "rows": rows,
            "elapsed_s": time.perf_counter() - started}  # fmt: skip


def config_changes(pairs: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as config changes (a VALUE that parses as JSON is taken as JSON)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE (a dotted config key), got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def sent_to(row: dict[str, Any]) -> str | None:
    """The expert a question was sent to: the top expert of an ``expert`` route, or the first expert
    tried for an ``abstain`` (it answered below the confidence floor); ``None`` for base and gap."""
    if row["route"] == "expert":
        return row["expert"]
    if row["route"] == "abstain" and row.get("candidates"):
        return max(row["candidates"][0]["experts"], key=lambda e: e[1])[0]
    return None


def summarise(per_doc: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Per document (in place): questions, coverage, learning, routing, abstained, accuracy."""
    for row in rows:
        row["routed"] = sent_to(row) == row["doc"]
    for name, d in per_doc.items():
        mine = [r for r in rows if r["doc"] == name]
        cov = [r for r in mine if r["covered"]]
        d["questions"] = len(mine)
        d["coverage"] = _share(r["covered"] for r in mine)
        d["learning"] = _share(r["right"] for r in cov) if cov else None
        d["routing"] = _share(r["routed"] for r in mine)
        d["abstained"] = _share(r["routed"] and r["route"] == "abstain" for r in mine)
        d["accuracy"] = _share(r["right"] for r in mine)
        d.pop("trained_answers", None)


def match_scores(moe: AdaptiveMoE, questions: list[str]) -> list[dict[str, float]]:
    """Every expert's match score for each question (the router's, embeddings and words), whatever the route."""
    scores = moe.router.match_scores([Query(q) for q in questions])
    return [{n: round(v, 4) for n, v in s.items()} for s in scores]


def _share(flags) -> float:
    flags = list(flags)
    return sum(bool(f) for f in flags) / len(flags) if flags else 0.0


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def write_report(r: dict[str, Any], out: Path) -> Path:
    """``documents_<split>_<approach>.{json,md}`` under ``out``; returns the Markdown's path."""
    s, g = r["settings"], r["general"]
    name = f"documents_{s['split']}_{s['approach']}" + ("_tiny" if s["tiny"] else "")
    docs = r["documents"]
    lines = [
        f"# Experts from documents: {s['split']} split, approach `{s['approach']}`",
        "",
        f"`{r['command']}` on {r['machine']['date']}, {r['machine']['cpus']} CPUs, {r['machine']['threads']} threads, "
        f"torch {r['machine']['torch']}; {r['elapsed_s'] / 60:.1f} min. An answer is right when it contains a gold "
        f"answer and has at most {s['max_answer_words']} words.",
        "",
        "| document | genre | admitted | coverage | learning | routing | abstained | accuracy | creation (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, d in docs.items():
        cells = [n, d["genre"], "yes" if d["admitted"] else "no", _pct(d["coverage"]), _pct(d["learning"]),
                 _pct(d["routing"]), _pct(d.get("abstained")), _pct(d["accuracy"]),
                 f"{d['creation_s']:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if docs:
        mean = {k: sum(d.get(k) or 0 for d in docs.values()) / len(docs)
                for k in ("coverage", "routing", "abstained", "accuracy")}  # fmt: skip
        admitted = sum(d["admitted"] for d in docs.values())
        seconds = sum(d["creation_s"] for d in docs.values()) / len(docs)
        cells = ["**mean**", "", f"{admitted}/{len(docs)}", f"{mean['coverage']:.2f}", "", f"{mean['routing']:.2f}",
                 f"{mean['abstained']:.2f}", f"**{mean['accuracy']:.2f}**", f"{seconds:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"General questions ({g['n']}, held out from the shipped router's fit): right before {g['right_before']}, "
        f"after {g['right_after']} with all the experts registered; **lost {g['lost']}**, gained {g['gained']}; "
        f"sent to an expert {g['sent_to_experts']:.2f}.",
        "",
        "## Wrong answers",
        "",
        "| document | question | gold | answer | route | covered |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        if not row["right"]:
            answer = row["answer"].replace("|", "/").replace("\n", " ")[:120]
            route = row["route"] + (f" -> {row['expert']}" if row["expert"] else "")
            cells = [row["doc"], row["question"], " / ".join(row["gold"]), answer, route, str(row["covered"])]
            lines.append("| " + " | ".join(cells) + " |")
    write_json_and_markdown(out, name, r, lines)
    return out / f"{name}.md"


def main(argv: list[str] | None = None) -> int:
    """Run the protocol and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="test")
    parser.add_argument("--approach", choices=sorted(APPROACHES), default="retrieval")
    parser.add_argument("--docs", type=int, default=0, help="only the first N documents of the split (0: all)")
    parser.add_argument("--only", default="", help="only these documents (comma-separated names)")
    parser.add_argument("--general", type=int, default=None, help="general questions before and after (60)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--reader", default="", help="a reader folder in place of the shipped one (see above)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config change on top of the approach's, e.g. creation.retrieval_readings=[1,2,3,4]",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny random model: checks the plumbing, numbers are noise"
    )
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv, args.changes = argv, config_changes(args.set)
    path = write_report(run(args), Path(args.out))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
