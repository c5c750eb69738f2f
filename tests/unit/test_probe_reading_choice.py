"""``benchmarks/probe_reading_choice.py``: choosing again among the committed run's answers with the library's
ranking reproduces the run's table; the folds a reader is fitted and measured on are disjoint; the test split
is refused."""

from __future__ import annotations

import json

import pytest

from adaptive_moe.model.constraints import normalise_quote
from benchmarks import probe_reading_choice as probe
from benchmarks.bench_documents import load_corpus
from benchmarks.common import RESULTS
from benchmarks.fit_embedded_reader import training_fold

RUN = RESULTS / "reading_choice.json"


def test_choosing_again_among_the_committed_answers_reproduces_the_run(tmp_path, capsys):
    run = json.loads(RUN.read_text())
    assert probe.main(["--rescore", str(RUN), "--weights", ",".join(run["kept_right"]), "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "reading_choice.json").read_text())
    assert again["kept_right"] == run["kept_right"] and again["against_surest"] == run["against_surest"]
    n = run["questions"]
    for weight, right in run["kept_right"].items():  # no chooser beats "some reading right"
        assert right <= run["any_reading_right"] <= n
        flips = run["against_surest"][weight]
        assert right == run["kept_right"]["0"] + flips["turned_right"] - flips["turned_wrong"]
    assert "| sentence-match weight 0.5 |" in capsys.readouterr().out


def test_a_weight_changes_the_choice_only_through_the_sentence_match():
    passages = ["There are 17 people waiting for a plot.", "Rents for 41 of the 44 plots have been paid.", "Shed."]
    question = {
        "question": "How many plots does the allotment have?",
        "gold": ["44"],
        "passages": passages,
        "answers": ["17", "44", "44"],
        "sureness": [-0.2, -0.5, -0.6],
        "right": [False, True, True],
    }
    assert probe.kept_right([question], 0.0) == [False] and probe.kept_right([question], 1.0) == [True]


def test_the_two_folds_split_the_training_documents():
    names = {doc["name"] for doc in load_corpus("train")}
    zero, one = set(training_fold("train", 0)), set(training_fold("train", 1))
    assert zero and one and not zero & one and zero | one == names


def test_the_test_split_a_missing_reader_and_bad_weights_are_refused():
    with pytest.raises(SystemExit):
        probe.main(["--reader", "x", "--split", "test"])
    with pytest.raises(SystemExit):
        probe.main([])
    for weights in ("-1", "0,lots", "11"):
        with pytest.raises(SystemExit):
            probe.main(["--rescore", str(RUN), "--weights", weights])


def test_a_quoted_run_is_chosen_again_the_same_and_says_its_answers_quote(tmp_path, capsys):
    run = json.loads((RESULTS / "reading_choice_quote.json").read_text())
    assert run["settings"]["quote"] is True
    args = ["--rescore", str(RESULTS / "reading_choice_quote.json"), "--weights", ",".join(run["kept_right"])]
    assert probe.main([*args, "--name", "again", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["kept_right"] == run["kept_right"] and again["settings"]["quote"] is True
    assert "passages (answers may only quote them)" in capsys.readouterr().out
    for row in run["rows"]:  # every quoted answer is a piece of one passage its reading showed (case aside)
        for k, answer in enumerate(row["answers"], start=1):
            quoted = normalise_quote(answer).rstrip(" .,;:!?")
            assert any(quoted in normalise_quote(p) for p in row["passages"][:k]), (row["question"], answer)
