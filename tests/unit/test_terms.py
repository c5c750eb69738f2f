"""Term matching: a query naming a rare word of an expert's documents is matched to that expert."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adaptive_moe.config import RouterConfig
from adaptive_moe.errors import CorruptExpertError, InvalidInputError, UnknownNameError
from adaptive_moe.routing import Query, TermMatcher, UncertaintyRouter
from adaptive_moe.routing.terms import rarity, words
from tests.unit.test_router import sig

LETTER = ["Dear Tomas, the barn roof leaks again at the north end.", "Bring your fiddle at Christmas. Love, Margit"]
MANUAL = ["The Aquila TR-20 filter weighs 310 grams.", "Backflush the TR-20 with the syringe after every trip."]


def test_words_are_lower_cased_without_possessives_and_keep_model_numbers():
    assert words("Margit's letter to TOMAS about the TR-20, 1847 and a b") == {
        "margit", "letter", "to", "tomas", "about", "the", "tr-20", "1847", "and"}  # fmt: skip
    assert words("Zoë’s café") == {"zoë", "café"}
    assert words("") == set() and words("-- _ !") == set()


def test_rarity_follows_general_english_frequency():
    assert rarity("the") == 0.0 and rarity("capital") == 0.0  # common words tie a query to nothing
    assert rarity("castellane") == 1.0 and rarity("tr-20") == 1.0  # a surname, a model number
    assert rarity("1847") == 0.0  # plain numbers recur in unrelated texts
    assert 0.0 < rarity("fiddle") < rarity("margit") <= 1.0


def test_a_rare_shared_word_ties_a_query_to_its_expert_only():
    terms = TermMatcher()
    terms.add("letter", LETTER)
    terms.add("manual", MANUAL)
    margit, capital, mixed = terms.scores(["What instrument does Margit want?", "What is the capital of France?",
                                           "Did Margit buy a TR-20?"])  # fmt: skip
    assert margit["letter"] == 1.0 and margit["manual"] == 0.0
    assert capital == {"letter": 0.0, "manual": 0.0}
    assert mixed == {"letter": 1.0, "manual": 1.0}
    assert terms.explain("What instrument does Margit want?", "letter") == ("margit", 1.0)
    assert terms.explain("What is the capital of France?", "letter") is None


def test_a_word_several_experts_share_is_split_between_them():
    terms = TermMatcher()
    terms.add("a", ["Skerrow lighthouse keepers"])
    terms.add("b", ["Skerrow ferry timetable"])
    [row] = terms.scores(["Who kept the Skerrow light?"])
    assert row["a"] == pytest.approx(0.5) and row["b"] == pytest.approx(0.5)
    terms.remove("b")
    assert terms.scores(["Who kept the Skerrow light?"])[0] == {"a": 1.0}
    terms.add("a", ["something else entirely"])  # replacing forgets the old words
    assert terms.scores(["Who kept the Skerrow light?"])[0] == {"a": 0.0}
    with pytest.raises(UnknownNameError):
        terms.remove("b")
    terms.discard("b")  # no error
    with pytest.raises(InvalidInputError, match="strings"):
        terms.add("c", ["fine", 3])


def test_term_matcher_round_trips_and_refuses_bad_state():
    terms = TermMatcher()
    terms.add("letter", LETTER)
    again = TermMatcher.from_dict(json.loads(json.dumps(terms.to_dict())))
    assert again.experts == ["letter"] and again.scores(["Margit?"]) == terms.scores(["Margit?"])
    for bad in ([], {"experts": []}, {"experts": {"x": "word"}}):
        with pytest.raises(InvalidInputError):
            TermMatcher.from_dict(bad)
    with pytest.raises(InvalidInputError, match="language"):
        TermMatcher("")


def _router(cfg: RouterConfig) -> UncertaintyRouter:
    """Embeddings that never tell the two experts apart from general questions: only words can."""
    router = UncertaintyRouter(cfg)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    router.embed = lambda queries: np.stack([vectors[5] for _ in queries])  # every query: the same point
    router.matcher.set_background(vectors[:2])
    router.add_expert("letter", vectors[2:3])
    router.add_expert("manual", vectors[3:4])
    router.learn_terms("letter", LETTER)
    router.learn_terms("manual", MANUAL)
    return router


def test_the_router_matches_by_words_when_embeddings_do_not_tell():
    cfg = RouterConfig(estimator="mean_logprob", threshold=0.5, matcher="centroid", min_match_score=0.5,
                       override_match_score=0.6)  # fmt: skip
    router = _router(cfg)
    confident = sig([-0.05, -0.1])
    margit = Query("What instrument does Margit ask Tomas to bring?", signals=confident)
    general = Query("What is the capital of France?", signals=confident)
    d_margit, d_general = router.route_batch([margit, general])
    assert d_margit.route == "expert" and d_margit.experts == [("letter", 1.0)]
    assert d_margit.expert_scores["letter"] == 1.0 and d_margit.expert_scores["manual"] < 0.5
    assert d_general.route == "base" and max(d_general.expert_scores.values()) < 0.5
    off = _router(cfg.replace(term_match=False))
    assert off.route(margit).route == "base"  # embeddings alone: the confident base answers
    router.remove_expert("letter")
    assert router.terms.experts == ["manual"] and "letter" not in router.route(margit).expert_scores


def test_the_router_saves_its_words_and_reads_routers_saved_without_them(tmp_path):
    cfg = RouterConfig(estimator="mean_logprob", matcher="centroid")
    router = _router(cfg)
    router.save(tmp_path / "r")
    again = UncertaintyRouter.load(tmp_path / "r")
    assert again.terms.experts == ["letter", "manual"]
    q = [Query("Where does Margit work?")]
    assert again.terms.scores([q[0].text]) == router.terms.scores([q[0].text])
    (tmp_path / "r" / "terms.json").unlink()  # a router saved before term matching
    assert UncertaintyRouter.load(tmp_path / "r").terms.experts == []
    (tmp_path / "r" / "terms.json").write_text('{"experts": {"letter": 3}}')
    with pytest.raises(CorruptExpertError, match="cannot read the router"):
        UncertaintyRouter.load(tmp_path / "r")
