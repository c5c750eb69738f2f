"""The default router: the base model's calibrated confidence, then expert matching."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RouterConfig
from ..errors import ConfigError, CorruptExpertError, InvalidInputError, ModelNotFoundError
from ..uncertainty import ConfidenceEstimator, get_estimator
from ..utils.io import _umask, atomic_directory, atomic_write_text
from .base import Query, Router, RouteScores, register_router, router_class
from .matching import ExpertMatcher, make_matcher
from .terms import TermMatcher

ROUTER_FILE = "router.json"
MATCHER_FILE = "matcher.safetensors"
TERMS_FILE = "terms.json"
SCHEMA = 1


@register_router
class UncertaintyRouter(Router):
    """Route by the base model's confidence, then by which experts match the query.

    Args:
        config: threshold, estimator, calibration, matcher, embedder, top-k, ``min_match_score``, mode.
        estimator: a :class:`ConfidenceEstimator` (default: the one ``config.estimator`` names).
        calibrator: maps raw scores to [0, 1]; until one is fitted the estimator's own map is used.
        matcher: an :class:`ExpertMatcher` (default: the one ``config.matcher`` names), filled with
            :meth:`add_expert` or by :func:`~adaptive_moe.routing.training.train_router`.
        embedder: for ``config.embedder == "minilm"``, the text encoder (made lazily).
        terms: a :class:`~adaptive_moe.routing.terms.TermMatcher` (default: a new, empty one), filled with
            :meth:`learn_terms`; used when ``config.term_match`` is on.
    """

    name = "uncertainty"

    def __init__(
        self,
        config: RouterConfig | None = None,
        *,
        estimator: ConfidenceEstimator | None = None,
        calibrator: Any = None,
        matcher: ExpertMatcher | None = None,
        embedder: Any = None,
        terms: TermMatcher | None = None,
    ) -> None:
        super().__init__(config, embedder=embedder)
        self.estimator = estimator or get_estimator(self.config.estimator)
        if self.config.mode == "pre" and self.estimator.needs_answer:
            raise ConfigError(
                f"router.mode 'pre' decides before any answer exists, but estimator {self.estimator.name!r} needs "
                "the answer; use a prompt-only estimator such as 'prompt_probe'"
            )
        self.calibrator = calibrator
        self.matcher = matcher or make_matcher(self.config.matcher)
        self.terms = terms if terms is not None else TermMatcher()

    # -- scoring -----------------------------------------------------------------------------------
    def confidence(self, raw: np.ndarray) -> np.ndarray:
        """Raw estimator scores -> confidence in [0, 1]."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.calibrator is not None:
            return np.clip(np.asarray(self.calibrator(raw), dtype=np.float64), 0.0, 1.0)
        return np.clip(self.estimator.to_confidence(raw), 0.0, 1.0)

    def score(self, query: Query) -> RouteScores:
        """Calibrated base confidence and (when it is below the threshold) each expert's match score."""
        return self.score_batch([query])[0]

    def score_batch(self, queries: list[Query], *, match_all: bool = False) -> list[RouteScores]:
        """Scores for many queries. Experts are matched only for queries the base is not confident
        about (the others go to the base whatever matches), unless ``match_all`` or the config's
        ``override_match_score`` is set (then every query is matched)."""
        views = [q.view for q in queries]
        if any(v is None for v in views):
            raise InvalidInputError("each query needs the base's signals (post) or prompt states (pre)")
        raw = self.estimator.score_batch(views)
        conf = self.confidence(raw)
        matches: list[dict[str, float]] = [{} for _ in queries]
        match_all = match_all or self.config.override_match_score is not None
        todo = [i for i, c in enumerate(conf) if match_all or c < self.config.threshold]
        if self.matcher.experts and todo:
            for i, m in zip(todo, self.match_scores([queries[i] for i in todo]), strict=True):
                matches[i] = m
        return [RouteScores(float(c), m, float(r)) for c, m, r in zip(conf, matches, raw, strict=True)]

    def route_batch(self, queries, *, match_all: bool = False):
        """Decisions for many queries at once (see :meth:`score_batch` for ``match_all``)."""
        return [self._decide(s) for s in self.score_batch(list(queries), match_all=match_all)]

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, folder: str | Path, *, overwrite: bool = True) -> Path:
        """Write ``router.json`` (config, estimator state, calibrator), ``matcher.safetensors`` and
        ``terms.json`` (each expert's vocabulary)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        state = {
            "schema": SCHEMA,
            "router": self.name,
            "config": self.config.to_dict(),
            "estimator": {"name": self.estimator.name, "state": self.estimator.state_dict()},
            "calibrator": None if self.calibrator is None else self.calibrator.to_dict(),
            "matcher": {"name": self.matcher.name, "settings": self.matcher.settings()},
        }
        with atomic_directory(folder, replace=overwrite) as tmp:
            atomic_write_text(tmp / ROUTER_FILE, json.dumps(state, indent=2))
            tensors = {k: np.ascontiguousarray(v) for k, v in self.matcher.tensors().items()}
            save_file(tensors, str(tmp / MATCHER_FILE))
            os.chmod(tmp / MATCHER_FILE, 0o644 & ~_umask())  # safetensors writes 0600
            atomic_write_text(tmp / TERMS_FILE, json.dumps(self.terms.to_dict()))
        return folder

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> UncertaintyRouter:
        """Read a router written by :meth:`save`."""
        from safetensors.numpy import load_file

        from ..uncertainty.calibration import Calibrator

        folder = Path(folder)
        if not (folder / ROUTER_FILE).is_file():
            raise ModelNotFoundError(f"no saved router in {str(folder)!r} (missing {ROUTER_FILE})")
        try:
            state = json.loads((folder / ROUTER_FILE).read_text())
            config = RouterConfig.from_dict(state["config"])
            estimator = get_estimator(state["estimator"]["name"])
            estimator.load_state_dict(state["estimator"]["state"])
            calibrator = None if state["calibrator"] is None else Calibrator.from_dict(state["calibrator"])
            matcher = make_matcher(state["matcher"]["name"], **state["matcher"]["settings"])
            matcher.load_tensors(load_file(str(folder / MATCHER_FILE)))
            terms_path = folder / TERMS_FILE  # routers saved before term matching have none: learnt on sync
            terms = TermMatcher.from_dict(json.loads(terms_path.read_text())) if terms_path.is_file() else None
        except (KeyError, ValueError, TypeError, OSError, InvalidInputError) as e:
            raise CorruptExpertError(f"cannot read the router saved in {str(folder)!r}: {e}") from None
        router = router_class(state.get("router", cls.name))
        return router(config, estimator=estimator, calibrator=calibrator, matcher=matcher, terms=terms, **kwargs)
