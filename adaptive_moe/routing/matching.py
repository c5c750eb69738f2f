"""Expert matchers: which experts cover a query, from query embeddings.

Embeddings come from the base model's hidden states mean-pooled over the user's words (free: the
generation pass already computed them) or from the MiniLM sentence encoder. Hidden states of a
language model all point roughly the same way, so a matcher first centres every embedding on a
background mean (general queries when given) and normalises it; scores are then cosine similarities,
clipped to [0, 1], or (``ClassifierMatcher``) the probabilities of a logistic-regression head trained on
the experts' examples against the background.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInputError, UnknownNameError
from ..utils.registry import Registry


def _as_matrix(embeddings: Any, what: str) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0:
        raise InvalidInputError(f"{what}: expected a non-empty (n, dim) array of embeddings, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidInputError(f"{what}: embeddings contain NaN or infinite values")
    return x


class ExpertMatcher(ABC):
    """Scores how well each registered expert covers a query. Subclass and implement :meth:`_score`."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._examples: dict[str, np.ndarray] = {}
        self._background: np.ndarray | None = None
        self._center: np.ndarray | None = None

    # -- contents ----------------------------------------------------------------------------------
    @property
    def experts(self) -> list[str]:
        """Names of the experts the matcher knows, sorted."""
        return sorted(self._examples)

    @property
    def dim(self) -> int | None:
        """Embedding dimension, once any embedding was added."""
        for x in self._examples.values():
            return x.shape[1]
        return None if self._background is None else self._background.shape[1]

    @property
    def background(self) -> np.ndarray | None:
        """Embeddings of queries no expert covers (the centre of the space), if set."""
        return self._background

    def set_background(self, embeddings: Any) -> None:
        """Embeddings of queries no expert covers (general questions): the centre of the space."""
        x = _as_matrix(embeddings, "background")
        self._check_dim(x)
        self._background = x
        self._refresh()

    def add(self, name: str, embeddings: Any) -> None:
        """Add (or replace) an expert with embeddings of queries it covers (e.g. its training questions)."""
        x = _as_matrix(embeddings, f"examples of expert {name!r}")
        self._check_dim(x, name)
        self._examples[name] = x
        self._refresh()

    def remove(self, name: str) -> None:
        """Forget expert ``name``."""
        if name not in self._examples:
            raise UnknownNameError("expert in the matcher", name, self._examples)
        del self._examples[name]
        self._refresh()

    def _check_dim(self, x: np.ndarray, name: str | None = None) -> None:
        dim = self.dim
        if dim is not None and x.shape[1] != dim and not (name is not None and list(self._examples) == [name]):
            raise InvalidInputError(f"embeddings have {x.shape[1]} dimensions; the matcher holds {dim}-dim ones")

    def _refresh(self) -> None:
        pool = self._background if self._background is not None else (
            np.concatenate(list(self._examples.values())) if self._examples else None)  # fmt: skip
        self._center = None if pool is None else pool.mean(0)
        self._fit()

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Rows centred on the background and scaled to unit length."""
        x = x - self._center if self._center is not None else x
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)

    # -- scoring -------------------------------------------------------------------------------------
    def scores(self, embeddings: Any) -> list[dict[str, float]]:
        """Per query (rows of ``embeddings``), a score in [0, 1] for every expert."""
        x = _as_matrix(embeddings, "queries")
        if not self._examples:
            return [{} for _ in range(x.shape[0])]
        if x.shape[1] != self.dim:
            raise InvalidInputError(f"query embeddings have {x.shape[1]} dimensions; the matcher's have {self.dim}")
        s = np.clip(self._score(self.normalise(x)), 0.0, 1.0)
        return [{name: float(s[i, j]) for j, name in enumerate(self.experts)} for i in range(x.shape[0])]

    def _fit(self) -> None:
        """Recompute whatever :meth:`_score` needs after the contents changed."""
        return None

    @abstractmethod
    def _score(self, queries: np.ndarray) -> np.ndarray:
        """``(n, n_experts)`` similarities (columns in :attr:`experts` order) of normalised queries."""

    # -- persistence -----------------------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        """The matcher's arrays for saving (safetensors)."""
        out = {f"expert/{n}": x for n, x in self._examples.items()}
        if self._background is not None:
            out["background"] = self._background
        return out

    def load_tensors(self, tensors: dict[str, Any]) -> None:
        """Restore arrays written by :meth:`tensors`."""
        self._examples = {k.split("/", 1)[1]: np.asarray(v, dtype=np.float32) for k, v in tensors.items()
                          if k.startswith("expert/")}  # fmt: skip
        self._background = np.asarray(tensors["background"], dtype=np.float32) if "background" in tensors else None
        self._refresh()

    def settings(self) -> dict[str, Any]:
        """Constructor settings for saving (``make_matcher(name, **settings)`` rebuilds it)."""
        return {}


class CentroidMatcher(ExpertMatcher):
    """Cosine similarity to each expert's centroid (mean of its normalised examples)."""

    name = "centroid"

    def _fit(self) -> None:
        if not self._examples:
            self._centroids = None
            return
        c = np.stack([self.normalise(self._examples[n]).mean(0) for n in self.experts])
        self._centroids = c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-8)

    def _score(self, queries: np.ndarray) -> np.ndarray:
        return queries @ self._centroids.T


class KNNMatcher(ExpertMatcher):
    """Mean cosine similarity to each expert's ``k`` nearest examples: an expert covers a query that
    resembles some of its training questions (say, ones about the same entity), not only their average."""

    name = "knn"

    def __init__(self, k: int = 3) -> None:
        if not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        self.k = k
        super().__init__()

    def _fit(self) -> None:
        self._normalised = {n: self.normalise(x) for n, x in self._examples.items()}

    def _score(self, queries: np.ndarray) -> np.ndarray:
        cols = []
        for name in self.experts:
            sims = queries @ self._normalised[name].T  # (n, m)
            k = min(self.k, sims.shape[1])
            cols.append(np.sort(sims, axis=1)[:, -k:].mean(1))
        return np.stack(cols, axis=1)

    def settings(self) -> dict[str, Any]:
        """Constructor settings for saving (``k``)."""
        return {"k": self.k}


class ClassifierMatcher(ExpertMatcher):
    """A trained classifier head: multinomial logistic regression (scikit-learn) over the centred,
    normalised embeddings, one class per expert (its examples) plus a "none" class (the background),
    so that general queries can be told apart from every expert, not only the experts from each other.

    Score of an expert = predicted probability of its class, in [0, 1] (higher = better covered).
    Classes are weighted inversely to their size (a large background does not swamp small experts).
    Without a background the probabilities sum to 1 over the experts, so every query leans to some
    expert: set one. The head is refitted whenever an expert or the background changes, and on load
    from the stored examples (lbfgs with a fixed ``random_state``: the same fit every time).

    With a single expert and no background there is nothing to classify against, and centring on the
    expert's own mean would leave its centroid pointing nowhere; the score is then the cosine between
    the un-centred query and the expert's centroid, clipped at 0 (as :class:`CentroidMatcher` without
    centring).

    Args:
        C: inverse regularisation strength of the logistic regression (larger: sharper probabilities).
    """

    name = "classifier"

    def __init__(self, C: float = 1.0) -> None:
        if isinstance(C, bool) or not isinstance(C, (int, float)) or not np.isfinite(C) or C <= 0:
            raise InvalidInputError(f"C must be a positive number, got {C!r}")
        self.C = float(C)
        self._model: Any = None
        self._centroid: np.ndarray | None = None
        super().__init__()

    def _fit(self) -> None:
        self._model, self._centroid = None, None
        names = self.experts
        if not names:
            return
        if len(names) == 1 and self._background is None:
            self._center = None  # the fallback: plain cosine to the centroid (see the class docstring)
            c = self.normalise(self._examples[names[0]]).mean(0)
            self._centroid = c / max(float(np.linalg.norm(c)), 1e-8)
            return
        from sklearn.linear_model import LogisticRegression

        parts = [self._examples[n] for n in names] + ([self._background] if self._background is not None else [])
        x = self.normalise(np.concatenate(parts))  # (sum of rows, dim)
        y = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])  # expert i; len(names): "none"
        self._model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000, random_state=0)
        self._model.fit(x.astype(np.float64), y)

    def _score(self, queries: np.ndarray) -> np.ndarray:
        if self._model is None:
            return (queries @ self._centroid)[:, None]
        proba = self._model.predict_proba(queries.astype(np.float64))  # columns: classes 0..n_experts(-1: none)
        return proba[:, : len(self.experts)]

    def settings(self) -> dict[str, Any]:
        """Constructor settings for saving (``C``)."""
        return {"C": self.C}


MATCHERS: Registry[type[ExpertMatcher]] = Registry("matcher", ExpertMatcher)
for _cls in (CentroidMatcher, KNNMatcher, ClassifierMatcher):
    MATCHERS.register(_cls)


def register_matcher(cls: type[ExpertMatcher], *, overwrite: bool = False) -> type[ExpertMatcher]:
    """Register a matcher class under its ``name`` (usable as a class decorator); see
    :meth:`~adaptive_moe.utils.registry.Registry.register`."""
    return MATCHERS.register(cls, overwrite=overwrite)


def make_matcher(name: str, **settings: Any) -> ExpertMatcher:
    """A new matcher of the class registered as ``name`` (``"knn"``, ``"centroid"``, ``"classifier"``, ...)."""
    return MATCHERS.get(name)(**settings)
