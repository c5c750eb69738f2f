"""The reader-question corpus (``benchmarks/corpus``): every file the benchmarks and the shipped reader's fit
read is well formed, and every question can be answered from its own document."""

from __future__ import annotations

import re

import pytest

from benchmarks.bench_documents import SPLITS, load_corpus

SPLITS_READ = (*SPLITS, "train")


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("*", "")).lower()


@pytest.mark.parametrize("split", SPLITS_READ)
def test_each_split_is_well_formed(split):
    docs = load_corpus(split)
    assert len(docs) >= 6, f"{split}: {len(docs)} documents"
    for doc in docs:
        assert doc["path"].is_file(), doc["path"]
        assert 15 <= len(doc["questions"]) <= 25, (doc["name"], len(doc["questions"]))
        questions = [q for q, _ in doc["questions"]]
        assert len(set(questions)) == len(questions), f"{doc['name']}: a question asked twice"
        for question, golds in doc["questions"]:
            assert question.strip().endswith("?"), (doc["name"], question)
            assert golds and all(isinstance(g, str) and g.strip() for g in golds), (doc["name"], question)


@pytest.mark.parametrize("split", SPLITS_READ)
def test_every_question_is_answered_by_its_document(split):
    """A gold answer of each question is in its document (spacing and emphasis aside): the reader is
    trained to find answers there, and a question no passage answers measures nothing."""
    for doc in load_corpus(split):
        text = _flat(doc["path"].read_text(encoding="utf-8"))
        unanswered = [q for q, golds in doc["questions"] if not any(_flat(g) in text for g in golds)]
        assert not unanswered, f"{doc['name']}: {unanswered}"


def test_no_document_is_in_two_splits():
    names = [d["name"] for s in SPLITS_READ for d in load_corpus(s)]
    assert len(set(names)) == len(names)


def test_bench_documents_takes_config_changes_as_key_value_pairs():
    from benchmarks.bench_documents import config_changes

    changes = config_changes(["creation.retrieval_readings=[1,2,3,4]", "creation.reader=shared", "a.b=0.5"])
    assert changes["creation.retrieval_readings"] == [1, 2, 3, 4] and changes["a.b"] == 0.5
    assert changes["creation.reader"] == "shared"  # not JSON: kept as text
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        config_changes(["creation.reader"])


def test_every_benchmark_approach_is_a_valid_config():
    """Each ``--approach`` of ``bench_documents.py`` is a set of config changes the library accepts (a typo in a
    key or a value out of range would be a ``ConfigError`` only when the long run starts)."""
    from adaptive_moe import AdaptiveMoEConfig
    from benchmarks.bench_documents import APPROACHES

    assert {"rules", "retrieval", "augment", "generated"} <= set(APPROACHES)
    for name, changes in APPROACHES.items():
        cfg = AdaptiveMoEConfig().replace(**changes)
        assert cfg.creation.method == changes["creation.method"], name
    assert AdaptiveMoEConfig().replace(**APPROACHES["generated"]).creation.question_model == "base"
