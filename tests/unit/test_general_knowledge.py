import json
from collections import Counter
from importlib import resources

import pytest

from adaptive_moe.creation.general import GENERAL_TOPICS, general_knowledge_items, general_knowledge_questions
from adaptive_moe.errors import InvalidInputError
from adaptive_moe.evaluation.scoring import ContainsScorer, normalize_answer

ITEMS = general_knowledge_items()


def test_topics():
    assert set(GENERAL_TOPICS) == {"geography", "science", "history", "arithmetic", "language", "everyday"}


def test_size_and_per_topic_counts():
    assert len(ITEMS) >= 180
    counts = Counter(item["topic"] for item in ITEMS)
    assert set(counts) == set(GENERAL_TOPICS)
    assert min(counts.values()) >= 25, counts


def test_ships_as_package_data_one_object_per_line():
    text = resources.files("adaptive_moe").joinpath("data/general_knowledge.jsonl").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == len(ITEMS)
    for line in lines:
        assert set(json.loads(line)) == {"question", "answers", "topic"}


def test_no_duplicate_questions():
    normalized = [normalize_answer(item["question"]) for item in ITEMS]
    dupes = [q for q, n in Counter(normalized).items() if n > 1]
    assert not dupes


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: item["question"][:50])
def test_item_is_well_formed_and_scorable(item):
    scorer = ContainsScorer()
    assert item["question"].strip().endswith("?")
    assert item["answers"], "no gold answer"
    assert len(set(item["answers"])) == len(item["answers"]), "repeated alias"
    for gold in item["answers"]:
        assert isinstance(gold, str) and normalize_answer(gold), f"gold {gold!r} is empty after normalisation"
        assert len(gold.split()) <= 4, f"gold {gold!r} is not short"
        assert scorer.match(gold, gold), f"gold {gold!r} does not match itself"
        # a model that only repeats the question must not score
        assert not scorer.match(item["question"], gold), f"gold {gold!r} appears in its own question"
    assert scorer.score(f"I think the answer is {item['answers'][0]}.", item["answers"])


def test_questions_api_shape():
    pairs = general_knowledge_questions()
    assert len(pairs) == len(ITEMS)
    question, golds = pairs[0]
    assert isinstance(question, str) and isinstance(golds, list) and all(isinstance(g, str) for g in golds)
    assert ("What is 7 times 8?", ["56"]) in pairs


def test_results_are_fresh_copies():
    general_knowledge_questions()[0][1].append("tampered")
    general_knowledge_items()[0]["answers"].clear()
    assert "tampered" not in general_knowledge_questions()[0][1]
    assert general_knowledge_items()[0]["answers"]


def test_topics_filter():
    arithmetic = general_knowledge_questions(["arithmetic"])
    expected = [item["question"] for item in ITEMS if item["topic"] == "arithmetic"]
    assert [q for q, _ in arithmetic] == expected
    assert general_knowledge_questions("arithmetic") == arithmetic
    two = general_knowledge_questions(("geography", "science"))
    assert len(two) == sum(item["topic"] in {"geography", "science"} for item in ITEMS)
    assert general_knowledge_questions(None) == general_knowledge_questions(list(GENERAL_TOPICS))


@pytest.mark.parametrize("topics", [["sports"], ["geography", "Geography"], []])
def test_topics_filter_rejects_unknown_or_empty(topics):
    with pytest.raises(InvalidInputError) as info:
        general_knowledge_questions(topics)
    assert "geography" in str(info.value)
