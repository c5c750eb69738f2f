"""A trained probe: logistic regression on the base model's hidden state (and, after generation, the
answer's token statistics) predicting whether the base answer is correct.

The state is plain numbers (scaler mean and scale, coefficients, intercept), saved as JSON with the
router: no pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ModelBusyError
from .base import ConfidenceEstimator, register_estimator

_HIDDEN_SOURCES = ("query_hidden", "prompt_hidden", "prompt_hidden_mean")
_N_STATS = 5


def answer_statistics(signals: Any) -> np.ndarray:
    """Five numbers about an answer: mean, min and sum of token log-probs, mean entropy, length."""
    lp = np.asarray(signals.token_logprobs, dtype=np.float64)
    ent = np.asarray(signals.token_entropies, dtype=np.float64)
    if not lp.size:
        return np.array([-20.0, -20.0, -20.0, 10.0, 0.0])
    return np.array([lp.mean(), lp.min(), max(lp.sum(), -100.0), ent.mean(), min(lp.size, 64) / 16])


@register_estimator
class HiddenStateProbe(ConfidenceEstimator):
    """Logistic-regression probe; its raw score is the log-odds that the base answer is correct.

    Args:
        source: which hidden state: ``"query_hidden"`` (mean over the user's tokens), ``"prompt_hidden"``
            (last prompt token, from which the first answer token is predicted) or ``"prompt_hidden_mean"``.
        with_answer: also use the answer's token statistics (then it needs the answer: ``post`` mode).
        C: inverse L2 regularisation strength (hidden states are wide; keep it small).
        answer_weight: the five answer statistics, standardised, are multiplied by this, so the L2
            penalty does not drown five informative numbers among hundreds of hidden dimensions.

    Measured on SmolLM2 (benchmarks/results/router.md): ``query_hidden`` with answer weight 3 ranked base
    errors best among the sources and weights tried, on the mix and on general questions alone.
    """

    name = "probe"
    trainable = True

    def __init__(
        self,
        source: str = "query_hidden",
        with_answer: bool = True,
        C: float = 0.03,
        seed: int = 0,
        answer_weight: float = 3.0,
    ):
        if source not in _HIDDEN_SOURCES:
            raise InvalidInputError(f"probe source {source!r} is not one of {_HIDDEN_SOURCES}")
        if not C > 0:
            raise InvalidInputError(f"probe C must be > 0, got {C!r}")
        if not answer_weight > 0:
            raise InvalidInputError(f"probe answer_weight must be > 0, got {answer_weight!r}")
        self.source, self.with_answer, self.C, self.seed = source, bool(with_answer), float(C), int(seed)
        self.answer_weight = float(answer_weight)
        self.needs_answer = self.with_answer
        self._mean = self._scale = self._coef = None
        self._intercept = 0.0

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self._coef is not None

    def features(self, signals: Any) -> np.ndarray:
        """The probe's input row for one answer: the hidden state and the weighted answer statistics."""
        hidden = getattr(signals, self.source, None)
        if hidden is None:
            raise InvalidInputError(f"the probe reads {self.source!r}, which these signals do not carry")
        x = np.asarray(hidden, dtype=np.float64).reshape(-1)
        return np.concatenate([x, answer_statistics(signals)]) if self.with_answer else x

    def fit(self, signals: Sequence[Any], correct: Sequence[bool]) -> HiddenStateProbe:
        """Fit the logistic regression on answers labelled right or wrong; returns ``self``."""
        from sklearn.linear_model import LogisticRegression

        x = np.stack([self.features(s) for s in signals]) if len(signals) else np.zeros((0, 0))
        y = np.asarray(correct, dtype=bool)
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise InvalidInputError(f"probe fit needs as many labels as answers (got {x.shape[0]} and {y.shape[0]})")
        if y.all() or not y.any():
            raise InvalidInputError(
                f"probe fit needs both right and wrong base answers; all {y.size} are {'right' if y.all() else 'wrong'}"
            )
        self._mean, scale = x.mean(0), x.std(0)
        self._scale = np.where(scale > 1e-8, scale, 1.0)
        if self.with_answer:  # dividing by a smaller scale = multiplying the standardised statistics
            self._scale[-_N_STATS:] /= self.answer_weight
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000, random_state=self.seed)
        model.fit((x - self._mean) / self._scale, y)
        self._coef, self._intercept = model.coef_[0].copy(), float(model.intercept_[0])
        return self

    def score(self, signals: Any) -> float:
        """The probe's probability that this answer is right."""
        return float(self.score_batch([signals])[0])

    def score_batch(self, signals: Sequence[Any]) -> np.ndarray:
        """The probe's probability of being right, for many answers at once."""
        if not self.is_fitted:
            raise ModelBusyError("the probe is not trained; fit it (train_router) or load a saved router")
        x = np.stack([self.features(s) for s in signals])
        if x.shape[1] != self._coef.shape[0]:
            raise InvalidInputError(
                f"probe was trained on {self._coef.shape[0]} features, these signals give {x.shape[1]} "
                "(another base model?)"
            )
        return ((x - self._mean) / self._scale) @ self._coef + self._intercept

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready weights and settings (no pickle)."""
        state = {"source": self.source, "with_answer": self.with_answer, "C": self.C, "seed": self.seed,
                 "answer_weight": self.answer_weight}  # fmt: skip
        if self.is_fitted:
            state.update(mean=self._mean.tolist(), scale=self._scale.tolist(), coef=self._coef.tolist(),
                         intercept=self._intercept)  # fmt: skip
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` wrote."""
        self.__init__(state.get("source", "query_hidden"), state.get("with_answer", True), state.get("C", 0.03),
                      state.get("seed", 0), state.get("answer_weight", 3.0))  # fmt: skip
        if "coef" in state:
            self._mean, self._scale = np.asarray(state["mean"]), np.asarray(state["scale"])
            self._coef, self._intercept = np.asarray(state["coef"]), float(state["intercept"])


@register_estimator
class PromptProbe(HiddenStateProbe):
    """The probe on the prompt's hidden state alone: decides before any answer is generated (``pre``)."""

    name = "prompt_probe"

    def __init__(
        self,
        source: str = "prompt_hidden",
        with_answer: bool = False,
        C: float = 0.03,
        seed: int = 0,
        answer_weight: float = 3.0,
    ):
        super().__init__(source, with_answer, C, seed, answer_weight)
