"""Confidence estimators, the probe, expert matchers, routers and router training (tiny models and
hand-made signals)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adaptive_moe import load_base_model
from adaptive_moe.config import GenerationConfig, RouterConfig
from adaptive_moe.errors import ConfigError, InvalidInputError, ModelBusyError, UnknownNameError
from adaptive_moe.evaluation.metrics import auroc
from adaptive_moe.model.generation import GenerationSignals
from adaptive_moe.routing import (
    CentroidMatcher,
    ClassifierMatcher,
    KNNMatcher,
    Query,
    Router,
    RouteScores,
    UncertaintyRouter,
    label_base_answers,
    make_matcher,
    register_router,
    router_class,
    train_router,
)
from adaptive_moe.uncertainty import (
    EMPTY_ANSWER_SCORE,
    ConfidenceEstimator,
    HiddenStateProbe,
    get_estimator,
    list_estimators,
    register_estimator,
)


def sig(logprobs, entropies=None, hidden=None, text="x"):
    lp = torch.tensor(logprobs, dtype=torch.float32)
    ent = torch.tensor(entropies if entropies is not None else [0.5] * len(logprobs), dtype=torch.float32)
    h = torch.tensor(hidden if hidden is not None else [0.0, 0.0, 0.0], dtype=torch.float32)
    return GenerationSignals(prompt="q", text=text, token_ids=[1] * len(logprobs), token_logprobs=lp,
                             token_entropies=ent, prompt_hidden=h, prompt_hidden_mean=h, finish_reason="eos",
                             prompt_tokens=5, query_hidden=h)  # fmt: skip


def test_builtin_estimators_score_by_hand():
    s = sig([-0.1, -0.5, -2.0], [0.2, 0.4, 0.9])
    expected = {"max_sequence_prob": -2.6, "mean_logprob": -2.6 / 3, "mean_entropy": -0.5, "min_token_prob": -2.0,
                "perplexity": -math.exp(2.6 / 3)}  # fmt: skip
    for name, value in expected.items():
        assert get_estimator(name).score(s) == pytest.approx(value, rel=1e-6), name
    assert {"probe", "prompt_probe", *expected} <= set(list_estimators())
    assert get_estimator("mean_logprob").score(sig([])) == EMPTY_ANSWER_SCORE


def test_more_confident_answers_score_higher_and_map_into_unit_interval():
    sure, unsure = sig([-0.01, -0.02], [0.05, 0.1]), sig([-1.5, -2.5], [2.0, 3.0])
    for name in ("max_sequence_prob", "mean_logprob", "mean_entropy", "min_token_prob", "perplexity"):
        est = get_estimator(name)
        raw = est.score_batch([sure, unsure])
        conf = est.to_confidence(raw)
        assert raw[0] > raw[1] and conf[0] > conf[1] and np.all((conf >= 0) & (conf <= 1)), name


def test_estimator_registry_validates_and_lists_names():
    with pytest.raises(UnknownNameError, match="mean_logprob") as err:
        get_estimator("nope")
    assert isinstance(err.value, KeyError)
    with pytest.raises(InvalidInputError):
        register_estimator(int)

    class Bad(ConfidenceEstimator):
        name = "mean_logprob"

        def score(self, signals):
            return 0.0

    with pytest.raises(ConfigError, match="already registered"):
        register_estimator(Bad)

    @register_estimator
    class AnswerLength(ConfidenceEstimator):  # the one-method way users add an estimator
        name = "answer_length_test"

        def score(self, signals):
            return -float(len(signals.token_ids))

    assert get_estimator("answer_length_test").score(sig([-1.0, -1.0])) == -2.0

    class NaNs(AnswerLength):
        name = "nans_test"

        def score(self, signals):
            return float("nan")

    with pytest.raises(InvalidInputError, match="non-finite"):
        NaNs().score_batch([sig([-1.0])])


def _separable(n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    hidden = rng.normal(size=(n, 3)) + np.where(y[:, None], 1.5, -1.5) * np.array([1.0, 0.0, 0.0])
    return [sig([-0.3], hidden=h.tolist()) for h in hidden], y


def test_probe_learns_from_hidden_states_and_round_trips():
    signals, y = _separable()
    probe = HiddenStateProbe(with_answer=False, C=1.0).fit(signals, y)
    test, y_test = _separable(seed=1)
    raw = probe.score_batch(test)
    assert np.mean((raw > 0) == y_test) > 0.9
    again = get_estimator("probe")
    again.load_state_dict(probe.state_dict())
    assert np.allclose(again.score_batch(test), raw) and not again.needs_answer
    assert get_estimator("prompt_probe").needs_answer is False and get_estimator("probe").needs_answer is True


def test_probe_bad_input():
    signals, y = _separable()
    with pytest.raises(ModelBusyError, match="not trained"):
        HiddenStateProbe().score(signals[0])
    with pytest.raises(InvalidInputError, match="both right and wrong"):
        HiddenStateProbe().fit(signals, np.ones(len(signals), bool))
    with pytest.raises(InvalidInputError, match="as many labels"):
        HiddenStateProbe().fit(signals, y[:-1])
    probe = HiddenStateProbe(with_answer=False).fit(signals, y)
    with pytest.raises(InvalidInputError, match="features"):
        probe.score(sig([-1.0], hidden=[0.0] * 5))
    with pytest.raises(InvalidInputError, match="source"):
        HiddenStateProbe(source="elsewhere")


@pytest.mark.parametrize("name", ["centroid", "knn"])
def test_matchers_find_the_covering_expert_and_reject_background(name):
    rng = np.random.default_rng(0)
    dim = 16
    offset = rng.normal(size=dim) * 5  # all embeddings share a large common direction, as hidden states do
    centres = {"people": rng.normal(size=dim) * 3, "companies": rng.normal(size=dim) * 3}
    matcher = make_matcher(name)
    matcher.set_background(offset + rng.normal(size=(60, dim)))
    for expert, c in centres.items():
        matcher.add(expert, offset + c + rng.normal(size=(20, dim)) * 0.5)
    assert matcher.experts == ["companies", "people"]
    queries = np.stack([offset + centres["people"] + rng.normal(size=dim) * 0.5, offset + rng.normal(size=dim)])
    people, general = matcher.scores(queries)
    assert people["people"] > 0.6 > people["companies"]
    assert max(general.values()) < 0.5
    matcher.remove("people")
    assert list(matcher.scores(queries)[0]) == ["companies"]
    with pytest.raises(InvalidInputError, match="dimensions"):
        matcher.scores(np.zeros((1, dim + 1)))
    with pytest.raises(InvalidInputError, match="NaN"):
        matcher.add("x", np.full((2, dim), np.nan))
    with pytest.raises(UnknownNameError):
        matcher.remove("people")


def test_matcher_tensors_round_trip():
    rng = np.random.default_rng(1)
    a = KNNMatcher(k=2)
    a.add("x", rng.normal(size=(5, 4)))
    a.add("y", rng.normal(size=(5, 4)))
    b = make_matcher("knn", **a.settings())
    b.load_tensors(a.tensors())
    q = rng.normal(size=(3, 4))
    assert a.scores(q) == b.scores(q) and b.k == 2
    assert CentroidMatcher().scores(q) == [{}, {}, {}]
    with pytest.raises(UnknownNameError, match="centroid"):
        make_matcher("nope")


class FixedRouter(Router):
    """The one-method way to write a router: score() only."""

    name = "fixed_test"

    def __init__(self, config=None, confidence=0.2, scores=None):
        super().__init__(config)
        self._c, self._s = confidence, scores or {}

    def score(self, query):
        return RouteScores(self._c, dict(self._s))


def test_route_decisions():
    cfg = RouterConfig(threshold=0.5, min_match_score=0.4, top_k=2)
    q = Query("Who founded Kovane?")
    base = FixedRouter(cfg, confidence=0.9, scores={"people": 0.55}).route(q)  # below override_match_score
    assert base.route == "base" and base.experts == [] and "0.90 >= threshold 0.50" in base.reason
    expert = FixedRouter(cfg, 0.2, {"people": 0.9, "companies": 0.6, "places": 0.45}).route(q)
    assert expert.route == "expert" and [n for n, _ in expert.experts] == ["people", "companies"]
    assert sum(w for _, w in expert.experts) == pytest.approx(1.0) and expert.experts[0][1] == pytest.approx(0.6)
    gap = FixedRouter(cfg, 0.2, {"people": 0.3}).route(q)
    assert gap.route == "gap" and gap.best_expert == ("people", 0.3) and "0.30 < 0.40" in gap.reason
    assert gap.to_dict()["route"] == "gap"
    with pytest.raises(InvalidInputError, match="outside"):
        FixedRouter(cfg, 1.5).route(q)


def test_a_close_match_overrides_a_confident_base_when_asked():
    q = Query("In which year did the great flood hit Port Ardwick?")
    scores = {"ardwick": 0.85, "tessaly": 0.55}
    plain = RouterConfig(threshold=0.5, min_match_score=0.5, top_k=2, override_match_score=None)
    assert FixedRouter(plain, 0.9, scores).route(q).route == "base"  # off: a confident base always answers
    cfg = RouterConfig(threshold=0.5, min_match_score=0.5, top_k=2, override_match_score=0.8)
    d = FixedRouter(cfg, 0.9, scores).route(q)
    assert d.route == "expert" and [n for n, _ in d.experts] == ["ardwick", "tessaly"]
    assert "0.90 >= 0.50, but the query matches an expert >= 0.80" in d.reason
    assert FixedRouter(cfg, 0.9, {"ardwick": 0.79}).route(q).route == "base"  # not close enough
    assert FixedRouter(cfg, 0.2, {"ardwick": 0.6}).route(q).route == "expert"  # unsure: the usual rule
    with pytest.raises(ConfigError, match="override_match_score"):
        RouterConfig(override_match_score=1.5)


def test_the_uncertainty_router_matches_every_query_when_a_match_can_override():
    cfg = RouterConfig(estimator="mean_logprob", threshold=0.5, matcher="centroid", override_match_score=0.9)
    router = UncertaintyRouter(cfg)
    rng = np.random.default_rng(0)
    ardwick = rng.normal(size=(4, 8)).astype(np.float32)
    router.embed = lambda queries: np.stack([ardwick[0] if "Ardwick" in q.text else -ardwick[0] for q in queries])
    router.matcher.set_background(ardwick[1:] * 0.01)  # general questions: near the origin
    router.add_expert("ardwick", ardwick[:1])
    sure = Query("When did the great flood hit Port Ardwick?", signals=sig([-0.05, -0.1]))
    other = Query("What is the capital of France?", signals=sig([-0.05, -0.1]))
    d_sure, d_other = router.route_batch([sure, other])
    assert d_sure.route == "expert" and d_sure.expert_scores["ardwick"] == pytest.approx(1.0, abs=1e-4)
    assert d_other.route == "base" and d_other.expert_scores["ardwick"] < 0.1  # matched, and not close


def test_router_registry():
    register_router(FixedRouter)
    assert router_class("fixed_test") is FixedRouter and router_class("uncertainty") is UncertaintyRouter
    with pytest.raises(UnknownNameError, match="uncertainty"):
        router_class("nope")
    with pytest.raises(InvalidInputError):
        register_router(dict)


def test_pre_mode_needs_a_prompt_only_estimator():
    with pytest.raises(ConfigError, match="prompt_probe"):
        UncertaintyRouter(RouterConfig(mode="pre", estimator="mean_logprob"))
    assert UncertaintyRouter(RouterConfig(mode="pre", estimator="prompt_probe")).mode == "pre"


def test_uncertainty_router_untrained_uses_the_estimators_own_scale():
    router = UncertaintyRouter(RouterConfig(estimator="mean_logprob", threshold=0.5))
    sure, unsure = Query("a", signals=sig([-0.05, -0.1])), Query("b", signals=sig([-2.0, -3.0]))
    d_sure, d_unsure = router.route_batch([sure, unsure])
    assert d_sure.route == "base" and d_sure.confidence == pytest.approx(math.exp(-0.075), rel=1e-5)
    assert d_unsure.route == "gap" and "no experts" in d_unsure.reason
    with pytest.raises(InvalidInputError, match="signals"):
        router.route(Query("c"))


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


def _labelled_half_right(base, n=32):
    """Questions whose golds are the tiny model's own answers for half of them: both classes present."""
    questions = [f"Question number {i} about the capital of France?" for i in range(n // 2)]
    questions += [f"Who wrote Hamlet in the year {1500 + i}?" for i in range(n // 2)]
    answers = [s.text or "?" for s in base.generate_with_signals(questions, max_new_tokens=4)]
    golds = [[a] if i % 2 == 0 else ["zzzz-never"] for i, a in enumerate(answers)]
    return [(q, g, "" if i < n // 2 else "hamlet") for i, (q, g) in enumerate(zip(questions, golds, strict=True))]


def test_train_router_end_to_end_on_a_tiny_model(base, tmp_path, monkeypatch):
    data = _labelled_half_right(base)
    gen = GenerationConfig(max_new_tokens=4)
    labelled = label_base_answers(base, data, generation=gen, cache_dir=tmp_path, progress=False)
    assert len(labelled) == 32 and sum(labelled["correct"]) >= 14  # the even ones (empty answers aside)
    assert {"question", "answers", "domain", "answer", "correct", "query_hidden"} <= set(labelled.column_names)

    def no_generation(*a, **k):
        raise AssertionError("cached labels must not regenerate")

    monkeypatch.setattr(type(base), "generate_with_signals", no_generation)
    again = label_base_answers(base, data, generation=gen, cache_dir=tmp_path, progress=False)
    assert again["answer"] == labelled["answer"]
    monkeypatch.undo()

    cfg = RouterConfig(estimator="probe", calibration="isotonic", target_error=0.3, delta=0.2, embedder="base")
    experts = {"hamlet": [d[0] for d in data[16:24]]}
    router, report = train_router(base, labelled, config=cfg, expert_questions=experts, progress=False)
    assert report.n_train + report.n_validation == 32 and report.probe_C is not None
    assert router.calibrator is not None and router.experts == ["hamlet"]
    assert 0.0 <= report.threshold <= 1.0 and report.threshold_detail
    path = router.save(tmp_path / "router")
    loaded = UncertaintyRouter.load(path)
    asked = [d[0] for d in data[:6]]
    queries = [Query(q, signals=s) for q, s in zip(asked, base.generate_with_signals(asked, gen), strict=True)]
    assert [d.to_dict() for d in loaded.route_batch(queries)] == [d.to_dict() for d in router.route_batch(queries)]

    from adaptive_moe.routing.evaluation import evaluate_router

    strong = [1.0] * len(labelled)  # an onward route that is always right: every routed query gains
    report = evaluate_router(router, labelled, strong_quality=strong, bootstrap=50)
    assert report.n == 32 and set(report.estimators) >= {"mean_logprob", "router:probe"}
    assert report.estimators["router:probe"]["auroc"] is not None and report.calibration["calibrated"]
    assert report.matching["n_domain"] == 16 and report.matching["n_general"] == 16
    assert report.matching["domain_to_own_expert"] is not None and report.n_general == 16
    assert 0 <= report.cost_quality["apgr"] <= 1
    assert sum(v for k, v in report.routes.items() if k != "threshold") == 32
    files = report.write(tmp_path / "report")
    assert {f.suffix for f in files} >= {".json", ".md"} and "Predicting base errors" in files[1].read_text()


def test_load_router_errors(tmp_path):
    from adaptive_moe.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no saved router"):
        UncertaintyRouter.load(tmp_path)


@pytest.mark.parametrize("name", ["probe", "prompt_probe"])
def test_probes_round_trip_their_state(name):
    signals, y = _separable()
    probe = get_estimator(name, C=0.5).fit(signals, y)
    again = get_estimator(name)
    again.load_state_dict(probe.state_dict())
    assert type(again) is type(probe) and again.C == 0.5 and again.needs_answer == probe.needs_answer
    assert np.allclose(again.score_batch(signals), probe.score_batch(signals))


def test_threshold_one_never_trusts_the_base():
    decision = FixedRouter(RouterConfig(threshold=1.0), confidence=1.0, scores={}).route(Query("q"))
    assert decision.route == "gap"


def _blobs(seed=0, dim=16):
    """Two experts and a background around a large shared offset (as hidden states have)."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=dim) * 5
    centres = {"people": rng.normal(size=dim) * 3, "companies": rng.normal(size=dim) * 3}
    examples = {n: offset + c + rng.normal(size=(20, dim)) * 0.5 for n, c in centres.items()}
    background = offset + rng.normal(size=(60, dim))
    queries = {n: offset + c + rng.normal(size=(5, dim)) * 0.5 for n, c in centres.items()}
    return examples, background, queries, offset + rng.normal(size=(10, dim))


def test_classifier_matcher_matches_blobs_and_rejects_background():
    examples, background, queries, general = _blobs()
    matcher = make_matcher("classifier")
    assert isinstance(matcher, ClassifierMatcher) and matcher.settings() == {"C": 1.0}
    matcher.set_background(background)
    for name, x in examples.items():
        matcher.add(name, x)
    for name, q in queries.items():
        for s in matcher.scores(q):
            assert max(s, key=s.get) == name and s[name] > 0.7 and sum(s.values()) <= 1 + 1e-6
    assert max(max(s.values()) for s in matcher.scores(general)) < 0.5
    # removing an expert refits: its queries no longer score high for what is left
    matcher.remove("people")
    after = matcher.scores(queries["people"])
    assert all(list(s) == ["companies"] and s["companies"] < 0.5 for s in after)
    matcher.add("people", examples["people"])
    assert min(s["people"] for s in matcher.scores(queries["people"])) > 0.7
    with pytest.raises(InvalidInputError, match="positive"):
        ClassifierMatcher(C=0)


def test_classifier_matcher_single_expert_without_background_falls_back_to_cosine():
    examples, _, queries, general = _blobs()
    matcher = ClassifierMatcher()
    assert matcher.scores(general[:2]) == [{}, {}]
    matcher.add("people", examples["people"])
    own = [s["people"] for s in matcher.scores(queries["people"])]
    other = [s["people"] for s in matcher.scores(queries["companies"])]
    assert min(own) > 0.9 and min(own) > max(other) and all(0 <= v <= 1 for v in own + other)
    matcher.add("companies", examples["companies"])  # two classes now: a classifier again
    s = matcher.scores(queries["companies"])
    assert all(max(x, key=x.get) == "companies" for x in s)


def test_classifier_matcher_round_trips_through_a_saved_router(tmp_path):
    examples, background, queries, general = _blobs(seed=3)
    router = UncertaintyRouter(RouterConfig(matcher="classifier", estimator="mean_logprob"),
                               matcher=ClassifierMatcher(C=2.0))  # fmt: skip
    router.matcher.set_background(background)
    for name, x in examples.items():
        router.add_expert(name, x)
    loaded = UncertaintyRouter.load(router.save(tmp_path / "router"))
    assert isinstance(loaded.matcher, ClassifierMatcher) and loaded.matcher.C == 2.0
    q = np.concatenate([queries["people"], general])
    assert loaded.matcher.scores(q) == router.matcher.scores(q)


def test_unknown_matcher_lists_the_classifier():
    with pytest.raises(UnknownNameError, match="'classifier'"):
        make_matcher("logreg")


def test_train_router_with_the_classifier_matcher(base, tmp_path):
    data = _labelled_half_right(base)
    cfg = RouterConfig(estimator="mean_logprob", matcher="classifier", embedder="base")
    experts = {"hamlet": [d[0] for d in data[16:24]]}
    router, report = train_router(base, data, config=cfg, expert_questions=experts, share=0.5,
                                  generation=GenerationConfig(max_new_tokens=4), progress=False)  # fmt: skip
    assert isinstance(router.matcher, ClassifierMatcher) and router.experts == ["hamlet"]
    assert report.min_match_score is not None and report.threshold_detail["share"] == 0.5
    assert "threshold" in report.summary() and "hamlet (8 questions)" in report.summary()
    loaded = UncertaintyRouter.load(router.save(tmp_path / "router"))
    emb = router.embed([Query(q, signals=s) for q, s in zip([d[0] for d in data[:4]], base.generate_with_signals(
        [d[0] for d in data[:4]], max_new_tokens=4), strict=True)])  # fmt: skip
    assert loaded.matcher.scores(emb) == router.matcher.scores(emb)
    assert loaded.config.min_match_score == router.config.min_match_score
    with pytest.raises(InvalidInputError, match="not both"):
        train_router(base, data, config=cfg.replace(target_error=0.2), share=0.5, progress=False)


def test_pre_mode_router_fits_and_decides_on_a_shallow_layer(base, tmp_path, monkeypatch):
    data = _labelled_half_right(base)
    gen = GenerationConfig(max_new_tokens=4)
    labelled = label_base_answers(base, data, generation=gen, progress=False)
    asked_for: list = []
    real = type(base).prompt_states

    def spy(self, prompts, generation=None, *, layers=None, **kw):
        asked_for.append(layers)
        return real(self, prompts, generation, layers=layers, **kw)

    monkeypatch.setattr(type(base), "prompt_states", spy)
    cfg = RouterConfig(mode="pre", estimator="prompt_probe", calibration="none", embedder="base", pre_layers=1)
    experts = {"hamlet": [d[0] for d in data[16:24]]}
    router, _ = train_router(base, labelled, config=cfg, expert_questions=experts, progress=False)
    assert asked_for and set(asked_for) == {1}  # probe features and matcher embeddings: layer 1
    asked = [d[0] for d in data]
    shallow, deep = base.prompt_states(asked, layers=1), base.prompt_states(asked)
    raw = router.estimator.score_batch(shallow)
    y = np.array(labelled["correct"], bool)
    assert auroc(raw, y) > 0.5 and not np.allclose(raw, router.estimator.score_batch(deep))
    loaded = UncertaintyRouter.load(router.save(tmp_path / "router"))
    assert loaded.config.pre_layers == 1
    queries = [Query(q, states=s) for q, s in zip(asked, shallow, strict=True)]
    assert [d.to_dict() for d in loaded.route_batch(queries)] == [d.to_dict() for d in router.route_batch(queries)]
    from adaptive_moe.routing.evaluation import evaluate_router

    report = evaluate_router(router, labelled, estimators=[], bootstrap=10, base=base)
    assert report.estimators["router:prompt_probe"]["auroc"] == pytest.approx(auroc(raw, y))
    with pytest.raises(InvalidInputError, match="pass base="):
        evaluate_router(router, labelled, estimators=[], bootstrap=10)
    with pytest.raises(ConfigError, match="pre_layers"):
        RouterConfig(pre_layers=0)
