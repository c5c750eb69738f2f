"""The HTTP server under load (issue 17): throughput and latency at concurrency 1, 4, 8 and 16, against
the same requests one at a time and against plain transformers generation in a loop.

The server (``adaptive_moe.serving``: FastAPI on uvicorn, the request batcher) runs in this process on
127.0.0.1 with the embedded model; the load generator is a pool of httpx clients that sends a bounded
number of chat requests (distinct general questions, greedy, ``--max-tokens`` new tokens) and stops by
itself (``--time-limit``). For each concurrency: requests per second and p50 / p99 latency, medians over
``--rounds``. It also counts how many answers given in a batch differ from the same request answered
alone (greedy decoding: a batch pads its rows, which can change the last bits of the logits).

    python benchmarks/bench_serve.py                 # about 13 minutes on 2 cores
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


def _ask(client: httpx.Client, url: str, q: str, max_tokens: int, deadline: float) -> tuple[float, str] | None:
    """One chat request: its latency and answer (None past the deadline: the load stops by itself)."""
    if time.time() > deadline:
        return None
    t0 = time.perf_counter()
    r = client.post(url + "/v1/chat/completions", json={"model": "adaptive-moe", "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": q}]})  # fmt: skip
    r.raise_for_status()
    return time.perf_counter() - t0, r.json()["choices"][0]["message"]["content"]


def load(url: str, questions: list[str], concurrency: int, max_tokens: int, deadline: float) -> dict[str, Any]:
    """Send every question once with ``concurrency`` clients; latencies, answers, wall time."""
    client = httpx.Client(timeout=600)
    ask = lambda q: _ask(client, url, q, max_tokens, deadline)  # noqa: E731

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(ask, questions))
    wall = time.perf_counter() - t0
    client.close()
    done = [r for r in results if r is not None]
    return {"wall_s": wall, "n": len(done), "latencies": [r[0] for r in done],
            "answers": [r[1] if r else None for r in results]}  # fmt: skip


def open_loop(url: str, questions: list[str], rate: float, max_tokens: int, deadline: float,
              seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Send the questions at ``rate`` requests/s on average (exponential gaps, seeded: the same arrival times
    for every scheduler), each whether or not the earlier ones are answered, as independent clients do."""
    import random

    gaps = random.Random(seed)
    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=len(questions)))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(questions)) as pool:
        futures = []
        for q in questions:
            futures.append(pool.submit(_ask, client, url, q, max_tokens, deadline))
            time.sleep(gaps.expovariate(rate))
        results = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    client.close()
    done = [r[0] for r in results if r is not None]
    return {"wall_s": wall, "n": len(done), "latencies": done}


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


def measure(args: argparse.Namespace, base, folder, work: Path, scheduler: str, questions: list[str],
            deadline: float) -> dict[str, Any]:  # fmt: skip
    """Every concurrency against a server with ``scheduler``; a row per concurrency."""
    changes = {"workspace": str(work / f"ws-{scheduler}"), "gaps.enabled": False, "serve.scheduler": scheduler,
               "serve.max_batch": args.max_batch, "serve.batch_window_ms": args.window_ms,
               "serve.max_queue": 256}  # fmt: skip
    if folder:
        changes["model.name_or_path"] = folder
    moe = AdaptiveMoE(AdaptiveMoEConfig().replace(**changes), base=base)
    server = ServerThread(create_app(moe))
    rows: dict[int, dict[str, Any]] = {}
    arrivals: dict[str, dict[str, Any]] = {}
    alone: list[str] | None = None
    try:
        load(server.url, questions[:2], 1, args.max_tokens, deadline)  # warm-up
        for c in args.concurrency:
            rounds = []
            for r in range(args.rounds):
                say(f"{scheduler}: concurrency {c}, round {r + 1}", "serve")
                rounds.append(load(server.url, questions, c, args.max_tokens, deadline))
            complete = [x for x in rounds if x["n"] == len(questions)]
            if not complete:
                say(f"time limit reached at concurrency {c}", "serve")
                break
            if c == 1:
                alone = complete[0]["answers"]
            lat = [x for rd in complete for x in rd["latencies"]]
            rows[c] = {"rps": statistics.median(x["n"] / x["wall_s"] for x in complete),
                       "p50_s": _percentile(lat, 0.5), "p99_s": _percentile(lat, 0.99), "rounds": len(complete),
                       "differ_from_alone": None if alone is None else
                       sum(a != b for a, b in zip(complete[0]["answers"], alone, strict=True)),
                       "answers": complete[0]["answers"]}  # fmt: skip
        for rate in args.rates:
            runs = []
            for r in range(args.rounds):
                say(f"{scheduler}: {rate:g} requests/s arriving, round {r + 1}", "serve")
                runs.append(open_loop(server.url, questions, rate, args.max_tokens, deadline, seed=r))
            complete = [x for x in runs if x["n"] == len(questions)]
            if complete:
                lat = [x for run in complete for x in run["latencies"]]
                arrivals[str(rate)] = {"rps": statistics.median(x["n"] / x["wall_s"] for x in complete),
                                       "p50_s": _percentile(lat, 0.5), "p99_s": _percentile(lat, 0.99)}  # fmt: skip
    finally:
        server.stop()
        moe.close()
    one = rows.get(1)
    for row in rows.values():
        row["throughput_vs_one"] = row["rps"] / one["rps"] if one else None
        row["p99_vs_lone_p50"] = row["p99_s"] / one["p50_s"] if one else None
        row["p99_vs_lone_p99"] = row["p99_s"] / one["p99_s"] if one else None
    for row in arrivals.values():
        row["p99_vs_lone_p50"] = row["p99_s"] / one["p50_s"] if one else None
    return {"concurrency": {str(c): r for c, r in rows.items()}, "arrivals": arrivals}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    work = tempfile.TemporaryDirectory(prefix="bench_serve_")
    base, folder = load_base(args.tiny, Path(work.name))
    questions = [q for q, _ in general_knowledge_questions()][: args.requests]
    deadline = time.time() + args.time_limit
    schedulers = {name: measure(args, base, folder, Path(work.name), name, questions, deadline)
                  for name in args.schedulers}  # fmt: skip
    say("plain transformers generate, one question at a time", "serve")
    plain = statistics.median(plain_loop(base, questions, args.max_tokens) for _ in range(args.rounds))
    work.cleanup()
    for result in schedulers.values():
        for row in result["concurrency"].values():
            row["throughput_vs_plain"] = row["rps"] / plain
    firsts = [s["concurrency"].get("1", {}).get("answers") for s in schedulers.values()]
    across = None
    if len(firsts) > 1 and all(firsts):
        across = sum(len(set(a)) > 1 for a in zip(*firsts, strict=True))
    return {"machine": machine_info(args.threads), "command": command_line(__file__, args.argv),
            "settings": {"tiny": args.tiny, "requests": len(questions), "max_tokens": args.max_tokens,
                         "max_batch": args.max_batch, "window_ms": args.window_ms, "rounds": args.rounds},
            "plain_rps": plain, "schedulers": schedulers, "alone_differ_across_schedulers": across,
            "elapsed_s": time.perf_counter() - started}  # fmt: skip


def write_report(r: dict[str, Any], out: Path) -> Path:
    s = r["settings"]
    lines = [
        "# The HTTP server under load",
        "",
        f"`{r['command']}` on {r['machine']['date']}, {r['machine']['cpus']} CPUs, {r['machine']['threads']} "
        f"threads; {r['elapsed_s'] / 60:.1f} min. {s['requests']} distinct general questions per round, at most "
        f"{s['max_tokens']} new tokens, greedy; `serve.max_batch` {s['max_batch']} (static: window "
        f"{s['window_ms']:g} ms); medians over {s['rounds']} rounds. Plain transformers `generate`, one question at "
        f"a time: {r['plain_rps']:.2f} requests/s.",
        "",
        "- **continuous** (the default): every request in flight is decoded in one loop, token by token; a request "
        "joins at the next token and leaves when it ends (`adaptive_moe.model.engine`).",
        "- **static**: requests that arrive together share one `generate` call, which lasts as long as its "
        "longest answer.",
    ]
    for name, result in r["schedulers"].items():
        lines += ["", f"## {name}", "",
                  "| concurrency | requests/s | vs one at a time | vs plain loop | p50 (s) | p99 (s) | p99 / lone p50 "
                  "| p99 / lone p99 | answers that differ from alone |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for c, row in result["concurrency"].items():
            lines.append(f"| {c} | {row['rps']:.2f} | {row['throughput_vs_one']:.2f}x | "
                         f"{row['throughput_vs_plain']:.2f}x | {row['p50_s']:.2f} | {row['p99_s']:.2f} | "
                         f"{row['p99_vs_lone_p50']:.2f} | {row['p99_vs_lone_p99']:.2f} | "
                         f"{row['differ_from_alone']} of {s['requests']} |")  # fmt: skip
        eight = result["concurrency"].get("8")
        if eight:
            lines += ["", f"Goals at concurrency 8: throughput >= 3x one at a time: "
                      f"**{eight['throughput_vs_one']:.2f}x**; p99 <= 3x a lone request's latency: "
                      f"**{eight['p99_vs_lone_p50']:.2f}x** its median, **{eight['p99_vs_lone_p99']:.2f}x** its "
                      "p99."]  # fmt: skip
    if any(res.get("arrivals") for res in r["schedulers"].values()):
        lines += ["", "## Requests arriving on their own",
                  "", "Independent clients: the same questions sent at a fixed average rate (exponential gaps, the "
                  "same arrival times for both schedulers), each whether or not the earlier ones are answered "
                  "(the closed loops above wait for their answer before asking again).", "",
                  "| scheduler | arriving (requests/s) | answered (requests/s) | p50 (s) | p99 (s) | p99 / lone p50 |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for name, result in r["schedulers"].items():
            for rate, row in result.get("arrivals", {}).items():
                lines.append(f"| {name} | {float(rate):g} | {row['rps']:.2f} | {row['p50_s']:.2f} | {row['p99_s']:.2f} "
                             f"| {row['p99_vs_lone_p50']:.2f} |")  # fmt: skip
    if r.get("alone_differ_across_schedulers") is not None:
        lines += ["", f"Answers at concurrency 1 that differ between the schedulers: "
                  f"{r['alone_differ_across_schedulers']} of {s['requests']}."]  # fmt: skip
    write_json_and_markdown(out, "serve", r, lines)
    plt = pyplot()
    if plt is not None and r["schedulers"]:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        for name, result in r["schedulers"].items():
            rows = result["concurrency"]
            cs = [int(c) for c in rows]
            ax[0].plot(cs, [rows[str(c)]["rps"] for c in cs], "o-", label=name)
            ax[1].plot(cs, [rows[str(c)]["p99_s"] for c in cs], "o-", label=f"{name} p99")
            ax[1].plot(cs, [rows[str(c)]["p50_s"] for c in cs], "x--", label=f"{name} p50")
        ax[0].axhline(r["plain_rps"], color="grey", ls="--", label="plain loop")
        ax[0].set_xlabel("concurrency")
        ax[0].set_ylabel("requests/s")
        ax[0].legend()
        ax[1].set_xlabel("concurrency")
        ax[1].set_ylabel("latency (s)")
        ax[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "serve.png", dpi=120)
        plt.close(fig)
    return out / "serve.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=48, help="distinct questions per round")
    parser.add_argument("--schedulers", nargs="+", default=["continuous", "static"], choices=["continuous", "static"])
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--rates",
        type=float,
        nargs="*",
        default=[1.5, 2.5],
        help="open-loop arrival rates (requests/s); none: closed loops only",
    )
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
