"""Rule-based facts and questions from declarative English sentences.

A small base model (SmolLM2-135M) writes poor questions, and a LoRA expert learns a fact best from several
short question-answer pairs in varied wordings with the loss on a short answer. So the questions come from
rules that must work on their own: no tagger, no parser, no model, only word lists
(``adaptive_moe/data/qa_patterns.json``) and a shallow parse that is right on the sentences documents are
mostly made of. A wrong fact is worse than a missing one (the expert would learn a falsehood), so where a
reference or a phrase is unclear the sentence asks nothing.

Per sentence, in :mod:`adaptive_moe.creation.qa_parse`:

1. tokens: abbreviations ("Dr."), initials ("J."), numbers ("4,200", "3.5") and the possessive "'s" kept as
   tokens of their own; quotes and emphasis marks dropped.
2. references resolved from what came before, so that every question stands on its own: a leading "It" / "Its"
   is the previous sentence's subject when that is a thing and the sentence brought in no second thing ("The
   guild built a lighthouse. It ...": unclear), "She" / "He" the one person the last sentences named (genders
   told by pronouns and roles: "Her father, Samuel Varden"), "the guild" the one name headed by "Guild", "the
   town" the one place known as a town, "the festival" the one thing the document described so ("the Night of
   Small Suns, a festival ..."), "the guild hall" the hall of the guild, "Tolliver" the one person of that
   surname (or the document's main person); a possessive pronoun inside a sentence ("elected Venn as its
   second master") is bound to the one phrase before it that it can stand for.
3. a shallow parse into clauses: a fronted adjunct ("In 1802, ..."), the subject and its apposition
   ("Ilsa Brandt, an engineer from Corrin, ..."), the verb group (passive, active or copula), the object or
   complement (a name inside it: "a handbook called The Patient Flame"), a chain of prepositional phrases, and
   what follows (a coordinated verb phrase, a relative clause, a participle or an apposition, each parsed as a
   clause of its own).

Then here, shape rules turn a clause into facts, each with several question wordings paired with the short
answer and a few declarative restatements: agent / date / place / duration of a passive, copula definitions in
both directions ("the Y of Z" <-> "Z's Y"), occupations ("What was her trade?"), active verbs (what did S do,
who did it; what kind of thing: "What handbook did she write?", "What colour ...?"), roles ("Who did the guild
elect as its second master?"), counts ("How many members does ... have?"), names ("What is ... called?"),
fame ("What is ... famous for?") and locations ("Where is ... located?", "On which street ...?").

A question is kept only when it is self-contained (no pronoun but one naming a phrase before it in the
question: "Who did the guild elect as its second master?") and does not contain its answer, and an answer only
when it has at most ``MAX_ANSWER_WORDS`` words and no pronoun.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from ..evaluation.scoring import normalize_answer
from .qa_parse import (
    _AGENT_NOUNS,
    _AS_VERBS,
    _ATTRIBUTES,
    _BOUND_MARK,
    _COMPASS,
    _CONJUNCTIONS,
    _DETERMINERS,
    _DIMENSIONS,
    _FAME,
    _IRREGULAR_PAST,
    _LEX,
    _LOCATED,
    _LOCATION_VERBS,
    _MOTION,
    _NAME_WORDS,
    _NAMING,
    _NO_PASSIVE,
    _NON_AGENTIVE,
    _ORIGIN_VERBS,
    _PERSON_NOUNS,
    _PLACE_NOUNS,
    _PLACE_PREPS,
    _PLACE_TYPES,
    _PREPS,
    _RELATIVES,
    _ROLE_VERBS,
    _ROLES,
    _SEASONS,
    _STREET_WORDS,
    _TIME_UNITS,
    _TITLE_NOUNS,
    _TITLES,
    _alternate,
    _base,
    _Bound,
    _cap,
    _category,
    _Clause,
    _colour,
    _comparative,
    _Context,
    _date,
    _head_noun,
    _is_name,
    _is_number,
    _is_occupation,
    _is_plural,
    _mid,
    _name_spans,
    _named_np,
    _number_phrase,
    _owned,
    _owner,
    _parentheticals,
    _parse,
    _participle,
    _past,
    _possessive,
    _remember_sentence,
    _resolve,
    _strip_article,
    _survey,
    _third,
    _upper_first,
    _word_count,
    join_tokens,
    tokenize,
)

__all__ = ["MAX_ANSWER_WORDS", "Fact", "SentenceFacts", "extract_facts", "join_tokens", "tokenize"]

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


# -- shapes ---------------------------------------------------------------------------------------
def _when(core: str, np: list[str], prep: str, subject: str, relation: str, statement) -> list[_Draft]:
    """Drafts for a date: "When {core}?", "In what year {core}?" ... ``statement(phrase)`` states the fact."""
    kind, answer, year = _date(np)
    phrase = f"{prep} {join_tokens(np)}"
    if prep == "from" and relation == "date":  # "The church dates from the 13th century."
        qs = [f"When {core} from?"] + ([f"From which {kind} {core}?"] if kind in ("century", "decade") else [])
        qs += [f"From what year {core}?"] if kind == "year" else []
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
        named = _named_np(np)
        if prep == "every":
            if c.kind == "active" and _number_phrase(c.head):
                continue  # "trains sixty apprentices each year": asked with the count
            qs = [f"When {ask}?", f"How often {ask}?"]
            drafts.append(_Draft(subject, f"{relation} (how often)", f"every {text}", [], qs, [statement(phrase)]))
            if text in _SEASONS:
                qs = [f"In which season {ask}?", f"At what time of year {ask}?"]
                drafts.append(_Draft(subject, f"{relation} (season)", text, [f"every {text}", f"in {text}"], qs,
                                     [statement(phrase)]))  # fmt: skip
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
                qs = [f"Where {ask}?", *_which(prep, kind, ask), f"What {kind} {ask} {prep}?"]
            said = [statement(phrase), f"{_upper_first(text)} is where {_mid(statement(''))}"]
            drafts.append(_Draft(subject, f"{relation} (where)", answer, aliases, qs, said))
        elif named and _category(named[0]) and prep != "as":  # "in a book titled Flowers of the Western Isles"
            cat = _category(named[0])
            answer, aliases = _forms(np, ctx)
            qs = [f"{prep.capitalize()} which {cat} {ask}?", f"What {cat} {ask} {prep}?"]
            drafts.append(_Draft(subject, f"{relation} {prep}", answer, aliases, qs, [statement(phrase)]))
        elif prep in ("after", "from", "for", "as", "to", "into", "about", "against", "of") and not number:
            if prep == "as" and (base in _ROLE_VERBS or base in _AS_VERBS):
                continue  # "elected Venn as its master", "trained as a clockmaker": shapes of their own
            organisation = _is_name(np) and np[-1] in _NAME_WORDS  # "elected to the Dunmere Botanical Society"
            who = ctx.wants_who(np, groups=prep in ("to", "for")) and prep != "as" and not organisation
            answer, aliases = _forms(np, ctx)
            qs = [f"{'Who' if who else 'What'} {ask} {prep}?"]
            if prep != "as":
                qs.append(f"{prep.capitalize()} {'whom' if who else 'what'} {ask}?")
            if organisation:
                qs.append(f"{prep.capitalize()} which {np[-1].lower()} {ask}?")
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
        fame = next((np for p, np in c.pps if p == "for"), None)
        if not named and c.verb == "known" and fame:  # "Harrowgate is known for its cheese"
            return _famous(c, fame, ctx)
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
                *_which(place[0], kind, f"{be} {subject} {c.verb}"),
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
        named = _named_np(np)
        if named and _category(named[0]):  # "crossed by a red iron bridge called the Wend Bridge"
            qs.append(f"Which {_category(named[0])} {active} {subject}?")
        drafts.append(_Draft(subject, f"{c.verb} by", answer, aliases, qs, said_agent))
    drafts += _pp_drafts(c, ctx, core, c.verb, statement)
    if c.verb in _DISPLAYED and c.tense == "present":  # "The lantern is kept in the museum."
        for d in drafts:
            if d.relation.endswith("(where)"):
                d.questions.append(f"Where can {subject} be seen?")
    return drafts


_DISPLAYED = frozenset(["kept", "displayed", "exhibited", "preserved", "shown"])


def _famous(c: _Clause, np: list[str], ctx: _Context) -> list[_Draft]:
    """ "Harrowgate is famous for a cheese called Wend Gold": What is Harrowgate famous / known for?"""
    subject, be = join_tokens(c.subject), c.be
    answer, aliases = _forms(np, ctx)
    adjective = c.verb or c.head[-1]
    qs = [f"What {be} {subject} {adjective} for?"]
    qs += [f"What {be} {subject} {w} for?" for w in ("famous", "known", "best known") if w != adjective]
    named = _named_np(np)
    if named and _category(named[0]):
        qs.insert(1, f"What {_category(named[0])} {be} {subject} {adjective} for?")
    said = [f"{_upper_first(subject)} {be} {adjective} for {join_tokens(np)}."]
    return [_Draft(subject, f"{adjective} for", answer, aliases, qs, said)]


def _copula(c: _Clause, ctx: _Context) -> list[_Draft]:
    subject, be = join_tokens(c.subject), c.be
    drafts: list[_Draft] = []
    if not c.head:  # "The guildhall is in Lantern Square."
        prep, np = c.pps[0] if c.pps else ("", [])
        place = _place_forms(np, ctx) if prep in _PLACE_PREPS else None
        if place:
            kind = _place_type(place[0], ctx, np)
            qs = [f"Where {be} {subject}?", f"Where {be} {subject} located?", *_which(prep, kind, f"{be} {subject}")]
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
    if c.head[-1] in _FAME and c.pps and c.pps[0][0] == "for" and len(c.head) <= 2:
        return _famous(c, c.pps[0][1], ctx)  # "Harrowgate is famous for a cheese called Wend Gold."
    determined = first.lower() in _DETERMINERS or _cap(first) or _is_number(first) or "'s" in c.head
    # "The town's main industry was wool.", "Its colours are green and white.": a value, not an adjective
    value = _head_noun(c.subject) in _ATTRIBUTES and ("'s" in c.subject or _owner(c.subject))
    if not determined and not value and _head_noun(c.head) not in _ROLES and first not in _ROLES:
        return drafts  # an adjective ("is large") or a bare noun: nothing worth asking
    if c.cut and not (c.cut in _RELATIVES and first in ("a", "an")):
        return drafts  # "the first woman to win it": the complement is only half read ("a lamp that ...": is)
    former = {"former", "retired", "onetime", "ex"} & set(c.head)
    if ctx.is_person(c.subject) and first in ("a", "an") and _is_occupation(_head_noun(c.head)) and not former:
        drafts.append(_occupation(c, c.head))  # "Maren Tolliver was a glassblower."
    if _is_name(c.subject) and not ctx.is_person(c.subject) and first in ("a", "an") and _colour(c.head):
        colour = _colour(c.head)[0]  # "The Tessel Star is a blue orchid."
        qs = [f"What colour {be} {subject}?", f"What is the colour of {subject}?"]
        drafts.append(_Draft(subject, "colour", colour, [], qs, [f"{_upper_first(subject)} {be} {colour}."]))
    complement = c.full if _word_count(join_tokens(c.full)) <= MAX_ANSWER_WORDS or _named_np(c.head) else c.head
    comp = join_tokens(complement)
    answer, aliases = _forms(complement, ctx)
    if not _is_name(c.subject):  # "The guild's emblem is a silver heron."
        wh = "Who" if ctx.wants_who(c.subject) or ctx.is_person(complement) else "What"
        alt = _alternate(c.subject)
        qs = [f"{wh} {be} {subject}?"] + ([f"{wh} {be} {alt}?"] if alt else [])
        if _is_name(complement) or _named_np(complement):
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
    qs = [f"{wh} {be} {subject}?"]
    pre = next((c.head[:k] for k, t in enumerate(c.head) if k and t in _PREPS), c.head)  # "a horse fair"
    kind = _category(pre)
    if not person and first in ("a", "an") and len(pre) > 2 and kind and not _named_np(c.head):
        qs += [f"What kind of {kind} {be} {subject}?", f"What type of {kind} {be} {subject}?"]  # "a horse fair"
    drafts.append(_Draft(subject, "is", answer, aliases, qs, [f"{_upper_first(subject)} {be} {comp}."]))
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


def _occupation(c: _Clause, np: list[str], verb: str = "") -> _Draft:
    """ "Maren Tolliver was a glassblower" / "trained as a clockmaker": What was her trade, job ...?"""
    subject = join_tokens(c.subject)
    job, text = _strip_article(join_tokens(np)), join_tokens(np)
    past = c.tense == "past"
    was, did = ("was", "did") if past else ("is", "does")
    owner = _possessive(subject)
    if verb:  # "Teodor Quillane trained as a clockmaker before joining the guild."
        others = " ".join(f"{p} {join_tokens(n)}" for p, n in c.pps if p in ("before", "after") and n)
        qs = [f"What {did} {subject} {verb} as {others}".strip() + "?", f"What {did} {subject} {verb} to become?"]
        if others:
            qs += [f"What {did} {subject} {verb} as?", f"What {was} {owner} job {others}?"]
        said = [f"{_upper_first(subject)} {_past(verb) if past else _third(verb)} as {text} {others}".strip() + "."]
        return _Draft(subject, f"{verb} as", job, [text, _head_noun(np)], qs, said)
    qs = [f"What {was} {owner} {noun}?" for noun in ("job", "occupation", "profession", "trade")]
    qs += [f"What {did} {subject} do for a living?", f"What {did} {subject} work as?"]
    said = [f"{_upper_first(subject)} {was} {text}.", f"{_upper_first(subject)} worked as {text}."]
    return _Draft(subject, "occupation", job, [text, _head_noun(np)], qs, said)


def _count(number: tuple[str, str, list[str]], c: _Clause) -> tuple[str, str, list[str], str]:
    """The answer, its alias, the counted noun and words to end the question with: "312 members today" ->
    ("312", "312", ["members"], " today"); "more than 4,000 specimens" -> ("more than 4,000", "4,000", ...);
    "sixty apprentices" said "each year" -> (..., " each year")."""
    value, phrase, noun = number
    answer, alias = (phrase, value) if _comparative(phrase) else (value, phrase)
    end = ""
    if noun and noun[-1] in ("today", "now", "altogether"):
        noun, end = noun[:-1], f" {noun[-1]}"
    every = next((np for p, np in c.pps if p == "every"), None)
    if every:
        end += f" each {join_tokens(every)}"
    return answer, alias, noun, end


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
    past = c.tense == "past"
    drafts: list[_Draft] = []

    def statement(phrase: str) -> str:
        return f"{_upper_first(subject)} {written} {obj} {phrase}".strip() + "."

    if base == "have":
        number = _number_phrase(c.head)
        m = re.fullmatch(r"an? ([a-z]+) of (.+)", obj)
        be = "was" if past else "is"
        if number and number[2]:
            answer, alias, counted, end = _count(number, c)
            noun = join_tokens(counted)
            qs = [f"How many {noun} {ask}{end}?", f"What is the number of {noun} {subject} {c.verb}{end}?",
                  f"What number of {noun} {ask}{end}?"]  # fmt: skip
            said = [statement(""), f"The number of {noun} {subject} {c.verb}{end} is {answer}."]
            drafts.append(_Draft(subject, f"number of {noun}", answer, [alias], qs, said))
        elif m:  # "The town has a population of 4,200."
            attr, value = m.group(1), m.group(2)
            qs = [f"What {be} the {attr} of {subject}?"]
            if "of" not in c.subject:
                qs.append(f"What {be} {_possessive(subject)} {attr}?")
            if attr == "population":
                qs.append(f"How many people {'lived' if past else 'live'} in {subject}?")
            said = [statement(""), f"The {attr} of {subject} {be} {value}."]
            drafts.append(_Draft(subject, attr, value, [_strip_article(value)], qs, said))
        return drafts
    if base in _LOCATION_VERBS and (not c.head or c.head[0] in _COMPASS):
        return _lies(c, ctx, ask, written)
    role = next((np for p, np in c.pps if p == "as"), None)
    if base in _AS_VERBS and role and not c.head and ctx.is_person(c.subject):
        drafts.append(_occupation(c, role, base))  # "Teodor Quillane trained as a clockmaker."
    split = next(
        (k for k in range(2, len(c.head)) if _is_name(c.head[k:]) and all(t.islower() for t in c.head[1:k])), None
    )  # "called the festival the Night of Lamps", not "named the Tidewater Guild"
    if base in ("call", "name", "dub", "nickname", "rename") and split and c.head[0] in ("the", "a", "an") and not role:
        thing, name = join_tokens(c.head[:split]), c.head[split:]  # "Locals call the hill the Sleeping Giant."
        answer, aliases = _forms(name, ctx)
        be = "was" if past else "is"
        qs = [f"What {ask} {thing}?", f"What {be} {thing} called?"]
        said = [statement(""), f"{_upper_first(thing)} {be} called {answer}."]
        return [_Draft(thing, "called", answer, aliases, qs, said)]
    if base in _ROLE_VERBS and role and past and ctx.is_person(c.head):
        return _role(c, ctx, role, ask, statement)  # "In 1831 the guild elected Orsolya Venn as its second master."
    passive_ok = past and phrasal not in _NO_PASSIVE and base not in _NO_PASSIVE
    pp = _participle(base) if c.verb in _IRREGULAR_PAST else c.verb
    obj_be = ("were" if _is_plural(c.head) else "was") if past else ("are" if _is_plural(c.head) else "is")
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
        drafts += _object_kind(c, ctx, ask, written)
        # who did it
        agent_who = ctx.wants_who(c.subject, groups=True) or _is_name(c.subject)
        if base not in _NON_AGENTIVE and (agent_who or ctx.is_person(c.subject)):
            answer, aliases = _forms(c.subject, ctx)
            named = _named_np(c.head)
            qs = [f"Who {written} {obj}?"] + ([f"Who {written} {join_tokens(named[1])}?"] if named else [])
            said = [statement(""), f"It {'was' if past else 'is'} {subject} who {written} {obj}."]
            if passive_ok:
                qs += [f"By whom {obj_be} {obj} {pp} {c.particle}?", f"Who {obj_be} {obj} {pp} {c.particle} by?"]
                said.insert(1, f"{_upper_first(obj)} {obj_be} {pp} {c.particle} by {subject}.")
            noun = _AGENT_NOUNS.get(base)
            if noun and (c.head[0] == "the" or _is_name(c.head)) and past:
                qs.append(f"Who was the {noun} of {obj}?")
                said.append(f"The {noun} of {obj} was {subject}.")
            if base == "become" and ctx.is_person(c.subject) and (c.head[0] == "the" or "'s" in c.head):
                alt = _alternate(c.head)  # "She became the society's first president": who was its first president?
                qs += [f"Who {'was' if past else 'is'} {form}?" for form in (obj, alt) if form]
                said.append(f"{_upper_first(subject)} {'was' if past else 'is'} {obj}.")
            drafts.append(_Draft(obj, f"{phrasal} (by whom)", answer, aliases, qs, said))
    elif c.head and (number := _number_phrase(c.head)) and base in ("weigh", "cost"):  # "weighs eleven tonnes"
        noun = "weight" if base == "weigh" else "cost"
        qs = [f"How much {ask}?", f"What {'was' if past else 'is'} the {noun} of {subject}?"]
        said = [statement(""), f"The {noun} of {subject} {'was' if past else 'is'} {obj}."]
        drafts.append(_Draft(subject, noun, obj, [number[0]] if number[2] else [], qs, said))
    elif c.head and (number := _number_phrase(c.head)) and number[2]:  # "The guild owns three warehouses."
        answer, alias, counted, end = _count(number, c)
        noun = join_tokens(counted)
        qs = [f"How many {noun} {ask}{end}?"]
        per = [t for t in counted if t in ("a", "an", "per")]
        if per:  # "900 lanterns a year": "How many lanterns does the workshop make a year?"
            cut = counted.index(per[0])
            qs.append(f"How many {join_tokens(counted[:cut])} {ask} {join_tokens(counted[cut:])}{end}?")
            qs.append(f"How many {join_tokens(counted[:cut])} {ask} each {join_tokens(counted[cut + 1 :])}{end}?")
        else:  # not "the number of lanterns a year ..."
            qs.append(f"What is the number of {noun} {subject} {written}{end}?")
        said = [statement(""), f"The number of {noun} {subject} {written}{end} is {answer}."]
        drafts.append(_Draft(subject, f"number of {noun}", answer, [alias], qs, said))
    core = f"{ask} {obj}".strip()
    drafts += _pp_drafts(c, ctx, core, phrasal, statement)
    return drafts


def _lies(c: _Clause, ctx: _Context, ask: str, written: str) -> list[_Draft]:
    """ "Velmora lies on the northern coast of Arnholt." / "The lake lies east of the town." """
    subject, base = join_tokens(c.subject), _base(c.verb)
    prep, np = c.pps[0] if c.pps and not c.head else ("", c.full)
    place = _place_forms(np, ctx) if prep in _PLACE_PREPS else (join_tokens(np), []) if not prep else None
    if not place:
        return []
    be = "was" if c.tense == "past" else "is"
    where = f"{prep} {join_tokens(np)}".strip()
    said = [f"{_upper_first(subject)} {written} {where}.", f"{_upper_first(subject)} {be} located {where}."]
    answer, aliases = place
    drafts = []
    part = _part_of(np) if prep else None
    if part:  # "on the east bank of the river Wend": which river, which bank
        side, owner = part
        kind = owner[1] if owner[0] == "the" and owner[1] in _PLACE_NOUNS else _head_noun(owner)  # "the river Wend"
        kind = kind if kind in _PLACE_NOUNS else _place_type(join_tokens(owner), ctx, owner)
        owner_text = join_tokens(owner)
        if _word_count(answer) > MAX_ANSWER_WORDS:
            answer, aliases = owner_text, [join_tokens(np), *aliases]
        if kind != "place":  # "On which river does Harrowgate lie?" (not "Which place ...": the coast is the place)
            qs = [*_which(prep, kind, ask), f"Which {kind} {ask} {prep}?"]
            drafts.append(_Draft(subject, f"{base} (which {kind})", owner_text, [_strip_article(owner_text)], qs, said))
        if side:
            noun = _head_noun(np[: np.index("of")])
            qs = [
                f"{prep.capitalize()} which {noun} of {owner_text} {ask}?",
                f"Which {noun} of {owner_text} {be} {subject} on?",
            ]
            drafts.append(_Draft(subject, f"{base} ({noun})", join_tokens(side), [side[-2] if len(side) > 2 else ""],
                                 qs, said))  # fmt: skip
    qs = [f"Where {ask}?", f"Where {be} {subject} located?"]
    if prep:
        qs += _which(prep, _place_type(place[0], ctx, np), ask)
    drafts.insert(0, _Draft(subject, f"{base} (where)", answer, aliases, qs, said))
    return drafts


def _part_of(np: list[str]) -> tuple[list[str], list[str]] | None:
    """ "the east bank of the river Wend" -> (["the", "east", "bank"], ["the", "river", "Wend"]); the first part
    is empty when it names no side ("the foot of Mount Kerrow")."""
    if "of" not in np or np[0] != "the":
        return None
    i = np.index("of")
    part, owner = np[:i], np[i + 1 :]
    if _head_noun(part) not in _PLACE_NOUNS or not owner or not _name_spans(owner, sentence_start=False):
        return None
    return (part if len(part) > 2 else []), owner


def _object_kind(c: _Clause, ctx: _Context, ask: str, written: str) -> list[_Draft]:
    """What kind of thing the object is, when the sentence says: "wrote a handbook called The Patient Flame"
    (What handbook ...? What is the title of the handbook ...?), "holds the Night of Small Suns, a festival ..."
    (What festival ...? What is the name of the guild's autumn festival?); and its colour ("introduced the blue
    signal glass": What colour is the signal glass ...?)."""
    subject, drafts = join_tokens(c.subject), []
    named = _named_np(c.head)
    kind = _category(named[0]) if named else c.category if _is_name(c.head) else ""
    every = next((join_tokens(np) for p, np in c.pps if p == "every"), "")
    when = f" each {every}" if every else ""
    if kind and kind not in _PERSON_NOUNS:
        answer, aliases = _forms(c.head, ctx)
        noun = "title" if kind in _TITLE_NOUNS else "name"
        qs = [f"What {kind} {ask}{when}?", f"What is the {noun} of the {kind} {subject} {written}{when}?"]
        if every in _SEASONS or every == "year":
            season = "annual" if every == "year" else every
            qs.append(f"What is the name of {_possessive(subject)} {season} {kind}?")
        said = [f"{_upper_first(subject)} {written} {join_tokens(c.head)}{when}.",
                f"The {noun} of the {kind} {subject} {written}{when} is {answer}."]  # fmt: skip
        drafts.append(_Draft(subject, f"{_base(c.verb)} ({kind})", answer, aliases, qs, said))
    colour = _colour(c.head) if not named else None
    if colour:
        hue, rest = colour
        rest = rest[1:] if rest[0].lower() in ("a", "an", "the") else rest
        thing = join_tokens(rest)
        be = "were" if _is_plural(rest) and c.tense == "past" else "are" if _is_plural(rest) else "is"
        qs = [f"What colour {be} the {thing} {subject} {written}?", f"What colour of {thing} {ask}?"]
        said = [f"The {thing} {subject} {written} {be} {hue}."]
        drafts.append(_Draft(subject, f"{_base(c.verb)} (colour)", hue, [], qs, said))
    return drafts


def _role(c: _Clause, ctx: _Context, role: list[str], ask: str, statement) -> list[_Draft]:
    """ "In 1831 the guild elected Orsolya Venn as its second master": Who did the guild elect as its second
    master? Who was / became the guild's second master? When was Orsolya Venn elected?"""
    base = _base(c.verb)
    pp = _participle(base) if c.verb in _IRREGULAR_PAST else c.verb
    person, aliases = _forms(c.head, ctx)
    obj, title = join_tokens(c.head), join_tokens(role)
    alt = _alternate(role)
    qs = [f"Who {ask} as {title}?", f"Who was {pp} as {title}?"]
    said = [statement(f"as {title}"), f"{_upper_first(obj)} was {pp} as {title}."]
    if role[0] == "the" or "'s" in role:  # "its second master": the one, so also who was it
        qs += [f"Who was {title}?", f"Who became {title}?"] + ([f"Who was {alt}?", f"Who became {alt}?"] if alt else [])
        said += [f"{_upper_first(obj)} became {title}.", f"{_upper_first(title)} was {obj}."]
    drafts = [_Draft(title, f"{base} as", person, aliases, qs, said)]
    # when: "When was Orsolya Venn elected?", "When did Orsolya Venn become the guild's second master?"
    others = [(p, np) for p, np in c.pps if p != "as"]
    for prep, np in others:
        if not _date(np):
            continue
        passive = f"was {obj} {pp}" if base not in ("name", "make") else f"was {obj} {pp} as {title}"  # not "named"
        for core in (passive, f"{ask} {obj} as {title}", f"did {obj} become {title}"):
            for d in _when(core, np, prep, obj, f"{base} as", statement):
                same = next((e for e in drafts[1:] if e.answer == d.answer and e.relation == d.relation), None)
                if same:
                    same.questions += d.questions
                else:
                    drafts.append(d)
    drafts += [
        d for d in _pp_drafts(replace(c, pps=others), ctx, f"{ask} {obj}", base, statement) if not _date_draft(d)
    ]
    return drafts


def _date_draft(d: _Draft) -> bool:
    return d.relation.endswith(("(year)", "(date)"))


# -- the driver -----------------------------------------------------------------------------------
def _clause_drafts(c: _Clause, ctx: _Context) -> list[_Draft]:
    # "the guild elected Venn as its master": a bound possessive pronoun names what it stands for ...
    def own(np: list[str]) -> list[str]:
        out, i = [], 0
        while i < len(np):
            if isinstance(np[i], _Bound) and np[i] == "it":
                out += np[i].owner
                i += 1
                continue
            if isinstance(np[i], _Bound):
                replacement, end = _owned(np[i].owner, np, i + 1)
                out += replacement
                i = max(end, i + 1)
                continue
            out.append(np[i])
            i += 1
        return out

    bound = [t for t in [*c.head, *c.full, *(t for _, np in c.pps for t in np)] if isinstance(t, _Bound)]
    c.head, c.full, c.pps = own(c.head), own(c.full), [(p, own(np)) for p, np in c.pps]
    drafts = {"passive": _passive, "copula": _copula, "active": _active}[c.kind](c, ctx)
    if c.subject[0].lower() in ("a", "an"):  # "A crater is named Venn": which crater? Only ask what it did
        drafts = [d for d in drafts if d.answer == join_tokens(c.subject)]
    # ... and a question naming the subject first keeps the pronoun: "Who did the guild elect as its master?"
    for tok in bound:
        if tok.owner == c.subject and tok != "it":
            for d in drafts:
                d.questions = [_keep_pronoun(q, c.subject, tok) for q in d.questions]
                d.statements = [_keep_pronoun(q, c.subject, tok) for q in d.statements]
    return drafts


def _keep_pronoun(text: str, subject: list[str], pronoun: str) -> str:
    name, owned = join_tokens(subject), join_tokens([*subject, "'s"])
    low = text.lower()
    first = low.find(name.lower())
    if first < 0 or low.startswith(owned.lower(), first):
        return text
    later = first + len(name)
    return text[:later] + text[later:].replace(owned, _BOUND_MARK.format(pronoun))


def extract_facts(passages: Sequence[Sequence[str]], source: str = "") -> list[SentenceFacts]:
    """Facts of a document given as passages (lists of sentences), in order, one entry per sentence.

    Pronouns and short references are resolved within the document; a new passage resets the referent of
    "It" to the passage's topic (its first named subject), or the document's.
    """
    sentences = [s for p in passages for s in p]
    lower, places, types, things = _survey(sentences)
    ctx = _Context(lower, places, types, things=things)
    out: list[SentenceFacts] = []
    for passage in passages:
        ctx.passage_topic, ctx.prev_subject, ctx.prev_things = None, None, []
        ctx.prev_named, ctx.prev_rival, ctx.prev_orgs, ctx.passage_start = None, False, [], True
        for sentence in passage:
            tokens, extra = _parentheticals(tokenize(sentence))
            resolved = _resolve(tokens, ctx) if tokens else None
            facts: list[Fact] = []
            if resolved is None:
                _remember_sentence(ctx, tokens, [], ctx.remember(tokens))
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
            _remember_sentence(ctx, resolved, clauses, persons)
            text = _upper_first(join_tokens(resolved))
            out.append(SentenceFacts(sentence, text if text.endswith((".", "!", "?")) else text + ".", tuple(facts)))
    return _short_wordings(_drop_shared_name_aliases(out, ctx), ctx)


def _short_wordings(found: list[SentenceFacts], ctx: _Context) -> list[SentenceFacts]:
    """One more wording per fact with a long name said the way the document says it for short: "When was the
    Tidewater Guild of Lantern Makers founded?" -> "When was the guild founded?" (when "the guild" can mean
    nothing else in the document)."""
    short = {}
    for name in ctx.names:
        noun = _head_noun(name)
        if (
            len(name) >= 4
            and noun.capitalize() in _NAME_WORDS  # "the guild", not "the night" for the Night of Small Suns
            and not ctx.is_person(name)
            and ctx.named_by_head(noun) == ["the", *name]
        ):
            short[join_tokens(["the", *name])] = f"the {noun}"
    if not short:
        return found
    out = []
    for sf in found:
        facts = []
        for f in sf.facts:
            extra = None
            for q in f.questions:
                for long, brief in short.items():
                    if long in q:
                        variant = q.replace(_possessive(long), _possessive(brief)).replace(long, brief)
                        if not _contains(variant, f.answer) and variant not in f.questions:
                            extra = variant
                            break
                if extra:
                    break
            facts.append(replace(f, questions=(*f.questions[:1], extra, *f.questions[1:])) if extra else f)
        out.append(SentenceFacts(sf.text, sf.resolved, tuple(facts)))
    return out


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
