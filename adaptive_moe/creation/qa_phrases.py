"""Noun phrases, what a document has said so far (names, persons, places, descriptions), and where a
clause's verb and start are: the second step of the shallow parse behind :mod:`adaptive_moe.creation.qa_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .qa_words import (
    _ADVERBS,
    _APPROX,
    _BE,
    _COLOURS,
    _CONJUNCTIONS,
    _DETERMINERS,
    _FRONT_WORDS,
    _GROUPS,
    _HAVE,
    _MODALS,
    _MONTH_RE,
    _NAME_WORDS,
    _NAMING,
    _NOT_FRONTED_PREPS,
    _NOT_VERBS,
    _OCCUPATION_SUFFIXES,
    _OCCUPATIONS,
    _PERSON_NOUNS,
    _PLACE_NOUNS,
    _PLACE_TYPES,
    _PREPS,
    _PRONOUNS,
    _RELATIVES,
    _ROLES,
    _SEASONS,
    _SUBJECT_PRONOUNS,
    _SUBORDINATORS,
    _THING_NOUNS,
    _TIME_UNITS,
    _TITLE_NOUNS,
    _TITLES,
    _cap,
    _is_number,
    _is_participle,
    _is_past,
    _is_third_person,
    _s_ending,
    join_tokens,
    tokenize,
)


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


# -- where a clause starts and where its verb is --------------------------------------------------------
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
