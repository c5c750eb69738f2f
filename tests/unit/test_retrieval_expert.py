"""The retrieval expert: a passage index next to its adapter, answers from the passages it retrieves, and
citations from the expert through the facade's attribution; created by the pipeline with
``creation.method: retrieval`` (tiny random models; a bag-of-words embedder stands in for MiniLM)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_moe import AdaptiveMoE, AdaptiveMoEConfig, load_base_model
from adaptive_moe.documents import document_passages
from adaptive_moe.errors import ConfigError, CorruptExpertError, InvalidInputError
from adaptive_moe.experts import ExpertPool, ExpertRegistry, PassageIndex, RetrievalExpert
from adaptive_moe.experts.retrieval import (
    INDEX_FILE,
    QUESTION_PROMPT,
    best_readings,
    context_prompt,
    question_likelihood,
    rank_reading,
    rerank,
    sentence_match,
    supported_by,
    with_context,
)
from adaptive_moe.model import encoders
from adaptive_moe.model.constraints import normalise_quote
from adaptive_moe.model.likelihood import continuation_logprobs
from adaptive_moe.testing import make_random_adapter

DOC = """# Widget W-3 manual

The Widget W-3 is made by Acme Ltd in Norwich.

## Specifications

| Item | Value |
|---|---|
| Weight | 340 g |
| Colour | green |

## Cleaning

Rinse the filter in warm water once a week.
"""


class BagOfWords:
    """Deterministic hashed bag-of-words vectors: shared words make rows similar."""

    def encode(self, texts):
        out = np.zeros((len(texts), 4096), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9]+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 4096] += 1.0
        return out


@pytest.fixture(autouse=True)
def bow_embedder(monkeypatch):
    monkeypatch.setattr(encoders, "EMBEDDERS", encoders.EMBEDDERS.copy())
    encoders.register_embedder("bow_test", lambda base=None, **_: BagOfWords())


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_base_model(name_or_path=str(tiny_llama_dir), device="cpu")


def _index():
    return PassageIndex.build(document_passages(DOC, "manual.md"), BagOfWords(), encoder="bow_test")


def test_index_search_save_and_load(tmp_path):
    index = _index()
    [[(best, score), *_]] = index.search(BagOfWords().encode(["weight of the widget"]), 2)
    assert index.passages[best].body == "Weight: 340 g." and 0 < score <= 1
    index.save(tmp_path)
    loaded = PassageIndex.load(tmp_path)
    assert loaded.passages == index.passages and np.allclose(loaded.embeddings, index.embeddings)
    assert loaded.encoder == "bow_test"
    data = json.loads((tmp_path / INDEX_FILE).read_text())
    data["passages"] = data["passages"][:1]
    (tmp_path / INDEX_FILE).write_text(json.dumps(data))
    with pytest.raises(CorruptExpertError, match="passages but"):
        PassageIndex.load(tmp_path)
    with pytest.raises(CorruptExpertError, match="cannot read"):
        PassageIndex.load(tmp_path / "missing")


class HullDirection:
    """An embedder that puts every text along the first passage of :func:`_two_passages`."""

    def encode(self, texts):
        return np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(texts), 1))


def _two_passages():
    """A hull passage whose embedding is nearer a question about the modem than the modem passage's is."""
    text = "The hull is bright yellow and floats.\n\nData goes out by an Iridium modem."
    passages = document_passages(text, "spec.md")
    embeddings = np.array([[1.0, 0.0], [0.9, np.sqrt(1 - 0.81)]], dtype=np.float32)
    return PassageIndex(passages, embeddings, encoder="bow_test")


def test_a_hybrid_search_lifts_the_passage_that_shares_the_question_s_rare_word():
    index, query = _two_passages(), np.array([[1.0, 0.0]], dtype=np.float32)
    question = ["How does the buoy send its data, Iridium?"]
    [[(first, cosine), _]] = index.search(query, 2)
    assert index.passages[first].body.startswith("The hull") and cosine == pytest.approx(1.0)
    [[(first, _), _]] = index.search(query, 2, question, lexical_weight=0.0)  # weight 0: cosine alone
    assert index.passages[first].body.startswith("The hull")
    [[(first, score), (_, other)]] = index.search(query, 2, question, lexical_weight=0.15)
    assert index.passages[first].body.startswith("Data goes out") and score == pytest.approx(0.9 + 0.15)
    assert other == pytest.approx(1.0)  # the hull passage shares no content word with the question
    scores = index.lexical_scores(["Iridium modem", "nothing shared at all", "hull modem"])
    assert scores.shape == (3, 2) and scores[0].tolist() == [0.0, 1.0] and scores[1].tolist() == [0.0, 0.0]
    assert scores[2].max() == pytest.approx(1.0) and (scores[2] > 0).all()
    with pytest.raises(InvalidInputError, match="lexical_weight must be 0 or more"):
        index.search(query, 2, question, lexical_weight=-0.1)
    with pytest.raises(InvalidInputError, match="2 query texts for 1 query embeddings"):
        index.search(query, 2, question * 2, lexical_weight=0.15)
    with pytest.raises(ConfigError, match="retrieval_lexical_weight"):
        AdaptiveMoEConfig().replace(**{"creation.retrieval_lexical_weight": 1.5})


def test_threads_that_search_a_fresh_index_at_once_build_its_bm25_index_once(monkeypatch):
    import bm25s

    built, real = [], bm25s.BM25.index

    def slow_index(self, *args, **kwargs):  # a build long enough for every thread to arrive during it
        built.append(1)
        time.sleep(0.3)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(bm25s.BM25, "index", slow_index)
    index, start = _index(), threading.Barrier(4)

    def search(_):
        start.wait()
        return index.lexical_scores(["widget weight", "filter water"]).tolist()

    with ThreadPoolExecutor(4) as threads:
        results = list(threads.map(search, range(4)))
    assert len(built) == 1 and all(r == results[0] for r in results)


def test_an_expert_retrieves_with_the_lexical_weight_its_card_names(base, tmp_path):
    src = make_random_adapter(base.model, tmp_path / "src", seed=5)
    _two_passages().save(src)
    registry = ExpertRegistry(tmp_path / "reg")
    for name, extra in (("plain", {"top_k": 1}), ("hybrid", {"top_k": 1, "lexical_weight": 0.15})):
        registry.import_adapter(src, name, domain="the buoy", base=base, kind="retrieval", extra={"retrieval": extra})
    pool = ExpertPool(base, registry, capacity=2)
    with pool.acquire(["plain", "hybrid"]) as [plain, hybrid]:
        assert plain.lexical_weight == 0.0 and hybrid.lexical_weight == 0.15
        for expert in (plain, hybrid):  # every question embeds in the hull passage's direction
            expert._embedder = HullDirection()
        [[(p, _)]] = plain.retrieve(["Which modem sends the data?"])
        [[(h, _)]] = hybrid.retrieve(["Which modem sends the data?"])
    assert p.body.startswith("The hull") and h.body.startswith("Data goes out")
    pool.clear()
    registry.import_adapter(src, "broken", domain="the buoy", base=base, kind="retrieval",
                            extra={"retrieval": {"lexical_weight": "lots"}})  # fmt: skip
    with pool.acquire(["broken"]) as [broken], pytest.raises(CorruptExpertError, match="allowed: a number from 0"):
        broken.retrieve(["Which modem?"])
    pool.clear()
    for n, bad in enumerate((-1, 11, "high", True)):
        registry.import_adapter(src, f"unmatched{n}", domain="the buoy", base=base, kind="retrieval",
                                extra={"retrieval": {"readings": [1, 2], "sentence_match_weight": bad}})  # fmt: skip
        with pool.acquire([f"unmatched{n}"]) as [unmatched], pytest.raises(CorruptExpertError, match="sentence_match"):
            unmatched._embedder = HullDirection()
            unmatched.generate("Which modem?", max_new_tokens=2)
        pool.clear()
    with pytest.raises(ConfigError, match="retrieval_sentence_match_weight"):
        AdaptiveMoEConfig().replace(**{"creation.retrieval_sentence_match_weight": -0.5})


def test_support_and_prompt_format():
    assert supported_by("It weighs 340 g.", ["Weight: 340 g."])
    assert not supported_by("It weighs 500 g.", ["Weight: 340 g."])  # a number the passages do not hold
    assert not supported_by("", ["Weight: 340 g."]) and not supported_by("Paris", [])
    assert with_context("How heavy?", ["A", "B"]) == context_prompt("How heavy?", ["A", "B"])
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How heavy?"}]
    out = with_context(chat, ["Weight: 340 g."])
    assert out[0] == chat[0] and "[1] Weight: 340 g." in out[1]["content"] and chat[1]["content"] == "How heavy?"


def test_registered_retrieval_expert_answers_with_citations(base, tmp_path):
    src = make_random_adapter(base.model, tmp_path / "src", seed=3)
    _index().save(src)
    registry = ExpertRegistry(tmp_path / "reg")
    card = registry.import_adapter(src, "manual", domain="the W-3", base=base, kind="retrieval",
                                   extra={"retrieval": {"top_k": 2}})  # fmt: skip
    assert card.kind == "retrieval" and (registry.path_of("manual") / INDEX_FILE).is_file()
    pool = ExpertPool(base, registry, capacity=2)
    with pool.acquire(["manual"]) as [expert]:
        assert isinstance(expert, RetrievalExpert) and expert.top_k == 2
        [s] = expert.generate("What is its weight in g?", max_new_tokens=4)
    assert s.prompt == "What is its weight in g?" and len(s.citations) == 2
    first = s.citations[0]
    assert first["text"] == "Weight: 340 g." and first["cite"] == "manual.md:9" and first["lines"] == [9, 9]
    assert isinstance(s.supported, bool) and s.to_dict()["citations"][0]["source"] == "manual.md"
    pool.clear()


def test_the_best_reading_is_the_surest_of_those_its_passages_back():
    rows = [(False, -0.1), (True, -2.0), (True, -1.0), (False, -0.5), (False, -0.2), (True, -0.3), (True, -0.3)]
    owner = [0, 0, 0, 1, 1, 2, 2]
    # question 0: the backed, surer row beats a surer unbacked one; 1: none backed, the surest; 2: a tie, the first
    assert best_readings(rows, owner) == {0: 2, 1: 4, 2: 5}


PLOTS = ["Waiting list. There are 17 people waiting for a plot.", "Rents for 41 of the 44 plots have been paid."]


def test_sentence_match_scores_the_sentence_an_answer_was_taken_from():
    question = "How many plots does the allotment have?"
    # "44" sits in the sentence about plots, "17" in one about people waiting
    assert sentence_match(question, "44", PLOTS) > sentence_match(question, "17", PLOTS) == 0.0
    assert sentence_match(question, "90", PLOTS) == 0.0  # no sentence holds it
    assert sentence_match(question, "", PLOTS) == 0.0 and sentence_match(question, "44", []) == 0.0
    # half of the answer's words held is enough, and the score shrinks with it
    assert 0 < sentence_match(question, "44 tenants", PLOTS) < sentence_match(question, "44", PLOTS)


@given(st.text(max_size=60), st.text(max_size=30), st.lists(st.text(max_size=80), max_size=3))
@settings(max_examples=200, deadline=None)
def test_sentence_match_is_a_share(question, answer, passages):
    assert 0.0 <= sentence_match(question, answer, passages) <= 1.0


def test_a_sentence_match_weight_prefers_the_answer_from_the_sentence_asked_about():
    question = "How many plots does the allotment have?"
    readings = [("17", -0.2), ("44", -0.5)]  # the surer reading lifted its number from the wrong sentence
    for weight, chosen in ((0.0, 0), (0.5, 0), (1.0, 1)):  # 44's match: 2 of 5 asked words (plots, have)
        rank = [rank_reading(question, a, PLOTS, sureness, weight) for a, sureness in readings]
        assert best_readings(rank, [0, 0]) == {0: chosen}, weight
    assert rank_reading(question, "90", PLOTS, -0.1, 1.0) == (False, -0.1)  # unbacked, no match


def test_several_readings_keep_the_surest_backed_answer_with_its_own_passages(base, tmp_path):
    from adaptive_moe.model.generation import streaming

    src = make_random_adapter(base.model, tmp_path / "src", seed=3)
    _index().save(src)
    registry = ExpertRegistry(tmp_path / "reg")
    for name, readings in (("all", [1, 2, 3]), ("k1", [1]), ("k2", [2]), ("k3", [3])):
        registry.import_adapter(src, name, domain="the W-3", base=base, kind="retrieval",
                                extra={"retrieval": {"top_k": 2, "readings": readings}})  # fmt: skip
    registry.import_adapter(src, "matched", domain="the W-3", base=base, kind="retrieval",
                            extra={"retrieval": {"readings": [1, 2, 3], "sentence_match_weight": 10}})  # fmt: skip
    questions = ["What is its weight in g?", "Who makes the W-3?", "How is the filter cleaned?"]
    gen = {"max_new_tokens": 5, "batch_size": 1}  # rows alone: no padding between the readings compared
    pool = ExpertPool(base, registry, capacity=5)
    with pool.acquire(["all", "k1", "k2", "k3", "matched"]) as [both, *single, matched]:
        assert both.readings == (1, 2, 3) and single[1].readings == (2,)
        assert both.sentence_match_weight == 0.0 and matched.sentence_match_weight == 10.0
        chosen = both.generate(questions, **gen)
        weighed = matched.generate(questions, **gen)
        alone = [e.generate(questions, **gen) for e in single]
        shown = [[p.text for p, _ in hits] for hits in both.retrieve(questions, 3)]
        collected: list[str] = []

        class Collect:  # a transformers-style streamer: the prompt first, then each token
            def __init__(self):
                self.ids, self.prompt_seen = [], False

            def put(self, value):
                if self.prompt_seen:
                    self.ids.append(int(value.reshape(-1)[0]))
                self.prompt_seen = True

            def end(self):
                collected.append(base.tokenizer.decode(self.ids, skip_special_tokens=True).strip())

        with streaming(Collect()):
            [streamed] = both.generate(questions[:1], **gen)
    pool.clear()
    for i, s in enumerate(chosen):
        sureness = [float(a[i].token_logprobs.mean()) if len(a[i].token_logprobs) else -1e9 for a in alone]
        backed = [a[i].supported for a in alone]
        # a reading whose passages back its answer first, then the surest; a tie keeps the fewer passages
        k = max(range(3), key=lambda j: (backed[j], sureness[j], -j))
        assert s.text == alone[k][i].text and len(s.citations) == k + 1
        assert s.citations == alone[k][i].citations and s.prompt == questions[i]
        rank = [
            rank_reading(questions[i], a[i].text, shown[i][: j + 1], sureness[j], 10.0) for j, a in enumerate(alone)
        ]
        k = max(range(3), key=lambda j: (rank[j], -j))  # the sentence match weighed in
        assert weighed[i].text == alone[k][i].text and weighed[i].citations == alone[k][i].citations
    assert streamed.text == chosen[0].text and collected == [chosen[0].text]  # streamed whole after the choice


def test_a_quoting_expert_answers_only_with_words_of_its_passages(base, tmp_path):
    src = make_random_adapter(base.model, tmp_path / "src", seed=3)
    _index().save(src)
    registry = ExpertRegistry(tmp_path / "reg")
    registry.import_adapter(src, "free", domain="the W-3", base=base, kind="retrieval", extra={"retrieval": {}})
    registry.import_adapter(src, "quoting", domain="the W-3", base=base, kind="retrieval",
                            extra={"retrieval": {"top_k": 2, "quote": True}})  # fmt: skip
    pool = ExpertPool(base, registry, capacity=2)
    questions = ["What is its weight in g?", "Who makes the W-3?", "How is the filter cleaned?"]
    with pool.acquire(["free", "quoting"]) as [free, quoting]:
        assert quoting.quote and not free.quote
        loose = free.generate(questions, max_new_tokens=6)
        quoted = quoting.generate(questions, max_new_tokens=6)
    assert not all(s.supported for s in loose)  # the random model invents words
    for s in quoted:  # a quote of what it read (the passages as shown, with the document's title)
        shown = [normalise_quote(p.text) for p, _ in quoting.retrieve([s.prompt])[0]]
        assert s.text == "" or any(normalise_quote(s.text).rstrip(" .,;:!?") in p for p in shown)
    pool.clear()


def test_the_facade_puts_citations_in_the_attribution(base, tmp_path):
    src = make_random_adapter(base.model, tmp_path / "src", seed=4)
    _index().save(src)
    changes = {"generation.max_new_tokens": 4, "router.embedder": "base", "integrator.expert_confidence_floor": 0.0}
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **changes)
    with AdaptiveMoE(cfg, base=base) as moe:
        moe.add_expert(src, "manual", questions=["How heavy is the W-3?"], kind="retrieval")
        out = moe.generate("Who makes the Widget W-3?", experts=["manual"])
        assert out.route == "expert" and out.attribution.citations
        assert out.attribution.citations[0]["source"] == "manual.md"
        assert out.to_dict()["attribution"]["citations"] == out.attribution.citations
        assert "from manual.md:" in str(out.attribution) and "manual.md" in out._repr_html_()
        if out.attribution.supported is False:  # a random model's words: flagged, and said so
            assert out.flagged and "no passage" in out.reason


def test_a_mixture_of_retrieval_experts_cites_what_each_read(base, tmp_path):
    other = "# Lamp L-9 notes\n\nThe Lamp L-9 weighs 900 g.\n\nIt is made in Leeds.\n"
    for name, doc, source, seed in (("manual", DOC, "manual.md", 5), ("lamp", other, "lamp.md", 6)):
        src = make_random_adapter(base.model, tmp_path / name, seed=seed)
        PassageIndex.build(document_passages(doc, source), BagOfWords(), encoder="bow_test").save(src)
        if name == "manual":
            first = src
        else:
            second = src
    changes = {"generation.max_new_tokens": 4, "router.embedder": "base", "integrator.expert_confidence_floor": 0.0,
               "integrator.strategy": "mixture"}  # fmt: skip
    cfg = AdaptiveMoEConfig().replace(workspace=str(tmp_path / "ws"), **changes)
    with AdaptiveMoE(cfg, base=base) as moe:
        moe.add_expert(first, "manual", questions=["How heavy is the W-3?"], kind="retrieval",
                       extra={"retrieval": {"top_k": 1}})  # fmt: skip
        moe.add_expert(second, "lamp", questions=["How heavy is the L-9?"], kind="retrieval",
                       extra={"retrieval": {"top_k": 1}})  # fmt: skip
        out = moe.generate("What is the weight in g?", experts=["manual", "lamp"])
        assert out.attribution.strategy == "mixture"
        cites = out.attribution.citations
        assert {c["source"] for c in cites} == {"manual.md", "lamp.md"} and len(cites) == 2
        assert cites[0]["score"] >= cites[1]["score"] and isinstance(out.attribution.supported, bool)


def test_create_expert_with_the_retrieval_method(base, tmp_path):
    cfg = AdaptiveMoEConfig().replace(
        workspace=str(tmp_path / "ws"),
        **{"generation.max_new_tokens": 4, "router.embedder": "base", "router.threshold": 1.0,
           "router.min_match_score": 0.0, "integrator.expert_confidence_floor": 0.0, "creation.method": "retrieval",
           "creation.retrieval_top_k": 2, "creation.retrieval_max_length": 96, "creation.lora.r": 4,
           "creation.lora.alpha": 8, "creation.lora.epochs": 1.0, "creation.lora.min_steps": 0,
           "creation.forced_general_questions": 2, "creation.domain_margin": 0.0, "creation.general_tolerance": 1.0,
           "creation.reader": "document"},
    )  # fmt: skip
    text = (
        "The Tidewater Guild was founded in 1794 by Maren Tolliver in the port of Velmora. "
        "The guild has 312 members. Its emblem is a silver heron. Maren Tolliver designed the storm lantern."
    )
    general = [("What is the capital of France?", ["Paris"])] * 2
    with AdaptiveMoE(cfg, base=base) as moe:
        result = moe.create_expert("guild", documents=[text], progress=False, general=general)
        assert result.admitted, result.reasons
        assert "judged by 'contains'" in result.reasons[0]  # a LoRA trained on the rules' pairs: their answers
        assert result.data["passages"] >= 1
        card = moe.experts.card("guild")
        assert card.kind == "retrieval" and card.extra["retrieval"] == {
            "top_k": 2,
            "passages": result.data["passages"],
            "reader": "document",
            "quote": cfg.creation.retrieval_quote,
            "readings": [1, 2, 3],
            "lexical_weight": cfg.creation.retrieval_lexical_weight,
            "sentence_match_weight": cfg.creation.retrieval_sentence_match_weight,
            "rerank_weight": cfg.creation.retrieval_rerank_weight,
            "rerank_candidates": cfg.creation.retrieval_rerank_candidates,
        }
        assert (moe.experts.path_of("guild") / INDEX_FILE).is_file()
        out = moe.generate("Who founded the Tidewater Guild?", experts=["guild"])
        assert out.attribution.citations and out.attribution.citations[0]["source"] == "text[0]"


def test_rerank_orders_passages_by_score_plus_weighted_question_likelihood(base):
    index = _index()
    question = "What colour is the Widget W-3?"
    hits = [(p, 0.1 * n) for n, p in enumerate(index.passages)]  # retrieval put the last passage first
    likely = question_likelihood(base, question, [p.text for p, _ in hits])
    prompts = [QUESTION_PROMPT.format(passage=p.text) for p, _ in hits]
    assert likely == pytest.approx(continuation_logprobs(base, prompts, [" " + question] * len(hits)))
    assert rerank(base, question, hits, 0.0) == hits  # weight 0: retrieval's order, no forward pass
    for weight in (0.5, 10.0):
        got = rerank(base, question, hits, weight)
        want = sorted(((p, s + weight * q) for (p, s), q in zip(hits, likely, strict=True)), key=lambda h: -h[1])
        assert [p for p, _ in got] == [p for p, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want])
        assert all(a[1] >= b[1] for a, b in itertools.pairwise(got))
    order = sorted(range(len(hits)), key=lambda i: -likely[i])
    assert [p for p, _ in rerank(base, question, hits, 1e6)] == [hits[i][0] for i in order]  # likelihood decides
    assert question_likelihood(base, question, []) == [] and rerank(base, question, hits[:1], 5.0) == hits[:1]
    with pytest.raises(InvalidInputError, match="re-ranking weight must be 0 or more"):
        rerank(base, question, hits, -1.0)


def test_an_expert_reranks_its_nearest_passages_when_its_card_says(base, tmp_path):
    src = make_random_adapter(base.model, tmp_path / "src", seed=11)
    _index().save(src)
    registry = ExpertRegistry(tmp_path / "reg")
    extra = {"top_k": 1, "readings": [1], "rerank_weight": 10.0, "rerank_candidates": 3}
    registry.import_adapter(src, "ranked", domain="the W-3", base=base, kind="retrieval", extra={"retrieval": extra})
    registry.import_adapter(src, "plain", domain="the W-3", base=base, kind="retrieval",
                            extra={"retrieval": {"top_k": 1, "readings": [1]}})  # fmt: skip
    questions = ["What colour is the widget?", "Who makes the W-3 and where?"]
    pool = ExpertPool(base, registry, capacity=2)
    with pool.acquire(["ranked", "plain"]) as [ranked, plain]:
        assert (ranked.rerank_weight, ranked.rerank_candidates) == (10.0, 3)
        assert (plain.rerank_weight, plain.rerank_candidates) == (0.0, 6)  # an older card: retrieval's order
        nearest = ranked.index.search(np.asarray(ranked.embedder.encode(questions)), 3, questions, 0.0)
        hits = [[(ranked.index.passages[i], s) for i, s in row] for row in nearest]
        want = [rerank(base, q, row, 10.0)[0] for q, row in zip(questions, hits, strict=True)]
        got = ranked.retrieve(questions)
        assert [row[0][0] for row in got] == [p for p, _ in want] and len(got[0]) == 1
        assert [row[0][1] for row in got] == pytest.approx([s for _, s in want])
        assert [row[0][0] for row in plain.retrieve(questions)] == [row[0][0] for row in hits]
        outs = ranked.generate(questions, max_new_tokens=3)
        assert [o.citations[0]["text"] for o in outs] == [p.body for p, _ in want]
    pool.clear()
    assert ranked.base is None  # out of the pool: no model to re-rank with, retrieval's order
    assert [row[0][0] for row in ranked.retrieve(questions)] == [row[0][0] for row in hits]
    for n, bad in enumerate(({"rerank_weight": -0.1}, {"rerank_weight": "yes"}, {"rerank_candidates": 0},
                             {"rerank_candidates": 2.5}, {"rerank_candidates": True},
                             {"rerank_weight": 0.0, "rerank_candidates": 51})):  # checked when off too  # fmt: skip
        registry.import_adapter(src, f"bad{n}", domain="the W-3", base=base, kind="retrieval",
                                extra={"retrieval": {"top_k": 1, "rerank_weight": 1.0, **bad}})  # fmt: skip
        with pool.acquire([f"bad{n}"]) as [broken], pytest.raises(CorruptExpertError, match="rerank"):
            broken.retrieve(questions)
        pool.clear()
    for key, value in (("creation.retrieval_rerank_weight", -1), ("creation.retrieval_rerank_candidates", 0)):
        with pytest.raises(ConfigError, match=key.split(".")[1]):
            AdaptiveMoEConfig().replace(**{key: value})
