"""Scale-out on Ray Serve (issue 18): the one-process server against Ray Serve with 1 and 2 model replicas
on the same requests, and the expert pool's hit ratio with multiplexed steering against random assignment.

Everything runs on 127.0.0.1: the one-process server (uvicorn in this process), then a local Ray
(``ray.init(num_cpus=2)``) with the ingress and 1, then 2, replicas (each replica reserves 1.8/N CPUs and
uses that many torch threads). The load generator sends a bounded number of chat requests (distinct
general questions, greedy, ``--max-tokens``) at concurrency 1 and ``--concurrency``, and stops by itself
(``--time-limit``); requests/s and p50/p99 latency, medians over ``--rounds``.

Pool hit ratio: ``--experts`` random LoRA adapters on the base, each replica's pool holding
``--capacity`` of them; ``--expert-requests`` calls that force one expert each (a seeded random order),
sent once with Serve's multiplexing (a call lands on a replica that holds its expert) and once without
(any replica); a hit is an answer whose expert was already loaded on the replica that answered.

    python benchmarks/bench_scale.py                        # ~10 minutes on 2 cores, the embedded model
    python benchmarks/bench_scale.py --tiny --out /tmp/s    # the plumbing on a tiny random model
    python benchmarks/bench_scale.py --hot                  # a hot expert: scale_hot.md
    python benchmarks/bench_scale.py --routed               # routed calls steered by the ingress: scale_routed.md

Writes ``scale.{json,md,png}`` under ``--out`` (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/bench_scale.py`: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import torch

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.creation import general_knowledge_questions
from adaptive_moe.serving import create_app
from adaptive_moe.testing import ServerThread, free_port, make_random_adapter
from benchmarks.bench_serve import _percentile
from benchmarks.common import (
    add_run_arguments,
    command_line,
    load_base,
    machine_info,
    pyplot,
    say,
    write_json_and_markdown,
)


def _workspace(args: argparse.Namespace, prefix: str) -> tuple[Any, Path, Any, AdaptiveMoEConfig]:
    """A throwaway workspace, the base (``--tiny`` or the embedded model) and the config every run shares."""
    work = tempfile.TemporaryDirectory(prefix=prefix)
    root = Path(work.name)
    base, folder = load_base(args.tiny, root)
    changes = {"workspace": str(root / "ws"), "gaps.enabled": False, "serve.max_queue": 256,
               "pool.capacity": args.capacity, "integrator.expert_confidence_floor": 0.0}  # fmt: skip
    if folder:
        changes["model.name_or_path"] = folder
    return work, root, base, AdaptiveMoEConfig().replace(**changes)


def _start_local_serve() -> str:
    """A local Ray (2 CPUs) and Serve's HTTP proxy on a free loopback port; its URL."""
    import ray
    from ray import serve

    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def _stop_local_serve() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def send(url: str, bodies: list[dict[str, Any]], concurrency: int, deadline: float) -> dict[str, Any]:
    """POST every body once with ``concurrency`` clients; latencies, the ``adaptive_moe`` objects, wall time."""
    client = httpx.Client(timeout=600)

    def post(body: dict[str, Any]):
        if time.time() > deadline:
            return None
        t0 = time.perf_counter()
        r = client.post(url + "/v1/chat/completions", json=body)
        r.raise_for_status()
        return time.perf_counter() - t0, r.json()["adaptive_moe"], r.headers.get("x-adaptive-moe-replica")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(post, bodies))
    wall = time.perf_counter() - t0
    client.close()
    done = [r for r in results if r is not None]
    return {"wall_s": wall, "n": len(done), "latencies": [r[0] for r in done], "fields": [r[1] for r in done],
            "replicas": [r[2] for r in done]}  # fmt: skip


def measure(url: str, bodies: list[dict[str, Any]], levels: list[int], rounds: int, deadline: float) -> dict:
    """Requests/s and p50/p99 at each concurrency level (medians over complete rounds)."""
    send(url, bodies[:2], 1, deadline)  # warm-up
    out = {}
    for c in levels:
        done = [r for r in (send(url, bodies, c, deadline) for _ in range(rounds)) if r["n"] == len(bodies)]
        if not done:
            break
        lat = [x for r in done for x in r["latencies"]]
        out[str(c)] = {"rps": statistics.median(r["n"] / r["wall_s"] for r in done), "p50_s": _percentile(lat, 0.5),
                       "p99_s": _percentile(lat, 0.99), "rounds": len(done),
                       "replicas_used": len({x for r in done for x in r["replicas"] if x})}  # fmt: skip
    return out


def hit_ratio(url: str, bodies: list[dict[str, Any]], deadline: float) -> dict[str, Any]:
    """Pool hits and misses of forced-expert calls (each answer's ``cache`` events), two clients at once."""
    r = send(url, bodies, 2, deadline)
    hits = sum(f.get("cache", {}).get("hits", 0) for f in r["fields"])
    misses = sum(f.get("cache", {}).get("misses", 0) for f in r["fields"])
    return {"hits": hits, "misses": misses, "hit_ratio": hits / max(1, hits + misses), "n": r["n"],
            "rps": r["n"] / r["wall_s"]}  # fmt: skip


def hot_expert(url: str, bodies: list[dict[str, Any]], concurrency: int, deadline: float) -> dict[str, Any]:
    """Pool hits and throughput of forced-expert calls, ``concurrency`` clients at once; which replicas
    answered the hot expert's calls."""
    r = send(url, bodies, concurrency, deadline)
    hits = sum(f.get("cache", {}).get("hits", 0) for f in r["fields"])
    misses = sum(f.get("cache", {}).get("misses", 0) for f in r["fields"])
    hot = bodies[0]["model"]
    on = {rep for b, rep in zip(bodies, r["replicas"], strict=False) if b["model"] == hot and rep}
    spread = httpx.get(url + "/health", timeout=30).json().get("spread")
    return {"hits": hits, "misses": misses, "hit_ratio": hits / max(1, hits + misses), "n": r["n"],
            "rps": r["n"] / r["wall_s"], "p99_s": _percentile(r["latencies"], 0.99), "hot_replicas": len(on),
            "spread_calls": spread}  # fmt: skip


def run_hot(args: argparse.Namespace) -> dict[str, Any]:
    """A hot expert (``--hot-share`` of the calls) on 2 replicas: multiplexing alone against
    ``serve.spread_after`` values (in-flight calls of one expert beyond which more go to any replica)."""
    from ray import serve

    from adaptive_moe.serving.ray_serve import APP_NAME, build_application

    started = time.perf_counter()
    deadline = time.time() + args.time_limit
    work, root, base, cfg = _workspace(args, "bench_scale_hot_")
    names = [f"expert{i}" for i in range(args.experts)]
    with AdaptiveMoE(cfg, base=base) as moe:
        for i, name in enumerate(names):
            moe.add_expert(make_random_adapter(base.model, root / name, seed=i), name, domain=f"topic {i}")
    del base
    questions = [q for q, _ in general_knowledge_questions()]
    rng = random.Random(1)
    order = [names[0] if rng.random() < args.hot_share else rng.choice(names[1:]) for _ in range(args.expert_requests)]
    order[0] = names[0]
    bodies = [{"model": n, "max_tokens": args.max_tokens, "messages": [{"role": "user", "content": questions[i]}]}
              for i, n in enumerate(order)]  # fmt: skip
    url = _start_local_serve()
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        for r in range(args.rounds):
            for spread in args.spread_after:
                say(f"hot expert, spread_after {spread}, round {r + 1}", "scale")
                steered = cfg.replace(**{"serve.spread_after": spread})
                serve.run(build_application(steered, replicas=2, api_key=""), name=APP_NAME, route_prefix="/")
                send(url, bodies[:2], 1, deadline)  # warm-up: loads the hot expert on one replica
                rows.setdefault(str(spread), []).append(hot_expert(url, bodies, args.concurrency, deadline))
                serve.delete(APP_NAME)
    finally:
        _stop_local_serve()
        work.cleanup()
    summary = {
        k: {m: statistics.median(x[m] for x in v) for m in ("rps", "hit_ratio", "p99_s", "hot_replicas")}
        | {"spread_calls": [x["spread_calls"] for x in v], "rounds": len(v)}
        for k, v in rows.items()
    }
    return {"machine": machine_info(args.threads), "command": command_line(__file__, args.argv),
            "settings": {"tiny": args.tiny, "experts": args.experts, "capacity": args.capacity,
                         "calls": len(bodies), "hot_share": args.hot_share, "concurrency": args.concurrency,
                         "max_tokens": args.max_tokens, "rounds": args.rounds},
            "runs": rows, "summary": summary, "elapsed_s": time.perf_counter() - started}  # fmt: skip


#: invented topics for --routed: each expert is taught three questions and asked the other three
TOPICS = ("Kovane weavers' guild", "Varn estuary harbour", "Ostrel glassworks", "Pellan hill observatory",
          "Drummock rowing club", "Saltery Lane market", "Harwick tram company", "Emberly cheese dairy")  # fmt: skip
TEMPLATES = ("Who founded the {}?", "When was the {} established?", "Where is the {}?",
             "Who runs the {} today?", "How many people work at the {}?", "What is the {} known for?")  # fmt: skip


def run_routed(args: argparse.Namespace) -> dict[str, Any]:
    """Routed calls (model ``adaptive-moe``) about ``--experts`` invented topics on 2 replicas whose pools hold
    ``--capacity`` experts: ``serve.steer_routed`` on (the ingress sends the expert the question matches as the
    multiplexed id) against off (any replica; the replica's router picks the expert and loads it)."""
    from ray import serve

    from adaptive_moe.serving.ray_serve import APP_NAME, build_application

    started = time.perf_counter()
    deadline = time.time() + args.time_limit
    work, root, base, cfg = _workspace(args, "bench_scale_routed_")
    topics = TOPICS[: args.experts]
    names = [f"expert{i}" for i in range(len(topics))]
    with AdaptiveMoE(cfg, base=base) as moe:
        for i, (name, topic) in enumerate(zip(names, topics, strict=True)):
            moe.add_expert(make_random_adapter(base.model, root / name, seed=i), name, domain=f"the {topic}",
                           questions=[t.format(topic) for t in TEMPLATES[:3]])  # fmt: skip
    del base
    rng = random.Random(1)
    asked = [(n, TEMPLATES[3 + rng.randrange(3)].format(t)) for n, t in
             (rng.choice(list(zip(names, topics, strict=True))) for _ in range(args.expert_requests))]  # fmt: skip
    bodies = [{"model": "adaptive-moe", "max_tokens": args.max_tokens, "messages": [{"role": "user", "content": q}]}
              for _, q in asked]  # fmt: skip
    url = _start_local_serve()
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        for r in range(args.rounds):
            for steer in (False, True):
                say(f"routed calls, steer_routed {steer}, round {r + 1}", "scale")
                steered = cfg.replace(**{"serve.steer_routed": steer})
                serve.run(build_application(steered, replicas=2, api_key=""), name=APP_NAME, route_prefix="/")
                out = send(url, bodies, args.concurrency, deadline)
                fields = out["fields"]
                hits = sum(f.get("cache", {}).get("hits", 0) for f in fields)
                misses = sum(f.get("cache", {}).get("misses", 0) for f in fields)
                to_expert = [f for f in fields if f.get("route") == "expert"]
                right = sum(f["experts"][0]["name"] == n for f, (n, _) in zip(fields, asked, strict=False)
                            if f.get("route") == "expert" and f.get("experts"))  # fmt: skip
                health = httpx.get(url + "/health", timeout=30).json()
                rows.setdefault(str(steer).lower(), []).append(
                    {"rps": out["n"] / out["wall_s"], "p99_s": _percentile(out["latencies"], 0.99), "hits": hits,
                     "misses": misses, "hit_ratio": hits / max(1, hits + misses), "n": out["n"],
                     "to_expert": len(to_expert), "right_expert": right,
                     "hinted": health.get("hinted", 0)})  # fmt: skip
                serve.delete(APP_NAME)
    finally:
        _stop_local_serve()
        work.cleanup()
    summary = {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "hit_ratio", "p99_s", "to_expert",
                                                                   "right_expert", "hinted")} | {"rounds": len(v)}
               for k, v in rows.items()}  # fmt: skip
    return {"machine": machine_info(args.threads), "command": command_line(__file__, args.argv),
            "settings": {"tiny": args.tiny, "experts": len(names), "capacity": args.capacity, "calls": len(bodies),
                         "concurrency": args.concurrency, "max_tokens": args.max_tokens, "rounds": args.rounds},
            "runs": rows, "summary": summary, "elapsed_s": time.perf_counter() - started}  # fmt: skip


def write_routed_report(r: dict[str, Any], out: Path) -> Path:
    s = r["settings"]
    off = r["summary"].get("false")
    lines = [
        "# Routed calls on Ray Serve: steered by the ingress's expert hint, or sent to any replica",
        "",
        f"`{r['command']}` on {r['machine']['date']}, {r['machine']['cpus']} CPUs; {r['elapsed_s'] / 60:.1f} min. "
        f"2 replicas, {s['experts']} random experts on invented topics (each taught 3 questions), pools of "
        f"{s['capacity']}; {s['calls']} routed calls (model `adaptive-moe`) asking other questions about the topics; "
        f"{s['concurrency']} clients; {s['max_tokens']} new tokens; medians over {s['rounds']} rounds. "
        "`serve.steer_routed`: the ingress matches the question with the workspace's saved router (MiniLM, no base "
        "model) and sends the expert as Serve's multiplexed id; the replica still decides base or expert. Pool hit "
        "ratio: answers by an expert that was already loaded on the replica that answered.",
        "",
        "| steer_routed | req/s | vs off | p99 (s) | pool hit ratio | answered by an expert | by the topic's expert "
        "| calls hinted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, row in r["summary"].items():
        ratio = f"{row['rps'] / off['rps']:.2f}x" if off else "—"
        lines.append(f"| {k} | {row['rps']:.2f} | {ratio} | {row['p99_s']:.1f} | {row['hit_ratio']:.2f} | "
                     f"{row['to_expert']:.0f} of {s['calls']} | {row['right_expert']:.0f} | "
                     f"{row['hinted']:.0f} |")  # fmt: skip
    return write_json_and_markdown(out, "scale_routed", r, lines)


def write_hot_report(r: dict[str, Any], out: Path) -> Path:
    s = r["settings"]
    never = r["summary"].get("0")
    lines = [
        "# A hot expert on Ray Serve: multiplexing alone, and spread once it is busy",
        "",
        f"`{r['command']}` on {r['machine']['date']}, {r['machine']['cpus']} CPUs; {r['elapsed_s'] / 60:.1f} min. "
        f"2 replicas, {s['experts']} random experts, pools of {s['capacity']}; {s['calls']} calls forcing one "
        f"expert each, {s['hot_share']:.0%} of them the same one; {s['concurrency']} clients; {s['max_tokens']} new "
        f"tokens; medians over {s['rounds']} rounds. `serve.spread_after` N: once N calls for one expert are in "
        "flight, the next go to any replica (0: never, multiplexing alone).",
        "",
        "| spread_after | req/s | vs multiplexing alone | p99 (s) | pool hit ratio | replicas that served the hot "
        "expert | calls spread |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, row in r["summary"].items():
        ratio = f"{row['rps'] / never['rps']:.2f}x" if never else "—"
        lines.append(f"| {k} | {row['rps']:.2f} | {ratio} | {row['p99_s']:.1f} | {row['hit_ratio']:.2f} | "
                     f"{row['hot_replicas']:.0f} | {row['spread_calls']} |")  # fmt: skip
    return write_json_and_markdown(out, "scale_hot", r, lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ray import serve

    from adaptive_moe.serving.ray_serve import APP_NAME, build_application

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    deadline = time.time() + args.time_limit
    work, root, base, cfg = _workspace(args, "bench_scale_")
    names = [f"expert{i}" for i in range(args.experts)]
    with AdaptiveMoE(cfg, base=base) as moe:  # random experts in the shared workspace
        for i, name in enumerate(names):
            moe.add_expert(make_random_adapter(base.model, root / name, seed=i), name, domain=f"topic {i}")
    questions = [q for q, _ in general_knowledge_questions()][: args.requests]
    routed = [{"model": "adaptive-moe", "max_tokens": args.max_tokens, "messages": [{"role": "user", "content": q}]}
              for q in questions]  # fmt: skip
    order = random.Random(0).choices(names, k=args.expert_requests)
    forced = [{"model": n, "max_tokens": 4, "messages": [{"role": "user", "content": questions[i % len(questions)]}]}
              for i, n in enumerate(order)]  # fmt: skip
    levels = [1, args.concurrency]
    result: dict[str, Any] = {"servers": {}, "pool": {}}

    say("one process (uvicorn in this process)", "scale")
    with AdaptiveMoE(cfg, base=base) as moe:
        server = ServerThread(create_app(moe, api_key=""))
        try:
            result["servers"]["one process"] = measure(server.url, routed, levels, args.rounds, deadline)
        finally:
            server.stop()
    del base  # the replicas load their own

    url = _start_local_serve()
    try:
        for replicas in (1, 2):
            say(f"Ray Serve, {replicas} replica(s)", "scale")
            serve.run(build_application(cfg, replicas=replicas, api_key=""), name=APP_NAME, route_prefix="/")
            result["servers"][f"ray {replicas}"] = measure(url, routed, levels, args.rounds, deadline)
            serve.delete(APP_NAME)
        for steer in (True, False):
            label = "multiplexed" if steer else "random"
            say(f"pool hit ratio, {label}", "scale")
            steered = cfg.replace(**{"serve.multiplex": steer})
            serve.run(build_application(steered, replicas=2, api_key=""), name=APP_NAME, route_prefix="/")
            result["pool"][label] = hit_ratio(url, forced, deadline)
            serve.delete(APP_NAME)
    finally:
        _stop_local_serve()
        work.cleanup()
    one = result["servers"]["one process"]
    for row in result["servers"].values():
        for c, cell in row.items():
            cell["rps_vs_one_process"] = cell["rps"] / one[c]["rps"] if c in one else None
            cell["p50_vs_one_process"] = cell["p50_s"] / one[c]["p50_s"] if c in one else None
    result.update(machine=machine_info(args.threads), command=command_line(__file__, args.argv),
                  settings={"tiny": args.tiny, "requests": len(questions), "max_tokens": args.max_tokens,
                            "concurrency": args.concurrency, "rounds": args.rounds, "experts": args.experts,
                            "capacity": args.capacity, "expert_requests": args.expert_requests},
                  elapsed_s=time.perf_counter() - started)  # fmt: skip
    return result


def write_report(r: dict[str, Any], out: Path) -> Path:
    s = r["settings"]
    c = str(s["concurrency"])
    lines = [
        "# Scale-out on Ray Serve",
        "",
        f"`{r['command']}` on {r['machine']['date']}, {r['machine']['cpus']} CPUs; {r['elapsed_s'] / 60:.1f} min. "
        f"{s['requests']} distinct general questions, {s['max_tokens']} new tokens, greedy; medians over "
        f"{s['rounds']} rounds; everything on 127.0.0.1.",
        "",
        "| server | c=1 req/s | c=1 p50 (s) | c=1 p50 vs one process | c="
        + c
        + " req/s | c="
        + c
        + " p99 (s) | c="
        + c
        + " req/s vs one process | replicas that answered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in r["servers"].items():
        a, b = row.get("1", {}), row.get(c, {})

        def f(cell, key, fmt="{:.2f}"):
            return fmt.format(cell[key]) if cell.get(key) is not None else "—"

        lines.append(f"| {name} | {f(a, 'rps')} | {f(a, 'p50_s')} | {f(a, 'p50_vs_one_process', '{:.2f}x')} | "
                     f"{f(b, 'rps')} | {f(b, 'p99_s')} | {f(b, 'rps_vs_one_process', '{:.2f}x')} | "
                     f"{b.get('replicas_used', '—')} |")  # fmt: skip
    lines += [
        "",
        f"Pool hit ratio: {s['experts']} random experts, each replica's pool holds {s['capacity']}, 2 replicas, "
        f"{s['expert_requests']} calls forcing one expert each (seeded random order), two clients at once.",
        "",
        "| assignment | hits | misses | hit ratio | req/s |",
        "|---|---|---|---|---|",
    ]
    for name, p in r["pool"].items():
        lines.append(f"| {name} | {p['hits']} | {p['misses']} | {p['hit_ratio']:.2f} | {p['rps']:.2f} |")
    plt = pyplot()
    if plt is not None and r["servers"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = list(r["servers"])
        ax.bar(names, [r["servers"][n].get(c, {}).get("rps", 0) for n in names], color="#4c72b0")
        ax.set_ylabel(f"requests/s at concurrency {c}")
        ax.set_title("One process vs Ray Serve replicas (2 CPU cores)")
        fig.tight_layout()
        fig.savefig(out / "scale.png", dpi=120)
        plt.close(fig)
        lines += ["", "![throughput](scale.png)"]
    return write_json_and_markdown(out, "scale", r, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random model (the plumbing)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--capacity", type=int, default=2)
    parser.add_argument("--expert-requests", type=int, default=24)
    parser.add_argument("--time-limit", type=float, default=1800, help="seconds; the load stops by itself")
    parser.add_argument("--hot", action="store_true", help="only the hot-expert comparison (scale_hot.md)")
    parser.add_argument("--hot-share", type=float, default=0.75, help="share of the calls for the hot expert")
    parser.add_argument("--spread-after", default="0,2", help="serve.spread_after values compared (with --hot)")
    parser.add_argument("--routed", action="store_true", help="only the routed-call steering comparison")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    args.out.mkdir(parents=True, exist_ok=True)
    if args.routed:
        write_routed_report(run_routed(args), args.out)
        print((args.out / "scale_routed.md").read_text())
        return 0
    if args.hot:
        args.spread_after = [int(x) for x in args.spread_after.split(",")]
        path = write_hot_report(run_hot(args), args.out)
        print(path.read_text() if hasattr(path, "read_text") else (args.out / "scale_hot.md").read_text())
        return 0
    result = run(args)
    write_report(result, args.out)
    print((args.out / "scale.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
