"""The server held under a bounded mixed load (issue 20): no 500, no crash, resident memory flat.

``adaptive-moe serve`` runs as its own process on 127.0.0.1 (the embedded model, ``--experts`` random
LoRA experts in a pool of ``--capacity``, so asking for them in turn evicts and reloads: expert churn).
``--concurrency`` clients send, for ``--minutes`` (and at most ``--max-requests``), a seeded mix of
routed chat requests, chat requests that name an expert, streamed chat, completions, and bad requests
(malformed JSON, wrong types, ``n > 1``, negative ``max_tokens``, unknown models, empty messages,
``tools``, a body over ``serve.max_body_bytes``). The server's resident memory (``/proc/<pid>/status``
VmRSS) is sampled every few seconds; growth is measured from the end of the warm-up (the first
``--warmup`` share of the run) to the end. Goals: no 5xx, no failed connection, the server alive and
healthy at the end, growth under 5%.

    python benchmarks/bench_soak.py                      # 10 minutes on 2 cores
    python benchmarks/bench_soak.py --tiny --minutes 0.5 --out /tmp/soak   # the plumbing

Writes ``soak.{json,md,png}`` under ``--out`` (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/bench_soak.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.creation import general_knowledge_questions
from adaptive_moe.testing import free_port, make_random_adapter
from benchmarks.common import (
    add_run_arguments,
    command_line,
    load_base,
    machine_info,
    pyplot,
    say,
    write_json_and_markdown,
)

KINDS = (("routed", 0.40), ("expert", 0.25), ("stream", 0.10), ("completion", 0.10), ("bad", 0.15))
BAD = ("malformed", "wrong_type", "n2", "negative", "unknown_model", "empty", "tools", "huge")


def rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def request(rng: random.Random, questions: list[str], experts: list[str], max_tokens: int,
            body_limit: int) -> tuple[str, str, dict[str, Any] | bytes]:  # fmt: skip
    """One request of the mix: (kind, path, JSON body or raw bytes)."""
    kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    q = rng.choice(questions)
    chat = {"model": "adaptive-moe", "max_tokens": max_tokens, "messages": [{"role": "user", "content": q}]}
    if kind == "routed":
        return kind, "/v1/chat/completions", chat
    if kind == "expert":
        return kind, "/v1/chat/completions", {**chat, "model": rng.choice(experts)}
    if kind == "stream":
        return kind, "/v1/chat/completions", {**chat, "stream": True, "stream_options": {"include_usage": True}}
    if kind == "completion":
        return kind, "/v1/completions", {"model": "adaptive-moe", "prompt": q, "max_tokens": max_tokens}
    bad = rng.choice(BAD)
    bodies: dict[str, dict[str, Any] | bytes] = {
        "malformed": b'{"model": "adaptive-moe", "messages": [',
        "wrong_type": {**chat, "max_tokens": "many"},
        "n2": {**chat, "n": 2},
        "negative": {**chat, "max_tokens": -3},
        "unknown_model": {**chat, "model": "no-such-expert"},
        "empty": {**chat, "messages": []},
        "tools": {**chat, "tools": [{"type": "function", "function": {"name": "f"}}]},
        "huge": {**chat, "messages": [{"role": "user", "content": "x" * (body_limit + 10)}]},
    }
    return f"bad:{bad}", "/v1/chat/completions", bodies[bad]


def send(client: httpx.Client, url: str, path: str, body: dict[str, Any] | bytes) -> int | str:
    """The status code (a stream is read to its end), or the name of the connection error."""
    try:
        if isinstance(body, bytes):
            return client.post(url + path, content=body, headers={"Content-Type": "application/json"}).status_code
        if body.get("stream"):
            with client.stream("POST", url + path, json=body) as r:
                text = "".join(r.iter_text())
                if r.status_code == 200 and not text.rstrip().endswith("data: [DONE]"):
                    return "stream_cut"
                return r.status_code
        return client.post(url + path, json=body).status_code
    except httpx.HTTPError as e:
        return type(e).__name__


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    work = tempfile.TemporaryDirectory(prefix="bench_soak_")
    root = Path(work.name)
    base, folder = load_base(args.tiny, root)
    changes = {"workspace": str(root / "ws"), "pool.capacity": args.capacity, "serve.max_queue": 256,
               "integrator.expert_confidence_floor": 0.0, "serve.max_body_bytes": args.body_limit}  # fmt: skip
    if folder:
        changes["model.name_or_path"] = folder
    cfg = AdaptiveMoEConfig().replace(**changes)
    experts = [f"expert{i}" for i in range(args.experts)]
    with AdaptiveMoE(cfg, base=base) as moe:
        for i, name in enumerate(experts):
            moe.add_expert(make_random_adapter(base.model, root / name, seed=i), name, domain=f"topic {i}")
    del base
    config = root / "config.yaml"
    config.write_text(cfg.to_yaml())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ADAPTIVE_MOE_API_KEY": ""}
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "adaptive_moe.cli", "serve", "--config", str(config),
                               "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                              env=env)  # fmt: skip
    try:
        _wait_healthy(url, server, 300)
        questions = [q for q, _ in general_knowledge_questions()]
        rng = random.Random(args.seed)
        duration = args.minutes * 60
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            t0 = time.perf_counter()
            while not stop.is_set():
                mib = rss_mib(server.pid)
                if mib is not None:
                    samples.append((time.perf_counter() - t0, mib))
                stop.wait(args.sample_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        plan = [request(rng, questions, experts, args.max_tokens, args.body_limit) for _ in range(args.max_requests)]
        outcomes: list[tuple[str, int | str, float]] = []
        lock = threading.Lock()
        deadline = time.perf_counter() + duration
        say(f"{args.concurrency} clients for {args.minutes:g} min against {url}", "soak")

        def client_loop(worker: int) -> None:
            with httpx.Client(timeout=600) as client:
                for i in range(worker, len(plan), args.concurrency):
                    if time.perf_counter() > deadline:
                        return
                    kind, path, body = plan[i]
                    t = time.perf_counter()
                    status = send(client, url, path, body)
                    with lock:
                        outcomes.append((kind, status, time.perf_counter() - t))

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(client_loop, range(args.concurrency)))
        load_s = time.perf_counter() - (deadline - duration)
        stop.set()
        sampler.join()
        healthy = _healthy(url)
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            exit_code = server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            exit_code = server.wait()
        log.close()
        server_log = (root / "server.log").read_text(errors="replace")
        work.cleanup()
    by_kind: dict[str, Counter] = {}
    for kind, status, _ in outcomes:
        by_kind.setdefault(kind.split(":")[0], Counter())[str(status)] += 1
    statuses = Counter(str(s) for _, s, _ in outcomes)
    errors_5xx = sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500 and int(s) not in (503,))
    refused = statuses.get("503", 0)  # back-pressure (Retry-After): allowed, counted
    failed = sum(n for s, n in statuses.items() if not s.isdigit())
    warm = [m for t, m in samples if t <= args.warmup * load_s]
    tail = [m for t, m in samples if t >= load_s - max(60.0, 0.1 * load_s)]
    at_warm = warm[-1] if warm else (samples[0][1] if samples else float("nan"))
    at_end = statistics.median(tail) if tail else float("nan")
    bad_ok = all(str(s).isdigit() and 400 <= int(s) < 500 for k, s, _ in outcomes if k.startswith("bad:"))
    return {
        "machine": machine_info(args.threads), "command": command_line(__file__, args.argv),
        "settings": {"tiny": args.tiny, "minutes": args.minutes, "concurrency": args.concurrency,
                     "experts": args.experts, "capacity": args.capacity, "max_tokens": args.max_tokens,
                     "max_requests": args.max_requests, "warmup": args.warmup, "mix": dict(KINDS)},
        "requests": len(outcomes), "load_s": load_s, "statuses": dict(statuses),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "bad_requests_all_4xx": bad_ok, "server_errors": errors_5xx, "refused_503": refused,
        "failed_connections": failed, "alive_at_end": alive, "healthy_at_end": healthy,
        "exit_code_after_sigterm": exit_code, "rss_samples": samples, "rss_at_warmup_mib": at_warm,
        "rss_at_end_mib": at_end, "rss_growth": (at_end - at_warm) / at_warm if warm or samples else None,
        "latency_p50_s": statistics.median([t for k, s, t in outcomes if s == 200]) if outcomes else None,
        "server_log_tail": server_log[-3000:], "elapsed_s": time.perf_counter() - started,
    }  # fmt: skip


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before it was healthy")
        if _healthy(url):
            return
        time.sleep(0.5)
    raise SystemExit(f"the server was not healthy after {timeout:.0f} s")


def write_report(r: dict[str, Any], out: Path) -> Path:
    s = r["settings"]
    growth = r["rss_growth"]
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    lines = [
        "# Soak: the server under a bounded mixed load",
        "",
        f"`{r['command']}` on {r['machine']['date']}, {r['machine']['cpus']} CPUs; "
        f"{'a tiny random model' if s['tiny'] else 'the embedded SmolLM2'}, {s['experts']} random experts in a pool "
        f"of {s['capacity']}; {s['concurrency']} clients for {r['load_s'] / 60:.1f} min; {s['max_tokens']} new "
        f"tokens a request. Mix: " + ", ".join(f"{k} {w:.0%}" for k, w in s["mix"].items()) + ".",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| requests answered | {r['requests']} | |",
        f"| 5xx other than 503 back-pressure | {r['server_errors']} | 0 ({verdict(r['server_errors'] == 0)}) |",
        f"| 503 with Retry-After (queue full) | {r['refused_503']} | counted |",
        f"| failed connections / cut streams | {r['failed_connections']} | "
        f"0 ({verdict(r['failed_connections'] == 0)}) |",
        f"| every bad request a 4xx | {r['bad_requests_all_4xx']} | yes ({verdict(r['bad_requests_all_4xx'])}) |",
        f"| server alive and healthy at the end | {r['alive_at_end'] and r['healthy_at_end']} | yes |",
        f"| exit code after SIGTERM | {r['exit_code_after_sigterm']} | 0 |",
        f"| resident memory after warm-up ({s['warmup']:.0%} of the run) | {r['rss_at_warmup_mib']:.0f} MiB | |",
        f"| resident memory at the end (median of the last minute) | {r['rss_at_end_mib']:.0f} MiB | |",
        f"| growth | {growth:+.1%} | < 5% ({verdict(growth is not None and growth < 0.05)}) |",
        f"| median latency of a 200 | {r['latency_p50_s']:.2f} s | |",
        "",
        "## Status codes by kind of request",
        "",
        "| kind | statuses |",
        "|---|---|",
        *[f"| {k} | " + ", ".join(f"{s_}: {n}" for s_, n in sorted(v.items())) + " |" for k, v in r["by_kind"].items()],
    ]  # fmt: skip
    write_json_and_markdown(out, "soak", r, lines)
    plt = pyplot()
    if plt is not None and r["rss_samples"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([t / 60 for t, _ in r["rss_samples"]], [m for _, m in r["rss_samples"]])
        ax.axvline(s["warmup"] * r["load_s"] / 60, color="grey", linestyle="--", label="end of warm-up")
        ax.set_xlabel("minutes under load")
        ax.set_ylabel("server resident memory (MiB)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "soak.png", dpi=110)
    return out / "soak.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random model (the plumbing)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=20000, help="a bound on the requests sent")
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run before memory is compared")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--body-limit", type=int, default=100_000, help="serve.max_body_bytes")
    parser.add_argument("--seed", type=int, default=0)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    result = run(args)
    path = write_report(result, Path(args.out))
    print(path.read_text())
    print(json.dumps({k: result[k] for k in ("requests", "server_errors", "failed_connections", "rss_growth")}))
    ok = result["server_errors"] == 0 and result["failed_connections"] == 0 and result["alive_at_end"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
