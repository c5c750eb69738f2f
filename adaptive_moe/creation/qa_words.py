"""The words of the shallow parse behind :mod:`adaptive_moe.creation.qa_rules`: the open word lists of
``adaptive_moe/data/qa_patterns.json``, the closed word classes, tokens, and verb forms.

No tagger, no parser, no model: word lists (``adaptive_moe/data/qa_patterns.json``) and rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
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
