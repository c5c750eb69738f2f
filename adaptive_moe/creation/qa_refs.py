"""References resolved within a document (pronouns, short names, possessives), so that every question
stands on its own: the third step of the shallow parse behind :mod:`adaptive_moe.creation.qa_rules`.
"""

from __future__ import annotations

import re

from .qa_phrases import (
    _Context,
    _date,
    _front,
    _head_noun,
    _is_name,
    _is_plural,
    _name_spans,
    _named_np,
    _number_phrase,
)
from .qa_words import (
    _ADVERBS,
    _ATTRIBUTES,
    _BE,
    _DETERMINERS,
    _HAVE,
    _MODALS,
    _PERSON_NOUNS,
    _PLACE_TYPES,
    _POSSESSIVES,
    _PREPS,
    _PRONOUNS,
    _RELATIVES,
    _ROLES,
    _SUBORDINATORS,
    _cap,
    _verbish,
    _words,
)


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
