"""Clauses: a sentence's subject, verb group, object and prepositional phrases, and what follows them,
and what a sentence leaves for the next: the last step of the shallow parse behind
:mod:`adaptive_moe.creation.qa_rules`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .qa_phrases import (
    _category,
    _Context,
    _date,
    _find_verb,
    _front,
    _gerund,
    _head_noun,
    _is_name,
    _is_occupation,
    _is_plural,
    _name_spans,
    _named_np,
    _number_phrase,
    _thing_noun,
)
from .qa_refs import _Bound, _owner
from .qa_words import (
    _ADVERBS,
    _APPROX,
    _AS_VERBS,
    _ATTRIBUTES,
    _BE,
    _CLAUSE_STOPS,
    _DETERMINERS,
    _GENDER,
    _HAVE,
    _IRREGULAR_PAST,
    _IRREGULAR_PP,
    _KEEP_ADVERBS,
    _LOCATED,
    _MODALS,
    _MONTHS,
    _MOTION,
    _NAME_WORDS,
    _NAMING,
    _NEGATIONS,
    _NO_PASSIVE,
    _NOT_PARTICIPLES,
    _NOT_VERBS,
    _PERSON_NOUNS,
    _PHRASAL,
    _PLACE_TYPES,
    _PREPS,
    _PRONOUNS,
    _RELATIVES,
    _SEASONS,
    _SUBJECT_PRONOUNS,
    _TIME_UNITS,
    _VERBS,
    _base,
    _cap,
    _is_number,
    _is_participle,
    _is_past,
    _is_third_person,
    _verbish,
    _words,
    join_tokens,
)


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
