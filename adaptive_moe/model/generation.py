"""Batched generation that returns, from ONE ``generate`` pass per batch, every signal the router needs:
text, token ids, chosen-token log-probs, per-step entropies and the prompt's final hidden state.

Log-probs and entropies come from the *raw* logits (``output_logits=True``): in transformers v5
``output_scores`` are the processed scores (-inf outside top-p / top-k), which would make entropies
and log-probs depend on the sampling settings rather than on the model.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Union

import torch

from ..config import GenerationConfig, ModelConfig
from ..errors import ConfigError, InvalidInputError
from .constraints import QuoteConstraint

logger = logging.getLogger(__name__)

Message = dict[str, str]
Prompt = Union[str, list[Message]]  # noqa: UP007 - a runtime alias used in annotations on 3.10+
_ROLES = ("system", "user", "assistant")


class LanguageModel(Protocol):
    """What generation needs of a base model. :class:`~adaptive_moe.model.loading.BaseModel` is the one the
    loader builds; generation works on anything shaped like it (loading builds the object, this module works
    on it, so neither imports the other's internals)."""

    model: Any
    tokenizer: Any
    config: ModelConfig
    lock: Any

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""

    @property
    def context_length(self) -> int | None:
        """The most tokens the model reads at once, when it says."""

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer has a chat template."""


#: alternatives kept per generated token (the OpenAI API's ``top_logprobs`` goes up to 20)
TOP_ALTERNATIVES = 20


@dataclass
class GenerationSignals:
    """What one generation pass yields for one prompt.

    Attributes:
        prompt: the prompt as given (a string or a list of chat messages).
        text: the generated answer, special tokens and any stop string removed.
        token_ids: generated token ids, without the end-of-sequence token.
        token_logprobs: ``(n,)`` float32, log-probability of each chosen token under the raw model.
        token_entropies: ``(n,)`` float32, entropy (nats) of the model's next-token distribution at each step.
        prompt_hidden: ``(hidden,)`` float32, last layer's (normalised) hidden state at the prompt's final
            token: the state from which the first answer token is predicted.
        prompt_hidden_mean: ``(hidden,)`` float32, the same layer mean-pooled over the prompt's tokens.
        query_hidden: ``(hidden,)`` float32, the same layer mean-pooled over the tokens of the user's
            (last) message only, without the chat template around it: what the query is about.
        finish_reason: ``"eos"``, ``"stop"`` (a stop string), ``"length"`` (max_new_tokens reached) or
            ``"cancelled"`` (stopped early inside :func:`cancellable`).
        prompt_tokens: prompt length in tokens after templating (and truncation).
        truncated: the prompt was cut from the left to fit the context.
        citations: the passages an expert that reads its documents answered from (source, lines, score,
            text, cite), best first; ``None`` for everything else.
        supported: whether those passages back the answer's words (``None`` without citations).
        top_ids: ``(n, TOP_ALTERNATIVES)`` int64, the most likely tokens at each step under the raw model,
            best first (``None`` when the answer was not generated token by token, as a mixture's).
        top_logprobs: ``(n, TOP_ALTERNATIVES)`` float32, their log-probabilities.
    """

    prompt: Prompt
    text: str
    token_ids: list[int]
    token_logprobs: torch.Tensor
    token_entropies: torch.Tensor
    prompt_hidden: torch.Tensor
    prompt_hidden_mean: torch.Tensor
    finish_reason: str
    prompt_tokens: int
    truncated: bool = False
    query_hidden: torch.Tensor | None = None
    citations: list[dict[str, Any]] | None = None
    supported: bool | None = None
    top_ids: torch.Tensor | None = None
    top_logprobs: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        """Number of generated tokens."""
        return len(self.token_ids)

    def to_dict(self, hidden: bool = False) -> dict[str, Any]:
        """JSON-friendly dict; hidden states are included only when ``hidden``."""
        out = {
            "prompt": self.prompt,
            "text": self.text,
            "token_ids": list(self.token_ids),
            "token_logprobs": self.token_logprobs.tolist(),
            "token_entropies": self.token_entropies.tolist(),
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "truncated": self.truncated,
        }
        if self.citations is not None:
            out["citations"] = [dict(c) for c in self.citations]
            out["supported"] = self.supported
        if hidden:
            out["prompt_hidden"] = self.prompt_hidden.tolist()
            out["prompt_hidden_mean"] = self.prompt_hidden_mean.tolist()
            if self.query_hidden is not None:
                out["query_hidden"] = self.query_hidden.tolist()
        return out


# -- prompts --------------------------------------------------------------------------------------
def normalize_prompts(prompts: Any) -> list[Prompt]:
    """A string, one chat conversation, or a list of either -> a non-empty list of validated prompts."""
    if isinstance(prompts, str) or _is_conversation(prompts):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or isinstance(prompts, (bytes, bytearray)):
        raise InvalidInputError(
            f"prompts must be a string, a chat conversation or a list of those; got {type(prompts).__name__}"
        )
    if len(prompts) == 0:
        raise InvalidInputError("prompts is empty; give at least one prompt")
    return [_check_prompt(p, i) for i, p in enumerate(prompts)]


def _is_conversation(obj: Any) -> bool:
    return isinstance(obj, (list, tuple)) and len(obj) > 0 and all(isinstance(m, dict) for m in obj)


def _check_prompt(prompt: Any, index: int) -> Prompt:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError(f"prompt {index} is empty or whitespace; give some text")
        return prompt
    if _is_conversation(prompt):
        for j, message in enumerate(prompt):
            role, content = message.get("role"), message.get("content")
            if role not in _ROLES:
                raise InvalidInputError(
                    f"prompt {index}, message {j}: role {role!r} is not allowed; allowed: {', '.join(_ROLES)}"
                )
            if not isinstance(content, str) or not content.strip():
                raise InvalidInputError(f"prompt {index}, message {j}: content must be non-empty text")
        if prompt[-1]["role"] == "assistant":
            raise InvalidInputError(f"prompt {index}: the last message is the assistant's; end with a user message")
        return [dict(m) for m in prompt]
    raise InvalidInputError(
        f"prompt {index} has type {type(prompt).__name__}; allowed: a string or a list of "
        "{'role': ..., 'content': ...} messages"
    )


def render_prompt(base: LanguageModel, prompt: Prompt, generation: GenerationConfig) -> str:
    """The prompt as the model sees it: through the chat template when the model has one."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if generation.system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": generation.system_prompt}, *messages]
    if generation.use_chat_template and base.has_chat_template:
        from jinja2 import TemplateError

        try:
            return base.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except TemplateError as e:
            raise InvalidInputError(f"the model's chat template rejected the conversation: {e}") from None
    if isinstance(prompt, str) and not generation.system_prompt:
        return prompt
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def query_text(prompt: Prompt) -> str:
    """The user's words of a validated prompt: the string, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else prompt[-1]["content"]


def _query_token_mask(tok, text: str, query: str, n_ids: int) -> list[int]:
    """1 for the tokens of ``text`` that lie inside the last occurrence of ``query`` (the user's words
    inside the rendered prompt), else 0; all ones when that cannot be told (slow tokenizer, rewritten text)."""
    start = text.rfind(query.strip())
    if start < 0:
        return [1] * n_ids
    end = start + len(query.strip())
    try:
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError):
        return [1] * n_ids
    mask = [int(a < end and b > start) for a, b in offsets]
    mask = ([0] * (n_ids - len(mask)) + mask)[-n_ids:]  # special tokens added in front, if any
    return mask if any(mask) else [1] * n_ids


def encode_prompts(
    base: LanguageModel, prompts: list[Prompt], generation: GenerationConfig, *, query_mask: bool = False
) -> tuple[dict[str, torch.Tensor], list[bool]]:
    """Tokenize, truncate from the left per config, and left-pad into one batch. With ``query_mask``
    the batch also holds ``"query_mask"``: 1 on the tokens of each prompt's (last) user message."""
    tok = base.tokenizer
    limit = base.config.max_input_tokens
    if base.context_length is not None:
        room = base.context_length - generation.max_new_tokens
        if room <= 0:
            raise InvalidInputError(
                f"generation.max_new_tokens={generation.max_new_tokens} leaves no room for a prompt in the "
                f"model's context of {base.context_length} tokens; allowed: fewer than {base.context_length}"
            )
        limit = room if limit is None else min(limit, room)
    templated = generation.use_chat_template and base.has_chat_template
    rows, truncated, masks = [], [], []
    for i, prompt in enumerate(prompts):
        text = render_prompt(base, prompt, generation)
        ids = tok(text, add_special_tokens=not templated)["input_ids"]
        if query_mask:
            masks.append(_query_token_mask(tok, text, query_text(prompt), len(ids)))
        cut = limit is not None and len(ids) > limit
        if cut:
            if base.config.truncation == "error":
                raise InvalidInputError(
                    f"prompt {i} is {len(ids)} tokens; the limit is {limit} (model.max_input_tokens or the "
                    "context minus max_new_tokens); shorten it or set model.truncation: left"
                )
            logger.warning("prompt %d is %d tokens; keeping its last %d (model.truncation=left)", i, len(ids), limit)
            ids = ids[-limit:]
            if query_mask:
                masks[-1] = masks[-1][-limit:] if any(masks[-1][-limit:]) else [1] * limit
        rows.append(ids)
        truncated.append(cut)
    batch = tok.pad({"input_ids": rows}, padding=True, return_tensors="pt", padding_side="left")
    if query_mask:
        width = batch["input_ids"].shape[1]
        batch["query_mask"] = torch.tensor([[0] * (width - len(m)) + m for m in masks])
    return {k: v.to(base.device) for k, v in batch.items()}, truncated


# -- generation -----------------------------------------------------------------------------------
def build_generate_kwargs(base: LanguageModel, generation: GenerationConfig) -> dict[str, Any]:
    """Keyword arguments for ``model.generate`` from our config (ours override the model's defaults)."""
    gen = base.model.generation_config
    kwargs: dict[str, Any] = {
        "max_new_tokens": generation.max_new_tokens,
        "do_sample": generation.do_sample,
        "pad_token_id": base.tokenizer.pad_token_id,
        "eos_token_id": gen.eos_token_id,
        "repetition_penalty": generation.repetition_penalty,
    }
    if generation.do_sample:
        kwargs.update(temperature=generation.temperature, top_p=generation.top_p, top_k=generation.top_k)
    else:  # greedy: neutralise sampling defaults a model's generation_config may carry
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if generation.stop:
        kwargs.update(stop_strings=list(generation.stop), tokenizer=base.tokenizer)
    return kwargs


def _decoder(model):
    return model.get_decoder() if hasattr(model, "get_decoder") else model.base_model


@contextlib.contextmanager
def capture_prompt_states(model):
    """Capture the decoder's last hidden states during the prefill forward (the first call only).

    Hooks the decoder stack (``model.get_decoder()``), whose output is the final, normalised hidden
    state of every prompt position: ``captured["states"]`` is ``(batch, prompt_len, hidden)``.
    """
    decoder = _decoder(model)
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _args, output):
        if "states" not in captured:
            states = output[0] if isinstance(output, tuple) else output.last_hidden_state
            captured["states"] = states.detach()

    handle = decoder.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


class _EarlyExit(Exception):
    """Raised by the hook on the last decoder layer a shallow prompt pass needs: the rest never runs."""


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder's stack of transformer blocks (``layers`` in Llama-like models, ``h`` in GPT-2)."""
    decoder = _decoder(model)
    for attr in ("layers", "h", "blocks"):
        stack = getattr(decoder, attr, None)
        if isinstance(stack, torch.nn.ModuleList) and len(stack):
            return stack
    raise ConfigError(
        f"router.pre_layers: cannot find the decoder layers of {type(decoder).__name__} (looked for .layers, .h "
        "and .blocks); leave pre_layers unset to use the whole model"
    )


@contextlib.contextmanager
def capture_layer_states(model, layers: int):
    """Capture the output of decoder layer ``layers`` (1-based) and stop the forward pass there.

    ``captured["states"]`` is ``(batch, prompt_len, hidden)``, the residual stream after that block
    (before the final norm). The call that runs the model must catch :class:`_EarlyExit`.
    """
    stack = decoder_layers(model)
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _args, output):
        captured["states"] = (output[0] if isinstance(output, tuple) else output).detach()
        raise _EarlyExit

    handle = stack[layers - 1].register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _seeded(seed: int | None, device: torch.device):
    if seed is None:
        return contextlib.nullcontext()
    devices = [device] if device.type == "cuda" else []
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=devices))
    torch.manual_seed(seed)
    return stack


def generate_with_signals(
    base: LanguageModel,
    prompts: Any,
    generation: GenerationConfig | None = None,
    *,
    generate_fn: Any = None,
    logits_processor: Any = None,
    streamer: Any = None,
    quotes: list[list[str]] | None = None,
    **overrides: Any,
) -> list[GenerationSignals]:
    """See :meth:`BaseModel.generate_with_signals`.

    For the integrators: ``generate_fn`` replaces ``base.model.generate`` (say, a PEFT model's
    ``generate`` with ``adapter_names=`` for a mixed batch; it gets the same keyword arguments),
    ``logits_processor`` is a list of extra ``transformers`` logits processors, and ``streamer`` a
    ``transformers`` streamer (one batch only). The signals are read from the raw logits either way.
    ``quotes`` gives each prompt the texts its answer may only quote (a
    :class:`~adaptive_moe.model.constraints.QuoteConstraint`; an empty list leaves that prompt free).
    """
    generation = generation or GenerationConfig()
    if overrides:
        generation = generation.replace(**overrides)
    else:
        generation.validate()
    items = normalize_prompts(prompts)
    if streamer is not None and len(items) > generation.batch_size:
        raise InvalidInputError("streaming generates one batch; give at most generation.batch_size prompts")
    if quotes is not None and len(quotes) != len(items):
        raise InvalidInputError(f"quotes: one list of texts per prompt ({len(items)}), got {len(quotes)}")
    out: list[GenerationSignals] = []
    eos = base.model.generation_config.eos_token_id  # what build_generate_kwargs passes as eos_token_id
    for start in range(0, len(items), generation.batch_size):
        chunk = items[start : start + generation.batch_size]
        processors = list(logits_processor or [])
        if quotes is not None:
            processors.append(QuoteConstraint(base.tokenizer, quotes[start : start + len(chunk)], eos))
        out.extend(_generate_batch(base, chunk, generation, generate_fn, processors or None, streamer))
    return out


_STREAMER: contextvars.ContextVar[Any] = contextvars.ContextVar("adaptive_moe_streamer", default=None)


@contextlib.contextmanager
def streaming(streamer: Any):
    """Within the block, generation in this thread (or context) feeds ``streamer`` (a ``transformers``
    streamer), however deep the call that generates: the facade streams an expert's answer this way
    without every :class:`~adaptive_moe.experts.Expert` having to pass a streamer along."""
    token = _STREAMER.set(streamer)
    try:
        yield streamer
    finally:
        _STREAMER.reset(token)


def current_streamer() -> Any:
    """The streamer :func:`streaming` set for this thread (or context), or None."""
    return _STREAMER.get()


def replay(streamer: Any, token_ids: Sequence[int]) -> None:
    """Feed ``streamer`` an answer generated without it, as ``generate`` would have: a (placeholder) prompt
    first, then each token, then the end. For an answer chosen among several generated together."""
    streamer.put(torch.zeros((1, 1), dtype=torch.long))  # generate hands over the prompt first
    for token in token_ids:
        streamer.put(torch.tensor([int(token)]))
    streamer.end()


_CANCELLED: contextvars.ContextVar[Any] = contextvars.ContextVar("adaptive_moe_cancelled", default=None)


@contextlib.contextmanager
def cancellable(cancelled: Any):
    """Within the block, generation in this thread (or context) stops at the next token once
    ``cancelled()`` returns true: its answers end there with ``finish_reason`` ``"cancelled"``. The
    server uses it to stop a batch whose clients have all gone away."""
    token = _CANCELLED.set(cancelled)
    try:
        yield cancelled
    finally:
        _CANCELLED.reset(token)


_ADAPTER_ROWS: contextvars.ContextVar[str | None] = contextvars.ContextVar("adaptive_moe_adapter_rows", default=None)


@contextlib.contextmanager
def adapter_rows(slot: str | None):
    """Within the block, batches this thread (or context) hands the decoding engine run with adapter
    ``slot`` (:mod:`adaptive_moe.model.engine`): how an expert is active for its own rows only, while
    other threads' rows in the same forward run the base or their experts. Without an engine on the
    base it changes nothing (``AdapterHost.activated`` switches the model's adapters then)."""
    token = _ADAPTER_ROWS.set(slot)
    try:
        yield slot
    finally:
        _ADAPTER_ROWS.reset(token)


def _engine_for(base: LanguageModel, generate_fn: Any) -> Any:
    """The decoding engine that answers this batch, or None when ``generate`` does: no engine on the base,
    a caller's own ``generate_fn`` (a mixed-batch integrator), or an adapter activation that switched the
    model itself (several slots summed, or a merged slot), whose lock this thread then keeps."""
    engine = getattr(base, "engine", None)
    if engine is None or generate_fn is not None:
        return None
    host = getattr(base, "adapter_host", None)
    if host is not None and host.live_slots:
        return None
    return engine


class _StopWhenCancelled:
    """A ``transformers`` stopping criterion: every row is done once ``cancelled()`` is true."""

    def __init__(self, cancelled: Any) -> None:
        self.cancelled = cancelled
        self.fired = False

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        self.fired = self.fired or bool(self.cancelled())
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def _generate_batch(
    base: LanguageModel,
    prompts: list[Prompt],
    generation: GenerationConfig,
    generate_fn: Any = None,
    logits_processor: Any = None,
    streamer: Any = None,
) -> list[GenerationSignals]:
    batch, truncated = encode_prompts(base, prompts, generation, query_mask=True)
    query_mask = batch.pop("query_mask")
    kwargs = build_generate_kwargs(base, generation)
    if logits_processor:
        from transformers import LogitsProcessorList

        kwargs["logits_processor"] = LogitsProcessorList(list(logits_processor))
    streamer = streamer if streamer is not None else _STREAMER.get()
    if streamer is not None:
        kwargs["streamer"] = streamer
    stop_check = None
    if _CANCELLED.get() is not None:
        from transformers import StoppingCriteriaList

        stop_check = _StopWhenCancelled(_CANCELLED.get())
        kwargs["stopping_criteria"] = StoppingCriteriaList([stop_check])
    engine = _engine_for(base, generate_fn)
    if engine is not None:
        generator = None
        if generation.seed is not None and generation.do_sample:
            generator = torch.Generator(device=base.device).manual_seed(generation.seed)
        result = engine.generate(batch["input_ids"], batch["attention_mask"], kwargs, slot=_ADAPTER_ROWS.get(),
                                 generator=generator)  # fmt: skip
        captured = {"states": result.states}
    else:
        run = generate_fn or base.model.generate
        with capture_prompt_states(base.model) as captured, _seeded(generation.seed, base.device):
            result = run(**batch, **kwargs, return_dict_in_generate=True, output_logits=True)

    prompt_len = batch["input_ids"].shape[1]
    new_tokens = result.sequences[:, prompt_len:]  # (B, N)
    logits = torch.stack(result.logits, dim=0) if result.logits else None  # (N, B, V)
    states = captured["states"]  # (B, P, H)
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)  # (B, P, 1)
    hidden_last = states[:, -1, :].float().cpu()  # left padding: the last position is real
    hidden_mean = _masked_mean(states, mask)
    hidden_query = _masked_mean(states, query_mask.unsqueeze(-1).to(states.dtype))

    eos = kwargs["eos_token_id"]
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    signals = []
    for row, prompt in enumerate(prompts):
        ids = new_tokens[row].tolist()
        n, reason = len(ids), "length"
        for t, tok_id in enumerate(ids):
            if tok_id in eos_ids:
                n, reason = t, "eos"
                break
        ids = ids[:n]
        text = base.tokenizer.decode(ids, skip_special_tokens=True)
        if generation.stop:
            ids, text, stopped = _cut_at_stop(base.tokenizer, ids, text, generation.stop)
            n, reason = len(ids), "stop" if stopped else reason
        if stop_check is not None and stop_check.fired and reason == "length" and n < generation.max_new_tokens:
            reason = "cancelled"
        top = None
        if logits is not None and n:
            logp = torch.log_softmax(logits[:n, row, :].float(), dim=-1)  # (n, V)
            chosen = logp.gather(-1, torch.tensor(ids, device=logp.device).unsqueeze(-1)).squeeze(-1)
            entropy = -(logp.exp() * logp).sum(-1)
            top = torch.topk(logp, min(TOP_ALTERNATIVES, logp.shape[-1]), dim=-1)
        else:
            chosen = entropy = torch.zeros(0)
        signals.append(
            GenerationSignals(
                prompt=prompt,
                text=text.strip(),
                token_ids=ids,
                token_logprobs=chosen.float().cpu(),
                token_entropies=entropy.float().cpu(),
                prompt_hidden=hidden_last[row],
                prompt_hidden_mean=hidden_mean[row],
                finish_reason=reason,
                prompt_tokens=int(batch["attention_mask"][row].sum()),
                truncated=truncated[row],
                query_hidden=hidden_query[row],
                top_ids=None if top is None else top.indices.cpu(),
                top_logprobs=None if top is None else top.values.float().cpu(),
            )
        )
    return signals


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((states * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu()


@dataclass
class PromptStates:
    """The prompt's hidden states without generating: what a ``pre`` routing decision sees.

    Attributes: ``prompt``; ``prompt_hidden`` (last token), ``prompt_hidden_mean`` (all tokens) and
    ``query_hidden`` (the user's tokens), each ``(hidden,)`` float32, exactly as in
    :class:`GenerationSignals`; ``prompt_tokens``.
    """

    prompt: Prompt
    prompt_hidden: torch.Tensor
    prompt_hidden_mean: torch.Tensor
    query_hidden: torch.Tensor
    prompt_tokens: int


@torch.inference_mode()
def encode_prompt_states(
    base: LanguageModel,
    prompts: Any,
    generation: GenerationConfig | None = None,
    *,
    layers: int | None = None,
    **overrides: Any,
) -> list[PromptStates]:
    """One forward pass over the prompts (the prefill of generation, no new tokens): their hidden
    states, equal to those :func:`generate_with_signals` reports.

    ``layers``: run only the first ``layers`` decoder blocks and read the states after the last of them
    (a shallow, cheaper pass for ``pre`` routing: the remaining blocks and the final norm never run).
    ``None`` or the model's depth: the whole decoder, final norm included.
    """
    if layers is not None:
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise InvalidInputError(f"layers must be a positive whole number or None, got {layers!r}")
        if layers >= len(decoder_layers(base.model)):
            layers = None
    generation = generation or GenerationConfig()
    generation = generation.replace(**overrides) if overrides else generation
    items = normalize_prompts(prompts)
    out: list[PromptStates] = []
    for start in range(0, len(items), generation.batch_size):
        chunk = items[start : start + generation.batch_size]
        batch, _ = encode_prompts(base, chunk, generation, query_mask=True)
        query_mask = batch.pop("query_mask")
        # positions as generate() makes them for a left-padded batch, so the states are the same
        positions = (batch["attention_mask"].long().cumsum(-1) - 1).masked_fill(batch["attention_mask"] == 0, 0)
        batch = {**batch, "position_ids": positions}
        capture = capture_prompt_states if layers is None else functools.partial(capture_layer_states, layers=layers)
        with base.lock, capture(base.model) as captured, contextlib.suppress(_EarlyExit):
            decoder = base.model.get_decoder() if hasattr(base.model, "get_decoder") else None
            if decoder is not None:
                decoder(**batch)
            else:
                base.model(**batch)
        states = captured["states"]
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        last, mean = states[:, -1, :].float().cpu(), _masked_mean(states, mask)
        query = _masked_mean(states, query_mask.unsqueeze(-1).to(states.dtype))
        for row, prompt in enumerate(chunk):
            tokens = int(batch["attention_mask"][row].sum())
            out.append(PromptStates(prompt, last[row], mean[row], query[row], tokens))
    return out


def _cut_at_stop(tokenizer, ids: list[int], text: str, stops: list[str]) -> tuple[list[int], str, bool]:
    """Cut the answer before the first stop string: the text at the stop, and the tokens to those that
    lie wholly before it, so that the signals score exactly the text that is returned."""
    cut = min((i for s in stops if (i := text.find(s)) >= 0), default=-1)
    if cut < 0:
        return ids, text, False
    keep = 0
    while keep < len(ids) and len(tokenizer.decode(ids[: keep + 1], skip_special_tokens=True)) <= cut:
        keep += 1
    return ids[:keep], text[:cut], True
