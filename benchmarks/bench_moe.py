"""Facade latency benchmark: ``AdaptiveMoE.generate`` against the plain alternatives, on the embedded SmolLM2.

Every arm answers the same batch of general questions (one call, greedy, ``--max-new-tokens``) in the same
run; the arms go round-robin within each round (the order rotates from round to round) so machine noise
hits them alike, and each comparison is the median over rounds of that round's ratio:

0. A/A control: plain ``model.generate`` on a second, identical copy of the base / on the first: how far
   two copies of the same weights differ on this machine (memory placement), the floor under every ratio;
1. confident path: ``moe.generate(prompts)`` routed to ``base`` / plain ``model.generate`` (goal <= 1.03);
   1b. the same against plain ``generate`` on the facade's own model object (no copy difference);
2. ``pre``-mode expert path (all routed to one expert) / plain PEFT ``generate`` with that adapter (<= 1.05);
   2b. the same with the decision on the first ``--pre-layers`` decoder layers (``router.pre_layers``);
3. ``post``-mode expert path / (plain ``generate`` + plain PEFT ``generate``) (goal <= 1.05);
4. token-level mixture of two experts (``experts=[a, b]``) / single-expert ``select`` (goal <= 1.5);
5. expert path / plain ``generate`` (the cost of an unmerged LoRA), and, when ``IntegratorConfig`` has
   ``merged_fast_path``, the merged fast path / plain ``generate`` (goal <= 1.05).

Routes are forced by a test router whose confidence and match scores are set per query text, so the
numbers do not depend on the router's quality. The two experts are random LoRA adapters (r=16, all
linear layers) of small scale, so answers stay fluent and run to the token limit. Each facade and each
plain reference runs on its own copy of the base (``load_base_model()``): no adapter state is shared.
The facade's ``GenerationConfig`` cannot force a minimum length, so the prompts are ones whose answers do
not stop early; the decoding steps of every arm are counted, and where an arm's steps differ from its
reference's the comparison uses time per decoding step instead (the report says so). After the rounds,
``--pairs`` back-to-back runs of each one-against-one comparison give a second, tighter estimate.

    python benchmarks/bench_moe.py [--rounds 7] [--pairs 6] [--pre-layers 6] [--prompts 8] [--max-new-tokens 24]
                                   [--threads 2] [--quick]

Writes ``moe.json``, ``moe.md`` and ``moe.png`` under ``--out`` (absolute times are indicative only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/bench_moe.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import torch

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.model.generation import build_generate_kwargs, encode_prompts
from adaptive_moe.routing import Router, RouteScores, register_router
from adaptive_moe.testing import make_random_adapter
from benchmarks.common import add_run_arguments, machine_info, pyplot, timed, write_json_and_markdown

PROMPTS = [  # general questions whose answers run well past 24 tokens
    "Explain how photosynthesis works in plants.",
    "Describe the water cycle and its main stages.",
    "Why does the Earth have seasons?",
    "Explain how vaccines help the immune system.",
    "What causes earthquakes, and how are they measured?",
    "Explain the difference between weather and climate.",
    "How does a refrigerator keep food cold?",
    "Describe the main causes of the French Revolution.",
    "Explain how the internet sends data between computers.",
    "Why is regular exercise good for the heart?",
]
ALPHA, BETA = "alpha", "beta"
CONFIDENT, UNSURE = (0.99, {ALPHA: 0.1, BETA: 0.1}), (0.0, {ALPHA: 0.9, BETA: 0.2})
ARMS = ["plain_base", "plain_copy", "plain_same", "plain_double", "peft_expert", "peft_mixed", "moe_base",
        "moe_pre_expert", "moe_pre_shallow", "moe_post_expert", "moe_select", "moe_mixture", "moe_merged",
        "moe_merged_shallow"]  # fmt: skip
ARM_LABELS = {
    "plain_base": "plain `model.generate` (base)",
    "plain_copy": "plain `model.generate` on a second, identical copy of the base (A/A control)",
    "plain_same": "plain `model.generate` on the post-mode facade's own model (its experts loaded, all disabled)",
    "plain_double": "plain `model.generate`, each prompt twice (2x the rows: what a k=2 mixture computes)",
    "peft_mixed": "plain PEFT mixed-batch `generate`, each prompt twice, `adapter_names=[alpha, beta, ...]`",
    "peft_expert": "plain PEFT `generate`, adapter alpha active",
    "moe_base": "facade, post mode, routed to base",
    "moe_pre_expert": "facade, pre mode, routed to alpha (select)",
    "moe_post_expert": "facade, post mode, routed to alpha (select)",
    "moe_select": "facade, pre mode, `experts=[alpha]`, select",
    "moe_mixture": "facade, pre mode, `experts=[alpha, beta]`, mixture",
    "moe_merged": "facade, pre mode, routed to alpha, `merged_fast_path`",
    "moe_pre_shallow": "facade, pre mode deciding on the first `router.pre_layers` layers, routed to alpha",
    "moe_merged_shallow": "facade, pre mode on `router.pre_layers` layers, routed to alpha, `merged_fast_path`",
}
# key, label, numerator arms, reference arms (summed), goal (None: reported only)
COMPARISONS = [
    ("aa", "0. A/A: plain generate on a second copy / plain generate (the measurement floor)", ["plain_copy"],
     ["plain_base"], None),
    ("confident", "1. confident path / plain generate", ["moe_base"], ["plain_base"], 1.03),
    ("confident_same", "1b. confident path / plain generate on the same weights", ["moe_base"], ["plain_same"], 1.03),
    ("pre_expert", "2. pre-mode expert path / plain PEFT generate", ["moe_pre_expert"], ["peft_expert"], 1.05),
    ("pre_shallow", "2b. pre-mode expert path, decision on `pre_layers` layers / plain PEFT generate",
     ["moe_pre_shallow"], ["peft_expert"], 1.05),
    ("post_expert", "3. post-mode expert path / (plain generate + plain PEFT generate)", ["moe_post_expert"],
     ["plain_base", "peft_expert"], 1.05),
    ("mixture", "4. mixture k=2 / single-expert select", ["moe_mixture"], ["moe_select"], 1.5),
    ("mixture_peft", "4b. mixture k=2 / plain PEFT mixed batch of the same rows (no mixing)", ["moe_mixture"],
     ["peft_mixed"], None),
    ("double", "4c. plain generate of 2x the rows / plain generate (the hardware's floor for k=2)", ["plain_double"],
     ["plain_base"], None),
    ("expert_vs_base", "5. pre-mode expert path (unmerged LoRA) / plain generate", ["moe_pre_expert"],
     ["plain_base"], None),
    ("peft_vs_base", "5. plain PEFT generate / plain generate (unmerged LoRA, no facade)", ["peft_expert"],
     ["plain_base"], None),
    ("merged", "5. merged fast path / plain generate", ["moe_merged"], ["plain_base"], 1.05),
    ("merged_shallow", "5b. merged fast path, decision on `pre_layers` layers / plain generate",
     ["moe_merged_shallow"], ["plain_base"], 1.05),
]  # fmt: skip
SHORT = {"aa": "0 A/A\ncopy / plain", "confident_same": "1b confident\n/ same weights",
         "confident": "1 confident\n/ plain", "mixture_peft": "4b mixture\n/ PEFT mixed", "double":
         "4c 2x rows\n/ plain", "pre_expert": "2 pre expert\n/ PEFT", "post_expert":
         "3 post expert\n/ plain + PEFT", "mixture": "4 mixture k=2\n/ select", "expert_vs_base":
         "5 expert\n/ plain", "peft_vs_base": "5 PEFT\n/ plain", "merged": "5 merged\n/ plain",
         "pre_shallow": "2b pre shallow\n/ PEFT", "merged_shallow": "5b merged shallow\n/ plain"}  # fmt: skip
SAME_TOKENS = [("moe_base", "plain_base"), ("moe_pre_expert", "peft_expert"), ("moe_post_expert", "peft_expert"),
               ("moe_select", "peft_expert"), ("moe_merged", "peft_expert"), ("moe_pre_shallow", "peft_expert"),
               ("moe_merged_shallow", "peft_expert")]  # fmt: skip


@register_router
class FixedRouter(Router):
    """Confidence and match scores set per query text (``table``; others get ``default``): forces routes."""

    name = "bench_fixed"

    def __init__(self, config=None, table=None, default=(0.0, {})) -> None:
        super().__init__(config)
        self.table, self.default = dict(table or {}), default

    def score(self, query):
        conf, scores = self.table.get(query.text, self.default)
        return RouteScores(conf, dict(scores))


def facade_steps(signals, max_new: int) -> int:
    """Decoding steps of one batched generate pass, from its answers: all rows step until the last stops."""
    if any(s.finish_reason == "length" for s in signals):
        return max_new
    return max(s.num_tokens for s in signals) + 1  # the eos token is a step too


def plain_tokens(sequences: torch.Tensor, prompt_len: int, eos_ids: set[int]) -> tuple[list[list[int]], int]:
    """Per row the generated ids up to the first eos, and the decoding steps of the pass."""
    new = sequences[:, prompt_len:].tolist()
    rows = [next((r[:i] for i, t in enumerate(r) if t in eos_ids), r) for r in new]
    return rows, len(new[0]) if new else 0


def make_facade(base, workspace: Path, adapters: dict[str, Path], table: dict, gen: dict, **changes):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(workspace),
        **{"router.name": FixedRouter.name, "router.embedder": "base", "router.min_match_score": 0.5,
           "router.threshold": 0.5, "integrator.expert_confidence_floor": 0.0, "integrator.fallback": False,
           "integrator.on_low_confidence": "best", "gaps.enabled": False, **gen, **changes},
    )  # fmt: skip
    moe = AdaptiveMoE(cfg, base=base, router=FixedRouter(cfg.router, table))
    for name, folder in adapters.items():
        moe.add_expert(folder, name, domain=f"synthetic expert {name}")
    return moe


def build_arms(args, prompts: list[str], root: Path) -> tuple[dict, dict]:
    """The arms: name -> fn() returning (token ids per prompt, decoding steps, facade timings or None,
    chosen-token log-probs per prompt or None)."""
    setup: dict = {}
    started = time.perf_counter()
    gen = {"generation.max_new_tokens": args.max_new_tokens, "generation.batch_size": len(prompts),
           "generation.do_sample": False}  # fmt: skip
    plain = load_base_model()
    adapters = {name: make_random_adapter(plain.model, root / "adapters" / name, r=16, target_modules="all-linear",
                                          seed=seed, scale=args.adapter_scale)
                for name, seed in ((ALPHA, 1), (BETA, 2))}  # fmt: skip
    table_base = {p: CONFIDENT for p in prompts}
    table_expert = {p: UNSURE for p in prompts}
    post = make_facade(load_base_model(), root / "ws-post", adapters, table_base, gen)
    generation = post.config.generation
    batch, _ = encode_prompts(plain, prompts, generation)  # the same tokenised prompts for both plain arms
    kwargs = build_generate_kwargs(plain, generation)
    eos = kwargs["eos_token_id"]
    eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])

    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(load_base_model().model, str(adapters[ALPHA]), is_trainable=False)
    peft_model.eval()
    peft_mixed = PeftModel.from_pretrained(load_base_model().model, str(adapters[ALPHA]), adapter_name=ALPHA,
                                           is_trainable=False)  # fmt: skip
    peft_mixed.load_adapter(str(adapters[BETA]), adapter_name=BETA, is_trainable=False)
    peft_mixed.eval()
    doubled, _ = encode_prompts(plain, [p for p in prompts for _ in range(2)], generation)  # prompt-major rows
    mixed_names = [ALPHA, BETA] * len(prompts)
    pre = make_facade(load_base_model(), root / "ws-pre", adapters, table_expert, gen, **{"router.mode": "pre"})
    shallow = {"router.mode": "pre", "router.pre_layers": args.pre_layers}
    pre_shallow = make_facade(load_base_model(), root / "ws-pre-shallow", adapters, table_expert, gen, **shallow)
    mix = make_facade(load_base_model(), root / "ws-mix", adapters, table_expert, gen,
                      **{"router.mode": "pre", "integrator.strategy": "mixture"})  # fmt: skip
    merged, setup["merged_fast_path"] = None, {"available": hasattr(post.config.integrator, "merged_fast_path")}
    if setup["merged_fast_path"]["available"]:
        try:
            merged = make_facade(load_base_model(), root / "ws-merged", adapters, table_expert, gen,
                                 **{"router.mode": "pre", "integrator.merged_fast_path": True})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - reported, the other arms still run
            setup["merged_fast_path"]["error"] = f"{type(e).__name__}: {e}"
    max_new = args.max_new_tokens

    def plain_arm(model, inputs=batch, **extra):
        def run():
            with torch.inference_mode():
                seq = model.generate(**inputs, **kwargs, **extra)
            ids, steps = plain_tokens(seq, inputs["input_ids"].shape[1], eos_ids)
            return ids[:: len(ids) // len(prompts)], steps, None, None  # one row per prompt

        return run

    def facade_arm(moe, route, experts=None, expected=None, extra_steps=None):
        def run():
            outs = moe.generate(prompts, experts=experts) if experts else moe.generate(prompts)
            got = [(o.route, [n for n, _ in o.experts]) for o in outs]
            if any(g != (route, expected or []) for g in got):
                raise RuntimeError(f"{moe.config.router.mode}-mode facade routed {got}, not {route} {expected}")
            steps = facade_steps([o.signals for o in outs], max_new) + (extra_steps() if extra_steps else 0)
            ids = [list(o.signals.token_ids) for o in outs]
            return ids, steps, dict(outs[0].timings), [o.signals.token_logprobs for o in outs]

        return run

    base_steps: dict[str, int] = {}

    def post_expert():  # post mode: the base pass (as moe_base, same prompts, greedy) + the expert pass
        post.router.table = table_expert
        try:
            return facade_arm(post, "expert", expected=[ALPHA], extra_steps=lambda: base_steps["steps"])()
        finally:
            post.router.table = table_base

    def moe_base():
        out = facade_arm(post, "base")()
        base_steps["steps"] = out[1]
        return out

    arms = {
        "plain_base": plain_arm(plain.model),
        "plain_copy": plain_arm(load_base_model().model),
        "plain_same": plain_arm(post.base.model),
        "plain_double": plain_arm(load_base_model().model, doubled),
        "peft_mixed": plain_arm(peft_mixed, doubled, adapter_names=mixed_names),
        "peft_expert": plain_arm(peft_model),
        "moe_base": moe_base,
        "moe_pre_expert": facade_arm(pre, "expert", expected=[ALPHA]),
        "moe_post_expert": post_expert,
        "moe_select": facade_arm(pre, "expert", experts=[ALPHA], expected=[ALPHA]),
        "moe_mixture": facade_arm(mix, "expert", experts=[ALPHA, BETA], expected=[ALPHA, BETA]),
    }
    arms["moe_pre_shallow"] = facade_arm(pre_shallow, "expert", expected=[ALPHA])
    if merged is not None:
        arms["moe_merged"] = facade_arm(merged, "expert", expected=[ALPHA])
        merged_shallow = make_facade(load_base_model(), root / "ws-merged-shallow", adapters, table_expert, gen,
                                     **shallow, **{"integrator.merged_fast_path": True})  # fmt: skip
        arms["moe_merged_shallow"] = facade_arm(merged_shallow, "expert", expected=[ALPHA])
    setup["setup_s"] = time.perf_counter() - started
    setup["prompt_tokens"] = int(batch["attention_mask"].sum())
    setup["decode"] = lambda ids: post.base.tokenizer.decode(ids, skip_special_tokens=True)
    return arms, setup


def run_rounds(arms: dict, rounds: int) -> tuple[dict, dict]:
    names = [a for a in ARMS if a in arms]
    warm = {}
    for name in names:  # warm-up, not recorded: experts loaded, caches filled; its answers are kept
        warm[name] = arms[name]()
    cells = {n: {"s": [], "steps": [], "timings_ms": []} for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            dt, (_ids, steps, timings, _logprobs) = timed(arms[name])
            cells[name]["s"].append(dt)
            cells[name]["steps"].append(steps)
            if timings:
                cells[name]["timings_ms"].append(timings)
    for cell in cells.values():
        cell["median_s"] = statistics.median(cell["s"])
        stages = sorted({k for t in cell["timings_ms"] for k in t})
        cell["stage_median_ms"] = {k: statistics.median(t.get(k, 0.0) for t in cell["timings_ms"]) for k in stages}
        del cell["timings_ms"]
    return cells, warm


def compare(cells: dict) -> dict:
    out = {}
    for key, label, num, ref, goal in COMPARISONS:
        if not all(a in cells for a in num + ref):
            out[key] = {"label": label, "short": SHORT[key], "goal": goal, "skipped": True}
            continue
        rounds = len(cells[num[0]]["s"])
        t_num = [sum(cells[a]["s"][r] for a in num) for r in range(rounds)]
        t_ref = [sum(cells[a]["s"][r] for a in ref) for r in range(rounds)]
        s_num = [sum(cells[a]["steps"][r] for a in num) for r in range(rounds)]
        s_ref = [sum(cells[a]["steps"][r] for a in ref) for r in range(rounds)]
        ratios = [n / d for n, d in zip(t_num, t_ref, strict=True)]
        per_step = [(n / sn) / (d / sd) for n, d, sn, sd in zip(t_num, t_ref, s_num, s_ref, strict=True)]
        same = s_num == s_ref
        used = ratios if same else per_step
        headline = statistics.median(used)
        out[key] = {
            "label": label, "short": SHORT[key], "numerator": num, "reference": ref, "goal": goal, "skipped": False,
            "numerator_median_s": statistics.median(t_num), "reference_median_s": statistics.median(t_ref),
            "ratios": ratios, "ratios_per_step": per_step, "same_steps": same, "steps": [s_num, s_ref],
            "ratio": headline, "ratio_min": min(used), "ratio_max": max(used), "per_step": not same,
            "met": None if goal is None else headline <= goal,
        }  # fmt: skip
    return out


def adjacent_pairs(arms: dict, comparisons: dict, pairs: int) -> None:
    """For each comparison of one arm against one arm with a goal: ``pairs`` back-to-back runs of the two
    (which goes first alternates), the ratio of each pair, and their median. Two runs seconds apart
    share the machine's state far better than two runs a round apart, so this is the tighter estimate
    of the same ratio on a noisy machine; it is reported beside the round-robin one."""
    for key, c in comparisons.items():
        if pairs < 1 or c["skipped"] or (c["goal"] is None and key != "aa") or len(c["numerator"]) != 1 or len(
                c["reference"]) != 1:  # fmt: skip
            continue
        num, ref = arms[c["numerator"][0]], arms[c["reference"][0]]
        ratios = []
        for i in range(pairs):
            if i % 2 == 0:
                (t_num, _), (t_ref, _) = timed(num), timed(ref)
            else:
                (t_ref, _), (t_num, _) = timed(ref), timed(num)
            ratios.append(t_num / t_ref)
        mid = statistics.median(ratios)
        c["pairs"] = {"n": pairs, "ratios": ratios, "median": mid, "min": min(ratios), "max": max(ratios),
                      "met": None if c["goal"] is None else mid <= c["goal"]}  # fmt: skip


def same_tokens(warm: dict) -> dict:
    out = {}
    for a, b in SAME_TOKENS:
        if a in warm and b in warm:
            pairs = list(zip(warm[a][0], warm[b][0], strict=True))
            out[f"{a}={b}"] = {"identical": sum(x == y for x, y in pairs), "prompts": len(pairs)}
    return out


def adapter_effect(warm: dict) -> dict:
    """Per expert arm, on how many prompts its answer differs from the base route's (token ids or
    chosen-token log-probs): evidence that the adapter really ran, however small its scale."""
    out = {}
    base_ids, base_lp = warm["moe_base"][0], warm["moe_base"][3]
    for name in (
        "moe_pre_expert",
        "moe_pre_shallow",
        "moe_post_expert",
        "moe_select",
        "moe_mixture",
        "moe_merged",
        "moe_merged_shallow",
    ):
        if name in warm:
            ids, lp = warm[name][0], warm[name][3]
            differ = [a != b or not torch.equal(x, y) for a, b, x, y in zip(ids, base_ids, lp, base_lp, strict=True)]
            out[name] = {"differ": sum(differ), "prompts": len(differ),
                         "tokens_differ": sum(a != b for a, b in zip(ids, base_ids, strict=True))}  # fmt: skip
    return out


def write_report(result: dict, out: Path) -> None:
    m, cmp_, cells = result["machine"], result["comparisons"], result["arms"]
    mfp = result["merged_fast_path"]
    lines = [
        "# Facade latency benchmark", "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, {m['torch_threads']} torch threads, CUDA {m['cuda']}, "
        f"torch {m['torch']}, transformers {m['transformers']}, peft {m['peft']}; load average "
        f"{m['loadavg_start'][0]:.2f} at start, {result['loadavg_end'][0]:.2f} at end. "
        f"Total {result['elapsed_s']:.0f} s (set-up {result['setup_s']:.0f} s).",
        f"Command: `{result['command']}`", "",
        f"{result['prompts']} general questions ({result['prompt_tokens']} prompt tokens) in one batched call, greedy, "
        f"max_new_tokens {result['max_new_tokens']}; {result['rounds']} round(s), arms round-robin (order rotated each "
        f"round) after one warm-up round. Experts: two random LoRA adapters (r=16, all-linear, scale "
        f"{result['adapter_scale']}). Ratio = median over rounds of that round's ratio; spread = min-max of those.",
        f"Adjacent pairs: after the rounds, {result.get('pairs', 0)} back-to-back runs of each one-arm-against-one-arm "
        "comparison with a goal (alternating which runs first), median of the pair ratios (min-max).",
        "", "| comparison | median s | reference median s | ratio | spread | adjacent pairs | goal | met? |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for c in cmp_.values():
        goal = "-" if c["goal"] is None else f"<= {c['goal']}"
        if c["skipped"]:
            lines.append(f"| {c['label']} | - | - | - | - | - | {goal} | not run |")
            continue
        met = "-" if c["met"] is None else ("yes" if c["met"] else "**no**")
        p = c.get("pairs")
        if p is not None and p["met"] is not None:
            met += "; pairs " + ("yes" if p["met"] else "**no**")
        star = " (per step)" if c["per_step"] else ""
        spread = f"{c['ratio_min']:.3f}-{c['ratio_max']:.3f}"
        paired = "-" if p is None else f"{p['median']:.3f} ({p['min']:.3f}-{p['max']:.3f})"
        lines.append(f"| {c['label']} | {c['numerator_median_s']:.3f} | {c['reference_median_s']:.3f} | "
                     f"{c['ratio']:.3f}{star} | {spread} | {paired} | {goal} | {met} |")  # fmt: skip
    per_step = [c["label"] for c in cmp_.values() if not c["skipped"] and c["per_step"]]
    lines += ["", "Decoding steps equal to the reference's in every round for every comparison: "
              + ("yes." if not per_step else "**no**: compared as time per decoding step for " + "; ".join(per_step)
                 + " (the facade cannot force a minimum answer length).")]  # fmt: skip
    if not mfp["available"]:
        lines.append("Merged fast path: `IntegratorConfig` has no field `merged_fast_path` here; not run.")
    elif mfp.get("error"):
        lines.append(f"Merged fast path: could not be set up ({mfp['error']}); not run.")
    lines += ["", "## Arms (medians)", "", "| arm | what | median s | decoding steps | facade stages, median ms |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, c in cells.items():
        stages = ", ".join(f"{k} {v:.0f}" for k, v in c["stage_median_ms"].items()) or "-"
        lines.append(f"| {name} | {ARM_LABELS[name]} | {c['median_s']:.3f} | {c['steps'][0]} | {stages} |")
    lines += ["", "Same token ids (warm-up round, per prompt): "
              + "; ".join(f"{k}: {v['identical']}/{v['prompts']}" for k, v in result["same_tokens"].items()) + ".",
              "Expert answers that differ from the base route's (token ids or chosen-token log-probs; the adapter "
              "ran): " + "; ".join(f"{k}: {v['differ']}/{v['prompts']} (token ids on {v['tokens_differ']})"
                                   for k, v in result["adapter_effect"].items()) + ".",
              "A post-mode expert arm counts the steps of its base pass (as in `moe_base`) and of its expert pass.",
              "", "First answers (warm-up round):", ""]  # fmt: skip
    lines += [f"- {name}: {text!r}" for name, text in result["sample_answers"].items()]
    write_json_and_markdown(out, "moe", result, lines)
    plt = pyplot()
    if plt is None:
        return
    shown = [c for c in cmp_.values() if not c["skipped"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = list(range(len(shown)))
    ax.bar(x, [c["ratio"] for c in shown], color=["#69c" if c["met"] is not False else "#c66" for c in shown],
           yerr=[[c["ratio"] - c["ratio_min"] for c in shown], [c["ratio_max"] - c["ratio"] for c in shown]],
           capsize=4)  # fmt: skip
    for i, c in enumerate(shown):
        if c["goal"] is not None:
            ax.hlines(c["goal"], i - 0.4, i + 0.4, colors="k", linestyles="--", linewidth=1.2,
                      label="goal" if i == 0 else None)  # fmt: skip
    ax.axhline(1.0, color="grey", linewidth=0.5)
    ax.set_xticks(x, [c["short"] for c in shown], fontsize=8)
    ax.set(ylabel="ratio to reference (median over rounds)", title="AdaptiveMoE facade latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "moe.png", dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--prompts", type=int, default=8, help=f"questions in the batch (at most {len(PROMPTS)})")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--pairs", type=int, default=6, help="adjacent pairs per comparison with a goal (0: none)")
    add_run_arguments(parser)
    parser.add_argument("--pre-layers", type=int, default=6,
                        help="router.pre_layers of the shallow pre-mode arms (SmolLM2: 30 layers)")  # fmt: skip
    parser.add_argument("--adapter-scale", type=float, default=0.01, help="std of the random LoRA A/B entries")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 prompts, 8 tokens")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.prompts, args.max_new_tokens, args.pairs = 1, 2, 8, 2
    if not 1 <= args.prompts <= len(PROMPTS):
        parser.error(f"--prompts must be 1..{len(PROMPTS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    prompts = PROMPTS[: args.prompts]
    result = {
        "machine": machine_info(args.threads),
        "command": "python benchmarks/bench_moe.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "rounds": args.rounds, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
        "adapter_scale": args.adapter_scale, "questions": prompts, "pairs": args.pairs,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-moe-") as tmp:
        arms, setup = build_arms(args, prompts, Path(tmp))
        cells, warm = run_rounds(arms, args.rounds)
        decode = setup.pop("decode")
        result.update(setup)
        result["arms"] = cells
        result["comparisons"] = compare(cells)
        adjacent_pairs(arms, result["comparisons"], args.pairs)
        result["same_tokens"] = same_tokens(warm)
        result["adapter_effect"] = adapter_effect(warm)
        result["sample_answers"] = {name: decode(w[0][0]) for name, w in warm.items()}
        result["tokens_per_prompt"] = {name: [len(ids) for ids in w[0]] for name, w in warm.items()}
    result["loadavg_end"] = os.getloadavg()
    result["elapsed_s"] = time.perf_counter() - started
    write_report(result, Path(args.out))
    print((Path(args.out) / "moe.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
