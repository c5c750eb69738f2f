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
from ..errors import AdaptiveMoEError, InvalidInputError, UnknownNameError, missing_dependency
from ..integration.attribution import alternative_pieces
from .batcher import Batcher, Job, QueueFullError

logger = logging.getLogger(__name__)

API_KEY_ENV = "ADAPTIVE_MOE_API_KEY"
REQUEST_ID = "X-Request-Id"
_ROLES = ("system", "user", "assistant")
#: parameters of the OpenAI API this server does not implement: named in a 400
_UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logit_bias", "echo", "suffix", "best_of",
                "audio", "modalities", "prediction", "parallel_tool_calls")  # fmt: skip


class APIError(Exception):
    """An error answered in the OpenAI shape."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _bad(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


# -- request validation --------------------------------------------------------------------------------
def _number(body: dict, key: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise _bad(f"'{key}' must be {what} between {lo:g} and {hi:g}, got {value!r}", key)
    return value


def generation_settings(body: dict, *, chat: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's generation settings for :meth:`AdaptiveMoE.generate` and its response options
    (``stream``, ``include_usage``, ``logprobs``); raises :class:`APIError` (400) naming a bad parameter."""
    for key in _UNSUPPORTED:
        if body.get(key) not in (None, [], {}):
            raise _bad(f"'{key}' is not supported by this server", key, "unsupported_parameter")
    n = _number(body, "n", 1, 1_000_000, integer=True)
    if n not in (None, 1):
        raise _bad(f"'n' must be 1 (one answer per request), got {n}", "n", "unsupported_parameter")
    for key in ("presence_penalty", "frequency_penalty"):
        if _number(body, key, -2, 2) not in (None, 0, 0.0):
            raise _bad(f"'{key}' is not supported (only 0)", key, "unsupported_parameter")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise _bad("'response_format' other than {'type': 'text'} is not supported", "response_format",
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
            raise _bad("'stop' must be a non-empty string or a list of 1 to 4 of them", "stop")
        settings["stop"] = stops
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad(f"'stream' must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not isinstance(options.get("include_usage", False),
                                                                                bool)):  # fmt: skip
        raise _bad("'stream_options' must be an object like {'include_usage': true}", "stream_options")
    logprobs = body.get("logprobs", False if chat else None)
    if chat:
        if not isinstance(logprobs, bool):
            raise _bad(f"'logprobs' must be true or false, got {logprobs!r}", "logprobs")
        top = _number(body, "top_logprobs", 0, 20, integer=True)
    else:
        top = _number(body, "logprobs", 0, 5, integer=True)
        logprobs = top is not None
    if chat and top and not logprobs:
        raise _bad("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    return settings, {"stream": stream, "include_usage": bool((options or {}).get("include_usage")),
                      "logprobs": bool(logprobs), "top_logprobs": int(top or 0)}  # fmt: skip


def chat_prompt(body: dict) -> list[dict[str, str]]:
    """The request's messages, checked: a non-empty list of ``{role, content}`` with a user message."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list of {'role', 'content'} objects", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise _bad(f"messages[{i}]: 'role' must be one of {', '.join(_ROLES)}", f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):  # fmt: skip
                raise _bad(f"messages[{i}]: only text content parts are supported", f"messages[{i}].content")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise _bad(f"messages[{i}]: 'content' must be a string", f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise _bad("'messages' needs a user message with some text", "messages")
    return out


def completion_prompt(body: dict) -> str:
    """The request's prompt: one non-empty string (or a list holding one)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, list):
        raise _bad("'prompt' must be one string; send one request per prompt", "prompt", "unsupported_parameter")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("'prompt' must be a non-empty string", "prompt")
    return prompt


# -- responses -------------------------------------------------------------------------------------------
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def adaptive_fields(out: Any) -> dict[str, Any]:
    """The ``adaptive_moe`` object of a response: route, confidences, experts, flag, reason, attribution."""
    a = out.attribution
    return {
        "route": out.route, "confidence": out.confidence, "expert_confidence": out.expert_confidence,
        "experts": [{"name": n, "weight": w} for n, w in out.experts], "flagged": out.flagged, "reason": out.reason,
        "attribution": {"sources": a.sources, "strategy": a.strategy, "citations": [dict(c) for c in a.citations],
                        "supported": a.supported},
    }  # fmt: skip


def _usage(out: Any, prompt_tokens: int, tokenizer: Any) -> dict[str, int]:
    if out.attribution.tokens:
        completion = len(out.attribution.tokens)
    else:  # a text no generation chose token by token (an abstention): count it as the tokenizer would
        completion = len(tokenizer(out.text, add_special_tokens=False)["input_ids"]) if out.text else 0
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def _token_logprobs(out: Any, tokenizer: Any = None, top: int = 0) -> list[tuple[str, float, list]]:
    """Each generated token's text, log-probability and its ``top`` likeliest alternatives (text, log-prob)
    at that step (empty when the text was not generated token by token, as an abstention's; no
    alternatives when the answer did not keep them, as a mixture's)."""
    pieces = [t.token for t in out.attribution.tokens]
    signals = out.signals
    lps = [] if signals is None else [float(x) for x in signals.token_logprobs]
    if len(lps) != len(pieces):
        return []
    alts: list[list] = [[] for _ in pieces]
    ids, values = getattr(signals, "top_ids", None), getattr(signals, "top_logprobs", None)
    if top and tokenizer is not None and ids is not None and values is not None and len(ids) == len(pieces):
        texts = alternative_pieces(tokenizer, signals.token_ids, ids[:, :top].tolist())
        alts = [list(zip(row, row_lps[:top].tolist(), strict=True)) for row, row_lps in zip(texts, values, strict=True)]
    return list(zip(pieces, lps, alts, strict=True))


def _chat_logprobs(entries: list[tuple[str, float, list]]) -> dict[str, Any]:
    """The ``logprobs`` object of a chat choice or chunk."""

    def item(t: str, lp: float) -> dict[str, Any]:
        return {"token": t, "logprob": lp, "bytes": list(t.encode())}

    return {"content": [{**item(t, lp), "top_logprobs": [item(a, alp) for a, alp in alts]} for t, lp, alts in entries]}


def _completion_logprobs(entries: list[tuple[str, float, list]], start: int = 0) -> dict[str, Any]:
    """The ``logprobs`` object of a completion choice or chunk (offsets from ``start``)."""
    offsets, pos = [], start
    for t, _, _ in entries:
        offsets.append(pos)
        pos += len(t)
    tops = None
    if any(alts for _, _, alts in entries):  # one entry per text: the likeliest token that reads so
        tops = [{t: lp for t, lp in reversed(alts)} for _, _, alts in entries]
    return {"tokens": [t for t, _, _ in entries], "token_logprobs": [lp for _, lp, _ in entries],
            "top_logprobs": tops, "text_offset": offsets}  # fmt: skip


def stream_pieces(out: Any, tokenizer: Any, top: int = 0) -> list[tuple[str, list[tuple[str, float, list]]]]:
    """The answer cut into the chunks a stream sends, each with the tokens (and log-probs) it holds: one
    chunk per token, except that a token ending inside a multi-byte character waits for the next one
    (incremental decoding, as transformers' streamers do). The chunks always join into ``out.text``;
    when they would not (a text no generation produced token by token), the text is one chunk."""
    tokens = out.attribution.tokens
    entries = _token_logprobs(out, tokenizer, top)
    if not tokens:
        return [(out.text, [])] if out.text else []
    ids = [t.token_id for t in tokens]
    pieces: list[tuple[str, list[tuple[str, float, list]]]] = []
    prev, pending = "", []
    for i in range(len(ids)):
        if entries:
            pending.append(entries[i])
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
        if text.endswith("\ufffd") and i < len(ids) - 1:
            continue
        pieces.append((text[len(prev) :] if text.startswith(prev) else text, pending))
        prev, pending = text, []
    if "".join(p for p, _ in pieces) != out.text:
        return [(out.text, entries)]
    return pieces


def _finish(out: Any) -> str:
    return _FINISH.get(getattr(out.signals, "finish_reason", "eos"), "stop")


def chat_response(out: Any, request_id: str, model: str, logprobs: bool, usage: dict[str, int], *,
                  tokenizer: Any = None, top: int = 0) -> dict[str, Any]:  # fmt: skip
    """A ``chat.completion`` object."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": out.text},
                              "finish_reason": _finish(out), "logprobs": None}  # fmt: skip
    if logprobs:
        choice["logprobs"] = _chat_logprobs(_token_logprobs(out, tokenizer, top))
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [choice], "usage": usage, "adaptive_moe": adaptive_fields(out)}  # fmt: skip


def completion_response(out: Any, request_id: str, model: str, logprobs: bool, usage: dict[str, int], *,
                        tokenizer: Any = None, top: int = 0) -> dict[str, Any]:  # fmt: skip
    """A ``text_completion`` object."""
    choice: dict[str, Any] = {"index": 0, "text": out.text, "finish_reason": _finish(out), "logprobs": None}
    if logprobs:
        choice["logprobs"] = _completion_logprobs(_token_logprobs(out, tokenizer, top))
    return {"id": f"cmpl-{request_id}", "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [choice], "usage": usage, "adaptive_moe": adaptive_fields(out)}  # fmt: skip


def stream_events(out: Any, request_id: str, model: str, *, chat: bool, logprobs: bool,
                  usage: dict[str, int] | None, pieces: list[tuple[str, list[tuple[str, float, list]]]]):  # fmt: skip
    """The server-sent events of a streamed answer: the route first, then ``pieces`` (see
    :func:`stream_pieces`), the finish reason, the usage (when asked), ``[DONE]``."""
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"
    ident = f"chatcmpl-{request_id}" if chat else f"cmpl-{request_id}"

    def chunk(delta: Any, finish: str | None = None, lp: Any = None, **extra: Any) -> str:
        if chat:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": lp}
        else:
            choice = {"index": 0, "text": delta, "finish_reason": finish, "logprobs": lp}
        body = {"id": ident, "object": kind, "created": created, "model": model, "choices": [choice], **extra}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""} if chat else "", adaptive_moe=adaptive_fields(out))
    offset = 0
    for piece, held in pieces:
        lps = None
        if logprobs:
            lps = _chat_logprobs(held) if chat else _completion_logprobs(held, offset)
        offset += len(piece)
        yield chunk({"content": piece} if chat else piece, lp=lps)
    yield chunk({} if chat else "", finish=_finish(out))
    if usage is not None:
        body = {"id": ident, "object": kind, "created": created, "model": model, "choices": [], "usage": usage}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


# -- metrics ---------------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics of one server (its own registry)."""

    def __init__(self, moe: Any) -> None:
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
        self.batch = Histogram("adaptive_moe_batch_size", "requests per batched generate call", registry=r,
                               buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32))  # fmt: skip
        self.queue = Gauge("adaptive_moe_queue_waiting", "requests waiting for the model", registry=r)
        pool = moe.pool
        for name in ("hits", "misses", "evictions"):
            Gauge(f"adaptive_moe_pool_{name}", f"expert pool {name} since start", registry=r).set_function(
                lambda n=name: float(getattr(pool.stats, n, 0)))  # fmt: skip
        Gauge("adaptive_moe_pool_resident_bytes", "bytes of expert weights resident in the pool",
              registry=r).set_function(lambda: float(pool.stats.resident_bytes))  # fmt: skip


# -- the app ---------------------------------------------------------------------------------------------
def create_app(moe: Any, config: ServeConfig | None = None, *, api_key: str | None = None):
    """A FastAPI app serving ``moe``. ``api_key`` defaults to ``$ADAPTIVE_MOE_API_KEY`` (unset or ``""``:
    no key asked)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
    except ImportError:
        raise missing_dependency("fastapi", extra="serve", purpose="the HTTP server") from None
    from contextlib import asynccontextmanager

    config = config or moe.config.serve
    key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV)) or None  # "": no key
    metrics = Metrics(moe)

    def on_batch(size: int, seconds: float) -> None:
        metrics.batch.observe(size)

    @asynccontextmanager
    async def lifespan(app):
        app.state.batcher = Batcher(moe, max_batch=config.max_batch, window_s=config.batch_window_ms / 1000,
                                    max_queue=config.max_queue, on_batch=on_batch)  # fmt: skip
        try:
            yield
        finally:  # uvicorn has drained the requests in flight; the queue is empty
            await asyncio.to_thread(app.state.batcher.stop, config.graceful_shutdown_s)

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
        return error_response(_bad(f"invalid request: {first.get('msg', e)}", param),
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
        return {"status": "ok", "model": config.model_name, "base": moe.base.name, "experts": moe.experts.names(),
                "waiting": app.state.batcher.waiting}  # fmt: skip

    @app.get("/metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.queue.set(app.state.batcher.waiting)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        names = [config.model_name, *moe.experts.names()]
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "adaptive_moe"}
                                           for n in names]}  # fmt: skip

    async def read_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > config.max_body_bytes:
            raise APIError(413, f"request body over {config.max_body_bytes} bytes", code="request_too_large")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise _bad(f"the request body is not valid JSON: {e}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise _bad("the request body must be a JSON object")
        return body

    def forced_experts(body: dict) -> tuple[str, ...] | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _bad("'model' is required: 'adaptive-moe' (routed) or an expert's name", "model")
        if model == config.model_name:
            return None
        if model in moe.experts.names():
            return (model,)
        raise APIError(404, f"model {model!r} does not exist; GET /v1/models lists them", param="model",
                       code="model_not_found")  # fmt: skip

    def check_length(prompt: Any, settings: dict[str, Any]) -> int:
        from ..model.generation import render_prompt

        gen = moe.config.generation.replace(**{k: v for k, v in settings.items() if k != "seed"})
        context = moe.base.context_length
        n = len(moe.base.tokenizer(render_prompt(moe.base, prompt, gen))["input_ids"])
        if context is None:
            return n
        if n + gen.max_new_tokens > context:
            raise _bad(f"the prompt is {n} tokens and max_tokens {gen.max_new_tokens}: over the model's context of "
                       f"{context} tokens", "messages", "context_length_exceeded")  # fmt: skip
        return n

    async def answer(request: Request, *, chat: bool):
        started = time.perf_counter()
        request_id = request.state.request_id
        body = await read_json(request)
        experts = forced_experts(body)
        prompt = chat_prompt(body) if chat else completion_prompt(body)
        settings, options = generation_settings(body, chat=chat)
        job = Job(prompt, settings, experts, request_id, check=lambda: check_length(prompt, settings))
        try:
            app.state.batcher.submit(job)
        except QueueFullError as e:
            raise APIError(503, str(e), type_="server_error", code="overloaded", headers={"Retry-After": "1"}) from None
        future = asyncio.wrap_future(job.future)
        while True:  # a client that goes away before its batch starts is dropped from it
            done, _ = await asyncio.wait({future}, timeout=0.25)
            if done:
                break
            if await request.is_disconnected():
                job.cancelled.set()
                break
        if job.cancelled.is_set() and not future.done():
            future.cancel()
            metrics.errors.labels("499", "client_closed").inc()
            return JSONResponse({"error": {"message": "client closed the request", "type": "cancelled",
                                           "param": None, "code": "client_closed"}}, status_code=499)  # fmt: skip
        try:
            out = future.result()
        except APIError:
            raise
        except asyncio.CancelledError:
            raise APIError(499, "the request was cancelled", code="client_closed") from None
        except (InvalidInputError, UnknownNameError) as e:
            raise _bad(str(e)) from None
        except AdaptiveMoEError as e:
            raise APIError(503, str(e), type_="server_error", code="unavailable") from None
        model = body["model"]
        if out.confidence is not None:
            metrics.confidence.observe(out.confidence)
        metrics.requests.labels("chat" if chat else "completions", out.route, "200").inc()
        metrics.latency.labels(out.route).observe(time.perf_counter() - started)
        logger.info("request %s: route %s, %d tokens", request_id, out.route, len(out.attribution.tokens))
        usage = _usage(out, int(job.checked or 0), moe.base.tokenizer)
        if options["stream"]:
            events = stream_events(out, request_id, model, chat=chat, logprobs=options["logprobs"],
                                   usage=usage if options["include_usage"] else None,
                                   pieces=stream_pieces(out, moe.base.tokenizer, options["top_logprobs"]))  # fmt: skip
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", REQUEST_ID: request_id})  # fmt: skip
        make = chat_response if chat else completion_response
        return JSONResponse(make(out, request_id, model, options["logprobs"], usage, tokenizer=moe.base.tokenizer,
                                 top=options["top_logprobs"]))  # fmt: skip

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
