"""Shape rules for what a subject does (:mod:`adaptive_moe.creation.qa_rules`): active verbs, where
something lies, what kind of thing an object is, roles, dates; and every rule a clause goes through.
"""

from __future__ import annotations

import re
from dataclasses import replace

from .qa_answers import MAX_ANSWER_WORDS, _Draft, _forms, _place_forms, _place_type, _which
from .qa_clauses import _Clause
from .qa_phrases import (
    _alternate,
    _category,
    _colour,
    _Context,
    _date,
    _head_noun,
    _is_name,
    _is_plural,
    _name_spans,
    _named_np,
    _number_phrase,
    _possessive,
    _strip_article,
)
from .qa_shapes import _count, _occupation, _pp_drafts, _when
from .qa_words import (
    _AGENT_NOUNS,
    _AS_VERBS,
    _COMPASS,
    _IRREGULAR_PAST,
    _LOCATION_VERBS,
    _NO_PASSIVE,
    _NON_AGENTIVE,
    _PERSON_NOUNS,
    _PLACE_NOUNS,
    _PLACE_PREPS,
    _ROLE_VERBS,
    _SEASONS,
    _TITLE_NOUNS,
    _base,
    _participle,
    _upper_first,
    _word_count,
    join_tokens,
)


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
