"""Facts as :mod:`adaptive_moe.creation.qa_rules` gives them, and their answers: the short forms a
reader may give, place types, and a drafted fact checked before it is kept.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..evaluation.scoring import normalize_answer
from .qa_phrases import (
    _alternate,
    _category,
    _Context,
    _date,
    _head_noun,
    _is_name,
    _name_spans,
    _named_np,
    _strip_article,
)
from .qa_refs import _BOUND_MARK
from .qa_words import (
    _CONJUNCTIONS,
    _LEX,
    _NAME_WORDS,
    _NAMING,
    _PLACE_NOUNS,
    _PLACE_TYPES,
    _STREET_WORDS,
    _TITLES,
    _upper_first,
    _word_count,
    join_tokens,
)

MAX_ANSWER_WORDS = 6


@dataclass(frozen=True)
class Fact:
    """One fact stated by a sentence, as (subject, relation, answer), with its questions and restatements.

    ``answer`` is short (at most ``MAX_ANSWER_WORDS`` words), ``aliases`` are other accepted forms of it
    ("the port of Velmora" for "Velmora"), ``questions`` are different wordings of one question whose answer
    is ``answer``, ``statements`` are declarative sentences stating the fact. ``sentence`` is the source
    sentence and ``source`` names the document it came from.
    """

    subject: str
    relation: str
    answer: str
    aliases: tuple[str, ...] = ()
    sentence: str = ""
    source: str = ""
    questions: tuple[str, ...] = ()
    statements: tuple[str, ...] = ()

    @property
    def answers(self) -> list[str]:
        """The answer and its aliases: the gold answers a scorer accepts."""
        return [self.answer, *self.aliases]

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class SentenceFacts:
    """A sentence as written, the same sentence with its references resolved, and the facts it states."""

    text: str
    resolved: str
    facts: tuple[Fact, ...] = ()


# -- answers --------------------------------------------------------------------------------------
def _forms(np: list[str], ctx: _Context) -> tuple[str, list[str]]:
    """The answer a phrase gives and its aliases: "the stonemason Petr Halloran" -> "Petr Halloran"
    (aliases: the whole phrase, "Halloran"); "a silver heron" -> "a silver heron" ("silver heron")."""
    text = join_tokens(np)
    named = _named_np(np)
    if named:  # "a handbook called The Patient Flame" -> "The Patient Flame"
        name = join_tokens(named[1])
        return name, [text, _strip_article(name)]
    answer, aliases = text, []
    spans = _name_spans(np, sentence_start=False)
    s = spans[-1][0] if spans else 0
    if spans and spans[-1][1] == len(np) and s > 0 and np[s - 1].islower() and np[s - 1] not in _CONJUNCTIONS:
        if ctx.is_person(np[s:]):
            answer, aliases = join_tokens(np[s:]), [text]
    elif _word_count(text) > MAX_ANSWER_WORDS and (alt := _alternate(np)):
        answer, aliases = alt, [text]  # "the second master of the Tidewater Guild" -> "the Tidewater Guild's ..."
    words = answer.split()
    if ctx.is_person(answer.split()) and len(words) > 1:
        plain = [w for w in words if w not in _TITLES]
        aliases += [" ".join(plain), plain[-1]] if len(plain) > 1 else [plain[-1]]
    aliases.append(_strip_article(answer))
    return answer, aliases


def _place_forms(np: list[str], ctx: _Context) -> tuple[str, list[str]] | None:
    """The short answer for a place phrase: "the port of Velmora" -> "Velmora" (alias: the phrase); "the
    northern coast of Arnholt" stays whole (alias "Arnholt"); None when the phrase is no place."""
    text = join_tokens(np)
    if not np or _date(np) or ctx.is_person(np):
        return None
    named = _named_np(np)
    if named:  # "a village called Brisk Hollow", not "a book titled Flowers of the Western Isles"
        name = join_tokens(named[1])
        return (name, [text, _strip_article(name)]) if _category(named[0]) in _PLACE_NOUNS else None
    m = re.fullmatch(r"the (?:[a-z-]+ )?([a-z]+) of ((?:[A-Z][\w'-]*(?: of)? ?)+)", text)
    if m and m.group(1) in _PLACE_TYPES:
        return m.group(2).strip(), [text]
    if _is_name(np):
        return text, [_strip_article(text)]
    spans = _name_spans(np, sentence_start=False)
    head = _head_noun(np)
    if head in _PLACE_NOUNS or (spans and any(np[s] in _NAME_WORDS or np[e - 1] in _NAME_WORDS for s, e in spans)):
        names = [join_tokens(np[s:e]) for s, e in spans]
        return text, [_strip_article(text), *names[-1:]]
    return None


def _place_type(answer: str, ctx: _Context, np: list[str]) -> str:
    """What kind of place ``answer`` is, for "In which town ...?": the phrase's own word ("the port of
    Velmora"), else what the document called it elsewhere, else "place"."""
    m = re.fullmatch(r"the (?:[a-z-]+ )?([a-z]+) of .+", join_tokens(np))
    if m and m.group(1) in _PLACE_TYPES:
        return m.group(1)
    types = ctx.place_types.get(answer, set())
    for t in _LEX["place_types"]:
        if t in types:
            return t
    last = answer.split()[-1] if answer.split() else ""
    if last in _STREET_WORDS:
        return "street"  # "Copperwick Lane": "On which street ...?"
    if last in _NAME_WORDS and last.lower() in _PLACE_KINDS:
        return last.lower()  # "the Velmora Maritime Museum": "In which museum ...?"
    named = _named_np(np)
    if named and _category(named[0]) in _PLACE_NOUNS:
        return _category(named[0])
    return "place"


# name words that say what kind of place a name is ("In which museum ...?")
_PLACE_KINDS = frozenset(
    [
        "museum",
        "gallery",
        "library",
        "abbey",
        "cathedral",
        "church",
        "chapel",
        "castle",
        "palace",
        "hall",
        "station",
        "bridge",
        "park",
        "tower",
        "lighthouse",
        "theatre",
        "theater",
        "hospital",
        "school",
        "college",
        "university",
        "inn",
        "tavern",
        "hotel",
        "temple",
        "fort",
        "mill",
        "square",
        "market",
        "harbour",
        "harbor",
        "quay",
        "wharf",
        "pier",
        "island",
        "isle",
        "lake",
        "river",
        "bay",
        "valley",
        "forest",
        "hill",
        "mountain",
    ]
)


def _which(prep: str, kind: str, ask: str) -> list[str]:
    """ "In which town ...?"; for a place of no known kind only "In which place ...?" reads well."""
    if kind == "place" and prep != "in":
        return []
    return [f"{prep.capitalize()} which {kind} {ask}?"]


_KEPT = re.compile(_BOUND_MARK.format(r"(\w+)"))
_BAD_WORDS = re.compile(r"\b(?:it|its|he|she|his|her|him|they|their|them|this|these|those)\b", re.I)


def _contains(haystack: str, needle: str) -> bool:
    n = normalize_answer(needle)
    return bool(n) and f" {n} " in f" {normalize_answer(haystack)} "


@dataclass
class _Draft:
    subject: str
    relation: str
    answer: str
    aliases: list[str]
    questions: list[str]
    statements: list[str]


def _finish(d: _Draft, sentence: str) -> Fact | None:
    """A fact from a draft, keeping only self-contained questions that do not give away the answer."""
    answer = d.answer.strip(" ,;:")
    if not answer or _word_count(answer) > MAX_ANSWER_WORDS or not normalize_answer(answer):
        return None
    if _BAD_WORDS.search(answer) or answer.split()[-1] in _NAMING or answer.endswith(" own"):
        return None  # "her biography": whose? "a bridge called": called what?
    questions, seen = [], set()
    for q in d.questions:
        q = _upper_first(re.sub(r"\s+", " ", q).strip().replace(" ?", "?"))
        if _BAD_WORDS.search(_KEPT.sub("", q)):
            continue  # a pronoun nothing before it in the question stands for
        q = _KEPT.sub(r"\1", q)
        key = normalize_answer(q)
        if key in seen or _contains(q, answer) or _word_count(q) > 30:
            continue
        seen.add(key)
        questions.append(q)
    if not questions:
        return None
    aliases, keys = [], {answer.lower()}
    for a in d.aliases:
        a = a.strip(" ,;:")
        k = a.lower()
        if (
            normalize_answer(a)
            and k not in keys
            and _word_count(a) <= MAX_ANSWER_WORDS + 2
            and not _BAD_WORDS.search(a)
            and not any(_contains(q, a) for q in questions)
        ):
            keys.add(k)
            aliases.append(a)
    statements = []
    for s in d.statements:
        s = _upper_first(re.sub(r"\s+", " ", s).strip().replace(" ,", ",").replace(" .", "."))
        if not _BAD_WORDS.search(_KEPT.sub("", s)) and _KEPT.sub(r"\1", s) not in statements:
            statements.append(_KEPT.sub(r"\1", s))
    return Fact(d.subject, d.relation, answer, tuple(aliases), sentence, "", tuple(questions), tuple(statements))
