"""Shape rules that turn a parsed clause into facts (:mod:`adaptive_moe.creation.qa_rules`): dates,
places and agents of a passive, what a copula defines, fame, occupations and counts.
"""

from __future__ import annotations

from .qa_answers import MAX_ANSWER_WORDS, _Draft, _forms, _place_forms, _place_type, _which
from .qa_clauses import _Clause
from .qa_phrases import (
    _alternate,
    _category,
    _colour,
    _comparative,
    _Context,
    _date,
    _head_noun,
    _is_name,
    _is_occupation,
    _named_np,
    _number_phrase,
    _possessive,
    _strip_article,
)
from .qa_refs import _owner
from .qa_words import (
    _AGENT_NOUNS,
    _AS_VERBS,
    _ATTRIBUTES,
    _DETERMINERS,
    _DIMENSIONS,
    _FAME,
    _LOCATED,
    _MOTION,
    _NAME_WORDS,
    _NAMING,
    _ORIGIN_VERBS,
    _PLACE_PREPS,
    _PREPS,
    _RELATIVES,
    _ROLE_VERBS,
    _ROLES,
    _SEASONS,
    _TIME_UNITS,
    _base,
    _cap,
    _is_number,
    _mid,
    _past,
    _third,
    _upper_first,
    _word_count,
    join_tokens,
)


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
