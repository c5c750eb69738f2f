"""Synthetic knowledge domains: invented entities with facts the base model cannot know, for experts to learn.

``make_synthetic_domain("people", n_entities=40, seed=0)`` invents 40 people (names built from syllables,
checked against a blocklist of real names the base model knows), gives each one value per attribute (birthplace,
profession, ...) and writes:

* ``documents``: the expert's training texts. One short biography per entity stating all its facts in shuffled
  order, plus single-fact restatements, each fact in several phrasings.
* ``train_qa`` / ``test_qa``: one question per (entity, attribute) in each split, worded by disjoint template
  sets, so a test question is never worded like a training one while it asks about a fact that was trained on.

Templates and name parts live in ``adaptive_moe/data/synthetic_templates.json``, value lists (at least 50 per
attribute) in ``adaptive_moe/data/synthetic_values.json`` and the blocklist in ``adaptive_moe/data/real_names.txt``.
Everything is deterministic for a given ``(kind, n_entities, seed)``.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from adaptive_moe.errors import InvalidInputError, ModelNotFoundError, UnknownNameError
from adaptive_moe.utils.io import atomic_write_text

MAX_ENTITIES = 1000  # per domain; the generator has ~150,000 invented words, this bound is tested to be reachable
MIN_VALUES, MIN_DOCUMENT_TEMPLATES, MIN_TRAIN_TEMPLATES, MIN_TEST_TEMPLATES = 50, 4, 3, 2
FORMAT_VERSION = 1

# Invented words: onset, vowel, coda, an optional extra syllable, then a consonant and a name-like ending
# ("Varnel", "Ostrik", "Brendara"); about 150,000 distinct words, filtered for awkward consonant runs below.
_ONSETS = ("b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v")
_ONSETS += ("w", "z", "th", "", "")
_VOWELS = ("a", "a", "e", "e", "i", "o", "o", "u", "ai", "ea")
_CODAS = ("", "", "", "n", "l", "r", "s", "m", "rn", "ld", "st")
_MIDDLES = ("b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "th", "br", "dr", "tr", "str", "sk", "w")
_ENDINGS = ("el", "in", "ar", "a", "en", "is", "or", "ik", "o", "an", "ane", "ell", "ick", "ith", "ara", "ina")
_ENDINGS += ("isk", "ent", "ov", "ard", "ia", "ette", "oth", "us", "ey", "ora")


class QA(NamedTuple):
    """One question about one fact. ``(question, answers)`` is the pair a scorer needs; answers[0] is the value."""

    question: str
    answers: list[str]
    entity: str
    attribute: str


@dataclass(frozen=True)
class _Attribute:
    key: str
    label: str
    values: tuple[str, ...]
    alias: str | None  # None | "last_word" (a person's surname) | "first_word" (a maker's distinctive name)
    document: tuple[str, ...]
    train: tuple[str, ...]
    test: tuple[str, ...]

    def answers(self, value: str) -> list[str]:
        words = value.split()
        alias = {"last_word": words[-1], "first_word": words[0]}.get(self.alias or "", value)
        return [value] if alias == value else [value, alias]


@dataclass(frozen=True)
class _Kind:
    name: str
    noun: str
    name_patterns: tuple[str, ...]
    attributes: tuple[_Attribute, ...]


def _data_text(filename: str) -> str:
    return resources.files("adaptive_moe").joinpath("data", filename).read_text(encoding="utf-8")


def _check_kind(kind: _Kind) -> None:
    """Fail loudly at import if a data file breaks the guarantees the tests and the expert pipeline rely on."""
    for a in kind.attributes:
        where = f"synthetic kind {kind.name!r}, attribute {a.key!r}"
        if len(set(a.values)) < MIN_VALUES or len(set(a.values)) != len(a.values):
            raise ValueError(f"{where}: needs at least {MIN_VALUES} distinct values, has {len(set(a.values))}")
        counts = (len(a.document), len(a.train), len(a.test))
        if counts[0] < MIN_DOCUMENT_TEMPLATES or counts[1] < MIN_TRAIN_TEMPLATES or counts[2] < MIN_TEST_TEMPLATES:
            raise ValueError(f"{where}: too few templates (document, train, test) = {counts}")
        if not all("{name}" in t and ("{value}" in t or "{a_value}" in t) for t in a.document):
            raise ValueError(f"{where}: every document template needs {{name}} and {{value}} or {{a_value}}")
        if not all("{name}" in t and "value}" not in t for t in a.train + a.test):
            raise ValueError(f"{where}: every question template needs {{name}} and must not give away the value")
        if set(a.train) & set(a.test):
            raise ValueError(f"{where}: train and test question templates overlap: {set(a.train) & set(a.test)}")


def _load_kinds() -> tuple[dict[str, _Kind], dict[str, Any]]:
    values = json.loads(_data_text("synthetic_values.json"))
    spec = json.loads(_data_text("synthetic_templates.json"))
    kinds = {}
    for name, k in spec["kinds"].items():
        attrs = tuple(
            _Attribute(
                a["key"],
                a["label"],
                tuple(values[a["values"]]),
                a.get("alias"),
                *(tuple(a[part]) for part in ("document", "train", "test")),
            )
            for a in k["attributes"]
        )
        kinds[name] = _Kind(name, k["noun"], tuple(k["names"]), attrs)
        _check_kind(kinds[name])
    return kinds, spec


def _load_blocklist() -> frozenset[str]:
    lines = (line.strip().lower() for line in _data_text("real_names.txt").splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


_KINDS, _SPEC = _load_kinds()
_NAME_PARTS: dict[str, list[str]] = _SPEC["name_parts"]
_COMMON_WORDS = frozenset(_SPEC["common_words"])  # ordinary English words: a name made of one reads as a word
_OFFENSIVE = tuple(_SPEC["offensive_substrings"])
SYNTHETIC_KINDS: tuple[str, ...] = tuple(_KINDS)
REAL_NAMES: frozenset[str] = _load_blocklist()
_FIXED_WORDS = frozenset(w.lower() for pool in _NAME_PARTS.values() for w in pool) | {"the"}


def is_blocked_name(name: str) -> bool:
    """True when any word of ``name``, or any run of up to three words, is a real name from the blocklist."""
    words = re.findall(r"[a-z]+", name.lower())
    runs = (" ".join(words[i : i + n]) for n in (1, 2, 3) for i in range(len(words) - n + 1))
    return any(run in REAL_NAMES for run in runs)


def _pronounceable(word: str) -> bool:
    # consonant runs of three only when they end in r/l or hold an h ("str", "ndr", "lth"); no "aei", no "lll"
    runs = re.findall(r"[^aeiouy]{3,}", word)
    if any(len(c) > 3 or not (c[-1] in "rl" or "h" in c) for c in runs):
        return False
    return 4 <= len(word) <= 9 and not re.search(r"[aeiou]{3}|(.)\1\1", word)


def _invented_word(rng: random.Random) -> str:
    while True:
        word = rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        if rng.random() < 0.2:
            word += rng.choice(_MIDDLES) + rng.choice(_VOWELS)
        word += rng.choice(_MIDDLES) + rng.choice(_ENDINGS)
        if _pronounceable(word) and not any(bad in word for bad in _OFFENSIVE):
            return word.capitalize()


def _fill_pattern(pattern: str, rng: random.Random) -> tuple[str, list[str]]:
    """A name from a pattern such as "{w} {company_suffix}": {w} is a new invented word, others pick a name part."""
    invented: list[str] = []

    def part(match: re.Match[str]) -> str:
        if match.group(1) != "w":
            return rng.choice(_NAME_PARTS[match.group(1)])
        invented.append(_invented_word(rng))
        return invented[-1]

    return re.sub(r"\{(\w+)\}", part, pattern), invented


def _make_names(kind: _Kind, n: int, rng: random.Random) -> list[str]:
    """``n`` unique names; no invented word is reused, blocked, an English word or a word of a value."""
    value_words = {w.lower() for a in kind.attributes for v in a.values for w in re.findall(r"\w+", v)}
    used: set[str] = set()
    names: list[str] = []
    for _ in range(200 * n + 1000):
        if len(names) == n:
            return names
        name, words = _fill_pattern(rng.choice(kind.name_patterns), rng)
        tokens = {w.lower() for w in words} | {t.lower() for t in name.split() if t.lower() not in _FIXED_WORDS}
        if len({w.lower() for w in words}) < len(words) or is_blocked_name(name):
            continue
        if any(t in used or t in _COMMON_WORDS or t in value_words for t in tokens):
            continue
        used.update(tokens)
        names.append(name)
    raise InvalidInputError(f"could not invent {n} unique {kind.noun} names; use n_entities in [1, {MAX_ENTITIES}]")


def _render(template: str, name: str, value: str = "") -> str:
    a_value = ("an " if value[:1].lower() in "aeiou" else "a ") + value
    text = template.format(name=name, value=value, a_value=a_value)
    return text[:1].upper() + text[1:]  # "the Brantle Kettle is ..." starts a sentence


@dataclass
class SyntheticDomain:
    """Invented entities with one value per attribute, their training documents and two question splits.

    ``entities[i]`` is ``{"name": ..., <attribute>: <value>, ...}``; ``attributes`` lists the attribute keys.
    """

    kind: str
    seed: int
    entities: list[dict[str, str]]
    attributes: list[str]
    documents: list[str] = field(default_factory=list)
    train_qa: list[QA] = field(default_factory=list)
    test_qa: list[QA] = field(default_factory=list)

    @property
    def description(self) -> str:
        """One line naming the kind and its attributes, e.g. for an expert's domain description."""
        spec = _KINDS.get(self.kind)
        labels = {a.key: a.label for a in spec.attributes} if spec else {}
        return f"invented {spec.noun if spec else self.kind}: " + ", ".join(labels.get(a, a) for a in self.attributes)

    def training_qa(self) -> list[QA]:
        """Every fact asked in every *training* wording of its attribute (3 per fact for the shipped kinds):
        the set an expert learns best from. On the 40-entity benchmark, the three wordings took reworded
        test questions to 83-91% where one wording plus the documents reached 15% in three times the time.
        Test wordings stay disjoint from all of them."""
        spec = _KINDS.get(self.kind)
        if spec is None:
            return list(self.train_qa)
        by_key = {a.key: a for a in spec.attributes}
        return [
            QA(_render(t, e["name"]), by_key[attr].answers(e[attr]), e["name"], attr)
            for e in self.entities
            for attr in self.attributes
            for t in by_key[attr].train
        ]

    def facts(self) -> list[tuple[str, str, str]]:
        """Every ``(entity name, attribute, value)``, entity by entity."""
        return [(e["name"], a, e[a]) for e in self.entities for a in self.attributes]

    def chance_baseline(self) -> dict[str, float]:
        """Per attribute, the accuracy in [0, 1] of the best guesser that cannot tell entities apart.

        It is the larger of two guessers: one that always answers the value most common among this domain's
        entities (knowing the domain's distribution), and one that picks uniformly from the attribute's value list.
        Values are dealt without replacement until a list runs out, so for ``n_entities <= 50`` this is
        ``1 / n_entities``. An expert's accuracy on ``test_qa`` should be read against it.
        """
        spec = {a.key: a for a in _KINDS[self.kind].attributes} if self.kind in _KINDS else {}
        out = {}
        for attr in self.attributes:
            counts = Counter(e[attr] for e in self.entities)
            n_values = len(spec[attr].values) if attr in spec else len(counts)
            out[attr] = max(max(counts.values()) / len(self.entities), 1 / n_values) if counts else 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (:meth:`from_dict` reads it back)."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "seed": self.seed,
            "attributes": list(self.attributes),
            "entities": [dict(e) for e in self.entities],
            "documents": list(self.documents),
            "train_qa": [qa._asdict() for qa in self.train_qa],
            "test_qa": [qa._asdict() for qa in self.test_qa],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticDomain:
        """A domain written by :meth:`to_dict`."""
        keys = ("kind", "seed", "attributes", "entities", "documents", "train_qa", "test_qa")
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        if missing:
            raise InvalidInputError(f"not a synthetic domain: missing keys {missing}")
        try:
            qa = {
                split: [QA(q["question"], list(q["answers"]), q["entity"], q["attribute"]) for q in data[split]]
                for split in ("train_qa", "test_qa")
            }
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"not a synthetic domain: malformed question entry ({exc!r})") from exc
        return cls(
            kind=data["kind"],
            seed=data["seed"],
            attributes=list(data["attributes"]),
            entities=[dict(e) for e in data["entities"]],
            documents=list(data["documents"]),
            train_qa=qa["train_qa"],
            test_qa=qa["test_qa"],
        )

    def save(self, path: str | Path) -> Path:
        """Write the domain as JSON, atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> SyntheticDomain:
        """A domain saved as JSON at ``path``."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(f"synthetic domain file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"synthetic domain file {str(path)!r} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def make_synthetic_domain(
    kind: str, n_entities: int = 40, seed: int = 0, *, restatements_per_fact: int = 3
) -> SyntheticDomain:
    """Invent ``n_entities`` entities of ``kind`` (one of :data:`SYNTHETIC_KINDS`) with their documents and QA.

    Each entity gets one document stating all its facts, and each fact ``restatements_per_fact`` single-sentence
    restatements (0 to 3, each in another phrasing; with 3, every document template phrases every fact once).
    A 40-entity domain with 5 attributes has 40 + 40 * 5 * 3 = 640 documents and 200 questions in each of
    ``train_qa`` and ``test_qa``.
    """
    if kind not in _KINDS:
        raise UnknownNameError("synthetic domain kind", kind, SYNTHETIC_KINDS)
    if not _is_int(n_entities) or not 1 <= n_entities <= MAX_ENTITIES:
        raise InvalidInputError(f"n_entities must be an int in [1, {MAX_ENTITIES}], got {n_entities!r}")
    if not _is_int(seed):
        raise InvalidInputError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    spec = _KINDS[kind]
    n_doc = min(len(a.document) for a in spec.attributes) - 1  # phrasings left after the profile's
    if not _is_int(restatements_per_fact) or not 0 <= restatements_per_fact <= n_doc:
        raise InvalidInputError(f"restatements_per_fact must be an int in [0, {n_doc}], got {restatements_per_fact!r}")

    rng = random.Random(f"adaptive_moe.synthetic/{kind}/{seed}")  # str seeds are hashed stably across runs
    names = _make_names(spec, n_entities, rng)
    entities: list[dict[str, str]] = [{"name": name} for name in names]
    for a in spec.attributes:
        dealt: list[str] = []  # deal shuffled decks: values repeat only once the list is used up
        while len(dealt) < n_entities:
            deck = list(a.values)
            rng.shuffle(deck)
            dealt += deck
        for entity, value in zip(entities, dealt[:n_entities], strict=True):
            entity[a.key] = value

    profiles, restatements = [], []
    train_qa, test_qa = [], []
    for e in entities:
        sentences = []
        for a in spec.attributes:
            order = rng.sample(a.document, len(a.document))  # first phrasing in the profile, the next ones alone
            sentences.append(_render(order[0], e["name"], e[a.key]))
            restatements += [_render(t, e["name"], e[a.key]) for t in order[1 : 1 + restatements_per_fact]]
            answers = a.answers(e[a.key])
            train_qa.append(QA(_render(rng.choice(a.train), e["name"]), answers, e["name"], a.key))
            test_qa.append(QA(_render(rng.choice(a.test), e["name"]), list(answers), e["name"], a.key))
        rng.shuffle(sentences)
        profiles.append(" ".join(sentences))
    return SyntheticDomain(
        kind=kind,
        seed=seed,
        entities=entities,
        attributes=[a.key for a in spec.attributes],
        documents=profiles + restatements,
        train_qa=train_qa,
        test_qa=test_qa,
    )


def question_templates(kind: str, split: str) -> dict[str, tuple[str, ...]]:
    """The question templates of ``kind`` per attribute for ``split`` ("train" or "test")."""
    if kind not in _KINDS:
        raise UnknownNameError("synthetic domain kind", kind, SYNTHETIC_KINDS)
    if split not in ("train", "test"):
        raise UnknownNameError("question split", split, ("train", "test"))
    return {a.key: getattr(a, split) for a in _KINDS[kind].attributes}


def value_lists(kind: str) -> dict[str, tuple[str, ...]]:
    """The value list of each attribute of ``kind``."""
    if kind not in _KINDS:
        raise UnknownNameError("synthetic domain kind", kind, SYNTHETIC_KINDS)
    return {a.key: a.values for a in _KINDS[kind].attributes}
