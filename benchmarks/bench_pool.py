"""Expert-pool benchmark: cost of a pool hit and of a pool miss on the embedded SmolLM2-135M-Instruct.

Makes ``--experts`` random LoRA adapters (r=16, all linear layers, ~19.6 MB each) with plain PEFT, imports
them into an ``ExpertRegistry`` and measures, as ratios within one run and medians over rounds:

- hit: ``with pool.acquire([name])`` on a resident expert, against one forward pass of the base (~20 tokens);
- miss: (a) hot-swap into an evicted slot, (b) a new slot beside a resident expert, (b0) the first slot on a
  bare base, (d) naive PEFT per request (``load_adapter`` + ``set_adapter`` + ``delete_adapter`` on a wrapped
  copy of the base; (d2) ``PeftModel.from_pretrained`` + ``unload``), each against (c) reading the adapter
  file with ``safetensors.torch.load_file`` (page cache warm for every arm);
- a Zipf request stream: hit rate and ``acquire`` latency for several capacities (no generation);
- resident adapter bytes and process RSS for capacity 1..16, and that ``clear()`` gives back a plain base;
- purity: the base's logits on a probe prompt are identical before and after the whole run.

    python benchmarks/bench_pool.py [--experts 50] [--rounds 7] [--requests 1000] [--threads 2] [--quick]

Writes ``pool.json``, ``pool.md`` and ``pool.png`` under ``--out`` (absolute times are indicative only).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

if not __package__:  # run as `python benchmarks/bench_pool.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from adaptive_moe import load_base_model
from adaptive_moe.experts import ExpertPool, ExpertRegistry
from benchmarks.common import add_run_arguments, machine_info, pyplot, write_json_and_markdown

PROBE = "Explain in one short paragraph why the sky looks blue during the day but red at sunset."
WEIGHTS = "adapter_model.safetensors"
MISS_ARMS = ["hotswap", "new_slot", "first_slot", "file_read", "peft_naive", "peft_wrap"]


def timed_ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def acquire_once(pool: ExpertPool, name: str) -> None:
    with pool.acquire([name]) as [_expert]:
        pass


def logits(model, batch) -> torch.Tensor:
    with torch.inference_mode():
        return model(**batch).logits


def make_registry(base, n: int, root: Path, seed: int) -> tuple[ExpertRegistry, torch.nn.Module, float]:
    """n random adapters from one PeftModel (re-randomised), imported; returns the unwrapped maker model too."""
    started = time.perf_counter()
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    maker = get_peft_model(load_base_model(device="cpu").model, config)
    registry = ExpertRegistry(root / "registry")
    for i in range(n):
        gen = torch.Generator().manual_seed(seed + i)
        with torch.no_grad():
            for name, p in maker.named_parameters():
                if "lora_" in name:
                    p.normal_(0.0, 0.02, generator=gen)
        maker.save_pretrained(root / "src" / f"e{i:02d}")
        registry.import_adapter(root / "src" / f"e{i:02d}", f"e{i:02d}", domain=f"synthetic domain {i}", base=base)
    shutil.rmtree(root / "src")
    for name in registry.names():  # page cache warm for every arm
        (registry.path_of(name) / WEIGHTS).read_bytes()
    return registry, maker.unload(), time.perf_counter() - started


def bench_hit(base, registry, batch, rounds: int, calls: int) -> dict:
    names = registry.names()
    pool = ExpertPool(base, registry, capacity=min(8, len(names)))
    cells = {"forward_ms": [], "forward_resident_ms": [], "hit_ms": [], "ratio": []}
    reference = logits(base.model, batch)
    for _ in range(rounds):
        pool.clear()
        fwd = statistics.median(timed_ms(lambda: logits(base.model, batch)) for _ in range(5))
        pool.prefetch(names[: pool.capacity])
        fwd_res = statistics.median(timed_ms(lambda: logits(base.model, batch)) for _ in range(5))
        hit = timed_ms(lambda: [acquire_once(pool, names[0]) for _ in range(calls)]) / calls
        cells["forward_ms"].append(fwd)
        cells["forward_resident_ms"].append(fwd_res)
        cells["hit_ms"].append(hit)
        cells["ratio"].append(hit / fwd)
    resident_equal = torch.equal(reference, logits(base.model, batch))  # slots injected but disabled
    pool.clear()
    out = {k: statistics.median(v) for k, v in cells.items()}
    return {**out, "rounds": cells, "calls_per_round": calls, "resident_during_forward": pool.capacity,
            "base_route_equal_with_resident": resident_equal}  # fmt: skip


def alternating_ms(k: int, fn, *names: str) -> list[float]:
    """Milliseconds of ``fn(name)`` for k calls, cycling through ``names``."""
    return [timed_ms(functools.partial(fn, names[j % len(names)])) for j in range(k)]


def bench_miss(base, registry, naive_model, rounds: int, k: int) -> dict:
    a, b, other = registry.names()[:3]
    path = {n: registry.path_of(n) for n in (a, b, other)}
    per_round = {arm: [] for arm in MISS_ARMS}
    evict_last_ms, hotswaps = [], []

    def hotswap():
        pool = ExpertPool(base, registry, capacity=1)
        acquire_once(pool, a)
        before = pool.stats
        times = alternating_ms(k, functools.partial(acquire_once, pool), b, a)
        hotswaps.append((pool.stats - before).hotswaps)
        pool.clear()
        return times

    def new_slot(first: bool):
        pool = ExpertPool(base, registry, capacity=len(registry.names()))
        if not first:
            pool.pin(other)  # the PEFT wrapper exists: a miss adds a slot to it
        times = []
        for _ in range(k):
            times.append(timed_ms(lambda: acquire_once(pool, a)))
            evicted = timed_ms(lambda: pool.evict(a))
            if first:  # the last slot goes: the base is unwrapped
                evict_last_ms.append(evicted)
        pool.clear()
        return times

    def peft_naive():
        wrapper = PeftModel.from_pretrained(naive_model, str(path[other]), adapter_name="keep")

        def request(name):
            wrapper.load_adapter(str(path[name]), adapter_name="req")
            wrapper.set_adapter("req")
            wrapper.delete_adapter("req")

        times = alternating_ms(k, request, a, b)
        wrapper.unload()
        return times

    arms = {
        "hotswap": hotswap,
        "new_slot": lambda: new_slot(False),
        "first_slot": lambda: new_slot(True),
        "file_read": lambda: alternating_ms(k, lambda n: load_file(str(path[n] / WEIGHTS)), a, b),
        "peft_naive": peft_naive,
        "peft_wrap": lambda: alternating_ms(
            k, lambda n: PeftModel.from_pretrained(naive_model, str(path[n])).unload(), a, b
        ),
    }
    for arm in MISS_ARMS:  # warm-up, not recorded
        arms[arm]()
    hotswaps.clear()
    for r in range(rounds):
        for arm in MISS_ARMS[r % len(MISS_ARMS) :] + MISS_ARMS[: r % len(MISS_ARMS)]:  # rotate the order
            per_round[arm].append(statistics.median(arms[arm]()))
    out = {"misses_per_round": k, "hotswaps": sum(hotswaps), "hotswaps_expected": rounds * k, "arms": {}}
    for arm, times in per_round.items():
        ratios = [t / f for t, f in zip(times, per_round["file_read"], strict=True)]
        out["arms"][arm] = {"ms": times, "median_ms": statistics.median(times),
                            "ratio_to_file_read": statistics.median(ratios)}  # fmt: skip
    out["evict_last_slot_median_ms"] = statistics.median(evict_last_ms)
    return out


def bench_zipf(base, registry, requests: int, exponent: float, capacities: list[int], seed: int) -> dict:
    names = registry.names()
    rng = np.random.default_rng(seed)
    p = np.arange(1, len(names) + 1, dtype=float) ** -exponent
    p /= p.sum()
    ranked = [names[i] for i in rng.permutation(len(names))]  # popularity unrelated to name order
    stream = [ranked[i] for i in rng.choice(len(names), size=requests, p=p)]
    out = {"requests": requests, "exponent": exponent, "distinct": len(set(stream)), "capacities": {}}
    for cap in capacities:
        pool = ExpertPool(base, registry, capacity=cap)
        before = pool.stats
        lat = np.array(alternating_ms(len(stream), functools.partial(acquire_once, pool), *stream))
        d = pool.stats - before
        out["capacities"][str(cap)] = {
            "hit_rate": d.hit_rate, "hits": d.hits, "misses": d.misses, "hotswaps": d.hotswaps,
            "mean_ms": float(lat.mean()), "p50_ms": float(np.median(lat)), "p95_ms": float(np.percentile(lat, 95)),
            "top_k_probability": float(p[:cap].sum()),  # hit rate of a static cache of the cap most popular
        }  # fmt: skip
        pool.clear()
    return out


def bench_resident(base, registry, max_capacity: int) -> dict:
    names = registry.names()
    tensors = load_file(str(registry.path_of(names[0]) / WEIGHTS))
    adapter_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    rows = []
    for cap in range(1, min(max_capacity, len(names)) + 1):
        pool = ExpertPool(base, registry, capacity=cap)
        pool.prefetch(names[:cap])
        st = pool.stats
        pool.clear()
        after = pool.stats
        rows.append({"capacity": cap, "resident": len(st.resident), "resident_bytes": st.resident_bytes,
                     "rss_bytes": st.rss_bytes, "exact": st.resident_bytes == cap * adapter_bytes,
                     "cleared_bytes": after.resident_bytes, "cleared_rss_bytes": after.rss_bytes,
                     "host_gone": base.adapter_host is None})  # fmt: skip
    return {
        "adapter_tensor_bytes": adapter_bytes,
        "adapter_file_bytes": (registry.path_of(names[0]) / WEIGHTS).stat().st_size,
        "all_exact": all(r["exact"] for r in rows),
        "all_cleared": all(r["cleared_bytes"] == 0 and r["host_gone"] for r in rows),
        "rows": rows,
    }


def write_report(result: dict, out: Path) -> None:
    m, hit, miss, zipf, res = (result[k] for k in ("machine", "hit", "miss", "zipf", "resident"))
    arms = miss["arms"]
    labels = {"hotswap": "(a) pool miss, hot-swap into evicted slot", "new_slot": "(b) pool miss, new slot",
              "first_slot": "(b0) pool miss, first slot on bare base", "file_read": "(c) `load_file` (floor)",
              "peft_naive": "(d) PEFT load_adapter + set_adapter + delete_adapter",
              "peft_wrap": "(d2) PEFT from_pretrained + unload"}  # fmt: skip
    lines = [
        "# Expert pool benchmark", "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, {m['threads']} torch threads, torch {m['torch']}, "
        f"transformers {m['transformers']}, peft {m['peft']}; load average {m['loadavg_start'][0]:.2f} at start, "
        f"{result['loadavg_end'][0]:.2f} at end. Total {result['elapsed_s']:.0f} s.",
        f"Command: `{result['command']}`", "",
        f"{result['experts']} random LoRA adapters (r=16, all-linear), {res['adapter_file_bytes'] / 1e6:.1f} MB "
        f"files, made and imported in {result['setup_s']:.0f} s.", "",
        f"## Hit ({hit['calls_per_round']} calls x {len(hit['rounds']['hit_ms'])} rounds, medians)", "",
        f"| acquire hit ms | base forward ms | ratio | forward, {hit['resident_during_forward']} experts resident ms |",
        "|---|---|---|---|",
        f"| {hit['hit_ms']:.3f} | {hit['forward_ms']:.1f} | {hit['ratio']:.4f} | {hit['forward_resident_ms']:.1f} |",
        "", f"Forward = one pass of the base on the {result['probe_tokens']}-token probe prompt.", "",
        f"## Miss ({miss['misses_per_round']} misses x {len(arms['file_read']['ms'])} rounds, page cache warm)", "",
        "| path | median ms per miss | ratio to file read (median) |", "|---|---|---|",
    ]  # fmt: skip
    lines += [f"| {labels[a]} | {arms[a]['median_ms']:.1f} | {arms[a]['ratio_to_file_read']:.2f} |" for a in MISS_ARMS]
    lines += [
        "", f"Goal: miss <= 5x file read. Hot-swaps done: {miss['hotswaps']} of {miss['hotswaps_expected']}. "
        f"Evicting the last slot (unwrapping the base): {miss['evict_last_slot_median_ms']:.1f} ms.", "",
        f"## Zipf stream ({zipf['requests']} requests, exponent {zipf['exponent']}, {result['experts']} experts, "
        f"{zipf['distinct']} distinct, no generation)", "",
        "| capacity | hit rate | static top-k probability | hot-swaps | mean ms | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for cap, z in zipf["capacities"].items():
        lines.append(f"| {cap} | {z['hit_rate']:.3f} | {z['top_k_probability']:.3f} | {z['hotswaps']} | "
                     f"{z['mean_ms']:.2f} | {z['p50_ms']:.3f} | {z['p95_ms']:.1f} |")  # fmt: skip
    lines += ["", f"## Resident memory (adapter tensors {res['adapter_tensor_bytes']:,} bytes each)", "",
              "| capacity | resident bytes | = capacity x adapter | process RSS MiB | RSS after clear MiB |",
              "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['capacity']} | {r['resident_bytes']:,} | {r['exact']} | {r['rss_bytes'] / 2**20:.0f} | "
              f"{r['cleared_rss_bytes'] / 2**20:.0f} |" for r in res["rows"]]  # fmt: skip
    lines += ["", f"After every `clear()`: resident bytes 0 and `base.adapter_host is None`: {res['all_cleared']}.",
              f"Base-route logits equal with {hit['resident_during_forward']} experts resident (adapters disabled): "
              f"{hit['base_route_equal_with_resident']}.",
              f"Purity: probe logits identical before and after the whole run: {result['purity_equal']}."]  # fmt: skip
    write_json_and_markdown(out, "pool", result, lines)
    plt = pyplot()
    if plt is None:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    shown = [a for a in MISS_ARMS if a != "file_read"]
    ax1.bar(["(a)", "(b)", "(b0)", "(d)", "(d2)"], [arms[a]["ratio_to_file_read"] for a in shown], color="#69c")
    ax1.axhline(5, color="k", linestyle="--", linewidth=1, label="goal 5x")
    ax1.axhline(1, color="grey", linewidth=0.5)
    ax1.set(ylabel="miss cost / file read (median)", title="Miss cost")
    ax1.legend()
    caps = [int(c) for c in zipf["capacities"]]
    ax2.plot(caps, [z["hit_rate"] for z in zipf["capacities"].values()], "o-", label="LRU pool")
    ax2.plot(caps, [z["top_k_probability"] for z in zipf["capacities"].values()], "s--", label="static top-k")
    ax2.set_xscale("log", base=2)
    ax2.set(xlabel="capacity", ylabel="hit rate", ylim=(0, 1), title=f"Zipf({zipf['exponent']}) hit rate")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out / "pool.png", dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--misses", type=int, default=5, help="misses per arm per round")
    parser.add_argument("--hit-calls", type=int, default=200, help="acquire calls per round for the hit cost")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--zipf", type=float, default=1.1)
    add_run_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 experts, 2 rounds, 200 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.experts, args.rounds, args.misses, args.hit_calls, args.requests = 6, 2, 2, 50, 200
    if args.experts < 3:
        parser.error("--experts must be at least 3")
    torch.set_num_threads(args.threads)
    # PEFT warns on every eviction of the last-activated slot (it picks another active adapter); noise here
    warnings.filterwarnings("ignore", message=r"Adapter .* was active which is now deleted")
    started = time.perf_counter()
    result = {
        "machine": machine_info(args.threads),
        "command": "python benchmarks/bench_pool.py " + " ".join(argv or sys.argv[1:]),
        "experts": args.experts,
        "rounds": args.rounds,
    }
    base = load_base_model(device="cpu")
    batch = base.tokenizer(PROBE, return_tensors="pt")
    result["probe_tokens"] = int(batch["input_ids"].shape[1])
    before = logits(base.model, batch).clone()
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        registry, naive_model, result["setup_s"] = make_registry(base, args.experts, Path(tmp), args.seed)
        result["hit"] = bench_hit(base, registry, batch, args.rounds, args.hit_calls)
        result["miss"] = bench_miss(base, registry, naive_model, args.rounds, args.misses)
        result["zipf"] = bench_zipf(base, registry, args.requests, args.zipf, [2, 4, 8, 16], args.seed)
        result["resident"] = bench_resident(base, registry, 16)
    after = logits(base.model, batch)
    result["purity_equal"] = torch.equal(before, after)
    result["purity_max_abs_diff"] = float((before - after).abs().max())
    result["loadavg_end"] = os.getloadavg()
    result["elapsed_s"] = time.perf_counter() - started
    write_report(result, Path(args.out))
    print((Path(args.out) / "pool.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
