"""Fit the router shipped for the embedded SmolLM2 (package data), and measure it on held-out questions.

The facade uses this router when the base is the embedded model and the workspace holds no router of its
own (``router.pretrained: auto``): the confidence estimator the shipping rule chose across question
families (``benchmarks/bench_uncertainty.py``; ``--estimator`` overrides it), isotonic calibration,
threshold 0.5 on the calibrated scale (the base answers when it is more likely right than wrong), and
the MiniLM embeddings of the general check set as the matcher's background. Fit: the even-numbered
general questions and invented entities of four kinds (seed 0); measured: the odd-numbered general
questions and other invented entities (seed 100), worded by the test templates. Generation settings: the
facade's defaults (64 new tokens, greedy).

    python benchmarks/fit_embedded_router.py          # ~10 min on 2 CPU cores (base answers are cached)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/fit_embedded_router.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import numpy as np
import torch

from adaptive_moe import load_base_model
from adaptive_moe.config import GenerationConfig, RouterConfig
from adaptive_moe.creation import SYNTHETIC_KINDS, general_knowledge_questions, make_synthetic_domain
from adaptive_moe.model.bundled import cache_root
from adaptive_moe.routing import label_base_answers, train_router
from adaptive_moe.routing.bundled import EMBEDDED_ROUTER_DIR
from adaptive_moe.routing.evaluation import evaluate_router
from adaptive_moe.routing.training import embed_questions
from benchmarks.common import add_run_arguments, write_json_and_markdown


def data(entities: int, seed: int, split: str, general_part: slice):
    rows = [(q, a, "") for q, a in general_knowledge_questions()[general_part]]
    for i, kind in enumerate(SYNTHETIC_KINDS):
        dom = make_synthetic_domain(kind, n_entities=entities, seed=seed + i)
        rows += [(q.question, q.answers, f"invented-{kind}") for q in getattr(dom, split)]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=8, help="invented entities per kind (5 questions each)")
    add_run_arguments(parser)
    parser.add_argument("--target", default=str(EMBEDDED_ROUTER_DIR), help="where the shipped router is written")
    parser.add_argument("--estimator", default=None,
                        help="confidence estimator (default: the shipping rule's choice in "
                             "benchmarks/results/uncertainty.json, else probe)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base = load_base_model(device="cpu")
    gen = GenerationConfig()  # the facade's defaults: the probe reads answers generated this way
    cache = cache_root() / "router-labels"
    fit = label_base_answers(base, data(args.entities, 0, "train_qa", slice(0, None, 2)), generation=gen,
                             cache_dir=cache)  # fmt: skip
    test = label_base_answers(base, data(args.entities, 100, "test_qa", slice(1, None, 2)), generation=gen,
                              cache_dir=cache)  # fmt: skip
    estimator = args.estimator or shipping_rule_choice() or "probe"
    cfg = RouterConfig(estimator=estimator, calibration="isotonic", threshold=0.5, matcher="knn", embedder="minilm")
    router, info = train_router(base, fit, config=cfg)
    general = [q for q, _ in general_knowledge_questions()]
    router.matcher.set_background(embed_questions(router, base, general))
    report = evaluate_router(router, test, bootstrap=500)

    target = Path(args.target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    router.save(tmp)
    manifest = {"base_fingerprint": base.fingerprint, "base_name": base.name, "generation": gen.to_dict(),
                "fit_questions": len(fit), "fit_base_accuracy": float(np.mean(fit["correct"])),
                "training": info.to_dict()}  # fmt: skip
    (tmp / "fit.json").write_text(json.dumps(manifest, indent=2, default=str))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)

    routed = [d.route != "base" for d in router.route_batch(_queries(test))]
    correct = np.array(test["correct"], bool)
    general_mask = np.array([d == "" for d in test["domain"]])
    kept = ~np.array(routed)
    result = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "command": "python benchmarks/fit_embedded_router.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "fit": manifest,
        "test_questions": len(test),
        "test_base_accuracy": float(correct.mean()),
        "estimators": report.estimators,
        "base_answered_share": float(kept.mean()),
        "error_among_base_answered": float(1 - correct[kept].mean()) if kept.any() else None,
        "general_kept_share": float(kept[general_mask].mean()),
        "general_right_kept": float(kept[general_mask & correct].mean()) if (general_mask & correct).any() else None,
        "invented_sent_onward": float(np.array(routed)[~general_mask].mean()),
    }
    r = result
    lines = [
        "# The router shipped for the embedded SmolLM2",
        "",
        f"Command: `{r['command']}`. Fit on {len(fit)} questions (even general questions + invented entities, "
        f"seed 0), measured on {len(test)} others (odd general questions + invented entities, seed 100, test "
        f"wordings). Estimator `{estimator}` (the shipping rule's choice in `uncertainty.md`) + isotonic "
        "calibration, threshold 0.5.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| base accuracy on the test questions | {r['test_base_accuracy']:.3f} |",
        f"| router AUROC (base errors), whole mix | {r['estimators'][f'router:{estimator}']['auroc']:.3f} |",
        f"| share the base answers | {r['base_answered_share']:.3f} |",
        f"| error among base-answered questions | {r['error_among_base_answered'] or 0:.3f} |",
        f"| general questions kept on the base | {r['general_kept_share']:.3f} |",
        f"| general questions the base gets right, kept on the base | {r['general_right_kept'] or 0:.3f} |",
        f"| questions about invented entities sent onward | {r['invented_sent_onward']:.3f} |",
    ]
    write_json_and_markdown(Path(args.out), "embedded_router", result, lines)
    print("\n".join(lines))
    return 0


def shipping_rule_choice() -> str | None:
    """The estimator the shipping rule chose in the last cross-family benchmark (bench_uncertainty.py)."""
    path = Path(__file__).resolve().parent / "results" / "uncertainty.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("choice", {}).get("chosen")


def _queries(dataset):
    from adaptive_moe.routing import Query, signals_from_row

    return [Query(row["question"], signals=signals_from_row(row)) for row in dataset]


if __name__ == "__main__":
    sys.exit(main())
