"""The ``adaptive-moe`` command: each subcommand parses its arguments, then makes one library call.

Exit codes: 0 success, 2 usage error, 1 failure (one-line reason; full trace with ``--verbose``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import AdaptiveMoEConfig, config_help
from .errors import AdaptiveMoEError
from .logging_utils import setup_logging


def _load_config(path: str | None) -> AdaptiveMoEConfig:
    return AdaptiveMoEConfig.from_yaml(path) if path else AdaptiveMoEConfig()


def _usage_error(message: str) -> SystemExit:
    """A usage error: one line on stderr and exit code 2, as argparse does."""
    print(f"adaptive-moe: error: {message}", file=sys.stderr)
    return SystemExit(2)


def cmd_demo(args: argparse.Namespace) -> int:
    """``adaptive-moe demo``: the whole adaptive loop on the shipped invented domain."""
    from .demo import run_demo

    run_demo(_load_config(args.config), progress=not args.quiet)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``adaptive-moe serve``: the OpenAI-compatible HTTP API, in the foreground until SIGTERM/SIGINT."""
    from .moe import AdaptiveMoE
    from .serving import serve

    cfg = _load_config(args.config)
    flags = (("host", args.host), ("port", args.port), ("engine", args.engine), ("replicas", args.replicas),
             ("ray_address", args.address))  # fmt: skip
    changes = {f"serve.{k}": v for k, v in flags if v is not None}
    cfg = cfg.replace(**changes) if changes else cfg
    if cfg.serve.engine == "ray":
        from .serving.ray_serve import serve_ray

        serve_ray(cfg)
        return 0
    with AdaptiveMoE(cfg) as moe:
        serve(moe, cfg.serve)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """``adaptive-moe generate``: answer one prompt through the routed system."""
    from .moe import AdaptiveMoE

    settings = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens is not None else {}
    experts = [e for e in args.experts.split(",") if e] if args.experts else None
    moe = AdaptiveMoE(_load_config(args.config))
    outputs = moe.generate(list(args.prompt), experts=experts, **settings)
    if args.json:
        rows = []
        for o in outputs:
            row = o.to_dict()
            if args.signals and o.signals is not None:
                row["signals"] = o.signals.to_dict()
            rows.append(row)
        print(json.dumps(rows, indent=2))
    else:
        for o in outputs:
            conf = "n/a" if o.confidence is None else f"{o.confidence:.2f}"
            experts_ = ", ".join(n for n, _ in o.experts)
            print(f"{o.text}\n  [route {o.route}{' ' + experts_ if experts_ else ''}, confidence {conf}"
                  f"{', flagged' if o.flagged else ''}]")  # fmt: skip
    return 0


def cmd_gaps(args: argparse.Namespace) -> int:
    """``adaptive-moe gaps``: cluster the open knowledge gaps into candidate domains."""
    from .moe import AdaptiveMoE

    report = AdaptiveMoE(_load_config(args.config)).analyze_gaps()
    if args.out:
        report.write(args.out)
    print(report.to_json() if args.json else str(report))
    return 0


def accelerate_command(processes: int, argv: Sequence[str], port: int | None = None) -> list[str]:
    """The ``accelerate launch`` command that runs ``adaptive-moe <argv>`` in ``processes`` processes (DDP:
    NCCL on GPUs, gloo on CPU; ``--multi_gpu`` is accelerate's DDP launcher either way)."""
    from .testing import free_port

    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port or free_port()), "-m", "adaptive_moe.cli", *argv]  # fmt: skip


def _without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option`` and its value (``--option N`` or ``--option=N``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def cmd_create_expert(args: argparse.Namespace) -> int:
    """``adaptive-moe create-expert``: documents and/or question files -> an admitted expert."""
    from .creation.training import process_rank
    from .moe import AdaptiveMoE
    from .routing.training import read_labelled_questions

    if args.processes > 1 and "RANK" not in os.environ:  # run this same command under accelerate launch
        import subprocess

        return subprocess.call(accelerate_command(args.processes, _without_option(args.argv, "--processes")))

    questions = _qa_pairs(read_labelled_questions(args.questions)) if args.questions else None
    heldout = _qa_pairs(read_labelled_questions(args.heldout)) if args.heldout else None
    moe = AdaptiveMoE(_load_config(args.config))
    result = moe.create_expert(args.name, documents=args.docs or None, questions=questions,
                               heldout_questions=heldout, domain=args.domain or "", new_version=args.new_version,
                               progress=not args.quiet)  # fmt: skip
    if process_rank() != 0:  # a helper process under accelerate launch: process 0 reports
        return 0
    print(json.dumps(result.to_dict(), indent=2, default=str) if args.json else str(result))
    return 0 if result.admitted else 1


def _qa_pairs(rows: list[dict]) -> list[tuple[str, list[str]]]:
    return [(r["question"], list(r["answers"])) for r in rows]


def cmd_config(args: argparse.Namespace) -> int:
    """``adaptive-moe config show|check|keys``."""
    if args.action == "show":
        print(_load_config(args.file or args.config).to_yaml(), end="")
    elif args.action == "check":
        path = args.file or args.config
        if not path:
            raise _usage_error("config check: give a config file")
        AdaptiveMoEConfig.from_yaml(path)
        print(f"{path}: valid")
    else:  # keys
        for key, default, help_ in config_help():
            print(f"{key:<36} {default:<34} {help_}")
    return 0


def cmd_experts(args: argparse.Namespace) -> int:
    """``adaptive-moe experts list|show|remove|import``."""
    from .experts import ExpertRegistry

    cfg = _load_config(args.config)
    registry = ExpertRegistry(args.registry or cfg.registry_path, allow_pickle=cfg.pool.allow_pickle)
    if args.action == "list":
        cards = registry.list()
        if args.json:
            print(json.dumps([c.to_dict() for c in cards], indent=2))
        for card in [] if args.json else cards:
            print(card.summary())
        if not cards and not args.json:
            print(f"no experts in {registry.root}")
        return 0
    if not args.name:
        raise _usage_error(f"experts {args.action}: give an expert name")
    if args.action == "show":
        print(json.dumps(registry.card(args.name, args.version).to_dict(), indent=2))
    elif args.action == "remove":
        registry.remove(args.name, args.version)
        print(f"removed {args.name}" + (f" v{args.version}" if args.version else ""))
    else:  # import
        if not args.path:
            raise _usage_error("experts import: give --path, the PEFT adapter folder")
        base = None
        if args.check:
            from .model import load_base_model

            base = load_base_model(cfg.model)
        card = registry.import_adapter(args.path, args.name, domain=args.domain or "", base=base,
                                       new_version=args.new_version)  # fmt: skip
        print(f"imported {card.summary()} into {registry.root}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``adaptive-moe calibrate``: fit a router on labelled questions and save it."""
    from .routing.training import calibrate_router

    cfg = _load_config(args.config)
    if args.delta is not None and args.target_error is None:
        raise _usage_error("calibrate: --delta goes with --target-error")
    if args.target_error is not None:
        changes = {"router.target_error": args.target_error}
        cfg = cfg.replace(**changes, **({"router.delta": args.delta} if args.delta is not None else {}))
    _, report, path = calibrate_router(cfg, args.data, out=args.out, cache_dir=args.cache_dir, share=args.share)
    print(report.summary())
    print(f"router saved to {path}")
    return 0


def cmd_evaluate_router(args: argparse.Namespace) -> int:
    """``adaptive-moe evaluate-router``: AUROC, PRR, ECE and matching of a saved router on held-out questions."""
    from .routing.evaluation import evaluate_saved_router

    report, files = evaluate_saved_router(_load_config(args.config), args.data, args.router, out=args.out,
                                          cache_dir=args.cache_dir, bootstrap=args.bootstrap)  # fmt: skip
    print(report.summary())
    print("written: " + ", ".join(str(f) for f in files))
    return 0


BENCH_HELP = (
    "the benchmark report against the plain alternatives (PEFT merge, PEFT Arrow, oracle routing). It runs "
    "the harness kept in a source checkout's benchmarks/ folder, which a wheel does not ship: clone the "
    "repository, 'pip install -e .' there and run this from the clone. 'adaptive-moe bench --help' lists its flags."
)


def find_benchmarks() -> Path | None:
    """The source checkout whose ``benchmarks/report`` harness ``adaptive-moe bench`` runs: the one this
    package is installed from (an editable install), else the current folder; ``None`` when neither has it."""
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (root / "benchmarks" / "report" / "__init__.py").is_file():
            return root
    return None


def cmd_bench(argv: Sequence[str]) -> int:
    """``adaptive-moe bench [flags]``: the flags are the harness's own (``benchmarks/bench_report.py``)."""
    root = find_benchmarks()
    if root is None:
        print(f"adaptive-moe: error: no benchmarks/ folder found. {BENCH_HELP}", file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    harness = importlib.import_module("benchmarks.report")  # launched, not depended on: no static import
    setup_logging("INFO")
    try:
        return harness.main(list(argv))
    except AdaptiveMoEError as e:
        print(f"adaptive-moe: error: {str(e).strip()}", file=sys.stderr)
        return 1


def cmd_info(args: argparse.Namespace) -> int:
    """``adaptive-moe info``: versions, device and the cache folder, as JSON."""
    import platform

    import torch
    import transformers

    from .model.bundled import cache_root

    info = {
        "adaptive_moe": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.cuda.is_available(),
        "cache": str(cache_root()),
    }
    for key, value in info.items():
        print(f"{key:<14} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``adaptive-moe`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="adaptive-moe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"adaptive-moe {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config YAML (default: built-in defaults)")
    common.add_argument("--verbose", "-v", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", parents=[common], help="run the main job on the embedded model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", parents=[common],
                       help="serve the OpenAI-compatible HTTP API (API key from $ADAPTIVE_MOE_API_KEY)")  # fmt: skip
    p.add_argument("--host", help="address to bind (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default: serve.port, 8000)")
    p.add_argument("--engine", choices=("local", "ray"), help="one process (default) or Ray Serve replicas")
    p.add_argument("--replicas", type=int, help="model replicas with --engine ray (default: serve.replicas, 2)")
    p.add_argument("--address", help="a Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("generate", parents=[common], help="answer prompts, routed between the base and experts")
    p.add_argument("prompt", nargs="+", help="one or more prompts")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--experts", help="comma-separated expert names to answer with (skips the router's choice)")
    p.add_argument("--json", action="store_true", help="print each answer with its route and attribution as JSON")
    p.add_argument("--signals", action="store_true", help="with --json: add the answer's token log-probs")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("gaps", parents=[common], help="cluster the logged knowledge gaps into candidate domains")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", help="also write gaps.json and gaps.md to this folder")
    p.set_defaults(func=cmd_gaps)

    p = sub.add_parser("create-expert", parents=[common], help="grow an expert from documents, admit and register it")
    p.add_argument("name", help="the new expert's name")
    p.add_argument("--docs", nargs="+", help="documents: .txt / .md / .jsonl files or folders")
    p.add_argument("--questions", help='JSONL of your own training pairs {"question", "answers"}')
    p.add_argument("--heldout", help="JSONL of evaluation-only pairs (needed without --docs)")
    p.add_argument("--domain", help="what the expert covers, in words")
    p.add_argument("--new-version", action="store_true", help="add a version when the name exists")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--processes", type=int, default=1,
                   help="train in N processes (runs this command under `accelerate launch`; DDP)")  # fmt: skip
    p.set_defaults(func=cmd_create_expert)

    p = sub.add_parser("config", parents=[common], help="show, check or list configuration keys")
    p.add_argument("action", choices=("show", "check", "keys"))
    p.add_argument("file", nargs="?", help="config file (default: --config, else the defaults)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("experts", parents=[common], help="list, show, remove or import experts")
    p.add_argument("action", choices=("list", "show", "remove", "import"))
    p.add_argument("name", nargs="?", help="expert name (show, remove, import)")
    p.add_argument("--path", help="import: the PEFT adapter folder")
    p.add_argument("--domain", help="import: what the expert covers")
    p.add_argument("--version", type=int, default=None, help="show/remove: one version (default: latest/all)")
    p.add_argument("--new-version", action="store_true", help="import: add a version of an existing name")
    p.add_argument("--check", action="store_true", help="import: load the base model and check the adapter fits")
    p.add_argument("--registry", help="registry folder (default: pool.registry in the config's workspace)")
    p.add_argument("--json", action="store_true", help="list: print the cards as JSON")
    p.set_defaults(func=cmd_experts)

    p = sub.add_parser("calibrate", parents=[common], help="train the router on labelled questions and save it")
    p.add_argument(
        "--data",
        required=True,
        help='JSONL: {"question", "answers" (list or string), "domain"?, '
        '"family"?}; with families, also prints the leave-one-family-out table of the estimators',
    )
    p.add_argument("--out", help="router folder (default: router in the config's workspace)")
    p.add_argument("--cache-dir", help="folder that keeps the labelled base answers for reuse")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--target-error", type=float, help="threshold so base-answered error <= this (prob 1 - delta)")
    how.add_argument("--share", type=float, help="threshold that sends this share of validation questions onward")
    p.add_argument("--delta", type=float, help="with --target-error: failure probability allowed (default: config)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate-router", parents=[common], help="evaluate a saved router on labelled questions")
    p.add_argument("--data", required=True, help="JSONL test questions the router was not trained on")
    p.add_argument("--router", required=True, help="folder written by 'adaptive-moe calibrate'")
    p.add_argument("--out", help="results folder (default: results in the config's workspace)")
    p.add_argument("--cache-dir", help="folder that keeps the labelled base answers for reuse")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the confidence intervals")
    p.set_defaults(func=cmd_evaluate_router)

    # 'bench' is dispatched in main() before parsing (its flags belong to the harness); listed here for --help
    sub.add_parser("bench", help=BENCH_HELP, add_help=False)

    p = sub.add_parser("info", parents=[common], help="versions, device and cache folder")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``adaptive-moe`` command with ``argv`` (default: the process's arguments); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    args.argv = argv
    setup_logging("DEBUG" if args.verbose else "INFO")
    try:
        return args.func(args)
    except AdaptiveMoEError as e:
        if args.verbose:
            logging.getLogger("adaptive_moe").exception("failed")
        message = str(e).strip()
        print(f"adaptive-moe: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("adaptive-moe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
