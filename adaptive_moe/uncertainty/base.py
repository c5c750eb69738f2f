"""Confidence estimators: pure functions of one generation's signals, returning a raw score.

Higher raw score = more confident, on the estimator's own scale; a calibrator
(:mod:`adaptive_moe.uncertainty.calibration`) maps raw scores to confidence in [0, 1] ≈ P(correct).
Write your own by subclassing :class:`ConfidenceEstimator` and implementing :meth:`score`, then
:func:`register_estimator` it to select it by name from the config.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError
from ..utils.registry import Registry

EMPTY_ANSWER_SCORE = -1e3  # an answer with no tokens carries no evidence of knowing: least confident


class ConfidenceEstimator(ABC):
    """Scores how confident the base model is in one answer (or, for ``pre`` estimators, one prompt).

    Class attributes:
        name: the registry name (``router.estimator`` in the config).
        needs_answer: ``True`` when the score uses the generated answer (``post`` routing only);
            ``False`` when the prompt's hidden states suffice (usable in ``pre`` mode too).
        trainable: ``True`` when :meth:`fit` must be called on labelled examples before scoring.
    """

    name: ClassVar[str] = ""
    needs_answer: ClassVar[bool] = True
    trainable: ClassVar[bool] = False

    @abstractmethod
    def score(self, signals: Any) -> float:
        """Raw confidence for one :class:`~adaptive_moe.model.generation.GenerationSignals` (or
        :class:`~adaptive_moe.model.generation.PromptStates` when ``needs_answer`` is false):
        a finite float, higher = more confident."""

    def score_batch(self, signals: Sequence[Any]) -> np.ndarray:
        """Raw scores for many answers, as a float64 array (override for a vectorised version)."""
        out = np.array([float(self.score(s)) for s in signals], dtype=np.float64)
        if not np.all(np.isfinite(out)):
            raise InvalidInputError(f"estimator {self.name!r} returned a non-finite score; scores must be finite")
        return out

    def to_confidence(self, raw: np.ndarray) -> np.ndarray:
        """An uncalibrated map from raw scores to [0, 1], used until a calibrator is fitted
        (default: the logistic function; log-probability estimators use ``exp``)."""
        return 1.0 / (1.0 + np.exp(-np.asarray(raw, dtype=np.float64)))

    def fit(self, signals: Sequence[Any], correct: Sequence[bool]) -> ConfidenceEstimator:
        """Learn from labelled answers (only trainable estimators need it)."""
        return self

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state saved with a router (empty for stateless estimators)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        return None  # stateless estimators have nothing to restore

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _logprobs(signals: Any) -> np.ndarray:
    lp = getattr(signals, "token_logprobs", None)
    if lp is None:
        raise InvalidInputError("this estimator needs an answer's signals (GenerationSignals), not prompt states")
    return np.asarray(lp, dtype=np.float64)


class _LogScale(ConfidenceEstimator):
    """Raw scores that are log-probabilities (or minus entropies): ``exp`` maps them into [0, 1]."""

    def to_confidence(self, raw: np.ndarray) -> np.ndarray:
        return np.exp(np.minimum(np.asarray(raw, dtype=np.float64), 0.0))


class MaxSequenceProbability(_LogScale):
    """Log-probability of the whole answer (sum of chosen-token log-probs), as LM-Polygraph's
    MaximumSequenceProbability with the sign turned to confidence. Favors short answers."""

    name = "max_sequence_prob"

    def score(self, signals: Any) -> float:
        """The probability of the whole answer, exp(sum of chosen-token log-probs)."""
        lp = _logprobs(signals)
        return float(lp.sum()) if lp.size else EMPTY_ANSWER_SCORE


class MeanTokenLogProb(_LogScale):
    """Mean chosen-token log-probability (the log of the geometric-mean token probability)."""

    name = "mean_logprob"

    def score(self, signals: Any) -> float:
        """The mean chosen-token log-probability."""
        lp = _logprobs(signals)
        return float(lp.mean()) if lp.size else EMPTY_ANSWER_SCORE


class MeanTokenEntropy(_LogScale):
    """Minus the mean entropy (nats) of the next-token distributions over the answer."""

    name = "mean_entropy"

    def score(self, signals: Any) -> float:
        """Minus the mean per-step entropy (higher = more confident)."""
        _logprobs(signals)
        ent = np.asarray(signals.token_entropies, dtype=np.float64)
        return float(-ent.mean()) if ent.size else EMPTY_ANSWER_SCORE


class MinTokenProbability(_LogScale):
    """Log-probability of the least likely chosen token: one guessed token sinks the answer."""

    name = "min_token_prob"

    def score(self, signals: Any) -> float:
        """The smallest chosen-token probability."""
        lp = _logprobs(signals)
        return float(lp.min()) if lp.size else EMPTY_ANSWER_SCORE


class Perplexity(ConfidenceEstimator):
    """Minus the answer's perplexity, ``-exp(-mean log-prob)`` (capped so it stays finite)."""

    name = "perplexity"

    def to_confidence(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores (minus perplexity) -> [0, 1] by 1 / perplexity."""
        return 1.0 / np.maximum(-np.asarray(raw, dtype=np.float64), 1.0)  # 1 / perplexity

    def score(self, signals: Any) -> float:
        """Minus the perplexity of the answer."""
        lp = _logprobs(signals)
        return float(-math.exp(min(-lp.mean(), 50.0))) if lp.size else EMPTY_ANSWER_SCORE


ESTIMATORS: Registry[type[ConfidenceEstimator]] = Registry("estimator", ConfidenceEstimator)


def register_estimator(cls: type[ConfidenceEstimator], *, overwrite: bool = False) -> type[ConfidenceEstimator]:
    """Register an estimator class under its ``name`` (usable as a class decorator); see
    :meth:`~adaptive_moe.utils.registry.Registry.register`."""
    return ESTIMATORS.register(cls, overwrite=overwrite)


def get_estimator(name: str, **kwargs: Any) -> ConfidenceEstimator:
    """A new estimator of the class registered as ``name``."""
    return ESTIMATORS.get(name)(**kwargs)


def list_estimators() -> list[str]:
    """Names of the registered estimators, sorted."""
    return ESTIMATORS.names()


for _cls in (MaxSequenceProbability, MeanTokenLogProb, MeanTokenEntropy, MinTokenProbability, Perplexity):
    register_estimator(_cls)
