"""The OpenAI-compatible HTTP API: FastAPI routes over one :class:`~adaptive_moe.AdaptiveMoE`.

``POST /v1/chat/completions`` and ``POST /v1/completions`` answer in the OpenAI shape (``stream: true``
as server-sent events), plus an ``adaptive_moe`` object: route, confidence, experts, flagged, reason,
attribution summary. ``GET /v1/models`` lists the routed system (``serve.model_name``) and every
registered expert; asking for an expert by name forces it. ``GET /health`` answers once the model is
loaded, ``GET /metrics`` in the Prometheus text format. Bad input gets the OpenAI error JSON with a
4xx status, never a 500. An API key, when ``ADAPTIVE_MOE_API_KEY`` is set, is required as
``Authorization: Bearer <key>`` on ``/v1/*``.

A stream sends its first chunk once the route is decided (in ``post`` mode, after the base has answered
the whole prompt), then one chunk per token of the answer, so a streamed answer equals the same
request answered without streaming.
"""

# no "from __future__ import annotations": FastAPI reads the route functions' annotations (Request) at runtime
import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from typing import Any

from ..config import ServeConfig
from ..errors import missing_dependency
from .backend import Call, LocalBackend
from .responses import APIError, bad_request

logger = logging.getLogger(__name__)

API_KEY_ENV = "ADAPTIVE_MOE_API_KEY"
REQUEST_ID = "X-Request-Id"
REPLICA = "X-Adaptive-MoE-Replica"  # which Ray Serve replica answered
_ROLES = ("system", "user", "assistant")
#: parameters of the OpenAI API this server does not implement: named in a 400
_UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logit_bias", "echo", "suffix", "best_of",
                "audio", "modalities", "prediction", "parallel_tool_calls")  # fmt: skip


# -- request validation --------------------------------------------------------------------------------
def _number(body: dict, key: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise bad_request(f"'{key}' must be {what} between {lo:g} and {hi:g}, got {value!r}", key)
    return value


def generation_settings(body: dict, *, chat: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's generation settings for :meth:`AdaptiveMoE.generate` and its response options
    (``stream``, ``include_usage``, ``logprobs``); raises :class:`APIError` (400) naming a bad parameter."""
    for key in _UNSUPPORTED:
        if body.get(key) not in (None, [], {}):
            raise bad_request(f"'{key}' is not supported by this server", key, "unsupported_parameter")
    n = _number(body, "n", 1, 1_000_000, integer=True)
    if n not in (None, 1):
        raise bad_request(f"'n' must be 1 (one answer per request), got {n}", "n", "unsupported_parameter")
    for key in ("presence_penalty", "frequency_penalty"):
        if _number(body, key, -2, 2) not in (None, 0, 0.0):
            raise bad_request(f"'{key}' is not supported (only 0)", key, "unsupported_parameter")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise bad_request("'response_format' other than {'type': 'text'} is not supported", "response_format",
                   "unsupported_parameter")  # fmt: skip
    settings: dict[str, Any] = {}
    limit_key = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, limit_key, 1, 100_000, integer=True)
    if max_tokens is not None:
        settings["max_new_tokens"] = max_tokens
    temperature = _number(body, "temperature", 0, 2)
    top_p = _number(body, "top_p", 0, 1)
    if temperature:
        settings.update(do_sample=True, temperature=float(temperature))
        if top_p is not None:
            settings["top_p"] = max(float(top_p), 1e-6)
    elif temperature is not None:
        settings["do_sample"] = False
    seed = _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    if seed is not None:
        settings["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not 1 <= len(stops) <= 4 or not all(isinstance(s, str) and s for s in stops):
            raise bad_request("'stop' must be a non-empty string or a list of 1 to 4 of them", "stop")
        settings["stop"] = stops
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(f"'stream' must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not isinstance(options.get("include_usage", False),
                                                                                bool)):  # fmt: skip
        raise bad_request("'stream_options' must be an object like {'include_usage': true}", "stream_options")
    logprobs = body.get("logprobs", False if chat else None)
    if chat:
        if not isinstance(logprobs, bool):
            raise bad_request(f"'logprobs' must be true or false, got {logprobs!r}", "logprobs")
        top = _number(body, "top_logprobs", 0, 20, integer=True)
    else:
        top = _number(body, "logprobs", 0, 5, integer=True)
        logprobs = top is not None
    if chat and top and not logprobs:
        raise bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    return settings, {"stream": stream, "include_usage": bool((options or {}).get("include_usage")),
                      "logprobs": bool(logprobs), "top_logprobs": int(top or 0)}  # fmt: skip


def chat_prompt(body: dict) -> list[dict[str, str]]:
    """The request's messages, checked: a non-empty list of ``{role, content}`` with a user message."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list of {'role', 'content'} objects", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise bad_request(f"messages[{i}]: 'role' must be one of {', '.join(_ROLES)}", f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):  # fmt: skip
                raise bad_request(f"messages[{i}]: only text content parts are supported", f"messages[{i}].content")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise bad_request(f"messages[{i}]: 'content' must be a string", f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise bad_request("'messages' needs a user message with some text", "messages")
    return out


def completion_prompt(body: dict) -> str:
    """The request's prompt: one non-empty string (or a list holding one)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, list):
        raise bad_request("'prompt' must be one string; send one request per prompt", "prompt", "unsupported_parameter")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad_request("'prompt' must be a non-empty string", "prompt")
    return prompt


# -- metrics ---------------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics of one server (its own registry); the pool's gauges when the model is local."""

    def __init__(self, pool: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("adaptive_moe_requests", "requests answered, by endpoint, route and status",
                                ["endpoint", "route", "status"], registry=r)  # fmt: skip
        self.errors = Counter("adaptive_moe_errors", "requests refused, by status and code", ["status", "code"],
                              registry=r)  # fmt: skip
        self.latency = Histogram("adaptive_moe_request_seconds", "time from arrival to the last byte, by route",
                                 ["route"], registry=r,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128))  # fmt: skip
        self.confidence = Histogram("adaptive_moe_confidence", "the base's calibrated confidence", registry=r,
                                    buckets=tuple(i / 10 for i in range(1, 11)))  # fmt: skip
        self.batch = Histogram("adaptive_moe_batch_size", "sequences per decoding forward (serve.scheduler "
                               "continuous) or requests per batched generate call (static)", registry=r,
                               buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32))  # fmt: skip
        self.queue = Gauge("adaptive_moe_queue_waiting", "requests waiting for the model", registry=r)
        if pool is None:
            return
        for name in ("hits", "misses", "evictions"):
            Gauge(f"adaptive_moe_pool_{name}", f"expert pool {name} since start", registry=r).set_function(
                lambda n=name: float(getattr(pool.stats, n, 0)))  # fmt: skip
        Gauge("adaptive_moe_pool_resident_bytes", "bytes of expert weights resident in the pool",
              registry=r).set_function(lambda: float(pool.stats.resident_bytes))  # fmt: skip

    def engine(self, current: Any) -> None:
        """Gauges of the decoding engine ``current()`` returns (0 while none runs)."""
        from prometheus_client import Gauge

        for name, attr, text in (
            ("forwards", "steps", "decoding forwards since the engine started"),
            ("mixed_forwards", "mixed_steps", "decoding forwards whose rows ran more than one adapter"),
            ("running_rows", "running_rows", "sequences being decoded now"),
            ("prefix_builds", "prefix_builds", "shared prompt prefixes computed"),
        ):
            Gauge(f"adaptive_moe_engine_{name}", text, registry=self.registry).set_function(
                lambda a=attr: float(getattr(current(), a, 0) or 0))  # fmt: skip


# -- the app ---------------------------------------------------------------------------------------------
def create_app(target: Any, config: ServeConfig | None = None, *, api_key: str | None = None):
    """A FastAPI app serving ``target``: an :class:`~adaptive_moe.AdaptiveMoE` (answered in this process by
    a :class:`~adaptive_moe.serving.backend.LocalBackend`) or a backend (``answer``, ``expert_names``,
    ``health``, ``waiting``, ``pool``, ``start``, ``stop``; the Ray Serve ingress's). ``api_key`` defaults to
    ``$ADAPTIVE_MOE_API_KEY`` (unset or ``""``: no key asked)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
    except ImportError:
        raise missing_dependency("fastapi", extra="serve", purpose="the HTTP server") from None
    from contextlib import asynccontextmanager

    backend = target if hasattr(target, "answer") and hasattr(target, "expert_names") else LocalBackend(target, config)
    config = config or backend.config
    key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV)) or None  # "": no key
    metrics = Metrics(backend.pool)
    if isinstance(backend, LocalBackend):
        backend.on_batch = lambda size, seconds: metrics.batch.observe(size)
        metrics.engine(lambda: backend.moe.base.engine)

    @asynccontextmanager
    async def lifespan(app):
        backend.start()
        app.state.backend = backend
        app.state.batcher = getattr(backend, "batcher", None)
        try:
            yield
        finally:  # uvicorn has drained the requests in flight; the queue is empty
            await asyncio.to_thread(backend.stop, config.graceful_shutdown_s)

    app = FastAPI(title="adaptive_moe", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error_response(e: APIError, request_id: str | None) -> JSONResponse:
        metrics.errors.labels(str(e.status), e.code or e.type).inc()
        headers = {**e.headers, **({REQUEST_ID: request_id} if request_id else {})}
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    def refusal(headers: dict[str, str], path: str, request_id: str) -> JSONResponse | None:
        """The 401 or 413 a ``/v1/`` request gets before it is read, else ``None``."""
        if not path.startswith("/v1/"):
            return None
        if key is not None:
            given = headers.get("authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), key.encode()):
                return error_response(APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                               type_="authentication_error", code="invalid_api_key"),
                                      request_id)  # fmt: skip
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > config.max_body_bytes):
            return error_response(APIError(413, f"request body over {config.max_body_bytes} bytes",
                                           code="request_too_large"), request_id)  # fmt: skip
        return None

    def guard(app):  # Starlette builds middleware as ``cls(app=next_app)``
        """Pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` hides a client's disconnect from the
        route): names the request (``X-Request-Id``, on the response too), checks the key and body size."""

        async def app_(scope, receive, send):
            if scope["type"] != "http":
                return await inner(scope, receive, send)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            request_id = (headers.get(REQUEST_ID.lower()) or "").strip()[:128] or uuid.uuid4().hex
            scope.setdefault("state", {})["request_id"] = request_id
            refused = refusal(headers, scope.get("path", ""), request_id)
            if refused is not None:
                return await refused(scope, receive, send)

            async def send_named(message):
                if message["type"] == "http.response.start":
                    named = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                    message = {**message, "headers": [*named, (b"x-request-id", request_id.encode("latin-1"))]}
                await send(message)

            return await inner(scope, receive, send_named)

        inner = app
        return app_

    app.add_middleware(guard)

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return error_response(e, getattr(request.state, "request_id", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = (e.errors() or [{}])[0]
        param = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return error_response(bad_request(f"invalid request: {first.get('msg', e)}", param),
                              getattr(request.state, "request_id", None))  # fmt: skip

    @app.exception_handler(404)
    async def not_found(request: Request, e: Exception):
        return error_response(APIError(404, f"no route {request.method} {request.url.path}", code="not_found"),
                              getattr(request.state, "request_id", None))  # fmt: skip

    @app.exception_handler(405)
    async def not_allowed(request: Request, e: Exception):
        e = APIError(405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed")
        return error_response(e, getattr(request.state, "request_id", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception):  # a bug: still the OpenAI shape, and logged
        logger.exception("request %s failed", getattr(request.state, "request_id", "?"))
        return error_response(APIError(500, f"internal error: {type(e).__name__}", type_="server_error"),
                              getattr(request.state, "request_id", None))  # fmt: skip

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.model_name, **backend.health()}

    @app.get("/metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.queue.set(backend.waiting)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        names = [config.model_name, *backend.expert_names()]
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "adaptive_moe"}
                                           for n in names]}  # fmt: skip

    async def read_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > config.max_body_bytes:
            raise APIError(413, f"request body over {config.max_body_bytes} bytes", code="request_too_large")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"the request body is not valid JSON: {e}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        return body

    def forced_experts(body: dict) -> tuple[str, ...] | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("'model' is required: 'adaptive-moe' (routed) or an expert's name", "model")
        if model == config.model_name:
            return None
        if model in backend.expert_names():
            return (model,)
        raise APIError(404, f"model {model!r} does not exist; GET /v1/models lists them", param="model",
                       code="model_not_found")  # fmt: skip

    async def answer(request: Request, *, chat: bool):
        started = time.perf_counter()
        request_id = request.state.request_id
        body = await read_json(request)
        experts = forced_experts(body)
        prompt = chat_prompt(body) if chat else completion_prompt(body)
        settings, options = generation_settings(body, chat=chat)
        call = Call(chat, body["model"], prompt, settings, options, experts, request_id)
        reply = await backend.answer(call, request.is_disconnected)
        if reply.status != 200:
            error = reply.body["error"]
            metrics.errors.labels(str(reply.status), error.get("code") or error.get("type")).inc()
            return JSONResponse(reply.body, status_code=reply.status, headers={**reply.headers, REQUEST_ID: request_id})
        if reply.confidence is not None:
            metrics.confidence.observe(reply.confidence)
        endpoint = "chat" if chat else "completions"
        if reply.stream is not None:  # tokens follow the generation; counted once the stream ends

            async def followed():
                async for event in reply.stream:
                    yield event
                metrics.requests.labels(endpoint, reply.route, "200").inc()
                metrics.latency.labels(reply.route).observe(time.perf_counter() - started)

            logger.info("request %s: route %s, streamed as generated", request_id, reply.route)
            headers = {"Cache-Control": "no-cache", REQUEST_ID: request_id}
            return StreamingResponse(followed(), media_type="text/event-stream", headers=headers)
        metrics.requests.labels(endpoint, reply.route, "200").inc()
        metrics.latency.labels(reply.route).observe(time.perf_counter() - started)
        logger.info("request %s: route %s, %d tokens%s", request_id, reply.route, reply.tokens,
                    f", replica {reply.replica}" if reply.replica else "")  # fmt: skip
        replica = {REPLICA: reply.replica} if reply.replica else {}
        if reply.events is not None:
            headers = {"Cache-Control": "no-cache", REQUEST_ID: request_id, **replica}
            return StreamingResponse(iter(reply.events), media_type="text/event-stream", headers=headers)
        return JSONResponse(reply.body, headers=replica)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await answer(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await answer(request, chat=False)

    return app


def serve(moe: Any, config: ServeConfig | None = None) -> None:
    """Run the server in the foreground until SIGTERM/SIGINT (requests in flight finish first)."""
    try:
        import uvicorn
    except ImportError:
        raise missing_dependency("uvicorn", extra="serve", purpose="the HTTP server") from None
    import signal
    import threading

    config = config or moe.config.serve
    app = create_app(moe, config)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # uvicorn drains the requests in flight, then raises the captured signal again for the handler it
        # found: a no-op for SIGTERM, so a clean shutdown exits 0 instead of dying of the signal
        previous = signal.signal(signal.SIGTERM, lambda *_: logger.info("SIGTERM: stopped after draining"))
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="info",
                    timeout_graceful_shutdown=int(config.graceful_shutdown_s))  # fmt: skip
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
