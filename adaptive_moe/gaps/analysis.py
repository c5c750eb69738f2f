"""Gap analysis: from the ledger's open gaps to candidate domains for new experts.

1. Every gap gets an embedding: the one recorded with it, else ``embed(query texts)``.
2. Embeddings are centred on a background mean when one is given (hidden states of a language model all
   point roughly the same way; general queries make a good background, as for the router's matcher)
   and normalised, so similarities are cosines.
3. Gaps that an existing expert scores at least ``nearly_covered`` are grouped by that expert: the
   expert covers the domain but not these questions, so it needs more data rather than a sibling.
4. The rest are clustered by average-linkage agglomerative clustering on cosine distance, cut where
   the mean distance between two groups passes ``distance_threshold``: no number of clusters to guess,
   a lone off-topic query stays alone, and the result does not depend on a random start. Groups
   smaller than ``min_cluster_size`` go to ``unclustered``; at most ``max_clusters`` groups, largest
   first. Above a few thousand gaps a seeded sample is clustered and the rest join the nearest group.
   The default threshold 0.7 was set on MiniLM question embeddings: mean cosine 0.37-0.81 within a
   topic, 0.03-0.12 across topics.
5. Each group is described by the queries nearest its centroid, TF-IDF keywords (its mean TF-IDF less
   that of all other gaps, English stop words removed) and an expert name made from the keywords,
   valid for the registry and unique among the groups and the known experts.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, missing_dependency
from ..experts.card import validate_expert_name
from ..utils.io import atomic_write_text
from .ledger import GapEntry, GapLedger

_MAX_POINTS = 3000  # agglomerative clustering holds an (n, n) distance matrix: 72 MB at this size
_N_REPRESENTATIVES, _N_KEYWORDS, _KNN = 5, 5, 3
_EXTRA_STOP_WORDS = {"does", "did", "tell", "know", "explain", "please", "mean", "means", "happened"}
_TOKEN = r"(?u)\b[^\W\d_][^\W_]+\b"  # words of 2+ characters starting with a letter: no bare numbers

ExpertScores = Callable[[np.ndarray], Sequence[Mapping[str, float]]]


@dataclass
class GapCluster:
    """A group of similar gaps: a candidate domain for a new expert, or gaps an expert nearly covers.

    Attributes:
        id: position in the report (0 = largest).
        size: number of gaps.
        entry_ids: the ledger ids of its gaps, ascending.
        mean_confidence: mean base confidence in [0, 1] of its gaps (None when none was recorded).
        representatives: up to 5 distinct queries nearest the group's centroid, nearest first.
        keywords: TF-IDF top terms of the group against the other gaps, strongest first.
        suggested_name: a valid expert name made from the keywords, unique in the report and unlike
            every known expert's name.
        nearest_expert: ``(name, mean match score in [0, 1])`` of the best existing expert, or None.
        nearly_covered: True when ``nearest_expert`` scored each gap at least ``nearly_covered``: grow
            that expert with these questions rather than make a new one.
    """

    id: int
    size: int
    entry_ids: list[int]
    mean_confidence: float | None
    representatives: list[str]
    keywords: list[str]
    suggested_name: str
    nearest_expert: tuple[str, float] | None = None
    nearly_covered: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["nearest_expert"] = (None if self.nearest_expert is None
                                 else {"name": self.nearest_expert[0], "score": self.nearest_expert[1]})  # fmt: skip
        return out


@dataclass
class GapReport:
    """What :func:`analyze_gaps` found. ``clusters`` are largest first; ``unclustered`` holds the ids of
    gaps in no reported group."""

    clusters: list[GapCluster] = field(default_factory=list)
    unclustered: list[int] = field(default_factory=list)
    n_gaps: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def candidates(self) -> list[GapCluster]:
        """Clusters no existing expert nearly covers: domains for new experts."""
        return [c for c in self.clusters if not c.nearly_covered]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"n_gaps": self.n_gaps, "clusters": [c.to_dict() for c in self.clusters],
                "unclustered": list(self.unclustered), "settings": dict(self.settings)}  # fmt: skip

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def _summary(self) -> str:
        near = len(self.clusters) - len(self.candidates)
        return (
            f"{_n(self.n_gaps, 'open gap')}: {_n(len(self.candidates), 'candidate domain')}, "
            f"{_n(near, 'group')} nearly covered by existing experts, {len(self.unclustered)} unclustered"
        )

    def __str__(self) -> str:
        lines = [self._summary()]
        if self.clusters:
            lines.append(f"{'#':>3}  {'size':>4}  {'conf':>4}  {'name':<24}  {'action':<22}  {'keywords':<32}  example")
        for c in self.clusters:
            conf = "-" if c.mean_confidence is None else f"{c.mean_confidence:.2f}"
            action = f"grow {c.nearest_expert[0]}" if c.nearly_covered and c.nearest_expert else "new expert"
            lines.append(f"{c.id:>3}  {c.size:>4}  {conf:>4}  {_cut(c.suggested_name, 24):<24}  {_cut(action, 22):<22}"
                         f"  {_cut(', '.join(c.keywords), 32):<32}  {_cut(c.representatives[0], 48)}")  # fmt: skip
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The report as Markdown."""
        lines = ["# Knowledge gaps", "", self._summary() + ".", ""]
        if self.clusters:
            lines += ["| # | suggested name | size | mean confidence | nearest expert | action | keywords |",
                      "|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in self.clusters:
            conf = "-" if c.mean_confidence is None else f"{c.mean_confidence:.2f}"
            near = "-" if c.nearest_expert is None else f"{c.nearest_expert[0]} ({c.nearest_expert[1]:.2f})"
            action = f"add data to {c.nearest_expert[0]}" if c.nearly_covered and c.nearest_expert else "new expert"
            cells = [str(c.id), f"`{c.suggested_name}`", str(c.size), conf, near, action, ", ".join(c.keywords)]
            lines.append("| " + " | ".join(_md(x) for x in cells) + " |")
        for c in self.clusters:
            lines += ["", f"## {c.id}. `{c.suggested_name}` ({c.size} gaps)", ""]
            lines += [f"- {_md(q)}" for q in c.representatives]
        if self.unclustered:
            lines += ["", f"Unclustered gap ids: {', '.join(map(str, self.unclustered))}"]
        return "\n".join(lines) + "\n"

    def write(self, folder: str | Path, name: str = "gaps") -> list[Path]:
        """Write ``{name}.json`` and ``{name}.md`` into ``folder`` (each atomically); returns the paths."""
        folder = Path(folder)
        paths = [folder / f"{name}.json", folder / f"{name}.md"]
        atomic_write_text(paths[0], self.to_json() + "\n")
        atomic_write_text(paths[1], self.to_markdown())
        return paths


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# -- inputs ----------------------------------------------------------------------------------------------
def _matrix(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    try:
        m = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}: expected an (n, dim) array of numbers, got {type(x).__name__}") from None
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] == 0:
        raise InvalidInputError(f"{what}: expected an (n, dim) array, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise InvalidInputError(f"{what}: contains NaN or infinite values")
    return m


def _gap_entries(entries: Any) -> list[GapEntry]:
    if isinstance(entries, GapLedger):
        return entries.entries(resolved=False)
    if isinstance(entries, (str, bytes)) or not hasattr(entries, "__iter__"):
        raise InvalidInputError(f"entries must be a GapLedger or a list of GapEntry, got {type(entries).__name__}")
    items = list(entries)
    bad = [type(e).__name__ for e in items if not isinstance(e, GapEntry)]
    if bad:
        raise InvalidInputError(f"entries must be GapEntry objects; got {', '.join(sorted(set(bad)))}")
    ids = [e.id for e in items]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("entries contain duplicate ids; every gap must appear once")
    return sorted(items, key=lambda e: e.id)


def _embeddings(items: list[GapEntry], embed: Callable[[list[str]], Any] | None) -> np.ndarray:
    missing = [i for i, e in enumerate(items) if e.embedding is None]
    if missing and embed is None:
        raise InvalidInputError(
            f"{len(missing)} of {len(items)} gaps have no embedding; pass embed=<callable: list[str] -> "
            "(n, dim) array>, the embedder the router records gaps with"
        )
    dims = {int(np.asarray(e.embedding).size) for e in items if e.embedding is not None}
    rows: list[np.ndarray | None] = [None if e.embedding is None else np.asarray(e.embedding, np.float64).ravel()
                                     for e in items]  # fmt: skip
    if missing:
        made = _matrix(embed([items[i].query for i in missing]), "embed(...) output")
        if made.shape[0] != len(missing):
            raise InvalidInputError(f"embed gave {made.shape[0]} embeddings for {len(missing)} queries")
        dims.add(made.shape[1])
        for i, row in zip(missing, made, strict=True):
            rows[i] = row
    if len(dims) > 1:
        raise InvalidInputError(f"gap embeddings have different dimensions {sorted(dims)}; use one embedder")
    return _matrix(np.stack(rows), "gap embeddings")


def _normalise(x: np.ndarray, center: np.ndarray | None) -> np.ndarray:
    x = x - center if center is not None else x
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _expert_scores(known: Any, x: np.ndarray, z: np.ndarray, center: np.ndarray | None) -> list[dict[str, float]]:
    """Per gap, each known expert's match score in [0, 1]."""
    if known is None:
        return [{} for _ in range(len(x))]
    if callable(known):  # a matcher's .scores: it normalises raw embeddings its own way
        out = [{str(k): float(v) for k, v in dict(row).items()} for row in known(x.astype(np.float32))]
        if len(out) != len(x):
            raise InvalidInputError(f"known_experts scores gave {len(out)} rows for {len(x)} gaps")
        bad = [v for row in out for v in row.values() if not 0.0 <= v <= 1.0]
        if bad:
            raise InvalidInputError(f"known_experts scores must lie in [0, 1]; got {bad[0]!r}")
        return out
    if not isinstance(known, Mapping):
        raise InvalidInputError("known_experts must map name -> (description, (m, dim) embeddings) or be a "
                                f"scores function; got {type(known).__name__}")  # fmt: skip
    cols = {}
    for name, value in known.items():
        examples = value[1] if isinstance(value, tuple) else value
        e = _matrix(examples, f"known_experts[{name!r}] embeddings")
        if e.shape[1] != x.shape[1]:
            raise InvalidInputError(f"known_experts[{name!r}] has {e.shape[1]}-dim embeddings; gaps have {x.shape[1]}")
        sims = z @ _normalise(e, center).T  # (n_gaps, m): as the KNN matcher, the mean of the nearest few
        k = min(_KNN, sims.shape[1])
        cols[str(name)] = np.clip(np.sort(sims, axis=1)[:, -k:].mean(1), 0.0, 1.0)
    return [{n: float(c[i]) for n, c in cols.items()} for i in range(len(x))]


# -- clustering ------------------------------------------------------------------------------------------
def _cluster(z: np.ndarray, threshold: float, seed: int) -> np.ndarray:
    """Labels (-1: in no group) of rows of normalised ``z`` by average-linkage cosine clustering."""
    n = len(z)
    if n <= 1:
        return np.zeros(n, dtype=int)
    try:
        from sklearn.cluster import AgglomerativeClustering
    except ImportError:
        raise missing_dependency("scikit-learn", extra="ml", purpose="gap clustering") from None
    sample = np.arange(n)
    if n > _MAX_POINTS:
        sample = np.sort(np.random.default_rng(seed).choice(n, _MAX_POINTS, replace=False))
    zs = z[sample]
    dist = np.clip(1.0 - zs @ zs.T, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    model = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                    distance_threshold=threshold)  # fmt: skip
    labels = np.full(n, -1, dtype=int)
    labels[sample] = model.fit_predict(dist)
    if len(sample) < n:  # the rest join the nearest group's centroid when it is within the threshold
        k = labels[sample].max() + 1
        cent = _normalise(np.stack([zs[labels[sample] == j].mean(0) for j in range(k)]), None)
        rest = np.setdiff1d(np.arange(n), sample)
        sims = z[rest] @ cent.T
        nearest = sims.argmax(1)
        labels[rest] = np.where(1.0 - sims[np.arange(len(rest)), nearest] <= threshold, nearest, -1)
    return labels


def _keyword_scores(texts: list[str]) -> tuple[Any, list[str]]:
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
    except ImportError:
        raise missing_dependency("scikit-learn", extra="ml", purpose="gap keywords") from None
    vec = TfidfVectorizer(stop_words=sorted(ENGLISH_STOP_WORDS | _EXTRA_STOP_WORDS), token_pattern=_TOKEN)
    try:
        tfidf = vec.fit_transform(texts)
    except ValueError:  # nothing but stop words and numbers
        return None, []
    return tfidf, list(vec.get_feature_names_out())


def _keywords(tfidf: Any, terms: list[str], members: np.ndarray) -> list[str]:
    if tfidf is None:
        return []
    inside = np.asarray(tfidf[members].mean(0)).ravel()
    others = np.setdiff1d(np.arange(tfidf.shape[0]), members)
    outside = np.asarray(tfidf[others].mean(0)).ravel() if len(others) else np.zeros_like(inside)
    score = inside - outside
    order = sorted((i for i in np.flatnonzero((inside > 0) & (score > 0))), key=lambda i: (-score[i], terms[i]))
    return [terms[i] for i in order[:_N_KEYWORDS]]


def _slug(word: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


def _name(keywords: list[str], taken: set[str]) -> str:
    """A registry-valid expert name from the keywords that is not in ``taken`` (lower-cased names)."""
    words = [s for s in map(_slug, keywords) if s]
    tries = [t[:48].strip("-") for t in ("-".join(words[:2]), "-".join(words[:3]))] if words else ["gap-domain"]
    tries += [f"{tries[0]}-{i}" for i in range(2, 10_000)]
    for candidate in tries:
        if candidate and candidate not in taken:
            taken.add(candidate)
            return validate_expert_name(candidate)
    raise AssertionError("unreachable: 10,000 numbered names are all taken")


# -- the analysis ----------------------------------------------------------------------------------------
def analyze_gaps(
    entries: GapLedger | Sequence[GapEntry],
    *,
    embed: Callable[[list[str]], Any] | None = None,
    known_experts: Mapping[str, Any] | ExpertScores | None = None,
    background: Any = None,
    min_cluster_size: int = 3,
    max_clusters: int = 20,
    nearly_covered: float | None = 0.35,
    distance_threshold: float = 0.7,
    seed: int = 0,
) -> GapReport:
    """Group open knowledge gaps into candidate domains (see the module docstring for the method).

    Args:
        entries: a :class:`GapLedger` (its open gaps are analysed) or a list of :class:`GapEntry`.
        embed: ``list[str] -> (n, dim)`` embeddings for gaps recorded without one.
        known_experts: existing experts, as ``{name: (domain description, (m, dim) embeddings of its
            example questions)}`` (scored as the KNN matcher does: mean cosine to the 3 nearest examples)
            or as a scores function ``(n, dim) embeddings -> list[{name: score in [0, 1]}]`` such as a
            router matcher's ``.scores``.
        background: ``(m, dim)`` embeddings of general queries (or their mean) to centre on; None: none.
        min_cluster_size: fewest gaps that make a candidate domain (smaller groups are unclustered).
        max_clusters: most groups reported, largest first (the gaps of the rest are unclustered).
        nearly_covered: a gap whose best expert scores at least this (in [0, 1]) is reported with that
            expert rather than clustered; None: never.
        distance_threshold: largest mean cosine distance (0 to 2) between two groups that are merged.
        seed: picks the sample clustered when there are more than 3,000 gaps.

    Returns:
        A :class:`GapReport`; an empty one when there are no open gaps.
    """
    for name, value, low in (("min_cluster_size", min_cluster_size, 1), ("max_clusters", max_clusters, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    if nearly_covered is not None and (isinstance(nearly_covered, bool) or not isinstance(nearly_covered, (int, float))
                                       or not 0.0 <= nearly_covered <= 1.0):  # fmt: skip
        raise InvalidInputError(f"nearly_covered must be in [0, 1] or None, got {nearly_covered!r}")
    if isinstance(distance_threshold, bool) or not isinstance(distance_threshold, (int, float)) or not (
            0.0 < distance_threshold <= 2.0):  # fmt: skip
        raise InvalidInputError(f"distance_threshold must be in (0, 2], got {distance_threshold!r}")
    settings = {
        "min_cluster_size": min_cluster_size,
        "max_clusters": max_clusters,
        "nearly_covered": nearly_covered,
        "distance_threshold": float(distance_threshold),
        "seed": seed,
        "centred": background is not None,
    }
    items = _gap_entries(entries)
    if not items:
        return GapReport(settings=settings)
    x = _embeddings(items, embed)  # (n, dim)
    center = None if background is None else _matrix(background, "background").mean(0)
    if center is not None and center.size != x.shape[1]:
        raise InvalidInputError(f"background has {center.size}-dim embeddings; gaps have {x.shape[1]}")
    z = _normalise(x, center)
    scores = _expert_scores(known_experts, x, z, center)
    known_names = {n.lower() for n in (known_experts if isinstance(known_experts, Mapping) else ())}
    known_names |= {n.lower() for row in scores for n in row}

    # Nearly covered gaps, grouped by their best expert (ties by name); the others are clustered.
    groups: list[tuple[np.ndarray, str | None]] = []
    near: dict[str, list[int]] = {}
    for i, row in enumerate(scores):
        best = max(sorted(row), key=row.__getitem__, default=None)
        if best is not None and nearly_covered is not None and row[best] >= nearly_covered:
            near.setdefault(best, []).append(i)
    groups += [(np.array(ix), name) for name, ix in near.items()]
    covered = {i for ix in near.values() for i in ix}
    rest = np.array([i for i in range(len(items)) if i not in covered], dtype=int)
    labels = _cluster(z[rest], float(distance_threshold), seed)
    unclustered = list(rest[labels < 0])
    for label in np.unique(labels[labels >= 0]):
        members = rest[labels == label]
        if len(members) >= min_cluster_size:
            groups.append((members, None))
        else:
            unclustered.extend(members)
    groups.sort(key=lambda g: (-len(g[0]), items[g[0].min()].id))
    for members, _ in groups[max_clusters:]:
        unclustered.extend(members)

    tfidf, terms = _keyword_scores([e.query for e in items])
    taken, clusters = set(known_names), []
    for k, (members, expert) in enumerate(groups[:max_clusters]):
        cent = _normalise(z[members].mean(0, keepdims=True), None)[0]
        near_first = sorted(members, key=lambda i: (-float(z[i] @ cent), items[i].id))
        reps = list(dict.fromkeys(" ".join(items[i].query.split()) for i in near_first))[:_N_REPRESENTATIVES]
        confs = [items[i].confidence for i in members if items[i].confidence is not None]
        mean_scores: dict[str, float] = {}
        for i in members:
            for n, v in scores[i].items():
                mean_scores[n] = mean_scores.get(n, 0.0) + v / len(members)
        best = expert or max(sorted(mean_scores), key=mean_scores.__getitem__, default=None)
        words = _keywords(tfidf, terms, members)
        clusters.append(GapCluster(
            id=k, size=len(members), entry_ids=sorted(items[i].id for i in members),
            mean_confidence=float(np.mean(confs)) if confs else None, representatives=reps, keywords=words,
            suggested_name=_name(words, taken), nearest_expert=None if best is None else (best, mean_scores[best]),
            nearly_covered=expert is not None,
        ))  # fmt: skip
    return GapReport(clusters, sorted(items[i].id for i in unclustered), len(items), settings)
