"""Training-core benchmark: train one LoRA expert on a synthetic domain with the default settings and
record seconds per step, examples per second, and domain accuracy against minutes of training (a
curve); then the paired comparison on the general check set, base against the expert forced on.

    python benchmarks/bench_training.py [--kind people] [--entities 40] [--minutes 5] [--eval-every 20]

Writes ``training.json``, ``training.md`` and ``training.png`` under ``--out``. Evaluation pauses
are excluded from the training minutes.

One process against several (``accelerate launch``, DDP): ``--processes 1,2`` creates the same expert
from the same documents with ``adaptive-moe create-expert --processes N`` (the embedded model,
``creation.method: rules``, so that a LoRA is trained) for each N, ``--rounds`` times, alternating, and
writes ``training_processes.json`` / ``.md``: seconds per optimizer step, training and total time,
final loss and the admission result, as medians, with the ratio to one process.

    python benchmarks/bench_training.py --processes 1,2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/bench_training.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import torch
from transformers import TrainerCallback

from adaptive_moe import load_base_model
from adaptive_moe.config import AdaptiveMoEConfig, LoRASettings
from adaptive_moe.creation import (
    evaluate_qa,
    general_knowledge_questions,
    make_synthetic_domain,
    paired_comparison,
    train_lora,
)
from adaptive_moe.creation.training import TRAINING_RECORD
from benchmarks.common import add_run_arguments, command_line, machine_info, pyplot, write_json_and_markdown


class CurveCallback(TrainerCallback):
    """Every ``every`` steps: domain accuracy on a fixed subset of test questions, with the adapter as
    it is at that moment; stops training when the time budget (training time only) is spent."""

    def __init__(self, base, questions, every: int, budget_s: float):
        self.base, self.questions, self.every, self.budget_s = base, questions, every, budget_s
        self.points: list[dict] = []
        self.paused = 0.0
        self.start = None

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.start = time.perf_counter()

    def _train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def on_step_end(self, args, state, control, model=None, **kw):
        over = self._train_seconds() >= self.budget_s
        if state.global_step % self.every == 0 or over:
            t = time.perf_counter()
            model.eval()
            acc = evaluate_qa(self.base, self.questions, max_new_tokens=16).accuracy
            model.train()
            self.paused += time.perf_counter() - t
            self.points.append({"step": state.global_step, "minutes": self._train_seconds() / 60, "accuracy": acc})
            print(f"step {state.global_step}: {self._train_seconds() / 60:.1f} min, domain accuracy {acc:.2f}")
        if over:
            control.should_training_stop = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="people")
    parser.add_argument("--entities", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=5.0, help="training-time budget")
    parser.add_argument("--epochs", type=float, default=None, help="override LoRASettings().epochs")
    parser.add_argument("--lr", type=float, default=None, help="override LoRASettings().learning_rate")
    parser.add_argument("--skip-general", action="store_true", help="skip the general check set (quick runs)")
    parser.add_argument("--restatements", type=int, default=1, help="restatements per fact (with --data qa+docs)")
    parser.add_argument(
        "--data",
        choices=("qa", "qa+docs", "qa1+docs"),
        default="qa",
        help="qa: every fact in every training wording (the default); qa+docs: plus the documents; "
        "qa1+docs: one wording per fact plus the documents (the earlier default)",
    )
    parser.add_argument("--top-layers", type=float, default=None, help="override LoRASettings().top_layers")
    parser.add_argument("--eval-every", type=int, default=20, help="steps between curve points")
    parser.add_argument("--curve-questions", type=int, default=50)
    parser.add_argument("--processes", default=None, help="compare creation in N processes, e.g. 1,2 (see above)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each process count (with --processes)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.processes:
        return compare_processes(args, argv)
    torch.set_num_threads(args.threads)

    base = load_base_model(device="cpu")
    dom = make_synthetic_domain(args.kind, args.entities, seed=args.seed, restatements_per_fact=args.restatements)
    data = {"qa": dom.training_qa(), "qa+docs": dom.training_qa() + dom.documents,
            "qa1+docs": dom.documents + dom.train_qa}[args.data]  # fmt: skip
    general = general_knowledge_questions()
    overrides = {"epochs": args.epochs, "learning_rate": args.lr, "top_layers": args.top_layers}
    lora = LoRASettings(**{k: v for k, v in overrides.items() if v is not None})

    base_domain = evaluate_qa(base, dom.test_qa, max_new_tokens=16)
    print(f"base domain accuracy {base_domain.accuracy:.3f} (chance {max(dom.chance_baseline().values()):.3f})")
    curve_q = dom.test_qa[:: max(1, len(dom.test_qa) // args.curve_questions)][: args.curve_questions]
    cb = CurveCallback(base, curve_q, args.eval_every, args.minutes * 60)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = train_lora(base, data, Path(tmp) / "expert", lora=lora, callbacks=[cb])
        record = json.loads((adapter / "adaptive_moe_training.json").read_text())
        expert_domain = evaluate_qa(base, dom.test_qa, adapter=adapter, max_new_tokens=16)
        if args.skip_general:
            general = general[:16]
        base_general = evaluate_qa(base, general)
        expert_general = evaluate_qa(base, general, adapter=adapter)
    train_seconds = record["seconds"] - cb.paused
    result = {
        "machine": machine_info(args.threads),
        "command": command_line(__file__, argv),
        "domain": {"kind": args.kind, "entities": args.entities, "facts": len(dom.facts()),
                   "training_examples": len(data), "data": args.data, "test_questions": len(dom.test_qa),
                   "chance_baseline": dom.chance_baseline()},
        "lora": lora.to_dict(),
        "mixed_precision": record.get("mixed_precision"),
        "steps": record["steps"],
        "epochs": record["epochs"],
        "train_minutes": train_seconds / 60,
        "seconds_per_step": train_seconds / max(record["steps"], 1),
        "examples_per_second": record["steps"] * lora.batch_size * lora.gradient_accumulation / train_seconds,
        "base_domain_accuracy": base_domain.accuracy,
        "expert_domain_accuracy": expert_domain.accuracy,
        "general_paired": paired_comparison(base_general, expert_general),
        "curve": cb.points,
        "examples": [{"q": q, "expert": p, "ok": c} for q, p, c in
                     zip(expert_domain.questions[:8], expert_domain.predictions[:8], expert_domain.correct[:8],
                         strict=True)],
    }  # fmt: skip
    write_report(result, Path(args.out))
    print((Path(args.out) / "training.md").read_text())
    return 0


def _create_in(processes: int, folder: Path, documents: list[Path], epochs: float) -> dict:
    """``adaptive-moe create-expert`` in ``processes`` processes on a fresh workspace; what it reported."""
    folder.mkdir(parents=True)
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(folder / "ws"),
        **{"creation.method": "rules", "creation.lora.epochs": epochs, "creation.lora.min_steps": 0},
    )
    config = folder / "config.yaml"
    config.write_text(cfg.to_yaml())
    command = [sys.executable, "-m", "adaptive_moe.cli", "create-expert", "domain", "--config", str(config),
               "--docs", *map(str, documents), "--quiet", "--json", "--processes", str(processes)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes))}
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"create-expert --processes {processes} failed:\n{run.stderr[-3000:]}")
    result = json.loads(run.stdout[run.stdout.index("{") :])
    from adaptive_moe.experts import ExpertRegistry

    registry = ExpertRegistry(cfg.registry_path)
    record = json.loads((registry.path_of("domain") / TRAINING_RECORD).read_text()) if result["admitted"] else {}
    if not record:  # not admitted: the adapter stays in the work folder
        found = list((folder / "ws").rglob(TRAINING_RECORD))
        record = json.loads(found[0].read_text()) if found else {}
    return {"processes": processes, "wall_s": wall, "train_s": result["timings"]["train"],
            "total_s": result["timings"]["total"], "admitted": result["admitted"], "steps": record.get("steps"),
            "seconds_per_step": record.get("seconds_per_step"), "train_loss": record.get("train_loss"),
            "peak_rss_mib": (record.get("memory") or {}).get("peak_rss_mib"),
            "metrics": result.get("metrics", {})}  # fmt: skip


def compare_processes(args, argv) -> int:
    """One process against several on the same documents (see the module docstring)."""
    counts = [int(n) for n in args.processes.split(",")]
    dom = make_synthetic_domain(args.kind, args.entities, seed=args.seed, restatements_per_fact=0)
    epochs = args.epochs or 2.0
    runs: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_processes_") as tmp:
        documents = []
        for i, text in enumerate(dom.documents):
            documents.append(Path(tmp) / f"doc{i:02d}.md")
            documents[-1].write_text(text)
        for r in range(args.rounds):
            for n in counts if r % 2 == 0 else counts[::-1]:  # alternate the order against drift
                print(f"round {r + 1}: {n} process(es)", flush=True)
                runs.append({"round": r, **_create_in(n, Path(tmp) / f"r{r}-p{n}", documents, epochs)})
                print(json.dumps(runs[-1]), flush=True)
    rows = []
    for n in counts:
        mine = [x for x in runs if x["processes"] == n]
        med = {k: statistics.median(x[k] for x in mine) for k in ("wall_s", "train_s", "total_s", "seconds_per_step",
                                                                    "train_loss", "steps")}  # fmt: skip
        rows.append({"processes": n, **med, "admitted": f"{sum(x['admitted'] for x in mine)}/{len(mine)}"})
    one = rows[0]
    for row in rows:
        row["train_ratio"] = one["train_s"] / row["train_s"]  # > 1: faster than the first count
    result = {"machine": machine_info(args.threads), "command": command_line(__file__, argv),
              "domain": {"kind": args.kind, "entities": args.entities, "documents": len(dom.documents)},
              "epochs": epochs, "rounds": args.rounds, "runs": runs, "rows": rows,
              "elapsed_s": time.perf_counter() - started}  # fmt: skip
    lines = [
        "# Expert creation in one process and in several (DDP)",
        "",
        f"`{result['command']}` on {result['machine']['date']}, {result['machine']['cpus']} CPUs; "
        f"{result['elapsed_s'] / 60:.1f} min. The same {len(dom.documents)} documents ({args.entities} invented "
        f"{args.kind}), the embedded model, `creation.method: rules`, {epochs:g} epochs; each process count "
        f"{args.rounds} times, alternating; medians. Each of N processes gets {os.cpu_count()}/N torch threads.",
        "",
        "| processes | optimizer steps | s / step | training (s) | total (s) | final loss | admitted | "
        f"training speed vs {one['processes']} |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {r['processes']} | {r['steps']:.0f} | {r['seconds_per_step']:.2f} | {r['train_s']:.0f} | "
          f"{r['total_s']:.0f} | {r['train_loss']:.3f} | {r['admitted']} | {r['train_ratio']:.2f}x |" for r in rows],
        "",
        "Under DDP each process takes its share of every batch: N processes run 1/N of the optimizer steps of "
        "one process per epoch, each on a batch N times larger in all (the learning rate is not rescaled). On "
        "one machine's CPU cores the processes share the same cores and memory bandwidth, so DDP cannot beat "
        "one process using every core; it is there so the same command scales on GPUs: with N GPUs and "
        "NCCL, expect close to N times fewer seconds per epoch for a model whose step is compute-bound (the "
        "gradient all-reduce of a LoRA is a few MB), and the same admission result.",
    ]  # fmt: skip
    write_json_and_markdown(Path(args.out), "training_processes", result, lines)
    print("\n".join(lines))
    return 0


def write_report(r: dict, out: Path) -> None:
    g = r["general_paired"]
    lines = [
        "# Training-core benchmark",
        "",
        f"Machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs, {r['machine']['threads']} torch threads, "
        f"torch {r['machine']['torch']}; load average at start {r['machine']['loadavg_start'][0]:.2f}.",
        f"Command: `{r['command']}`",
        "",
        f"Domain: {r['domain']['entities']} invented {r['domain']['kind']}, {r['domain']['facts']} facts, "
        f"{r['domain']['training_examples']} training examples, {r['domain']['test_questions']} test questions "
        "worded unlike the training ones.",
        f"LoRA: r={r['lora']['r']}, alpha={r['lora']['alpha']}, lr={r['lora']['learning_rate']}, "
        f"batch={r['lora']['batch_size']}, epochs={r['lora']['epochs']}, target={r['lora']['target_modules']}, "
        f"top_layers={r['lora'].get('top_layers', 1.0)}, dropout={r['lora']['dropout']}, "
        f"autocast={r.get('mixed_precision')}; training data: {r['domain'].get('data', 'qa1+docs')}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| training minutes (evaluation excluded) | {r['train_minutes']:.1f} |",
        f"| optimizer steps / epochs | {r['steps']} / {r['epochs']:.2f} |",
        f"| seconds per step | {r['seconds_per_step']:.2f} |",
        f"| examples per second | {r['examples_per_second']:.2f} |",
        f"| chance baseline (per attribute, max) | {max(r['domain']['chance_baseline'].values()):.3f} |",
        f"| base accuracy on test_qa | {r['base_domain_accuracy']:.3f} |",
        f"| expert accuracy on test_qa | {r['expert_domain_accuracy']:.3f} |",
        f"| general check set: base | {g['accuracy_before']:.3f} (n={g['n']}) |",
        f"| general check set: expert forced on | {g['accuracy_after']:.3f} |",
        f"| general flips right->wrong / wrong->right | {g['flipped_to_wrong']} / {g['flipped_to_right']} "
        f"(McNemar p={g['mcnemar_p']:.3g}) |",
        "",
        "## Domain accuracy against training minutes",
        "",
        "| step | minutes | accuracy (curve subset) |",
        "|---|---|---|",
        *[f"| {p['step']} | {p['minutes']:.1f} | {p['accuracy']:.2f} |" for p in r["curve"]],
        "",
        "## Sample answers (expert)",
        "",
        *[f"- {'✔' if e['ok'] else '✘'} {e['q']} → {e['expert']}" for e in r["examples"]],
    ]
    write_json_and_markdown(out, "training", r, lines)
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["minutes"] for p in r["curve"]], [p["accuracy"] for p in r["curve"]], marker="o")
    ax.axhline(r["base_domain_accuracy"], color="grey", linestyle="--", label="base")
    ax.axhline(0.8, color="k", linestyle=":", label="goal 0.8")
    ax.set_xlabel("training minutes (2 CPU cores)")
    ax.set_ylabel("domain accuracy (reworded questions)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
