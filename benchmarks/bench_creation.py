"""Expert-creation benchmark on the embedded SmolLM2: the whole pipeline (data -> train -> evaluate ->
admit -> register) on two cases, each in a fresh workspace:

1. a synthetic domain (40 invented people, 200 facts): trained on every fact in each training
   wording, measured on test questions worded unlike any training text;
2. a page of plain prose (the demo's invented guild), trained from the document alone, measured on 25
   questions a reader would ask, worded freely, through the routed system; every miss is listed.

Per case: seconds per stage, training seconds per step, domain accuracy of the base / the expert
forced on / the routed system, the gain per minute of training, and the general check set through the
routed system without and with the expert (paired, flips, McNemar p).

    python benchmarks/bench_creation.py              # ~15 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as `python benchmarks/bench_creation.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import torch

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.creation import make_synthetic_domain
from adaptive_moe.demo import demo_document, demo_questions
from adaptive_moe.evaluation.scoring import get_scorer
from benchmarks.common import add_run_arguments, command_line, machine_info, pyplot, write_json_and_markdown


def run_case(base, workdir: Path, name: str, **create_kwargs) -> dict:
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(workdir / name), **{"gaps.enabled": False, "creation.method": "rules"}
    )
    with AdaptiveMoE(cfg, base=base) as moe:
        result = moe.create_expert(name, **create_kwargs)
        record = {}
        if result.admitted:
            folder = moe.experts.path_of(name)
            record = json.loads((folder / "adaptive_moe_training.json").read_text())
        report = result.report
        out = {"admitted": result.admitted, "reasons": result.reasons, "metrics": result.metrics,
               "timings": result.timings, "data": result.data, "misses": report.misses,
               "general_routed": report.general_routed, "general_vs_base": report.general_vs_base,
               "general_forced": report.general_forced, "steps": record.get("steps"),
               "seconds_per_step": record.get("seconds_per_step"), "train_seconds": record.get("seconds")}  # fmt: skip
        minutes = (out["train_seconds"] or result.timings["train"]) / 60
        gain = result.metrics["domain_accuracy"] - result.metrics["domain_accuracy_base"]
        out["gain_per_training_minute"] = gain / minutes if minutes else None
        return out, moe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=40)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = load_base_model(device="cpu")
    judge = get_scorer("contains")
    work = Path(tempfile.mkdtemp(prefix="bench_creation_"))
    try:
        dom = make_synthetic_domain("people", n_entities=args.entities, seed=0)
        synthetic, _ = run_case(base, work, "people", questions=dom.training_qa(),
                                heldout_questions=[(q.question, q.answers) for q in dom.test_qa],
                                domain=dom.description)  # fmt: skip
        prose, _ = run_case(base, work, "tidewater-guild", documents=[demo_document()],
                              domain="the Tidewater Guild of Lantern Makers")  # fmt: skip
        # the reader's questions through the routed system with the admitted expert (a fresh system on it)
        cfg = AdaptiveMoEConfig().replace(
            workspace=str(work / "tidewater-guild"), **{"gaps.enabled": False, "creation.method": "rules"}
        )
        with AdaptiveMoE(cfg, base=base) as system:
            qa = demo_questions()
            outs = system.generate([q for q, _ in qa])
        rows = [{"question": q, "gold": g, "answer": o.text, "route": o.route, "experts": o.experts,
                 "correct": bool(judge.score(o.text, g)), "base_confidence": o.confidence,
                 "expert_confidence": o.expert_confidence} for (q, g), o in zip(qa, outs, strict=True)]  # fmt: skip
        prose["reader_questions"] = rows
        prose["reader_accuracy"] = sum(r["correct"] for r in rows) / len(rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "machine": machine_info(args.threads),
        "command": command_line(__file__, argv),
        "synthetic": synthetic,
        "prose": prose,
    }  # fmt: skip
    write_report(result, Path(args.out))
    print((Path(args.out) / "creation.md").read_text())
    return 0


def _case_lines(title: str, c: dict) -> list[str]:
    m, g = c["metrics"], c["general_routed"]
    t = c["timings"]
    return [
        f"## {title}",
        "",
        f"Admitted: **{c['admitted']}**. " + " ".join(c["reasons"]),
        "",
        "| measure | value |",
        "|---|---|",
        f"| training data | {json.dumps({k: v for k, v in c['data'].items() if v})} |",
        f"| stages (s) | data {t['data']:.1f}, train {t['train']:.1f}, evaluate {t['evaluate']:.1f}, "
        f"register {t['register']:.1f}, total {t['total']:.1f} |",
        f"| training steps, seconds per step | {c['steps']}, {c['seconds_per_step'] or 0:.2f} |",
        f"| held-out domain accuracy: base / expert forced on / routed system | {m['domain_accuracy_base']:.3f} / "
        f"{m['domain_accuracy']:.3f} / {m['domain_accuracy_routed']:.3f} (n={m['domain_questions']}) |",
        f"| domain accuracy gain per minute of training | {c['gain_per_training_minute'] or 0:.3f} |",
        f"| general check set, routed system without -> with the expert | {g['accuracy_before']:.3f} -> "
        f"{g['accuracy_after']:.3f} (flips to wrong {g['flipped_to_wrong']}, to right {g['flipped_to_right']}, "
        f"McNemar p={g['mcnemar_p']:.3g}; {m['general_routed_to_expert']} of {g['n']} routed to the expert) |",
        f"| general check set, base alone -> routed system with the expert | "
        f"{c['general_vs_base']['accuracy_before']:.3f} -> {c['general_vs_base']['accuracy_after']:.3f} |",
        f"| general sample with the expert forced on (base -> forced) | "
        f"{c['general_forced'].get('accuracy_before', 0):.3f} -> {c['general_forced'].get('accuracy_after', 0):.3f} "
        f"(n={c['general_forced'].get('n', 0)}) |",
        "",
    ]


def write_report(r: dict, out: Path) -> None:
    lines = ["# Expert-creation benchmark", "",
             f"Machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs, {r['machine']['threads']} torch "
             f"threads, torch {r['machine']['torch']}; load average at start {r['machine']['loadavg_start'][0]:.2f}.",
             f"Command: `{r['command']}`", ""]  # fmt: skip
    lines += _case_lines("Synthetic domain: 40 invented people, test questions worded unlike training", r["synthetic"])
    p = r["prose"]
    lines += _case_lines("A page of prose (the demo's invented guild), from the document alone", p)
    lines += [f"Reader questions (worded freely) through the routed system: **{p['reader_accuracy']:.0%}** "
              f"({sum(x['correct'] for x in p['reader_questions'])} of {len(p['reader_questions'])}).", "",
              "| question | route | answer | gold | correct |", "|---|---|---|---|---|"]  # fmt: skip
    for x in p["reader_questions"]:
        answer = " ".join(x["answer"].split())[:70].replace("|", "\\|")
        lines.append(f"| {x['question']} | {x['route']} | {answer} | {', '.join(x['gold'])} | "
                     f"{'yes' if x['correct'] else '**no**'} |")  # fmt: skip
    write_json_and_markdown(out, "creation", r, lines)
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    cases = [("synthetic", r["synthetic"]), ("prose", p)]
    stages = ("data", "train", "evaluate", "register")
    left = [0.0, 0.0]
    for stage in stages:
        widths = [c["timings"][stage] for _, c in cases]
        ax.barh([n for n, _ in cases], widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("seconds (2 CPU cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "creation.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
