"""Rule-based facts and questions from declarative English sentences.

A small base model (SmolLM2-135M) writes poor questions, and a LoRA expert learns a fact best from several
short question-answer pairs in varied wordings with the loss on a short answer. So the questions come from
rules that must work on their own: no tagger, no parser, no model, only word lists
(``adaptive_moe/data/qa_patterns.json``) and a shallow parse that is right on the sentences documents are
mostly made of. A wrong fact is worse than a missing one (the expert would learn a falsehood), so where a
reference or a phrase is unclear the sentence asks nothing.

Per sentence, in ``qa_words`` (tokens, verb forms), ``qa_refs`` (references), ``qa_phrases`` and ``qa_clauses``
(the parse):

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

Then shape rules (``qa_shapes``, ``qa_actions``) turn a clause into facts, each with several question wordings
paired with the short answer and a few declarative restatements: agent / date / place / duration of a passive,
copula definitions in both directions ("the Y of Z" <-> "Z's Y"), occupations ("What was her trade?"), active verbs
(what did S do, who did it; what kind of thing: "What handbook did she write?", "What colour ...?"), roles ("Who
did the guild elect as its second master?"), counts ("How many members does ... have?"), names ("What is ...
called?"), fame ("What is ... famous for?") and locations ("Where is ... located?", "On which street ...?").

A question is kept only when it is self-contained (no pronoun but one naming a phrase before it in the
question: "Who did the guild elect as its second master?") and does not contain its answer, and an answer only
when it has at most ``MAX_ANSWER_WORDS`` words and no pronoun.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace

from .qa_actions import _active
from .qa_answers import MAX_ANSWER_WORDS, Fact, SentenceFacts, _contains, _Draft, _finish
from .qa_clauses import _Clause, _parentheticals, _parse, _remember_sentence
from .qa_phrases import _Context, _head_noun, _possessive, _survey
from .qa_refs import _BOUND_MARK, _Bound, _owned, _resolve
from .qa_shapes import _copula, _passive
from .qa_words import _NAME_WORDS, _upper_first, join_tokens, tokenize

__all__ = ["MAX_ANSWER_WORDS", "Fact", "SentenceFacts", "extract_facts", "join_tokens", "tokenize"]


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
