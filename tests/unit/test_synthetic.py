import json

import pytest

from adaptive_moe.creation.synthetic import (
    MAX_ENTITIES,
    QA,
    REAL_NAMES,
    SYNTHETIC_KINDS,
    SyntheticDomain,
    is_blocked_name,
    make_synthetic_domain,
    question_templates,
    value_lists,
)
from adaptive_moe.errors import AdaptiveMoEError, InvalidInputError, UnknownNameError


@pytest.fixture(scope="module", params=SYNTHETIC_KINDS)
def domain(request):
    return make_synthetic_domain(request.param, n_entities=40, seed=0)


def test_kinds_listed():
    assert set(SYNTHETIC_KINDS) >= {"people", "companies", "places", "products"}


def test_every_kind_has_expected_shape(domain):
    n, n_attr = 40, len(domain.attributes)
    assert 4 <= n_attr <= 5
    assert len(domain.entities) == n
    assert all(set(e) == {"name", *domain.attributes} for e in domain.entities)
    assert len(domain.documents) == n + n * n_attr * 3  # one profile per entity + 3 restatements per fact
    assert len(domain.train_qa) == len(domain.test_qa) == n * n_attr
    facts = set(domain.facts())
    assert len(facts) == n * n_attr
    for split in (domain.train_qa, domain.test_qa):
        assert {(qa.entity, qa.attribute, qa.answers[0]) for qa in split} == facts
        assert all(isinstance(qa, QA) and qa.entity in qa.question for qa in split)
    assert domain.description.startswith(f"invented {domain.kind}: ")
    assert "\n" not in domain.description


def test_deterministic_and_seed_sensitive():
    for kind in SYNTHETIC_KINDS:
        a = make_synthetic_domain(kind, n_entities=12, seed=7)
        assert a.to_dict() == make_synthetic_domain(kind, n_entities=12, seed=7).to_dict()
        b = make_synthetic_domain(kind, n_entities=12, seed=8)
        names_a, names_b = {e["name"] for e in a.entities}, {e["name"] for e in b.entities}
        assert len(names_a & names_b) <= 1
        assert a.documents != b.documents
    people, companies = make_synthetic_domain("people", 5, seed=3), make_synthetic_domain("companies", 5, seed=3)
    assert not {e["name"] for e in people.entities} & {e["name"] for e in companies.entities}


def test_value_lists_are_large_distinct_and_do_not_contain_each_other():
    for kind in SYNTHETIC_KINDS:
        lists = value_lists(kind)
        assert 4 <= len(lists) <= 5
        all_values = [(attr, v) for attr, values in lists.items() for v in values]
        for attr, values in lists.items():
            assert len(set(values)) == len(values) >= 50, (kind, attr)
            assert all(1 <= len(v.split()) <= 3 and len(v) >= 4 for v in values), (kind, attr)
        # a "contains" scorer must not accept one value for another, even across attributes of the kind
        clashes = [(a, b) for a in all_values for b in all_values if a != b and a[1].lower() in b[1].lower()]
        assert clashes == [], (kind, clashes[:5])


def test_question_templates_are_disjoint_between_splits(domain):
    train, test = question_templates(domain.kind, "train"), question_templates(domain.kind, "test")
    assert set(train) == set(test) == set(domain.attributes)
    for attr in domain.attributes:
        assert len(set(train[attr])) >= 3 and len(set(test[attr])) >= 2
        assert not set(train[attr]) & set(test[attr])
    train_questions = {qa.question for qa in domain.train_qa}
    by_fact = {(qa.entity, qa.attribute): qa.question for qa in domain.train_qa}
    for qa in domain.test_qa:
        assert qa.question not in train_questions
        assert qa.question != by_fact[qa.entity, qa.attribute]


def test_every_test_fact_is_stated_in_several_documents(domain):
    docs = [d.lower() for d in domain.documents]
    for qa in domain.test_qa:
        entity, value = qa.entity.lower(), qa.answers[0].lower()
        stating = {d for d in docs if entity in d and value in d}
        assert len(stating) >= 4, qa  # the profile plus three differently worded restatements
        assert value not in qa.question.lower()


def test_answers_and_aliases():
    companies = make_synthetic_domain("companies", 10, seed=1)
    founder = next(qa for qa in companies.test_qa if qa.attribute == "founder")
    assert founder.answers == [founder.answers[0], founder.answers[0].split()[-1]]  # full name and surname
    question, golds = founder[:2]  # usable as a (question, golds) pair
    assert question == founder.question and golds == founder.answers
    people = make_synthetic_domain("people", 40, seed=0)
    assert any(" an " in d for d in people.documents if "profession" in d or "works as" in d)
    assert all(len(qa.answers) == 1 for qa in people.test_qa)


def test_entity_names_are_invented_and_unique():
    assert len(REAL_NAMES) >= 300
    assert {"einstein", "paris", "google", "france", "new york"} <= REAL_NAMES
    assert is_blocked_name("Varnel Einstein") and is_blocked_name("New York Dynamics")
    assert not is_blocked_name("Varnel Ostrik")
    for kind in SYNTHETIC_KINDS:
        for seed in range(3):
            names = [e["name"] for e in make_synthetic_domain(kind, 100, seed=seed).entities]
            assert len(set(names)) == len(names)
            assert not [n for n in names if is_blocked_name(n)]
            assert all(any(c.isupper() for c in n) for n in names)
    invented_values = [
        v
        for kind in SYNTHETIC_KINDS
        for attr, vals in value_lists(kind).items()
        if attr in {"founder", "inventor", "maker", "river"}
        for v in vals
    ]
    assert invented_values and not [v for v in invented_values if is_blocked_name(v)]


def test_chance_baseline():
    for kind in SYNTHETIC_KINDS:
        dom = make_synthetic_domain(kind, 40, seed=0)
        baseline = dom.chance_baseline()
        assert set(baseline) == set(dom.attributes)
        assert all(b == pytest.approx(1 / 40) for b in baseline.values())  # values dealt without replacement
        assert max(baseline.values()) <= 0.1
    big = make_synthetic_domain("people", 200, seed=0)
    lists = value_lists("people")
    for attr, b in big.chance_baseline().items():
        assert b == pytest.approx(-(-200 // len(lists[attr])) / 200)  # values repeat evenly once a list runs out


def test_save_load_round_trip(tmp_path, domain):
    path = domain.save(tmp_path / "sub" / "domain.json")
    assert json.loads(path.read_text())["kind"] == domain.kind
    loaded = SyntheticDomain.load(path)
    assert loaded == domain
    assert all(isinstance(qa, QA) for qa in loaded.test_qa)
    assert loaded.chance_baseline() == domain.chance_baseline()
    assert SyntheticDomain.from_dict(domain.to_dict()) == domain
    assert [p.name for p in path.parent.iterdir()] == ["domain.json"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SyntheticDomain.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        SyntheticDomain.load(bad)
    with pytest.raises(InvalidInputError, match="missing keys"):
        SyntheticDomain.from_dict({"kind": "people"})
    data = make_synthetic_domain("people", 2).to_dict()
    data["test_qa"][0].pop("question")
    with pytest.raises(InvalidInputError, match="malformed"):
        SyntheticDomain.from_dict(data)


def test_bad_input():
    with pytest.raises(UnknownNameError) as info:
        make_synthetic_domain("planets", 5)
    assert isinstance(info.value, KeyError) and "'people'" in str(info.value) and "planets" in str(info.value)
    for n in (0, -1, MAX_ENTITIES + 1, 2.5, True, "10"):
        with pytest.raises(InvalidInputError, match=rf"\[1, {MAX_ENTITIES}\]"):
            make_synthetic_domain("people", n)
    for seed in ("0", 1.0, None, False):
        with pytest.raises(InvalidInputError, match="seed must be an int"):
            make_synthetic_domain("people", 5, seed=seed)
    with pytest.raises(InvalidInputError, match="restatements_per_fact"):
        make_synthetic_domain("people", 5, restatements_per_fact=4)
    with pytest.raises(UnknownNameError):
        question_templates("people", "validation")
    assert issubclass(InvalidInputError, AdaptiveMoEError)


def test_extremes():
    one = make_synthetic_domain("places", 1, seed=0, restatements_per_fact=0)
    assert len(one.documents) == 1 and len(one.test_qa) == len(one.attributes)
    assert all(b == 1.0 for b in one.chance_baseline().values())
    most = make_synthetic_domain("products", MAX_ENTITIES, seed=0, restatements_per_fact=0)
    assert len({e["name"] for e in most.entities}) == MAX_ENTITIES


def test_training_qa_asks_every_fact_in_every_training_wording():
    dom = make_synthetic_domain("people", n_entities=4, seed=3)
    qa = dom.training_qa()
    templates = question_templates("people", "train")
    assert len(qa) == sum(len(templates[a]) for a in dom.attributes) * 4
    assert {q.question for q in dom.train_qa} <= {q.question for q in qa}  # the one-wording split is inside it
    assert not {q.question for q in qa} & {q.question for q in dom.test_qa}  # never a test wording
    for q in qa:
        entity = next(e for e in dom.entities if e["name"] == q.entity)
        assert q.answers[0] == entity[q.attribute] and q.entity in q.question
