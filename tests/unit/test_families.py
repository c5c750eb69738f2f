"""Leave-one-family-out evaluation of confidence estimators (adaptive_moe.routing.families)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptive_moe.config import GenerationConfig
from adaptive_moe.errors import InvalidInputError
from adaptive_moe.model.generation import GenerationSignals
from adaptive_moe.routing.families import (
    FamilyData,
    family_table,
    layer_query_states,
    leave_one_family_out,
    p_true_scores,
    sample_agreement,
    shipping_choice,
    threshold_table,
)


def _sig(mean_lp: float, hidden: np.ndarray) -> GenerationSignals:
    lp = torch.full((4,), mean_lp, dtype=torch.float32)
    h = torch.tensor(hidden, dtype=torch.float32)
    return GenerationSignals(prompt="q", text="a", token_ids=[1] * 4, token_logprobs=lp,
                             token_entropies=torch.full((4,), 0.5), prompt_hidden=h, prompt_hidden_mean=h,
                             finish_reason="eos", prompt_tokens=5, query_hidden=h)  # fmt: skip


def _data(seed: int = 0) -> FamilyData:
    """Three families of 40 answers. The mean log-prob tells right from wrong in every family; a hidden
    direction does too but flips sign in family "c" (a probe fitted on "a" and "b" fails on "c")."""
    rng = np.random.default_rng(seed)
    signals, correct, family = [], [], []
    for fam, sign in (("a", 1.0), ("b", 1.0), ("c", -1.0)):
        for i in range(40):
            right = i % 2 == 0
            mean_lp = (-0.5 if right else -1.5) + rng.normal(0, 0.7)
            hidden = rng.normal(0, 1, 8)
            hidden[:4] = sign * (2.0 if right else -2.0) + rng.normal(0, 0.3, 4)  # a strong direction
            signals.append(_sig(mean_lp, hidden))
            correct.append(right)
            family.append(fam)
    return FamilyData(signals, correct, family, layers={})


def test_every_family_is_scored_by_estimators_fitted_without_it():
    d = _data()
    res = leave_one_family_out(d, ["mean_logprob", "probe_C0.03"], general_families=("a", "b"), min_class=10,
                               bootstrap=50)  # fmt: skip
    stat, probe = res["mean_logprob"], res["probe_C0.03"]
    assert set(stat["families"]) == {"a", "b", "c"}
    assert all(r["auroc"] > 0.65 and r["headline"] and r["n"] == 40 for r in stat["families"].values())
    lo, hi = stat["families"]["a"]["auroc_ci"]
    assert lo <= stat["families"]["a"]["auroc"] <= hi
    # the probe leans on the hidden direction learnt from "a" and "b", which is reversed in "c"
    assert probe["families"]["c"]["auroc"] < 0.3 < stat["families"]["c"]["auroc"]
    assert stat["mean_auroc"] == pytest.approx(np.mean([r["auroc"] for r in stat["families"].values()]))
    assert stat["general_auroc"] == pytest.approx(np.mean([stat["families"][f]["auroc"] for f in "ab"]))
    assert 0.0 <= stat["pooled_ece"] <= 1.0 and stat["headline_families"] == 3
    # the rule never ships an estimator that falls below the best statistic on a held-out family
    choice = shipping_choice(res, {"mean_logprob": 1.0, "probe_C0.03": 1.0})
    assert choice["chosen"] == "mean_logprob" and "c" in choice["excluded"]["probe_C0.03"]
    assert shipping_choice(res, {"mean_logprob": 1.2, "probe_C0.03": 1.0})["chosen"] is None
    t = stat["families"]["b"]["threshold"]  # chosen on "a" and "c" for error <= 0.3, realised on "b"
    assert t["target"] == 0.3 and 0.0 <= t["coverage"] <= 1.0
    assert t["feasible"] and t["error"] is not None and t["error"] < 0.5  # a well-ranked family keeps it roughly
    table = threshold_table(res, ["mean_logprob"])
    assert table[0].startswith("| estimator (target error 0.30) |") and len(table) == 3
    lines = family_table(res, {"mean_logprob": 1.0})
    assert lines[0].startswith("| estimator |") and len(lines) == 4 and "AUROC c" in lines[0]


def test_a_family_without_both_classes_has_no_auroc_and_no_headline():
    d = _data()
    d.correct[d.family == "c"] = False  # the base gets all of "c" wrong
    res = leave_one_family_out(d, ["mean_logprob"], min_class=10, bootstrap=0)["mean_logprob"]
    assert res["families"]["c"]["auroc"] is None and not res["families"]["c"]["headline"]
    assert res["headline_families"] == 2 and res["families"]["a"]["auroc_ci"] is None


def test_bad_requests_are_named():
    d = _data()
    with pytest.raises(InvalidInputError, match="unknown estimators"):
        leave_one_family_out(d, ["nope"])
    one = FamilyData(d.signals[:40], d.correct[:40], d.family[:40], layers={})
    with pytest.raises(InvalidInputError, match="at least two families"):
        leave_one_family_out(one)
    with pytest.raises(InvalidInputError, match="answers"):
        FamilyData(d.signals, d.correct[:3], d.family, layers={})
    # P(True) and the layer probe are offered only when their inputs were computed
    assert "p_true" not in leave_one_family_out(d, bootstrap=0)


def test_p_true_and_layer_states_on_a_model(tiny_base):
    gen = GenerationConfig(max_new_tokens=4, batch_size=2)
    scores = p_true_scores(tiny_base, ["Capital of France?", "2+2?", "Who?"], ["Paris", "5", ""], gen)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    with pytest.raises(InvalidInputError, match="answers"):
        p_true_scores(tiny_base, ["a"], [], gen)
    states = layer_query_states(tiny_base, ["Capital of France?", "2+2?"], gen, [1, 2])
    hidden = tiny_base.model.config.hidden_size
    assert set(states) == {1, 2} and states[1].shape == (2, hidden) and not np.allclose(states[1], states[2])


def test_sampling_consistency_and_the_probe_trained_to_predict_it():
    d = _data()
    rng = np.random.default_rng(1)
    d.agreement = np.clip(np.where(d.correct, 0.8, 0.3) + rng.normal(0, 0.15, d.correct.size), 0, 1)
    res = leave_one_family_out(d, ["sample_agreement", "agreement_probe"], bootstrap=0)
    assert all(r["auroc"] > 0.8 for r in res["sample_agreement"]["families"].values())
    assert set(res["agreement_probe"]["families"]) == {"a", "b", "c"}
    assert "sample_agreement" not in leave_one_family_out(_data(), bootstrap=0)  # no samples: not offered


def test_sample_agreement_on_a_model(tiny_base):
    gen = GenerationConfig(max_new_tokens=4, batch_size=2)
    questions = ["Capital of France?", "2+2?", "Who?"]
    answers = [s.text for s in tiny_base.generate_with_signals(questions, gen)]
    a = sample_agreement(tiny_base, questions, answers, gen, k=2, max_new_tokens=4)
    assert a.shape == (3,) and np.all((a >= 0) & (a <= 1))
    assert np.array_equal(a, sample_agreement(tiny_base, questions, answers, gen, k=2, max_new_tokens=4))  # seeded
    with pytest.raises(InvalidInputError, match="k must be"):
        sample_agreement(tiny_base, questions, answers, gen, k=0)
