"""Confidence estimation: estimators (pure functions of generation signals), a trained probe, and
calibration to confidence in [0, 1] (higher = more confident)."""

from .base import (
    EMPTY_ANSWER_SCORE,
    ConfidenceEstimator,
    MaxSequenceProbability,
    MeanTokenEntropy,
    MeanTokenLogProb,
    MinTokenProbability,
    Perplexity,
    get_estimator,
    list_estimators,
    register_estimator,
)
from .calibration import (
    Calibrator,
    IdentityCalibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    ThresholdResult,
    make_calibrator,
    register_calibrator,
    threshold_for_error_rate,
    threshold_for_share,
)
from .probe import HiddenStateProbe, PromptProbe, answer_statistics

__all__ = [
    "EMPTY_ANSWER_SCORE",
    "Calibrator",
    "ConfidenceEstimator",
    "HiddenStateProbe",
    "IdentityCalibrator",
    "IsotonicCalibrator",
    "MaxSequenceProbability",
    "MeanTokenEntropy",
    "MeanTokenLogProb",
    "MinTokenProbability",
    "Perplexity",
    "PlattCalibrator",
    "PromptProbe",
    "ThresholdResult",
    "answer_statistics",
    "get_estimator",
    "list_estimators",
    "make_calibrator",
    "register_calibrator",
    "register_estimator",
    "threshold_for_error_rate",
    "threshold_for_share",
]
