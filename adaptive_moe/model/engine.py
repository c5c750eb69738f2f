"""Continuous batching: one decoding loop that every generating thread shares.

With a :class:`DecodeEngine` on a base (``base.engine``, what the HTTP server's ``serve.scheduler:
continuous`` starts), :func:`~adaptive_moe.model.generation.generate_with_signals` does not call
``model.generate`` itself: it hands its encoded batch to the engine and waits, the model's lock released
while it waits, so other threads route, retrieve and submit meanwhile. The engine's thread runs the
model one token at a time for every sequence it holds: a new batch is prefilled and joins the running
ones at the next step (its key/value cache left-padded into theirs), a finished batch leaves at once, so
a short answer never waits for a long one (the static batcher's weakness) and a new request never waits
for a batch to end. Each row carries its adapter: a LoRA expert's rows run in the same forward as the
base's and other experts' (PEFT's mixed-batch inference, ``adapter_names=``), which is why an expert
activated with the engine on (:meth:`~adaptive_moe.experts.host.AdapterHost.activated`) marks the
thread's rows with its slot (:func:`~adaptive_moe.model.generation.adapter_rows`) instead of switching
the model's shared adapter state.

Each step reproduces ``generate``'s own decoding for every batch: the same logits processors
(repetition penalty, the caller's extra processors, then temperature, top-k, top-p when sampling), the
same stopping criteria (end of sequence, ``max_new_tokens``, stop strings, a cancelled request), raw
logits kept per token, finished rows fed the pad token until their batch ends, a streamer fed the prompt
then each token. A seeded batch samples from its own generator, so its answer does not depend on what
else is running. Rows padded into a wider batch can differ from the same rows alone in the last bits of
their logits (as any batching does); ``benchmarks/bench_serve.py`` counts such answers.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from ..errors import AdaptiveMoEError, ModelBusyError

logger = logging.getLogger(__name__)

__all__ = ["DecodeEngine", "EngineUnsupportedError"]

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch

# generation-config fields whose processors the engine does not reproduce: a model that sets one is
# answered by ``generate`` itself (the engine refuses to start)
_UNSUPPORTED_GENERATION = {
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "min_p": (None,),
    "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "top_h": (None,),
    "encoder_repetition_penalty": (None, 1.0),
    "exponential_decay_length_penalty": (None,),
    "renormalize_logits": (None, False),
    "watermarking_config": (None,),
}


class EngineUnsupportedError(AdaptiveMoEError, RuntimeError):
    """The model cannot be decoded by the engine (its cache or generation settings); ``generate`` answers."""


@dataclass(eq=False)
class _Batch:
    """One submitted batch: its inputs, decoding settings and, while it runs, its state."""

    input_ids: torch.Tensor  # (b, P), left-padded
    attention_mask: torch.Tensor  # (b, P)
    slot: str | None  # the adapter its rows run with (None: the base)
    max_new_tokens: int
    eos: torch.Tensor  # end-of-sequence ids
    pad: int
    do_sample: bool
    processors: Any  # a LogitsProcessorList
    stopping: Any  # a StoppingCriteriaList (eos and length are checked here)
    streamer: Any = None
    generator: torch.Generator | None = None
    future: Future = field(default_factory=Future)
    sequences: torch.Tensor | None = None  # (b, P + generated)
    logits: list[torch.Tensor] = field(default_factory=list)
    states: torch.Tensor | None = None
    unfinished: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return int(self.input_ids.shape[0])


class DecodeEngine:
    """The shared decoding loop of one base model (see the module docstring).

    Args:
        base: the :class:`~adaptive_moe.model.loading.BaseModel` it decodes for.
        max_rows: most sequences decoded together; a batch that would pass it waits for room (a batch
            larger than it runs alone).
        transpose_head: compute the output projection as ``W @ x.T`` (see :meth:`_head`; default: on CPU).
    """

    def __init__(self, base: Any, max_rows: int = 32, *, transpose_head: bool | None = None) -> None:
        if max_rows < 1:
            raise AdaptiveMoEError(f"max_rows={max_rows}: give at least 1")
        self.base, self.max_rows = base, max_rows
        self.transpose_head = base.device.type == "cpu" if transpose_head is None else transpose_head
        self._check_supported()
        self._pending: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self._waiting: list[_Batch] = []
        self._running: list[_Batch] = []
        self._admitting: list[_Batch] = []  # taken from the waiting ones, being prefilled
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # (rows, T) over the cache and the last token
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._done = threading.Condition(base.lock)  # waiters release the model's lock while they wait
        self.steps = 0  # decoding forwards run
        self.rows_decoded = 0  # sequence-steps decoded (rows_decoded / steps: the mean rows per forward)
        self.batches = 0  # batches answered
        self.mixed_steps = 0  # decoding forwards whose rows ran more than one adapter (the base counts as one)
        self.min_prefix = 16  # shortest shared prompt prefix worth caching (0: no prefix cache)
        self.prefix_builds = 0  # prefixes computed
        self._prefix_ids: torch.Tensor | None = None
        self._prefix_states: torch.Tensor | None = None
        self._prefix_layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._previous: torch.Tensor | None = None
        self.yield_s = 0.05  # most time between steps the engine waits for threads that want the model's lock
        self.on_step: Any = None  # called with each decoding forward's rows and seconds (metrics), optional
        self._thread = threading.Thread(target=self._loop, name="adaptive_moe-decode", daemon=True)
        self._thread.start()

    # -- the callers' side ---------------------------------------------------------------------------
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, kwargs: dict[str, Any], *,
                 slot: str | None = None, generator: torch.Generator | None = None) -> SimpleNamespace:  # fmt: skip
        """Decode one left-padded batch with ``model.generate``'s keyword arguments ``kwargs`` (as
        :func:`~adaptive_moe.model.generation.build_generate_kwargs` makes them, plus ``logits_processor``,
        ``stopping_criteria`` and ``streamer``), its rows with adapter ``slot``. Blocks until the batch is
        done, the model's lock released meanwhile. Returns ``sequences`` (prompt and new tokens),
        ``logits`` (one raw ``(b, vocab)`` tensor per step) and ``states`` (the prompt's last hidden states)."""
        if self._stop.is_set():
            raise ModelBusyError("the decoding engine is stopped")
        # rows whose decoding is independent (no caller's processors, which may keep per-row state, no seeded
        # generator shared by the rows, no streamer fed the whole batch) run as batches of one: each leaves
        # as soon as it ends
        alone = input_ids.shape[0] > 1 and generator is None and not (kwargs.get("logits_processor")
                                                                      or kwargs.get("streamer"))  # fmt: skip
        parts = [(input_ids[r : r + 1], attention_mask[r : r + 1]) for r in range(input_ids.shape[0])] if alone \
            else [(input_ids, attention_mask)]  # fmt: skip
        batches = [self._batch(ids, mask, kwargs, slot, generator) for ids, mask in parts]
        for batch in batches:
            self._pending.put(batch)
        self._wake.set()
        with self._done:  # takes the (re-entrant) model lock; wait releases every level of it while waiting
            while not all(b.future.done() for b in batches):
                self._done.wait(1.0)
                if not self._thread.is_alive() and not all(b.future.done() for b in batches):
                    raise ModelBusyError("the decoding engine stopped before answering")
        results = [b.future.result() for b in batches]
        return results[0] if len(results) == 1 else _stacked(results, batches[0].pad)

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is running and waiting, then stop the loop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the loop is running."""
        return self._thread.is_alive()

    @property
    def running_rows(self) -> int:
        """Sequences being decoded now."""
        return sum(b.rows for b in self._running)

    def _batch(self, input_ids, attention_mask, kwargs, slot, generator) -> _Batch:
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            StoppingCriteriaList,
            StopStringCriteria,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        processors = LogitsProcessorList()
        penalty = kwargs.get("repetition_penalty")
        if penalty is not None and penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(penalty))
        processors.extend(kwargs.get("logits_processor") or [])
        do_sample = bool(kwargs.get("do_sample"))
        if do_sample:  # generate's order: the caller's processors, then the warpers
            if kwargs.get("temperature") not in (None, 1.0):
                processors.append(TemperatureLogitsWarper(kwargs["temperature"]))
            if kwargs.get("top_k") not in (None, 0):
                processors.append(TopKLogitsWarper(top_k=kwargs["top_k"]))
            if kwargs.get("top_p") is not None and kwargs["top_p"] < 1.0:
                processors.append(TopPLogitsWarper(top_p=kwargs["top_p"]))
        stopping = StoppingCriteriaList(list(kwargs.get("stopping_criteria") or []))
        if kwargs.get("stop_strings"):
            stopping.append(StopStringCriteria(kwargs["tokenizer"], kwargs["stop_strings"]))
        eos = kwargs.get("eos_token_id")
        eos = eos if isinstance(eos, list) else [] if eos is None else [eos]
        pad = kwargs.get("pad_token_id")
        pad = eos[0] if pad is None and eos else 0 if pad is None else pad
        device = input_ids.device
        return _Batch(input_ids, attention_mask, slot, int(kwargs["max_new_tokens"]),
                      torch.tensor(eos, dtype=torch.long, device=device), int(pad), do_sample, processors, stopping,
                      streamer=kwargs.get("streamer"), generator=generator)  # fmt: skip

    # -- the loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            while True:
                try:
                    self._waiting.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            if not self._waiting and not self._running:
                if self._stop.is_set():
                    return
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            with self._done:
                try:
                    self._admit()
                    if self._running:
                        self._step()
                except BaseException as e:
                    logger.exception("the decoding engine failed a step")
                    for b in self._running + self._waiting + self._admitting:
                        if not b.future.done():
                            b.future.set_exception(e)
                    self._running, self._waiting, self._admitting, self._cache, self._mask = [], [], [], None, None
                self._done.notify_all()
            self._yield_lock()

    def _yield_lock(self) -> None:
        """Between steps: let the threads waiting for the model's lock (answers to finish, new requests to
        route and submit) have it before the next step; at most ``yield_s``, so the decoding goes on."""
        lock = self.base.lock
        deadline = time.perf_counter() + self.yield_s
        while getattr(lock, "waiting", 0) and time.perf_counter() < deadline:
            time.sleep(0.0002)

    def _admit(self) -> None:
        """Prefill the waiting batches there is room for, together; they join the running ones."""
        taken, rows = [], self.running_rows
        while self._waiting:
            batch = self._waiting[0]
            if (self._running or taken) and rows + batch.rows > self.max_rows:
                break
            taken.append(self._waiting.pop(0))
            rows += batch.rows
        if taken:
            self._admitting = taken
            self._prefill(taken)
            self._admitting = []

    @torch.inference_mode()
    def _prefill(self, batches: list[_Batch]) -> None:
        """One forward over the prompts of ``batches``, their first tokens chosen; the batches not done yet
        join the running ones. A base row whose prompt starts with the cached prefix (see :meth:`_prefix`)
        feeds only the rest: its cache starts as the prefix's keys and values."""
        from .generation import capture_prompt_states

        prompts = [(b, r, b.input_ids[r][b.attention_mask[r].bool()]) for b in batches for r in range(b.rows)]
        for b, _, real in prompts:
            if b.slot is None:
                self._learn_prefix(real)
        rows = [(b, r, real, self._covered(real) if b.slot is None else 0) for b, r, real in prompts]
        for b in batches:
            if b.streamer is not None:
                b.streamer.put(b.input_ids.cpu())
        pmax = max(p for *_, p in rows)
        smax = max(len(real) - p for _, _, real, p in rows)
        device = batches[0].input_ids.device
        ids = torch.stack([_left_pad(real[p:][None], smax, value=batches[0].pad)[0] for _, _, real, p in rows])
        ones = torch.ones(1, smax + pmax, dtype=torch.long, device=device)
        suffix_mask = torch.cat([_left_pad(ones[:, : len(real) - p], smax) for _, _, real, p in rows])
        prefix_mask = torch.cat([_left_pad(ones[:, :p], pmax) for *_, p in rows])
        lengths = torch.tensor([p for *_, p in rows], device=device)[:, None]
        positions = lengths + suffix_mask.cumsum(-1) - 1
        positions.masked_fill_(suffix_mask == 0, 1)
        mask = torch.cat([prefix_mask, suffix_mask], dim=1)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "use_cache": True}
        if pmax:
            inputs[self._cache_arg] = self._prefix_cache([p for *_, p in rows], pmax)
        slots = [b.slot for b, *_ in rows]
        with capture_prompt_states(self.base.model) as captured:
            out = self._forward(slots, **inputs, **self._last_logits)
        cache = _cache_of(out)
        _check_cache(cache)
        states = captured["states"]  # (rows, smax, hidden): the fed positions only
        for i, (b, r, real, p) in enumerate(rows):
            if b.states is None:
                b.states = states.new_zeros(b.rows, b.input_ids.shape[1], states.shape[-1])
            fed = states[i, smax - (len(real) - p) :]
            b.states[r, b.attention_mask[r].bool()] = torch.cat([self._prefix_states[:p], fed]) if p else fed
        keep, start, joining = [], 0, []
        for b in batches:
            b.sequences = b.input_ids
            b.unfinished = torch.ones(b.rows, dtype=torch.bool, device=device)
            if not self._take(b, out.logits[start : start + b.rows, -1]):
                keep.extend(range(start, start + b.rows))
                joining.append(b)
            start += b.rows
        if not joining:
            return
        if len(keep) < start:
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask = mask[index]
        self._join(joining, cache, mask)

    def _covered(self, real: torch.Tensor) -> int:
        """How many leading tokens of the prompt ``real`` (its ids without padding) the cached prefix covers
        (0 or all of it; at least one token is left to feed)."""
        known = self._prefix_ids
        if known is not None and len(real) > len(known) and torch.equal(real[: len(known)], known):
            return len(known)
        return 0

    def _learn_prefix(self, real: torch.Tensor) -> None:
        """Cache the prefix the base prompt ``real`` shares with the one before it (a chat template's system
        prompt, a fixed instruction) once that is ``min_prefix`` tokens or more: its keys, values and hidden
        states are computed once with the base model and kept while prompts go on sharing it."""
        if self.min_prefix <= 0 or self._covered(real):
            return
        previous, self._previous = self._previous, real
        if previous is None:
            return
        n = min(len(previous), len(real) - 1)  # at least one token is fed: it gives the first logits
        differ = (previous[:n] != real[:n]).nonzero()
        shared = int(differ[0]) if len(differ) else n
        if shared < self.min_prefix:
            return
        from .generation import capture_prompt_states

        ids = real[:shared]
        with capture_prompt_states(self.base.model) as captured:
            out = self._forward([None], input_ids=ids[None], use_cache=True, **self._last_logits)
        self._prefix_ids, self._prefix_states = ids, captured["states"][0]
        self._prefix_layers = [(layer.keys, layer.values) for layer in _cache_of(out).layers]
        self.prefix_builds += 1

    def _prefix_cache(self, lengths: list[int], width: int) -> Any:
        """A cache holding, for each row, the first ``lengths[i]`` positions of the prefix, left-padded to
        ``width``."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.base.model.config)
        for i, (keys, values) in enumerate(self._prefix_layers):
            k = torch.cat([_left_pad(keys[:, :, :n], width) for n in lengths])
            v = torch.cat([_left_pad(values[:, :, :n], width) for n in lengths])
            cache.update(k, v, i)
        return cache

    def _join(self, batches: list[_Batch], cache: Any, mask: torch.Tensor) -> None:
        """Add prefilled batches' cache to the running cache, left-padding the shorter one."""
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # their first new tokens are fed next step
        if self._cache is None:
            self._cache, self._mask = cache, mask
        else:
            width = max(self._mask.shape[1], mask.shape[1])
            for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
                mine.keys = torch.cat([_left_pad(mine.keys, width - 1), _left_pad(theirs.keys, width - 1)])
                mine.values = torch.cat([_left_pad(mine.values, width - 1), _left_pad(theirs.values, width - 1)])
            self._mask = torch.cat([_left_pad(self._mask, width), _left_pad(mask, width)])
        self._running.extend(batches)

    @torch.inference_mode()
    def _step(self) -> None:
        """One token for every running row; finished batches leave."""
        started = time.perf_counter()
        last = torch.cat([b.sequences[:, -1:] for b in self._running])
        positions = self._mask.long().sum(-1, keepdim=True) - 1
        slots = [b.slot for b in self._running for _ in range(b.rows)]
        out = self._forward(slots, input_ids=last, attention_mask=self._mask, position_ids=positions,
                            **{self._cache_arg: self._cache}, use_cache=True)  # fmt: skip
        self._cache = _cache_of(out)
        self.steps += 1
        self.rows_decoded += len(slots)
        self.mixed_steps += len(set(slots)) > 1
        if self.on_step is not None:
            self.on_step(len(slots), time.perf_counter() - started)
        logits = out.logits[:, -1]
        keep, start, staying = [], 0, []
        for b in self._running:
            rows = slice(start, start + b.rows)
            if not self._take(b, logits[rows]):
                keep.extend(range(start, start + b.rows))
                staying.append(b)
            start += b.rows
        if len(staying) != len(self._running):
            self._running = staying
            if not keep:
                self._cache = self._mask = None
                return
            index = torch.tensor(keep, device=self._mask.device)
            self._cache.batch_select_indices(index)
            self._mask = self._mask[index]
            drop = int((self._mask.sum(0) == 0).long().cumprod(0).sum())  # leading columns no row attends
            if drop:
                self._mask = self._mask[:, drop:]
                for layer in self._cache.layers:
                    layer.keys, layer.values = layer.keys[:, :, drop:], layer.values[:, :, drop:]
        self._mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)

    def _take(self, batch: _Batch, logits: torch.Tensor) -> bool:
        """Choose ``batch``'s next tokens from its rows' ``logits``; returns whether the batch is done
        (and then settles its future)."""
        raw = logits.to(dtype=torch.float32, copy=True)
        batch.logits.append(raw)
        scores = batch.processors(batch.sequences, raw) if batch.processors else raw
        if batch.do_sample:
            probs = torch.softmax(scores, dim=-1)
            tokens = torch.multinomial(probs, 1, generator=batch.generator).squeeze(1)
        else:
            tokens = torch.argmax(scores, dim=-1)
        tokens = torch.where(batch.unfinished, tokens, torch.full_like(tokens, batch.pad))
        batch.sequences = torch.cat([batch.sequences, tokens[:, None]], dim=-1)
        if batch.streamer is not None:
            batch.streamer.put(tokens.cpu())
        done = torch.isin(tokens, batch.eos) if batch.eos.numel() else torch.zeros_like(batch.unfinished)
        if len(batch.stopping):
            done = done | batch.stopping(batch.sequences, scores).to(done.device)
        batch.unfinished = batch.unfinished & ~done
        if batch.unfinished.any() and len(batch.logits) < batch.max_new_tokens:
            return False
        if batch.streamer is not None:
            batch.streamer.end()
        self.batches += 1
        batch.future.set_result(SimpleNamespace(sequences=batch.sequences, logits=tuple(batch.logits),
                                                states=batch.states))  # fmt: skip
        return True

    def _forward(self, slots: list[str | None], **inputs: Any) -> Any:
        """One forward of the model, row ``i`` with adapter ``slots[i]`` (None: the base)."""
        with self._head():
            if all(s is None for s in slots):
                return self.base.model(**inputs)
            host = self.base.adapter_host
            if host is None:
                raise ModelBusyError(f"adapter slots {sorted({s for s in slots if s})} are not loaded")
            with host.mixed_forward([BASE_ROW if s is None else s for s in slots]) as forward:
                return forward(**inputs)

    @contextlib.contextmanager
    def _head(self):
        """Within the block the output projection (a plain ``nn.Linear`` on CPU) computes ``W @ x.T``: the
        engine's few rows (one position each) make a short, wide product, for which CPU BLAS picks slow
        kernels at some row counts (a 49,152 x 576 head here: 17-35 ms at 2-8 rows as ``x @ W.T``, 3-8 ms
        transposed; a whole step at 8 rows 90 -> 70 ms). Same values up to float rounding."""
        head = self.base.model.get_output_embeddings() if self.transpose_head else None
        if type(head) is not torch.nn.Linear:
            yield
            return
        head.forward = functools.partial(_transposed_linear, head)
        try:
            yield
        finally:
            del head.forward

    def _check_supported(self) -> None:
        gen = self.base.model.generation_config
        for name, defaults in _UNSUPPORTED_GENERATION.items():
            if getattr(gen, name, None) not in defaults:
                raise EngineUnsupportedError(
                    f"the model's generation_config sets {name}={getattr(gen, name)!r}, which the decoding engine "
                    "does not apply; use serve.scheduler: static"
                )
        with self.base.lock, torch.inference_mode():
            ids = torch.tensor([[self.base.tokenizer.pad_token_id or 0] * 2], device=self.base.device)
            out = self.base.model(input_ids=ids, use_cache=True)
        _check_cache(_cache_of(out))
        # transformers 5.x renamed the cache argument (past_key_values -> cache); use what this model takes
        params = inspect.signature(self.base.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in params else {}  # a prefill's last position


def _stacked(results: list[SimpleNamespace], pad: int) -> SimpleNamespace:
    """One batch's result from its rows' (each decoded alone): sequences padded on the right with ``pad`` (as
    ``generate`` leaves a row that ended early), logits zero past a row's end, states stacked."""
    steps = max(len(r.logits) for r in results)
    width = max(r.sequences.shape[1] for r in results)
    sequences = torch.cat([torch.nn.functional.pad(r.sequences, (0, width - r.sequences.shape[1]), value=pad)
                           for r in results])  # fmt: skip
    vocab = results[0].logits[0].shape[-1]
    zero = results[0].logits[0].new_zeros(1, vocab)
    logits = tuple(torch.cat([r.logits[t] if t < len(r.logits) else zero for r in results]) for t in range(steps))
    return SimpleNamespace(sequences=sequences, logits=logits, states=torch.cat([r.states for r in results]))


def _transposed_linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])
    out = (layer.weight @ flat.T).T
    if layer.bias is not None:
        out = out + layer.bias
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _check_cache(cache: Any) -> None:
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if type(cache) is not DynamicCache or not all(type(layer) is DynamicLayer for layer in cache.layers):
        raise EngineUnsupportedError(
            f"the model's cache is {type(cache).__name__} (layers "
            f"{sorted({type(la).__name__ for la in getattr(cache, 'layers', [])})}); the decoding engine joins plain "
            "DynamicCache layers only; use serve.scheduler: static"
        )


def _left_pad(t: torch.Tensor, width: int, value: int = 0) -> torch.Tensor:
    """``t`` padded with ``value`` on the left of its sequence dimension (dim 1 of ids or a mask, dim 2 of a
    cache tensor) to ``width``."""
    dim = 1 if t.dim() == 2 else 2
    short = width - t.shape[dim]
    if short <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = short
    return torch.cat([t.new_full(shape, value), t], dim=dim)
