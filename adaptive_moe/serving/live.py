"""Tokens of one answer handed from the model's worker thread to the HTTP handler as they are generated.

The worker answers a streamed request alone (:meth:`AdaptiveMoE.answer_streamed`): the route decision
comes first (``on_route``), then each piece of text as the generation produces it (a ``transformers``
streamer that decodes incrementally, so a character split over two tokens waits for the second), then
the end. :meth:`LiveStream.events` turns them into the server-sent events of an OpenAI stream: the route
in the first chunk, one chunk per token, then the finish reason with the whole ``adaptive_moe`` object
(attribution included) and the usage.
"""

from __future__ import annotations

import asyncio
import queue
from typing import Any

__all__ = ["LiveStream"]


def _streamer_base():
    from transformers.generation.streamers import BaseStreamer

    return BaseStreamer


class _PieceStreamer:
    """Receives the token ids ``generate`` produces (the first call is the prompt) and passes on text."""

    def __init__(self, live: LiveStream) -> None:
        self.live = live
        self.prompt_seen = False
        self.ids: list[int] = []
        self.text = ""  # what was sent

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        self.ids.append(int(value.reshape(-1)[0]))  # the first row: a mixture's rows carry the same tokens
        text = self.live.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete character: wait for its next byte
            return
        # the answer's text is stripped: no leading space, and trailing space only once more text follows
        shown = text.lstrip().rstrip()
        if not shown.startswith(self.text):
            return  # decoding changed earlier text (rare): the end of the stream sends the rest
        piece = shown[len(self.text) :]
        self.text = shown
        if piece:
            self.live.put("piece", piece)

    def end(self) -> None:
        self.prompt_seen = False  # another generation pass may follow with its own prompt
        self.ids, self.text = [], ""


class LiveStream:
    """One streamed answer's events, put by the worker thread and read by the handler (thread-safe)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        cls = type("PieceStreamer", (_PieceStreamer, _streamer_base()), {})
        self.streamer = cls(self)

    def put(self, kind: str, value: Any = None) -> None:
        """Queue an event: ``route`` (the decision), ``piece`` (text) or ``end``."""
        self._events.put((kind, value))

    def route(self, decisions: list[Any]) -> None:
        """The ``on_route`` callback: the decision, before any token."""
        self.put("route", decisions[0])

    def finish(self) -> None:
        """The worker is done with this request (answered, refused or failed)."""
        self.put("end")

    def poll(self) -> tuple[str, Any] | None:
        """The next event, or None when there is none yet."""
        try:
            return self._events.get_nowait()
        except queue.Empty:
            return None

    async def next(self) -> tuple[str, Any]:
        """The next event (waits without blocking the event loop)."""
        while (event := self.poll()) is None:
            await asyncio.sleep(0.01)
        return event

    async def events(self, first: Any, future: Any, call: Any, *, tokenizer: Any, prompt_tokens: Any,
                     on_done: Any = None, cancelled: Any = None):  # fmt: skip
        """The server-sent events of ``call``'s answer: ``first`` is the decision already read."""
        from .responses import ChunkWriter, adaptive_fields, stream_pieces, usage_of

        writer = ChunkWriter(call.request_id, call.model, call.chat)
        route = {"route": first.route, "confidence": first.confidence,
                 "experts": [{"name": n, "weight": w} for n, w in first.experts], "reason": first.reason}  # fmt: skip
        streamed: list[str] = []
        try:
            yield writer.start(route)
            while True:
                event, value = await self.next()
                if event == "end":
                    break
                if event == "piece":
                    streamed.append(value)
                    yield writer.content(value)
            out = await asyncio.wrap_future(future)
            sent = "".join(streamed)
            if not sent:  # nothing was generated token by token for this answer (a post-mode base answer)
                for piece, _ in stream_pieces(out, tokenizer):
                    yield writer.content(piece)
            elif out.text.startswith(sent) and len(out.text) > len(sent):
                yield writer.content(out.text[len(sent) :])
            yield writer.end(out, adaptive_moe=adaptive_fields(out))
            if call.options["include_usage"]:
                yield writer.usage(usage_of(out, int(prompt_tokens() or 0), tokenizer))
            yield writer.done
            if on_done is not None:
                on_done(out)
        finally:  # the client went away mid-stream (or the stream ended): stop generating for nobody
            if cancelled is not None and not future.done():
                cancelled.set()
