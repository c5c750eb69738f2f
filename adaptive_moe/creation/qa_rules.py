"""Rule-based facts and questions from declarative English sentences.

A small base model (SmolLM2-135M) writes poor questions, and a LoRA expert learns a fact best from several
short question-answer pairs in varied wordings with the loss on a short answer. So the questions come from
rules that must work on their own: no tagger, no parser, no model, only word lists
(``adaptive_moe/data/qa_patterns.json``) and a shallow parse that is right on the sentences documents are
mostly made of.

Per sentence:

1. tokens: abbreviations ("Dr."), initials ("J."), numbers ("4,200", "3.5") and the possessive "'s" kept as
   tokens of their own; quotes and emphasis marks dropped.
2. references resolved from what came before, so that every question stands on its own: a leading "It" / "Its"
   is the previous sentence's subject (or the passage's topic), "She" / "He" the one person the previous
   sentence named, "the guild" the one name headed by "Guild" ("the Tidewater Guild"), "the town" the one place
   known as a town, "Tolliver" the one person of that surname.
3. a shallow parse into clauses: a fronted adjunct ("In 1802, ..."), the subject and its apposition
   ("Ilsa Brandt, an engineer from Corrin, ..."), the verb group (passive, active or copula), the object or
   complement, a chain of prepositional phrases, and what follows a comma (a coordinated verb phrase, a
   relative clause or an apposition, each parsed as a clause of its own).
4. shape rules turn a clause into facts, each with several question wordings paired with the short answer and
   a few declarative restatements: agent / date / place / duration of a passive, copula definitions in both
   directions ("the Y of Z" <-> "Z's Y"), active verbs (what did S do, who did it), counts ("How many members
   does ... have?"), names ("What is ... called?") and locations ("Where is ... located?").

A question is kept only when it is self-contained (no unresolved pronoun) and does not contain its answer, and
an answer only when it has at most ``MAX_ANSWER_WORDS`` words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources

from .scoring import normalize_answer

__all__ = ["MAX_ANSWER_WORDS", "Fact", "SentenceFacts", "extract_facts", "join_tokens", "tokenize"]

MAX_ANSWER_WORDS = 6

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
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class SentenceFacts:
    """A sentence as written, the same sentence with its references resolved, and the facts it states."""

    text: str
    resolved: str
    facts: tuple[Fact, ...] = ()


# -- tokens ---------------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Word and punctuation tokens; "'s" is a token of its own, quotes and emphasis marks are dropped."""
    return _TOKEN.findall(text.replace("’", "'").replace("‘", "'"))


def join_tokens(tokens: Sequence[str]) -> str:
    out = ""
    for tok in tokens:
        if not out or out.endswith(("(", "£", "$", "€")) or tok in _NO_SPACE_BEFORE:
            out += tok
        else:
            out += " " + tok
    return out


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


def _possessive(np: str) -> str:
    """ "the guild" -> "the guild's"; a plural common noun gets a bare apostrophe ("the members'")."""
    last = np.split()[-1] if np.split() else np
    if len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is")):
        return np + "'"
    return np + "'s"


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
        if head and owner and "of" not in owner and len(owner) <= 4 and all(t.islower() for t in head):
            if owner[0] in ("a", "an") or any(t in _PREPS for t in owner):
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
    return head.endswith("s") and not head.endswith(("ss", "us", "is", "ics", "news")) and not _cap(head)


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

    def is_person(self, np: Sequence[str]) -> bool:
        """A person's name: capitalised words (a title allowed), none of them a place or organisation word."""
        np = [t for t in np if t not in ("'s",)]
        if not np or np[0].lower() in _DETERMINERS:
            return False
        if np[0] in _TITLES and len(np) > 1:
            return all(_cap(t) for t in np[1:])
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
        spans = _name_spans(np, sentence_start=False)
        if spans and spans[-1][1] == len(np) and self.is_person(np[spans[-1][0] :]):
            return True  # "the stonemason Petr Halloran"
        return _head_noun(np) in (_ROLES | _GROUPS if groups else _ROLES)

    def remember(self, tokens: list[str]) -> list[list[str]]:
        """Record the names in a sentence; returns the persons named."""
        persons = []
        for start, end in _name_spans(tokens):
            name = tokens[start:end]
            if start > 0 and tokens[start - 1].lower() == "the":
                if name not in self.names:
                    self.names.append(name)  # "the Tidewater Guild", "The Long Watch": never a person
                self.things.add(tuple(name))
                continue
            if name not in self.names:
                self.names.append(name)
            if self.is_person(name) and (len(name) > 1 or name[0] in _TITLES):
                if name not in self.persons:
                    self.persons.append(name)
                persons.append(name)
            elif len(name) == 1 and self.is_person(name):
                persons.append(self.expand(name) or name)
        return persons

    def expand(self, name: list[str]) -> list[str] | None:
        """The one known full name a single surname or first name stands for ("Tolliver" -> "Maren Tolliver")."""
        hits = [p for p in self.persons if len(p) > 1 and name[0] in (p[-1], p[0] if p[0] not in _TITLES else "")]
        return hits[0] if len({tuple(h) for h in hits}) == 1 else None

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


def _survey(sentences: Sequence[str]) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """A first pass over the document: words seen in lower case, names used as places, types of places."""
    lower, places, types = set(), set(), {}
    for sentence in sentences:
        toks = tokenize(sentence)
        lower.update(t for t in toks[1:] if t.islower())
        text = join_tokens(toks)
        for m in re.finditer(r"\bthe (?:[a-z-]+ )?([a-z]+) of ((?:[A-Z][\w-]+ ?)+)", text):
            if m.group(1) in _PLACE_TYPES:
                types.setdefault(m.group(2).strip(), set()).add(m.group(1))
                places.add(m.group(2).strip())
        for m in re.finditer(r"((?:[A-Z][\w-]+ ?)+) (?:is|was) an? (?:[a-z-]+ ){0,2}([a-z]+)\b", text):
            if m.group(2) in _PLACE_TYPES:
                types.setdefault(m.group(1).strip(), set()).add(m.group(2))
                places.add(m.group(1).strip())
        for start, end in _name_spans(toks, sentence_start=False):  # "born in Halvik", not "in Keel's shop"
            if start > 0 and toks[start - 1] in ("in", "at", "near") and toks[end : end + 1] != ["'s"]:
                places.add(join_tokens(toks[start:end]))
    for name in list(places):  # "The Tidewater Guild" after "to" is not a place; a person never is
        if name.split()[0] in ("The", "A", "An"):
            places.discard(name)
    return lower, places, types


# -- resolving references -------------------------------------------------------------------------
def _resolve(tokens: list[str], ctx: _Context) -> list[str] | None:
    """The sentence with its leading pronoun and short references replaced; None when a leading pronoun
    has no clear referent."""
    out = list(tokens)
    start = _front(out)[0]  # a fronted adjunct ("In 1802, it was ...") puts the pronoun later
    first = out[start].lower() if start < len(out) else ""
    if first in ("it", "its", "he", "she", "his", "her", "they", "their"):
        referent = _referent(first, ctx)
        if referent is None:
            return None
        replacement = [*referent, "'s"] if first in _POSSESSIVES else list(referent)
        end = start + 1
        if first in _POSSESSIVES and "of" in referent:  # "Its spire" -> "the spire of the church of St. Ebba"
            while end < len(out) and not _boundary(out, end) and out[end] != "of":
                end += 1
            replacement = ["the", *out[start + 1 : end], "of", *referent]
        out[start:end] = replacement
        if start and out[start - 1] != ",":
            out.insert(start, ",")  # "At its peak it employed ..." -> "At its peak, the company employed ..."
    # "the guild" -> "the Tidewater Guild", "the town" -> "Velmora" (only a bare "the <noun>")
    i = 0
    while i < len(out) - 1:
        if out[i].lower() == "the" and out[i + 1].islower() and _boundary(out, i + 2):
            named = ctx.named_by_head(out[i + 1])
            if named:
                out[i : i + 2] = named
                i += len(named)
                continue
        i += 1
    # "Tolliver" -> "Maren Tolliver"
    for s, e in reversed(_name_spans(out, sentence_start=False)):
        nxt = out[e] if e < len(out) else ""
        as_subject = nxt == "'s" or nxt in _BE or nxt in _HAVE or nxt in _MODALS or _verbish(nxt)
        if e - s == 1 and (as_subject or (s > 0 and out[s - 1] == "by")):  # not "known as Brisk"
            full = ctx.expand(out[s:e])
            if full and not (s > 0 and _cap(out[s - 1])):
                out[s:e] = full
    if (_cap(out[0]) and out[0].lower() in _DETERMINERS) or (
        out[0][:1].isupper() and out[0].lower() in ctx.lower_words and not any(out[0] in n for n in ctx.names)
    ):
        out[0] = out[0].lower()
    return out


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


def _referent(pronoun: str, ctx: _Context) -> list[str] | None:
    if pronoun in ("he", "she", "his", "her"):
        persons = {tuple(p) for p in ctx.prev_persons}
        return list(next(iter(persons))) if len(persons) == 1 else None
    if pronoun in ("they", "their"):
        prev = ctx.prev_subject
        return prev if prev and _is_plural(prev) else None
    prev = ctx.prev_subject
    # the previous subject, unless it is a person or a part of something ("the guild's emblem": "Its" is the guild)
    if prev and not ctx.is_person(prev) and "'s" not in prev and not _is_plural(prev):
        return ["the", *prev[1:]] if prev[0] in ("a", "an") else prev  # "A bridge ... It" -> "the bridge"
    if prev and ctx.is_person(prev) and ctx.prev_things:
        return ctx.prev_things[0]  # "Maren designed the lantern. It burned oil."
    return ctx.passage_topic or ctx.topic


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
    cut: bool = False  # the phrase goes on in a way not parsed ("the first woman to win it"): incomplete

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
        if pronoun and pronoun > 1:
            return pronoun, [], []
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


def _find_verb(tokens: list[str]) -> int | None:
    relative = False  # a relative clause inside the subject has its own verb: skip it
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in _RELATIVES and (tok != "that" or tokens[i - 1] != ","):
            relative = True
        elif _verb_candidate(tokens, i):
            if not relative:
                return i
            relative = False
            while i + 1 < len(tokens) and (_is_participle(tokens[i + 1]) or tokens[i + 1] in ("been", "not")):
                i += 1
        i += 1
    return None


def _split_rest(rest: list[str]) -> tuple[list[str], list[str], list[tuple[str, list[str]]], tuple | None, bool]:
    """Split what follows the verb into the head phrase, the whole phrase, its prepositional phrases, a
    tail after a comma - ("coord" | "rel" | "appos" | "part", tokens) - and whether the phrase was cut short
    by something not parsed (an infinitive, a restrictive relative clause)."""
    head: list[str] = []
    pps: list[tuple[str, list[str]]] = []
    cur = head
    i, tail, cut = 0, None, False
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
        if tok in _CLAUSE_STOPS or (tok == "that" and cur) or tok in _NEGATIONS or (tok == "to" and nxt in _VERBS):
            cut = tok not in (";", ":", ")", "(", "-", "—", "–")  # "the first woman to win it", "a lamp that ..."
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
    group = _verb_group(tokens, v)
    if group is None:  # a negated or modal main verb; its relative clause still states a fact
        relative = apposition and apposition[0] in ("who", "which")
        return _parse([*subject, *apposition[1:]], ctx, depth + 1) if relative else []
    kind, aux, adverbs, verb, particle, nxt = group
    tense = (_BE.get(aux[0]) or _HAVE.get(aux[0])) if aux else ("past" if _is_past(verb) else "present")
    plural = (aux and aux[0] in ("are", "were", "have")) or _is_plural(subject)
    head, full, pps, tail, cut = _split_rest(tokens[nxt:])
    clause = _Clause(subject, kind, tense, bool(plural), aux, adverbs, verb, particle, head, full, pps + fronted, cut)
    clauses = [clause]
    if participle:  # "Born in Kessa, she ..." -> "Orsolya Venn was born in Kessa"
        clauses += _parse([*clause.subject, "is" if participle[0] in _LOCATED else "was", *participle], ctx, depth + 1)
    if apposition:
        clauses += _apposition_clauses(subject, apposition, clause, ctx, depth)
    if tail:
        clauses += _tail_clauses(clause, tail, ctx, depth)
    return clauses


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


def _tail_clauses(main: _Clause, tail: tuple, ctx: _Context, depth: int) -> list[_Clause]:
    kind, toks = tail
    if not toks:
        return []
    if kind == "coord":
        # "founded the guild and led it": "it" is the first verb's object
        it = main.head if main.head and not ctx.is_person(main.head) else None
        prefix = main.subject + (main.aux if main.kind == "passive" else [])
        return [_replace_it(c, it) for c in _parse([*prefix, *toks], ctx, depth + 1)]
    # a relative clause or an apposition describes the last noun phrase, when that is unambiguous
    target = main.pps[-1][1] if main.pps else main.head
    if main.pps and not (ctx.is_person(target) or _name_spans(target, sentence_start=False)):
        return []
    if not target:
        return []
    if kind == "rel":
        return _parse([*target, *toks], ctx, depth + 1)
    if kind == "part":
        return _parse([*target, "is" if toks[0] in _LOCATED else "was", *toks], ctx, depth + 1)
    be = "was" if main.tense == "past" else "is"
    return _parse([*target, be, *toks], ctx, depth + 1)


def _replace_it(c: _Clause, it: list[str] | None) -> _Clause:
    if it and c.head[:1] == ["it"] and len(c.head) == 1:
        c.head, c.full = list(it), [*it, *c.full[1:]]
    return c


# -- answers --------------------------------------------------------------------------------------
def _is_name(np: list[str]) -> bool:
    words = np[1:] if np and np[0].lower() == "the" else np
    return bool(words) and all(_cap(t) or t in ("of", "de", "van", "von", "da") for t in words)


def _forms(np: list[str], ctx: _Context) -> tuple[str, list[str]]:
    """The answer a phrase gives and its aliases: "the stonemason Petr Halloran" -> "Petr Halloran"
    (aliases: the whole phrase, "Halloran"); "a silver heron" -> "a silver heron" ("silver heron")."""
    text = join_tokens(np)
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
    return "place"


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
    questions, seen = [], set()
    for q in d.questions:
        q = _upper_first(re.sub(r"\s+", " ", q).strip().replace(" ?", "?"))
        key = normalize_answer(q)
        if key in seen or _contains(q, answer) or _BAD_WORDS.search(q) or _word_count(q) > 30:
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
            and not any(_contains(q, a) for q in questions)
        ):
            keys.add(k)
            aliases.append(a)
    statements = []
    for s in d.statements:
        s = _upper_first(re.sub(r"\s+", " ", s).strip().replace(" ,", ",").replace(" .", "."))
        if s not in statements and not _BAD_WORDS.search(s):
            statements.append(s)
    return Fact(d.subject, d.relation, answer, tuple(aliases), sentence, "", tuple(questions), tuple(statements))


# -- shapes ---------------------------------------------------------------------------------------
def _when(core: str, np: list[str], prep: str, subject: str, relation: str, statement) -> list[_Draft]:
    """Drafts for a date: "When {core}?", "In what year {core}?" ... ``statement(phrase)`` states the fact."""
    kind, answer, year = _date(np)
    phrase = f"{prep} {join_tokens(np)}"
    if prep == "from" and relation == "date":  # "The church dates from the 13th century."
        qs = [f"When {core} from?"] + ([f"From which {kind} {core}?"] if kind in ("century", "decade") else [])
        return [_Draft(subject, "dates from", answer, [_strip_article(answer)], qs, [statement(phrase)])]
    if prep in ("from", "to") and kind == "year":  # "from 1790 to 1902"
        word = "From" if prep == "from" else "Until"
        return [_Draft(subject, f"{relation} ({prep})", answer, [], [f"{word} what year {core}?"], [statement(phrase)])]
    if prep in ("until", "till", "since"):
        word = prep.capitalize()
        qs = [f"{word} when {core}?", f"{word} what year {core}?"] if kind == "year" else [f"{word} when {core}?"]
        return [_Draft(subject, f"{relation} ({prep})", answer, [], qs, [statement(phrase)])]
    if prep not in ("in", "on", "during", "at"):
        return []
    said = [statement(phrase), f"{_upper_first(phrase)}, {_mid(statement(''))}"]
    if kind == "year":
        qs = [f"When {core}?", f"In what year {core}?", f"What year {core}?"]
        return [_Draft(subject, f"{relation} (year)", answer, [], qs, [*said, statement(f"in the year {answer}")])]
    extra = {"date": [f"On what date {core}?", f"On which day {core}?"], "month": [f"In which month {core}?"],
             "weekday": [f"On which day of the week {core}?"],
             "decade": [f"In which decade {core}?"], "century": [f"In which century {core}?"]}  # fmt: skip
    drafts = [_Draft(subject, f"{relation} (date)", answer, [_strip_article(answer)],
                     [f"When {core}?", *extra.get(kind, [])], said)]  # fmt: skip
    if year:
        qs = [f"In what year {core}?", f"What year {core}?"]
        drafts.append(_Draft(subject, f"{relation} (year)", year, [], qs, [statement(f"in {year}")]))
    return drafts


def _plain(prep: str, np: list[str], ctx: _Context) -> bool:
    """A prepositional phrase no rule asks about ("in use", "after a fire"): it stays in the other questions."""
    asked = (
        _date(np)
        or prep in ("by", "every")
        or _number_phrase(np)
        or np[:3] in (["the", "age", "of"], ["a", "cost", "of"])
    )
    return not asked and not (prep in _PLACE_PREPS and _place_forms(np, ctx))


def _pp_drafts(c: _Clause, ctx: _Context, core: str, relation: str, statement) -> list[_Draft]:
    """Drafts for the prepositional phrases of a clause: dates, places, durations, ages, the rest."""
    subject = join_tokens(c.subject)
    base = _base(c.verb) if c.verb else ""
    drafts: list[_Draft] = []
    for k, (prep, np) in enumerate(c.pps):
        # the phrases no rule asks about stay in the question: "Until when did the instrument remain in use?"
        others = " ".join(f"{p} {join_tokens(n)}" for j, (p, n) in enumerate(c.pps) if j != k and _plain(p, n, ctx))
        ask = f"{core} {others}".strip()
        text = join_tokens(np)
        phrase = f"{prep} {text}"
        number = _number_phrase(np)
        place = _place_forms(np, ctx) if prep in _PLACE_PREPS | {"to", "into", "from"} else None
        if (prep in ("to", "into") and base not in _MOTION) or (prep == "from" and base not in _ORIGIN_VERBS):
            place = None  # "sold the hall to the town council", "founded by monks from Lisca"
        if prep == "every":
            qs = [f"When {ask}?", f"How often {ask}?"]
            drafts.append(_Draft(subject, f"{relation} (how often)", f"every {text}", [], qs, [statement(phrase)]))
        elif _date(np):
            drafts += _when(ask, np, prep, subject, relation, statement)
        elif prep == "for" and number and number[2][:1] and number[2][0] in _TIME_UNITS:
            qs = [f"How long {ask}?", f"For how long {ask}?"]
            drafts.append(_Draft(subject, f"{relation} (how long)", text, [], qs, [statement(phrase)]))
        elif prep == "at" and np[:3] == ["a", "cost", "of"]:  # "built ... at a cost of £900"
            qs = [f"At what cost {ask}?", f"How much did it cost for {_mid(statement(''))[:-1]}?"]
            drafts.append(_Draft(subject, f"{relation} (cost)", join_tokens(np[3:]), [], qs[:1], [statement(phrase)]))
        elif prep == "at" and np[:3] == ["the", "age", "of"] and len(np) == 4:
            drafts.append(_Draft(subject, f"{relation} (age)", np[3], [], [f"At what age {ask}?"], [statement(phrase)]))
        elif prep == "by":
            continue  # agents are a shape of their own; "by 1800" is a deadline
        elif place:
            answer, aliases = place
            kind = _place_type(answer, ctx, np)
            if prep == "from":
                qs = [f"Where {ask} from?", f"From which {kind} {ask}?"]
            elif prep in ("to", "into"):
                qs = [f"Where {ask}?", f"To which {kind} {ask}?"]
            else:
                qs = [f"Where {ask}?", f"What {kind} {ask} {prep}?"]
                if kind != "place" or prep in ("in", "at"):
                    qs.insert(1, f"{prep.capitalize()} which {kind} {ask}?")
            said = [statement(phrase), f"{_upper_first(text)} is where {_mid(statement(''))}"]
            drafts.append(_Draft(subject, f"{relation} (where)", answer, aliases, qs, said))
        elif prep in ("after", "from", "for", "as", "to", "into", "about", "against", "of") and not number:
            who = ctx.wants_who(np, groups=prep in ("to", "for"))
            answer, aliases = _forms(np, ctx)
            qs = [
                f"{'Who' if who else 'What'} {ask} {prep}?",
                f"{prep.capitalize()} {'whom' if who else 'what'} {ask}?",
            ]
            drafts.append(_Draft(subject, f"{relation} {prep}", answer, aliases, qs, [statement(phrase)]))
    return drafts


def _passive(c: _Clause, ctx: _Context) -> list[_Draft]:
    subject = join_tokens(c.subject)
    verb = " ".join([*c.adverbs, c.verb, c.particle]).strip()
    core = " ".join([c.aux[0], subject, *c.aux[1:], verb])
    said = " ".join([*c.aux, verb])
    base = _base(c.verb)
    drafts: list[_Draft] = []

    def statement(phrase: str) -> str:
        return f"{_upper_first(subject)} {said} {phrase}".strip() + "."

    if c.verb in _NAMING:
        named = c.head or next((np for p, np in c.pps if p == "as"), [])
        if named:
            answer, aliases = _forms(named, ctx)
            be = c.aux[0]
            qs = [
                f"What {be} {subject} {c.verb}{' as' if not c.head else ''}?",
                f"What {be} the name of {subject}?",
                f"By what name {be} {subject} known?",
            ]
            said_name = [
                statement(join_tokens(c.full) if c.head else f"as {answer}"),
                f"The name of {subject} {be} {answer}.",
                f"{_upper_first(answer)} {be} the name of {subject}.",
            ]
            drafts.append(_Draft(subject, f"{c.verb}", answer, aliases, qs, said_name))
        return drafts
    if c.verb in _LOCATED and c.tense == "present":
        place = next(((p, np) for p, np in c.pps if p in _PLACE_PREPS and _place_forms(np, ctx)), None)
        if place:
            answer, aliases = _place_forms(place[1], ctx)
            kind = _place_type(answer, ctx, place[1])
            be = c.aux[0]
            qs = [
                f"Where {be} {subject} {c.verb}?",
                f"In which {kind} {be} {subject} {c.verb}?",
                f"Where can {subject} be found?",
            ]
            said_place = [statement(f"{place[0]} {join_tokens(place[1])}"),
                          f"{_upper_first(join_tokens(place[1]))} is where {subject} {be} {c.verb}."]  # fmt: skip
            return [_Draft(subject, f"{c.verb} (where)", answer, aliases, qs, said_place)]
    for prep, np in c.pps:
        if prep != "by" or _date(np) or not np or np[0].endswith("ing") or _number_phrase(np):
            continue
        who = ctx.wants_who(np, groups=True) or _is_name(np)
        answer, aliases = _forms(np, ctx)
        active = f"{c.aux[0]} {c.verb}" if c.aux[-1] == "been" else _past(base) if c.tense == "past" else _third(base)
        if c.verb == "born":
            continue
        wh = "Who" if who else "What"
        qs = [f"{wh} {active} {subject}?", f"By {'whom' if who else 'what'} {core}?", f"{wh} {core} by?"]
        said_agent = [statement(f"by {answer}"), f"{_upper_first(answer)} {active} {subject}."]
        noun = _AGENT_NOUNS.get(base)
        if noun and who:
            qs.append(f"Who {c.be} the {noun} of {subject}?")
            said_agent.append(f"The {noun} of {subject} {c.be} {answer}.")
        drafts.append(_Draft(subject, f"{c.verb} by", answer, aliases, qs, said_agent))
    drafts += _pp_drafts(c, ctx, core, c.verb, statement)
    return drafts


def _copula(c: _Clause, ctx: _Context) -> list[_Draft]:
    subject, be = join_tokens(c.subject), c.be
    drafts: list[_Draft] = []
    if not c.head:  # "The guildhall is in Lantern Square."
        prep, np = c.pps[0] if c.pps else ("", [])
        place = _place_forms(np, ctx) if prep in _PLACE_PREPS else None
        if place:
            kind = _place_type(place[0], ctx, np)
            qs = [
                f"Where {be} {subject}?",
                f"Where {be} {subject} located?",
                f"{prep.capitalize()} which {kind} {be} {subject}?",
            ]
            said = [
                f"{_upper_first(subject)} {be} {prep} {join_tokens(np)}.",
                f"{_upper_first(subject)} {be} located {prep} {join_tokens(np)}.",
            ]
            drafts.append(_Draft(subject, f"{be} (where)", place[0], place[1], qs, said))
        return drafts
    first = c.head[0]
    number = _number_phrase(c.head)
    if number and c.head[-1] in _DIMENSIONS:  # "The lighthouse is 38 metres tall."
        adj, noun = c.head[-1], _DIMENSIONS[c.head[-1]]
        answer = join_tokens(c.head[:-1])
        qs = [f"How {adj} {be} {subject}?", f"What {be} the {noun} of {subject}?"]
        if "of" not in c.subject:  # not "the spire of the church's height"
            qs.append(f"What {be} {_possessive(subject)} {noun}?")
        said = [f"{_upper_first(subject)} {be} {join_tokens(c.head)}.", f"The {noun} of {subject} {be} {answer}."]
        return [_Draft(subject, noun, answer, [], qs, said)]
    determined = first.lower() in _DETERMINERS or _cap(first) or _is_number(first) or "'s" in c.head
    if not determined and _head_noun(c.head) not in _ROLES and first not in _ROLES:
        return drafts  # an adjective ("is large") or a bare noun: nothing worth asking
    if c.cut:
        return drafts  # "the first woman to win it": the complement is only half read
    complement = c.full if _word_count(join_tokens(c.full)) <= MAX_ANSWER_WORDS else c.head
    comp = join_tokens(complement)
    answer, aliases = _forms(complement, ctx)
    if not _is_name(c.subject):  # "The guild's emblem is a silver heron."
        wh = "Who" if ctx.wants_who(c.subject) or ctx.is_person(complement) else "What"
        alt = _alternate(c.subject)
        qs = [f"{wh} {be} {subject}?"] + ([f"{wh} {be} {alt}?"] if alt else [])
        if _is_name(complement):
            qs.append(f"What {be} the name of {subject}?")
        said = [f"{_upper_first(subject)} {be} {comp}."] + ([f"{_upper_first(alt)} {be} {comp}."] if alt else [])
        said.append(f"{_upper_first(comp)} {be} {subject}.")
        drafts.append(_Draft(subject, _head_noun(c.subject), answer, aliases, qs, said))
        if _is_name(complement) and _word_count(subject) <= MAX_ANSWER_WORDS:
            wh2 = "Who" if ctx.is_person(complement) else "What"
            rev_answer, rev_aliases = _forms(c.subject, ctx)
            drafts.append(_Draft(comp, "is", rev_answer, [*rev_aliases, *([alt] if alt else [])],
                                 [f"{wh2} {be} {comp}?"], [f"{_upper_first(comp)} {be} {subject}."]))  # fmt: skip
        return drafts
    person = ctx.is_person(c.subject)
    wh = "Who" if person else "What"
    drafts.append(
        _Draft(subject, "is", answer, aliases, [f"{wh} {be} {subject}?"], [f"{_upper_first(subject)} {be} {comp}."])
    )
    if first.lower() == "the" or "'s" in c.head or first in _ROLES:  # "the first master of the guild": ask back
        alt = _alternate(c.full)
        head = join_tokens(c.full)  # "the oldest building in Ostrava", not just "the oldest building"
        qs = [f"{wh} {be} {head}?"] + ([f"{wh} {be} {alt}?"] if alt else [])
        if ctx.wants_who(c.head) or person:
            qs.append(f"What {be} the name of {head}?")
        said = [f"{_upper_first(head)} {be} {subject}.", f"{_upper_first(subject)} {be} {head}."]
        drafts.append(_Draft(head, _head_noun(c.head), *_forms(c.subject, ctx), qs, said))
    for prep, np in c.pps:  # "Tolliver was a shipwright from the island of Skarra."
        place = _place_forms(np, ctx)
        if not place or prep not in ("from", "in"):
            continue
        kind = _place_type(place[0], ctx, np)
        if prep == "from":
            qs = [f"Where {be} {subject} from?", f"Which {kind} {be} {subject} from?"]
        else:
            qs = [f"Where {be} {subject}?", f"In which {kind} {be} {subject}?"]
        drafts.append(_Draft(subject, f"{be} {prep}", place[0], place[1], qs,
                             [f"{_upper_first(subject)} {be} {prep} {join_tokens(np)}."]))  # fmt: skip
    return drafts


def _active(c: _Clause, ctx: _Context) -> list[_Draft]:
    subject = join_tokens(c.subject)
    base = _base(c.verb)
    phrasal = f"{base} {c.particle}".strip()
    written = " ".join([*c.aux, *c.adverbs, c.verb, c.particle]).strip()  # "designed", "has built", "set up"
    if c.aux:
        ask = " ".join([c.aux[0], subject, *c.adverbs, c.verb, c.particle])
    else:
        do = "did" if c.tense == "past" else ("do" if c.plural else "does")
        ask = " ".join([do, subject, *c.adverbs, base, c.particle])
    obj = join_tokens(c.head)
    drafts: list[_Draft] = []

    def statement(phrase: str) -> str:
        return f"{_upper_first(subject)} {written} {obj} {phrase}".strip() + "."

    if base == "have":
        number = _number_phrase(c.head)
        m = re.fullmatch(r"an? ([a-z]+) of (.+)", obj)
        be = "was" if c.tense == "past" else "is"
        if number and number[2]:
            noun = join_tokens(number[2])
            qs = [f"How many {noun} {ask}?", f"What is the number of {noun} {subject} {c.verb}?",
                  f"What number of {noun} {ask}?"]  # fmt: skip
            said = [statement(""), f"The number of {noun} {subject} {c.verb} is {number[0]}."]
            drafts.append(_Draft(subject, f"number of {noun}", number[0], [number[1]], qs, said))
        elif m:  # "The town has a population of 4,200."
            attr, value = m.group(1), m.group(2)
            qs = [f"What {be} the {attr} of {subject}?"]
            if "of" not in c.subject:
                qs.append(f"What {be} {_possessive(subject)} {attr}?")
            if attr == "population":
                qs.append(f"How many people {'lived' if c.tense == 'past' else 'live'} in {subject}?")
            said = [statement(""), f"The {attr} of {subject} {be} {value}."]
            drafts.append(_Draft(subject, attr, value, [_strip_article(value)], qs, said))
        return drafts
    if base in _LOCATION_VERBS and (not c.head or c.head[0] in _COMPASS):
        # "Velmora lies on the northern coast of Arnholt." / "The lake lies east of the town."
        prep, np = c.pps[0] if c.pps and not c.head else ("", c.full)
        place = _place_forms(np, ctx) if prep in _PLACE_PREPS else (join_tokens(np), []) if not prep else None
        if place:
            be = "was" if c.tense == "past" else "is"
            where = f"{prep} {join_tokens(np)}".strip()
            qs = [f"Where {ask}?", f"Where {be} {subject} located?"]
            if prep:
                qs.append(f"{prep.capitalize()} which {_place_type(place[0], ctx, np)} {ask}?")
            said = [f"{_upper_first(subject)} {written} {where}.", f"{_upper_first(subject)} {be} located {where}."]
            return [_Draft(subject, f"{base} (where)", place[0], place[1], qs, said)]
        return []
    passive_ok = c.tense == "past" and phrasal not in _NO_PASSIVE and base not in _NO_PASSIVE
    pp = _participle(base) if c.verb in _IRREGULAR_PAST else c.verb
    obj_be = ("were" if _is_plural(c.head) else "was") if c.tense == "past" else ("are" if _is_plural(c.head) else "is")
    if c.head and c.head != ["it"] and not _number_phrase(c.head):
        who = ctx.wants_who(c.head) and base not in ("become", "remain")  # "What did she become?"
        answer, aliases = _forms(c.head, ctx)
        qs = [f"{'Who' if who else 'What'} {ask}?"]
        if passive_ok:
            qs.append(f"{'Who' if who else 'What'} was {pp} {c.particle} by {subject}?")
        said = [statement("")] + (
            [f"{_upper_first(obj)} {obj_be} {pp} {c.particle} by {subject}."] if passive_ok else []
        )
        drafts.append(_Draft(subject, phrasal, answer, aliases, qs, said))
        # who did it
        agent_who = ctx.wants_who(c.subject, groups=True) or _is_name(c.subject)
        if base not in _NON_AGENTIVE and (agent_who or ctx.is_person(c.subject)):
            answer, aliases = _forms(c.subject, ctx)
            qs = [f"Who {written} {obj}?"]
            said = [statement(""), f"It {'was' if c.tense == 'past' else 'is'} {subject} who {written} {obj}."]
            if passive_ok:
                qs += [f"By whom {obj_be} {obj} {pp} {c.particle}?", f"Who {obj_be} {obj} {pp} {c.particle} by?"]
                said.insert(1, f"{_upper_first(obj)} {obj_be} {pp} {c.particle} by {subject}.")
            noun = _AGENT_NOUNS.get(base)
            if noun and (c.head[0] == "the" or _is_name(c.head)) and c.tense == "past":
                qs.append(f"Who was the {noun} of {obj}?")
                said.append(f"The {noun} of {obj} was {subject}.")
            drafts.append(_Draft(obj, f"{phrasal} (by whom)", answer, aliases, qs, said))
    elif c.head and (number := _number_phrase(c.head)) and base in ("weigh", "cost"):  # "weighs eleven tonnes"
        noun = "weight" if base == "weigh" else "cost"
        qs = [f"How much {ask}?", f"What {'was' if c.tense == 'past' else 'is'} the {noun} of {subject}?"]
        said = [statement(""), f"The {noun} of {subject} {'was' if c.tense == 'past' else 'is'} {obj}."]
        drafts.append(_Draft(subject, noun, obj, [number[0]] if number[2] else [], qs, said))
    elif c.head and (number := _number_phrase(c.head)) and number[2]:  # "The guild owns three warehouses."
        noun = join_tokens(number[2])
        qs = [f"How many {noun} {ask}?"]
        if not set(number[2]) & {"a", "an", "per", "each", "every"}:  # not "the number of lanterns a year ..."
            qs.append(f"What is the number of {noun} {subject} {written}?")
        said = [statement(""), f"The number of {noun} {subject} {written} is {number[0]}."]
        drafts.append(_Draft(subject, f"number of {noun}", number[0], [number[1]], qs, said))
    core = f"{ask} {obj}".strip()
    drafts += _pp_drafts(c, ctx, core, phrasal, statement)
    return drafts


# -- the driver -----------------------------------------------------------------------------------
def _clause_drafts(c: _Clause, ctx: _Context) -> list[_Draft]:
    # "she sold her hall": a possessive pronoun inside the clause is its subject's, when it can be
    kind = "person" if ctx.is_person(c.subject) else "plural" if _is_plural(c.subject) else "thing"
    owner = {p: [*c.subject, "'s"] for p, k in _POSSESSIVES.items() if k == kind}

    def own(np: list[str]) -> list[str]:
        return [t for tok in np for t in owner.get(tok, [tok])]

    c.head, c.full, c.pps = own(c.head), own(c.full), [(p, own(np)) for p, np in c.pps]
    if c.head == ["it"]:
        ref = _referent("it", ctx)
        if ref and ref != c.subject:
            c.head, c.full = list(ref), [*ref, *c.full[1:]]
    drafts = {"passive": _passive, "copula": _copula, "active": _active}[c.kind](c, ctx)
    if c.subject[0].lower() in ("a", "an"):  # "A crater is named Venn": which crater? Only ask what it did
        drafts = [d for d in drafts if d.answer == join_tokens(c.subject)]
    return drafts


def extract_facts(passages: Sequence[Sequence[str]], source: str = "") -> list[SentenceFacts]:
    """Facts of a document given as passages (lists of sentences), in order, one entry per sentence.

    Pronouns and short references are resolved within the document; a new passage resets the referent of
    "It" to the passage's topic (its first named subject), or the document's.
    """
    sentences = [s for p in passages for s in p]
    ctx = _Context(*_survey(sentences))
    out: list[SentenceFacts] = []
    for passage in passages:
        ctx.passage_topic, ctx.prev_subject, ctx.prev_things = None, None, []
        for sentence in passage:
            tokens, extra = _parentheticals(tokenize(sentence))
            resolved = _resolve(tokens, ctx) if tokens else None
            facts: list[Fact] = []
            if resolved is None:
                ctx.prev_persons = ctx.remember(tokens)
                ctx.prev_subject, ctx.prev_things = None, []
                out.append(SentenceFacts(sentence, sentence, ()))
                continue
            persons = ctx.remember(resolved)
            clauses = _parse(resolved, ctx)
            for more in extra:
                clauses += _parse(more, ctx)
            for clause in clauses:
                for draft in _clause_drafts(clause, ctx):
                    fact = _finish(draft, sentence)
                    if fact is not None:
                        facts.append(Fact(**{**asdict(fact), "source": source}))
            main = clauses[0] if clauses else None
            ctx.prev_persons = persons
            ctx.prev_subject = main.subject if main else None
            ctx.prev_things = [c.head for c in clauses if c.kind == "active" and c.head and not ctx.is_person(c.head)]
            if main and _is_name(main.subject) and not ctx.is_person(main.subject):
                ctx.passage_topic = ctx.passage_topic or main.subject
                ctx.topic = ctx.topic or main.subject
            text = _upper_first(join_tokens(resolved))
            out.append(SentenceFacts(sentence, text if text.endswith((".", "!", "?")) else text + ".", tuple(facts)))
    return _drop_shared_name_aliases(out, ctx)


def _drop_shared_name_aliases(found: list[SentenceFacts], ctx: _Context) -> list[SentenceFacts]:
    """A surname alone answers "Who founded the guild?" only when one person of the document bears it:
    with Maren and Ilse Tolliver both named, "Tolliver" is no alias."""
    owners: dict[str, set[str]] = {}
    for person in ctx.persons:
        for word in (person[0], person[-1]):
            owners.setdefault(word, set()).add(join_tokens(person))
    shared = {word for word, names in owners.items() if len(names) > 1}
    return [
        SentenceFacts(sf.text, sf.resolved, tuple(
            Fact(**{**asdict(f), "aliases": tuple(a for a in f.aliases if a not in shared)}) for f in sf.facts
        ))
        for sf in found
    ]  # fmt: skip
