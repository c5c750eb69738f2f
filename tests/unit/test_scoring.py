import pytest

from adaptive_moe.errors import InvalidInputError, UnknownNameError
from adaptive_moe.evaluation import scoring
from adaptive_moe.evaluation.scoring import (
    AnswerScorer,
    ContainsScorer,
    ExactScorer,
    TokenF1Scorer,
    accuracy,
    get_scorer,
    is_correct,
    normalize_answer,
    register_scorer,
    registered_scorers,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The capital is Paris.", "capital is paris"),
        ("  An   APPLE,  a day!  ", "apple day"),
        ("Pelé and Zürich", "pele and zurich"),
        ("H₂O", "h2o"),  # NFKC folds the subscript
        ("ﬁsh", "fish"),  # NFKC folds the ligature
        ("seven", "7"),
        ("Seven days", "7 days"),
        ("zero", "0"),
        ("twenty", "20"),
        ("ninety", "90"),
        ("a hundred", "100"),
        ("thousand", "1000"),
        ("twenty-one", "21"),
        ("two hundred fifty", "250"),
        ("three thousand five hundred", "3500"),
        ("one two three", "1 2 3"),
        ("hundred and five", "100 and 5"),
        ("one hundred five", "105"),
        ("twenty twenty", "20 20"),
        ("two thousand five thousand", "2000 5000"),
        ("someone seventeen times", "someone 17 times"),  # only whole words are number words
        ("1,000", "1000"),
        ("1,000,000 people", "1000000 people"),
        ("1,2,3", "1 2 3"),  # not a thousands separator
        ("3.14", "3.14"),
        ("56.0", "56"),
        ("It is 56.", "it is 56"),
        ("100°C", "100 c"),
        ("Newton's law", "newton s law"),
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_normalize_answer_rejects_non_str():
    with pytest.raises(InvalidInputError):
        normalize_answer(7)


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("The capital is Paris.", "Paris", True),
        ("The answer is 14.", "4", False),  # whole words: "4" is not in "14"
        ("The answer is 4.", "14", False),
        ("2 + 2 = 4", "4", True),
        ("There are seven days in a week.", "7", True),
        ("There are 7 days in a week.", "seven", True),
        ("It costs 1,000 dollars", "1000", True),
        ("Twenty-one", "21", True),
        ("The capital of India is New Delhi.", "Delhi", True),
        ("Delhi", "New Delhi", False),  # the whole gold must appear, in order
        ("Parisian food", "Paris", False),
        ("Leonardo da Vinci painted it.", "da Vinci", True),
        ("H₂O", "H2O", True),
        ("", "Paris", False),
        ("anything", "The", False),  # a gold that normalises to nothing never matches
    ],
)
def test_contains_scorer(prediction, gold, expected):
    assert ContainsScorer().match(prediction, gold) is expected


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("The Nile.", "nile", True),
        ("Nile River", "nile", False),
        ("seven", "7", True),
        ("", "", False),
        ("!!", "...", False),
    ],
)
def test_exact_scorer(prediction, gold, expected):
    assert ExactScorer().match(prediction, gold) is expected


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("River Aumbry", "the River Aumbry and drains", True),  # 2 of 4 words shared: F1 0.67
        ("chapel", "the ruins of a twelfth-century chapel", False),  # 1 of 5: F1 0.33
        ("The lake drains to the south through the Kessel Gorge", "south", True),  # the gold is in it
        ("ten weeks", "around ten weeks", True),
        ("twelve weeks", "around ten weeks", False),  # a wrong number: shares "weeks" only (F1 0.4)
        ("twelve", "around ten weeks", False),
        ("14", "4", False),
        ("", "south", False),
        ("south", "...", False),
    ],
)
def test_token_f1_scorer(prediction, gold, expected):
    assert TokenF1Scorer().match(prediction, gold) is expected
    assert is_correct(prediction, ["x-no-match", gold], method="f1") is expected


def test_score_matches_any_alias():
    scorer = get_scorer("contains")
    assert scorer.score("It was painted by da Vinci.", ["Leonardo da Vinci", "da Vinci"])
    assert not scorer.score("It was painted by Michelangelo.", ["Leonardo da Vinci", "da Vinci"])
    assert scorer.score("Peking", ("Beijing", "Peking"))  # any sequence of str works


@pytest.mark.parametrize(
    ("prediction", "golds"),
    [
        (None, ["Paris"]),
        (3, ["3"]),
        ("Paris", "Paris"),  # a bare str would be scored letter by letter
        ("Paris", []),
        ("Paris", [""]),
        ("Paris", ["  "]),
        ("Paris", ["Paris", None]),
        ("Paris", None),
    ],
)
def test_score_validates_inputs(prediction, golds):
    with pytest.raises(InvalidInputError):
        get_scorer("contains").score(prediction, golds)


def test_builtin_scorers_registered():
    assert {"contains", "exact", "f1"} <= set(registered_scorers())
    assert isinstance(get_scorer("contains"), ContainsScorer)
    assert isinstance(get_scorer("exact"), ExactScorer)
    assert get_scorer("contains").name == "contains"


def test_unknown_scorer_lists_registered_names():
    with pytest.raises(UnknownNameError) as info:
        get_scorer("containz")
    assert info.value.kind == "scorer"
    assert "'contains'" in str(info.value) and "'exact'" in str(info.value)
    with pytest.raises(KeyError):
        is_correct("Paris", ["Paris"], method="nope")


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(scoring, "_SCORERS", scoring._SCORERS.copy())


class _Prefix(AnswerScorer):
    name = "prefix"

    def match(self, prediction, gold):
        g = normalize_answer(gold)
        return bool(g) and normalize_answer(prediction).startswith(g)


def test_user_registered_scorer(clean_registry):
    register_scorer("prefix", _Prefix)
    assert "prefix" in registered_scorers()
    assert is_correct("Paris, France", ["Paris"], method="prefix")
    assert not is_correct("It is Paris", ["Paris"], method="prefix")
    assert accuracy(["Paris is it", "Rome"], [["Paris"], ["Paris"]], method="prefix") == 0.5
    # an instance works in place of a name, unregistered
    assert is_correct("Paris, France", ["Paris"], method=_Prefix())


def test_register_rejects_duplicates_unless_overwrite(clean_registry):
    with pytest.raises(InvalidInputError, match="already registered"):
        register_scorer("contains", _Prefix)
    register_scorer("contains", ContainsScorer)  # same class again is harmless
    register_scorer("contains", _Prefix, overwrite=True)
    assert isinstance(get_scorer("contains"), _Prefix)


@pytest.mark.parametrize("name", ["", "Prefix", "1st", "my-scorer", "with space", "_x", None])
def test_register_rejects_bad_names(clean_registry, name):
    with pytest.raises(InvalidInputError):
        register_scorer(name, _Prefix)


class _Abstract(AnswerScorer):
    pass


class _NotAScorer:
    def match(self, prediction, gold):
        return True


@pytest.mark.parametrize("cls", [_NotAScorer, _Abstract, AnswerScorer, ContainsScorer(), "contains", None])
def test_register_rejects_non_scorers(clean_registry, cls):
    with pytest.raises(InvalidInputError):
        register_scorer("fresh_name", cls)
    assert "fresh_name" not in registered_scorers()


def test_is_correct_defaults_to_contains():
    assert is_correct("The answer is 56.", ["56"])
    assert not is_correct("The answer is 56.", ["56"], method="exact")
    assert is_correct("56", ["56"], method="exact")


def test_accuracy():
    preds = ["Paris is the capital.", "It is 14.", "seven", "I do not know."]
    golds = [["Paris"], ["4"], ["7"], ["Rome", "Roma"]]
    assert accuracy(preds, golds) == 0.5
    assert accuracy(["Paris"], [["Paris"]], method="exact") == 1.0


@pytest.mark.parametrize(
    ("preds", "golds"),
    [
        ([], []),
        (["Paris"], []),
        (["Paris", "Rome"], [["Paris"]]),
        ("Paris", [["Paris"]] * 5),
        (["Paris"], ["Paris"]),  # golds per prediction must be alias lists
    ],
)
def test_accuracy_validates_inputs(preds, golds):
    with pytest.raises(InvalidInputError):
        accuracy(preds, golds)
