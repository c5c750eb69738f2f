import math

import numpy as np
import pytest

from adaptive_moe.errors import InvalidInputError
from adaptive_moe.evaluation.metrics import (
    apgr,
    aurc,
    auroc,
    bootstrap_ci,
    ece,
    prr,
    risk_coverage_curve,
    routing_curve,
    share_for_gain,
)

CONF = [0.9, 0.8, 0.7, 0.6]  # strictly decreasing: the order of the hand-checked cases below


# ------------------------------------------------------------------------------------------------------------------
# AUROC


def test_auroc_perfect_inverted_and_hand_checked():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    # right answers at 0.35 and 0.8, wrong at 0.1 and 0.4: of the 4 (right, wrong) pairs only (0.35, 0.4) is
    # ordered wrongly -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # ties count half
    assert auroc([-30.0, -2.0], [False, True]) == 1.0  # any scale, bool labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_sklearn_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    conf = rng.integers(0, 12, size=300) / 11.0  # 12 distinct values: many ties
    correct = rng.uniform(size=300) < conf
    assert auroc(conf, correct) == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)
    conf = rng.normal(size=300)
    assert auroc(conf, correct) == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)


def test_auroc_random_is_about_half():
    rng = np.random.default_rng(0)
    assert auroc(rng.uniform(size=4000), rng.uniform(size=4000) < 0.6) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize(("labels", "which"), [([1, 1, 1], "right"), ([0, 0, 0], "wrong")])
def test_auroc_needs_both_classes(labels, which):
    with pytest.raises(InvalidInputError, match=f"both right and wrong answers; all 3 are {which}"):
        auroc([0.1, 0.2, 0.3], labels)


# ------------------------------------------------------------------------------------------------------------------
# PRR


def test_prr_hand_checked():
    # n = 4, max_rejection = 1: the curve is the mean quality kept after rejecting 0, 1, 2, 3 least confident,
    # i.e. over the 4, 3, 2, 1 most confident; the area is its mean. Quality [1, 1, 0, 0] has mean 1/2.
    #   oracle  (sorted 1,1,0,0): 2/4, 2/3, 2/2, 1/1 -> area (12 + 16 + 24 + 24) / 96 = 19/24
    #   random: 1/2 = 12/24
    #   conf order 1,0,1,0: 2/4, 2/3, 1/2, 1/1 -> 16/24   => PRR = (16 - 12) / (19 - 12) = 4/7
    #   conf order 1,0,0,1: 2/4, 1/3, 1/2, 1/1 -> 14/24   => PRR = 2/7
    #   conf order 0,0,1,1: 2/4, 1/3, 0/2, 0/1 -> 5/24    => PRR = (5 - 12) / 7 = -1
    assert prr(CONF, [1, 0, 1, 0]) == pytest.approx(4 / 7)
    assert prr(CONF, [1, 0, 0, 1]) == pytest.approx(2 / 7)
    assert prr(CONF, [0, 0, 1, 1]) == pytest.approx(-1.0)
    assert prr(CONF, [1, 1, 0, 0]) == pytest.approx(1.0)
    # max_rejection = 0.5: rejection steps 0 and 1 only. Order 1,0,0,1: 2/4, 1/3 -> 5/12; oracle 2/4, 2/3 -> 7/12;
    # random 6/12 => PRR = (5 - 6) / (7 - 6) = -1
    assert prr(CONF, [1, 0, 0, 1], max_rejection=0.5) == pytest.approx(-1.0)


def test_prr_oracle_is_one_random_is_about_zero():
    rng = np.random.default_rng(1)
    quality = rng.uniform(size=3000)
    assert prr(quality, quality) == pytest.approx(1.0)
    assert prr(2 * quality - 7, quality) == pytest.approx(1.0)  # only the ranking matters
    assert prr(rng.uniform(size=3000), quality) == pytest.approx(0.0, abs=0.1)
    correct = rng.uniform(size=3000) < 0.6
    assert prr(correct.astype(float) + 0.01 * rng.uniform(size=3000), correct) == pytest.approx(1.0)


def test_prr_ties_are_averaged():
    # all confidences equal: the expected curve of a random order is flat at the mean -> exactly 0
    assert prr([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.0, abs=1e-12)
    # a tie between the 2nd and 3rd query averages orders 1,0,1,0 (4/7) and 1,1,0,0 (1)
    assert prr([0.9, 0.7, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((4 / 7 + 1) / 2)


def _polygraph_prr(confidence, quality, max_rejection=1.0):
    """LM-Polygraph's PredictionRejectionArea (uncertainty = -confidence, min-max normalised target) and its
    normalize_metric against the oracle (uncertainty = -quality) and the random baseline (the mean)."""

    def raw(unc, target):
        target = (target - target.min()) / (target.max() - target.min())
        n = len(unc)
        n_rej = int(max_rejection * n)
        cumsum = np.cumsum(target[np.argsort(unc)])[-n_rej:]
        return np.sum((cumsum / np.arange(n - n_rej + 1, n + 1))[::-1]) / n_rej

    q = np.asarray(quality, dtype=float)
    random = np.mean((q - q.min()) / (q.max() - q.min()))
    return (raw(-np.asarray(confidence), q) - random) / (raw(-q, q) - random)


@pytest.mark.parametrize("max_rejection", [1.0, 0.5, 0.3])
def test_prr_matches_lm_polygraph_without_ties(max_rejection):
    rng = np.random.default_rng(2)
    quality = rng.uniform(size=501)
    conf = quality + rng.normal(0, 0.3, size=501)  # informative but noisy, no ties
    ours = prr(conf, quality, max_rejection=max_rejection)
    assert 0.2 < ours < 0.95
    assert ours == pytest.approx(_polygraph_prr(conf, quality, max_rejection), abs=1e-12)


def test_prr_bad_input():
    with pytest.raises(InvalidInputError, match=r"all 3 have quality 1\.0"):
        prr([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(InvalidInputError, match=r"max_rejection: 0 is out of range; allowed: \(0, 1\]"):
        prr(CONF, [1, 0, 1, 0], max_rejection=0)
    with pytest.raises(InvalidInputError, match="out of range"):
        prr(CONF, [1, 0, 1, 0], max_rejection=1.5)
    with pytest.raises(InvalidInputError, match="rejects no query out of 4"):
        prr(CONF, [1, 0, 1, 0], max_rejection=0.2)


# ------------------------------------------------------------------------------------------------------------------
# ECE


def test_ece_zero_for_perfectly_calibrated_bins():
    # bin [0.2, 0.3): 4 queries at 0.25, 1 right; bin [0.7, 0.8): 4 at 0.75, 3 right -> every gap 0
    conf = [0.25] * 4 + [0.75] * 4
    correct = [1, 0, 0, 0, 1, 1, 1, 0]
    assert ece(conf, correct) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_checked():
    assert ece([0.9] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.4)  # one bin: |0.5 - 0.9|
    # two bins of 2: {0.05, 0.05} both wrong (gap 0.05), {0.95, 0.95} both right (gap 0.05) -> 0.5*0.05 + 0.5*0.05
    assert ece([0.05, 0.05, 0.95, 0.95], [0, 0, 1, 1]) == pytest.approx(0.05)
    # 1.0 falls in the last bin, 0.0 in the first
    assert ece([1.0, 1.0, 0.0], [1, 1, 0]) == 0.0
    # equal-width bins of 0.5: [0.1, 0.4] (acc 0.5, conf 0.25) and [0.6, 0.9] (acc 0.5, conf 0.75) -> 0.25
    assert ece([0.1, 0.4, 0.6, 0.9], [1, 0, 1, 0], n_bins=2) == pytest.approx(0.25)
    # one bin: |overall accuracy - mean confidence| = |0.5 - 0.5|
    assert ece([0.1, 0.4, 0.6, 0.9], [1, 0, 1, 0], n_bins=1) == pytest.approx(0.0)


def test_ece_bad_input():
    with pytest.raises(InvalidInputError, match=r"confidences in \[0, 1\]"):
        ece([0.5, 1.2], [1, 0])
    with pytest.raises(InvalidInputError, match=r"confidences in \[0, 1\]"):
        ece([-0.1, 0.5], [1, 0])
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidInputError, match="n_bins"):
            ece([0.5, 0.6], [1, 0], n_bins=bad)


# ------------------------------------------------------------------------------------------------------------------
# Risk-coverage


def test_risk_coverage_hand_checked():
    cov, risk = risk_coverage_curve(CONF, [1, 0, 1, 0])
    # most confident first: errors 0, 1, 1, 2 among the top 1, 2, 3, 4
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk == pytest.approx([0.0, 0.5, 1 / 3, 0.5])
    assert aurc(CONF, [1, 0, 1, 0]) == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    # the order does not depend on the input order
    assert aurc(CONF[::-1], [0, 1, 0, 1]) == pytest.approx(aurc(CONF, [1, 0, 1, 0]))


def test_risk_coverage_perfect_and_ties():
    # perfect ranking: no error until the right answers run out
    assert risk_coverage_curve(CONF, [1, 1, 0, 0])[1] == pytest.approx([0, 0, 1 / 3, 0.5])
    # a tie at the top: the expected risk of answering one of the two is 1/2
    assert risk_coverage_curve([0.5, 0.5], [1, 0])[1] == pytest.approx([0.5, 0.5])


# ------------------------------------------------------------------------------------------------------------------
# Routing: APGR and the call-performance threshold

BASE = [1, 1, 0, 0]  # the base gets the first two right
STRONG = [1, 1, 1, 1]  # the onward route gets everything right: the gap is 0.5


def test_routing_curve_hand_checked():
    shares, quality = routing_curve([0, 0, 1, 1], BASE, STRONG)  # routes the two wrong answers first
    assert shares.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert quality == pytest.approx([0.5, 0.75, 1.0, 1.0, 1.0])


def test_apgr_oracle_inverted_and_random():
    # PGR = (q - 0.5) / (1 - 0.5).
    # Oracle (routes the base's wrong answers first): PGR 0, .5, 1, 1, 1 -> trapezoids over steps of 1/4:
    #   .25 * (.25 + .75 + 1 + 1) = 0.75 = 1 - w/2 with w = 0.5 of queries needing the onward route.
    #   No router reaches 1: PGR is 0 at share 0 by definition.
    assert apgr([0, 0, 1, 1], BASE, STRONG) == pytest.approx(0.75)
    # Inverted (routes the base's right answers first): PGR 0, 0, 0, .5, 1 -> .25 * (0 + 0 + .25 + .75) = 0.25
    assert apgr([1, 1, 0, 0], BASE, STRONG) == pytest.approx(0.25)
    # Random (all scores tied: the expected curve is the diagonal): 0.5 exactly
    assert apgr([0.3, 0.3, 0.3, 0.3], BASE, STRONG) == pytest.approx(0.5)
    # A confidence-based router: route_score = 1 - confidence
    confidence = np.array([0.9, 0.8, 0.2, 0.1])
    assert apgr(1 - confidence, BASE, STRONG) == pytest.approx(0.75)


def test_apgr_random_router_is_about_half():
    rng = np.random.default_rng(3)
    base = rng.uniform(size=5000) < 0.5
    strong = base | (rng.uniform(size=5000) < 0.6)
    assert apgr(rng.uniform(size=5000), base, strong) == pytest.approx(0.5, abs=0.03)


def test_apgr_matches_routellm_formula():
    # RouteLLM: (AUC - weak_auc) / (strong_auc - weak_auc), trapezoids of accuracy against the share routed
    rng = np.random.default_rng(4)
    n = 300
    base, strong = rng.uniform(size=n) < 0.4, rng.uniform(size=n) < 0.8
    score = strong.astype(float) - base + rng.normal(0, 0.8, size=n)
    shares, quality = routing_curve(score, base, strong)
    trapz = getattr(np, "trapezoid", None) or np.trapz

    auc, weak_auc, strong_auc = (trapz(v, shares) for v in (quality, np.full(n + 1, base.mean()),
                                                           np.full(n + 1, strong.mean())))  # fmt: skip
    assert apgr(score, base, strong) == pytest.approx((auc - weak_auc) / (strong_auc - weak_auc), abs=1e-12)


def test_share_for_gain_hand_checked():
    # Oracle PGR at shares 0, .25, .5, ...: 0, .5, 1. Reaching 0.5 takes share .25; 0.8 lies 60% of the way from
    # .5 to 1 on the segment [.25, .5] -> .25 + .6 * .25 = 0.4; 1.0 is first reached at 0.5.
    oracle = [0, 0, 1, 1]
    assert share_for_gain(oracle, BASE, STRONG, 0.5) == pytest.approx(0.25)
    assert share_for_gain(oracle, BASE, STRONG, 0.8) == pytest.approx(0.4)
    assert share_for_gain(oracle, BASE, STRONG, 1.0) == pytest.approx(0.5)
    assert share_for_gain(oracle, BASE, STRONG, 0.0) == 0.0
    # random (tied) router: PGR is the diagonal, so the share equals the fraction
    assert share_for_gain([1, 1, 1, 1], BASE, STRONG, 0.8) == pytest.approx(0.8)
    # inverted: PGR 0, 0, 0, .5, 1 -> 0.5 at share .75
    assert share_for_gain([1, 1, 0, 0], BASE, STRONG, 0.5) == pytest.approx(0.75)


def test_share_for_gain_first_crossing_on_a_non_monotone_curve():
    # base 0,1,0,1 and strong 1,0,1,1: gains +1, -1, +1, 0 (total 1/4). Routed in that order, PGR goes
    # 0, 1, 0, 1, 1: the gap is first fully recovered at share .25, so 0.5 is reached at .125.
    # APGR = .25 * (.5 + .5 + .5 + 1) = 0.625
    score, base, strong = [4, 3, 2, 1], [0, 1, 0, 1], [1, 0, 1, 1]
    assert share_for_gain(score, base, strong, 0.5) == pytest.approx(0.125)
    assert apgr(score, base, strong) == pytest.approx(0.625)


def test_routing_metrics_bad_input():
    with pytest.raises(InvalidInputError, match="strong route's mean quality must exceed the base's"):
        apgr([0.1, 0.2], [1, 1], [0, 1])
    with pytest.raises(InvalidInputError, match="must exceed"):
        share_for_gain([0.1, 0.2], [1, 0], [1, 0])
    with pytest.raises(InvalidInputError, match=r"lengths \(route_score=3, base_quality=2, strong_quality=3\)"):
        apgr([0.1, 0.2, 0.3], [1, 0], [1, 1, 1])
    with pytest.raises(InvalidInputError, match=r"fraction: 1.5 is out of range; allowed: \[0, 1\]"):
        share_for_gain([0, 0, 1, 1], BASE, STRONG, 1.5)
    with pytest.raises(InvalidInputError, match="fraction"):
        share_for_gain([0, 0, 1, 1], BASE, STRONG, "half")
    with pytest.raises(InvalidInputError, match="strong_quality: 1 value"):
        routing_curve([0, 0, 1, 1], BASE, [1, 1, float("nan"), 1])


# ------------------------------------------------------------------------------------------------------------------
# Shared input checks


@pytest.mark.parametrize("fn", [auroc, ece, aurc, risk_coverage_curve, prr])
@pytest.mark.parametrize(
    ("confidence", "correct", "match"),
    [
        ([], [], "confidence: empty"),
        ([0.1, 0.2, 0.3], [1, 0], r"different lengths \(confidence=3, "),
        ([0.1, float("nan"), 0.3], [1, 0, 1], r"confidence: 1 value\(s\) are NaN or infinite \(first at index 1"),
        ([0.1, float("inf")], [1, 0], "NaN or infinite"),
        ([[0.1, 0.2]], [1], "1-D"),
    ],
)
def test_metrics_reject_bad_input(fn, confidence, correct, match):
    with pytest.raises(InvalidInputError, match=match):
        fn(confidence, correct)


@pytest.mark.parametrize("fn", [auroc, ece, aurc, risk_coverage_curve])
@pytest.mark.parametrize("labels", [[1, 2], [0.5, 1], ["a", "b"]])
def test_metrics_reject_bad_labels(fn, labels):
    with pytest.raises(InvalidInputError, match="bool or 0/1"):
        fn([0.1, 0.2], labels)


# ------------------------------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_ci_of_a_mean_matches_the_normal_interval():
    rng = np.random.default_rng(5)
    x = rng.normal(size=400)
    low, high = bootstrap_ci(np.mean, x, n=2000, seed=0)
    half = 1.96 * x.std() / math.sqrt(x.size)  # ≈ 0.098
    assert low < x.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_ci(np.mean, x, n=2000, seed=0) == (low, high)  # deterministic for a seed
    low90, high90 = bootstrap_ci(np.mean, x, n=2000, seed=0, level=0.9)
    assert low < low90 < high90 < high


def test_bootstrap_resamples_rows_jointly():
    x = np.arange(50.0)
    # same rows drawn from both arrays -> the pairs stay equal in every resample
    assert bootstrap_ci(lambda a, b: float(np.mean(a == b)), x, x.copy(), n=200) == (1.0, 1.0)


def test_bootstrap_ci_of_auroc_skips_one_class_resamples():
    conf = np.array([0.9, 0.8, 0.3, 0.2, 0.7])
    correct = np.array([1, 1, 0, 0, 0])
    low, high = bootstrap_ci(auroc, conf, correct, n=100)  # (3/5)^5 + (2/5)^5: about 1 resample in 11 has one class
    assert 0.0 <= low <= auroc(conf, correct) <= high <= 1.0


def test_bootstrap_ci_bad_input():
    with pytest.raises(InvalidInputError, match="at least one array"):
        bootstrap_ci(np.mean)
    with pytest.raises(InvalidInputError, match=r"different lengths \(array 0=3, array 1=2\)"):
        bootstrap_ci(auroc, [0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(InvalidInputError, match="array 0: expected a non-empty"):
        bootstrap_ci(np.mean, [])
    with pytest.raises(InvalidInputError, match="n: expected a positive"):
        bootstrap_ci(np.mean, [1.0, 2.0], n=0)
    with pytest.raises(InvalidInputError, match=r"level: 1.5 is out of range; allowed: \(0, 1\)"):
        bootstrap_ci(np.mean, [1.0, 2.0], level=1.5)
    with pytest.raises(InvalidInputError, match="undefined on 100 of 100 resamples"):
        bootstrap_ci(prr, [0.1, 0.2, 0.3], [1, 1, 1], n=100)  # PRR needs differing qualities
