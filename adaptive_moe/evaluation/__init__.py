"""Judging answers and confidences, below both routing and creation: answer scoring
(:mod:`~adaptive_moe.evaluation.scoring`) and the metrics of a confidence or a router
(:mod:`~adaptive_moe.evaluation.metrics`: AUROC, PRR, ECE, risk-coverage, APGR, bootstrap intervals)."""

from . import metrics
from .metrics import apgr, aurc, auroc, bootstrap_ci, ece, prr, risk_coverage_curve, routing_curve, share_for_gain
from .scoring import (
    AnswerScorer,
    ContainsScorer,
    ExactScorer,
    TokenF1Scorer,
    accuracy,
    get_scorer,
    is_correct,
    normalize_answer,
    register_scorer,
    registered_scorers,
)

__all__ = [
    "AnswerScorer",
    "ContainsScorer",
    "ExactScorer",
    "TokenF1Scorer",
    "accuracy",
    "apgr",
    "aurc",
    "auroc",
    "bootstrap_ci",
    "ece",
    "get_scorer",
    "is_correct",
    "metrics",
    "normalize_answer",
    "prr",
    "register_scorer",
    "registered_scorers",
    "risk_coverage_curve",
    "routing_curve",
    "share_for_gain",
]
