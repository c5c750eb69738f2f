"""``mixture``: a token-level mixture of the top-k experts, from ONE batched forward per step.

Each prompt is replicated k times, row i running with expert i's adapter (PEFT's mixed-batch
inference, ``adapter_names=``), so one ``generate`` call with its KV cache serves all k experts. At
each step a logits processor mixes the k next-token distributions by the router's weights
(optionally re-weighted by each expert's confidence at that step), picks the token (greedy or
sampled, once per prompt) and writes it into every row of the prompt, so the rows stay identical and
``generate`` goes on as for one sequence. It records each expert's share of the chosen token:
``w_i p_i(t) / sum_j w_j p_j(t)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..config import GenerationConfig
from ..errors import IncompatibleExpertError
from ..experts.retrieval import supported_by
from ..model.generation import GenerationSignals
from .base import ExpertAnswer, Integrator, check_experts, register_integrator
from .select import SelectIntegrator


class MixtureLogitsProcessor:
    """Mixes the next-token distributions of groups of ``k`` consecutive rows (see the module doc).

    Args:
        weights: ``(k,)`` mixture weights (summing to 1).
        reweight: multiply each expert's weight at each step by its confidence there (its largest
            next-token probability), then renormalise.
        generation: decoding settings; with ``do_sample`` the processor samples the token itself
            (temperature, top-k, top-p applied to the mixture) so every row of a group gets the same one.
    """

    def __init__(self, weights: Sequence[float], reweight: bool, generation: GenerationConfig) -> None:
        self.log_w = torch.log(torch.tensor(list(weights), dtype=torch.float32))  # (k,)
        self.k = len(weights)
        self.reweight = reweight
        self.generation = generation
        self.generator = None
        if generation.do_sample and generation.seed is not None:
            self.generator = torch.Generator().manual_seed(generation.seed)
        self.shares: list[torch.Tensor] = []  # per step: (G, k) each expert's share of the chosen token
        self.mixed_logprobs: list[torch.Tensor] = []  # per step: (G,) log-probability under the mixture

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Replace the scores of each step by the weighted mixture of the experts' next-token distributions."""
        rows, vocab = scores.shape
        groups = rows // self.k
        logp = torch.log_softmax(scores.float(), dim=-1).view(groups, self.k, vocab)  # (G, k, V)
        log_w = self.log_w.to(logp.device).expand(groups, self.k)  # (G, k)
        if self.reweight:
            log_w = torch.log_softmax(log_w + logp.max(dim=-1).values, dim=-1)  # w_i * max_v p_i(v), renormalised
        mixed = torch.logsumexp(logp + log_w.unsqueeze(-1), dim=1)  # (G, V): log sum_i w_i p_i
        chosen = self._choose(mixed)  # (G,)
        at = logp.gather(-1, chosen.view(groups, 1, 1).expand(groups, self.k, 1)).squeeze(-1)  # (G, k)
        self.shares.append(torch.softmax(at + log_w, dim=-1).cpu())
        self.mixed_logprobs.append(mixed.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).cpu())
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(rows, device=scores.device), chosen.repeat_interleave(self.k)] = 0.0
        return out

    def _choose(self, mixed: torch.Tensor) -> torch.Tensor:
        g = self.generation
        if not g.do_sample:
            return mixed.argmax(dim=-1)
        logits = mixed / g.temperature
        if g.top_k:
            kth = torch.topk(logits, min(g.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if g.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
            drop = cum - torch.softmax(sorted_logits, dim=-1) > g.top_p  # keep the smallest set reaching top_p
            logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=self.generator).squeeze(-1).to(mixed.device)


@register_integrator
class MixtureIntegrator(Integrator):
    """Token-level mixture of LoRA experts (see the module docstring). One expert: ``select``."""

    name = "mixture"

    def generate(
        self, prompts: Sequence[Any], experts: Sequence[tuple[str, float]], generation: GenerationConfig
    ) -> list[ExpertAnswer]:
        """Answer with a token-level mixture of ``experts``: one batched forward per step over their adapters."""
        experts = check_experts(experts)
        if len(experts) == 1:
            return SelectIntegrator(self.config, self.pool, self.cache_dir).generate(prompts, experts, generation)
        names = [n for n, _ in experts]
        out: list[ExpertAnswer] = []
        with self.pool.acquire(names) as loaded:
            slots = [getattr(e, "slot", None) for e in loaded]
            if any(s is None for s in slots):
                kinds = ", ".join(f"{e.name} ({type(e).__name__})" for e in loaded)
                raise IncompatibleExpertError(f"the mixture needs LoRA experts sharing the base; got {kinds}")
            gen = loaded[0].generation_config(generation)
            step = max(1, gen.batch_size)
            for start in range(0, len(prompts), step):  # one generate per chunk, k rows per prompt
                chunk = list(prompts[start : start + step])
                read = [[e.read(p) for e in loaded] for p in chunk]  # prompt-major: row g*k + i
                rows = [row for group in read for row, _ in group]
                processor = MixtureLogitsProcessor([w for _, w in experts], self.config.reweight_per_step, gen)
                with self.base.adapter_host.mixed([s for _ in chunk for s in slots]) as generate_fn:
                    signals = self.base.generate_with_signals(rows, gen.replace(batch_size=len(rows)),
                                                              generate_fn=generate_fn,
                                                              logits_processor=[processor])  # fmt: skip
                answers = self._answers(signals, names, processor, len(chunk), experts)
                for group, answer in zip(read, answers, strict=True):
                    _cite_all(answer.signals, [c for _, cites in group for c in cites])
                out.extend(answers)
        return out

    def _answers(self, signals, names, processor, n_prompts, experts) -> list[ExpertAnswer]:
        k = len(names)
        steps = len(processor.shares)
        shares = torch.stack(processor.shares, dim=1) if steps else torch.zeros(n_prompts, 0, k)  # (G, steps, k)
        mixed = torch.stack(processor.mixed_logprobs, dim=1) if steps else torch.zeros(n_prompts, 0)  # (G, steps)
        out = []
        for g in range(n_prompts):
            group = signals[g * k : (g + 1) * k]
            first = group[0]
            n = first.num_tokens  # the rows of a group got the same tokens; eos / stop cut them alike
            weights = [{name: float(shares[g, t, i]) for i, name in enumerate(names)} for t in range(n)]
            combined = GenerationSignals(
                prompt=first.prompt, text=first.text, token_ids=list(first.token_ids),
                token_logprobs=mixed[g, :n].float().clone(), token_entropies=first.token_entropies,
                prompt_hidden=first.prompt_hidden, prompt_hidden_mean=first.prompt_hidden_mean,
                finish_reason=first.finish_reason, prompt_tokens=first.prompt_tokens, truncated=first.truncated,
                query_hidden=first.query_hidden,
            )  # fmt: skip
            own = {name: group[i].token_logprobs for i, name in enumerate(names)}
            out.append(ExpertAnswer(combined, list(experts), weights, self.name, own))
        return out


def _cite_all(signals: GenerationSignals, citations: list[dict]) -> None:
    """Put the passages every expert of the mixture read on the answer, best first, each passage once."""
    if not citations:
        return
    seen, unique = set(), []
    for c in sorted(citations, key=lambda c: -c["score"]):
        key = (c["source"], tuple(c["lines"]))
        if key not in seen:
            seen.add(key)
            unique.append(c)
    signals.citations = unique
    signals.supported = supported_by(signals.text, [c["text"] for c in unique])
