"""The HTTP server under load (issue 17): throughput and latency at concurrency 1, 4, 8 and 16, against
the same requests one at a time and against plain transformers generation in a loop.

The server (``adaptive_moe.serving``: FastAPI on uvicorn, the request batcher) runs in this process on
127.0.0.1 with the embedded model; the load generator is a pool of httpx clients that sends a bounded
number of chat requests (distinct general questions, greedy, ``--max-tokens`` new tokens) and stops by
itself (``--time-limit``). For each concurrency: requests per second and p50 / p99 latency, medians over
``--rounds``. It also counts how many answers given in a batch differ from the same request answered
alone (greedy decoding: a batch pads its rows, which can change the last bits of the logits).

    python benchmarks/bench_serve.py                 # about 5 minutes on 2 cores
    python benchmarks/bench_serve.py --tiny --out /tmp/s   # the plumbing on a tiny random model

Writes ``serve.{json,md,png}`` under ``--out`` (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/bench_serve.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import torch

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.creation import general_knowledge_questions
from adaptive_moe.serving import create_app
from adaptive_moe.testing import ServerThread
from benchmarks.common import (
    add_run_arguments,
    command_line,
    load_base,
    machine_info,
    pyplot,
    say,
    write_json_and_markdown,
)


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def load(url: str, questions: list[str], concurrency: int, max_tokens: int, deadline: float) -> dict[str, Any]:
    """Send every question once with ``concurrency`` clients; latencies, answers, wall time."""
    client = httpx.Client(timeout=600)

    def ask(q: str):
        if time.time() > deadline:
            return None
        t0 = time.perf_counter()
        r = client.post(url + "/v1/chat/completions", json={"model": "adaptive-moe", "max_tokens": max_tokens,
                        "messages": [{"role": "user", "content": q}]})  # fmt: skip
        r.raise_for_status()
        return time.perf_counter() - t0, r.json()["choices"][0]["message"]["content"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(ask, questions))
    wall = time.perf_counter() - t0
    client.close()
    done = [r for r in results if r is not None]
    return {"wall_s": wall, "n": len(done), "latencies": [r[0] for r in done],
            "answers": [r[1] if r else None for r in results]}  # fmt: skip


def plain_loop(base, questions: list[str], max_tokens: int) -> float:
    """Requests per second of transformers ``generate`` called once per question (chat template, greedy)."""
    tok = base.tokenizer
    t0 = time.perf_counter()
    for q in questions:
        text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False).to(base.device)
        with torch.no_grad():
            base.model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return len(questions) / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    work = tempfile.TemporaryDirectory(prefix="bench_serve_")
    base, folder = load_base(args.tiny, Path(work.name))
    changes = {"workspace": str(Path(work.name) / "ws"), "gaps.enabled": False,
               "serve.max_batch": args.max_batch, "serve.batch_window_ms": args.window_ms,
               "serve.max_queue": 256}  # fmt: skip
    if folder:
        changes["model.name_or_path"] = folder
    cfg = AdaptiveMoEConfig().replace(**changes)
    questions = [q for q, _ in general_knowledge_questions()][: args.requests]
    moe = AdaptiveMoE(cfg, base=base)
    server = ServerThread(create_app(moe))
    url = server.url
    deadline = time.time() + args.time_limit
    rows: dict[int, dict[str, Any]] = {}
    alone_answers: list[str] | None = None
    try:
        load(url, questions[:2], 1, args.max_tokens, deadline)  # warm-up
        for c in args.concurrency:
            rounds = []
            for r in range(args.rounds):
                say(f"concurrency {c}, round {r + 1}", "serve")
                rounds.append(load(url, questions, c, args.max_tokens, deadline))
            complete = [x for x in rounds if x["n"] == len(questions)]
            if not complete:
                say(f"time limit reached at concurrency {c}", "serve")
                break
            if c == 1:
                alone_answers = complete[0]["answers"]
            lat = [x for rd in complete for x in rd["latencies"]]
            rows[c] = {"rps": statistics.median(x["n"] / x["wall_s"] for x in complete),
                       "p50_s": _percentile(lat, 0.5), "p99_s": _percentile(lat, 0.99), "rounds": len(complete),
                       "differ_from_alone": None if alone_answers is None else
                       sum(a != b for a, b in zip(complete[0]["answers"], alone_answers, strict=True))}  # fmt: skip
    finally:
        server.stop()
        moe.close()
    say("plain transformers generate, one question at a time", "serve")
    plain = statistics.median(plain_loop(base, questions, args.max_tokens) for _ in range(args.rounds))
    work.cleanup()
    one = rows.get(1)
    for row in rows.values():
        row["throughput_vs_one"] = row["rps"] / one["rps"] if one else None
        row["p99_vs_lone_p50"] = row["p99_s"] / one["p50_s"] if one else None
        row["p99_vs_lone_p99"] = row["p99_s"] / one["p99_s"] if one else None
        row["throughput_vs_plain"] = row["rps"] / plain
    return {"machine": machine_info(args.threads), "command": command_line(__file__, args.argv),
            "settings": {"tiny": args.tiny, "requests": len(questions), "max_tokens": args.max_tokens,
                         "max_batch": args.max_batch, "window_ms": args.window_ms, "rounds": args.rounds},
            "plain_rps": plain, "concurrency": {str(c): r for c, r in rows.items()},
            "elapsed_s": time.perf_counter() - started}  # fmt: skip


def write_report(r: dict[str, Any], out: Path) -> Path:
    s = r["settings"]
    lines = [
        "# The HTTP server under load",
        "",
        f"`{r['command']}` on {r['machine']['date']}, {r['machine']['cpus']} CPUs, {r['machine']['threads']} "
        f"threads; {r['elapsed_s'] / 60:.1f} min. {s['requests']} distinct general questions per round, "
        f"{s['max_tokens']} new tokens, greedy; batches of at most {s['max_batch']}, window {s['window_ms']:g} ms; "
        f"medians over {s['rounds']} rounds. Plain transformers `generate`, one question at a time: "
        f"{r['plain_rps']:.2f} requests/s.",
        "",
        "| concurrency | requests/s | vs one at a time | vs plain loop | p50 (s) | p99 (s) | p99 / lone p50 "
        "| p99 / lone p99 | answers that differ from alone |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, row in r["concurrency"].items():
        lines.append(f"| {c} | {row['rps']:.2f} | {row['throughput_vs_one']:.2f}x | {row['throughput_vs_plain']:.2f}x "
                     f"| {row['p50_s']:.2f} | {row['p99_s']:.2f} | {row['p99_vs_lone_p50']:.2f} | "
                     f"{row['p99_vs_lone_p99']:.2f} | "
                     f"{row['differ_from_alone']} of {s['requests']} |")  # fmt: skip
    eight = r["concurrency"].get("8")
    if eight:
        lines += ["", f"Goals at concurrency 8: throughput >= 3x one at a time: **{eight['throughput_vs_one']:.2f}x**; "
                  f"p99 <= 3x a lone request's latency: **{eight['p99_vs_lone_p50']:.2f}x** its median, "
                  f"**{eight['p99_vs_lone_p99']:.2f}x** its p99 (a batch lasts as long as its longest answer, so a "
                  "short answer waits for the long ones)."]  # fmt: skip
    write_json_and_markdown(out, "serve", r, lines)
    plt = pyplot()
    if plt is not None and r["concurrency"]:
        cs = [int(c) for c in r["concurrency"]]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        ax[0].plot(cs, [r["concurrency"][str(c)]["rps"] for c in cs], "o-", label="server")
        ax[0].axhline(r["plain_rps"], color="grey", ls="--", label="plain loop")
        ax[0].set_xlabel("concurrency")
        ax[0].set_ylabel("requests/s")
        ax[0].legend()
        ax[1].plot(cs, [r["concurrency"][str(c)]["p50_s"] for c in cs], "o-", label="p50")
        ax[1].plot(cs, [r["concurrency"][str(c)]["p99_s"] for c in cs], "o-", label="p99")
        ax[1].set_xlabel("concurrency")
        ax[1].set_ylabel("latency (s)")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(out / "serve.png", dpi=120)
        plt.close(fig)
    return out / "serve.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=16, help="distinct questions per round")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=900, help="seconds; the load stops after them")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model: the plumbing, numbers are noise")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(write_report(run(args), out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
