"""Calibration: raw estimator scores -> confidence in [0, 1] ≈ P(base answer correct), and thresholds on that scale.

A :class:`Calibrator` is fitted on labelled examples (``scores``: raw estimator scores, higher = more confident,
any real scale; ``correct``: whether the base answer was right) and then maps new scores to calibrated confidence
(higher = more confident, in [0, 1]). Three ship, selected by name with :func:`make_calibrator` (the config's
``router.calibration``):

* ``"isotonic"``: :class:`IsotonicCalibrator`, a monotone step function (scikit-learn ``IsotonicRegression``,
  increasing, clipped outside the fitted range). The default: no assumption on the score's shape.
* ``"platt"``: :class:`PlattCalibrator`, a sigmoid of the score (Platt 1999: logistic regression with his
  smoothed targets, so perfectly separated data still gives finite slopes).
* ``"none"``: :class:`IdentityCalibrator`, the score clipped to [0, 1] (for scores already on that scale).

Calibrators save as plain JSON (:meth:`Calibrator.to_dict` / :meth:`Calibrator.from_dict`), never pickle: the
isotonic step function as its knots (interpolated with ``np.interp``), Platt as a slope and an intercept.

Two ways to pick the routing threshold τ (a query is answered by the base when confidence >= τ, sent onward
when below):

* :func:`threshold_for_share`: the share of queries sent onward is fixed (RouteLLM's quantile calibration).
* :func:`threshold_for_error_rate`: the error rate among base-answered queries is at most α with probability
  at least 1 - δ over the calibration draw (Learn then Test, Angelopoulos et al. 2021, with fixed-sequence
  testing and Clopper-Pearson bounds).

scikit-learn and scipy (the ``ml`` extra) are imported only when a calibrator is fitted or a bound computed;
applying a fitted or loaded calibrator needs numpy alone.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, overload

import numpy as np

from ..errors import InvalidInputError, missing_dependency
from ..utils.registry import Registry
from ..utils.validation import as_finite, as_labels

__all__ = [
    "Calibrator",
    "IdentityCalibrator",
    "IsotonicCalibrator",
    "PlattCalibrator",
    "ThresholdResult",
    "clopper_pearson_upper",
    "make_calibrator",
    "register_calibrator",
    "registered_calibrators",
    "threshold_for_error_rate",
    "threshold_for_share",
]

_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# Input checks (shared by calibrators and thresholds)


def _as_scores(values: Any, name: str, *, allow_scalar: bool = False) -> np.ndarray:
    return as_finite(values, name, allow_scalar=allow_scalar)


def _check_pair(scores: Any, correct: Any, score_name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    s, y = _as_scores(scores, score_name), as_labels(correct)
    if s.shape[0] != y.shape[0]:
        raise InvalidInputError(
            f"{score_name} and correct have different lengths ({s.shape[0]} vs {y.shape[0]}); give one label per score"
        )
    return s, y


def _check_both_classes(y: np.ndarray, what: str) -> None:
    if y.all() or not y.any():
        label = "right (1)" if y.all() else "wrong (0)"
        missing = "wrong (0)" if y.all() else "right (1)"
        raise InvalidInputError(
            f"{what} needs both right and wrong examples; all {y.size} labels are {label} and none is {missing}"
        )


def _check_probability(value: Any, name: str, *, lo_open: bool, hi_open: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: expected a number, got {value!r}") from None
    ok = (v > 0 if lo_open else v >= 0) and (v < 1 if hi_open else v <= 1)
    if not ok or math.isnan(v):
        lo, hi = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise InvalidInputError(f"{name}: {value!r} is out of range; allowed: {lo}0, 1{hi}")
    return v


# ----------------------------------------------------------------------------------------------------------------
# Calibrators


class Calibrator(ABC):
    """Maps raw scores (higher = more confident, any real scale) to confidence in [0, 1] ≈ P(correct).

    The base class validates inputs, checks it is fitted, clips to [0, 1] and (de)serialises; a subclass
    implements :meth:`_fit` and :meth:`_transform` (and :meth:`_state` / :meth:`_load_state` if it has state).
    The mapping is non-decreasing for the shipped calibrators (Platt only if the fitted slope is positive).

    Class attributes:
        name: the registry name (``router.calibration`` in the config).
        needs_fit: ``False`` when the calibrator works without :meth:`fit` (the identity).
    """

    name: ClassVar[str] = ""
    needs_fit: ClassVar[bool] = True

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """True once :meth:`fit` (or :meth:`from_dict` with a fitted state) has run."""

    @abstractmethod
    def _fit(self, scores: np.ndarray, correct: np.ndarray) -> None:
        """Learn from validated ``scores`` (1-D float64, finite) and ``correct`` (1-D bool, both classes)."""

    @abstractmethod
    def _transform(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated confidence for validated, fitted 1-D ``scores`` (clipped to [0, 1] by the caller)."""

    def _state(self) -> dict[str, Any]:
        """JSON-serialisable fitted state (called only when fitted)."""
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_state` returned."""
        return None

    def fit(self, scores: Any, correct: Any) -> Calibrator:
        """Fit on raw ``scores`` and ``correct`` labels (bool or 0/1, one per score); returns ``self``.

        Raises :class:`InvalidInputError` for empty or mismatched inputs, NaN / infinite scores, labels other
        than 0/1, and (for calibrators that learn) a set with only right or only wrong answers.
        """
        s, y = _check_pair(scores, correct)
        if self.needs_fit:
            _check_both_classes(y, f"fitting the {self.name!r} calibrator")
        self._fit(s, y)
        return self

    @overload
    def __call__(self, scores: float) -> float: ...
    @overload
    def __call__(self, scores: Any) -> np.ndarray: ...

    def __call__(self, scores: Any) -> float | np.ndarray:
        """Calibrated confidence in [0, 1] for raw ``scores``: a float for a float, else an array of the same shape."""
        if self.needs_fit and not self.is_fitted:
            raise InvalidInputError(
                f"{type(self).__name__} is not fitted; call fit(scores, correct) first or load a fitted one with "
                "Calibrator.from_dict(...)"
            )
        arr = _as_scores(scores, "scores", allow_scalar=True)
        out = np.clip(self._transform(arr.ravel()), 0.0, 1.0).reshape(arr.shape)
        return float(out) if arr.ndim == 0 else out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description: ``{"kind", "version", "fitted", "state"}`` (state ``None`` when unfitted)."""
        fitted = self.is_fitted
        state = self._state() if fitted else None
        return {"kind": self.name, "version": _FORMAT_VERSION, "fitted": fitted, "state": state}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Calibrator:
        """The calibrator :meth:`to_dict` described (any registered kind); gives identical outputs."""
        if not isinstance(data, dict) or "kind" not in data:
            raise InvalidInputError(f"calibrator description must be a dict with a 'kind' key, got {data!r:.200}")
        cal = make_calibrator(data["kind"])
        state = data.get("state")
        if state is not None:
            if not isinstance(state, dict):
                raise InvalidInputError(f"calibrator {data['kind']!r}: 'state' must be a dict, got {state!r:.200}")
            try:
                cal._load_state(state)
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInputError(f"calibrator {data['kind']!r}: unreadable state ({exc})") from None
        return cal

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fitted={self.is_fitted})"


class IdentityCalibrator(Calibrator):
    """``"none"``: the raw score clipped to [0, 1]. For scores that already are probabilities; fitting is a no-op
    (inputs are still checked) and it works unfitted."""

    name = "none"
    needs_fit = False

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return True

    def _fit(self, scores: np.ndarray, correct: np.ndarray) -> None:
        return None

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        return scores


class IsotonicCalibrator(Calibrator):
    """``"isotonic"``: the non-decreasing step function closest (least squares) to the labels.

    Fitted with scikit-learn's ``IsotonicRegression(increasing=True, out_of_bounds="clip")``; applied as linear
    interpolation between its knots (``X_thresholds_``, ``y_thresholds_``) with ``np.interp``, which is what
    scikit-learn's ``predict`` computes, so a saved and reloaded calibrator gives identical outputs. Scores below
    the lowest (above the highest) knot get the first (last) knot's value.
    """

    name = "isotonic"

    def __init__(self) -> None:
        self.x_knots: np.ndarray | None = None
        self.y_knots: np.ndarray | None = None

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self.x_knots is not None

    def _fit(self, scores: np.ndarray, correct: np.ndarray) -> None:
        try:
            from sklearn.isotonic import IsotonicRegression
        except ImportError:
            raise missing_dependency("scikit-learn", extra="ml", purpose="isotonic calibration") from None
        iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(scores, correct.astype(np.float64))
        self.x_knots = np.asarray(iso.X_thresholds_, dtype=np.float64).copy()
        self.y_knots = np.asarray(iso.y_thresholds_, dtype=np.float64).copy()

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, self.x_knots, self.y_knots)

    def _state(self) -> dict[str, Any]:
        return {"x": self.x_knots.tolist(), "y": self.y_knots.tolist()}

    def _load_state(self, state: dict[str, Any]) -> None:
        x, y = np.asarray(state["x"], dtype=np.float64), np.asarray(state["y"], dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError(f"'x' and 'y' must be equal-length non-empty lists (got {x.shape} and {y.shape})")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any(np.diff(x) < 0):
            raise ValueError("'x' must be finite and sorted, 'y' finite")
        self.x_knots, self.y_knots = x, y


class PlattCalibrator(Calibrator):
    """``"platt"``: ``confidence = sigmoid(slope * score + intercept)``.

    Platt scaling (Platt 1999) fitted as a logistic regression on the score, standardised for the solver then
    folded back so ``slope`` and ``intercept`` act on the raw score. Targets are Platt's smoothed labels
    ``(N+ + 1) / (N+ + 2)`` for right answers and ``1 / (N- + 2)`` for wrong ones (a weighted pair of rows per
    example), which keeps the slope finite on perfectly separated data. A negative fitted slope means the score
    falls as correctness rises (the estimator's sign is likely wrong); it is kept, with a warning.
    """

    name = "platt"

    def __init__(self) -> None:
        self.slope: float | None = None
        self.intercept: float | None = None

    @property
    def is_fitted(self) -> bool:
        """Always true: the identity needs no fit."""
        return self.slope is not None

    def _fit(self, scores: np.ndarray, correct: np.ndarray) -> None:
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            raise missing_dependency("scikit-learn", extra="ml", purpose="Platt calibration") from None
        n_pos = int(correct.sum())
        n_neg = correct.size - n_pos
        target = np.where(correct, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))  # Platt's smoothed labels
        mean, std = float(scores.mean()), float(scores.std())
        std = std if std > 0 else 1.0
        z = (scores - mean) / std
        # Soft labels as two weighted rows per example: (z, 1) with weight t and (z, 0) with weight 1 - t.
        x2 = np.concatenate([z, z])[:, None]
        y2 = np.concatenate([np.ones_like(z), np.zeros_like(z)])
        w2 = np.concatenate([target, 1.0 - target])
        lr = LogisticRegression(C=1e6, max_iter=1000)  # near-unpenalised: the smoothing already bounds the slope
        lr.fit(x2, y2, sample_weight=w2)
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        self.slope, self.intercept = a / std, b - a * mean / std
        if self.slope < 0:
            warnings.warn(
                "Platt calibration fitted a negative slope: higher scores mean *less* often correct here; check the "
                "estimator's sign (scores must be higher = more confident)",
                stacklevel=3,
            )

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        z = self.slope * scores + self.intercept
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow for large |z|

    def _state(self) -> dict[str, Any]:
        return {"slope": self.slope, "intercept": self.intercept}

    def _load_state(self, state: dict[str, Any]) -> None:
        slope, intercept = float(state["slope"]), float(state["intercept"])
        if not (math.isfinite(slope) and math.isfinite(intercept)):
            raise ValueError("'slope' and 'intercept' must be finite")
        self.slope, self.intercept = slope, intercept


_CALIBRATORS: Registry[type[Calibrator]] = Registry("calibrator", Calibrator)


def register_calibrator(cls: type[Calibrator], *, overwrite: bool = False) -> type[Calibrator]:
    """Register a :class:`Calibrator` subclass under its ``name`` (usable as a class decorator); see
    :meth:`~adaptive_moe.utils.registry.Registry.register` for the rules."""
    return _CALIBRATORS.register(cls, overwrite=overwrite)


def registered_calibrators() -> list[str]:
    """Names of the registered calibrators, sorted."""
    return _CALIBRATORS.names()


def make_calibrator(name: str) -> Calibrator:
    """A new, unfitted calibrator registered as ``name`` (``"isotonic"``, ``"platt"``, ``"none"``, or your own).

    Raises :class:`UnknownNameError` (a ``KeyError``) listing the registered names for an unknown one.
    """
    return _CALIBRATORS.get(name)()


for _cls in (IsotonicCalibrator, PlattCalibrator, IdentityCalibrator):
    register_calibrator(_cls)


# ----------------------------------------------------------------------------------------------------------------
# Thresholds on the calibrated scale


def threshold_for_share(confidences: Any, share_routed: float) -> float:
    """The threshold τ that sends ``share_routed`` of the queries onward (those with confidence < τ).

    RouteLLM's quantile calibration (``calibrate_threshold.py``: the ``1 - strong_percent`` percentile of its
    win rates) turned to this package's direction: τ is the ``share_routed`` quantile of ``confidences``
    (``np.quantile``, linear interpolation), so on data like ``confidences`` about that share falls below it.
    ``share_routed = 0`` gives the least confidence (nothing is below it); ``share_routed = 1`` gives the next
    float above the greatest confidence, so every query is sent onward (this can exceed 1.0 by one ulp when a
    confidence is exactly 1.0). Ties make the share on ``confidences`` itself come out lower than asked.
    """
    c = _as_scores(confidences, "confidences")
    share = _check_probability(share_routed, "share_routed", lo_open=False, hi_open=False)
    if share >= 1.0:
        return float(np.nextafter(c.max(), np.inf))
    return float(np.quantile(c, share))


@dataclass(frozen=True)
class ThresholdResult:
    """Outcome of :func:`threshold_for_error_rate`; every rate is on the calibration set.

    Attributes:
        tau: the threshold; a query is answered by the base when its confidence >= tau. When ``feasible`` is
            false it is 1.0, the top of the calibrated scale, and the caller should send every query onward
            (a calibrated confidence of exactly 1.0 would still clear it).
        feasible: whether some threshold passed the test (the guarantee holds only then).
        coverage: share of calibration queries answered by the base at ``tau`` (0.0 when infeasible).
        n_answered: number of calibration queries answered at ``tau``.
        n_errors: wrong answers among them.
        empirical_error: ``n_errors / n_answered`` (0.0 when nothing is answered).
        error_bound: the Clopper-Pearson upper bound (level 1 - delta) on the error rate among answered
            queries at ``tau`` (<= alpha when feasible; 1.0 when nothing is answered).
        alpha: the target error rate among base-answered queries.
        delta: the allowed probability that the guarantee fails.
        n_calibration: size of the calibration set.
    """

    tau: float
    feasible: bool
    coverage: float
    n_answered: int
    n_errors: int
    empirical_error: float
    error_bound: float
    alpha: float
    delta: float
    n_calibration: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return asdict(self)


def clopper_pearson_upper(n_errors: Any, n: Any, delta: float) -> np.ndarray | float:
    """One-sided Clopper-Pearson upper bound, at level ``1 - delta``, on a binomial rate from ``n_errors`` of ``n``.

    ``Beta(1 - delta; k + 1, n - k)`` quantile; 1.0 when ``k == n`` (including ``n == 0``). Vectorised over
    ``n_errors`` and ``n``. ``bound <= alpha`` exactly when ``P(Binomial(n, alpha) <= k) <= delta``: the bound
    test and the exact binomial test agree.
    """
    try:
        from scipy.stats import beta
    except ImportError:
        raise missing_dependency("scipy", extra="ml", purpose="Clopper-Pearson bounds") from None
    d = _check_probability(delta, "delta", lo_open=True, hi_open=True)
    k, m = np.asarray(n_errors, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > m):
        raise InvalidInputError("n_errors must lie between 0 and n")
    full = k >= m
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.where(full, 1.0, beta.ppf(1.0 - d, k + 1.0, np.where(full, 1.0, m - k)))
    return float(bound) if bound.ndim == 0 else bound


def threshold_for_error_rate(confidences: Any, correct: Any, alpha: float, delta: float = 0.1) -> ThresholdResult:
    """The lowest threshold τ (most queries answered by the base) whose error rate among answered queries
    (confidence >= τ) is <= ``alpha``, with probability >= 1 - ``delta`` over the draw of the calibration set.

    Learn then Test (Angelopoulos et al. 2021) with fixed-sequence testing: the candidates are the distinct
    calibration confidences, scanned from the highest (fewest answered) down. At each, the null hypothesis
    "error among answered > alpha" is rejected when the one-sided Clopper-Pearson upper bound on the answered
    error rate (:func:`clopper_pearson_upper`, level 1 - delta) is <= alpha; the scan stops at the first
    candidate that fails, and the last one that passed is returned. Every test runs at the full level delta; the
    fixed order is what bounds the chance of any false pass by delta.

    The scan starts at the first candidate with enough answered queries that it *could* pass (``n >=
    log(delta) / log(1 - alpha)``, where zero errors gives a bound of exactly alpha): above it the bound exceeds
    alpha whatever the labels, so those candidates would stop every scan at once. That start depends on the
    confidences only, never on the labels. Ties: queries with equal confidence are answered or sent onward
    together, as at inference.

    The guarantee is over fresh queries from the same distribution as the calibration set. Choose τ on data
    not used to fit the calibrator, or the calibrated confidences are optimistic on it.

    Returns a :class:`ThresholdResult`; ``feasible`` is false (and ``tau`` 1.0) when no candidate passes, e.g.
    when the set is too small for ``alpha`` (at least ``log(delta) / log(1 - alpha)`` answered queries are
    needed: 22 for alpha = delta = 0.1) or the base is wrong too often even where it is most confident.
    """
    c, y = _check_pair(confidences, correct, "confidences")
    a = _check_probability(alpha, "alpha", lo_open=True, hi_open=True)
    d = _check_probability(delta, "delta", lo_open=True, hi_open=True)
    n_total = c.size

    # Candidates from the highest confidence down; answered at candidate i = every query with c >= cand[i].
    order = np.argsort(-c, kind="stable")
    c_sorted, wrong_sorted = c[order], ~y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(c_sorted) != 0), n_total - 1]  # (G,) index of each tie group's end
    cand = c_sorted[last_of_group]  # (G,) distinct confidences, decreasing
    n_answered = last_of_group + 1  # (G,) increasing
    n_errors = np.cumsum(wrong_sorted)[last_of_group]  # (G,)
    bounds = np.asarray(clopper_pearson_upper(n_errors, n_answered, d), dtype=np.float64)

    # Start where zero errors would pass; the zero-error bound falls as n grows, so this is a prefix cut.
    could_pass = np.asarray(clopper_pearson_upper(np.zeros_like(n_answered), n_answered, d)) <= a
    start = int(np.argmax(could_pass)) if could_pass.any() else could_pass.size
    passed = bounds[start:] <= a
    n_pass = int(np.argmin(passed)) if not passed.all() else passed.size  # length of the passing run from the start
    if n_pass == 0:
        return ThresholdResult(
            tau=1.0, feasible=False, coverage=0.0, n_answered=0, n_errors=0, empirical_error=0.0, error_bound=1.0,
            alpha=a, delta=d, n_calibration=n_total,
        )  # fmt: skip
    i = start + n_pass - 1
    k, m = int(n_errors[i]), int(n_answered[i])
    return ThresholdResult(
        tau=float(cand[i]), feasible=True, coverage=m / n_total, n_answered=m, n_errors=k, empirical_error=k / m,
        error_bound=float(bounds[i]), alpha=a, delta=d, n_calibration=n_total,
    )  # fmt: skip
