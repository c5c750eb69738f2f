"""Routing: routers (the default uncertainty router), expert matchers, router training and evaluation."""

from .base import ROUTES, Query, RouteDecision, Router, RouteScores, list_routers, register_router, router_class
from .matching import CentroidMatcher, ClassifierMatcher, ExpertMatcher, KNNMatcher, make_matcher, register_matcher
from .router import UncertaintyRouter
from .training import (
    RouterTrainingReport,
    embed_questions,
    fit_matcher,
    label_base_answers,
    signals_from_row,
    split_dataset,
    train_router,
)

__all__ = [
    "ROUTES",
    "CentroidMatcher",
    "ClassifierMatcher",
    "ExpertMatcher",
    "KNNMatcher",
    "Query",
    "RouteDecision",
    "RouteScores",
    "Router",
    "RouterTrainingReport",
    "UncertaintyRouter",
    "embed_questions",
    "fit_matcher",
    "label_base_answers",
    "list_routers",
    "make_matcher",
    "register_matcher",
    "register_router",
    "router_class",
    "signals_from_row",
    "split_dataset",
    "train_router",
]
