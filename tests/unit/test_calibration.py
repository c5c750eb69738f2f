import json
import math

import numpy as np
import pytest

from adaptive_moe.errors import AdaptiveMoEError, InvalidInputError, UnknownNameError
from adaptive_moe.uncertainty import calibration
from adaptive_moe.uncertainty.calibration import (
    Calibrator,
    IdentityCalibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    ThresholdResult,
    clopper_pearson_upper,
    make_calibrator,
    register_calibrator,
    registered_calibrators,
    threshold_for_error_rate,
    threshold_for_share,
)

LEARNED = ("isotonic", "platt")
ALL = ("isotonic", "platt", "none")


def synthetic(n, seed=0, scale=3.0, shift=-2.0):
    """Raw scores on a log-prob-like scale (negative, unbounded); P(correct | s) = sigmoid(scale * s + shift + 4)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(-2.0, 1.0, size=n)
    p = 1.0 / (1.0 + np.exp(-(scale * s + shift + 4.0)))
    return s, rng.uniform(size=n) < p


# ------------------------------------------------------------------------------------------------------------------
# Calibrators


@pytest.mark.parametrize("name", ALL)
def test_make_calibrator_gives_the_registered_class(name):
    cal = make_calibrator(name)
    assert isinstance(cal, Calibrator)
    assert cal.name == name
    assert name in registered_calibrators()


def test_make_calibrator_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        make_calibrator("isotonc")
    msg = str(info.value)
    assert "isotonc" in msg and "'isotonic'" in msg and "'platt'" in msg and "'none'" in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, AdaptiveMoEError)


@pytest.mark.parametrize("name", ALL)
def test_calibrated_values_are_monotone_and_in_unit_interval(name):
    s, y = synthetic(600)
    cal = make_calibrator(name).fit(s, y)
    grid = np.linspace(-10, 10, 2001)  # far beyond the fitted range on both sides
    out = cal(grid)
    assert out.shape == grid.shape and out.dtype == np.float64
    assert np.all(out >= 0) and np.all(out <= 1)
    assert np.all(np.diff(out) >= 0)


@pytest.mark.parametrize("name", LEARNED)
def test_learned_calibrators_track_the_true_probability(name):
    s, y = synthetic(4000, seed=1)
    cal = make_calibrator(name).fit(s, y)
    probe = np.array([-3.0, -2.0, -1.0])
    truth = 1.0 / (1.0 + np.exp(-(3.0 * probe + 2.0)))  # ≈ 0.0009, 0.018, 0.27: the generating sigmoid
    assert np.allclose(cal(probe), truth, atol=0.06)


def test_isotonic_on_well_separated_data_gives_zero_and_one():
    s = np.r_[np.linspace(-5, -3, 50), np.linspace(3, 5, 50)]
    y = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    cal = IsotonicCalibrator().fit(s, y)
    assert np.all(cal(np.linspace(-6, -3, 20)) == 0.0)
    assert np.all(cal(np.linspace(3, 6, 20)) == 1.0)


def test_platt_on_well_separated_data_is_confident_but_finite():
    s = np.r_[np.linspace(-5, -3, 50), np.linspace(3, 5, 50)]
    y = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    cal = PlattCalibrator().fit(s, y)
    assert math.isfinite(cal.slope) and cal.slope > 0
    assert cal(-4.0) < 0.05 and cal(4.0) > 0.95
    # Platt's smoothed targets: the extremes stay near 1/(N-+2) and (N++1)/(N++2), not 0 and 1
    assert cal(-4.0) > 1e-4 and cal(4.0) < 1 - 1e-4


def test_float_in_float_out_and_shape_kept():
    s, y = synthetic(300)
    cal = IsotonicCalibrator().fit(s, y)
    v = cal(-2.0)
    assert isinstance(v, float) and 0 <= v <= 1
    assert cal(np.float32(-2.0)) == pytest.approx(v)
    assert cal([-2.0]).shape == (1,)
    assert cal(np.full((2, 3), -2.0)).shape == (2, 3)
    assert cal([-2.0, -2.0]).tolist() == [v, v]


def test_isotonic_matches_sklearn_predict():
    from sklearn.isotonic import IsotonicRegression

    s, y = synthetic(500, seed=3)
    cal = IsotonicCalibrator().fit(s, y)
    ref = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0, y_max=1).fit(s, y.astype(float))
    grid = np.linspace(-8, 4, 997)
    assert np.allclose(cal(grid), ref.predict(grid), atol=1e-12)


def test_identity_clips_and_needs_no_fit():
    cal = IdentityCalibrator()
    assert cal.is_fitted
    assert cal([-0.5, 0.0, 0.3, 1.0, 7.0]).tolist() == [0.0, 0.0, 0.3, 1.0, 1.0]
    assert cal.fit([0.2, 0.9], [1, 1]) is cal  # one class is fine: nothing is learned


@pytest.mark.parametrize("name", ALL)
def test_to_dict_round_trip_gives_identical_outputs(name):
    s, y = synthetic(700, seed=4)
    cal = make_calibrator(name).fit(s, y)
    d = cal.to_dict()
    restored = Calibrator.from_dict(json.loads(json.dumps(d)))  # through real JSON text
    assert type(restored) is type(cal)
    assert d["kind"] == name and d["fitted"] is True
    grid = np.r_[np.linspace(-10, 10, 4001), s]
    assert np.array_equal(restored(grid), cal(grid))
    assert restored.to_dict() == d


def test_to_dict_of_unfitted_calibrator_restores_unfitted():
    d = IsotonicCalibrator().to_dict()
    assert d["fitted"] is False and d["state"] is None
    restored = Calibrator.from_dict(d)
    assert isinstance(restored, IsotonicCalibrator) and not restored.is_fitted


def test_from_dict_rejects_bad_descriptions():
    with pytest.raises(UnknownNameError, match="'isotonic'"):
        Calibrator.from_dict({"kind": "spline", "state": None})
    with pytest.raises(InvalidInputError, match="'kind'"):
        Calibrator.from_dict({"state": {}})
    with pytest.raises(InvalidInputError, match="unreadable state"):
        Calibrator.from_dict({"kind": "isotonic", "state": {"x": [0, 1]}})
    with pytest.raises(InvalidInputError, match="unreadable state"):
        Calibrator.from_dict({"kind": "isotonic", "state": {"x": [1, 0], "y": [0, 1]}})
    with pytest.raises(InvalidInputError, match="unreadable state"):
        Calibrator.from_dict({"kind": "platt", "state": {"slope": "nan", "intercept": 0}})


def test_platt_negative_slope_warns():
    s, y = synthetic(500, seed=5)
    with pytest.warns(UserWarning, match="negative slope"):
        cal = PlattCalibrator().fit(-s, y)
    assert cal.slope < 0


def test_register_calibrator_validates(monkeypatch):
    monkeypatch.setattr(calibration, "_CALIBRATORS", calibration._CALIBRATORS.copy())  # leave the registry as it was

    class Half(Calibrator):
        name = "half_test"
        needs_fit = False

        @property
        def is_fitted(self):
            return True

        def _fit(self, scores, correct):
            return None

        def _transform(self, scores):
            return scores / 2

    register_calibrator(Half)
    assert make_calibrator("half_test")(1.0) == 0.5
    assert isinstance(Calibrator.from_dict({"kind": "half_test", "state": {}}), Half)
    register_calibrator(Half)  # same class again: fine

    class Other(Half):
        pass

    with pytest.raises(InvalidInputError, match="already registered"):
        register_calibrator(Other)
    with pytest.raises(InvalidInputError, match="abstract"):
        register_calibrator(Calibrator)
    with pytest.raises(InvalidInputError, match="Calibrator subclass"):
        register_calibrator(dict)

    class BadName(Half):
        name = "Bad Name"

    with pytest.raises(InvalidInputError, match="lowercase identifier"):
        register_calibrator(BadName)


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    ("scores", "correct", "match"),
    [
        ([], [], "scores: empty"),
        ([0.1, 0.2], [], "correct: empty"),
        ([0.1, 0.2, 0.3], [1, 0], r"different lengths \(3 vs 2\)"),
        ([0.1, float("nan"), 0.3], [1, 0, 1], r"NaN or infinite \(first at index 1"),
        ([0.1, float("inf"), 0.3], [1, 0, 1], "NaN or infinite"),
        ([0.1, 0.2, 0.3], [1, 0, 2], "bool or 0/1.*got 2"),
        ([0.1, 0.2, 0.3], [1, 0, 0.5], "bool or 0/1.*got 0.5"),
        ([0.1, 0.2, 0.3], ["yes", "no", "yes"], "bool or 0/1"),
        ([[0.1, 0.2]], [1], "1-D"),
        (["a", "b"], [1, 0], "expected numbers"),
    ],
)
def test_fit_rejects_bad_input(name, scores, correct, match):
    with pytest.raises(InvalidInputError, match=match):
        make_calibrator(name).fit(scores, correct)


@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize(
    ("labels", "present", "missing"), [([1, 1, 1], "right", "wrong"), ([0, 0, 0], "wrong", "right")]
)
def test_fit_with_one_class_says_which_and_that_both_are_needed(name, labels, present, missing):
    with pytest.raises(InvalidInputError) as info:
        make_calibrator(name).fit([0.1, 0.2, 0.3], labels)
    msg = str(info.value)
    assert "both right and wrong" in msg
    assert f"all 3 labels are {present}" in msg and f"none is {missing}" in msg


@pytest.mark.parametrize("name", LEARNED)
def test_call_before_fit_says_to_fit(name):
    with pytest.raises(InvalidInputError, match=r"not fitted; call fit\(scores, correct\)"):
        make_calibrator(name)([0.1, 0.2])


@pytest.mark.parametrize("bad", [float("nan"), [0.1, float("-inf")], [], "x"])
def test_call_rejects_bad_scores(bad):
    cal = IsotonicCalibrator().fit([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])
    with pytest.raises(InvalidInputError, match="scores"):
        cal(bad)


def test_bool_and_float_labels_are_accepted():
    s = [0.1, 0.2, 0.3, 0.4]
    a = IsotonicCalibrator().fit(s, [False, False, True, True])(s)
    b = IsotonicCalibrator().fit(s, [0.0, 0.0, 1.0, 1.0])(s)
    c = IsotonicCalibrator().fit(s, np.array([0, 0, 1, 1], dtype=np.int8))(s)
    assert np.array_equal(a, b) and np.array_equal(a, c)


# ------------------------------------------------------------------------------------------------------------------
# Threshold for a share routed


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5, 0.8])
def test_share_threshold_holds_on_held_out_data(share):
    rng = np.random.default_rng(7)
    conf = rng.beta(4, 2, size=2000)  # skewed toward confident, like a calibrated base
    calib, held_out = conf[:1000], conf[1000:]
    tau = threshold_for_share(calib, share)
    assert abs(np.mean(calib < tau) - share) <= 0.002
    assert abs(np.mean(held_out < tau) - share) <= 0.03


def test_share_threshold_extremes():
    c = np.array([0.2, 0.5, 0.5, 0.9, 1.0])
    assert threshold_for_share(c, 0.0) == 0.2
    assert np.mean(c < threshold_for_share(c, 0.0)) == 0.0
    tau_all = threshold_for_share(c, 1.0)
    assert tau_all > 1.0 and np.mean(c < tau_all) == 1.0
    # 4 gaps between 5 sorted values: share 0.5 is the middle value, linear between neighbours otherwise
    assert threshold_for_share(c, 0.5) == 0.5
    assert threshold_for_share(c, 0.125) == pytest.approx(0.2 + 0.5 * (0.5 - 0.2))


@pytest.mark.parametrize(
    ("conf", "share", "match"),
    [
        ([], 0.5, "confidences: empty"),
        ([0.1, float("nan")], 0.5, "NaN"),
        ([0.1, 0.2], 1.5, r"share_routed: 1.5 is out of range; allowed: \[0, 1\]"),
        ([0.1, 0.2], -0.1, "out of range"),
        ([0.1, 0.2], "half", "expected a number"),
    ],
)
def test_share_threshold_bad_input(conf, share, match):
    with pytest.raises(InvalidInputError, match=match):
        threshold_for_share(conf, share)


# ------------------------------------------------------------------------------------------------------------------
# Threshold for an error rate (Learn then Test)


def test_clopper_pearson_upper_known_values():
    # 0 errors of n: the bound solves (1 - p)^n = delta, so p = 1 - delta^(1/n)
    assert clopper_pearson_upper(0, 10, 0.1) == pytest.approx(1 - 0.1 ** (1 / 10))
    assert clopper_pearson_upper(5, 5, 0.1) == 1.0
    assert clopper_pearson_upper(0, 0, 0.1) == 1.0
    # k of n: P(Binomial(n, bound) <= k) = delta
    from scipy.stats import binom

    b = clopper_pearson_upper(7, 100, 0.05)
    assert binom.cdf(7, 100, b) == pytest.approx(0.05, abs=1e-9)
    assert np.allclose(clopper_pearson_upper([0, 7], [10, 100], 0.05), [1 - 0.05 ** (1 / 10), b])


def test_error_rate_threshold_result_fields():
    rng = np.random.default_rng(11)
    c = rng.uniform(size=2000)
    y = rng.uniform(size=2000) < c  # perfectly calibrated: error among c >= tau is (1 - tau) / 2
    r = threshold_for_error_rate(c, y, alpha=0.1, delta=0.1)
    assert isinstance(r, ThresholdResult) and r.feasible
    answered = c >= r.tau
    assert r.n_answered == answered.sum() and r.n_errors == (~y[answered]).sum()
    assert r.coverage == pytest.approx(answered.mean())
    assert r.empirical_error == pytest.approx(r.n_errors / r.n_answered)
    assert r.empirical_error <= r.error_bound <= 0.1
    assert r.n_calibration == 2000 and r.alpha == 0.1 and r.delta == 0.1
    assert 0.7 < r.tau < 1.0  # the best threshold is 0.8; the test's caution keeps it a little higher
    assert json.loads(json.dumps(r.to_dict()))["tau"] == r.tau


def test_error_rate_threshold_hand_checked():
    # 30 queries at confidence 0.9, all right; then 10 at 0.5, all wrong. Fewest answered that can pass with
    # alpha = delta = 0.1: (1 - 0.1)^n <= 0.1, n >= 21.85 -> 22. The 0.9 group (30 answered, 0 errors) passes:
    # bound 1 - 0.1^(1/30) ≈ 0.074. Adding the 0.5 group gives 10 errors in 40: fails, the scan stops.
    c = np.r_[np.full(30, 0.9), np.full(10, 0.5)]
    y = np.r_[np.ones(30, bool), np.zeros(10, bool)]
    r = threshold_for_error_rate(c, y, alpha=0.1, delta=0.1)
    assert r.feasible and r.tau == 0.9 and r.n_answered == 30 and r.n_errors == 0
    assert r.error_bound == pytest.approx(1 - 0.1 ** (1 / 30))
    assert r.coverage == pytest.approx(0.75)


def test_error_rate_threshold_stops_at_first_failure():
    # 40 right at 0.95, then 40 at 0.9 with 20 wrong (fails), then 400 right at 0.8: the low group alone would
    # bring the overall error down to 20/480 ≈ 4% and pass, but fixed-sequence testing stops at the failure.
    c = np.r_[np.full(40, 0.95), np.full(40, 0.9), np.full(400, 0.8)]
    y = np.r_[np.ones(40, bool), np.r_[np.ones(20, bool), np.zeros(20, bool)], np.ones(400, bool)]
    r = threshold_for_error_rate(c, y, alpha=0.1, delta=0.1)
    assert r.tau == 0.95 and r.n_answered == 40


def test_error_rate_threshold_infeasible():
    # too few queries: 21 < 22 answered can never pass at alpha = delta = 0.1
    r = threshold_for_error_rate(np.linspace(0.5, 1, 21), np.ones(21, bool), alpha=0.1, delta=0.1)
    assert not r.feasible and r.tau == 1.0 and r.coverage == 0.0 and r.error_bound == 1.0
    # plenty of data but the base is wrong half the time even where most confident
    rng = np.random.default_rng(0)
    r = threshold_for_error_rate(rng.uniform(size=500), rng.uniform(size=500) < 0.5, alpha=0.1, delta=0.1)
    assert not r.feasible and r.tau == 1.0
    # every answer right: the lowest threshold passes and everything is answered
    r = threshold_for_error_rate(np.linspace(0, 1, 50), np.ones(50, bool), alpha=0.1, delta=0.1)
    assert r.feasible and r.tau == 0.0 and r.coverage == 1.0


def test_error_rate_guarantee_holds_over_random_splits():
    """Over 200 calibration / test splits, the test error among answered queries exceeds alpha in at most delta
    of them (plus binomial slack for 200 draws)."""
    alpha, delta, n_splits = 0.1, 0.1, 200
    rng = np.random.default_rng(2024)
    pool = 20_000
    # A calibrated base that is right 80% of the time: confidence c ~ Beta(4, 1) (density 4c^3), P(right | c) = c.
    conf = rng.beta(4.0, 1.0, size=pool)
    correct = rng.uniform(size=pool) < conf

    def population_error(tau):
        # E[1 - c | c >= tau] = (int_tau^1 (1 - c) 4c^3 dc) / (1 - tau^4)
        #                     = ((1 - tau^4) - 4/5 (1 - tau^5)) / (1 - tau^4)
        return ((1 - tau**4) - 0.8 * (1 - tau**5)) / (1 - tau**4) if tau < 1 else 0.0

    test_violations = population_violations = feasible = 0
    for _ in range(n_splits):
        perm = rng.permutation(pool)
        cal, test = perm[:500], perm[500:]
        r = threshold_for_error_rate(conf[cal], correct[cal], alpha, delta)
        feasible += r.feasible
        answered = conf[test] >= r.tau
        test_error = float((~correct[test][answered]).mean()) if answered.any() else 0.0
        test_violations += test_error > alpha
        population_violations += population_error(r.tau) > alpha
    slack = 3 * math.sqrt(delta * (1 - delta) / n_splits)  # ≈ 0.064
    assert test_violations / n_splits <= delta + slack
    assert population_violations / n_splits <= delta + slack
    assert feasible / n_splits > 0.8  # and it is not vacuous: most splits find a threshold (0.9 with this seed)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidences": [], "correct": []}, "confidences: empty"),
        ({"confidences": [0.1, 0.2], "correct": [1]}, "different lengths"),
        ({"confidences": [0.1, float("nan")], "correct": [1, 0]}, "NaN"),
        ({"confidences": [0.1, 0.2], "correct": [1, 3]}, "bool or 0/1"),
        ({"confidences": [0.1, 0.2], "correct": [1, 0], "alpha": 0.0}, r"alpha: 0.0 is out of range; allowed: \(0, 1"),
        ({"confidences": [0.1, 0.2], "correct": [1, 0], "alpha": 1.0}, "alpha"),
        ({"confidences": [0.1, 0.2], "correct": [1, 0], "delta": 0.0}, "delta"),
        ({"confidences": [0.1, 0.2], "correct": [1, 0], "delta": float("nan")}, "delta"),
    ],
)
def test_error_rate_threshold_bad_input(kwargs, match):
    kwargs = {"alpha": 0.1, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        threshold_for_error_rate(**kwargs)
