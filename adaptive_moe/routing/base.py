"""Routers: from what the base model showed about a query to a route.

A :class:`Router` implements one method, :meth:`Router.score`, returning the base model's calibrated
confidence and a match score per expert; the concrete :meth:`Router.route` turns those into a
:class:`RouteDecision` with the config's threshold, ``min_match_score`` and ``top_k``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..config import RouterConfig
from ..errors import InvalidInputError, ModelNotFoundError
from ..utils.registry import Registry

if TYPE_CHECKING:
    from .matching import ExpertMatcher
    from .terms import TermMatcher

ROUTES = ("base", "expert", "gap", "abstain")


@dataclass
class Query:
    """What a router sees of one query.

    Attributes:
        prompt: the prompt as given (a string or chat messages).
        signals: the base answer's :class:`~adaptive_moe.model.generation.GenerationSignals` (``post``).
        states: the prompt's :class:`~adaptive_moe.model.generation.PromptStates` (``pre``).
    """

    prompt: Any
    signals: Any = None
    states: Any = None

    @property
    def text(self) -> str:
        """The user's words: the string, or the last user message of a conversation."""
        if isinstance(self.prompt, str):
            return self.prompt
        users = [m["content"] for m in self.prompt if m.get("role") == "user"]
        return users[-1] if users else str(self.prompt[-1].get("content", ""))

    @property
    def view(self) -> Any:
        """The signals when there are any, else the prompt states."""
        return self.signals if self.signals is not None else self.states


@dataclass
class RouteScores:
    """What :meth:`Router.score` returns: calibrated base confidence in [0, 1] (``None`` when the router
    does not judge the base) and a match score in [0, 1] per expert."""

    confidence: float | None
    expert_scores: dict[str, float] = field(default_factory=dict)
    raw_confidence: float | None = None


@dataclass
class RouteDecision:
    """Where a query goes and why.

    Attributes:
        route: ``"base"`` | ``"expert"`` | ``"gap"`` | ``"abstain"``.
        confidence: the base model's calibrated confidence in [0, 1] (higher = more confident).
        experts: ``(name, weight)`` pairs, weights summing to 1 (empty unless route is ``"expert"``).
        reason: one sentence a person can read.
        expert_scores: every expert's match score, for attribution and gap analysis.
        mode: ``"post"`` (decided after the base answered) or ``"pre"`` (from the prompt alone).
    """

    route: str
    confidence: float | None
    experts: list[tuple[str, float]] = field(default_factory=list)
    reason: str = ""
    expert_scores: dict[str, float] = field(default_factory=dict)
    mode: str = "post"
    raw_confidence: float | None = None

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise InvalidInputError(f"route {self.route!r} is not one of {ROUTES}")

    @property
    def best_expert(self) -> tuple[str, float] | None:
        """The highest-scoring expert, matched or not (gaps record it)."""
        if not self.expert_scores:
            return None
        name = max(self.expert_scores, key=self.expert_scores.__getitem__)
        return name, self.expert_scores[name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["experts"] = [list(e) for e in self.experts]
        return out


class Router(ABC):
    """Base class of routers. Subclass it, implement :meth:`score`, and :func:`register_router` it to
    select it by name (``router.name`` is the registry key).

    What the facade (:class:`~adaptive_moe.AdaptiveMoE`) asks of a router, each with a default here, so a
    subclass overrides only what it does differently:

    - :meth:`score` (required) and :meth:`route` / :meth:`route_batch`: the decision;
    - :attr:`matcher`, :attr:`learns_experts`, :meth:`add_expert`, :meth:`remove_expert`, :attr:`experts`:
      how the router learns which queries an expert covers (by default, embeddings of example questions
      in an :class:`~adaptive_moe.routing.matching.ExpertMatcher`; a router without one ignores them);
    - :attr:`terms` and :meth:`learn_terms`: the words of each expert's examples, so that a query naming a
      rare word of an expert's documents matches it (``config.term_match``);
    - :meth:`match_scores`: per query, each expert's match score (the larger of the two matchers');
    - :meth:`embed`: the query embeddings matching and gap analysis use (``config.embedder``);
    - :meth:`save` / :meth:`load`: persistence in the workspace (by default nothing is saved and the facade
      builds a new router from the config at each start).
    """

    name: ClassVar[str] = ""
    #: the expert matcher that :meth:`add_expert` fills (``None``: this router knows its experts otherwise)
    matcher: ExpertMatcher | None = None
    #: each expert's vocabulary (:meth:`learn_terms`); ``None``: this router does not match by words
    terms: TermMatcher | None = None

    def __init__(self, config: RouterConfig | None = None, *, embedder: Any = None) -> None:
        self.config = config or RouterConfig()
        self.config.validate()
        self._embedder = embedder

    @property
    def mode(self) -> str:
        """``"post"`` (decide after the base answered) or ``"pre"`` (from the prompt alone)."""
        return self.config.mode

    # -- experts -------------------------------------------------------------------------------------
    @property
    def learns_experts(self) -> bool:
        """Whether :meth:`add_expert` uses example embeddings (true when the router has a matcher); the
        facade embeds an expert's example questions only for a router that does."""
        return self.matcher is not None

    @property
    def experts(self) -> list[str]:
        """Names of the experts the router can send queries to."""
        return self.matcher.experts if self.matcher is not None else []

    def add_expert(self, name: str, example_embeddings: Any) -> None:
        """Learn that expert ``name`` covers queries like these (rows from :meth:`embed`)."""
        if self.matcher is not None:
            self.matcher.add(name, example_embeddings)

    def learn_terms(self, name: str, texts: Sequence[str]) -> None:
        """Learn the vocabulary of expert ``name`` from texts it covers (its example questions and passages)."""
        if self.terms is not None:
            self.terms.add(name, texts)

    def remove_expert(self, name: str) -> None:
        """Forget expert ``name``."""
        if self.matcher is not None and name in self.matcher.experts:
            self.matcher.remove(name)
        if self.terms is not None:
            self.terms.discard(name)

    def match_scores(self, queries: Sequence[Query], embeddings: Any = None) -> list[dict[str, float]]:
        """Per query, a match score in [0, 1] for every expert the matcher knows: the embedding matcher's
        score, raised to the term score when the query names a rare word of the expert's examples
        (``config.term_match``). ``embeddings``: the queries' rows from :meth:`embed`, when already made."""
        queries = list(queries)
        if self.matcher is None or not self.matcher.experts or not queries:
            return [{} for _ in queries]
        dense = self.matcher.scores(self.embed(queries) if embeddings is None else embeddings)
        if self.terms is None or not getattr(self.config, "term_match", False) or not self.terms.experts:
            return dense
        lexical = self.terms.scores([q.text for q in queries])
        return [{n: max(v, t.get(n, 0.0)) for n, v in d.items()} for d, t in zip(dense, lexical, strict=True)]

    def embed(self, queries: Sequence[Query]) -> np.ndarray:
        """Query embeddings for matching, one row per query: the base's hidden states over the user's words
        (``config.embedder: base``) or the text encoder ``config.embedder`` names (MiniLM by default)."""
        queries = list(queries)
        if self.config.embedder == "base":
            rows = []
            for q in queries:
                hidden = getattr(q.view, "query_hidden", None)
                if hidden is None:
                    raise InvalidInputError("the router needs the base's signals or prompt states for each query")
                rows.append(np.asarray(hidden, dtype=np.float32))
            return np.stack(rows)
        return np.asarray(self.embedder.encode([q.text for q in queries]), dtype=np.float32)

    @property
    def embedder(self) -> Any:
        """The text encoder ``config.embedder`` names, made on first use."""
        if self._embedder is None:
            from ..model.encoders import make_embedder

            self._embedder = make_embedder(self.config.embedder)
        return self._embedder

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path | None:
        """Write the router to ``folder`` so :meth:`load` reads it back; returns the folder, or ``None``
        when the router keeps no state worth saving (the default)."""
        return None

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> Router:
        """Read a router written by :meth:`save`; routers that save nothing cannot be loaded."""
        raise ModelNotFoundError(f"{cls.__name__} saves no state, so there is nothing to load from {str(folder)!r}")

    @abstractmethod
    def score(self, query: Query) -> RouteScores:
        """Base confidence and per-expert match scores for one query."""

    def route(self, query: Query) -> RouteDecision:
        """Decide: confident base (confidence >= threshold; a threshold of 1.0 trusts the base never) →
        ``"base"``, unless an expert matches the query at least ``override_match_score`` (when set);
        otherwise the top-k experts whose match score reaches ``min_match_score`` (and is above 0: a
        score of 0 covers nothing) → ``"expert"``; otherwise → ``"gap"``."""
        return self._decide(self.score(query))

    def matched_experts(self, scores: dict[str, float]) -> list[tuple[str, float]]:
        """The experts of ``scores`` (name -> match score) that cover a query: the ``top_k`` best whose score
        reaches ``min_match_score`` (and is above 0), best first."""
        cfg = self.config
        return sorted(((n, v) for n, v in scores.items() if v >= cfg.min_match_score and v > 0),
                      key=lambda item: (-item[1], item[0]))[: cfg.top_k]  # fmt: skip

    def _decide(self, s: RouteScores) -> RouteDecision:
        cfg = self.config
        if s.confidence is not None and not 0.0 <= s.confidence <= 1.0:
            raise InvalidInputError(f"{type(self).__name__}.score gave confidence {s.confidence!r}, outside [0, 1]")
        common = {"confidence": s.confidence, "expert_scores": dict(s.expert_scores), "mode": self.mode,
                  "raw_confidence": s.raw_confidence}  # fmt: skip
        matched = self.matched_experts(s.expert_scores)
        if s.confidence is not None and s.confidence >= cfg.threshold and cfg.threshold < 1.0:  # 1.0: never the base
            override = cfg.override_match_score
            if override is None or not matched or matched[0][1] < max(override, 1e-9):
                return RouteDecision("base", reason=f"base confidence {s.confidence:.2f} >= threshold "
                                     f"{cfg.threshold:.2f}", **common)  # fmt: skip
            low = (f"base confidence {s.confidence:.2f} >= {cfg.threshold:.2f}, but the query matches an expert "
                   f">= {override:.2f}")  # fmt: skip
        elif s.confidence is None:
            low = "no base score"
        else:
            low = f"base confidence {s.confidence:.2f} < {cfg.threshold:.2f}"
        if matched:
            total = sum(v for _, v in matched)
            experts = [(n, v / total) for n, v in matched]
            names = ", ".join(f"{n} ({v:.2f})" for n, v in matched)
            return RouteDecision("expert", experts=experts, reason=f"{low}; matched {names}", **common)
        best = max(s.expert_scores.items(), key=lambda item: item[1], default=None)
        near = f"; best expert {best[0]} scored {best[1]:.2f} < {cfg.min_match_score:.2f}" if best else "; no experts"
        return RouteDecision("gap", reason=f"{low}{near}", **common)

    def route_batch(self, queries: Sequence[Query]) -> list[RouteDecision]:
        """:meth:`route` for each query (override to decide a batch at once)."""
        return [self.route(q) for q in queries]


ROUTERS: Registry[type[Router]] = Registry("router", Router)


def register_router(cls: type[Router], *, overwrite: bool = False) -> type[Router]:
    """Register a router class under its ``name`` (usable as a class decorator); see
    :meth:`~adaptive_moe.utils.registry.Registry.register`."""
    return ROUTERS.register(cls, overwrite=overwrite)


def router_class(name: str) -> type[Router]:
    """The router class registered as ``name``."""
    return ROUTERS.get(name)


def load_saved_router(folder: str | Path, default: str) -> Router:
    """The router saved in ``folder`` by :meth:`Router.save`, of the class its ``router.json`` names
    (``default`` when it names none)."""
    import json

    name = json.loads((Path(folder) / "router.json").read_text(encoding="utf-8")).get("router", default)
    return router_class(name).load(folder)


def list_routers() -> list[str]:
    """Names of the registered routers, sorted."""
    return ROUTERS.names()
