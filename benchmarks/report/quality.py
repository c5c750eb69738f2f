"""Section 1 of the report: answer quality of every arm (base, each expert forced, PEFT merge, PEFT Arrow,
the routed system, oracle), APGR and paired flips per domain."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

from ..common import load_base, say
from .common import ARROW_TOP_K, BATCH, DOMAINS, EXPERT_KINDS, MIXTURE_TOP_K, ROUTED, TO_EXPERTS, make_arm, unavailable

# ----------------------------------------------------------------------------------------------------------------
# 1. Answer quality


def quality_section(base, questions, domains, labelled, opts, work: Path, tiny: bool, routers: dict) -> dict:
    import numpy as np

    from adaptive_moe.config import LoRASettings
    from adaptive_moe.creation import evaluate_qa, get_scorer, train_lora

    qa = [(q["question"], q["answers"]) for q in questions]
    texts = [q["question"] for q in questions]
    judge = get_scorer("contains")
    arms: dict[str, dict[str, Any]] = {}
    arms["base"] = make_arm("(a) base alone", list(labelled["answer"]), list(labelled["correct"]), float("nan"))

    lora = LoRASettings()
    adapters: dict[str, Path] = {}
    training: dict[str, Any] = {}
    for kind in EXPERT_KINDS:
        say(f"training the {kind} expert on {len(domains[kind].training_qa())} questions")
        t = time.perf_counter()
        adapters[kind] = train_lora(base, domains[kind].training_qa(), work / "adapters" / kind, lora=lora,
                                    progress=False)  # fmt: skip
        record = json.loads((adapters[kind] / "adaptive_moe_training.json").read_text())
        training[kind] = {"seconds": time.perf_counter() - t, "steps": record.get("steps"),
                          "train_loss": record.get("train_loss"),
                          "examples": len(domains[kind].training_qa())}  # fmt: skip

    for kind in EXPERT_KINDS:
        say(f"arm (b): {kind} expert always on")
        t = time.perf_counter()
        ev = evaluate_qa(base, qa, adapter=adapters[kind], max_new_tokens=opts.max_new_tokens, batch_size=BATCH)
        arms[f"expert:{kind}"] = make_arm(f"(b) {kind} expert always on", ev.predictions, ev.correct,
                                      time.perf_counter() - t)  # fmt: skip

    device = str(base.device)
    say("arm (c): PEFT cat merge")
    arms["peft_merge"] = _peft_arm("merge", adapters, qa, opts, tiny, work, device, judge)
    say("arm (d): PEFT Arrow")
    arms["peft_arrow"] = _peft_arm("arrow", adapters, qa, opts, tiny, work, device, judge)

    for key, strategy in (("moe_select", "select"), ("moe_mixture", "mixture")):
        say(f"arm ({'e' if strategy == 'select' else 'f'}): routed system, {strategy}")
        arms[key], routers[key] = _routed_arm(base, strategy, adapters, domains, texts, questions, opts, work, tiny,
                                              judge, labelled if key == "moe_select" else None)  # fmt: skip

    base_correct = np.asarray(arms["base"]["correct"], bool)
    oracle = [arms[f"expert:{q['domain']}"]["correct"][i] if q["domain"] in EXPERT_KINDS else bool(base_correct[i])
              for i, q in enumerate(questions)]  # fmt: skip
    oracle_answers = [arms[f"expert:{q['domain']}"]["answers"][i] if q["domain"] in EXPERT_KINDS
                      else arms["base"]["answers"][i] for i, q in enumerate(questions)]  # fmt: skip
    arms["oracle"] = make_arm("(g) oracle routing (right arm per domain)", oracle_answers, oracle, 0.0)

    dom_of = [q["domain"] for q in questions]
    for arm in arms.values():
        if arm["available"]:
            arm["accuracy"] = _accuracy(arm["correct"], dom_of)
    forced = {kind: arms[f"expert:{kind}"]["correct"] for kind in EXPERT_KINDS}
    routing = {key: _routing_metrics(arms[key], arms["base"], arms["oracle"], forced, dom_of, questions)
               for key in ROUTED if arms[key]["available"]}  # fmt: skip
    return {"arms": arms, "training": training, "routing": routing, "lora": lora.to_dict(),
            "adapter_bytes": (adapters[EXPERT_KINDS[0]] / "adapter_model.safetensors").stat().st_size}  # fmt: skip


def _accuracy(correct: list[bool], dom_of: list[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for d in DOMAINS:
        rows = [c for c, dd in zip(correct, dom_of, strict=True) if dd == d]
        out[d] = sum(rows) / len(rows) if rows else None
    out["all"] = sum(correct) / len(correct) if correct else None
    return out


def _peft_arm(which: str, adapters: dict[str, Path], qa, opts, tiny: bool, work: Path, device: str, judge) -> dict:
    """(c) / (d): plain PEFT on a separately loaded copy of the base, answered through the same generation
    path as every other arm (``evaluate_qa`` on that copy: the PEFT layers are injected into its model)."""
    from adaptive_moe.creation import evaluate_qa

    names = list(adapters)
    label = (f"(c) PEFT add_weighted_adapter cat merge, weights {opts.merge_weight:g} each" if which == "merge"
             else f"(d) PEFT Arrow routing, top_k {ARROW_TOP_K}")  # fmt: skip
    copy = None
    gc.collect()  # the previous copy (PEFT wrappers hold reference cycles)
    try:
        copy, _ = load_base(tiny, work, device)
        t = time.perf_counter()
        if which == "merge":
            from peft import PeftModel

            model = PeftModel.from_pretrained(copy.model, str(adapters[names[0]]), adapter_name=names[0])
            for name in names[1:]:
                model.load_adapter(str(adapters[name]), adapter_name=name)
            model.add_weighted_adapter(names, [opts.merge_weight] * len(names), "merged", combination_type="cat")
            model.set_adapter("merged")
            extra = {"combination_type": "cat", "weights": [opts.merge_weight] * len(names)}
        else:
            try:
                from peft import ArrowConfig, create_arrow_model
            except ImportError as e:
                return unavailable(label, f"not available: this PEFT has no Arrow ({e})")
            config = ArrowConfig(top_k=min(ARROW_TOP_K, len(names)), router_temperature=1.0, rng_seed=0)
            model = create_arrow_model(copy.model, [str(adapters[n]) for n in names], config)
            extra = {"top_k": config.top_k, "router_temperature": 1.0}
        model.eval()
        setup_s = time.perf_counter() - t
        ev = evaluate_qa(copy, qa, max_new_tokens=opts.max_new_tokens, batch_size=BATCH)
        return make_arm(label, ev.predictions, ev.correct, time.perf_counter() - t, setup_s=setup_s, **extra)
    except Exception as e:  # noqa: BLE001 - a plain alternative that fails is reported, the others still run
        return unavailable(label, f"not available: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
        del copy
        gc.collect()


def facade(base, strategy: str, workspace: Path, tiny: bool, max_new_tokens: int):
    from adaptive_moe.config import AdaptiveMoEConfig
    from adaptive_moe.moe import AdaptiveMoE

    changes: dict[str, Any] = {"gaps.enabled": False, "integrator.strategy": strategy,
                               "generation.max_new_tokens": max_new_tokens, "generation.batch_size": BATCH,
                               "generation.do_sample": False}  # fmt: skip
    if strategy == "mixture":
        changes["router.top_k"] = MIXTURE_TOP_K
    if tiny:
        changes["router.embedder"] = "base"  # no MiniLM needed for the plumbing check
    moe = AdaptiveMoE(AdaptiveMoEConfig().replace(workspace=str(workspace), **changes), base=base)
    if strategy == "mixture" and hasattr(moe.router, "config") and moe.router.config.top_k != MIXTURE_TOP_K:
        moe.router.config = moe.router.config.replace(top_k=MIXTURE_TOP_K)  # a loaded router has its own config
    return moe


def describe_router(router, base) -> dict[str, Any]:
    from adaptive_moe.routing.bundled import EMBEDDED_ROUTER_DIR, embedded_router_for

    shipped = embedded_router_for(base) is not None
    config = getattr(router, "config", None)
    fit_tokens = None
    if shipped:
        try:
            fit_tokens = json.loads((EMBEDDED_ROUTER_DIR / "fit.json").read_text())["generation"]["max_new_tokens"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return {
        "fit_max_new_tokens": fit_tokens,
        "class": type(router).__name__,
        "source": "shipped for this base (router.pretrained: auto)" if shipped
        else "none shipped for this base: the facade's default, untrained (estimator's own confidence map)",
        "shipped": shipped,
        "estimator": getattr(getattr(router, "estimator", None), "name", None),
        "calibrated": getattr(router, "calibrator", None) is not None,
        "threshold": getattr(config, "threshold", None), "top_k": getattr(config, "top_k", None),
        "matcher": getattr(config, "matcher", None), "embedder": getattr(config, "embedder", None),
        "min_match_score": getattr(config, "min_match_score", None),
    }  # fmt: skip


def _routed_arm(base, strategy, adapters, domains, texts, questions, opts, work, tiny, judge, labelled):
    """(e) / (f): the facade as a user runs it: experts added, then ``moe.generate`` on every question."""
    import numpy as np

    moe = facade(base, strategy, work / f"ws-{strategy}", tiny, opts.max_new_tokens)
    for kind, folder in adapters.items():
        dom = domains[kind]
        moe.add_expert(folder, kind, domain=dom.description, questions=[q.question for q in dom.training_qa()])
    label = ("(e) adaptive_moe routed, select" if strategy == "select"
             else f"(f) adaptive_moe routed, mixture top_k {MIXTURE_TOP_K}")  # fmt: skip
    t = time.perf_counter()
    outs = moe.generate(texts, record_gaps=False, max_new_tokens=opts.max_new_tokens, batch_size=BATCH)
    seconds = time.perf_counter() - t
    stats = moe.pool.stats
    arm = make_arm(label, [o.text for o in outs],
               [judge.score(o.text, q["answers"]) for o, q in zip(outs, questions, strict=True)], seconds,
               routes=[o.route for o in outs], experts=[[n for n, _ in o.experts] for o in outs],
               confidence=[None if o.confidence is None else float(o.confidence) for o in outs],
               base_text=[o.base_text for o in outs], router=describe_router(moe.router, base),
               pool={"hits": stats.hits, "misses": stats.misses, "evictions": stats.evictions})  # fmt: skip
    if labelled is not None and hasattr(moe.router, "route_batch"):
        arm["onward"] = _onward_choice(moe.router, labelled)  # the matched expert of every question
    moe.pool.clear()
    if labelled is not None:
        same = [o.base_text == a for o, a in zip(outs, labelled["answer"], strict=True)]
        arm["base_pass_identical"] = int(np.sum(same))
    return arm, moe.router


def _onward_choice(router, labelled) -> list[str | None]:
    """Per question, the expert the router would send it to if its confidence were low (``None``: a gap)."""
    from adaptive_moe.routing import Query, signals_from_row

    queries = [Query(r["question"], signals=signals_from_row(r)) for r in labelled]
    try:
        decisions = router.route_batch(queries, match_all=True)
    except TypeError:  # a router without match_all
        decisions = router.route_batch(queries)
    floor = getattr(router.config, "min_match_score", 0.0)
    out = []
    for d in decisions:
        best = d.best_expert
        out.append(best[0] if best is not None and best[1] >= floor and best[1] > 0 else None)
    return out


def _routing_metrics(arm, base_arm, oracle_arm, forced, dom_of, questions) -> dict[str, Any]:
    import numpy as np

    from adaptive_moe.creation import QAEvaluation, paired_comparison
    from adaptive_moe.errors import InvalidInputError
    from adaptive_moe.evaluation import metrics

    def safe(fn, *args):
        try:
            return float(fn(*args))
        except InvalidInputError:
            return None

    routes = arm["routes"]
    n = len(routes)
    out: dict[str, Any] = {
        "routes": {r: routes.count(r) for r in ("base", "expert", "gap", "abstain")},
        "share_to_experts": {d: _share([r in TO_EXPERTS for r, dd in zip(routes, dom_of, strict=True) if dd == d])
                             for d in DOMAINS},
        "two_experts": sum(len(e) >= 2 for e in arm["experts"]),
    }  # fmt: skip
    out["share_to_experts"]["all"] = sum(r in TO_EXPERTS for r in routes) / n
    out["share_onward"] = sum(r != "base" for r in routes) / n
    qb = np.asarray(base_arm["correct"], float)
    qo = np.asarray(oracle_arm["correct"], float)
    qa = np.asarray(arm["correct"], float)
    gap = qo.mean() - qb.mean()
    out["pgr_at_threshold"] = float((qa.mean() - qb.mean()) / gap) if gap > 0 else None
    conf = arm["confidence"]
    if all(c is not None for c in conf):
        score = 1.0 - np.asarray(conf, float)  # higher = sent onward first
        out["apgr"] = safe(metrics.apgr, score, qb, qo)
        out["share_for_50"] = safe(metrics.share_for_gain, score, qb, qo, 0.5)
        out["share_for_80"] = safe(metrics.share_for_gain, score, qb, qo, 0.8)
        if gap > 0:
            shares, quality = metrics.routing_curve(score, qb, qo)
            out["curve_oracle"] = {"shares": shares.tolist(), "pgr": ((quality - qb.mean()) / gap).tolist()}
            if "onward" in arm:  # the select system itself: onward = its matched expert's forced answer, or the base
                onward = [qb[i] if e is None else float(forced[e][i]) for i, e in enumerate(arm["onward"])]
                shares, quality = metrics.routing_curve(score, qb, np.asarray(onward, float))
                pgr = (quality - qb.mean()) / gap
                out["curve_system"] = {"shares": shares.tolist(), "pgr": pgr.tolist(),
                                       "apgr": float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(shares)) / 2),
                                       "best_pgr": float(pgr.max())}  # fmt: skip
    checks = {}
    for d in DOMAINS:
        idx = [i for i, dd in enumerate(dom_of) if dd == d]
        if not idx:
            continue
        qs = [questions[i]["question"] for i in idx]
        before = QAEvaluation(qs, [base_arm["answers"][i] for i in idx], [base_arm["correct"][i] for i in idx])
        after = QAEvaluation(qs, [arm["answers"][i] for i in idx], [arm["correct"][i] for i in idx])
        checks[d] = paired_comparison(before, after)
    out["paired_vs_base"] = checks
    out["no_domain_worse"] = all(c["delta"] >= 0 for c in checks.values())
    out["no_domain_significantly_worse"] = all(not (c["delta"] < 0 and c["mcnemar_p"] < 0.05) for c in checks.values())
    return out


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None
