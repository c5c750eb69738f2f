"""Foundation benchmark: load time (GGUF vs converted checkpoint), generation tokens/s at 1 and 2
threads, and the overhead of ``generate_with_signals`` over plain ``model.generate`` for the same tokens.

Arms run round-robin over several rounds and are reported as medians and ratios measured in the same
run (the machine is shared and noisy: absolute times are indicative only).

    python benchmarks/bench_foundation.py [--rounds 7] [--gguf-rounds 2] [--out benchmarks/results]

Writes ``foundation.json``, ``foundation.md`` and ``foundation.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/bench_foundation.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import torch

from adaptive_moe import load_base_model
from adaptive_moe.config import GenerationConfig
from adaptive_moe.model.bundled import embedded_checkpoint, find_gguf
from adaptive_moe.model.generation import build_generate_kwargs, encode_prompts
from benchmarks.common import machine_info, pyplot, timed, write_json_and_markdown

LONG_PROMPT = "Write a short story about a lighthouse keeper and a storm."  # runs to max_new_tokens
PROMPTS = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "Who wrote Pride and Prejudice?",
    "What is the boiling point of water in Celsius?",
    "Name three primary colours.",
    "What is 12 times 12?",
    "Why is the sky blue?",
    "What language is spoken in Brazil?",
]


def bench_load(gguf_rounds: int, rounds: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    embedded_checkpoint()  # make sure the conversion is cached (not timed)
    gguf = find_gguf()
    gguf_times, conv_times = [], []
    for _ in range(gguf_rounds):
        dt, _ = timed(
            lambda: (
                AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name),
                AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name),
            )
        )
        gguf_times.append(dt)
    for _ in range(rounds):
        dt, _ = timed(lambda: load_base_model(device="cpu"))
        conv_times.append(dt)
    g, c = statistics.median(gguf_times), statistics.median(conv_times)
    return {
        "gguf_s": gguf_times,
        "converted_s": conv_times,
        "gguf_median_s": g,
        "converted_median_s": c,
        "speedup": g / c,
    }


def bench_generation(base, rounds: int, max_new_tokens: int, threads: list[int], batch_sizes: list[int]) -> dict:
    """Round-robin: for each round, each (threads, batch) cell runs plain generate and with-signals."""
    gen = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=max(batch_sizes))
    cells: dict[str, dict] = {}
    base.generate_with_signals(PROMPTS[: max(batch_sizes)], gen)  # warm-up, not timed
    for _ in range(rounds):
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for bs in batch_sizes:
                prompts = [LONG_PROMPT] if bs == 1 else PROMPTS[:bs]
                batch, _ = encode_prompts(base, prompts, gen)
                kwargs = build_generate_kwargs(base, gen)

                def plain(batch=batch, kwargs=kwargs):
                    with torch.inference_mode():
                        return base.model.generate(**batch, **kwargs)

                def signals(prompts=prompts):
                    return base.generate_with_signals(prompts, gen)

                # alternate which arm goes first so drift does not favour one
                order = [("plain", plain), ("signals", signals)]
                if len(cells.get(f"t{n_threads}-b{bs}", {}).get("plain_s", [])) % 2:
                    order.reverse()
                cell = cells.setdefault(
                    f"t{n_threads}-b{bs}",
                    {"threads": n_threads, "batch": bs, "plain_s": [], "signals_s": [], "tokens": None},
                )
                for name, fn in order:
                    dt, out = timed(fn)
                    cell[f"{name}_s"].append(dt)
                    if name == "plain":
                        new = out[:, batch["input_ids"].shape[1] :]
                        plain_tokens = int((new != base.tokenizer.pad_token_id).sum())
                    else:
                        signal_tokens = sum(s.num_tokens for s in out)
                cell["tokens"] = plain_tokens
                cell["same_tokens"] = plain_tokens == signal_tokens
    for cell in cells.values():
        ratios = [s / p for s, p in zip(cell["signals_s"], cell["plain_s"], strict=True)]
        cell["ratio_median"] = statistics.median(ratios)
        cell["ratios"] = ratios
        cell["plain_median_s"] = statistics.median(cell["plain_s"])
        cell["signals_median_s"] = statistics.median(cell["signals_s"])
        cell["plain_tokens_per_s"] = cell["tokens"] / cell["plain_median_s"]
    return cells


def write_report(result: dict, out: Path) -> None:
    load, gen = result["load"], result["generation"]
    lines = [
        "# Foundation benchmark",
        "",
        f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs, torch "
        f"{result['machine']['torch']}, transformers {result['machine']['transformers']}; load average "
        f"{result['machine']['loadavg_start'][0]:.2f} at start, {result['loadavg_end'][0]:.2f} at end.",
        f"Command: `{result['command']}`",
        "",
        "## Load time (median)",
        "",
        "| path | median s | rounds |",
        "|---|---|---|",
        f"| GGUF through transformers | {load['gguf_median_s']:.2f} | {len(load['gguf_s'])} |",
        f"| converted safetensors (`load_base_model`) | {load['converted_median_s']:.2f} "
        f"| {len(load['converted_s'])} |",
        "",
        f"Converted checkpoint loads **{load['speedup']:.1f}x** faster.",
        "",
        f"## Generation ({result['max_new_tokens']} new tokens max, greedy, {result['rounds']} rounds round-robin)",
        "",
        "| threads | batch | tokens | plain tokens/s | plain s | with signals s | ratio (median) | same tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in gen.values():
        lines.append(
            f"| {c['threads']} | {c['batch']} | {c['tokens']} | {c['plain_tokens_per_s']:.1f} | "
            f"{c['plain_median_s']:.2f} | {c['signals_median_s']:.2f} | {c['ratio_median']:.3f} | {c['same_tokens']} |"
        )
    lines += [
        "",
        "Ratio = `generate_with_signals` time / plain `model.generate` time for the same prompts and "
        "tokens (goal <= 1.03). tokens/s counts generated tokens of the whole batch.",
    ]
    write_json_and_markdown(out, "foundation", result, lines)
    plt = pyplot()
    if plt is None:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.bar(["GGUF", "converted"], [load["gguf_median_s"], load["converted_median_s"]], color=["#c66", "#6a6"])
    ax1.set_ylabel("seconds (median)")
    ax1.set_title("Load time")
    labels = [f"{c['threads']}t/b{c['batch']}" for c in gen.values()]
    ax2.bar(labels, [c["ratio_median"] for c in gen.values()], color="#69c")
    ax2.axhline(1.03, color="k", linestyle="--", linewidth=1, label="goal 1.03")
    ax2.axhline(1.0, color="grey", linewidth=0.5)
    ax2.set_ylim(0.9, max(1.1, max(c["ratio_median"] for c in gen.values()) + 0.02))
    ax2.set_title("with signals / plain generate")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out / "foundation.png", dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--gguf-rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    result = {
        "machine": machine_info(),
        "command": "python benchmarks/bench_foundation.py " + " ".join(argv or sys.argv[1:]),
        "rounds": args.rounds,
        "max_new_tokens": args.max_new_tokens,
    }
    result["load"] = bench_load(args.gguf_rounds, min(args.rounds, 5))
    base = load_base_model(device="cpu")
    result["generation"] = bench_generation(base, args.rounds, args.max_new_tokens, [1, 2], [1, 8])
    result["loadavg_end"] = os.getloadavg()
    write_report(result, Path(args.out))
    print((Path(args.out) / "foundation.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
