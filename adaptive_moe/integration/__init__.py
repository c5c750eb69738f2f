"""Integrators (how chosen experts answer together) and attribution (who produced which token)."""

from .attribution import BASE, Attribution, TokenAttribution, token_pieces
from .base import ExpertAnswer, Integrator, integrator_class, list_integrators, register_integrator
from .merge import MergeIntegrator, merged_name
from .mixture import MixtureIntegrator, MixtureLogitsProcessor
from .select import SelectIntegrator

__all__ = [
    "BASE",
    "Attribution",
    "ExpertAnswer",
    "Integrator",
    "MergeIntegrator",
    "MixtureIntegrator",
    "MixtureLogitsProcessor",
    "SelectIntegrator",
    "TokenAttribution",
    "integrator_class",
    "list_integrators",
    "merged_name",
    "register_integrator",
    "token_pieces",
]
