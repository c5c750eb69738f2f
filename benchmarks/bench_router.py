"""Router benchmark on the embedded SmolLM2: fit on one split, measure on another (>= 200 questions each).

Data: the general check set (split in two) and four synthetic domains of invented entities; three
domains have an expert (their training questions are the matcher's examples), the fourth has none
(its questions should become knowledge gaps). Test questions are worded unlike training ones.

Measures (see adaptive_moe.routing.evaluation): AUROC / PRR of every estimator for base errors on the
whole mix and on general questions alone, with bootstrap intervals; ECE before/after calibration;
expert matching; the error-rate threshold's guarantee on the test split; and the routing overhead:
``post`` routing as a ratio to the base generation it rides on, and a ``pre`` decision (prompt states
+ probe) as a ratio to one base generation.

    python benchmarks/bench_router.py                  # ~12 min the first time (base answers cached)
    python benchmarks/bench_router.py --entities 4 --general 60   # quick look
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/bench_router.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import numpy as np
import torch

from adaptive_moe import load_base_model
from adaptive_moe.config import GenerationConfig, RouterConfig
from adaptive_moe.creation import general_knowledge_questions, make_synthetic_domain
from adaptive_moe.model.bundled import cache_root
from adaptive_moe.model.generation import decoder_layers
from adaptive_moe.routing import Query, label_base_answers, signals_from_row, split_dataset, train_router
from adaptive_moe.routing.evaluation import evaluate_router
from adaptive_moe.uncertainty import PlattCalibrator, threshold_for_share
from benchmarks.common import add_run_arguments, write_json_and_markdown

EXPERT_KINDS = ("people", "companies", "places")
UNCOVERED_KIND = "products"


def build_data(entities: int, general_n: int | None, seed: int):
    general = general_knowledge_questions()
    if general_n:
        general = general[:general_n]
    fit = [(q, a, "") for q, a in general[0::2]]
    test = [(q, a, "") for q, a in general[1::2]]
    expert_questions = {}
    for i, kind in enumerate((*EXPERT_KINDS, UNCOVERED_KIND)):
        dom = make_synthetic_domain(kind, n_entities=entities, seed=seed + i)
        fit += [(q.question, q.answers, kind) for q in dom.train_qa]
        test += [(q.question, q.answers, kind) for q in dom.test_qa]
        if kind in EXPERT_KINDS:
            expert_questions[kind] = [q.question for q in dom.train_qa]
    return fit, test, expert_questions


def overhead(base, router, pre_router, questions, gen, rounds):
    """Median over rounds of (generation, post routing, pre decision) seconds for one batch."""
    gen_t, post_t, pre_t = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        signals = base.generate_with_signals(questions, gen)
        t1 = time.perf_counter()
        router.route_batch([Query(q, signals=s) for q, s in zip(questions, signals, strict=True)])
        t2 = time.perf_counter()
        states = base.prompt_states(questions, gen)
        pre_router.route_batch([Query(q, states=s) for q, s in zip(questions, states, strict=True)])
        t3 = time.perf_counter()
        gen_t.append(t1 - t0)
        post_t.append(t2 - t1)
        pre_t.append(t3 - t2)
    g = statistics.median(gen_t)
    return {"generation_s": g, "post_routing_s": statistics.median(post_t), "pre_decision_s": statistics.median(pre_t),
            "post_ratio": (g + statistics.median(post_t)) / g, "pre_ratio": statistics.median(pre_t) / g,
            "batch": len(questions), "rounds": rounds}  # fmt: skip


def pre_depth_sweep(base, fit_set, test_set, cfg, expert_questions, questions, gen, args) -> list[dict]:
    """A ``pre`` probe fit on the states after each of several decoder depths (``router.pre_layers``):
    its AUROC on the test split, and the decision's time as a ratio to one base generation (medians,
    arms round-robin in each round)."""
    depth = len(decoder_layers(base.model))
    depths = [*sorted({d for d in args.pre_layers if 1 <= d < depth}), None]
    rows = []
    for layers in depths:
        pre_cfg = cfg.replace(mode="pre", estimator="prompt_probe", pre_layers=layers)
        router, _ = train_router(base, fit_set, config=pre_cfg, expert_questions=expert_questions, seed=args.seed,
                                 validation_fraction=args.validation, progress=False)  # fmt: skip
        est = evaluate_router(router, test_set, estimators=[], bootstrap=200, base=base, generation=gen)
        rows.append({"layers": layers or depth, "router": router, **{k: est.estimators["router:prompt_probe"][k]
                     for k in ("auroc", "auroc_ci", "auroc_general", "prr")},
                     "matching": est.matching})  # fmt: skip
    times: dict[int, list[float]] = {r["layers"]: [] for r in rows}
    gen_t = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        base.generate_with_signals(questions, gen)
        gen_t.append(time.perf_counter() - t0)
        for r in rows:
            t0 = time.perf_counter()
            states = base.prompt_states(questions, gen, layers=r["router"].config.pre_layers)
            r["router"].route_batch([Query(q, states=s) for q, s in zip(questions, states, strict=True)])
            times[r["layers"]].append(time.perf_counter() - t0)
    g = statistics.median(gen_t)
    for r in rows:
        del r["router"]
        r["decision_s"] = statistics.median(times[r["layers"]])
        r["decision_ratio"] = r["decision_s"] / g
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=12, help="entities per synthetic domain")
    ap.add_argument("--general", type=int, default=None, help="use only the first N general questions")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--embedder", default="minilm", choices=("minilm", "base"))
    ap.add_argument("--validation", type=float, default=0.4, help="share of the fit split held out for calibration")
    ap.add_argument("--matcher", default="knn", choices=("knn", "centroid", "classifier"))
    ap.add_argument("--target-error", type=float, default=0.2)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    add_run_arguments(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pre-layers", type=int, nargs="*", default=[2, 4, 6, 8, 12, 16, 20],
                    help="decoder depths for the pre-mode sweep (the whole model is always added)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    base = load_base_model(device="cpu")
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=16)
    fit, test, expert_questions = build_data(args.entities, args.general, args.seed)
    cache = cache_root() / "router-labels"
    started = time.perf_counter()
    fit_set = label_base_answers(base, fit, generation=gen, cache_dir=cache)
    test_set = label_base_answers(base, test, generation=gen, cache_dir=cache)
    labelling_s = time.perf_counter() - started

    cfg = RouterConfig(estimator="probe", calibration="isotonic", matcher=args.matcher, embedder=args.embedder,
                       target_error=args.target_error, delta=0.1)  # fmt: skip
    started = time.perf_counter()
    router, training = train_router(base, fit_set, config=cfg, expert_questions=expert_questions, seed=args.seed,
                                    validation_fraction=args.validation)  # fmt: skip
    training_s = time.perf_counter() - started
    report = evaluate_router(router, test_set, bootstrap=args.bootstrap)

    # the error-rate guarantee, checked on the test split
    y = np.asarray(test_set["correct"], bool)
    conf = router.confidence(router.estimator.score_batch([signals_from_row(r) for r in test_set]))
    answered = (conf >= router.config.threshold) & (router.config.threshold < 1.0)
    test_error = float(1 - y[answered].mean()) if answered.any() else None

    # threshold for a target share routed onward (RouteLLM's quantile method): fit split -> test split
    # on a Platt-calibrated scale: strictly monotone, so a quantile is reachable (isotonic ties whole blocks)
    # from the fit split's validation part, which the probe did not train on (the split train_router made)
    _, held = split_dataset(fit_set, args.validation, args.seed)
    raw_fit = router.estimator.score_batch([signals_from_row(r) for r in held])
    platt = PlattCalibrator().fit(raw_fit, np.asarray(held["correct"], bool))
    conf_fit = platt(raw_fit)
    conf_test = platt(router.estimator.score_batch([signals_from_row(r) for r in test_set]))
    rng = np.random.default_rng(args.seed)
    splits = [rng.permutation(len(conf_test)) for _ in range(200)]  # one half of test -> the other, 200 times
    shares = {}
    for target in (0.3, 0.5, 0.7, 0.9):
        tau = threshold_for_share(conf_fit, target)
        got = [float((conf_test[s[len(s) // 2 :]] < threshold_for_share(conf_test[s[: len(s) // 2]], target)).mean())
               for s in splits]  # fmt: skip
        shares[str(target)] = {"threshold": tau, "test_share_routed": float((conf_test < tau).mean()),
                               "half_to_half": float(np.mean(got)), "half_to_half_sd": float(np.std(got))}  # fmt: skip

    pre_cfg = cfg.replace(mode="pre", estimator="prompt_probe")
    pre_router, _ = train_router(base, fit_set, config=pre_cfg, expert_questions=expert_questions, seed=args.seed,
                                 validation_fraction=args.validation)  # fmt: skip
    pre_report = evaluate_router(pre_router, test_set, estimators=[], bootstrap=200)
    timing = overhead(base, router, pre_router, [r[0] for r in test[:16]], gen, args.rounds)
    sweep = pre_depth_sweep(base, fit_set, test_set, cfg, expert_questions, [r[0] for r in test[:16]], gen, args)

    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                    "processor": platform.processor() or platform.machine()},
        "args": {k: str(v) for k, v in vars(args).items()},
        "sizes": {"fit": len(fit_set), "test": len(test_set)},
        "labelling_s": labelling_s, "training_s": training_s, "training": training.to_dict(),
        "report": report.to_dict(), "pre_report": {k: pre_report.to_dict()[k] for k in ("estimators", "matching")},
        "error_rate_mode": {"target": args.target_error, "delta": 0.1, "threshold": router.config.threshold,
                            "test_error_among_answered": test_error, "test_coverage": float(answered.mean())},
        "overhead": timing,
        "pre_depth_sweep": sweep,
        "share_mode": shares,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    report.write(args.out, "router")
    md = report.to_markdown().splitlines()
    md += ["", "## Error-rate threshold (fit split -> test split)", "",
           f"target error {args.target_error} with delta 0.1: threshold {router.config.threshold:.3f}; on the test "
           f"split {100 * answered.mean():.0f}% answered by the base, error among them {test_error}.",
           "", "## Threshold for a target share routed onward (Platt scale; fit validation part -> test split)", "",
           "| target share | threshold | test share routed | test half -> other half, mean (sd) of 200 |",
           "|---|---|---|---|",
           *[f"| {k} | {v['threshold']:.3f} | {v['test_share_routed']:.3f} | {v['half_to_half']:.3f} "
             f"({v['half_to_half_sd']:.3f}) |" for k, v in shares.items()],
           "Fit questions are worded like the experts' training questions, test ones are not: the first column "
           "includes that shift; the second is the method on one distribution.",
           "", "## Pre mode (prompt-only probe)", "",
           f"AUROC {pre_report.estimators['router:prompt_probe']['auroc']:.3f} (all), "
           f"{pre_report.estimators['router:prompt_probe']['auroc_general'] or float('nan'):.3f} (general).",
           "", "## Pre mode by decoder depth (`router.pre_layers`)", "",
           "The prompt pass stops after that many of the model's decoder layers; the probe and matcher read "
           "those states. Decision time as a ratio to one base generation of the same 16 questions.", "",
           "| layers | AUROC (all) | 95% CI | AUROC (general) | PRR (all) | domain -> own expert | "
           "general -> any expert | decision / base generation |", "|---|---|---|---|---|---|---|---|",
           *[f"| {r['layers']} | {r['auroc']:.3f} | [{r['auroc_ci'][0]:.3f}, {r['auroc_ci'][1]:.3f}] | "
             f"{r['auroc_general'] or float('nan'):.3f} | {r['prr']:.3f} | "
             f"{r['matching'].get('domain_to_own_expert') or float('nan'):.3f} | "
             f"{r['matching'].get('general_to_any_expert') or float('nan'):.3f} | {r['decision_ratio']:.3f} |"
             for r in sweep],
           "", "## Overhead (medians over rounds, batch of 16 test questions)", "",
           f"post routing / base generation: {timing['post_ratio']:.4f} (goal <= 1.02); "
           f"pre decision / base generation: {timing['pre_ratio']:.4f}.",
           "", f"Sizes: fit {len(fit_set)}, test {len(test_set)}. Labelling {labelling_s:.0f} s (cached afterwards), "
           f"router training {training_s:.1f} s. Command: `python benchmarks/bench_router.py`."]  # fmt: skip
    write_json_and_markdown(args.out, "router", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
