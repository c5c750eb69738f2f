"""The main job on the embedded default. For now: load the base model, answer questions, and show the
confidence signals each answer carries. It grows into the full adaptive loop (gaps, new experts,
routing) as those parts land."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import AdaptiveMoEConfig
from .model import GenerationSignals, load_base_model

DEMO_QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is 7 times 8?",
    "Who founded the Tidewater Guild of Lantern Makers?",  # fictional: the base cannot know
)


@dataclass
class SignalRow:
    """One answered question and the confidence signals of its answer."""

    question: str
    answer: str
    tokens: int
    mean_logprob: float
    min_token_prob: float
    mean_entropy: float
    seq_prob: float  # geometric-mean token probability, an uncalibrated confidence in [0, 1]

    @classmethod
    def from_signals(cls, s: GenerationSignals) -> SignalRow:
        n = s.num_tokens
        mean_lp = float(s.token_logprobs.mean()) if n else 0.0
        return cls(
            question=s.prompt if isinstance(s.prompt, str) else s.prompt[-1]["content"],
            answer=s.text,
            tokens=n,
            mean_logprob=mean_lp,
            min_token_prob=float(s.token_logprobs.min().exp()) if n else 1.0,
            mean_entropy=float(s.token_entropies.mean()) if n else 0.0,
            seq_prob=math.exp(mean_lp),
        )


def run_signals_demo(config: AdaptiveMoEConfig | None = None, questions=DEMO_QUESTIONS) -> list[SignalRow]:
    """Answer ``questions`` with the configured base model and return one row of signals each."""
    config = config or AdaptiveMoEConfig()
    base = load_base_model(config.model)
    signals = base.generate_with_signals(list(questions), config.generation)
    return [SignalRow.from_signals(s) for s in signals]


def format_rows(rows: list[SignalRow], width: int = 60) -> str:
    """A plain-text table of the rows."""
    head = f"{'question':<{width}}  {'conf':>5}  {'minp':>5}  {'H':>5}  answer"
    lines = [head, "-" * len(head)]
    for r in rows:
        q = r.question if len(r.question) <= width else r.question[: width - 1] + "…"
        a = r.answer.replace("\n", " ")
        a = a if len(a) <= 70 else a[:69] + "…"
        lines.append(f"{q:<{width}}  {r.seq_prob:5.2f}  {r.min_token_prob:5.2f}  {r.mean_entropy:5.2f}  {a}")
    lines.append(
        "conf: geometric-mean token probability (uncalibrated); minp: least token probability; H: mean entropy (nats)"
    )
    return "\n".join(lines)
