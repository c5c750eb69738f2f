"""The shallow parse behind :mod:`adaptive_moe.creation.qa_rules`: tokens, verb forms, noun phrases, what a
document has said so far (names, persons, places, descriptions), references resolved, and clauses.

No tagger, no parser, no model: only word lists (``adaptive_moe/data/qa_patterns.json``) and rules that are right
on the sentences documents are mostly made of.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

_LEX = json.loads(resources.files("adaptive_moe").joinpath("data", "qa_patterns.json").read_text("utf-8"))
_PAST = {b: p for b, p, _ in _LEX["irregular_verbs"]}
_PP = {b: pp for b, _, pp in _LEX["irregular_verbs"]}
_IRREGULAR_PAST = set(_PAST.values())
_IRREGULAR_PP = set(_PP.values())
_BASE_OF: dict[str, str] = {}
for _b, _p, _pp in _LEX["irregular_verbs"]:
    _BASE_OF.setdefault(_p, _b)
    _BASE_OF.setdefault(_pp, _b)
_VERBS = frozenset(_LEX["regular_verbs"]) | frozenset(_PAST)
_NOT_VERBS = frozenset(_LEX["not_verbs"])
_PHRASAL = frozenset(_LEX["phrasal_verbs"])
_NO_PASSIVE = frozenset(_LEX["no_passive"])
_NON_AGENTIVE = frozenset(_LEX["non_agentive_verbs"])
_MOTION = frozenset(_LEX["motion_verbs"])
_NAMING = frozenset(_LEX["naming_participles"])
_LOCATED = frozenset(_LEX["location_participles"])
_LOCATION_VERBS = frozenset(_LEX["location_verbs"])
_DIMENSIONS: dict[str, str] = _LEX["dimensions"]
_PLACE_TYPES = frozenset(_LEX["place_types"])
_PLACE_NOUNS = frozenset(_LEX["place_nouns"]) | _PLACE_TYPES
_NAME_WORDS = frozenset(_LEX["name_words"])
_TITLES = frozenset(_LEX["titles"])
_ROLES = frozenset(_LEX["person_roles"])
_GROUPS = frozenset(_LEX["groups"])
_ORIGIN_VERBS = frozenset(_LEX["origin_verbs"])
_AGENT_NOUNS: dict[str, str] = _LEX["agent_nouns"]
_TIME_UNITS = frozenset(_LEX["time_units"])
_OCCUPATIONS = frozenset(_LEX["occupations"])
_OCCUPATION_SUFFIXES = tuple(_LEX["occupation_suffixes"])
_PERSON_NOUNS = frozenset(_LEX["person_nouns"]) | _ROLES | _OCCUPATIONS
_GENDER = {noun: pronoun for pronoun, nouns in _LEX["gendered_nouns"].items() for noun in nouns}
_ATTRIBUTES = frozenset(_LEX["attribute_nouns"])
_COLOURS = frozenset(_LEX["colours"])
_ROLE_VERBS = frozenset(_LEX["role_verbs"])
_AS_VERBS = frozenset(_LEX["as_verbs"])
_TITLE_NOUNS = frozenset(_LEX["title_nouns"])
_FAME = frozenset(_LEX["fame_adjectives"])
_STREET_WORDS = frozenset(_LEX["street_words"])
_NOT_PARTICIPLES = frozenset(_LEX["not_participles"])
_THING_NOUNS = frozenset(_LEX["thing_nouns"])


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Closed word classes, small enough to read here; the open lists are in qa_patterns.json.
_BE = {"is": "present", "are": "present", "was": "past", "were": "past"}
_HAVE = {"has": "present", "have": "present", "had": "past"}
_MODALS = _words("will would can could may might must shall should")
_NEGATIONS = _words("not never no hardly neither nor")
_DETERMINERS = _words(
    "the a an this that these those its his her their our my your each every some any another many most several "
    "all both"
)
_POSSESSIVES = {"its": "thing", "his": "person", "her": "person", "their": "plural"}
_PRONOUNS = _words("it its he she his her him they their them this these those there here")
_SUBJECT_PRONOUNS = _words("she he it they")
_PREPS = _words(
    "in on at by near from to into onto for with during after before since until till under over between across "
    "along through throughout beside behind as off toward towards around within without about against among "
    "aboard inside outside beyond upon above below beneath via despite of"
)
_PLACE_PREPS = _words("in on at near beside along above below beneath inside outside within off")
_RELATIVES = _words("who which whom whose that")
_CONJUNCTIONS = _words("the and or nor of a an") | _PREPS
_CLAUSE_STOPS = _words("who whom whose which where when while because although though but so than whereas if unless")
_CLAUSE_STOPS |= _words("once - — – ( ) ; :")
_SUBORDINATORS = _words("when while after before although though because since once as if until")
_NOT_FRONTED_PREPS = _SUBORDINATORS - {"after", "before", "since", "until"}  # "as", "once": conjunctions
_FRONT_WORDS = _words(
    "later then today now eventually finally originally soon afterwards subsequently meanwhile however nowadays "
    "initially historically traditionally"
)
_ADVERBS = _words(
    "also still once first later then soon now often originally formally officially eventually finally jointly "
    "together briefly subsequently initially quickly largely mainly mostly partly entirely recently already again "
    "even only just well always usually sometimes"
)
_KEEP_ADVERBS = _words("first originally initially formally officially jointly")  # they change what is asked
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MONTH_RE = "|".join(_MONTHS)
_NUMBER_WORDS = _words(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand dozen"
)
_APPROX = _words("around about nearly almost roughly approximately some over exactly")
_SEASONS = _words("spring summer autumn fall winter")
_COMPASS = _words("north south east west northeast northwest southeast southwest")

_ABBREV = "|".join(sorted((re.escape(a) for a in _LEX["abbreviations"]), key=len, reverse=True))
_TOKEN = re.compile(
    r"\d+(?:[.,:]\d+)*(?:st|nd|rd|th|s)?"  # 1794, 4,200, 3.5, 3rd, 1790s
    r"|(?:[A-Za-z]\.){2,}"  # e.g., i.e., U.S.
    rf"|(?:{_ABBREV})\.(?=\s|$)"  # Dr., St.
    r"|[A-Z]\.(?=\s+[A-Z])"  # initials: "J. R. Tolliver"
    r"|[^\W\d_][\w-]*(?:'(?!s\b)[^\W\d_][\w-]*)*"  # words, "lamp-makers", "O'Brien"
    r"|'s\b|'"
    r"|[^\w\s\"“”*_`]"  # punctuation; quotes and emphasis marks are dropped
)
_NO_SPACE_BEFORE = frozenset({",", ".", ";", ":", "?", "!", ")", "'s", "'", "%"})


# -- tokens ---------------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Word and punctuation tokens; "'s" is a token of its own, quotes and emphasis marks are dropped."""
    return _TOKEN.findall(text.replace("’", "'").replace("‘", "'"))


def join_tokens(tokens: Sequence[str]) -> str:
    """Tokens as text; "'s" after a word ending in -s is a bare apostrophe ("the Lantern Makers' hall")."""
    out = ""
    for tok in tokens:
        if tok == "'s" and _s_ending(out.rsplit(" ", 1)[-1]):
            out += "'"
        elif not out or out.endswith(("(", "£", "$", "€")) or tok in _NO_SPACE_BEFORE:
            out += tok
        else:
            out += " " + tok
    return out


def _s_ending(word: str) -> bool:
    """A word whose possessive is a bare apostrophe: "Makers", "members" (not "Venn", "glass", "Ignatius")."""
    return len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) and word[-2].isalpha()


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _mid(text: str) -> str:
    """A sentence's words placed mid-sentence: "The guild was ..." -> "the guild was ..."; names keep
    their capital."""
    first = text.split(" ", 1)[0]
    return first.lower() + text[len(first) :] if first.lower() in _DETERMINERS else text


def _cap(tok: str) -> bool:
    return tok[:1].isupper()


def _is_number(tok: str) -> bool:
    return bool(re.fullmatch(r"\d[\d,.]*", tok)) or tok.lower() in _NUMBER_WORDS


def _word_count(text: str) -> int:
    return len(re.findall(r"[\w'-]+", text))


# -- verbs ----------------------------------------------------------------------------------------
def _regular_ed(tok: str) -> bool:
    if tok.endswith("eed") or tok in _NOT_VERBS or "-" in tok:
        return False  # "linseed", "speed": a regular past tense never ends in -eed
    return len(tok) >= 4 and tok.endswith("ed") and tok.islower()


def _is_past(tok: str) -> bool:
    return tok in _IRREGULAR_PAST or _regular_ed(tok)


def _is_participle(tok: str) -> bool:
    return (tok in _IRREGULAR_PP and tok not in _VERBS - {"become", "come", "run"}) or _regular_ed(tok)


def _is_third_person(tok: str) -> bool:
    if not (tok.islower() and tok.endswith("s")) or tok.endswith(("ss", "us", "is")) or tok in ("has", "is", "was"):
        return False
    return _base(tok) in _VERBS


def _base(verb: str) -> str:
    """The base form of a past tense, participle or third-person present ("designed" -> "design")."""
    if verb in ("has", "have", "had"):
        return "have"
    if verb in _BASE_OF:
        return _BASE_OF[verb]
    if verb.endswith("ed"):
        stem = verb[:-2]
        doubled = stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsfz" else stem
        candidates = [stem, stem + "e", doubled, stem[:-1] + "y" if stem.endswith("i") else stem, verb[:-1]]
        for cand in candidates:
            if cand in _VERBS:
                return cand
        # unknown verb: the usual spelling rules ("relocated" -> "relocate", "carried" -> "carry")
        if stem.endswith("i"):
            return stem[:-1] + "y"
        if doubled != stem:
            return doubled
        if re.search(r"(?:[^aeiou][vcz]|at|ut|iz|is|ur|ir|[bcdfgkptz]l|[^aeiou]g)$", stem):
            return stem + "e"
        return stem
    if verb.endswith("s"):
        for cand in (verb[:-1], verb[:-2], verb[:-3] + "y"):
            if cand in _VERBS:
                return cand
        return verb[:-3] + "y" if verb.endswith("ies") else verb[:-2] if verb.endswith("es") else verb[:-1]
    return verb


def _past(base: str) -> str:
    if base in _PAST:
        return _PAST[base]
    if base.endswith("e"):
        return base + "d"
    if re.search(r"[^aeiou]y$", base):
        return base[:-1] + "ied"
    return base + "ed"


def _participle(base: str) -> str:
    return _PP.get(base, _past(base))


def _third(base: str) -> str:
    if base == "have":
        return "has"
    if re.search(r"(?:s|x|z|ch|sh)$", base):
        return base + "es"
    if re.search(r"[^aeiou]y$", base):
        return base[:-1] + "ies"
    return base + "s"


def _verbish(tok: str) -> bool:
    return tok.islower() and (_is_past(tok) or _is_third_person(tok))


# -- noun phrases ---------------------------------------------------------------------------------
def _strip_article(text: str) -> str:
    return re.sub(r"^(?:the|a|an)\s+", "", text, flags=re.I)


def _is_name(np: list[str]) -> bool:
    words = np[1:] if np and np[0].lower() == "the" else np
    return bool(words) and all(_cap(t) or t in ("of", "de", "van", "von", "da") for t in words)


def _is_title(np: Sequence[str]) -> bool:
    """A name or a title: capitalised words, small words between them ("Flowers of the Western Isles")."""
    words = np[1:] if np and np[0].lower() == "the" else np
    small = ("of", "de", "van", "von", "da", "the", "and", "a", "in", "on", "for", "to")
    return bool(words) and _cap(words[0]) and _cap(words[-1]) and all(_cap(t) or t in small for t in words)


def _possessive(np: str) -> str:
    """ "the guild" -> "the guild's"; a word ending in -s gets a bare apostrophe ("the members'")."""
    last = np.split()[-1] if np.split() else np
    return np + "'" if _s_ending(last) else np + "'s"


def _alternate(np: list[str]) -> str | None:
    """The same noun phrase the other way round: "the first master of the guild" <-> "the guild's first master"."""
    if "'s" in np:
        i = np.index("'s")
        owner, rest = np[:i], np[i + 1 :]
        if owner and rest and "of" not in rest and all(t.islower() for t in rest):
            return join_tokens(["the", *rest, "of", *owner])
        return None
    if "of" in np and np[0] == "the":
        i = np.index("of")
        head, owner = np[1:i], np[i + 1 :]
        named = _is_name(owner) and len(owner) <= 7  # "the motto of the Guild of Lantern Makers"
        if head and owner and (named or ("of" not in owner and len(owner) <= 4)) and all(t.islower() for t in head):
            if owner[0] in ("a", "an") or (not named and any(t in _PREPS for t in owner)):
                return None
            return join_tokens([_possessive(join_tokens(owner)), *head])
    return None


def _head_noun(np: list[str]) -> str:
    """The noun a phrase is about: before a preposition ("of", "from"), after "'s", else the last word."""
    cut = next((i for i, t in enumerate(np) if i and t in _PREPS), None)
    if cut:
        np = np[:cut]
    if "'s" in np:
        np = np[np.index("'s") + 1 :]
    words = [t for t in np if re.match(r"\w", t)]
    return words[-1].lower() if words else ""


def _is_plural(np: list[str]) -> bool:
    if "and" in np:
        return True
    head = _head_noun(np)
    k = next((k for k in range(len(np) - 1, -1, -1) if np[k].lower() == head), 0)
    name = k > 0 and _cap(np[k]) and _cap(np[0])  # "Harrowgate Rovers": a name, one club (not "Storms are ...")
    return head.endswith("s") and not head.endswith(("ss", "us", "is", "ics", "news")) and not name


def _date(np: list[str]) -> tuple[str, str, str | None] | None:
    """(kind, answer, year) when the phrase is a date: "3 March 1801" -> ("date", "3 March 1801", "1801")."""
    text = join_tokens(np)
    patterns = (
        ("year", r"(?:the year )?(?P<y>\d{4})"),
        ("date", rf"(?:the )?\d{{1,2}}(?:st|nd|rd|th)? (?:of )?(?:{_MONTH_RE}),? (?P<y>\d{{4}})"),
        ("date", rf"(?:{_MONTH_RE}) \d{{1,2}}(?:st|nd|rd|th)?,? (?P<y>\d{{4}})"),
        ("month", rf"(?:(?:early|late|mid-) )?(?:{_MONTH_RE}),? (?:of )?(?P<y>\d{{4}})"),
        ("season", r"the (?:early |late )?(?:spring|summer|autumn|fall|winter) of (?P<y>\d{4})"),
        ("decade", r"the (?:early |late |mid-)?\d{3}0s"),
        ("century", r"the (?:early |late )?\w+ century"),
        ("month", rf"(?:early |late )?(?:{_MONTH_RE})"),
        ("weekday", r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)s?"),
    )
    for kind, pattern in patterns:
        m = re.fullmatch(pattern, text)
        if m:
            answer = text[4:] if kind == "year" and text.startswith("the year") else text
            return kind, answer, m.groupdict().get("y")
    return None


def _number_phrase(np: list[str]) -> tuple[str, str, list[str]] | None:
    """ "around 900 lanterns a year" -> ("900", "around 900", ["lanterns", "a", "year"])."""
    i = 0
    while i < len(np) and np[i].lower() in _APPROX | {"more", "than", "less", "fewer"}:
        i += 1
    j = i
    while j < len(np) and (
        _is_number(np[j]) or (j > i and np[j] == "and" and j + 1 < len(np) and _is_number(np[j + 1]))
    ):
        j += 1
    if j == i:
        return None
    number = join_tokens(np[i:j])
    return number, join_tokens(np[:j]), np[j:]


def _comparative(phrase: str) -> bool:
    """ "more than 4,000", "over 600": the qualifier is part of the fact ("about 900" is not)."""
    return bool(re.match(r"(?:more|less|fewer) than |over |under |at least |at most ", phrase))


def _named_np(np: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """ "a handbook called The Patient Flame" -> (["a", "handbook"], ["The", "Patient", "Flame"]): a noun phrase
    that names its thing, split into the description and the name."""
    for k in range(2, len(np) - 1):
        if np[k] in _NAMING and np[k] != "renamed" and np[0].lower() in ("a", "an", "the", "its", "his", "her"):
            name = np[k + 2 :] if np[k + 1] == "as" else np[k + 1 :]
            desc = list(np[:k])
            if name and _is_title(name) and all(t.islower() or t == "'s" for t in desc[1:]) and _cap(name[-1]):
                return desc, list(name)
            return None
    return None


def _category(desc: Sequence[str]) -> str:
    """The kind of thing a description names: "a blue orchid" -> "orchid"; "" when it is no plain noun."""
    words = [t for t in desc if re.fullmatch(r"[a-z][a-z-]*", t)]
    if not words or words[-1] in _DETERMINERS or _is_number(words[-1]):
        return ""
    return words[-1]


def _colour(np: Sequence[str]) -> tuple[str, list[str]] | None:
    """ "the blue signal glass" -> ("blue", ["the", "signal", "glass"]): a colour adjective before the noun."""
    for k, tok in enumerate(np[:-1]):
        if tok in _COLOURS and re.fullmatch(r"[a-z-]+", np[k + 1]) and np[k + 1] not in ("and", "or", "of", ","):
            if k + 2 < len(np) and np[k + 1] in _COLOURS:
                return None  # "red and white", "blue green": not one colour
            return tok, [*np[:k], *np[k + 1 :]]
        if tok in _PREPS or tok == ",":
            break
    return None


def _is_occupation(noun: str) -> bool:
    return noun in _OCCUPATIONS or (
        noun.endswith(_OCCUPATION_SUFFIXES) and noun not in _PERSON_NOUNS - _OCCUPATIONS and len(noun) > 5
    )


def _gerund(base: str) -> str:
    """ "join" -> "joining", "become" -> "becoming", "run" -> "running", "die" -> "dying"."""
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        return base[:-1] + "ing"
    if re.fullmatch(r"[^aeiou]*[aeiou][bdgmnprt]", base) and len(base) <= 4:
        return base + base[-1] + "ing"
    return base + "ing"


# -- context: what the document has said so far ---------------------------------------------------
@dataclass
class _Context:
    """References known so far in one document, for pronouns and short references."""

    lower_words: set[str]
    places: set[str]
    place_types: dict[str, set[str]]
    persons: list[list[str]] = field(default_factory=list)
    names: list[list[str]] = field(default_factory=list)
    things: set[tuple[str, ...]] = field(default_factory=set)  # names written with "the": never persons
    topic: list[str] | None = None
    passage_topic: list[str] | None = None
    prev_subject: list[str] | None = None
    prev_persons: list[list[str]] = field(default_factory=list)
    prev_things: list[list[str]] = field(default_factory=list)
    prev_named: list[str] | None = None  # "X is a N called Name": Name, what "It" next is
    prev_rival: bool = False  # the previous sentence named a second thing "It" could be
    prev_orgs: list[list[str]] = field(default_factory=list)  # organisations it named, for "She joined its ..."
    passage_start: bool = True
    topic_person: list[str] | None = None
    gender: dict[tuple[str, ...], str] = field(default_factory=dict)
    descriptions: dict[str, list[list[str]]] = field(default_factory=dict)  # "festival" -> the Night of Small Suns
    titles: set[tuple[str, ...]] = field(default_factory=set)  # names that start with "The": "The Patient Flame"

    def is_person(self, np: Sequence[str]) -> bool:
        """A person's name: capitalised words (a title allowed), none of them a place or organisation word."""
        np = [t for t in np if t not in ("'s",)]
        if not np or np[0].lower() in _DETERMINERS:
            return False
        if np[0] in _TITLES and len(np) > 1:
            return all(_cap(t) for t in np[1:])
        if np[0] in ("St.", "St", "Saint"):
            return False  # "St. Alder": a church's, a town's, a street's name
        if not all(_cap(t) for t in np) or any(t in _NAME_WORDS for t in np) or join_tokens(np) in self.places:
            return False
        if tuple(np) in self.things:
            return False
        if len(np) == 1:
            return any(np[0] in (p[-1], p[0]) for p in self.persons)
        return len(np) <= 4

    def wants_who(self, np: list[str], groups: bool = False) -> bool:
        """Whether a question about this phrase asks "Who": a person, or a person described ("the mayor of X");
        with ``groups``, also a group of people ("the town council") - as a doer or recipient, not an object."""
        if self.is_person(np):
            return True
        named = _named_np(np)
        if named:  # "a handbook called The Patient Flame"
            return _category(named[0]) in _PERSON_NOUNS
        spans = _name_spans(np, sentence_start=False)
        if spans and spans[-1][1] == len(np) and self.is_person(np[spans[-1][0] :]):
            return True  # "the stonemason Petr Halloran"
        return _head_noun(np) in (_ROLES | _GROUPS if groups else _ROLES)

    def remember(self, tokens: list[str]) -> list[list[str]]:
        """Record the names in a sentence; returns the persons named."""
        persons = []
        verb = _find_verb(tokens)
        for start, end in _name_spans(tokens):
            name = tokens[start:end]
            if start > 0 and tokens[start - 1].lower() == "the":
                if name not in self.names:
                    self.names.append(name)  # "the Tidewater Guild", "The Long Watch": never a person
                self.things.add(tuple(name))
                continue
            if name not in self.names:
                self.names.append(name)
            naming = start - 1 != verb and tokens[start - 1] in _NAMING | {"as"}
            if start > 1 and naming and _thing_noun(tokens[start - 2].lower()):
                self.things.add(tuple(name))  # "a cheese called Wend Gold", "a club called Harrowgate Rovers"
                continue
            if self.is_person(name) and (len(name) > 1 or name[0] in _TITLES):
                if name not in self.persons:
                    self.persons.append(name)
                persons.append(name)
            elif len(name) == 1 and self.is_person(name):
                persons.append(self.expand(name) or name)
        return persons

    def expand(self, name: list[str]) -> list[str] | None:
        """The one known full name a single surname or first name stands for ("Tolliver" -> "Maren Tolliver");
        of several, the document's main person ("Varden" in Edith Varden's life, though her father is one too)."""
        hits = [p for p in self.persons if len(p) > 1 and name[0] in (p[-1], p[0] if p[0] not in _TITLES else "")]
        if len({tuple(h) for h in hits}) == 1:
            return hits[0]
        return self.topic_person if self.topic_person in hits and name[0] == self.topic_person[-1] else None

    def person_for(self, gender: str) -> list[str] | None:
        """The person "he" / "she" stands for: see :func:`_referent`."""
        persons = list({tuple(p): p for p in self.prev_persons}.values())
        fits = [p for p in persons if self.gender.get(tuple(p), gender) == gender]
        if len(fits) == 1:
            return fits[0]
        known = [p for p in fits if self.gender.get(tuple(p)) == gender]
        subject = self.prev_subject
        if len(known) == 1 and known[0] == self.topic_person and (subject is None or subject == known[0] or
                                                                  not self.is_person(subject)):  # fmt: skip
            return known[0]
        return None

    def lookup(self, noun: str) -> list[str] | None:
        """What "the <noun>" stands for: the one name headed by it or place of that type, else the one thing the
        document described so ("a festival", "the largest workshop of the guild")."""
        named = self.named_by_head(noun)
        if named or any(len(n) > 1 and _head_noun(n) == noun for n in self.names):
            return named
        found = list({tuple(d): d for d in self.descriptions.get(noun, [])}.values())
        return list(found[0]) if len(found) == 1 else None

    def describe(self, noun: str, referent: Sequence[str]) -> None:
        """Remember that "the <noun>" may stand for ``referent``."""
        if noun and re.fullmatch(r"[a-z][a-z-]*", noun) and noun not in _DETERMINERS and list(referent):
            self.descriptions.setdefault(noun, []).append(list(referent))

    def named_by_head(self, noun: str) -> list[str] | None:
        """The one known name headed by ``noun`` ("guild" -> "Tidewater Guild"), or the one place of that type."""
        hits = {tuple(n) for n in self.names if len(n) > 1 and _head_noun(n) == noun and not self.is_person(n)}
        if len(hits) == 1:
            return ["the", *next(iter(hits))]
        typed = {p for p, types in self.place_types.items() if noun in types}
        if len(typed) == 1 and noun in _PLACE_TYPES:
            return tokenize(next(iter(typed)))
        return None


def _name_spans(tokens: Sequence[str], sentence_start: bool = True) -> list[tuple[int, int]]:
    """(start, end) of runs of capitalised words ("Maren Tolliver", "Festival of Lamps"). At the start of a
    sentence a single capitalised word is not taken for a name (every sentence starts with one)."""
    spans, i, n = [], 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if _cap(tok) and re.match(r"[^\W\d]", tok) and tok.lower() not in _DETERMINERS | _PRONOUNS | _PREPS:
            j = i + 1
            while j < n and (
                (_cap(tokens[j]) and re.match(r"[^\W\d]", tokens[j]))
                or (tokens[j] in ("of", "de", "van", "von", "da") and j + 1 < n and _cap(tokens[j + 1]))
            ):
                j += 1
            if i > 0 or j > i + 1 or not sentence_start:
                spans.append((i, j))
            i = j
        else:
            i += 1
    return spans


def _survey(sentences: Sequence[str]) -> tuple[set[str], set[str], dict[str, set[str]], set[tuple[str, ...]]]:
    """A first pass over the document: words seen in lower case, names used as places, types of places, and
    names described as things ("Brackwell Shipbuilding is a shipbuilding company": never a person)."""
    lower, places, types, things = set(), set(), {}, set()
    for sentence in sentences:
        toks = tokenize(sentence)
        lower.update(t for t in toks[1:] if t.islower())
        text = join_tokens(toks)
        for m in re.finditer(r"\bthe (?:[a-z-]+ )?([a-z]+) of ((?:[A-Z][\w-]+ ?)+)", text):
            if m.group(1) in _PLACE_TYPES:
                types.setdefault(m.group(2).strip(), set()).add(m.group(1))
                places.add(m.group(2).strip())
        for start, end in _name_spans(toks, sentence_start=False):
            if start > 0 and toks[start - 1] in ("in", "at", "near") and toks[end : end + 1] != ["'s"]:
                places.add(join_tokens(toks[start:end]))  # "born in Halvik", not "in Keel's shop"
            if (
                start > 1
                and toks[start - 1] == "from"
                and (_is_occupation(toks[start - 2]) or toks[start - 2] in _ROLES)
            ):
                places.add(join_tokens(toks[start:end]))  # "a carpenter from Leith Vale"
            if start > 0 and toks[start - 1].lower() == "the":
                continue
            head = _described_as(toks, end)  # "Harrowgate is a market town", "X is a shipbuilding company"
            if head and _thing_noun(head):
                things.add(tuple(toks[start:end]))
                if head in _PLACE_TYPES:
                    types.setdefault(join_tokens(toks[start:end]), set()).add(head)
                    places.add(join_tokens(toks[start:end]))
    for name in list(places):  # "The Tidewater Guild" after "to" is not a place; a person never is
        if name.split()[0] in ("The", "A", "An"):
            places.discard(name)
    return lower, places, types, things


def _thing_noun(noun: str) -> bool:
    """A noun for a thing, not a person: "company", "town", "river" (not "printer", "botanist", "pioneer")."""
    if noun in _GROUPS or noun in _PLACE_NOUNS or noun in _TITLE_NOUNS or noun in _THING_NOUNS:
        return True
    if noun in _PERSON_NOUNS or _is_occupation(noun):
        return False
    return not noun.endswith(("er", "or", "ist", "ian", "man", "woman", "ess", "ee", "ant", "ent"))


def _described_as(tokens: Sequence[str], i: int) -> str:
    """The noun in "<name> is a [words] <noun>" when ``i`` is where the name ends ("a market town" -> "town")."""
    if tokens[i : i + 1] not in (["is"], ["was"]) or tokens[i + 1 : i + 2] not in (["a"], ["an"]):
        return ""
    words = []
    for tok in tokens[i + 2 : i + 7]:
        if not re.fullmatch(r"[a-z][a-z-]*", tok) or tok in _PREPS or tok in _RELATIVES or tok == "and":
            break
        if words and _is_participle(tok) and tok not in _NOT_VERBS:
            break  # "a company based in ..."
        words.append(tok)
    return words[-1] if words else ""


# -- resolving references -------------------------------------------------------------------------
class _Bound(str):
    """A possessive pronoun inside a sentence ("elected Venn as its second master") with the one phrase it can
    stand for; a question keeps the pronoun when that phrase comes before it, else names the phrase."""

    owner: list[str]

    def __new__(cls, text: str, owner: list[str]) -> _Bound:
        obj = super().__new__(cls, text)
        obj.owner = owner
        return obj


_CLAUSE_WORDS = _words("and but that which who when then while")
_POSTS = _words("post position office title role seat throne crown job record prize award medal lead")
_BOUND_MARK = "\u27e8{}\u27e9"  # a pronoun a question may keep: "Who did the guild elect as ⟨its⟩ master?"
_LEADING = ("it", "its", "he", "she", "his", "her", "they", "their")
_PRONOUN_GENDER = {"he": "he", "his": "he", "him": "he", "she": "she", "her": "she"}


def _resolve(tokens: list[str], ctx: _Context) -> list[str] | None:
    """The sentence with its leading pronoun and short references replaced, and its other possessive pronouns
    bound to what they stand for; None when a leading pronoun has no clear referent."""
    out = list(tokens)
    start = _front(out)[0]  # a fronted adjunct ("In 1802, it was ...") puts the pronoun later
    first = out[start].lower() if start < len(out) else ""
    if first in _LEADING:
        following = out[start + 1].lower() if start + 1 < len(out) else ""
        referent = _referent(first, ctx, following)
        if referent is None:
            return None
        if first in _PRONOUN_GENDER:
            ctx.gender[tuple(referent)] = _PRONOUN_GENDER[first]
        if first in _POSSESSIVES:  # "Its spire" -> "the spire of the church of St. Ebba"
            replacement, end = _owned(referent, out, start + 1)
        else:
            replacement, end = list(referent), start + 1
        out[start:end] = replacement
        if start and out[start - 1] != ",":
            out.insert(start, ",")  # "At its peak it employed ..." -> "At its peak, the company employed ..."
    out = _short_references(out, ctx)
    # "Tolliver" -> "Maren Tolliver"
    for s, e in reversed(_name_spans(out, sentence_start=False)):
        nxt = out[e] if e < len(out) else ""
        as_subject = nxt == "'s" or nxt in _BE or nxt in _HAVE or nxt in _MODALS or _verbish(nxt)
        if e - s == 1 and (as_subject or (s > 0 and out[s - 1] == "by")):  # not "known as Brisk"
            full = ctx.expand(out[s:e])
            after_noun = s > 0 and out[s - 1].islower() and out[s - 1] not in _PREPS | _CLAUSE_WORDS
            if full and not (s > 0 and _cap(out[s - 1])) and not after_noun:  # not "the river Wend"
                out[s:e] = full
    title = any(tuple(out[: len(t)]) == t for t in ctx.titles)  # "The Patient Flame was ...": keeps its "The"
    if (_cap(out[0]) and out[0].lower() in _DETERMINERS and not title) or (
        out[0][:1].isupper() and out[0].lower() in ctx.lower_words and not any(out[0] in n for n in ctx.names)
    ):
        out[0] = out[0].lower()
    return _bind_possessives(out, ctx)


def _owned(owner: list[str], tokens: list[str], j: int) -> tuple[list[str], int]:
    """What ``owner`` has, for the words from ``j`` on: "the spire of the church of St. Ebba" when the owner
    holds "of" already, else "<owner>'s"; and where the replaced words end."""
    end = j
    while end < len(tokens) and not _boundary(tokens, end) and tokens[end] != "of":
        end += 1
    if "of" in owner and not _is_name(owner) and end > j:
        return ["the", *tokens[j:end], "of", *owner], end
    return [*owner, "'s"], j


def _short_references(out: list[str], ctx: _Context) -> list[str]:
    """ "the guild" -> "the Tidewater Guild", "the town" -> "Velmora", "the festival" -> "the Night of Small Suns"
    (a bare "the <noun>" the document has said one thing for); "the guild hall" -> "the hall of the Tidewater
    Guild", "the town hall" -> "the town hall of Velmora"."""
    i = 0
    while i < len(out) - 1:
        nxt = out[i + 1]
        if out[i].lower() != "the" or not re.fullmatch(r"[a-z][a-z-]*", nxt) or nxt in _DETERMINERS:
            i += 1
            continue
        if _boundary(out, i + 2):
            named = ctx.lookup(nxt)
            if named:
                if out[i + 2 : i + 3] == ["'s"] and "of" in named:  # "the church's tower"
                    replacement, end = _owned(named, out, i + 3)
                    if end > i + 3:
                        out[i:end] = replacement
                        i += len(replacement)
                        continue
                out[i : i + 2] = named
                i += len(named)
                continue
        elif _compound(out, i + 2):
            named = ctx.lookup(nxt)
            if named and not ctx.is_person(named):
                noun = out[i + 2]
                replacement = ["the", nxt, noun, "of", *named] if nxt in _PLACE_TYPES else ["the", noun, "of", *named]
                out[i : i + 3] = replacement
                i += len(replacement)
                continue
        i += 1
    return out


def _compound(out: list[str], j: int) -> bool:
    """Whether ``out[j]`` is the second noun of "the guild hall" (not "the guild elected", "the firm specialises")."""
    if j >= len(out) or not re.fullmatch(r"[a-z][a-z-]*", out[j]) or _boundary(out, j) or out[j] in _DETERMINERS:
        return False
    if not _boundary(out, j + 1) or out[j + 1 : j + 2] == ["'s"]:
        return False
    after = out[j + 1] if j + 1 < len(out) else ""
    if out[j].endswith("s") and not (after in _BE or after in _HAVE or after in _MODALS or _verbish(after)):
        return False  # "the firm specialises in ...": a verb the lists do not know
    return not out[j].endswith(("ly", "ing")) and out[j] not in _ADVERBS


def _bind_possessives(out: list[str], ctx: _Context) -> list[str]:
    """Each "its" / "his" / "her" / "their" after the sentence's start, and each "it" after a verb or a
    preposition, bound to the one phrase before it that it can stand for ("the guild elected Venn as its master":
    the guild; "The first master of the guild was Maren Tolliver, who led it": the guild); left alone when
    there are two."""
    for k in range(1, len(out)):
        pronoun = out[k]
        nxt = out[k + 1] if k + 1 < len(out) else ""
        if isinstance(pronoun, _Bound):
            continue
        if pronoun == "it":
            prev = out[k - 1]
            if not (prev in _PREPS or (_verbish(prev) and prev not in _BE)):
                continue
            if any(isinstance(t, _Bound) or t in _POSTS for t in out[:k]):
                continue  # "elected by the guild as its master ... and held it": the post, not the guild
            kind = "thing"
        elif pronoun in _POSSESSIVES:
            if not re.match(r"\w", nxt) or nxt in _PREPS or nxt in _DETERMINERS or nxt == "and":
                continue  # "named after her": an object pronoun
            kind = _POSSESSIVES[pronoun]
        else:
            continue
        found = _candidates(out[:k], ctx, kind)
        if pronoun == "its" and not found and any(ctx.is_person(p) for p in _persons_in(out[:k], ctx)):
            found = ctx.prev_orgs  # "She became its first president": the society the last sentence named
        if len({tuple(f) for f in found}) != 1:
            continue
        owner = found[0]
        if kind == "person" and ctx.gender.get(tuple(owner)) not in (None, _PRONOUN_GENDER[pronoun]):
            continue
        out[k] = _Bound(pronoun, owner)
    return out


def _persons_in(tokens: list[str], ctx: _Context) -> list[list[str]]:
    out = []
    for s, e in _name_spans(tokens, sentence_start=False):
        name = tokens[s:e]
        if ctx.is_person(name):
            out.append(ctx.expand(name) or name if len(name) == 1 else name)
    return out


def _candidates(tokens: list[str], ctx: _Context, kind: str) -> list[list[str]]:
    """The phrases in ``tokens`` a pronoun of ``kind`` ("person", "thing", "plural") could stand for."""
    if kind == "person":
        return _persons_in(tokens, ctx)
    found: list[list[str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        opens = tok.lower() in ("the", "a", "an") or (_cap(tok) and re.match(r"[^\W\d]", tok))
        if isinstance(tok, _Bound) or not opens or tok.lower() in _PREPS | _PRONOUNS | _SUBORDINATORS:
            i += 1
            continue
        j = i + 1
        while j < len(tokens) and (not _boundary(tokens, j) or tokens[j] in _ADVERBS - {"also", "still"}):
            j += 1
        np = tokens[i:j]
        i = j
        if len(np) == 1 and not _cap(np[0]):
            continue
        if _date(np) or _number_phrase(np):
            continue
        parts = [np]
        if "of" in np and _head_noun(np) in _PERSON_NOUNS:  # "the first master of the guild": the guild
            parts = [np[np.index("of") + 1 :]]
        elif "'s" in np:  # "the guild's workshop": the guild, or the workshop
            parts = [np[: np.index("'s")], ["the", *np[np.index("'s") + 1 :]]]
            if _head_noun(np) in _PERSON_NOUNS:
                parts = parts[:1]
        for part in parts:
            person = ctx.is_person(part) or (len(part) == 1 and bool(_persons_in(part, ctx)))
            if part and not person and not _date(part) and (kind == "plural") == _is_plural(part):
                found.append(["the", *part[1:]] if part[0].lower() in ("a", "an") else part)
    return found


def _boundary(tokens: list[str], i: int) -> bool:
    if i >= len(tokens):
        return True
    t = tokens[i]
    if t == "of":
        return False  # "the port of Velmora" names its place itself
    return (
        not re.match(r"\w", t)
        or t == "'s"
        or t in _PREPS
        or t in _BE
        or t in _HAVE
        or t in _MODALS
        or t in _RELATIVES
        or t == "and"
        or _verbish(t)
        or t in _ADVERBS
    )


def _referent(pronoun: str, ctx: _Context, following: str = "") -> list[str] | None:
    """What a leading pronoun stands for, from the previous sentence; None when that is not clear.

    "He" / "She": the one person the last sentences named (one of two when the other is known to be of the other
    gender, or the document's main person when the other's gender is unknown). "They": a plural subject. "It":
    the previous subject when that is a singular thing and the sentence named no other thing it could be ("The
    guild built a lighthouse. It ...": the guild or the lighthouse?), the name a copula gave it ("Her discovery
    is an orchid called the Tessel Star. It ..."), or the one thing a person's sentence named. "Its" after
    "the guild's emblem": the guild for what a guild has ("Its motto"), else the emblem ("Its wings").
    """
    if pronoun in _PRONOUN_GENDER:
        return ctx.person_for(_PRONOUN_GENDER[pronoun])
    prev = ctx.prev_subject
    if pronoun in ("they", "their"):
        return prev if prev and _is_plural(prev) else None
    if prev is None:
        return (ctx.passage_topic or ctx.topic) if ctx.passage_start else None
    if ctx.is_person(prev):
        things = list({tuple(t): t for t in ctx.prev_things}.values())
        if len(things) != 1:
            return None
        named = _named_np(things[0])  # "Anna wrote a novel called The Grey Shore. It ...": The Grey Shore
        thing = named[1] if named else things[0]
        return ["the", *thing[1:]] if thing[0] in ("a", "an") else thing  # "Maren designed the lantern. It ..."
    if _is_plural(prev) or ctx.prev_rival:
        return None
    owner = _owner(prev)
    if _head_noun(prev) in _PERSON_NOUNS:  # "The company's founder was X. It grew ...": the company
        return owner if pronoun == "its" or owner else None
    if pronoun == "it" and ctx.prev_named:
        return ctx.prev_named
    if pronoun == "its" and owner and following in _ATTRIBUTES | _ROLES:
        return owner
    return ["the", *prev[1:]] if prev[0] in ("a", "an") else prev  # "A bridge ... It" -> "the bridge"


def _owner(np: list[str]) -> list[str] | None:
    """The owner in "the guild's emblem" / "the emblem of the guild" (not in "the church of St. Ebba", which
    names the church)."""
    if "'s" in np:
        return np[: np.index("'s")] or None
    if np[:1] == ["the"] and "of" in np:
        rest = np[np.index("of") + 1 :]
        return rest if rest[:1] == ["the"] else None
    return None


# -- clauses --------------------------------------------------------------------------------------
@dataclass
class _Clause:
    subject: list[str]
    kind: str  # "passive" | "active" | "copula"
    tense: str  # "past" | "present"
    plural: bool
    aux: list[str] = field(default_factory=list)  # "was"; "has", "been"; [] for a simple active verb
    adverbs: list[str] = field(default_factory=list)  # kept in questions: "was first held"
    verb: str = ""  # participle (passive), the verb as written (active), "" (copula)
    particle: str = ""  # "set up"
    head: list[str] = field(default_factory=list)  # object / complement / name, up to its first preposition
    full: list[str] = field(default_factory=list)  # the same with its prepositional phrases
    pps: list[tuple[str, list[str]]] = field(default_factory=list)
    cut: str = ""  # the word where the phrase goes on in a way not parsed ("the first woman to win it"): incomplete
    category: str = ""  # what the object is, from its apposition: "the Night of Small Suns, a festival ..."

    @property
    def be(self) -> str:
        if self.kind in ("passive", "copula") and self.aux and self.aux[0] in _BE:
            return self.aux[0]
        return ("were" if self.plural else "was") if self.tense == "past" else ("are" if self.plural else "is")


def _front(tokens: list[str]) -> tuple[int, list[tuple[str, list[str]]], list[str]]:
    """Where the clause starts after a fronted adjunct; the adjunct when it is a prepositional phrase, to be
    attached to the clause ("In 1802, ...", "In 1845 Venn opened ...", "At the age of fourteen she ..."); and a
    fronted participle phrase ("Born in Kessa, she ..."), which states a fact of its own."""
    if len(tokens) < 3:
        return 0, [], []
    first = tokens[0].lower()
    comma = tokens.index(",") if "," in tokens[:15] else None
    if comma and first in _SUBORDINATORS and (first not in _PREPS or _find_verb(tokens[:comma]) is not None):
        return comma + 1, [], []  # a subordinate clause: "When she was twenty, ...", "After it burned, ..."
    if comma and _find_verb(tokens[:comma]) is None:
        if first in _PREPS:
            return comma + 1, [(first, tokens[1:comma])], []
        if _is_participle(first):
            return comma + 1, [], [first, *tokens[1:comma]]
        if first in _FRONT_WORDS or tokens[comma - 1] in ("later", "earlier", "ago", "afterwards"):
            return comma + 1, [], []
    if first in _PREPS and first not in _NOT_FRONTED_PREPS:  # no comma: find where the phrase ends
        for k in range(min(len(tokens) - 1, 7), 1, -1):
            if _date(tokens[1:k]):
                return k, [(first, tokens[1:k])], []
        if [t.lower() for t in tokens[1:4]] == ["the", "age", "of"] and _is_number(tokens[4]):
            return 5, [(first, tokens[1:5])], []
        pronoun = next((i for i, t in enumerate(tokens[:9]) if t.lower() in _SUBJECT_PRONOUNS), None)
        if pronoun and pronoun > 1:  # "On Tessel she ...", "At its peak it ..."
            phrase = tokens[1:pronoun]
            plain = not any(t.lower() in _PRONOUNS for t in phrase) and _find_verb(phrase) is None
            return pronoun, ([(first, phrase)] if plain else []), []
        for j in range(2, min(len(tokens) - 1, 8)):  # "During the civil war the town was ...": a new noun phrase
            prev = tokens[j - 1]
            opens = tokens[j] in ("the", "a", "an") or (_cap(tokens[j]) and not _cap(prev))
            if opens and prev not in _CONJUNCTIONS and _find_verb(tokens[j:]) and _find_verb(tokens[:j]) is None:
                return j, [(first, tokens[1:j])], []
    if first in _FRONT_WORDS or (first == "there" and (tokens[1].lower() in _SUBJECT_PRONOUNS or _cap(tokens[1]))):
        return 1, [], []  # "Later she ...", "There she built ..." (not "There is ...")
    if first in ("every", "each") and tokens[1].lower() in _SEASONS | _TIME_UNITS:
        return 2, [("every", [tokens[1].lower()])], []  # "Every autumn the guild holds ...": how often
    return 0, [], []


def _verb_candidate(tokens: list[str], i: int) -> bool:
    tok = tokens[i]
    if not tok.islower() or not re.match(r"[a-z]", tok):
        return False
    prev = next((t for t in reversed(tokens[:i]) if not (t.endswith("ly") or t in _ADVERBS)), "")
    if prev.lower() in _DETERMINERS or prev == "'s" or prev in _PREPS or _is_number(prev):
        return False  # "the newly founded guild", "312 members"
    if tok in _BE or tok in _HAVE or tok in _MODALS:
        return True
    if prev == "," and tokens[:i].count(",") % 2 == 1 and _is_participle(tok) and not _is_third_person(tok):
        return False  # "The guild, founded in 1794, is ...": a participle apposition opens at the first comma
    return _is_past(tok) or _is_third_person(tok)


def _titled(tokens: list[str]) -> bool:
    """Whether a name starts here: "The Patient Flame", "the Northern Crown"."""
    return bool(tokens) and (_cap(tokens[0]) or (tokens[0] == "the" and len(tokens) > 1 and _cap(tokens[1])))


def _find_verb(tokens: list[str], naming: bool = False) -> int | None:
    """Where the main verb is: past the verbs of a relative clause inside the subject, and past a naming participle
    ("A novel called The Grey Shore was ...") unless there is no other verb."""
    relative = False  # a relative clause inside the subject has its own verb: skip it
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in _RELATIVES and (tok != "that" or tokens[i - 1] != ","):
            relative = True
        elif not naming and tok in _NAMING and tokens[i - 1].islower() and _titled(tokens[i + 1 : i + 3]):
            later = _find_verb(tokens[i + 1 :], True)
            if later is not None:
                return i + 1 + later if not relative else _find_verb(tokens, True)
            return _find_verb(tokens, True)
        elif _verb_candidate(tokens, i):
            if not relative:
                return i
            relative = False
            while i + 1 < len(tokens) and (_is_participle(tokens[i + 1]) or tokens[i + 1] in ("been", "not")):
                i += 1
        i += 1
    return None


def _split_rest(rest: list[str]) -> tuple[list[str], list[str], list[tuple[str, list[str]]], tuple | None, str]:
    """Split what follows the verb into the head phrase, the whole phrase, its prepositional phrases, a
    tail after a comma - ("coord" | "rel" | "appos" | "part", tokens) - and whether the phrase was cut short
    by something not parsed (an infinitive, a restrictive relative clause)."""
    head: list[str] = []
    pps: list[tuple[str, list[str]]] = []
    cur = head
    i, tail, cut = 0, None, ""
    while i < len(rest):
        tok = rest[i]
        nxt = rest[i + 1] if i + 1 < len(rest) else ""
        if tok == ",":
            if nxt in _PREPS and nxt != "of":
                pps.append((nxt, []))
                cur = pps[-1][1]
                i += 2
                continue
            after = rest[i + 1 :]
            upto = after[: after.index(",")] if "," in after else after
            if nxt == "and" and _continues(after[1:]):
                tail = ("coord", after[1:])
            elif nxt in ("who", "which") and _continues(after[1:]):
                tail = ("rel", after[1:])  # "..., who led it" (not "..., which her daughters ran")
            elif _is_participle(nxt) and not _is_third_person(nxt):
                tail = ("part", upto)  # "..., named after her husband"
            elif nxt in ("a", "an", "the") or (_cap(nxt) and nxt.lower() not in _DETERMINERS | _PRONOUNS):
                tail = ("appos", upto)
            break
        if tok == "and" and cur and _continues(rest[i + 1 :]):
            tail = ("coord", rest[i + 1 :])
            break
        if tok == "than" and cur and cur[-1] in ("more", "less", "fewer") and _is_number(nxt):
            cur.append(tok)  # "more than 4,000 plant specimens"
            i += 1
            continue
        if tok in _SUBORDINATE and nxt.lower() in _SUBJECT_PRONOUNS and i + 2 < len(rest) and _continues(rest[i + 2 :]):
            upto = rest[i + 1 :]
            pps.append((tok, upto[: upto.index(",")] if "," in upto else upto))  # "before he joined the guild"
            break
        if cur is head and cur and _reduced_relative(rest, i):
            if _is_participle(tok):
                upto = rest[i:]
                tail = ("part", upto[: upto.index(",")] if "," in upto else upto)  # "a company based in ..."
            break  # "a silver heron holding a brass key": the phrase ends
        if cur is not head and cur and _reduced_relative(rest, i):
            break  # "in a book published in 1893": the date is the book's, not the clause's
        if tok in _CLAUSE_STOPS or (tok == "that" and cur) or tok in _NEGATIONS or (tok == "to" and nxt in _VERBS):
            # "the first woman to win it", "a lamp that ...": cut short where the phrase goes on; not at a dash
            cut = "" if tok in (";", ":", ")", "(", "-", "—", "–") else tok
            break
        if tok in ("every", "each") and (nxt in _SEASONS | _TIME_UNITS or nxt in _MONTHS) and i + 2 >= len(rest):
            pps.append(("every", [nxt.lower() if nxt.lower() in _SEASONS else nxt]))  # "every August": how often
            break
        if tok in _APPROX and _is_number(nxt):
            cur.append(tok)  # "around 900 lanterns": a number, not a place
            i += 1
            continue
        if tok in _PREPS and (tok != "of" or not cur):
            pps.append((tok, []))
            cur = pps[-1][1]
            i += 1
            continue
        cur.append(tok)
        i += 1
    pps = [(p, np) for p, np in pps if np]
    for k in range(len(pps) - 1, 0, -1):  # "by monks from Lisca": the place says which monks
        if pps[k - 1][0] == "by" and pps[k][0] == "from" and not _date(pps[k][1]):
            pps[k - 1 : k + 1] = [("by", [*pps[k - 1][1], "from", *pps[k][1]])]
    full = list(head)
    for prep, np in pps:
        full += [prep, *np]
    return head, full, pps, tail, cut


_SUBORDINATE = _words("before after until since when while once")


def _reduced_relative(rest: list[str], i: int) -> bool:
    """Whether ``rest[i]`` opens a participle phrase inside a noun phrase: "a company based in Drummore", "a heron
    holding a key" (not "a handbook called The Patient Flame", which names it, nor "a painting of ...")."""
    tok, prev = rest[i], rest[i - 1] if i else ""
    if not tok.islower() or not re.match(r"[a-z]", prev) or prev in _DETERMINERS or prev in _PREPS or prev == "and":
        return False
    if tok in _NAMING or tok in _NOT_VERBS or tok in _NOT_PARTICIPLES:
        return False
    nxt = rest[i + 1] if i + 1 < len(rest) else ""
    if tok.endswith("ing") and len(tok) > 4:
        return nxt in ("a", "an", "the") or _is_number(nxt) or (_cap(nxt) and nxt.lower() not in _DETERMINERS)
    return _is_participle(tok) and not _is_third_person(tok) and (nxt in _PREPS or nxt == "")


def _continues(tokens: list[str]) -> bool:
    """Whether the words after "and" / "who" start a verb phrase ("and led it", "and is housed in ...", "who
    also built ...")."""
    tok = next((t for t in tokens if not (t in _ADVERBS or (t.endswith("ly") and t.islower()))), "")
    return _verbish(tok) or tok in _BE or tok in _HAVE


def _independent_clauses(tokens: list[str]) -> list[list[str]]:
    """A sentence of clauses joined by ";" or "(,) and" / "(,) but" where each has a subject of its own
    ("The line closed in 1966 and the station is now a museum.")."""
    parts, start = [], 0
    for i, tok in enumerate(tokens):
        if tok == ";" or (tok in ("and", "but") and tokens[i - 1] != ","):
            skip = 1
        elif tok == "," and i + 1 < len(tokens) and tokens[i + 1] in ("and", "but", "while"):
            skip = 2
        else:
            continue
        right = tokens[i + skip :]
        if i <= start or not right or not (_cap(right[0]) or right[0].lower() in _DETERMINERS | _SUBJECT_PRONOUNS):
            continue
        v = _find_verb(right)
        if v is not None and 0 < v <= 8 and _find_verb(tokens[start:i]) is not None:
            parts.append(tokens[start:i])
            start = i + skip
    return [*parts, tokens[start:]] if parts else [tokens]


def _parentheticals(tokens: list[str]) -> tuple[list[str], list[list[str]]]:
    """The sentence without its parentheses; a person's life span "(1822–1889)" becomes two statements to
    parse ("Orsolya Venn was born in 1822", "Orsolya Venn died in 1889")."""
    out: list[str] = []
    extra: list[list[str]] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "(" and ")" in tokens[i:]:
            j = tokens.index(")", i)
            inner = tokens[i + 1 : j]
            spans = _name_spans(out, sentence_start=False)
            if (
                len(inner) == 3 and inner[1] in ("-", "–", "—") and all(re.fullmatch(r"\d{4}", t) for t in inner[::2])
                and spans and spans[-1][1] == len(out) and spans[-1][1] - spans[-1][0] > 1
            ):  # fmt: skip
                name = out[spans[-1][0] :]
                extra += [[*name, "was", "born", "in", inner[0]], [*name, "died", "in", inner[2]]]
            i = j + 1
            continue
        out.append(tokens[i])
        i += 1
    return out, extra


def _parse(tokens: list[str], ctx: _Context, depth: int = 0) -> list[_Clause]:
    """Clauses of one (resolved) sentence: the main one, and those of its apposition, relative clause and
    coordinated verb phrase."""
    tokens = [t for t in tokens if t not in (".", "!")]
    if not tokens or "?" in tokens or depth > 3:
        return []
    parts = _independent_clauses(tokens)
    if len(parts) > 1:
        clauses = _parse(parts[0], ctx, depth + 1)
        for part in parts[1:]:  # "..., and she moved ...": the pronoun is the first clause's subject
            if clauses and part[0].lower() in _SUBJECT_PRONOUNS:
                subject = clauses[0].subject
                person = ctx.is_person(subject)
                if (part[0].lower() in ("she", "he")) == person and part[0].lower() != "they":
                    part = [*subject, *part[1:]]
            clauses += _parse(part, ctx, depth + 1)
        return clauses
    start, fronted, participle = _front(tokens)
    tokens = tokens[start:]
    v = _find_verb(tokens)
    if v is None or tokens[0].lower() in ("there", "this", "that", "these", "those", "it", "they", "here"):
        return []
    subject = tokens[:v]
    while subject and (subject[-1].endswith("ly") or subject[-1] in _ADVERBS) and len(subject) > 1:
        subject = subject[:-1]
    subject, apposition = _split_subject(subject, ctx)
    if not subject or subject[0].lower() in _PRONOUNS:
        return []
    named_subject = _named_np(subject)
    if named_subject:  # "A ferry called the Northern Crown carries ...": the Northern Crown does
        subject = named_subject[1]
    group = _verb_group(tokens, v)
    if group is None:  # a negated or modal main verb; its relative clause still states a fact
        relative = apposition and apposition[0] in ("who", "which")
        return _parse([*subject, *apposition[1:]], ctx, depth + 1) if relative else []
    kind, aux, adverbs, verb, particle, nxt = group
    tense = (_BE.get(aux[0]) or _HAVE.get(aux[0])) if aux else ("past" if _is_past(verb) else "present")
    plural = (aux and aux[0] in ("are", "were", "have")) or _is_plural(subject)
    head, full, pps, tail, cut = _split_rest(tokens[nxt:])
    pps = _subordinate(pps, subject, ctx)
    clause = _Clause(subject, kind, tense, bool(plural), aux, adverbs, verb, particle, head, full, pps + fronted, cut)
    clauses = [clause]
    if named_subject and depth < 3:
        clauses += _parse([*named_subject[1], "is", *named_subject[0]], ctx, depth + 1)
    if participle:  # "Born in Kessa, she ..." -> "Orsolya Venn was born in Kessa"
        clauses += _parse([*clause.subject, "is" if participle[0] in _LOCATED else "was", *participle], ctx, depth + 1)
    if apposition:
        clauses += _apposition_clauses(subject, apposition, clause, ctx, depth)
    if tail:
        clauses += _tail_clauses(clause, tail, ctx, depth, pps[-1][1] if pps else head)
    be = "was" if tense == "past" and kind == "copula" else "is"
    for np in [head, *(np for _, np in pps)]:
        named = _named_np(np)
        if named and depth < 3:  # "a handbook called The Patient Flame": The Patient Flame is a handbook
            clauses += _parse([*named[1], be, *named[0]], ctx, depth + 1)
        described = _described_person(np, ctx)
        if described and depth < 3:  # "the surveyor Hugo Marlowe": Hugo Marlowe was a surveyor
            clauses += _parse([*described[1], "was" if tense == "past" else "is", *described[0]], ctx, depth + 1)
    return clauses


def _described_person(np: list[str], ctx: _Context) -> tuple[list[str], list[str]] | None:
    """ "the surveyor Hugo Marlowe" -> (["a", "surveyor"], ["Hugo", "Marlowe"]); "his son Arthur Brackwell" ->
    (["his", "son"], ...): a person named after what they are."""
    spans = _name_spans(np, sentence_start=False)
    if not spans or spans[-1][1] != len(np) or spans[-1][0] < 2 or not ctx.is_person(np[spans[-1][0] :]):
        return None
    start = spans[-1][0]
    desc, name = np[:start], np[start:]
    if not all(re.fullmatch(r"[a-z][a-z-]*", t) or t == "'s" or isinstance(t, _Bound) for t in desc[1:]):
        return None
    noun = desc[-1]
    if not (_is_occupation(noun) or noun in _PERSON_NOUNS) or desc[0].lower() in ("a", "an"):
        return None
    if desc[0].lower() == "the":  # "the surveyor": a surveyor
        desc = ["an" if desc[1][0] in "aeiou" else "a", *desc[1:]]
    return desc, name


def _subordinate(pps: list[tuple[str, list[str]]], subject: list[str], ctx: _Context) -> list[tuple[str, list[str]]]:
    """ "before he joined the guild" (he: the subject) -> "before joining the guild"; a clause whose pronoun may
    be someone else's, or that a gerund cannot say ("when he was twenty"), is dropped."""
    out = []
    for prep, np in pps:
        if prep not in _SUBORDINATE or not np or np[0].lower() not in _SUBJECT_PRONOUNS:
            out.append((prep, np))
            continue
        pronoun = np[0].lower()
        kind = "person" if ctx.is_person(subject) else "plural" if _is_plural(subject) else "thing"
        fits = {"he": "person", "she": "person", "it": "thing", "they": "plural"}[pronoun] == kind
        rest = [t for t in np[1:] if t not in _ADVERBS]
        if fits and rest and prep in ("before", "after", "since", "while") and (_verbish(rest[0]) or rest[0] in _BE):
            verb = "be" if rest[0] in _BE else _base(rest[0])
            out.append((prep, [_gerund(verb), *rest[1:]]))
    return out


def _split_subject(subject: list[str], ctx: _Context) -> tuple[list[str], list[str] | None]:
    """Subject and apposition: "Ilsa Brandt, an engineer, designed" -> (Ilsa Brandt, an engineer). One comma
    only means a fronted adjunct ("Two years later, the guild ...")."""
    commas = [i for i, t in enumerate(subject) if t == ","]
    if not commas:
        return subject, None
    if len(commas) == 1:
        return subject[commas[0] + 1 :], None
    head, apposition = subject[: commas[0]], subject[commas[0] + 1 : commas[1]]
    return head, apposition


def _verb_group(tokens: list[str], v: int) -> tuple | None:
    """(kind, aux, kept adverbs, verb, particle, index after the group); None for negated or modal verbs."""
    tok, j = tokens[v], v + 1
    if tok in _MODALS:
        return None
    adverbs: list[str] = []

    def skip_adverbs(k: int) -> int:
        while k < len(tokens) and (tokens[k] in _ADVERBS or (tokens[k].endswith("ly") and tokens[k].islower())):
            if tokens[k] in _KEEP_ADVERBS:
                adverbs.append(tokens[k])
            k += 1
        return k

    j = skip_adverbs(j)
    if j < len(tokens) and tokens[j] in _NEGATIONS:
        return None
    nxt = tokens[j] if j < len(tokens) else ""
    if tok in _BE or tok in _HAVE:
        aux = [tok]
        if tok in _HAVE and nxt == "been":
            aux.append("been")
            j = skip_adverbs(j + 1)
            nxt = tokens[j] if j < len(tokens) else ""
            if not _is_participle(nxt):
                return None  # "has been the home of ...": the perfect copula reads badly as a question
        if _is_participle(nxt) and (tok in _BE or aux[-1] == "been"):
            return "passive", aux, adverbs, nxt, "", j + 1
        if tok in _HAVE and _is_participle(nxt) and nxt not in ("had",):
            return "active", aux, adverbs, nxt, _particle(tokens, j), j + 1 + bool(_particle(tokens, j))
        if tok in _BE:
            return "copula", aux, adverbs, "", "", j
        return "active", [], adverbs, tok, "", j
    particle = _particle(tokens, v)
    return "active", [], adverbs, tok, particle, (j + 1 if particle else j)


def _particle(tokens: list[str], v: int) -> str:
    if v + 1 < len(tokens) and f"{_base(tokens[v])} {tokens[v + 1]}" in _PHRASAL:
        return tokens[v + 1]
    return ""


def _apposition_clauses(subject, apposition, main: _Clause, ctx: _Context, depth: int) -> list[_Clause]:
    first = apposition[0]
    if first in ("who", "which"):
        return _parse([*subject, *apposition[1:]], ctx, depth + 1)
    if _is_participle(first):  # "The guild, founded in 1794, ...", "The guild, based in Velmora, ..."
        return _parse([*subject, "is" if first in _LOCATED else "was", *apposition], ctx, depth + 1)
    be = "was" if main.tense == "past" else "is"
    if _is_name(apposition) and not _is_name(subject):
        # "Her daughter, Ilse Tolliver, became ...": the name is the main clause's subject, and the daughter
        main.subject = apposition
        return _parse([*subject, be, *apposition], ctx, depth + 1)
    if first.lower() in ("a", "an", "the") or "'s" in apposition:
        return _parse([*subject, be, *apposition], ctx, depth + 1)
    return []


def _tail_clauses(main: _Clause, tail: tuple, ctx: _Context, depth: int, target: list[str]) -> list[_Clause]:
    """Clauses of what follows the verb's phrase: a coordinated verb phrase (the subject's), a relative clause,
    participle or apposition (the last noun phrase's, ``target``, when that is unambiguous)."""
    kind, toks = tail
    if not toks:
        return []
    if kind == "coord":
        # "founded the guild and led it": "it" is the first verb's object
        it = main.head if main.head and not ctx.is_person(main.head) else None
        verb = next((t for t in toks if t not in _ADVERBS), "")
        active = _base(verb) in _NO_PASSIVE | _AS_VERBS | _MOTION or (
            verb in _IRREGULAR_PAST and verb not in _IRREGULAR_PP
        )
        prefix = main.subject + (main.aux if main.kind == "passive" and not active else [])
        return [_replace_it(c, it) for c in _parse([*prefix, *toks], ctx, depth + 1)]
    if kind == "part" and target is main.head and main.kind == "copula" and main.head[:1] in (["a"], ["an"]):
        target = main.subject  # "X is a company based in Drummore": X is based in Drummore
    elif target is not main.head and not (ctx.is_person(target) or _name_spans(target, sentence_start=False)):
        return []
    if not target:
        return []
    if kind == "rel":
        return _parse([*target, *toks], ctx, depth + 1)
    if kind == "part":
        return _parse([*target, "is" if toks[0] in _LOCATED else "was", *toks], ctx, depth + 1)
    be = "was" if main.tense == "past" else "is"
    clauses = _parse([*target, be, *toks], ctx, depth + 1)
    if target is main.head and _is_name(target) and toks[0] in ("a", "an"):  # "the Night of Small Suns, a festival"
        words = []
        for tok in toks[1:]:
            if not re.fullmatch(r"[a-z][a-z-]*", tok) or tok in _PREPS or tok in _RELATIVES or tok == "and":
                break
            words.append(tok)
        main.category = _category(words)
        rel = next((i for i, t in enumerate(toks) if t in ("that", "which", "who")), None)
        if rel and _continues(toks[rel + 1 :]):  # "a horse fair that dates from 1402"
            clauses += _parse([*target, *toks[rel + 1 :]], ctx, depth + 1)
    return clauses


def _replace_it(c: _Clause, it: list[str] | None) -> _Clause:
    if it and c.head[:1] == ["it"] and len(c.head) == 1:
        c.head, c.full = list(it), [*it, *c.full[1:]]
    return c


# -- what a sentence leaves for the next ----------------------------------------------------------
def _remember_sentence(ctx: _Context, tokens: list[str], clauses: list[_Clause], persons: list[list[str]]) -> None:
    """Update what the next sentences may refer to: its persons, subject, things, names; the descriptions it
    gave ("Harrowgate is a market town", "a handbook called The Patient Flame", "the Night of Small Suns, a
    festival ...", "the guild's largest workshop"); the genders its roles tell ("Her father, Samuel Varden")."""
    if persons:
        ctx.prev_persons = persons  # a sentence naming no one leaves "she" as it was
    ctx.passage_start = False
    main = clauses[0] if clauses else None
    ctx.prev_subject = main.subject if main else None
    ctx.prev_things = [c.head for c in clauses if c.kind == "active" and c.head and not ctx.is_person(c.head)]
    ctx.prev_named, ctx.prev_rival = None, False
    if main:
        if ctx.topic_person is None and ctx.is_person(main.subject) and len(main.subject) > 1:
            ctx.topic_person = main.subject
        if _is_name(main.subject) and not ctx.is_person(main.subject):
            ctx.passage_topic = ctx.passage_topic or main.subject
            ctx.topic = ctx.topic or main.subject
        named = _named_np(main.head)
        if main.kind == "copula" or (main.kind == "passive" and main.verb in _NAMING):
            if named and not ctx.is_person(named[1]):
                ctx.prev_named = named[1]
            elif _is_name(main.head) and main.head == main.full and not ctx.is_person(main.head):
                ctx.prev_named = main.head
        ctx.prev_rival = _rival(main, ctx)
    ctx.prev_orgs = []
    for s, e in _name_spans(tokens, sentence_start=False):
        name = ["the", *tokens[s:e]] if s and tokens[s - 1].lower() == "the" else tokens[s:e]
        known = not ctx.is_person(tokens[s:e]) and join_tokens(tokens[s:e]) not in ctx.places and not _date(name)
        if known and (any(t in _NAME_WORDS for t in name) or tuple(tokens[s:e]) in ctx.things):
            ctx.prev_orgs.append(name)  # "the Dunmere Botanical Society", for "She became its president"
    for c in clauses:
        _learn(c, ctx)
    for i in range(len(tokens) - 2):  # "the river Wend", "the church of St. Alder"
        if tokens[i].lower() == "the" and re.fullmatch(r"[a-z]+", tokens[i + 1]) and tokens[i + 1] not in _PLACE_TYPES:
            j = i + 3 if tokens[i + 2] == "of" else i + 2
            spans = [sp for sp in _name_spans(tokens, sentence_start=False) if sp[0] == j]
            if spans and not ctx.is_person(tokens[j : spans[0][1]]):
                ctx.describe(tokens[i + 1], tokens[i : spans[0][1]])


def _rival(c: _Clause, ctx: _Context) -> bool:
    """Whether a clause brings in a second singular thing besides its subject, which a next "It" could be as well
    ("The guild built a lighthouse.", "The river is crossed by a bridge called the Wend Bridge."); a thing
    already known ("The company was bought by the Kessler Group.") leaves "It" the subject's."""
    if c.kind == "active" and c.head and c.head != ["it"] and not _number_phrase(c.head):
        np = c.head
    elif c.kind == "passive":
        np = next((np for p, np in c.pps if p == "by" and np and not _date(np) and not np[0].endswith("ing")), [])
    else:
        return False
    if not np or np[0].lower() not in ("a", "an") or _head_noun(np) in _ATTRIBUTES or ctx.is_person(np):
        return False
    return not _is_plural(np) and not ctx.wants_who(np)


def _learn(c: _Clause, ctx: _Context) -> None:
    """Descriptions and genders one clause gives."""
    subject, head = c.subject, c.head
    named = _named_np(head)
    person = ctx.is_person(subject)
    if c.kind == "copula" and head:
        if _is_name(subject) and not person and head[0] in ("a", "an", "the") and "'s" not in head:
            ctx.describe(_category(head), subject)  # "Brackwell Shipbuilding is a shipbuilding company"
        target = named[1] if named else head if _is_name(head) and not ctx.is_person(head) else None
        if target and not _is_name(subject):  # "Its largest ship is a ferry called the Northern Crown"
            ctx.describe(_head_noun(subject), target)
        noun = _head_noun(head)
        if person and noun in _GENDER:  # "Samuel Varden was Edith Varden's father"
            ctx.gender.setdefault(tuple(subject), _GENDER[noun])
        noun = _head_noun(subject)
        if ctx.is_person(head) and noun in _GENDER and "'s" in subject:
            ctx.gender.setdefault(tuple(head), _GENDER[noun])
    if c.kind == "passive" and c.verb in _NAMING and head and not _is_name(subject) and _is_name(head):
        ctx.describe(_head_noun(subject), head)  # "The local football club is called Harrowgate Rovers"
        if _thing_noun(_head_noun(subject)):
            ctx.things.add(tuple(head[1:] if head[0] == "the" else head))
    for np in [head, *(np for _, np in c.pps)]:
        found = _named_np(np)
        if found and not ctx.is_person(found[1]):
            ctx.describe(_category(found[0]), found[1])  # "a handbook called The Patient Flame"
            if found[1][0] == "The":
                ctx.titles.add(tuple(found[1]))
    if c.category and _is_name(head):
        ctx.describe(c.category, head)  # "the Night of Small Suns, a festival ..."
    if not person and subject[:1] != ["a"] and "'s" in subject:  # "the guild's largest workshop"
        i = subject.index("'s")
        words = subject[i + 1 :]
        if words and all(re.fullmatch(r"[a-z][a-z-]*", t) for t in words):
            ctx.describe(words[-1], ["the", *words, "of", *subject[:i]])
    elif not person and subject[:1] == ["the"] and _owner(subject):  # "the motto of the guild"
        ctx.describe(_head_noun(subject), subject)
