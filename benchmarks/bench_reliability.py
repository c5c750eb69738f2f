"""Crash consistency (issue 20): SIGKILL a process at a random moment while it imports and removes experts
and records gaps, then reopen every store and check its invariants.

A worker process opens the expert registry and the gap ledger of one workspace and loops over random
operations (import an expert, add a version, remove a version or an expert, record a gap with a request
id), printing an acknowledgement once each returns. After ``READY`` the parent waits a random moment
(``--max-delay``) and kills it with SIGKILL. Then, in the parent:

- the ledger opens, and every acknowledged gap is in it (by request id), once;
- the registry opens; every version it lists verifies (card readable, weights whole and loadable as
  safetensors); every acknowledged import that was not removed later is there, every acknowledged
  removal is gone;
- a new import and a new gap record succeed at once (no lock or temporary left by the dead writer
  blocks the next one).

The trials take turns on ``--workspaces`` workspaces (state accumulates over 5 trials each by default,
as in a long-lived deployment; every check verifies every version, so more would mostly time the checks).

Then (``--system-trials``) the same for a worker that creates experts from documents and saves the system
with ``save_pretrained`` on a tiny model (see :func:`check_system`).

    python benchmarks/bench_reliability.py --trials 200     # ~35 minutes on 2 cores
    python benchmarks/bench_reliability.py --trials 5 --system-trials 2 --out /tmp/r

Writes ``reliability.{json,md}`` under ``--out`` (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/bench_reliability.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKER = r"""
import random, sys
from pathlib import Path
from adaptive_moe.experts import ExpertRegistry
from adaptive_moe.gaps import GapLedger

root, source, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
registry = ExpertRegistry(root / "registry")
ledger = GapLedger(root / "gaps.sqlite", max_entries=None)
warm = ExpertRegistry(root / f"warm-up-{seed}")  # the first import loads its libraries: not in the kill window
warm.import_adapter(source, "warm")
print("READY", flush=True)
for i in range(100000):
    names = registry.names()
    op = rng.choice(["import", "import", "version", "remove", "gap", "gap", "gap"])
    if op == "import" or not names:
        name = f"e{seed}-{i}"
        card = registry.import_adapter(source, name, domain="crash test")
        print("ACK import", name, card.version, flush=True)
    elif op == "version":
        name = rng.choice(names)
        card = registry.import_adapter(source, name, domain="crash test", new_version=True)
        print("ACK import", name, card.version, flush=True)
    elif op == "remove":
        name = rng.choice(names)
        versions = registry.versions(name)
        if len(versions) > 1 and rng.random() < 0.5:
            print("START remove", name, versions[0], flush=True)  # in flight: may land without its ACK
            registry.remove(name, versions[0])
            print("ACK remove", name, versions[0], flush=True)
        else:
            print("START remove", name, "all", flush=True)
            registry.remove(name)
            print("ACK remove", name, "all", flush=True)
    else:
        request = f"r{seed}-{i}"
        ledger.record(f"question {i} of worker {seed}", confidence=0.2, request_id=request)
        print("ACK gap", request, flush=True)
"""


SYSTEM_WORKER = r"""
import random, sys
from pathlib import Path
from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig

root, seed = Path(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
moe = AdaptiveMoE(AdaptiveMoEConfig.from_yaml(root / "config.yaml"))
moe.generate("warm up", max_new_tokens=2)
print("READY", flush=True)
for i in range(1000):
    if rng.random() < 0.5:
        name = f"c{seed}-{i}"
        doc = root / "docs" / f"{name}.md"
        doc.parent.mkdir(exist_ok=True)
        doc.write_text(f"The {name} Guild was founded in {1700 + rng.randrange(300)} by Maren Tolliver{i}. "
                       f"The guild has {rng.randrange(10, 999)} members. Its emblem is a silver heron. "
                       f"Maren Tolliver{i} designed the first storm lantern.")
        print("START create", name, flush=True)
        result = moe.create_expert(name, documents=[doc], progress=False)
        print("ACK create", name, int(result.admitted), flush=True)
    else:
        print("START save", len(moe.experts.names()), flush=True)
        moe.save_pretrained(root / "saved", overwrite=True)
        print("ACK save", len(moe.experts.names()), flush=True)
"""


def system_config(root: Path, model_dir: Path) -> Path:
    """A workspace config on the tiny model that creates (and admits) an expert in a few seconds."""
    from adaptive_moe import AdaptiveMoEConfig

    cfg = AdaptiveMoEConfig().replace(
        workspace=str(root / "ws"),
        **{"model.name_or_path": str(model_dir), "generation.max_new_tokens": 4, "router.embedder": "base",
           "router.threshold": 1.0, "router.min_match_score": 0.0, "integrator.expert_confidence_floor": 0.0,
           "creation.method": "rules", "creation.lora.r": 4, "creation.lora.alpha": 8, "creation.lora.epochs": 1.0,
           "creation.lora.min_steps": 0, "creation.lora.batch_size": 4, "creation.lora.max_length": 64,
           "creation.forced_general_questions": 4, "creation.domain_margin": 0.0,
           "creation.general_tolerance": 1.0},
    )  # fmt: skip
    path = root / "config.yaml"
    path.write_text(cfg.to_yaml())
    return path


def system_trial(root: Path, seed: int, max_delay: float) -> dict[str, Any]:
    """Kill a worker that creates experts and saves the system; then check that the workspace opens, every
    acknowledged expert is there, the last acknowledged save loads, and creation goes on."""
    proc = subprocess.Popen([sys.executable, "-c", SYSTEM_WORKER, str(root), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ready = proc.stdout.readline().strip()
    if ready != "READY":
        proc.kill()
        return {"seed": seed, "violations": [f"worker did not start: {proc.stderr.read()[-500:]}"], "acks": 0}
    delay = random.Random(seed).uniform(0.0, max_delay)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    lines = out.splitlines()
    acks = [line.split() for line in lines if line.startswith("ACK ")]
    in_flight = lines[-1].split() if lines and lines[-1].startswith("START ") else None
    return {"seed": seed, "delay_s": round(delay, 3), "acks": len(acks), "in_flight": " ".join(in_flight or []),
            "violations": check_system(root, acks, in_flight)}  # fmt: skip


def check_system(root: Path, acks: list[list[str]], in_flight: list[str] | None) -> list[str]:
    """The invariants after a kill of the system worker; returns the violations."""
    from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
    from adaptive_moe.errors import AdaptiveMoEError

    bad: list[str] = []
    try:
        with AdaptiveMoE(AdaptiveMoEConfig.from_yaml(root / "config.yaml")) as moe:
            names = set(moe.experts.names())
            for name in names:
                for version in moe.experts.versions(name):
                    moe.experts.verify(name, version)
            for _, kind, *rest in acks:
                if kind == "create" and rest[1] == "1" and rest[0] not in names:
                    bad.append(f"acknowledged expert {rest[0]} is missing")
            saves = [int(rest[0]) for _, kind, *rest in acks if kind == "save"]
            ever_saved = bool(saves) or (root / "saved").exists()
            if ever_saved:
                try:
                    with AdaptiveMoE.from_pretrained(root / "saved", base=moe.base) as saved:
                        if saves and len(saved.experts.names()) < saves[-1]:
                            bad.append(f"the saved system has {len(saved.experts.names())} experts, "
                                       f"the acknowledged save {saves[-1]}")  # fmt: skip
                except AdaptiveMoEError as e:
                    if saves:  # a save was acknowledged: it must load
                        bad.append(f"saved system: {type(e).__name__}: {e}")
            if in_flight is not None and in_flight[1] == "create":  # the killed creation starts again cleanly
                doc = root / "docs" / f"{in_flight[2]}.md"
                result = moe.create_expert(in_flight[2], documents=[doc], progress=False,
                                           new_version=in_flight[2] in names)  # fmt: skip
                if not result.admitted:
                    bad.append(f"re-creating {in_flight[2]} after the kill was not admitted: {result.reasons}")
    except Exception as e:  # noqa: BLE001 - any failure to open, load or create is the violation looked for
        bad.append(f"{type(e).__name__}: {e}")
    return bad


# What the property tests draw, each run of the suite (tests/unit/test_properties.py, test_fuzz_inputs.py).
INPUTS = (
    "any value of any configuration key (400 a run): a valid config or one ConfigError naming the key",
    "any expert name (Unicode text, path separators, `..`, reserved and hidden names)",
    "any prompt and chat messages (Unicode, control characters, empty, unknown roles)",
    "any chat request body over HTTP (150 a run, every parameter with right and wrong types): never a 500",
    "damaged adapter folders (120 a run: truncated or overwritten weights, a wrong header, missing files, any "
    "adapter_config.json value, symlinks out of the folder, pickles): imported and answering, or one clear error",
    "document texts (200 a run: Markdown tables, lists, fences, control characters) and any bytes as a document "
    "file (60 a run): passages citing their own lines, training data, or one clear error",
)

# Every defect the hardening suite (this benchmark, tests/unit/test_properties.py, test_fuzz_inputs.py,
# test_concurrency.py, test_crash_consistency.py, bench_soak.py) found, with its fix: kept by hand.
DEFECTS = (
    "Starlette's BaseHTTPMiddleware hid client disconnects from the server, so a batch whose clients had all "
    "left ran to the end: the guard middleware is pure ASGI now (test_serving).",
    "Two processes opening a new SQLite gap ledger at once: one failed with 'database is locked' at once, "
    "because SQLite skips its busy handler when switching to WAL while another connection writes in rollback "
    "mode; the switch now waits for the lock (test_gaps, found by the two-process training test).",
    "Under `accelerate launch`, every process prepared the creation work folder, so one deleted the folder "
    "another was writing in; process 0 alone prepares it now, the others wait (test_distributed_training).",
    "An adapter_config.json with values PEFT only trips over when the adapter is attached (r a float, "
    "lora_alpha null, target_modules empty, an int, or not covering the weights' modules, r unlike the "
    "weights' rank) was imported and failed later with a TypeError from PEFT; such files are refused on "
    "import, naming the field (test_fuzz_inputs, test_expert_registry).",
    "An adapter_config.json that is not a JSON object (a number, a list, empty) raised AttributeError or "
    "JSONDecodeError on import; now CorruptExpertError (test_fuzz_inputs).",
    "A failed first attach of an adapter could leave the base wrapped by PEFT with an adapter host and no "
    "slot; the base is put back as it was (test_fuzz_inputs).",
    "target_modules holding non-strings (such as [null, null]) raised TypeError while the import summarised "
    "the card, before the config was checked; the config is checked first now (test_fuzz_inputs).",
)


def make_source(folder: Path) -> Path:
    """A small random PEFT adapter to import again and again."""
    from adaptive_moe import load_base_model
    from adaptive_moe.testing import make_random_adapter, make_tiny_model

    model_dir = make_tiny_model(folder / "tiny", "llama", chat_template=True)
    base = load_base_model(name_or_path=str(model_dir), device="cpu")
    return make_random_adapter(base.model, folder / "adapter", seed=0)


def trial(root: Path, source: Path, seed: int, max_delay: float) -> dict[str, Any]:
    """One kill and the checks after it; returns what was acknowledged and every violation found."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(source), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ready = proc.stdout.readline().strip()
    if ready != "READY":
        proc.kill()
        return {"seed": seed, "violations": [f"worker did not start: {proc.stderr.read()[-500:]}"], "acks": 0}
    delay = random.Random(seed).uniform(0.0, max_delay)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    lines = out.splitlines()
    acks = [line.split() for line in lines if line.startswith("ACK ")]
    # the operation in flight when the kill came may have landed without its acknowledgement
    in_flight = lines[-1].split() if lines and lines[-1].startswith("START ") else None
    if in_flight is not None:
        acks.append(["MAYBE", *in_flight[1:]])
    done = sum(a[0] == "ACK" for a in acks)
    return {"seed": seed, "delay_s": round(delay, 3), "acks": done, "in_flight": in_flight is not None,
            "violations": check(root, source, acks)}  # fmt: skip


def check(root: Path, source: Path, acks: list[list[str]]) -> list[str]:
    """The invariants after a kill (see the module docstring); returns the violations."""
    from adaptive_moe.experts import ExpertRegistry
    from adaptive_moe.gaps import GapLedger

    bad: list[str] = []
    try:
        with GapLedger(root / "gaps.sqlite", max_entries=None) as ledger:
            ids = [e.request_id for e in ledger.entries(resolved=None)]
            for _, kind, request in (a for a in acks if len(a) == 3):
                if kind == "gap" and ids.count(request) != 1:
                    bad.append(f"acknowledged gap {request} stored {ids.count(request)} times")
            ledger.record("after the crash", request_id=f"after-{time.time_ns()}")
    except Exception as e:  # noqa: BLE001 - any failure to open or write is the violation being looked for
        bad.append(f"ledger: {type(e).__name__}: {e}")
    try:
        registry = ExpertRegistry(root / "registry")
        present = {(n, v) for n in registry.names() for v in registry.versions(n)}
        for name, version in present:
            registry.verify(name, version)
        expected: dict[tuple[str, int], bool] = {}
        maybe: set[tuple[str, int]] = set()
        for tag, kind, name, version in (a for a in acks if len(a) == 4):
            if kind == "import":
                expected[(name, int(version))] = True
            elif kind == "remove":
                hit = [k for k in expected if k[0] == name and (version == "all" or k[1] == int(version))]
                if tag == "MAYBE":  # removed wholly or not at all: checked by verify() above
                    maybe.update(hit)
                else:
                    for key in hit:
                        expected[key] = False
        for key, there in expected.items():
            if there and key not in present and key not in maybe:
                bad.append(f"acknowledged import {key} is missing")
            if not there and key in present:
                bad.append(f"acknowledged removal {key} is still there")
        registry.import_adapter(source, f"after-{time.time_ns()}", domain="after the crash")
    except Exception as e:  # noqa: BLE001
        bad.append(f"registry: {type(e).__name__}: {e}")
    return bad


def run(trials: int, max_delay: float, workspaces: int = 4) -> dict[str, Any]:
    """``trials`` kills spread over ``workspaces`` reused workspaces."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_reliability_") as tmp:
        tmp_path = Path(tmp)
        source = make_source(tmp_path / "source")
        rows = []
        for t in range(trials):
            root = tmp_path / f"ws{t % workspaces}"
            root.mkdir(exist_ok=True)
            rows.append(trial(root, source, seed=t, max_delay=max_delay))
            if rows[-1]["violations"]:
                print(f"trial {t}: {rows[-1]['violations']}", flush=True)
    violations = sum(len(r["violations"]) for r in rows)
    acknowledged = sum(r["acks"] for r in rows)
    return {"trials": rows, "acknowledged": acknowledged, "violations": violations,
            "elapsed_s": time.perf_counter() - started}  # fmt: skip


def run_system(trials: int, max_delay: float, workspaces: int) -> dict[str, Any]:
    """``trials`` kills of the system worker spread over ``workspaces`` reused workspaces."""
    from adaptive_moe.testing import make_tiny_model

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_reliability_system_") as tmp:
        tmp_path = Path(tmp)
        model_dir = make_tiny_model(tmp_path / "tiny", "llama", chat_template=True)
        rows = []
        for t in range(trials):
            root = tmp_path / f"ws{t % workspaces}"
            if not root.exists():
                root.mkdir()
                system_config(root, model_dir)
            rows.append(system_trial(root, seed=t, max_delay=max_delay))
            if rows[-1]["violations"]:
                print(f"system trial {t}: {rows[-1]['violations']}", flush=True)
    return {
        "trials": rows,
        "acknowledged": sum(r["acks"] for r in rows),
        "violations": sum(len(r["violations"]) for r in rows),
        "elapsed_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import add_run_arguments, command_line, machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--max-delay", type=float, default=1.5, help="latest kill after READY, seconds")
    parser.add_argument("--workspaces", type=int, default=40, help="workspaces the trials take turns on")
    parser.add_argument(
        "--system-trials",
        type=int,
        default=30,
        help="kills of a worker that creates experts and saves the system (0: none)",
    )
    parser.add_argument("--system-max-delay", type=float, default=20.0, help="latest such kill, seconds")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="write the report again from a reliability.json this script wrote (no trials)",
    )
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.render is not None:
        import json

        return report(json.loads(args.render.read_text()), Path(args.out))
    result = run(args.trials, args.max_delay, args.workspaces)
    if args.system_trials:
        result["system"] = run_system(args.system_trials, args.system_max_delay, max(1, args.system_trials // 4))
    result.update(machine=machine_info(args.threads), command=command_line(__file__, argv),
                  settings={"max_delay": args.max_delay, "system_max_delay": args.system_max_delay})  # fmt: skip
    return report(result, Path(args.out))


def report(result: dict[str, Any], out: Path) -> int:
    """Write ``reliability.{json,md}`` under ``out``: the crash trials, the soak (``out/soak.json``, from
    ``bench_soak.py``, when there), the inputs the property tests try, and the defects found."""
    import json

    from benchmarks.common import write_json_and_markdown

    settings = result.get("settings", {"max_delay": 1.5, "system_max_delay": 20.0})
    args = argparse.Namespace(**settings)
    broken = [r for r in result["trials"] if r["violations"]]
    system = result.get("system")
    broken_system = [r for r in system["trials"] if r["violations"]] if system else []
    lines = [
        "# Crash consistency: SIGKILL during registry and ledger writes",
        "",
        f"`{result['command']}` on {result['machine']['date']}; {result['elapsed_s'] / 60:.1f} min. Each trial kills "
        f"a worker that imports, versions and removes experts and records gaps, at a random moment up to "
        f"{args.max_delay} s after it is ready, then reopens the registry and the ledger and checks them.",
        "",
        "| trials | operations acknowledged before the kills | violations | trials with a violation |",
        "|---|---|---|---|",
        f"| {len(result['trials'])} | {result['acknowledged']} | {result['violations']} | {len(broken)} |",
    ]
    for r in broken[:20]:
        lines.append(f"- trial {r['seed']} (killed after {r.get('delay_s')} s): " + "; ".join(r["violations"]))
    if system:
        killed_in = {}
        for r in system["trials"]:
            key = r["in_flight"].split()[1] if r.get("in_flight") else "between operations"
            killed_in[key] = killed_in.get(key, 0) + 1
        lines += [
            "",
            "## SIGKILL while creating experts and saving the system",
            "",
            f"{system['elapsed_s'] / 60:.1f} min. A worker on a tiny model creates experts from documents "
            "(`create_expert`, LoRA training, evaluation, registration, router update) and saves the system "
            f"(`save_pretrained(overwrite=True)`), and is killed at a random moment up to {args.system_max_delay:g} s "
            "after it is ready. Then: the workspace opens; every stored version verifies; every acknowledged "
            "admitted expert is there; the saved system loads (`from_pretrained`) with at least the experts of "
            "the last acknowledged save; a creation the kill interrupted runs again to admission.",
            "",
            "| trials | operations acknowledged | killed during | violations | trials with a violation |",
            "|---|---|---|---|---|",
            f"| {len(system['trials'])} | {system['acknowledged']} | "
            + ", ".join(f"{k}: {n}" for k, n in sorted(killed_in.items()))
            + f" | {system['violations']} | {len(broken_system)} |",
        ]
        for r in broken_system[:20]:
            lines.append(f"- trial {r['seed']} (killed after {r.get('delay_s')} s): " + "; ".join(r["violations"]))
    soak_file = out / "soak.json"
    if soak_file.is_file():
        soak = json.loads(soak_file.read_text())
        lines += [
            "",
            "## Requests served under load (`bench_soak.py`, `soak.md`)",
            "",
            f"{soak['settings']['concurrency']} clients for {soak['load_s'] / 60:.1f} min against `adaptive-moe serve` "
            f"({soak['settings']['experts']} experts in a pool of {soak['settings']['capacity']}; "
            f"{soak['machine']['date'][:10]}): {soak['requests']} requests, {soak['server_errors']} 5xx, "
            f"{soak['failed_connections']} failed connections or cut streams, every bad request a 4xx: "
            f"{soak['bad_requests_all_4xx']}; resident memory {soak['rss_growth']:+.1%} after warm-up.",
        ]
    lines += ["", "## Inputs tried (property tests, every suite run)", "", *[f"- {x}" for x in INPUTS]]
    lines += ["", "## Defects this suite found, and their fixes", "", *[f"- {d}" for d in DEFECTS]]
    write_json_and_markdown(out, "reliability", result, lines)
    print("\n".join(lines))
    return 0 if not broken and not broken_system else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
