"""Where a checked request is answered.

The HTTP routes parse a request into a :class:`Call` (prompt, generation settings, response options,
forced experts, request id); a backend answers it with a :class:`Reply` (a status and the OpenAI body, or
the server-sent events of a stream). :class:`LocalBackend` answers in this process with the model and its
:class:`~adaptive_moe.serving.batcher.Batcher`; on Ray Serve each replica holds a ``LocalBackend`` and the
ingress sends it calls (:mod:`adaptive_moe.serving.ray_serve`). A reply is plain data, so it crosses
processes as it is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import ServeConfig
from ..errors import AdaptiveMoEError, InvalidInputError, UnknownNameError
from .batcher import Batcher, Job, QueueFullError
from .live import LiveStream
from .responses import (
    APIError,
    bad_request,
    chat_response,
    completion_response,
    stream_events,
    stream_pieces,
    usage_of,
)

logger = logging.getLogger(__name__)

__all__ = ["Call", "LocalBackend", "Reply", "check_length", "reply_for"]


@dataclass
class Call:
    """One checked request: what to answer and how to shape the answer."""

    chat: bool
    model: str
    prompt: Any
    settings: dict[str, Any]
    options: dict[str, Any]  # stream, include_usage, logprobs, top_logprobs
    experts: tuple[str, ...] | None
    request_id: str


@dataclass
class Reply:
    """A backend's answer to a :class:`Call`: ``body`` (JSON) or ``events`` (a stream), and what the
    server's metrics and logs need."""

    status: int
    body: dict[str, Any] | None = None
    events: list[str] | None = None
    stream: Any = None  # an async iterator of server-sent events, made as the answer is generated (local only)
    route: str | None = None
    confidence: float | None = None
    tokens: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    replica: str | None = None

    @classmethod
    def error(cls, e: APIError) -> Reply:
        """The OpenAI error reply for ``e``."""
        return cls(e.status, body=e.body(), headers=dict(e.headers))

    @classmethod
    def client_closed(cls) -> Reply:
        """The reply of a request whose client went away (499, never sent)."""
        return cls.error(APIError(499, "client closed the request", type_="cancelled", code="client_closed"))

    @classmethod
    def failure(cls, e: BaseException) -> Reply:
        """The reply for what answering raised: an :class:`APIError` as it is, bad input (the library's
        :class:`InvalidInputError` / :class:`UnknownNameError`) 400, a cancelled request 499, anything
        else 503 (the server's trouble, not the client's)."""
        if isinstance(e, APIError):
            return cls.error(e)
        if isinstance(e, (InvalidInputError, UnknownNameError)):
            return cls.error(bad_request(str(e)))
        if isinstance(e, (asyncio.CancelledError, concurrent.futures.CancelledError)):
            return cls.client_closed()
        return cls.error(APIError(503, str(e) or type(e).__name__, type_="server_error", code="unavailable"))


def reply_for(out: Any, call: Call, tokenizer: Any, prompt_tokens: int) -> Reply:
    """The reply of an answer ``out`` (a :class:`~adaptive_moe.output.MoEOutput`) to ``call``."""
    usage = usage_of(out, prompt_tokens, tokenizer)
    top = call.options.get("top_logprobs", 0)
    facts = {"route": out.route, "confidence": out.confidence, "tokens": len(out.attribution.tokens)}
    if call.options["stream"]:
        events = stream_events(out, call.request_id, call.model, chat=call.chat, logprobs=call.options["logprobs"],
                               usage=usage if call.options["include_usage"] else None,
                               pieces=stream_pieces(out, tokenizer, top))  # fmt: skip
        return Reply(200, events=list(events), **facts)
    make = chat_response if call.chat else completion_response
    return Reply(200, body=make(out, call.request_id, call.model, call.options["logprobs"], usage,
                                tokenizer=tokenizer, top=top), **facts)  # fmt: skip


def check_length(moe: Any, prompt: Any, settings: dict[str, Any]) -> int:
    """The prompt's length in tokens after the chat template; a 400 when it and ``max_tokens`` exceed the
    model's context."""
    from ..model.generation import render_prompt

    gen = moe.config.generation.replace(**{k: v for k, v in settings.items() if k != "seed"})
    context = moe.base.context_length
    n = len(moe.base.tokenizer(render_prompt(moe.base, prompt, gen))["input_ids"])
    if context is not None and n + gen.max_new_tokens > context:
        raise bad_request(f"the prompt is {n} tokens and max_tokens {gen.max_new_tokens}: over the model's context "
                          f"of {context} tokens", "messages", "context_length_exceeded")  # fmt: skip
    return n


async def _never() -> bool:
    return False


class LocalBackend:
    """The model in this process, answered through a batching worker thread.

    Args:
        moe: the :class:`~adaptive_moe.AdaptiveMoE` answering.
        config: batching and queue settings (default ``moe.config.serve``).
        on_batch: called with each batch's size and seconds (metrics), optional.
    """

    def __init__(self, moe: Any, config: ServeConfig | None = None, on_batch: Any = None) -> None:
        self.moe = moe
        self.config = config or moe.config.serve
        self.on_batch = on_batch
        self.batcher: Batcher | None = None
        self._engine: Any = None
        self._known = tuple(moe.experts.names())

    def refresh(self) -> bool:
        """Pick up experts another process registered or removed since the last look (the router learns
        them); returns whether anything changed. The batcher calls it before each batch."""
        names = tuple(self.moe.experts.names())
        if names == self._known:
            return False
        self.moe.sync_experts()
        logger.info("experts changed: %s -> %s", list(self._known), list(names))
        self._known = names
        return True

    # -- lifetime ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the batching workers (and, with ``scheduler: continuous``, the base's decoding engine)."""
        c = self.config
        if c.scheduler == "continuous" and self._start_engine():
            # each worker answers what is queued when it is free (up to max_batch, in one routed call, so the
            # routing and the prompts' prefill are batched); the engine decodes every worker's rows together
            self.batcher = Batcher(self.moe, max_batch=c.max_batch, window_s=0.0, max_queue=c.max_queue,
                                   before_batch=self.refresh, workers=c.max_batch)  # fmt: skip
            return
        self.batcher = Batcher(self.moe, max_batch=c.max_batch, window_s=c.batch_window_ms / 1000,
                               max_queue=c.max_queue, on_batch=self.on_batch, before_batch=self.refresh)  # fmt: skip

    def _start_engine(self) -> bool:
        """Put a decoding engine on the base (one another backend started is shared); False when the model
        cannot be decoded by one (then the static scheduler answers, with a warning)."""
        from ..model.engine import DecodeEngine, EngineUnsupportedError

        base = self.moe.base
        if base.engine is not None:
            return True
        try:
            engine = DecodeEngine(base, max_rows=self.config.max_rows)
        except EngineUnsupportedError as e:
            logger.warning("serve.scheduler continuous is not available for this model (%s); answering with the "
                           "static scheduler", e)  # fmt: skip
            return False
        engine.on_step = lambda rows, seconds: self.on_batch(rows, seconds) if self.on_batch else None
        base.engine = self._engine = engine
        return True

    @property
    def engine_alive(self) -> bool:
        """Whether the decoding engine this backend answers with is running (True with the static scheduler)."""
        engine = self.moe.base.engine
        return engine is None or engine.alive

    @property
    def scheduler(self) -> str:
        """The scheduler answering: ``continuous`` or ``static``."""
        return "continuous" if self.moe.base.engine is not None else "static"

    def stop(self, timeout: float | None = None) -> None:
        """Answer what is queued, then stop the workers (and the engine this backend started)."""
        if self.batcher is not None:
            self.batcher.stop(timeout)
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.stop(timeout)
            if self.moe.base.engine is engine:
                self.moe.base.engine = None

    # -- what the routes ask -----------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Requests waiting for the model."""
        return 0 if self.batcher is None else self.batcher.waiting

    @property
    def pool(self) -> Any:
        """The expert pool (for the metrics)."""
        return self.moe.pool

    def expert_names(self) -> list[str]:
        """The registered experts (each is also a model name)."""
        return self.moe.experts.names()

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` shows besides the status."""
        return {
            "base": self.moe.base.name,
            "experts": self.expert_names(),
            "waiting": self.waiting,
            "scheduler": self.scheduler,
        }

    def streams_live(self, call: Call) -> bool:
        """Whether ``call``'s tokens are sent as they are generated: a stream whose text cannot change once
        generated, so that it equals the same request answered without streaming. That holds for an expert
        asked by name (never replaced) or with ``integrator.on_low_confidence: best`` (a weak answer is
        flagged, not replaced by an abstention); not with log-probabilities or stop strings (they are
        settled at the end). Every other stream is sent once the answer is complete."""
        if not (call.options["stream"] and self.config.stream_live) or call.options["logprobs"]:
            return False
        if call.settings.get("stop"):
            return False
        return bool(call.experts) or self.moe.config.integrator.on_low_confidence == "best"

    async def answer(self, call: Call, disconnected: Any = _never) -> Reply:
        """Answer ``call`` through the batcher. ``disconnected`` (an async callable) is polled while the
        call waits: a client that left is dropped from its batch, or stops the batch if it was the last."""
        if self.batcher is None:
            raise AdaptiveMoEError("the backend is not started")
        live = LiveStream(self.moe.base.tokenizer) if self.streams_live(call) else None
        job = Job(call.prompt, call.settings, call.experts, call.request_id, live=live,
                  check=lambda: check_length(self.moe, call.prompt, call.settings))  # fmt: skip
        try:
            self.batcher.submit(job)
        except QueueFullError as e:
            return Reply.error(APIError(503, str(e), type_="server_error", code="overloaded",
                                        headers={"Retry-After": "1"}))  # fmt: skip
        if live is not None:
            return await self._live(call, job, live, disconnected)
        future = asyncio.wrap_future(job.future)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.25)
                if done:
                    break
                if await disconnected():
                    job.cancelled.set()
                    break
        except asyncio.CancelledError:  # the caller went away (a Ray Serve request cancelled by its ingress)
            job.cancelled.set()
            raise
        if job.cancelled.is_set() and not future.done():
            future.cancel()
            return Reply.client_closed()
        try:
            out = future.result()
        except (asyncio.CancelledError, AdaptiveMoEError, APIError) as e:
            return Reply.failure(e)
        started = time.perf_counter()
        reply = reply_for(out, call, self.moe.base.tokenizer, int(job.checked or 0))
        logger.debug("request %s rendered in %.3f s", call.request_id, time.perf_counter() - started)
        return reply

    async def _live(self, call: Call, job: Job, live: LiveStream, disconnected: Any) -> Reply:
        """Wait for the route (or a refusal), then reply with a stream that follows the generation."""
        while (first := live.poll()) is None:
            if await disconnected():
                job.cancelled.set()
                return Reply.client_closed()
            await asyncio.sleep(0.01)
        event, value = first
        if event != "route":  # refused or failed before routing: an ordinary error reply
            return _error_of(job)
        stream = live.events(value, job.future, call, tokenizer=self.moe.base.tokenizer,
                             prompt_tokens=lambda: job.checked, cancelled=job.cancelled)  # fmt: skip
        return Reply(200, stream=stream, route=value.route, confidence=value.confidence)


def _error_of(job: Job) -> Reply:
    """The error reply of a job the worker refused or failed before routing it."""
    try:
        job.future.result(timeout=5)
    except BaseException as e:  # noqa: BLE001 - every failure is answered, none is raised into the server
        return Reply.failure(e)
    return Reply.failure(AdaptiveMoEError("the answer ended before it was routed"))
