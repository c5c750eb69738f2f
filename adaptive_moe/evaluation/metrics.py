"""Router evaluation metrics on numpy arrays: how well a confidence ranks right and wrong base answers, how
well it is calibrated, and how much of the gap to a stronger route a router recovers per query sent onward.

Conventions: ``confidence`` is higher = more confident (the base answer is more likely right), any real scale
unless a metric says [0, 1]; ``correct`` is bool or 0/1 (1 = the base answer is right); a quality is any real
score, higher = better (correctness is a quality). For routing, ``route_score`` is higher = send onward first
(e.g. ``1 - confidence``).

Ties in a score are averaged: wherever a curve cuts through a group of equal scores, it takes the expected
value over every order of that group (as AUROC counts a tied pair as half right), so no metric depends on how
the sort happens to break ties.

References: LM-Polygraph's ``ue_metrics`` (PRR, risk-coverage) and RouteLLM's ``evals/evaluate.py`` (APGR,
call-performance threshold); each function's docstring says how it matches them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..utils.validation import as_finite, as_labels

__all__ = [
    "apgr",
    "aurc",
    "auroc",
    "bootstrap_ci",
    "ece",
    "prr",
    "risk_coverage_curve",
    "routing_curve",
    "share_for_gain",
]


# ----------------------------------------------------------------------------------------------------------------
# Input checks


def _as_values(values: Any, name: str) -> np.ndarray:
    return as_finite(values, name)


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise InvalidInputError(f"inputs must have one entry per query; got different lengths ({shown})")


def _scores_and_labels(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    c, y = _as_values(confidence, "confidence"), as_labels(correct)
    _same_length(confidence=c, correct=y)
    return c, y


def _tie_averaged(key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` sorted by ``key`` descending, each replaced by the mean over its group of equal keys.

    Cumulative sums of the result are the expected cumulative sums over a uniformly random order within ties.
    """
    order = np.argsort(-key, kind="stable")
    k, v = key[order], values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(k) != 0) + 1]  # (G,) first index of each tie group
    counts = np.diff(np.r_[starts, k.size])  # (G,)
    means = np.add.reduceat(v, starts) / counts
    return np.repeat(means, counts)


# ----------------------------------------------------------------------------------------------------------------
# Ranking and calibration


def auroc(confidence: Any, correct: Any) -> float:
    """Area under the ROC curve of ``confidence`` predicting that the base answer is right, in [0, 1].

    1.0: every right answer is more confident than every wrong one; 0.5: no better than chance; 0.0: inverted.
    Ties count half. Needs both right and wrong answers. Computed as the Mann-Whitney statistic from average
    ranks, equal to scikit-learn's ``roc_auc_score`` (checked in the tests) and ~50x faster, which matters
    inside :func:`bootstrap_ci`.
    """
    c, y = _scores_and_labels(confidence, correct)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        which = "right" if n_neg == 0 else "wrong"
        raise InvalidInputError(f"AUROC needs both right and wrong answers; all {y.size} are {which}")
    order = np.argsort(c, kind="stable")
    cs = c[order]
    starts = np.r_[0, np.flatnonzero(np.diff(cs) != 0) + 1]  # (G,) first position of each tie group
    ends = np.r_[starts[1:], cs.size]  # (G,) one past the last
    ranks = np.empty(c.size)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)  # 1-based average rank within ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def prr(confidence: Any, quality: Any, max_rejection: float = 1.0) -> float:
    """Prediction-Rejection Ratio of ``confidence`` against per-query ``quality`` (higher = better; correctness
    as 0/1 or bool, or any quality score; pass ``-error`` for an error). 1.0: ranks as well as the quality
    itself; 0.0: no better than random; negative: worse than random.

    Definition (LM-Polygraph's ``PredictionRejectionArea(max_rejection)`` normalised by its oracle and random
    baselines, ``(raw - random) / (oracle - random)``): reject the least confident queries one at a time; after
    ``j`` rejections the curve's value is the mean quality of the ``n - j`` kept. The raw score is the mean of
    that curve over ``j = 0 .. int(max_rejection * n) - 1`` (the area under the prediction-rejection curve up to
    ``max_rejection``). The oracle rejects by quality itself (the best possible curve); the random baseline is
    the flat line at the mean quality. PRR = (area between random and the confidence's curve) / (area between
    random and the oracle's curve).

    Differences, none of which change the value beyond noise: LM-Polygraph averages 1000 random shuffles for
    the random baseline where this uses their exact expectation, the mean quality; its min-max normalisation of
    the quality cancels in the ratio; ties in ``confidence`` are averaged (see the module docstring) where
    LM-Polygraph's ``argsort`` breaks them arbitrarily.

    Raises :class:`InvalidInputError` when every quality is equal (oracle = random: PRR is undefined) or when
    ``max_rejection`` is outside (0, 1] or rejects no query.
    """
    c, q = _as_values(confidence, "confidence"), _as_values(quality, "quality")
    _same_length(confidence=c, quality=q)
    if not (0.0 < max_rejection <= 1.0):
        raise InvalidInputError(f"max_rejection: {max_rejection!r} is out of range; allowed: (0, 1]")
    n = c.size
    n_rej = int(max_rejection * n)
    if n_rej < 1:
        raise InvalidInputError(f"max_rejection={max_rejection} rejects no query out of {n}; raise it or add data")
    if np.ptp(q) == 0:
        raise InvalidInputError(f"PRR needs queries of different quality; all {n} have quality {q[0]}")

    kept = np.arange(n, n - n_rej, -1)  # (n_rej,) queries kept after j = 0 .. n_rej - 1 rejections

    def area(sorted_quality: np.ndarray) -> float:
        # sorted_quality: most confident first, so the kept set after j rejections is its first n - j entries
        return float(np.mean(np.cumsum(sorted_quality)[kept - 1] / kept))

    ue_area = area(_tie_averaged(c, q))
    oracle_area = area(np.sort(q)[::-1])
    random_area = float(q.mean())
    return (ue_area - random_area) / (oracle_area - random_area)


def ece(confidence: Any, correct: Any, n_bins: int = 10) -> float:
    """Expected calibration error of ``confidence`` (in [0, 1]) as a probability that the base answer is right.

    ``n_bins`` equal-width bins over [0, 1] (the last one closed: a confidence of 1.0 falls in it); ECE is the
    weighted mean over non-empty bins of ``|accuracy - mean confidence|``, weights = share of queries in the
    bin. 0.0 when every bin's accuracy equals its mean confidence.
    """
    c, y = _scores_and_labels(confidence, correct)
    if c.min() < 0.0 or c.max() > 1.0:
        raise InvalidInputError(
            f"confidence: ECE needs confidences in [0, 1] (calibrated), got values in [{c.min()}, {c.max()}]"
        )
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InvalidInputError(f"n_bins: expected a positive integer, got {n_bins!r}")
    bins = np.minimum((c * n_bins).astype(np.int64), n_bins - 1)  # (n,) bin index; 1.0 goes to the last bin
    conf_sum = np.bincount(bins, weights=c, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / c.size)  # sum_b (n_b / n) |acc_b - conf_b|


def risk_coverage_curve(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk against coverage when the base answers its most confident queries first.

    Returns ``(coverages, risks)``, both ``(n,)``: ``coverages[k - 1] = k / n`` and ``risks[k - 1]`` = error
    rate among the ``k`` most confident queries (ties averaged). ``risks[-1]`` is the overall error rate.
    """
    c, y = _scores_and_labels(confidence, correct)
    n = c.size
    k = np.arange(1, n + 1)
    risks = np.cumsum(_tie_averaged(c, (~y).astype(np.float64))) / k
    return k / n, risks


def aurc(confidence: Any, correct: Any) -> float:
    """Area under the risk-coverage curve (Geifman & El-Yaniv): the mean of :func:`risk_coverage_curve`'s risks
    over the coverages 1/n .. 1. Lower is better; LM-Polygraph's ``rcc-auc`` averages the same curve."""
    return float(risk_coverage_curve(confidence, correct)[1].mean())


# ----------------------------------------------------------------------------------------------------------------
# Routing: quality recovered against the share of queries sent onward


def _gain_curve(route_score: Any, base_quality: Any, strong_quality: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Shares ``k / n`` (k = 0..n), the cumulative per-query gain of routing the top-k, and the base's mean quality."""
    s = _as_values(route_score, "route_score")
    qb, qs = _as_values(base_quality, "base_quality"), _as_values(strong_quality, "strong_quality")
    _same_length(route_score=s, base_quality=qb, strong_quality=qs)
    n = s.size
    gain = np.r_[0.0, np.cumsum(_tie_averaged(s, qs - qb))] / n  # (n + 1,) mean-quality gain after routing top k
    return np.arange(n + 1) / n, gain, float(qb.mean())


def _pgr(route_score: Any, base_quality: Any, strong_quality: Any) -> tuple[np.ndarray, np.ndarray]:
    shares, gain, _ = _gain_curve(route_score, base_quality, strong_quality)
    total = gain[-1]  # q_strong - q_weak
    if not total > 0:
        raise InvalidInputError(
            f"the strong route's mean quality must exceed the base's to measure the gap recovered; strong - base = "
            f"{total:.6g}"
        )
    return shares, gain / total


def routing_curve(route_score: Any, base_quality: Any, strong_quality: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean quality of the routed system as the share sent onward goes from 0 to 1.

    ``route_score``: higher = send onward first; ``base_quality`` / ``strong_quality``: per query, the quality of
    the base's answer and of the onward route's (expert or stronger model) answer. Returns ``(shares, quality)``,
    both ``(n + 1,)``: ``shares[k] = k / n``, ``quality[k]`` = mean quality when the ``k`` highest-scored
    queries go onward and the rest stay with the base (ties averaged). ``quality[0]`` is the base's mean,
    ``quality[-1]`` the strong route's.
    """
    shares, gain, q_weak = _gain_curve(route_score, base_quality, strong_quality)
    return shares, q_weak + gain


def apgr(route_score: Any, base_quality: Any, strong_quality: Any) -> float:
    """Average Performance Gap Recovered (RouteLLM): the area under PGR against the share routed, over [0, 1].

    ``PGR(share) = (q(share) - q_weak) / (q_strong - q_weak)``, with ``q`` from :func:`routing_curve`
    (``q_weak``: everything on the base; ``q_strong``: everything onward). Random routing scores 0.5 in
    expectation; no router can reach 1.0 (that would need the whole gap recovered at share 0): the oracle, which
    routes first exactly the queries where onward is better, scores ``1 - w / 2`` with 0/1 qualities, where
    ``w`` is the share of queries it needs to route (onward right, base wrong) and the onward route is never
    worse.

    Matches RouteLLM's ``apgr_metric`` (``evals/evaluate.py``): ``(AUC - weak_auc) / (strong_auc - weak_auc)``
    with trapezoid areas over the evaluated shares. RouteLLM evaluates about 10 shares (``pd.qcut`` cut-offs of
    the router's scores); this evaluates every share ``k / n``, the same area on the finest grid. Raises
    :class:`InvalidInputError` unless the strong route's mean quality exceeds the base's.
    """
    shares, pgr = _pgr(route_score, base_quality, strong_quality)
    return float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(shares)) / 2)  # trapezoid rule


def share_for_gain(route_score: Any, base_quality: Any, strong_quality: Any, fraction: float = 0.5) -> float:
    """The smallest share of queries routed onward that recovers ``fraction`` of the quality gap (RouteLLM's
    call-performance threshold, "CPT(50%)" for ``fraction=0.5``), as a share in [0, 1].

    The first point where the piecewise-linear PGR curve (see :func:`apgr`) reaches ``fraction``, interpolating
    linearly between consecutive shares ``k / n``. RouteLLM's ``pct_call_metric`` computes ``np.interp(target,
    accuracy, strong_percentage)`` on its ~10 evaluated shares and reports a percentage; that equals this first
    crossing when the curve is increasing, and this stays right when it is not. Always <= 1 (PGR is 1 at share 1).
    """
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise InvalidInputError(f"fraction: expected a number in [0, 1], got {fraction!r}") from None
    if not (0.0 <= f <= 1.0):
        raise InvalidInputError(f"fraction: {fraction!r} is out of range; allowed: [0, 1]")
    shares, pgr = _pgr(route_score, base_quality, strong_quality)
    k = int(np.argmax(pgr >= f - 1e-12))  # first share reaching the target (exists: pgr[-1] == 1)
    if k == 0:
        return 0.0
    lo, hi = pgr[k - 1], pgr[k]
    return float(shares[k - 1] + (f - lo) / (hi - lo) * (shares[k] - shares[k - 1]))


# ----------------------------------------------------------------------------------------------------------------
# Uncertainty of any metric


def bootstrap_ci(
    metric_fn: Callable[..., float], *arrays: Any, n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` for ``metric_fn(*arrays)`` at confidence ``level``.

    Each of ``n`` resamples draws rows with replacement, the same rows from every array (a query's confidence
    stays with its label), from ``np.random.default_rng(seed)``. A resample on which the metric is undefined
    (raises :class:`InvalidInputError`, e.g. AUROC on a resample with one class, or returns a non-finite value)
    is skipped; if more than half are, the metric is too unstable on this data and this raises.
    """
    if not arrays:
        raise InvalidInputError("bootstrap_ci needs at least one array to resample")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"n: expected a positive number of resamples, got {n!r}")
    if not (0.0 < level < 1.0):
        raise InvalidInputError(f"level: {level!r} is out of range; allowed: (0, 1)")
    data = [np.asarray(a) for a in arrays]
    for i, a in enumerate(data):
        if a.ndim == 0 or a.shape[0] == 0:
            raise InvalidInputError(f"array {i}: expected a non-empty sequence with one row per query")
    _same_length(**{f"array {i}": a for i, a in enumerate(data)})
    rows = data[0].shape[0]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, rows, size=rows)
        try:
            v = float(metric_fn(*(a[idx] for a in data)))
        except InvalidInputError:
            continue
        if math.isfinite(v):
            values.append(v)
    if len(values) * 2 < n:
        raise InvalidInputError(
            f"the metric was undefined on {n - len(values)} of {n} resamples (e.g. one class only); too few rows "
            f"({rows}) for a bootstrap interval"
        )
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
