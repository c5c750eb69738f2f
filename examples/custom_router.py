"""A router of your own: subclass Router and write one method, `score`.

python examples/custom_router.py          # on the embedded SmolLM2-135M-Instruct
python examples/custom_router.py --fast   # on a tiny random model (seconds; also ADAPTIVE_MOE_EXAMPLE_FAST=1)

`score` returns the base model's confidence in [0, 1] and a match score in [0, 1] per expert; the
inherited `route` applies the config's threshold, min_match_score and top_k and explains its choice.
This one matches experts by keywords and trusts the base by its minimum token probability.
"""

import argparse
import math
import os
import tempfile
from pathlib import Path
from typing import ClassVar

from adaptive_moe.config import RouterConfig
from adaptive_moe.routing import Query, Router, RouteScores, register_router, router_class
from adaptive_moe.testing import example_base


@register_router
class KeywordRouter(Router):
    name = "keywords"
    KEYWORDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "guilds": ("guild", "lantern", "workshop"),
        "harbours": ("port", "quay", "lighthouse", "harbour"),
    }

    def score(self, query):
        words = set(query.text.lower().replace("?", " ").split())
        matches = {expert: min(1.0, len(words & set(keys)) / 2) for expert, keys in self.KEYWORDS.items()}
        signals = query.signals
        confidence = math.exp(float(signals.token_logprobs.min())) if signals.num_tokens else 0.0
        return RouteScores(confidence, matches)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny random model instead of SmolLM2 (for CI)")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("ADAPTIVE_MOE_EXAMPLE_FAST") == "1"
    with tempfile.TemporaryDirectory() as tmp:
        base = example_base(fast, Path(tmp))
        router = router_class("keywords")(
            RouterConfig(threshold=0.3, min_match_score=0.5)
        )  # by name, as a config would
        questions = [
            "What is 2 + 2?",
            "Who runs the lantern workshop of the guild?",
            "When was the port lighthouse built?",
        ]
        for q, s in zip(questions, base.generate_with_signals(questions, max_new_tokens=16), strict=True):
            d = router.route(Query(q, signals=s))
            print(f"Q: {q}\n   route {d.route} {d.experts}: {d.reason}")


if __name__ == "__main__":
    main()
