"""Writing the report: report.md, report.json and the report_*.png plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .common import ARROW_TOP_K, DOMAIN_HEADERS, DOMAINS, MIXTURE_TOP_K, ROUTED

# ----------------------------------------------------------------------------------------------------------------
# Writing


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _mib(x: Any) -> str:
    return "-" if x is None else f"{x / 2**20:,.0f}"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        return _jsonable(x.item())
    return x


def write_report(result: dict[str, Any], out: Path) -> Path:
    from adaptive_moe.utils.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out)
    lines = _markdown(result, plots)
    atomic_write_text(out / "report.json", json.dumps(_jsonable(result), indent=1))
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"


def _markdown(r: dict[str, Any], plots: dict[str, str]) -> list[str]:
    m, s = r["machine"], r["settings"]
    load = f"{m['loadavg_start'][0]:.2f} at start" if m.get("loadavg_start") else "n/a"
    if m.get("loadavg_end"):
        load += f", {m['loadavg_end'][0]:.2f} at end"
    lines = [
        "# Benchmark report: adaptive_moe against the plain alternatives", "",
        *(["> **--tiny run: a tiny random model. These numbers check the plumbing and mean nothing.**", ""]
          if s["tiny"] else []),
        f"Machine: {m['platform']}, {m['cpus']} CPUs, {m['torch_threads']} torch threads, CUDA {m['cuda']}; "
        f"python {m['python']}, adaptive_moe {m['adaptive_moe']}, torch {m['torch']}, transformers "
        f"{m['transformers']}, peft {m['peft']}, numpy {m['numpy']}; load average {load}. "
        f"Date {m['date']}; total {r['elapsed_s']:.0f} s.",
        f"Model: {r['model']['name']} (fingerprint {r['model']['fingerprint']}, {r['model']['device']}).",
        f"Command: `{r['command']}`", "",
        f"Mixed set: {r['questions']['n']} questions: "
        + ", ".join(f"{DOMAIN_HEADERS.get(d, d)} {n}" for d, n in r["questions"]["per_domain"].items())
        + f". Synthetic domains: {s['entities']} invented entities each, seeds {s['seed']}..{s['seed'] + 3}, "
        f"questions from `test_qa` (worded unlike the training questions). Greedy, max_new_tokens "
        f"{s['max_new_tokens']}, batches of {s['batch']}; scoring: normalised whole-word `contains`.",
    ]  # fmt: skip
    if "quality" in r:
        lines += _quality_md(r["quality"], plots, s["max_new_tokens"])
    else:
        lines += ["", "## 1. Answer quality", "", "Skipped (`--skip-quality`)."]
    if "uncertainty" in r:
        lines += _uncertainty_md(r["uncertainty"], plots, s["max_new_tokens"])
    else:
        lines += ["", "## 2. Uncertainty", "", "Skipped (`--skip-uncertainty`)."]
    lines += _speed_md(r["speed"])
    if "memory" in r:
        lines += _memory_md(r["memory"], plots)
    else:
        lines += ["", "## 4. Memory", "", "Skipped (`--skip-memory`)."]
    lines += ["", "Stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["stage_s"].items()) + "."]
    return lines


def _fit_note(router: dict[str, Any], max_new_tokens: int) -> str:
    fit = router.get("fit_max_new_tokens")
    if fit is None or fit == max_new_tokens:
        return ""
    return (f" It was fitted on answers of up to {fit} new tokens; this run generates up to {max_new_tokens}, so the "
            "answer statistics its probe reads are cut shorter than in its fit.")  # fmt: skip


def _quality_md(q: dict[str, Any], plots: dict[str, str], max_new_tokens: int) -> list[str]:
    arms, routing = q["arms"], q["routing"]
    lora = q["lora"]
    heads = [DOMAIN_HEADERS.get(d, d) for d in DOMAINS]
    lines = ["", "## 1. Answer quality", "",
             f"Experts: LoRA r={lora['r']}, alpha={lora['alpha']}, target_modules={lora['target_modules']!r}, "
             f"lr={lora['learning_rate']}, epochs={lora['epochs']} (the library defaults), trained on "
             "`training_qa()`: " + "; ".join(f"{k} {v['examples']} examples, {v['steps']} steps, {v['seconds']:.0f} s"
                                            for k, v in q["training"].items()) + ".",
             "", f"| arm | {' | '.join(heads)} | all | routed to experts | s |",
             "|---|" + "---|" * (len(heads) + 3)]  # fmt: skip
    for key, arm in arms.items():
        if not arm["available"]:
            lines.append(f"| {arm['label']} | " + " | ".join(["-"] * (len(heads) + 1)) + f" | - | {arm['reason']} |")
            continue
        acc = arm["accuracy"]
        routed = _f(routing[key]["share_to_experts"]["all"]) if key in routing else "-"
        secs = "-" if key == "oracle" else f"{arm['seconds']:.0f}"
        lines.append(f"| {arm['label']} | " + " | ".join(_f(acc[d]) for d in DOMAINS) + f" | **{_f(acc['all'])}** | "
                     f"{routed} | {secs} |")  # fmt: skip
    lines += ["", "Arm (a) is the base pass `label_base_answers` makes (shared with section 2); (g) is computed from "
              "(a) and (b), no generation. Seconds: that arm's answering (PEFT arms: set-up included). Routed to "
              "experts: routes `expert` and `abstain` (sent to experts, all answers below the floor)."]  # fmt: skip
    for key in ROUTED:
        if key not in routing:
            continue
        rt = routing[key]
        arm = arms[key]
        lines += ["", f"**{arm['label']}**: routes " + ", ".join(f"{k} {v}" for k, v in rt["routes"].items())
                  + "; share routed to experts per domain: "
                  + ", ".join(f"{DOMAIN_HEADERS.get(d, d)} {_f(v)}" for d, v in rt["share_to_experts"].items())
                  + (f"; answered by {MIXTURE_TOP_K} experts: {rt['two_experts']}" if key == "moe_mixture" else "")
                  + (f"; base-route answers identical to arm (a): {arm['base_pass_identical']}/{len(arm['routes'])}"
                     if "base_pass_identical" in arm else "") + "."]  # fmt: skip
    r0 = next((arms[k]["router"] for k in ROUTED if arms[k].get("available")), None)
    if r0:
        lines += ["", f"Router: {r0['class']}, {r0['source']}; estimator {r0['estimator']}, calibrated "
                  f"{r0['calibrated']}, threshold {_f(r0['threshold'], 2)}, matcher {r0['matcher']} on "
                  f"{r0['embedder']} embeddings, min_match_score {_f(r0['min_match_score'], 2)}."
                  + _fit_note(r0, max_new_tokens)]  # fmt: skip
    lines += ["", "### Cost and quality (RouteLLM)", "",
              "Weak = the base alone, strong = the oracle (g). The router's threshold varies over its own confidences "
              "(route score 1 - confidence; ties averaged): APGR is the area under the performance-gap-recovered "
              "curve against the share sent onward (random routing: 0.5); CPT = the share that must go onward for "
              "that part of the gain. *At threshold*: the arm's real accuracy as a share of the base-to-oracle gap, "
              "at the share it really sent onward (expert, gap or abstain).", "",
              "| arm | APGR | CPT(50%) | CPT(80%) | sent onward at threshold | PGR at threshold | system curve APGR |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key in ROUTED:
        if key in routing:
            rt = routing[key]
            system = _f(rt["curve_system"]["apgr"]) if "curve_system" in rt else "-"
            lines.append(f"| {arms[key]['label']} | {_f(rt.get('apgr'))} | {_f(rt.get('share_for_50'))} | "
                         f"{_f(rt.get('share_for_80'))} | {_f(rt['share_onward'])} | {_f(rt['pgr_at_threshold'])} | "
                         f"{system} |")  # fmt: skip
    lines += ["", "System curve (select only): the same threshold sweep, but a question sent onward gets the forced "
              "answer (b) of the expert its matcher picks (the base's answer when none matches: a gap), so it "
              "includes matching errors; it leaves out the confidence floor's fallback and abstentions."]  # fmt: skip
    if "routing" in plots:
        lines += ["", f"![cost and quality]({plots['routing']})"]
    lines += ["", "### No domain worse than the base (paired flips per domain)", "",
              f"| arm | {' | '.join(heads)} | no domain worse? | none significantly worse (McNemar p < 0.05)? |",
              "|---|" + "---|" * (len(heads) + 2)]  # fmt: skip
    for key in ROUTED:
        if key in routing:
            rt = routing[key]
            cells = []
            for d in DOMAINS:
                c = rt["paired_vs_base"].get(d)
                cells.append("-" if c is None else f"{c['delta']:+.3f} ({c['flipped_to_right']} up / "
                             f"{c['flipped_to_wrong']} down, p {c['mcnemar_p']:.2g})")  # fmt: skip
            lines.append(f"| {arms[key]['label']} | " + " | ".join(cells) + f" | "
                         f"{'yes' if rt['no_domain_worse'] else '**no**'} | "
                         f"{'yes' if rt['no_domain_significantly_worse'] else '**no**'} |")  # fmt: skip
    if "quality" in plots:
        lines += ["", f"![accuracy per domain]({plots['quality']})"]
    lines += ["", "### What each arm does", "",
              "- (a) base alone: the frozen base answers every question.",
              "- (b) one expert always on: `evaluate_qa(base, questions, adapter=dir)` (plain PEFT: the adapter "
              "attached with `PeftModel.from_pretrained` for the whole set, then unloaded).",
              "- (c) PEFT merge: on a separately loaded base copy, `PeftModel.from_pretrained` (first expert) + "
              "`load_adapter` (the others) + `add_weighted_adapter(names, weights, 'merged', combination_type='cat')` "
              "+ `set_adapter('merged')`: every expert's update applied to every question.",
              f"- (d) PEFT Arrow: `create_arrow_model(copy, [dirs], ArrowConfig(top_k={ARROW_TOP_K}, "
              "router_temperature=1.0, rng_seed=0))` on another copy: per token and layer, the top-k experts by "
              "the similarity of the hidden state to each expert's top singular vector, softmax-weighted.",
              "- (e) / (f) adaptive_moe: `AdaptiveMoE(cfg, base=base)` (gaps off), `add_expert(dir, name, "
              "domain=..., questions=training questions)`, then `moe.generate(questions)`: one base pass, the "
              "router's confidence decides base or onward, the matcher picks the expert(s), the integrator "
              f"answers (`select`: one expert; `mixture`: token-level mixture of up to {MIXTURE_TOP_K}), an expert "
              "answer below `integrator.expert_confidence_floor` tries the next match, then abstains (counted "
              "wrong). Library defaults otherwise.",
              "- (g) oracle: each question takes the answer of the arm right for its domain ((b) of its expert "
              "for people / companies / places, (a) for general and products)."]  # fmt: skip
    return lines


def _uncertainty_md(u: dict[str, Any], plots: dict[str, str], max_new_tokens: int) -> list[str]:
    rep = u["report"]
    r = u["router"]
    lines = ["", "## 2. Uncertainty: predicting the base's errors", "",
             f"The base's answers to the mixed set ({rep['n']} questions, {rep['n_general']} general; base accuracy "
             f"{_f(rep['base_accuracy'])}, general {_f(rep['base_accuracy_general'])}), scored by "
             f"`evaluate_router` with the router: {r['class']}, {r['source']} (estimator {r['estimator']})."
             + _fit_note(r, max_new_tokens), "",
             "| estimator | AUROC | 95% CI | AUROC general | PRR | PRR general | ECE |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip

    def ci(c):
        return "-" if not c else f"[{c[0]:.3f}, {c[1]:.3f}]"

    for name, e in rep["estimators"].items():
        lines.append(f"| {name} | {_f(e.get('auroc'))} | {ci(e.get('auroc_ci'))} | {_f(e.get('auroc_general'))} | "
                     f"{_f(e.get('prr'))} | {_f(e.get('prr_general'))} | {_f(e.get('ece'))} |")  # fmt: skip
    cal = rep.get("calibration", {})
    lines += ["", f"Router confidence ECE {_f(cal.get('ece_before'))} uncalibrated, {_f(cal.get('ece_after'))} "
              f"calibrated; AURC {_f(rep.get('risk_coverage', {}).get('aurc'))}; routes at the threshold: "
              + ", ".join(f"{k} {v}" for k, v in rep.get("routes", {}).items()) + "."]  # fmt: skip
    if rep.get("matching"):
        mt = rep["matching"]
        lines.append(f"Matching (every question): domain questions to their own expert {_f(mt['domain_to_own_expert'])}"
                     f", general questions to any expert {_f(mt['general_to_any_expert'])}, products questions to "
                     f"any expert {_f(mt['uncovered_to_any_expert'])}. The matcher is centred on the general check "
                     "set itself (the facade's background), which flatters the general number.")  # fmt: skip
    held = u.get("heldout_report")
    if held:
        est = held["estimators"].get(f"router:{r['estimator']}", {})
        lines.append(f"The shipped router was fitted on the even-numbered general questions; on the rest of the mix "
                     f"({held['n']} questions, {held['n_general']} general) its AUROC is {_f(est.get('auroc'))} "
                     f"(general {_f(est.get('auroc_general'))}), PRR {_f(est.get('prr'))}.")  # fmt: skip
    if "uncertainty" in plots:
        lines += ["", f"![risk-coverage]({plots['uncertainty']})"]
    return lines


def _speed_md(speed: dict[str, Any]) -> list[str]:
    lines = ["", "## 3. Speed (read from the latency benchmarks, not re-run)", ""]
    how = {"moe": "python benchmarks/bench_moe.py", "pool": "python benchmarks/bench_pool.py"}
    for name in ("moe", "pool"):
        got = speed.get(name)
        title = {"moe": "Facade latency (`moe.json`)", "pool": "Expert pool (`pool.json`)"}[name]
        if got is None:
            lines += [f"**{title}**: not found; run `{how[name]}` to make it.", ""]
            continue
        if "error" in got:
            lines += [f"**{title}**: {got['error']}", ""]
            continue
        mach = got.get("machine", {})
        lines += [f"**{title}**, written {got['date']} by `{got.get('command')}` ({mach.get('cpus')} CPUs, torch "
                  f"{mach.get('torch')}); re-run with `{how[name]}`.", "",
                  "| comparison | ratio / value | goal | met? |", "|---|---|---|---|"]  # fmt: skip
        for row in got["tables"]:
            goal = "-" if row["goal"] is None else f"<= {row['goal']}"
            met = "-" if row["met"] is None else ("yes" if row["met"] else "**no**")
            value = "-" if row["value"] is None else f"{row['value']:.4g}"
            lines.append(f"| {row['what']} | {value} | {goal} | {met} |")
        lines.append("")
    return lines


def _memory_md(mem: dict[str, Any], plots: dict[str, str]) -> list[str]:
    runs = mem["runs"]
    lines = ["", "## 4. Memory (peak RSS of fresh subprocesses)", "",
             f"{mem['experts']} random LoRA adapters (r={mem['r']}, target_modules {mem['target_modules']!r}: "
             f"{mem['resolved_targets']} modules, {mem['adapter_file_bytes'] / 2**20:.1f} MiB each) in a registry. "
             f"Each process loads the base and answers one probe prompt (8 tokens), then: nothing more (base "
             f"alone); `ExpertPool(capacity={mem['capacity']})` acquiring them in a Zipf-ish order ({mem['requests']} "
             f"requests, all {mem['distinct']} experts at least once) and answering with the last (adaptive_moe); or "
             "all of them loaded into one `PeftModel` (`from_pretrained` + `load_adapter`) and answering with the "
             "last (plain PEFT).", "",
             "| process | peak RSS MiB | RSS at end MiB | over base alone, MiB | work s | notes |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    base_peak = runs.get("base", {}).get("peak_rss_bytes")
    labels = {"base": "base alone", "pool": f"adaptive_moe pool, {mem['experts']} registered, capacity "
              f"{mem['capacity']}", "peft_all": f"plain PEFT, {mem['experts']} adapters loaded"}  # fmt: skip
    for key, run in runs.items():
        if "error" in run:
            lines.append(f"| {labels[key]} | - | - | - | - | failed: {run['error']} |")
            continue
        over = "-" if base_peak is None or key == "base" else _mib(run["peak_rss_bytes"] - base_peak)
        note = ""
        if key == "pool":
            p = run["pool"]
            note = (f"hits {p['hits']}, misses {p['misses']}, evictions {p['evictions']}, hot-swaps {p['hotswaps']}, "
                    f"{p['resident']} resident ({p['resident_bytes'] / 2**20:.0f} MiB)")  # fmt: skip
        lines.append(f"| {labels[key]} | {_mib(run['peak_rss_bytes'])} | {_mib(run['rss_bytes'])} | {over} | "
                     f"{run['work_s']:.1f} | {note} |")  # fmt: skip
    if "memory" in plots:
        lines += ["", f"![memory]({plots['memory']})"]
    return lines


def _plots(r: dict[str, Any], out: Path) -> dict[str, str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    made: dict[str, str] = {}
    q = r.get("quality")
    if q:
        arms = [(k, a) for k, a in q["arms"].items() if a["available"]]
        cols = [*DOMAINS, "all"]
        fig, ax = plt.subplots(figsize=(13, 4.8))
        width = 0.8 / max(len(arms), 1)
        for i, (_, arm) in enumerate(arms):
            ax.bar([c + i * width for c in range(len(cols))], [arm["accuracy"][c] or 0 for c in cols], width,
                   label=arm["label"])  # fmt: skip
        ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cols))], [DOMAIN_HEADERS.get(c, c) for c in cols])
        ax.set(ylabel="accuracy", ylim=(0, 1.05), title="Answer accuracy per domain")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "report_quality.png", dpi=100)
        plt.close(fig)
        made["quality"] = "report_quality.png"
        routing = q["routing"].get("moe_select") or next(iter(q["routing"].values()), None)
        if routing and "curve_oracle" in routing:
            fig, ax = plt.subplots(figsize=(6.5, 4.5))
            c = routing["curve_oracle"]
            ax.plot(c["shares"], c["pgr"], label=f"router confidence, onward = oracle (APGR {_f(routing['apgr'], 2)})")
            if "curve_system" in routing:
                c = routing["curve_system"]
                ax.plot(c["shares"], c["pgr"], label=f"select system, onward = matched expert (APGR {c['apgr']:.2f})")
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random routing")
            for key, marker, size in zip(ROUTED, "os", (10, 6), strict=True):
                rt = q["routing"].get(key)
                if rt and rt["pgr_at_threshold"] is not None:
                    ax.plot([rt["share_onward"]], [rt["pgr_at_threshold"]], marker, markersize=size,
                            label=f"{q['arms'][key]['label']}, at its threshold")  # fmt: skip
            ax.set(xlabel="share of questions sent onward", ylabel="share of the base-to-oracle gain",
                   title="Cost and quality as the threshold varies")  # fmt: skip
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(out / "report_routing.png", dpi=100)
            plt.close(fig)
            made["routing"] = "report_routing.png"
    u = r.get("uncertainty")
    if u and u.get("risk_coverage"):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for name, c in u["risk_coverage"].items():
            ax.plot(c["coverage"], c["risk"], label=name, linewidth=2 if name.startswith("router:") else 1)
        ax.set(xlabel="coverage (share answered by the base, most confident first)", ylabel="error among answered",
               title="Risk-coverage of the base's answers")  # fmt: skip
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "report_uncertainty.png", dpi=100)
        plt.close(fig)
        made["uncertainty"] = "report_uncertainty.png"
    mem = r.get("memory")
    if mem:
        runs = [(k, v) for k, v in mem["runs"].items() if "peak_rss_bytes" in v]
        if runs:
            fig, ax = plt.subplots(figsize=(6.5, 4))
            ax.bar([k for k, _ in runs], [v["peak_rss_bytes"] / 2**20 for _, v in runs], color="#69c")
            ax.set(ylabel="peak RSS MiB", title=f"{mem['experts']} experts: pool (capacity {mem['capacity']}) vs PEFT")
            fig.tight_layout()
            fig.savefig(out / "report_memory.png", dpi=100)
            plt.close(fig)
            made["memory"] = "report_memory.png"
    return made
