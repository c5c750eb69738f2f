"""Routing: routers (the default uncertainty router), expert matchers (by embeddings and by words), router
training and evaluation."""

from .base import (
    ROUTES,
    Query,
    RouteDecision,
    Router,
    RouteScores,
    list_routers,
    load_saved_router,
    register_router,
    router_class,
)
from .families import (
    FAMILY_ESTIMATORS,
    FamilyData,
    evaluate_families,
    family_table,
    leave_one_family_out,
    p_true_scores,
    shipping_choice,
)
from .matching import CentroidMatcher, ClassifierMatcher, ExpertMatcher, KNNMatcher, make_matcher, register_matcher
from .router import UncertaintyRouter
from .terms import TermMatcher
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
    "FAMILY_ESTIMATORS",
    "ROUTES",
    "CentroidMatcher",
    "ClassifierMatcher",
    "ExpertMatcher",
    "FamilyData",
    "KNNMatcher",
    "Query",
    "RouteDecision",
    "RouteScores",
    "Router",
    "RouterTrainingReport",
    "TermMatcher",
    "UncertaintyRouter",
    "embed_questions",
    "evaluate_families",
    "family_table",
    "fit_matcher",
    "label_base_answers",
    "leave_one_family_out",
    "list_routers",
    "load_saved_router",
    "make_matcher",
    "p_true_scores",
    "register_matcher",
    "register_router",
    "router_class",
    "shipping_choice",
    "signals_from_row",
    "split_dataset",
    "train_router",
]
