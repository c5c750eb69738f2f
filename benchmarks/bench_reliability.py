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

    python benchmarks/bench_reliability.py --trials 200     # ~15 minutes on 2 cores
    python benchmarks/bench_reliability.py --trials 5 --out /tmp/r

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


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import add_run_arguments, command_line, machine_info, write_json_and_markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--max-delay", type=float, default=1.5, help="latest kill after READY, seconds")
    parser.add_argument("--workspaces", type=int, default=40, help="workspaces the trials take turns on")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args.trials, args.max_delay, args.workspaces)
    result.update(machine=machine_info(args.threads), command=command_line(__file__, argv))
    broken = [r for r in result["trials"] if r["violations"]]
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
    write_json_and_markdown(Path(args.out), "reliability", result, lines)
    print("\n".join(lines))
    return 0 if not broken else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
