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
import gc
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..common import RESULTS, load_base, loadavg, machine_info, say
from .common import BATCH, DOMAINS, build_questions, label_mixed
from .memory import memory_section
from .quality import quality_section
from .uncertainty import speed_section, uncertainty_section
from .writing import write_report

# ----------------------------------------------------------------------------------------------------------------
# Command line


def default_out(tiny: bool = False) -> Path:
    """Where the report goes by default: ``benchmarks/results``; a ``--tiny`` run goes to a temporary
    folder, so its noise never replaces a real report."""
    if tiny:
        return Path(tempfile.gettempdir()) / "adaptive_moe-bench-tiny"
    return RESULTS


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
        from adaptive_moe.errors import InvalidInputError

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
        base, model_path = load_base(tiny, work)
        result["model"] = {"name": base.name, "fingerprint": base.fingerprint[:16], "path": model_path,
                           "device": str(base.device)}  # fmt: skip
        questions, domains = build_questions(entities, general_n, opts.seed)
        result["questions"] = {"n": len(questions), "per_domain": {d: sum(q["domain"] == d for q in questions)
                                                                  for d in DOMAINS}}  # fmt: skip
        labelled = None
        if not (opts.skip_quality and opts.skip_uncertainty):
            t = time.perf_counter()
            say(f"base answers to {len(questions)} questions")
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
    result["machine"]["loadavg_end"] = loadavg()
    result["elapsed_s"] = time.perf_counter() - started
    path = write_report(result, out)
    if echo:
        print(path.read_text())
    return path
