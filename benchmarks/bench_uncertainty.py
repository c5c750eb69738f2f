"""Uncertainty across question families (issue 16): which confidence estimator holds on questions it
was not fitted to.

Families of labelled questions that differ in source and style (``benchmarks/families/`` and the
package's own sets):

- ``general``: the shipped general check set (207 questions; the shipped router was fitted on half of it);
- ``numbers``: trivia whose answers are numbers and dates (50, written for this benchmark);
- ``instructions``: questions worded as instructions, "Name the...", "Tell me..." (50);
- ``context``: longer questions with a sentence of context in front (50);
- ``invented``: questions about invented entities of the synthetic domains (the base cannot know them);
- ``documents``: reader questions of the expert-creation corpus (``benchmarks/corpus/``), every third.

The base answers every question once (greedy, the facade's 64 new tokens; cached). Every estimator is
evaluated **leave-one-family-out**: fitted (when it learns) and calibrated (isotonic) on the other
families, scored on the held-out one. Per held-out family: AUROC and PRR of the raw score for the
base's errors, ECE of the calibrated confidence, with bootstrap intervals for AUROC. The headline is
the mean AUROC over families with at least 10 right and 10 wrong answers (so that an all-wrong family
does not prop it up), and the same over the general-knowledge families (general, numbers,
instructions, context).

Estimators: the logit statistics (no fit); the shipped router's estimator (as it is; a learnt one was
fitted on general + invented: not held out, shown for reference); a logistic regression over the five
answer statistics; the hidden-state probe (query state + answer statistics) at two strengths; a probe on
the query states of several layers; sampling consistency (4 samples) and a probe trained to predict it;
P(True) (the base judges its own answer: one more prompt pass); and combinations. The cost of each is
measured as a multiple of one generation (medians over rounds, same questions).

    python benchmarks/bench_uncertainty.py              # ~30 min on 2 cores the first time, 21 with answers cached
    python benchmarks/bench_uncertainty.py --tiny --out /tmp/u   # the plumbing on a tiny random model

Writes ``uncertainty.{json,md,png}`` under ``--out`` (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/bench_uncertainty.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from adaptive_moe.config import GenerationConfig
from adaptive_moe.creation import SYNTHETIC_KINDS, general_knowledge_questions, make_synthetic_domain
from adaptive_moe.model.bundled import cache_root
from adaptive_moe.routing.bundled import embedded_router_for
from adaptive_moe.routing.families import (
    FamilyData,
    default_layers,
    family_table,
    layer_query_states,
    leave_one_family_out,
    measure_costs,
    p_true_scores,
    sample_agreement,
    shipping_choice,
    threshold_table,
)
from adaptive_moe.routing.training import label_base_answers, signals_from_row
from benchmarks.bench_documents import load_corpus
from benchmarks.common import (
    add_run_arguments,
    command_line,
    load_base,
    machine_info,
    pyplot,
    say,
    write_json_and_markdown,
)

FAMILY_DIR = Path(__file__).resolve().parent / "families"
GENERAL_FAMILIES = ("general", "numbers", "instructions", "context")
MIN_CLASS = 10  # a family counts in the headline with at least this many right and wrong answers


# -- the families ------------------------------------------------------------------------------------
def families(tiny: bool) -> dict[str, list[tuple[str, list[str]]]]:
    """Family name -> (question, gold answers) pairs."""
    out: dict[str, list[tuple[str, list[str]]]] = {"general": list(general_knowledge_questions())}
    for path in sorted(FAMILY_DIR.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        out[path.stem] = [(r["question"], list(r["answers"])) for r in rows]
    invented = []
    for i, kind in enumerate(SYNTHETIC_KINDS):
        dom = make_synthetic_domain(kind, n_entities=3, seed=300 + i)
        invented += [(q.question, list(q.answers)) for q in dom.test_qa]
    out["invented"] = invented
    docs = load_corpus("all")
    out["documents"] = [(q, g) for d in docs for q, g in d["questions"]][::3]
    if tiny:
        out = {k: v[:12] for k, v in out.items()}
    return out


# -- the run ---------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    fams = families(args.tiny)
    work = tempfile.TemporaryDirectory(prefix="bench_uncertainty_")
    base, _ = load_base(args.tiny, Path(work.name))
    gen = GenerationConfig(max_new_tokens=8) if args.tiny else GenerationConfig()
    layers = default_layers(base)
    signals, correct, family, answers = [], [], [], []
    for name, rows in fams.items():
        say(f"base answers: {name} ({len(rows)} questions)", "uncertainty")
        labelled = label_base_answers(base, rows, generation=gen, cache_dir=cache_root() / "uncertainty-labels",
                                      progress=False)  # fmt: skip
        for r in labelled:
            signals.append(signals_from_row(r))
            correct.append(bool(r["correct"]))
            family.append(name)
            answers.append(r["answer"])
    questions = [s.prompt for s in signals]
    say(f"query states after layers {layers}", "uncertainty")
    states = layer_query_states(base, questions, gen, layers)
    say("P(True)", "uncertainty")
    ptrue = p_true_scores(base, questions, answers, gen)
    agreement = None
    if args.samples:
        say(f"{args.samples} sampled answers per question (sampling consistency)", "uncertainty")
        agreement = sample_agreement(base, questions, answers, gen, k=args.samples)
    extra = {}
    router = None if args.tiny else embedded_router_for(base)
    if router is not None:  # fitted on half of `general` and on invented entities: shown for reference
        extra["shipped_router"] = router.estimator.score_batch(signals)
    data = FamilyData(signals, correct, family, states, ptrue, extra, agreement)
    say("leave-one-family-out", "uncertainty")
    results = leave_one_family_out(data, general_families=GENERAL_FAMILIES, min_class=MIN_CLASS,
                                   bootstrap=args.bootstrap)  # fmt: skip
    say("cost against a generation", "uncertainty")
    sample = [q for q, _ in fams["general"][1::2]][: args.cost_questions]
    cost = {**measure_costs(base, sample, gen, layers, args.rounds, samples=args.samples), "shipped_router": 1.0}
    for name in results:
        results[name]["cost"] = cost[name]
    work.cleanup()
    return {"machine": machine_info(args.threads), "command": command_line(__file__, args.argv),
            "settings": {"tiny": args.tiny, "max_new_tokens": gen.max_new_tokens, "layers": layers,
                         "samples": args.samples, "bootstrap": args.bootstrap, "rounds": args.rounds,
                         "cost_questions": len(sample), "min_class": MIN_CLASS},
            "families": {k: {"n": len(v), "right": int(data.correct[data.family == k].sum())}
                         for k, v in fams.items()},
            "estimators": results, "choice": shipping_choice(results, cost, exclude=("shipped_router",)),
            "elapsed_s": time.perf_counter() - started}  # fmt: skip


def write_report(r: dict[str, Any], out: Path) -> Path:
    lines = [
        "# Uncertainty across question families (leave-one-family-out)",
        "",
        f"`{r['command']}` on {r['machine']['date']}, {r['machine']['cpus']} CPUs; {r['elapsed_s'] / 60:.1f} min. "
        f"Greedy answers of {r['settings']['max_new_tokens']} new tokens, right when they contain a gold answer.",
        "",
        "Every estimator is fitted and calibrated on the other families and scored on the held-out one. Headline: "
        f"mean AUROC over families with at least {MIN_CLASS} right and {MIN_CLASS} wrong answers; general "
        "knowledge: the same over general, numbers, instructions and context. `shipped_router`: the estimator of the "
        "router shipped in the package, its scores as they are (a learnt one was fitted on half of `general` and on "
        "invented entities: not held out there).",
        "",
        "| family | questions | base right |",
        "|---|---|---|",
        *[f"| {f} | {v['n']} | {v['right']} |" for f, v in r["families"].items()],
        "",
        *family_table(r["estimators"], {k: v["cost"] for k, v in r["estimators"].items()}),
    ]
    c = r["choice"]
    lines += ["", f"**Shipping rule** (the best general-knowledge AUROC at < 1.1x a generation, never below the best "
              f"single logit statistic, here {c['reference']}, on a headline family): **{c['chosen']}**.",
              ""]  # fmt: skip
    lines += [f"- {e}: {why}" for e, why in c["excluded"].items()]
    shown = [n for n in (c["chosen"], c["reference"], "probe_C0.003", "shipped_router") if n in r["estimators"]]
    table = threshold_table(r["estimators"], list(dict.fromkeys(shown)))
    if table:
        intro = ("**Threshold with a guarantee, off-distribution.** Per held-out family, the threshold chosen on the "
                 "other families for a base-answered error of at most the target (probability 0.9, Clopper-Pearson), "
                 "and the error and coverage it realises on the held-out family:")  # fmt: skip
        lines += ["", intro, "", *table]
    write_json_and_markdown(out, "uncertainty", r, lines)
    _plot(r, out)
    return out / "uncertainty.md"


def _plot(r: dict[str, Any], out: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fams = [f for f in r["families"] if r["estimators"]["mean_logprob"]["families"][f]["auroc"] is not None]
    ests = list(r["estimators"])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(ests)
    for i, est in enumerate(ests):
        vals = [r["estimators"][est]["families"][f]["auroc"] or 0 for f in fams]
        ax.bar(np.arange(len(fams)) + i * width, vals, width, label=est)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(fams)) + 0.4, fams)
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("AUROC for base errors (held-out family)")
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "uncertainty.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples for AUROC intervals")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the cost measurement")
    parser.add_argument("--cost-questions", type=int, default=16, help="questions timed per round")
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per question for sampling "
                        "consistency and the probe trained on it (0: skip them)")  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="a tiny random model: the plumbing, numbers are noise")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = write_report(run(args), out)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
