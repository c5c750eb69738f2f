"""The OpenAI response objects of an answer: ``chat.completion`` and ``text_completion`` bodies, the
server-sent events of a stream (the route first, then one chunk per token), usage and log-probabilities
(with the likeliest alternatives), and the ``adaptive_moe`` object every response carries."""

import json
import time
from typing import Any

from ..integration.attribution import alternative_pieces


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


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 naming the parameter."""
    return APIError(400, message, param=param, code=code)


# -- responses -------------------------------------------------------------------------------------------
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def adaptive_fields(out: Any) -> dict[str, Any]:
    """The ``adaptive_moe`` object of a response: route, confidences, experts, flag, reason, attribution, and
    the expert pool's events while answering (``cache``: hits, misses, evictions, hotswaps)."""
    a = out.attribution
    return {
        "route": out.route, "confidence": out.confidence, "expert_confidence": out.expert_confidence,
        "experts": [{"name": n, "weight": w} for n, w in out.experts], "flagged": out.flagged, "reason": out.reason,
        "attribution": {"sources": a.sources, "strategy": a.strategy, "citations": [dict(c) for c in a.citations],
                        "supported": a.supported},
        "cache": dict(out.cache or {}),
    }  # fmt: skip


def usage_of(out: Any, prompt_tokens: int, tokenizer: Any) -> dict[str, int]:
    """The ``usage`` object: prompt, completion and total tokens."""
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


def finish_reason(out: Any) -> str:
    """The OpenAI finish reason of an answer (``stop`` or ``length``)."""
    return _FINISH.get(getattr(out.signals, "finish_reason", "eos"), "stop")


def chat_response(out: Any, request_id: str, model: str, logprobs: bool, usage: dict[str, int], *,
                  tokenizer: Any = None, top: int = 0) -> dict[str, Any]:  # fmt: skip
    """A ``chat.completion`` object."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": out.text},
                              "finish_reason": finish_reason(out), "logprobs": None}  # fmt: skip
    if logprobs:
        choice["logprobs"] = _chat_logprobs(_token_logprobs(out, tokenizer, top))
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [choice], "usage": usage, "adaptive_moe": adaptive_fields(out)}  # fmt: skip


def completion_response(out: Any, request_id: str, model: str, logprobs: bool, usage: dict[str, int], *,
                        tokenizer: Any = None, top: int = 0) -> dict[str, Any]:  # fmt: skip
    """A ``text_completion`` object."""
    choice: dict[str, Any] = {"index": 0, "text": out.text, "finish_reason": finish_reason(out), "logprobs": None}
    if logprobs:
        choice["logprobs"] = _completion_logprobs(_token_logprobs(out, tokenizer, top))
    return {"id": f"cmpl-{request_id}", "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [choice], "usage": usage, "adaptive_moe": adaptive_fields(out)}  # fmt: skip


class ChunkWriter:
    """The server-sent events of one streamed answer: chunks that share its id, kind and creation time."""

    def __init__(self, request_id: str, model: str, chat: bool) -> None:
        self.model, self.chat, self.created = model, chat, int(time.time())
        self.kind = "chat.completion.chunk" if chat else "text_completion"
        self.ident = f"chatcmpl-{request_id}" if chat else f"cmpl-{request_id}"

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {"id": self.ident, "object": self.kind, "created": self.created, "model": self.model,
                "choices": choices, **extra}  # fmt: skip
        return f"data: {json.dumps(body)}\n\n"

    def chunk(self, delta: Any, finish: str | None = None, lp: Any = None, **extra: Any) -> str:
        """One chunk: ``delta`` (chat: a dict; completions: text), its finish reason and log-probs."""
        key = "delta" if self.chat else "text"
        return self._event([{"index": 0, key: delta, "finish_reason": finish, "logprobs": lp}], **extra)

    def start(self, fields: dict[str, Any]) -> str:
        """The first chunk: the role, and the ``adaptive_moe`` object ``fields``."""
        return self.chunk({"role": "assistant", "content": ""} if self.chat else "", adaptive_moe=fields)

    def content(self, text: str, lp: Any = None) -> str:
        """A chunk of answer text."""
        return self.chunk({"content": text} if self.chat else text, lp=lp)

    def end(self, out: Any, **extra: Any) -> str:
        """The chunk with the answer's finish reason."""
        return self.chunk({} if self.chat else "", finish=finish_reason(out), **extra)

    def usage(self, usage: dict[str, int]) -> str:
        """The usage chunk (no choices)."""
        return self._event([], usage=usage)

    done = "data: [DONE]\n\n"


def stream_events(out: Any, request_id: str, model: str, *, chat: bool, logprobs: bool,
                  usage: dict[str, int] | None, pieces: list[tuple[str, list[tuple[str, float, list]]]]):  # fmt: skip
    """The server-sent events of a streamed answer: the route first, then ``pieces`` (see
    :func:`stream_pieces`), the finish reason, the usage (when asked), ``[DONE]``."""
    writer = ChunkWriter(request_id, model, chat)
    yield writer.start(adaptive_fields(out))
    offset = 0
    for piece, held in pieces:
        lps = None
        if logprobs:
            lps = _chat_logprobs(held) if chat else _completion_logprobs(held, offset)
        offset += len(piece)
        yield writer.content(piece, lp=lps)
    yield writer.end(out)
    if usage is not None:
        yield writer.usage(usage)
    yield writer.done
