"""Questions written by a generator model (creation.question_model): parsing and the keep rule; the
pipeline's use of them is in test_reader.py (a tiny random model) and the integration tests."""

from __future__ import annotations

import pytest

from adaptive_moe.creation.questions import generated_questions, keep_question, parse_question

PASSAGE = "Morrow Point lighthouse: The tower was designed by the engineer Ansel Crane and first lit in 1871."


def test_a_reply_is_parsed_into_its_question_and_answer_lines():
    reply = "Sure!\nQuestion: Who designed the Morrow Point tower?\nAnswer: Ansel Crane.\n"
    assert parse_question(reply) == ("Who designed the Morrow Point tower?", "Ansel Crane")
    assert parse_question("**Question:** When was it lit?\n**Answer:** 1871") == ("When was it lit?", "1871")
    assert parse_question("Who designed it? Ansel Crane") is None  # no lines to read
    assert parse_question("Question: Who designed it?") is None and parse_question("") is None


@pytest.mark.parametrize(
    ("question", "answer", "kept"),
    [
        ("Who designed the Morrow Point tower?", "Ansel Crane", True),
        ("In what year was the Morrow Point light first lit?", "1871", True),
        ("Who designed the Morrow Point tower?", "ansel  CRANE", True),  # case and spacing do not matter
        ("Who designed the Morrow Point tower?", "Thomas Stevenson", False),  # not in the passage
        ("Was the tower designed by Ansel Crane?", "Ansel Crane", False),  # the question gives it away
        ("Who designed it", "Ansel Crane", False),  # not a question
        ("Who designed?", "Ansel Crane", False),  # too short to check anything
        ("What does the passage say?", "The tower was designed by the engineer Ansel Crane and", False),  # too long
        ("Who designed the Morrow Point tower?", "", False),
        ("When was the Morrow Point light first lit?", "187", False),  # part of a number is not the answer
    ],
)
def test_a_pair_is_kept_only_when_it_can_check_the_expert(question, answer, kept):
    assert keep_question(question, answer, PASSAGE) is kept


def test_generated_questions_keep_only_pairs_that_pass(tiny_base):
    out = generated_questions(tiny_base, [PASSAGE, "Range: 19 nautical miles"], max_new_tokens=12)
    for question, [answer] in out:  # a random model's replies: whatever is kept passed the rule
        assert keep_question(question, answer, PASSAGE) or keep_question(question, answer, "Range: 19 nautical miles")
    assert generated_questions(tiny_base, []) == []
