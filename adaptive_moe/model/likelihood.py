"""How likely a base model finds a text after another: the mean log-probability of a continuation's tokens
given a prefix, from one forward pass per batch (no generation). A retrieval expert uses it to rank its
passages by how likely each makes the question (query likelihood: a passage that could have prompted the
question ranks high)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InvalidInputError
from .generation import LanguageModel

__all__ = ["continuation_logprobs"]


def continuation_logprobs(
    base: LanguageModel, prefixes: Sequence[str], continuations: Sequence[str], batch_size: int = 8
) -> list[float]:
    """For each pair, the mean log-probability of ``continuations[i]``'s tokens after ``prefixes[i]`` under
    ``base`` as it stands (plain text, no chat template; a prefix too long for the model's context loses its
    start). Holds ``base.lock`` while the model runs. An empty continuation is an error: there is nothing to
    score."""
    if len(prefixes) != len(continuations):
        raise InvalidInputError(f"one continuation per prefix: got {len(prefixes)} prefixes, {len(continuations)}")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
    tok = base.tokenizer
    limit = getattr(base, "context_length", None)
    pairs = []
    for i, (prefix, cont) in enumerate(zip(prefixes, continuations, strict=True)):
        tail = tok(cont, add_special_tokens=False)["input_ids"]
        if not tail:
            raise InvalidInputError(f"continuation {i} is empty; allowed: a text with at least one token")
        head = tok(prefix, add_special_tokens=False)["input_ids"]
        if limit is not None:
            tail = tail[: limit - 1]
            head = head[max(0, len(head) + len(tail) - limit) :]
        if not head:  # the first continuation token needs something before it
            head = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
        pairs.append((head, tail))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        width = max(len(h) + len(t) for h, t in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (h, t) in enumerate(chunk):  # right padding: every row's positions start at 0
            ids[row, : len(h) + len(t)] = torch.tensor(h + t)
            mask[row, : len(h) + len(t)] = 1
        with base.lock, torch.inference_mode():
            device = next(base.model.parameters()).device
            logits = base.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = torch.log_softmax(logits.float().cpu(), dim=-1)
        for row, (h, t) in enumerate(chunk):
            at = torch.arange(len(h) - 1, len(h) - 1 + len(t))
            out.append(logp[row, at, torch.tensor(t)].mean().item())
    return out
