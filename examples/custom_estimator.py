"""A confidence estimator of your own: subclass ConfidenceEstimator, write `score`, register it.

python examples/custom_estimator.py          # on the embedded SmolLM2-135M-Instruct
python examples/custom_estimator.py --fast   # on a tiny random model (seconds; also ADAPTIVE_MOE_EXAMPLE_FAST=1)

The estimator below distrusts answers that hedge ("I think", "maybe", "not sure") or ramble: a pure
function of the generation's signals, like every estimator. Once registered, the config selects it by
name (router.estimator: hedging) and the router calibrates and thresholds it like the built-in ones.
"""

import argparse
import os
import tempfile
from pathlib import Path

from adaptive_moe.config import RouterConfig
from adaptive_moe.routing import Query, UncertaintyRouter
from adaptive_moe.testing import example_base
from adaptive_moe.uncertainty import ConfidenceEstimator, get_estimator, register_estimator

HEDGES = ("i think", "maybe", "perhaps", "not sure", "i don't know", "possibly", "might")


@register_estimator
class HedgingEstimator(ConfidenceEstimator):
    """Raw score = mean token log-probability, minus 1 per hedge word, minus a little per token over 12."""

    name = "hedging"

    def score(self, signals):
        text = signals.text.lower()
        hedges = sum(text.count(h) for h in HEDGES)
        mean_logprob = float(signals.token_logprobs.mean()) if signals.num_tokens else -10.0
        return mean_logprob - hedges - 0.05 * max(signals.num_tokens - 12, 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny random model instead of SmolLM2 (for CI)")
    args = parser.parse_args(argv)
    fast = args.fast or os.environ.get("ADAPTIVE_MOE_EXAMPLE_FAST") == "1"
    with tempfile.TemporaryDirectory() as tmp:
        base = example_base(fast, Path(tmp))
        questions = ["What is the capital of France?", "Where was Mirela Ostrander born?"]
        signals = base.generate_with_signals(questions, max_new_tokens=24)
        # Selected by name, as from a config file. Untrained, the router maps the raw score to [0, 1]
        # with the logistic function; train_router would fit a calibrator on labelled questions.
        router = UncertaintyRouter(RouterConfig(estimator="hedging", threshold=0.5))
        mean_lp = get_estimator("mean_logprob")
        decisions = router.route_batch([Query(q, signals=s) for q, s in zip(questions, signals, strict=True)])
        for q, s, d in zip(questions, signals, decisions, strict=True):
            print(
                f"Q: {q}\n   A: {s.text!r}\n   hedging score {HedgingEstimator().score(s):.2f} "
                f"(mean_logprob {mean_lp.score(s):.2f}) -> route {d.route}: {d.reason}"
            )


if __name__ == "__main__":
    main()
