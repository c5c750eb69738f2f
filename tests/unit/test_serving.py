"""The OpenAI-compatible HTTP API: a real uvicorn server on 127.0.0.1, the real `openai` client, httpx for
malformed requests; a tiny random model behind it."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import require

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig
from adaptive_moe.testing import ServerThread, free_port, make_random_adapter

fastapi = require("fastapi")
uvicorn = require("uvicorn")
openai = require("openai")
httpx = require("httpx")

from adaptive_moe.serving import create_app  # noqa: E402 - after the packages are known to be there

QUESTION = "What is the capital of France?"


class Server(ServerThread):
    """The server in a thread; stopping it must leave no thread behind."""

    def stop(self) -> None:
        super().stop(30)
        assert not self.thread.is_alive()


def _moe(tmp_path, tiny_llama_dir, tiny_base, **changes):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"model.name_or_path": str(tiny_llama_dir), "generation.max_new_tokens": 6, "router.embedder": "base",
           "integrator.expert_confidence_floor": 0.0, **changes},
    )  # fmt: skip
    moe = AdaptiveMoE(cfg, base=tiny_base)
    moe.add_expert(make_random_adapter(tiny_base.model, tmp_path / "alpha", seed=1), "alpha",
                   questions=["Who founded the Kovane guild?"])  # fmt: skip
    return moe


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_llama_dir, tiny_base):
    tmp = tmp_path_factory.mktemp("serve")
    moe = _moe(tmp, tiny_llama_dir, tiny_base, **{"serve.batch_window_ms": 200.0, "serve.max_body_bytes": 4096})
    server = Server(create_app(moe, api_key=""))
    yield moe, server
    server.stop()
    moe.close()


def _client(server, **kw):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, **kw)


def test_chat_completion_in_the_openai_shape_with_the_route(served):
    moe, server = served
    r = _client(server).chat.completions.create(model="adaptive-moe", messages=[{"role": "user", "content": QUESTION}])
    alone = moe.generate(QUESTION, record_gaps=False)
    assert r.object == "chat.completion" and r.model == "adaptive-moe" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.content == alone.text and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens == len(alone.attribution.tokens) and r.usage.prompt_tokens > 0
    extra = r.model_extra["adaptive_moe"]
    assert extra["route"] == alone.route and extra["confidence"] == pytest.approx(alone.confidence)
    assert {"experts", "flagged", "reason", "attribution", "expert_confidence"} <= set(extra)


def test_streamed_answer_equals_the_plain_one_and_carries_the_route_first(served):
    _, server = served
    client = _client(server)
    messages = [{"role": "user", "content": "Name the largest planet."}]
    plain = client.chat.completions.create(model="adaptive-moe", messages=messages, max_tokens=5)
    chunks = list(client.chat.completions.create(model="adaptive-moe", messages=messages, max_tokens=5, stream=True,
                                                 logprobs=True, stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[0].model_extra["adaptive_moe"]["route"] == plain.model_extra["adaptive_moe"]["route"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    # a chunk per token (a token ending inside a multi-byte character waits for the next), log-probs with them
    body = [c for c in chunks[1:] if c.choices and c.choices[0].finish_reason is None]
    assert 1 <= len(body) <= plain.usage.completion_tokens
    assert all(c.choices[0].delta.content and c.choices[0].logprobs.content for c in body)  # no empty chunk
    assert sum(len(c.choices[0].logprobs.content) for c in body) == plain.usage.completion_tokens
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason


def test_an_expert_by_name_is_forced_and_logprobs_come_per_token(served):
    _, server = served
    client = _client(server)
    assert [m.id for m in client.models.list()] == ["adaptive-moe", "alpha"]
    r = client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": QUESTION}], logprobs=True,
                                       top_logprobs=3)  # fmt: skip
    extra = r.model_extra["adaptive_moe"]
    assert extra["route"] == "expert" and extra["experts"] == [{"name": "alpha", "weight": 1.0}]
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert all(t.logprob <= 0 for t in content)
    for t in content:  # greedy: the chosen token is the likeliest, and the alternatives come best first
        alts = [a.logprob for a in t.top_logprobs]
        assert len(alts) == 3 and alts == sorted(alts, reverse=True)
        assert t.logprob == pytest.approx(alts[0], abs=1e-5) and t.token == t.top_logprobs[0].token
    c = client.completions.create(model="adaptive-moe", prompt=QUESTION, max_tokens=4, logprobs=2)
    assert c.object == "text_completion" and c.usage.completion_tokens <= 4
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == c.usage.completion_tokens and len(lp.top_logprobs) == len(lp.tokens)
    assert all(len(top) <= 2 and max(top.values()) >= chosen - 1e-5 for top, chosen in
               zip(lp.top_logprobs, lp.token_logprobs, strict=True))  # fmt: skip
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]


def test_requests_that_arrive_together_share_a_batch_and_answer_as_alone(served):
    moe, server = served
    questions = [f"Question {i}: who wrote Hamlet?" for i in range(4)]
    alone = [moe.generate(q, record_gaps=False).text for q in questions]

    def ask(q):
        body = {"model": "adaptive-moe", "messages": [{"role": "user", "content": q}]}
        return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, questions))
    assert [a["choices"][0]["message"]["content"] for a in answers] == alone
    metrics = httpx.get(server.url + "/metrics").text
    sizes = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
             if line.startswith("adaptive_moe_batch_size_")}  # fmt: skip
    assert sizes["adaptive_moe_batch_size_count"] < sizes["adaptive_moe_batch_size_sum"]  # some batch held > 1
    assert 'adaptive_moe_requests_total{endpoint="chat"' in metrics and "adaptive_moe_pool_hits" in metrics


def test_requests_for_different_experts_are_decoded_in_shared_forwards(served):
    moe, server = served
    engine = moe.base.engine
    assert engine is not None and httpx.get(server.url + "/health").json()["scheduler"] == "continuous"
    asks = [("alpha", 3), ("adaptive-moe", 40), ("alpha", 3), ("adaptive-moe", 40)]
    alone = [moe.generate(QUESTION, experts=["alpha"] if m == "alpha" else None, max_new_tokens=n,
                          record_gaps=False).text for m, n in asks]  # fmt: skip
    mixed = engine.mixed_steps

    def ask(a):
        body = {"model": a[0], "max_tokens": a[1], "messages": [{"role": "user", "content": QUESTION}]}
        return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()

    with ThreadPoolExecutor(4) as pool:
        with moe.base.lock:  # the requests pile up, then start together
            futures = [pool.submit(ask, a) for a in asks]
            deadline = time.time() + 20
            while moe.base.lock.waiting < len(asks) and time.time() < deadline:
                time.sleep(0.01)
        answers = [f.result() for f in futures]
    assert [a["choices"][0]["message"]["content"] for a in answers] == alone
    assert [a["adaptive_moe"]["route"] for a in answers][::2] == ["expert", "expert"]
    assert engine.mixed_steps > mixed  # an expert's rows and the base's rows in one forward
    gauges = {line.split()[0]: float(line.split()[1]) for line in httpx.get(server.url + "/metrics").text.splitlines()
              if line.startswith("adaptive_moe_engine_")}  # fmt: skip
    assert gauges["adaptive_moe_engine_mixed_forwards"] == engine.mixed_steps > 0
    assert gauges["adaptive_moe_engine_forwards"] >= gauges["adaptive_moe_engine_mixed_forwards"]


def test_the_static_scheduler_answers_requests_that_arrive_together_in_one_call(tmp_path, tiny_llama_dir):
    from adaptive_moe import load_base_model

    base = load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")  # its own: an engine belongs to a base
    moe = _moe(tmp_path, tiny_llama_dir, base, **{"serve.scheduler": "static", "serve.batch_window_ms": 200.0})
    server = Server(create_app(moe, api_key=""))
    questions = [f"Question {i}: who wrote Hamlet?" for i in range(4)]
    try:
        assert moe.base.engine is None and httpx.get(server.url + "/health").json()["scheduler"] == "static"
        alone = [moe.generate(q, record_gaps=False).text for q in questions]

        def ask(q):
            body = {"model": "adaptive-moe", "messages": [{"role": "user", "content": q}]}
            return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, questions))
        assert [a["choices"][0]["message"]["content"] for a in answers] == alone
        metrics = httpx.get(server.url + "/metrics").text.splitlines()
        sizes = {line.split()[0]: float(line.split()[1]) for line in metrics
                 if line.startswith("adaptive_moe_batch_size_")}  # fmt: skip
        assert sizes["adaptive_moe_batch_size_count"] < sizes["adaptive_moe_batch_size_sum"]  # a call held > 1
    finally:
        server.stop()
        moe.close()


def _error(response, status, param=None, code=None):
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def test_bad_requests_get_the_openai_error_shape_never_a_500(served):
    _, server = served
    url = server.url + "/v1/chat/completions"
    ok = {"model": "adaptive-moe", "messages": [{"role": "user", "content": QUESTION}]}
    post = lambda **kw: httpx.post(url, timeout=30, **kw)  # noqa: E731
    _error(post(content=b"{not json", headers={"content-type": "application/json"}), 400, code="invalid_json")
    _error(post(json={**ok, "messages": []}), 400, "messages")
    _error(post(json={**ok, "messages": [{"role": "robot", "content": "hi"}]}), 400, "messages[0].role")
    _error(post(json={**ok, "max_tokens": -1}), 400, "max_tokens")
    _error(post(json={**ok, "temperature": "hot"}), 400, "temperature")
    _error(post(json={**ok, "n": 2}), 400, "n", "unsupported_parameter")
    _error(post(json={**ok, "top_logprobs": 2}), 400, "top_logprobs")  # without logprobs: true
    _error(post(json={**ok, "logprobs": True, "top_logprobs": 21}), 400, "top_logprobs")
    _error(post(json={**ok, "tools": [{"type": "function"}]}), 400, "tools", "unsupported_parameter")
    _error(post(json={**ok, "model": "nope"}), 404, "model", "model_not_found")
    _error(post(json={**ok, "messages": [{"role": "user", "content": "word " * 1000}]}), 413, code="request_too_large")
    _error(post(json={**ok, "messages": [{"role": "user", "content": "x" * 300}]}), 400,
           code="context_length_exceeded")  # fmt: skip
    _error(post(json=[1, 2]), 400)
    _error(httpx.get(server.url + "/v1/nothing"), 404)
    _error(httpx.get(url), 405)
    assert httpx.get(server.url + "/health").json()["status"] == "ok"  # still alive


def test_api_key_request_id_and_a_retried_gap_recorded_once(tmp_path, tiny_llama_dir, tiny_base):
    moe = _moe(tmp_path, tiny_llama_dir, tiny_base, **{"router.threshold": 1.0})  # never the base: gaps
    server = Server(create_app(moe, api_key="s3cret"))
    try:
        url = server.url + "/v1/chat/completions"
        body = {"model": "adaptive-moe", "messages": [{"role": "user", "content": "Who rules the moon of Zarq?"}]}
        _error(httpx.post(url, json=body), 401, code="invalid_api_key")
        _error(httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}), 401)
        assert httpx.get(server.url + "/health").status_code == 200  # health needs no key
        headers = {"Authorization": "Bearer s3cret", "X-Request-Id": "retry-me-1"}
        before = moe.gaps.count()
        first = httpx.post(url, json=body, headers=headers, timeout=60)
        again = httpx.post(url, json=body, headers=headers, timeout=60)
        assert first.status_code == again.status_code == 200 and first.headers["X-Request-Id"] == "retry-me-1"
        assert first.json()["id"] == "chatcmpl-retry-me-1" and first.json()["adaptive_moe"]["route"] == "gap"
        assert moe.gaps.count() == before + 1  # the retry did not record the gap twice
        other = httpx.post(url, json=body, headers={"Authorization": "Bearer s3cret"}, timeout=60)
        assert len(other.headers["X-Request-Id"]) == 32 and moe.gaps.count() == before + 2
    finally:
        server.stop()
        moe.close()


def test_a_full_queue_answers_503_with_retry_after(tmp_path, tiny_llama_dir, tiny_base):
    moe = _moe(tmp_path, tiny_llama_dir, tiny_base, **{"serve.max_queue": 1, "serve.max_batch": 1,
                                                         "serve.batch_window_ms": 0.0})  # fmt: skip
    app = create_app(moe, api_key="")
    server = Server(app)
    body = {"model": "adaptive-moe", "messages": [{"role": "user", "content": QUESTION}]}
    post = lambda: httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)  # noqa: E731
    try:
        pool = ThreadPoolExecutor(4)
        with moe.base.lock:  # the worker blocks on the model: requests pile up
            futures = [pool.submit(post)]
            deadline = time.time() + 20  # the worker has taken the first request (and waits for the model)
            while not (app.state.batcher.busy and app.state.batcher.waiting == 0) and time.time() < deadline:
                time.sleep(0.02)
            futures += [pool.submit(post) for _ in range(3)]  # one waits in the queue, two are refused
            while sum(f.done() for f in futures) < 2 and time.time() < deadline:
                time.sleep(0.05)
            refused = [f.result() for f in futures if f.done()]
        assert len(refused) >= 2 and all(r.status_code == 503 for r in refused)
        assert refused[0].headers["Retry-After"] == "1" and refused[0].json()["error"]["code"] == "overloaded"
        pool.shutdown(wait=True)
        answered = [f.result() for f in futures]
        assert sorted(r.status_code for r in answered) == [200, 200, 503, 503]
    finally:
        server.stop()
        moe.close()


def test_a_client_that_leaves_stops_its_generation(tmp_path, tiny_llama_dir, tiny_base):
    moe = _moe(tmp_path, tiny_llama_dir, tiny_base, **{"serve.batch_window_ms": 0.0})
    answered = []
    generate = moe.generate
    moe.generate = lambda *a, **kw: answered.extend(generate(*a, **kw)) or answered  # the worker's call, watched
    app = create_app(moe, api_key="")
    server = Server(app)
    body = {"model": "adaptive-moe", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 200}
    try:
        with moe.base.lock:  # the worker takes the request and waits for the model while the client gives up
            with pytest.raises(httpx.TimeoutException):
                httpx.post(server.url + "/v1/chat/completions", json=body, timeout=1.0)
            deadline = time.time() + 20
            while "client_closed" not in httpx.get(server.url + "/metrics").text and time.time() < deadline:
                time.sleep(0.1)
            assert app.state.batcher.busy
        while not answered and time.time() < deadline:
            time.sleep(0.05)
        [out] = answered
        assert out.signals.finish_reason == "cancelled" and len(out.signals.token_ids) < 5  # not 200 tokens
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
    finally:
        server.stop()
        moe.close()


def test_the_serve_command_binds_loopback_by_default():
    from adaptive_moe import cli

    args = cli.build_parser().parse_args(["serve", "--port", "9"])
    assert args.port == 9 and args.host is None  # the config's host: 127.0.0.1
    cfg = AdaptiveMoEConfig()
    assert (cfg.serve.host, cfg.serve.port, cfg.serve.max_queue) == ("127.0.0.1", 8000, 64)


def test_serve_finishes_the_request_in_flight_on_sigterm_and_exits(tmp_path, tiny_llama_dir):
    import signal
    import subprocess
    import sys

    import yaml

    port = free_port()
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name_or_path": str(tiny_llama_dir)}, "workspace": str(tmp_path / "ws"),
                                   "generation": {"max_new_tokens": 48}, "router": {"embedder": "base"},
                                   "serve": {"batch_window_ms": 2000}}))  # a request waits 2 s: in flight  # fmt: skip
    env = {**os.environ, "ADAPTIVE_MOE_API_KEY": "k"}
    command = [sys.executable, "-m", "adaptive_moe.cli", "serve", "--config", str(cfg), "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None and time.time() < deadline, "the server did not come up"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        body = {"model": "adaptive-moe", "messages": [{"role": "user", "content": QUESTION}]}
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, url + "/v1/chat/completions", json=body,
                                  headers={"Authorization": "Bearer k"}, timeout=60)  # fmt: skip
            time.sleep(0.5)  # the request is in flight, in the batcher's 2-second window
            proc.send_signal(signal.SIGTERM)
            answer = pending.result()
            assert not pending.exception()
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] is not None
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.stdout.read() if proc.stdout else ""
    assert "127.0.0.1:" + str(port) in out  # uvicorn says where it listens: loopback


def test_an_abstention_streams_and_counts_like_its_plain_answer(tmp_path, tiny_llama_dir, tiny_base):
    changes = {"router.threshold": 1.0, "router.min_match_score": 0.0, "integrator.expert_confidence_floor": 0.99}
    moe = _moe(tmp_path, tiny_llama_dir, tiny_base, **changes)  # every query to the expert, which never clears 0.99
    server = Server(create_app(moe, api_key=""))
    try:
        client = _client(server)
        messages = [{"role": "user", "content": "Who founded the Kovane guild?"}]
        plain = client.chat.completions.create(model="adaptive-moe", messages=messages, logprobs=True)
        assert plain.model_extra["adaptive_moe"]["route"] == "abstain"
        assert plain.choices[0].message.content == moe.config.integrator.abstain_text
        assert plain.usage.completion_tokens > 0 and plain.usage.prompt_tokens > 0
        assert plain.choices[0].logprobs.content == []  # no generated tokens to give log-probs for
        chunks = list(client.chat.completions.create(model="adaptive-moe", messages=messages, stream=True,
                                                     stream_options={"include_usage": True}))  # fmt: skip
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
        )
        assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    finally:
        server.stop()
        moe.close()


def test_an_expert_asked_by_name_streams_its_tokens_as_they_are_generated(tmp_path, tiny_llama_dir, tiny_base):
    import json as json_

    moe = _moe(tmp_path, tiny_llama_dir, tiny_base)
    app = create_app(moe, api_key="")
    server = Server(app)
    messages = [{"role": "user", "content": "Who founded the Kovane guild?"}]
    try:
        plain = _client(server).chat.completions.create(model="alpha", messages=messages, max_tokens=120)
        body = {"model": "alpha", "messages": messages, "max_tokens": 120, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        events, busy_at_first_token = [], None
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                events.append(json_.loads(line[6:]))
                if busy_at_first_token is None and events[-1]["choices"] and events[-1]["choices"][0]["delta"].get(
                        "content"):  # fmt: skip
                    busy_at_first_token = app.state.batcher.busy  # the model is still generating the rest
        first = events[0]
        assert first["adaptive_moe"]["route"] == "expert" and "attribution" not in first["adaptive_moe"]
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
        assert text == plain.choices[0].message.content  # the same answer as without streaming
        final = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]][-1]
        assert final["adaptive_moe"]["experts"] == [{"name": "alpha", "weight": 1.0}]
        assert "attribution" in final["adaptive_moe"]  # the whole object once the answer is complete
        assert events[-1]["usage"]["completion_tokens"] == plain.usage.completion_tokens
        assert busy_at_first_token or plain.usage.completion_tokens < 20
    finally:
        server.stop()
        moe.close()
