"""Ray Serve: a real local Ray (2 CPUs, 127.0.0.1), the ingress and two model replicas of a tiny random
model, the real `openai` client over HTTP."""

from __future__ import annotations

import os
import time

import pytest
from conftest import require

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.experts import ExpertRegistry
from adaptive_moe.testing import free_port, make_random_adapter

ray = require("ray")
openai = require("openai")
httpx = require("httpx")
require("fastapi")

from ray import serve  # noqa: E402 - after the packages are known to be there

from adaptive_moe.serving.ray_serve import APP_NAME, INGRESS, MODEL, build_application  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_llama_dir, tiny_base):
    """Two replicas behind the ingress; the workspace holds expert ``alpha`` (and the router, with its MiniLM
    matcher, that knows it) before start."""
    tmp = tmp_path_factory.mktemp("ray")
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp / "ws"),
        **{"model.name_or_path": str(tiny_llama_dir), "generation.max_new_tokens": 5,
           "integrator.expert_confidence_floor": 0.0, "serve.batch_window_ms": 20.0},
    )  # fmt: skip
    with AdaptiveMoE(cfg, base=tiny_base) as moe:
        moe.add_expert(make_random_adapter(tiny_base.model, tmp / "alpha", seed=1), "alpha",
                       questions=["Who founded the Kovane guild?"])  # fmt: skip
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")  # a busy 2-core machine starts it slowly
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_application(cfg, replicas=2, api_key=""), name=APP_NAME, route_prefix="/")
        yield cfg, f"http://127.0.0.1:{port}", tmp
    finally:
        serve.shutdown()
        ray.shutdown()


def _client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=2, timeout=120)


def test_the_ingress_and_two_replicas_answer_the_openai_client(served):
    _, url, _ = served
    status = serve.status().applications[APP_NAME]
    deployments = status.deployments
    assert INGRESS in deployments and deployments[MODEL].replica_states.get("RUNNING") == 2
    client = _client(url)
    r = client.chat.completions.create(model="adaptive-moe", messages=QUESTION)
    assert r.object == "chat.completion" and r.usage.completion_tokens <= 5
    assert r.model_extra["adaptive_moe"]["route"] in ("base", "expert", "gap", "abstain")
    chunks = list(client.chat.completions.create(model="adaptive-moe", messages=QUESTION, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    assert httpx.get(url + "/health").json()["engine"] == "ray"
    bad = httpx.post(url + "/v1/chat/completions", json={"model": "nope", "messages": QUESTION})
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"


def test_an_expert_sticks_to_the_replica_that_holds_it(served):
    _, url, _ = served
    client = _client(url)
    replicas = []
    for _ in range(6):
        raw = client.chat.completions.with_raw_response.create(model="alpha", messages=QUESTION)
        reply = raw.parse()
        assert reply.model_extra["adaptive_moe"]["experts"] == [{"name": "alpha", "weight": 1.0}]
        replicas.append(raw.headers["x-adaptive-moe-replica"])
    # the first call loads alpha on one replica; Serve sends the next ones where it is loaded
    assert max(replicas.count(r) for r in set(replicas)) >= 5, replicas


def test_a_routed_call_is_steered_to_the_replica_that_holds_its_expert(served):
    _, url, _ = served
    client = _client(url)
    home = client.chat.completions.with_raw_response.create(model="alpha", messages=QUESTION)
    home = home.headers["x-adaptive-moe-replica"]
    before = httpx.get(url + "/health").json()["hinted"]
    about = [{"role": "user", "content": "Who was the founder of the Kovane guild?"}]
    replicas = [client.chat.completions.with_raw_response.create(model="adaptive-moe", messages=about)
                .headers["x-adaptive-moe-replica"] for _ in range(4)]  # fmt: skip
    # the ingress matched the question to alpha (the saved router, no base model) and sent it where alpha is
    assert httpx.get(url + "/health").json()["hinted"] - before == 4
    assert replicas.count(home) >= 3, (home, replicas)
    general = client.chat.completions.with_raw_response.create(model="adaptive-moe", messages=QUESTION)
    assert general.status_code == 200 and httpx.get(url + "/health").json()["hinted"] - before == 4  # no hint


def test_an_expert_registered_after_start_is_served_without_a_restart(served, tiny_base):
    cfg, url, tmp = served
    registry = ExpertRegistry(cfg.registry_path)
    registry.import_adapter(make_random_adapter(tiny_base.model, tmp / "beta", seed=2), "beta",
                            domain="the Varn estuary", base=tiny_base,
                            extra={"example_questions": ["How deep is the Varn estuary?"]})  # fmt: skip
    client = _client(url)
    deadline = time.time() + 30
    while "beta" not in [m.id for m in client.models.list()] and time.time() < deadline:
        time.sleep(0.5)
    r = client.chat.completions.create(model="beta", messages=QUESTION)
    assert r.model_extra["adaptive_moe"]["experts"] == [{"name": "beta", "weight": 1.0}]


def _replica_actors():
    from ray.util import list_named_actors

    return [a for a in list_named_actors(all_namespaces=True) if MODEL in a["name"] and "REPLICA" in a["name"]]


def test_a_replica_killed_under_load_loses_no_request_and_records_each_gap_once(served):
    from concurrent.futures import ThreadPoolExecutor

    from adaptive_moe.gaps import GapLedger

    cfg, url, _ = served
    client = _client(url)
    ids = [f"kill-test-{i:02d}" for i in range(24)]

    def ask(request_id):
        messages = [{"role": "user", "content": f"Tell me about the Orm river, part {request_id[-2:]}."}]
        raw = client.chat.completions.with_raw_response.create(model="adaptive-moe", messages=messages,
                                                               extra_headers={"X-Request-Id": request_id})  # fmt: skip
        return request_id, raw.parse().model_extra["adaptive_moe"]["route"]

    victim = _replica_actors()[0]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(ask, i) for i in ids]
        while sum(f.done() for f in futures) < 3:
            time.sleep(0.05)
        ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
        answers = dict(f.result(timeout=300) for f in futures)  # every request answered, none lost
    assert sorted(answers) == sorted(ids)
    with GapLedger.from_config(cfg.gaps, cfg.workspace) as ledger:
        recorded = [e.request_id for e in ledger.entries(resolved=None) if e.request_id in answers]
    assert sorted(recorded) == sorted(i for i, route in answers.items() if route == "gap")  # once each
    deadline = time.time() + 120  # Serve brings the replica back
    while serve.status().applications[APP_NAME].deployments[MODEL].replica_states.get("RUNNING") != 2:
        assert time.time() < deadline, "the killed replica did not come back"
        time.sleep(1)
    assert victim["name"] not in [a["name"] for a in _replica_actors()]  # it was replaced by a new one


def test_a_hot_expert_is_spread_over_the_replicas_once_it_is_busy(served):
    cfg, url, _ = served
    from concurrent.futures import ThreadPoolExecutor

    # serve.spread_after 1: while one call for alpha is in flight, the next go to any replica
    serve.run(build_application(cfg.replace(**{"serve.spread_after": 1}), replicas=2, api_key=""), name=APP_NAME,
              route_prefix="/")  # fmt: skip
    client = _client(url)

    def ask(_):
        raw = client.chat.completions.with_raw_response.create(model="alpha", messages=QUESTION, max_tokens=5)
        return raw.headers["x-adaptive-moe-replica"], raw.parse().model_extra["adaptive_moe"]["experts"]

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, range(12)))
    assert all(experts == [{"name": "alpha", "weight": 1.0}] for _, experts in answers)
    assert len({replica for replica, _ in answers}) == 2  # both replicas served the hot expert
    assert httpx.get(url + "/health").json()["spread"] > 0
