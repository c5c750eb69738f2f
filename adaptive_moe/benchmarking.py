"""The benchmark report: this library against the plain alternatives on one base model (``adaptive-moe bench``).

Run by ``python benchmarks/bench_report.py`` and ``adaptive-moe bench`` (the same flags); writes
``report.md``, ``report.json`` and ``report_*.png`` into ``--out``. Sections:

1. **Answer quality** on a mixed set: the general check set (or its first ``--general`` questions), three
   synthetic domains with an expert each (people, companies, places; each expert trained by
   :func:`~adaptive_moe.creation.train_lora` on ``dom.training_qa()`` with the default LoRA settings) and
   one domain without an expert (products); questions are each domain's ``test_qa`` (worded unlike the
   training questions). Arms, every one answering every question once (greedy, ``--max-new-tokens``,
   batches of 16):

   (a) the base alone (the answers :func:`~adaptive_moe.routing.label_base_answers` records);
   (b) each expert always on (plain PEFT: :func:`~adaptive_moe.creation.evaluate_qa` with ``adapter=``);
   (c) plain PEFT merge of the three: ``PeftModel.from_pretrained`` + ``load_adapter`` +
       ``add_weighted_adapter(combination_type="cat")``, equal weights, on a separately loaded base copy;
   (d) plain PEFT Arrow routing over the same three (``create_arrow_model``, per-token top-k), on another
       copy; recorded as not available when PEFT lacks it or it fails;
   (e) / (f) this library's routed system (``AdaptiveMoE.generate`` in the default ``post`` mode) with
       ``integrator.strategy`` ``select`` and ``mixture`` (router ``top_k`` 2), the router the facade gives
       the base (for the embedded model the shipped one), the experts added with their training questions;
   (g) oracle routing: per question, the answer of the arm right for its domain (its expert for the three
       expert domains, the base for general questions and the uncovered domain); no new generation.

   Reported: accuracy per domain, the share routed to experts, RouteLLM's APGR between the base (weak)
   and the oracle (strong) as the router's threshold varies, the share routed for 50% / 80% of the gain,
   and per domain the paired flips of each routed arm against the base ("no domain worse than base").
2. **Uncertainty**: AUROC / PRR per estimator for the base's errors on the mixed set
   (:func:`~adaptive_moe.routing.evaluation.evaluate_router` with the routed system's router) and the
   risk-coverage curves.
3. **Speed**: the ratio tables of ``moe.json`` / ``pool.json`` (``bench_moe.py`` / ``bench_pool.py``) when
   present, with their dates; not re-run here.
4. **Memory**: peak RSS of fresh subprocesses: the base alone; 50 registered random experts (rank 32 on
   the default target modules) in a pool of capacity 8, all acquired in a Zipf-ish order; and, as the
   plain alternative, the same 50 adapters loaded into one ``PeftModel``.

``--tiny`` runs everything on a tiny random model (2 entities, 8 general questions) in seconds: it checks
the plumbing, its numbers are noise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXPERT_KINDS = ("people", "companies", "places")
UNCOVERED_KIND = "products"
DOMAINS = ("general", *EXPERT_KINDS, UNCOVERED_KIND)
DOMAIN_HEADERS = {"general": "general", UNCOVERED_KIND: f"{UNCOVERED_KIND} (no expert)"}
BATCH = 16
MIXTURE_TOP_K = 2
ARROW_TOP_K = 2
MEMORY_EXPERTS = 50
MEMORY_CAPACITY = 8
ZIPF_EXPONENT = 1.1
PROBE = "Explain in one short paragraph why the sky looks blue during the day."
ROUTED = ("moe_select", "moe_mixture")
_TO_EXPERTS = ("expert", "abstain")  # routes the router sent to experts (abstain: every expert answer was unsure)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def _checkout_results() -> Path | None:
    """``benchmarks/results`` of the source checkout this module runs from, if it is one."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    return folder / "results" if folder.is_dir() else None


def default_out(tiny: bool = False) -> Path:
    """Where the report goes by default: ``benchmarks/results`` of a source checkout (else ``./bench-results``);
    a ``--tiny`` run goes to a temporary folder, so its noise never replaces a real report."""
    if tiny:
        return Path(tempfile.gettempdir()) / "adaptive_moe-bench-tiny"
    return _checkout_results() or Path("bench-results")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The report's flags (shared by ``benchmarks/bench_report.py`` and ``adaptive-moe bench``)."""
    parser.add_argument("--entities", type=int, default=None, help="invented entities per synthetic domain (12)")
    parser.add_argument(
        "--general", type=int, default=None, help="use N general questions, odd-numbered first (all 207)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help="most tokens per answer (64: the facade's default, which the shipped router was fitted on)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    parser.add_argument("--seed", type=int, default=200, help="seed of the synthetic domains (kind i: seed + i)")
    parser.add_argument("--merge-weight", type=float, default=1.0,
                        help="weight of each expert in the PEFT cat merge (1.0: the sum; 1/3: the mean)")  # fmt: skip
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples for AUROC intervals (1000)")
    parser.add_argument("--out", default=None, help="results folder (benchmarks/results; --tiny: a temp folder)")
    parser.add_argument("--skip-quality", action="store_true", help="skip section 1 (experts are not trained)")
    parser.add_argument("--skip-uncertainty", action="store_true", help="skip section 2")
    parser.add_argument("--skip-memory", action="store_true", help="skip section 4")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny random model, 2 entities, 8 general questions: checks the plumbing in seconds "
                             "(results are noise)")  # fmt: skip
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark report: adaptive_moe against the plain alternatives")
    return add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/bench_report.py [flags]``: run the report, print its Markdown."""
    run_benchmark(build_parser().parse_args(argv))
    return 0


def _command(opts: argparse.Namespace) -> str:
    defaults = vars(build_parser().parse_args([]))
    flags = []
    for key, default in defaults.items():
        value = getattr(opts, key, default)
        if value == default:
            continue
        flag = "--" + key.replace("_", "-")
        flags.append(flag if value is True else f"{flag} {value}")
    return " ".join(["python benchmarks/bench_report.py", *flags])


# ----------------------------------------------------------------------------------------------------------------
# The whole report


def run_benchmark(opts: argparse.Namespace, echo: bool = True) -> Path:
    """Run every section ``opts`` asks for (the flags of :func:`add_arguments`), write ``report.md``,
    ``report.json`` and the PNG plots into ``opts.out`` and return the path of ``report.md``."""
    import torch

    tiny = bool(getattr(opts, "tiny", False))
    entities = opts.entities if opts.entities is not None else (2 if tiny else 12)
    general_n = opts.general if opts.general is not None else (8 if tiny else None)
    bootstrap = opts.bootstrap if opts.bootstrap is not None else (100 if tiny else 1000)
    out = Path(opts.out) if opts.out else default_out(tiny)
    if entities < 1 or (general_n is not None and general_n < 1) or opts.max_new_tokens < 1 or opts.threads < 1:
        from .errors import InvalidInputError

        raise InvalidInputError("--entities, --general, --max-new-tokens and --threads must be at least 1")
    torch.set_num_threads(opts.threads)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": machine_info(opts.threads),
        "command": _command(opts),
        "settings": {"tiny": tiny, "entities": entities, "general": general_n, "max_new_tokens": opts.max_new_tokens,
                     "threads": opts.threads, "seed": opts.seed, "merge_weight": opts.merge_weight,
                     "bootstrap": bootstrap, "batch": BATCH},
        "stage_s": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="adaptive_moe-bench-") as tmp:
        work = Path(tmp)
        base, model_path = _load_base(tiny, work)
        result["model"] = {"name": base.name, "fingerprint": base.fingerprint[:16], "path": model_path,
                           "device": str(base.device)}  # fmt: skip
        questions, domains = build_questions(entities, general_n, opts.seed)
        result["questions"] = {"n": len(questions), "per_domain": {d: sum(q["domain"] == d for q in questions)
                                                                  for d in DOMAINS}}  # fmt: skip
        labelled = None
        if not (opts.skip_quality and opts.skip_uncertainty):
            t = time.perf_counter()
            _say(f"base answers to {len(questions)} questions")
            labelled = label_mixed(base, questions, opts.max_new_tokens, progress=not tiny)
            result["stage_s"]["base_answers"] = time.perf_counter() - t
        routers: dict[str, Any] = {}
        if not opts.skip_quality:
            t = time.perf_counter()
            result["quality"] = quality_section(base, questions, domains, labelled, opts, work, tiny, routers)
            result["quality"]["arms"]["base"]["seconds"] = result["stage_s"]["base_answers"]
            result["stage_s"]["quality"] = time.perf_counter() - t
        if not opts.skip_uncertainty:
            t = time.perf_counter()
            oracle = result.get("quality", {}).get("arms", {}).get("oracle", {}).get("correct")
            result["uncertainty"] = uncertainty_section(base, labelled, questions, routers, oracle, bootstrap, tiny,
                                                        work)  # fmt: skip
            result["stage_s"]["uncertainty"] = time.perf_counter() - t
        result["speed"] = speed_section(out)
        if not opts.skip_memory:
            t = time.perf_counter()
            result["memory"] = memory_section(base, model_path, opts, work)
            result["stage_s"]["memory"] = time.perf_counter() - t
        del base
        gc.collect()
    result["machine"]["loadavg_end"] = _loadavg()
    result["elapsed_s"] = time.perf_counter() - started
    path = write_report(result, out)
    if echo:
        print(path.read_text())
    return path


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(threads: int) -> dict[str, Any]:
    import numpy
    import peft
    import torch
    import transformers

    from . import __version__

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(), "threads": threads,
        "torch_threads": torch.get_num_threads(), "adaptive_moe": __version__, "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__, "numpy": numpy.__version__,
        "cuda": torch.cuda.is_available(), "loadavg_start": _loadavg(),
    }  # fmt: skip


def _load_base(tiny: bool, work: Path, device: str | None = None):
    from .model import load_base_model

    if tiny:
        from .testing import make_tiny_model

        folder = work / "tiny-model"
        if not folder.is_dir():
            make_tiny_model(folder, "llama", chat_template=True)
        return load_base_model(name_or_path=str(folder), device=device or "cpu"), str(folder)
    return (load_base_model(device=device) if device else load_base_model()), None


# ----------------------------------------------------------------------------------------------------------------
# Data


def build_questions(entities: int, general_n: int | None, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The mixed set: general questions (``index``: their position in the check set), then each synthetic
    domain's ``test_qa``. Returns the questions and the synthetic domains by kind."""
    from .creation import general_knowledge_questions, make_synthetic_domain

    general = list(enumerate(general_knowledge_questions()))
    if general_n:  # the odd-numbered ones first: the shipped router was fitted on the even-numbered ones
        general = sorted(general, key=lambda item: (item[0] % 2 == 0, item[0]))[:general_n]
        general.sort()
    questions = [{"question": q, "answers": list(a), "domain": "general", "index": i}
                 for i, (q, a) in general]  # fmt: skip
    domains = {}
    for i, kind in enumerate((*EXPERT_KINDS, UNCOVERED_KIND)):
        dom = make_synthetic_domain(kind, n_entities=entities, seed=seed + i)
        domains[kind] = dom
        questions += [{"question": qa.question, "answers": list(qa.answers), "domain": kind, "index": j}
                      for j, qa in enumerate(dom.test_qa)]  # fmt: skip
    return questions, domains


def _router_domain(domain: str) -> str:
    from .routing.training import GENERAL

    return GENERAL if domain == "general" else domain


def label_mixed(base, questions: list[dict[str, Any]], max_new_tokens: int, progress: bool):
    from .config import GenerationConfig
    from .routing import label_base_answers

    rows = [(q["question"], q["answers"], _router_domain(q["domain"])) for q in questions]
    generation = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=BATCH, do_sample=False)
    return label_base_answers(base, rows, generation=generation, progress=progress)


def _arm(label: str, answers: list[str], correct: list[bool], seconds: float, **extra: Any) -> dict[str, Any]:
    return {"label": label, "available": True, "answers": list(answers), "correct": [bool(c) for c in correct],
            "seconds": seconds, **extra}  # fmt: skip


def _unavailable(label: str, reason: str) -> dict[str, Any]:
    return {"label": label, "available": False, "reason": reason}


# ----------------------------------------------------------------------------------------------------------------
# 1. Answer quality


def quality_section(base, questions, domains, labelled, opts, work: Path, tiny: bool, routers: dict) -> dict:
    import numpy as np

    from .config import LoRASettings
    from .creation import evaluate_qa, get_scorer, train_lora

    qa = [(q["question"], q["answers"]) for q in questions]
    texts = [q["question"] for q in questions]
    judge = get_scorer("contains")
    arms: dict[str, dict[str, Any]] = {}
    arms["base"] = _arm("(a) base alone", list(labelled["answer"]), list(labelled["correct"]), float("nan"))

    lora = LoRASettings()
    adapters: dict[str, Path] = {}
    training: dict[str, Any] = {}
    for kind in EXPERT_KINDS:
        _say(f"training the {kind} expert on {len(domains[kind].training_qa())} questions")
        t = time.perf_counter()
        adapters[kind] = train_lora(base, domains[kind].training_qa(), work / "adapters" / kind, lora=lora,
                                    progress=False)  # fmt: skip
        record = json.loads((adapters[kind] / "adaptive_moe_training.json").read_text())
        training[kind] = {"seconds": time.perf_counter() - t, "steps": record.get("steps"),
                          "train_loss": record.get("train_loss"),
                          "examples": len(domains[kind].training_qa())}  # fmt: skip

    for kind in EXPERT_KINDS:
        _say(f"arm (b): {kind} expert always on")
        t = time.perf_counter()
        ev = evaluate_qa(base, qa, adapter=adapters[kind], max_new_tokens=opts.max_new_tokens, batch_size=BATCH)
        arms[f"expert:{kind}"] = _arm(f"(b) {kind} expert always on", ev.predictions, ev.correct,
                                      time.perf_counter() - t)  # fmt: skip

    device = str(base.device)
    _say("arm (c): PEFT cat merge")
    arms["peft_merge"] = _peft_arm("merge", adapters, qa, opts, tiny, work, device, judge)
    _say("arm (d): PEFT Arrow")
    arms["peft_arrow"] = _peft_arm("arrow", adapters, qa, opts, tiny, work, device, judge)

    for key, strategy in (("moe_select", "select"), ("moe_mixture", "mixture")):
        _say(f"arm ({'e' if strategy == 'select' else 'f'}): routed system, {strategy}")
        arms[key], routers[key] = _routed_arm(base, strategy, adapters, domains, texts, questions, opts, work, tiny,
                                              judge, labelled if key == "moe_select" else None)  # fmt: skip

    base_correct = np.asarray(arms["base"]["correct"], bool)
    oracle = [arms[f"expert:{q['domain']}"]["correct"][i] if q["domain"] in EXPERT_KINDS else bool(base_correct[i])
              for i, q in enumerate(questions)]  # fmt: skip
    oracle_answers = [arms[f"expert:{q['domain']}"]["answers"][i] if q["domain"] in EXPERT_KINDS
                      else arms["base"]["answers"][i] for i, q in enumerate(questions)]  # fmt: skip
    arms["oracle"] = _arm("(g) oracle routing (right arm per domain)", oracle_answers, oracle, 0.0)

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
    from .creation import evaluate_qa

    names = list(adapters)
    label = (f"(c) PEFT add_weighted_adapter cat merge, weights {opts.merge_weight:g} each" if which == "merge"
             else f"(d) PEFT Arrow routing, top_k {ARROW_TOP_K}")  # fmt: skip
    copy = None
    gc.collect()  # the previous copy (PEFT wrappers hold reference cycles)
    try:
        copy, _ = _load_base(tiny, work, device)
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
                return _unavailable(label, f"not available: this PEFT has no Arrow ({e})")
            config = ArrowConfig(top_k=min(ARROW_TOP_K, len(names)), router_temperature=1.0, rng_seed=0)
            model = create_arrow_model(copy.model, [str(adapters[n]) for n in names], config)
            extra = {"top_k": config.top_k, "router_temperature": 1.0}
        model.eval()
        setup_s = time.perf_counter() - t
        ev = evaluate_qa(copy, qa, max_new_tokens=opts.max_new_tokens, batch_size=BATCH)
        return _arm(label, ev.predictions, ev.correct, time.perf_counter() - t, setup_s=setup_s, **extra)
    except Exception as e:  # noqa: BLE001 - a plain alternative that fails is reported, the others still run
        return _unavailable(label, f"not available: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
        del copy
        gc.collect()


def _facade(base, strategy: str, workspace: Path, tiny: bool, max_new_tokens: int):
    from .config import AdaptiveMoEConfig
    from .moe import AdaptiveMoE

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
    from .routing.bundled import EMBEDDED_ROUTER_DIR, embedded_router_for

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

    moe = _facade(base, strategy, work / f"ws-{strategy}", tiny, opts.max_new_tokens)
    for kind, folder in adapters.items():
        dom = domains[kind]
        moe.add_expert(folder, kind, domain=dom.description, questions=[q.question for q in dom.training_qa()])
    label = ("(e) adaptive_moe routed, select" if strategy == "select"
             else f"(f) adaptive_moe routed, mixture top_k {MIXTURE_TOP_K}")  # fmt: skip
    t = time.perf_counter()
    outs = moe.generate(texts, record_gaps=False, max_new_tokens=opts.max_new_tokens, batch_size=BATCH)
    seconds = time.perf_counter() - t
    stats = moe.pool.stats
    arm = _arm(label, [o.text for o in outs],
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
    from .routing import Query, signals_from_row

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

    from .creation import QAEvaluation, paired_comparison
    from .errors import InvalidInputError
    from .routing import metrics

    def safe(fn, *args):
        try:
            return float(fn(*args))
        except InvalidInputError:
            return None

    routes = arm["routes"]
    n = len(routes)
    out: dict[str, Any] = {
        "routes": {r: routes.count(r) for r in ("base", "expert", "gap", "abstain")},
        "share_to_experts": {d: _share([r in _TO_EXPERTS for r, dd in zip(routes, dom_of, strict=True) if dd == d])
                             for d in DOMAINS},
        "two_experts": sum(len(e) >= 2 for e in arm["experts"]),
    }  # fmt: skip
    out["share_to_experts"]["all"] = sum(r in _TO_EXPERTS for r in routes) / n
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


# ----------------------------------------------------------------------------------------------------------------
# 2. Uncertainty


def uncertainty_section(base, labelled, questions, routers, oracle, bootstrap: int, tiny: bool, work: Path) -> dict:
    import numpy as np

    from .routing import signals_from_row
    from .routing.evaluation import DEFAULT_ESTIMATORS, evaluate_router
    from .routing.metrics import risk_coverage_curve
    from .uncertainty import get_estimator, list_estimators

    router = routers.get("moe_select")
    if router is None:  # quality skipped: the router the facade gives this base, without experts
        router = _facade(base, "select", work / "ws-uncertainty", tiny, 32).router
    info = describe_router(router, base)
    strong = [float(c) for c in oracle] if oracle is not None else None
    report = evaluate_router(router, labelled, strong_quality=strong, bootstrap=bootstrap)
    out: dict[str, Any] = {"router": info, "report": report.to_dict()}
    if info["shipped"]:  # the shipped router was fitted on the even-numbered general questions
        keep = [i for i, q in enumerate(questions) if q["domain"] != "general" or q["index"] % 2 == 1]
        held = labelled.select(keep)
        if sum(q["domain"] == "general" for q in (questions[i] for i in keep)):
            out["heldout_report"] = evaluate_router(router, held, bootstrap=min(bootstrap, 200)).to_dict()
    signals = [signals_from_row(r) for r in labelled]
    y = np.asarray(labelled["correct"], bool)
    curves = {}
    if 0 < y.sum() < len(y):
        for name in [n for n in DEFAULT_ESTIMATORS if n in list_estimators()]:
            cov, risk = risk_coverage_curve(get_estimator(name).score_batch(signals), y)
            curves[name] = {"coverage": cov.tolist(), "risk": risk.tolist()}
        raw = router.estimator.score_batch(signals)
        cov, risk = risk_coverage_curve(router.confidence(raw), y)
        curves[f"router:{router.estimator.name}"] = {"coverage": cov.tolist(), "risk": risk.tolist()}
    out["risk_coverage"] = curves
    return out


# ----------------------------------------------------------------------------------------------------------------
# 3. Speed (read, not run)


def speed_section(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in ("moe", "pool"):
        for folder in (out, _checkout_results()):
            path = None if folder is None else folder / f"{name}.json"
            if path is not None and path.is_file():
                try:
                    data = json.loads(path.read_text())
                except ValueError as e:
                    found[name] = {"path": str(path), "error": f"unreadable: {e}"}
                    break
                mtime = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc)
                found[name] = {"path": str(path), "date": mtime.isoformat(timespec="seconds"),
                               "command": data.get("command"), "machine": data.get("machine", {}),
                               "tables": _speed_tables(name, data)}  # fmt: skip
                break
    return found


def _speed_tables(name: str, data: dict) -> list[dict[str, Any]]:
    """Rows ``{what, value, goal, met}`` of the ratio tables of moe.json / pool.json."""
    rows: list[dict[str, Any]] = []
    if name == "moe":
        for c in data.get("comparisons", {}).values():
            if c.get("skipped"):
                rows.append({"what": c.get("label"), "value": None, "goal": c.get("goal"), "met": None})
            else:
                rows.append({"what": c.get("label") + (" (per step)" if c.get("per_step") else ""),
                             "value": c.get("ratio"), "goal": c.get("goal"), "met": c.get("met")})  # fmt: skip
        return rows
    hit = data.get("hit", {})
    if "ratio" in hit:
        rows.append({"what": "pool hit / one base forward pass", "value": hit["ratio"], "goal": None, "met": None})
    labels = {"hotswap": "(a) pool miss, hot-swap", "new_slot": "(b) pool miss, new slot",
              "first_slot": "(b0) pool miss, first slot", "file_read": "(c) reading the adapter file",
              "peft_naive": "(d) PEFT load_adapter + set_adapter + delete_adapter",
              "peft_wrap": "(d2) PEFT from_pretrained + unload"}  # fmt: skip
    for key, arm in data.get("miss", {}).get("arms", {}).items():
        goal = 5.0 if key == "hotswap" else None
        ratio = arm.get("ratio_to_file_read")
        rows.append({"what": f"{labels.get(key, key)} / file read", "value": ratio, "goal": goal,
                     "met": None if goal is None or ratio is None else ratio <= goal})  # fmt: skip
    for cap, c in data.get("zipf", {}).get("capacities", {}).items():
        rows.append({"what": f"Zipf hit rate, capacity {cap}", "value": c.get("hit_rate"), "goal": None, "met": None})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 4. Memory (fresh subprocesses)


def zipf_order(n: int, seed: int = 0, requests: int | None = None) -> list[int]:
    """A request stream over ``n`` experts, Zipf-distributed (exponent 1.1), in which every expert appears
    at least once (those the draws missed are put in at random places)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    requests = requests or 4 * n
    p = 1.0 / np.arange(1, n + 1) ** ZIPF_EXPONENT
    stream = [int(x) for x in rng.choice(n, size=requests, p=p / p.sum())]
    for missing in sorted(set(range(n)) - set(stream)):
        stream.insert(int(rng.integers(0, len(stream) + 1)), missing)
    return stream


def memory_section(base, model_path: str | None, opts, work: Path) -> dict[str, Any]:
    from .config import LoRASettings
    from .creation.training import resolve_target_modules
    from .experts import ExpertRegistry

    lora = LoRASettings()
    targets = resolve_target_modules(lora, base.model)
    registry = ExpertRegistry(work / "memory-registry")
    _say(f"memory: making {MEMORY_EXPERTS} random adapters (r={lora.r}, target_modules {lora.target_modules!r})")
    t = time.perf_counter()
    quiet = logging.getLogger("adaptive_moe.experts.registry")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # one "registered" line per expert is noise here
    try:
        _make_random_registry(base, registry, targets, lora.r, work)
    finally:
        quiet.setLevel(level)
    setup_s = time.perf_counter() - t
    names = registry.names()
    order = [names[i] for i in zipf_order(len(names), seed=opts.seed)]
    common = {"model": model_path, "device": str(base.device), "threads": opts.threads, "max_new_tokens": 8}
    runs = {}
    for kind, spec in (
        ("base", {"kind": "base"}),
        ("pool", {"kind": "pool", "registry": str(registry.root), "order": order, "capacity": MEMORY_CAPACITY}),
        ("peft_all", {"kind": "peft_all", "adapters": [str(registry.path_of(n)) for n in names]}),
    ):
        _say(f"memory: subprocess {kind}")
        runs[kind] = _run_child({**common, **spec})
    weights = registry.path_of(names[0]) / "adapter_model.safetensors"
    return {"experts": len(names), "capacity": MEMORY_CAPACITY, "r": lora.r, "target_modules": lora.target_modules,
            "resolved_targets": len(targets) if isinstance(targets, list) else targets,
            "adapter_file_bytes": weights.stat().st_size, "requests": len(order), "distinct": len(set(order)),
            "setup_s": setup_s, "runs": runs}  # fmt: skip


def _make_random_registry(base, registry, targets, r: int, work: Path) -> None:
    from .testing import make_random_adapter

    for i in range(MEMORY_EXPERTS):
        src = make_random_adapter(base.model, work / "memory-src" / f"e{i:02d}", r=r, target_modules=targets, seed=i,
                                  scale=0.01)  # fmt: skip
        registry.import_adapter(src, f"e{i:02d}", domain=f"random expert {i}", base=base)
        shutil.rmtree(src)


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    code = ("import json, sys\nfrom adaptive_moe.benchmarking import memory_child\n"
            "print('@@' + json.dumps(memory_child(json.loads(sys.argv[1]))))")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    try:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                              timeout=3600, env=env)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 3600 s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("@@")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1][2:])


def _rss_fields() -> dict[str, int | None]:
    """VmHWM (peak) and VmRSS (now) in bytes from /proc, else the peak from getrusage."""
    out: dict[str, int | None] = {"peak_rss_bytes": None, "rss_bytes": None}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_rss_bytes"] = int(line.split()[1]) * 1024
            elif line.startswith("VmRSS:"):
                out["rss_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    if out["peak_rss_bytes"] is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_rss_bytes"] = int(peak if sys.platform == "darwin" else peak * 1024)
    return out


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One memory measurement in a fresh process (see :func:`memory_section`): load the base, answer a probe
    prompt, then (``kind``) nothing more / acquire the registry's experts in ``order`` from a pool and answer
    with the last / load every adapter into one ``PeftModel`` and answer with the last; report peak RSS."""
    import torch

    from .config import GenerationConfig
    from .model import load_base_model

    torch.set_num_threads(int(spec["threads"]))
    started = time.perf_counter()
    if spec.get("model"):
        base = load_base_model(name_or_path=spec["model"], device=spec.get("device", "cpu"))
    else:
        base = load_base_model(device=spec["device"]) if spec.get("device") else load_base_model()
    gen = GenerationConfig(max_new_tokens=int(spec["max_new_tokens"]), do_sample=False)
    base.generate_with_signals([PROBE], gen)
    out: dict[str, Any] = {"kind": spec["kind"], "after_base": _rss_fields()}
    t = time.perf_counter()
    if spec["kind"] == "pool":
        from .experts import ExpertPool, ExpertRegistry

        pool = ExpertPool(base, ExpertRegistry(spec["registry"]), capacity=int(spec["capacity"]))
        for name in spec["order"]:
            with pool.acquire([name]):
                pass
        with pool.acquire([spec["order"][-1]]) as [expert]:
            expert.generate([PROBE], gen)
        s = pool.stats
        out["pool"] = {"hits": s.hits, "misses": s.misses, "evictions": s.evictions, "hotswaps": s.hotswaps,
                       "resident": len(s.resident), "resident_bytes": s.resident_bytes}  # fmt: skip
    elif spec["kind"] == "peft_all":
        from peft import PeftModel

        dirs = spec["adapters"]
        model = PeftModel.from_pretrained(base.model, dirs[0], adapter_name="a0", is_trainable=False)
        for i, folder in enumerate(dirs[1:], 1):
            model.load_adapter(folder, adapter_name=f"a{i}", is_trainable=False)
        model.set_adapter(f"a{len(dirs) - 1}")
        model.eval()
        base.generate_with_signals([PROBE], gen)
        out["adapters_loaded"] = len(dirs)
    out["work_s"] = time.perf_counter() - t
    out["total_s"] = time.perf_counter() - started
    out.update(_rss_fields())
    return out


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
    from .utils.io import atomic_write_text

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
