"""Section 4 of the report: peak RSS of fresh subprocesses (the base alone, 50 experts in a pool of 8, the
same 50 adapters in one PeftModel)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..common import REPO, say
from .common import MEMORY_CAPACITY, MEMORY_EXPERTS, PROBE, ZIPF_EXPONENT

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
    from adaptive_moe.config import LoRASettings
    from adaptive_moe.creation.training import resolve_target_modules
    from adaptive_moe.experts import ExpertRegistry

    lora = LoRASettings()
    targets = resolve_target_modules(lora, base.model)
    registry = ExpertRegistry(work / "memory-registry")
    say(f"memory: making {MEMORY_EXPERTS} random adapters (r={lora.r}, target_modules {lora.target_modules!r})")
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
        say(f"memory: subprocess {kind}")
        runs[kind] = _run_child({**common, **spec})
    weights = registry.path_of(names[0]) / "adapter_model.safetensors"
    return {"experts": len(names), "capacity": MEMORY_CAPACITY, "r": lora.r, "target_modules": lora.target_modules,
            "resolved_targets": len(targets) if isinstance(targets, list) else targets,
            "adapter_file_bytes": weights.stat().st_size, "requests": len(order), "distinct": len(set(order)),
            "setup_s": setup_s, "runs": runs}  # fmt: skip


def _make_random_registry(base, registry, targets, r: int, work: Path) -> None:
    from adaptive_moe.testing import make_random_adapter

    for i in range(MEMORY_EXPERTS):
        src = make_random_adapter(base.model, work / "memory-src" / f"e{i:02d}", r=r, target_modules=targets, seed=i,
                                  scale=0.01)  # fmt: skip
        registry.import_adapter(src, f"e{i:02d}", domain=f"random expert {i}", base=base)
        shutil.rmtree(src)


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    code = ("import json, sys\nfrom benchmarks.report.memory import memory_child\n"
            "print('@@' + json.dumps(memory_child(json.loads(sys.argv[1]))))")  # fmt: skip
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "PYTHONPATH": path}
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

    from adaptive_moe.config import GenerationConfig
    from adaptive_moe.model import load_base_model

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
        from adaptive_moe.experts import ExpertPool, ExpertRegistry

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
