"""A LoRA expert that answers from passages of its own documents, and says which.

The expert folder is a plain PEFT adapter folder plus two files: ``passages.json`` (each passage's text,
source file and line span) and ``passages.safetensors`` (their MiniLM embeddings). At answer time the
expert embeds the question, takes its ``top_k`` nearest passages (by cosine similarity, plus, when its card
names a ``lexical_weight``, that share of the passages' BM25 score for the question's words:
:meth:`PassageIndex.search`; when it names a ``rerank_weight``, the nearest few ordered again by how likely
the base model finds the question after each: :func:`rerank`), puts them in front of the question
(:func:`context_prompt`: the same format its LoRA was trained on) and answers; each answer's signals
carry the passages as :attr:`~adaptive_moe.model.generation.GenerationSignals.citations` (source, lines,
score, text), which the facade puts in ``MoEOutput.attribution``.

A plain PEFT loader can still load the adapter alone; it then answers without its passages.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import GenerationConfig
from ..documents import Passage, split_sentences
from ..errors import CorruptExpertError, InvalidInputError, ModelBusyError
from ..model.generation import Prompt, current_streamer, normalize_prompts, query_text, replay, streaming
from ..model.likelihood import continuation_logprobs
from ..uncertainty.base import MeanTokenLogProb
from ..utils.io import atomic_write_text
from .expert import LoRAExpert, register_expert_kind

__all__ = [
    "INDEX_FILE",
    "PassageIndex",
    "RetrievalExpert",
    "best_readings",
    "context_prompt",
    "question_likelihood",
    "rank_reading",
    "reorder",
    "rerank",
    "sentence_match",
    "supported_by",
    "with_context",
]

INDEX_FILE = "passages.json"
EMBEDDINGS_FILE = "passages.safetensors"
DEFAULT_TOP_K = 2
#: how many passages retrieval hands to :func:`rerank` when the card names none
DEFAULT_RERANK_CANDIDATES = 6
#: what the base model reads before a question when :func:`question_likelihood` asks how likely a passage makes it
QUESTION_PROMPT = "Passage: {passage}\nPlease write a question based on this passage.\nQuestion:"
#: BM25 parameters of the lexical half of a hybrid search (``bm25s``' defaults, Lucene's variant)
BM25_K1, BM25_B = 1.5, 0.75
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset(
    ("a", "an", "the", "of", "in", "on", "at", "to", "for", "by", "with", "from", "and", "or", "is", "are", "was",
     "were", "be", "been", "it", "its", "this", "that", "as", "than", "into", "about", "after", "before", "over",
     "under", "up", "down", "out", "who", "what", "when", "where", "which", "how", "why", "whom", "whose")
)  # fmt: skip


def context_prompt(question: str, passages: list[str]) -> str:
    """The user message a retrieval expert sees: numbered passages, then the question."""
    shown = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    return f"Passages:\n{shown}\n\nQuestion: {question}\nAnswer in a few words, from the passages."


def with_context(prompt: Prompt, passages: list[str]) -> Prompt:
    """``prompt`` (a string or chat messages) with ``passages`` put in front of its (last) user message."""
    if isinstance(prompt, str):
        return context_prompt(prompt, passages)
    messages = [dict(m) for m in prompt]
    for m in reversed(messages):
        if m.get("role") == "user":
            m["content"] = context_prompt(str(m.get("content", "")), passages)
            break
    return messages


def _content_words(text: str) -> set[str]:
    return {w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in _STOP}


def supported_by(answer: str, passages: list[str], min_share: float = 0.5) -> bool:
    """Whether the passages back the answer: at least ``min_share`` of the answer's content words (and
    every number in it) appear in them. An answer with no content word is not supported."""
    words = _content_words(answer)
    if not words:
        return False
    seen = set().union(*(_content_words(p) for p in passages)) if passages else set()
    numbers = {w for w in words if any(c.isdigit() for c in w)}
    return len(words & seen) / len(words) >= min_share and numbers <= seen


def sentence_match(question: str, answer: str, passages: list[str]) -> float:
    """How well the sentence an answer was taken from matches the question, from 0 to 1: over the sentences of
    ``passages`` that hold at least half of the answer's content words, the best share of the question's other
    content words that the sentence holds (times the share of the answer's words it holds). An answer taken
    from the sentence that speaks of what the question asks scores high; a number or name lifted from a
    neighbouring sentence about something else scores low ("How many plots ...?": "44" from "Rents for 41 of
    the 44 plots have been paid" against "17" from "There are 17 people waiting for a plot"). 0 when no
    sentence holds the answer."""
    words = _content_words(answer)
    if not words:
        return 0.0
    asked = _content_words(question) - words
    best = 0.0
    for passage in passages:
        for sentence in split_sentences(passage):
            held = _content_words(sentence)
            holds = len(words & held) / len(words)
            if holds >= 0.5:
                best = max(best, holds * len(asked & held) / max(1, len(asked)))
    return best


def question_likelihood(base: Any, question: str, passages: list[str]) -> list[float]:
    """For each passage, how likely ``base`` finds ``question`` after it: the mean token log-probability of the
    question after :data:`QUESTION_PROMPT` (the passage, then a request to write a question about it). A
    passage that could have prompted the question scores high (query likelihood, as in unsupervised passage
    re-ranking, Sachan et al. 2022); one forward pass per batch of passages, no generation."""
    if not passages:
        return []
    prompts = [QUESTION_PROMPT.format(passage=p) for p in passages]
    return continuation_logprobs(base, prompts, [" " + question.strip()] * len(passages))


def rerank(base: Any, question: str, hits: list[tuple[Passage, float]], weight: float) -> list[tuple[Passage, float]]:
    """``hits`` (passages with their retrieval scores) ordered again by score plus ``weight`` times
    :func:`question_likelihood`, best first, each with that sum as its score (ties keep retrieval's order)."""
    if weight < 0:
        raise InvalidInputError(f"the re-ranking weight must be 0 or more, got {weight!r}")
    if not weight or len(hits) < 2:
        return list(hits)
    return reorder(hits, question_likelihood(base, question, [p.text for p, _ in hits]), weight)


def reorder(hits: list[tuple[Any, float]], likely: list[float], weight: float) -> list[tuple[Any, float]]:
    """``hits`` ordered by score plus ``weight`` times their ``likely`` value (what :func:`rerank` does once it
    has the question likelihoods), best first; ties keep the given order."""
    scored = [(p, s + weight * q) for (p, s), q in zip(hits, likely, strict=True)]
    return sorted(scored, key=lambda h: -h[1])


@dataclass
class PassageIndex:
    """Passages with unit-length embeddings, searched by cosine similarity, or by cosine similarity plus a share
    of a BM25 score over the passages' content words (a hybrid search: :meth:`search`)."""

    passages: list[Passage]
    embeddings: np.ndarray  # (n, dim) float32, unit rows
    encoder: str = "minilm"
    _bm25_index: Any = field(default=None, init=False, repr=False, compare=False)
    _bm25_lock: Any = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, passages: list[Passage], embedder: Any, encoder: str = "minilm") -> PassageIndex:
        """Embed ``passages`` (their :attr:`~adaptive_moe.documents.Passage.text`) with ``embedder``."""
        if not passages:
            raise InvalidInputError("a passage index needs at least one passage")
        vectors = np.asarray(embedder.encode([p.text for p in passages]), dtype=np.float32)
        return cls(list(passages), _unit(vectors), encoder)

    def search(self, queries: np.ndarray, k: int, texts: list[str] | None = None,
               lexical_weight: float = 0.0) -> list[list[tuple[int, float]]]:  # fmt: skip
        """For each query row, the ``k`` best passages as ``(index, score)``, best first.

        The score is the cosine similarity of the query's embedding and the passage's; with ``texts`` (the
        queries' words, one per row) and a ``lexical_weight`` above 0 it gains ``lexical_weight`` times the
        passage's BM25 score for the query's content words, divided by the best passage's (so 0 to
        ``lexical_weight``). Passages that share a rare word with the question (a name, a code, a number)
        then rise: on the reader questions of the training documents (997 of them), the passage that holds the
        answer is the first one returned for 0.78 of them by cosine alone and for 0.85 with weight 0.15
        (``benchmarks/probe_retrieval.py``)."""
        if lexical_weight < 0:
            raise InvalidInputError(f"lexical_weight must be 0 or more, got {lexical_weight!r}")
        sims = _unit(np.asarray(queries, dtype=np.float32)) @ self.embeddings.T
        if texts is not None and lexical_weight > 0:
            if len(texts) != sims.shape[0]:
                raise InvalidInputError(f"{len(texts)} query texts for {sims.shape[0]} query embeddings")
            sims = sims + lexical_weight * self.lexical_scores(texts)
        k = min(k, len(self.passages))
        out = []
        for row in sims:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([(int(i), float(row[i])) for i in top])
        return out

    def lexical_scores(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), passages)`` BM25 scores of each passage for each text's content words, each row divided
        by its largest (a row stays 0 when no passage shares a word with the text)."""
        bm25 = self._bm25()
        rows = []
        for text in texts:
            row = np.asarray(bm25.get_scores(sorted(_content_words(text))), dtype=np.float32)
            rows.append(row / row.max() if row.max() > 0 else row)
        return np.stack(rows) if rows else np.zeros((0, len(self.passages)), dtype=np.float32)

    def _bm25(self) -> Any:
        """The passages' BM25 index (built once, on first use, from their content words; ``bm25s``; threads
        that ask while it is being built wait for it)."""
        with self._bm25_lock:
            if self._bm25_index is None:
                import bm25s

                index = bm25s.BM25(k1=BM25_K1, b=BM25_B)
                # a passage with no content word gets a token no query word can be, so every passage keeps its row
                index.index([sorted(_content_words(p.text)) or ["\x00"] for p in self.passages], show_progress=False)
                self._bm25_index = index
            return self._bm25_index

    def save(self, folder: str | Path) -> None:
        """Write ``passages.json`` and ``passages.safetensors`` into ``folder``."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        state = {"encoder": self.encoder, "passages": [p.to_dict() for p in self.passages]}
        atomic_write_text(folder / INDEX_FILE, json.dumps(state))
        save_file({"embeddings": np.ascontiguousarray(self.embeddings)}, str(folder / EMBEDDINGS_FILE))

    @classmethod
    def load(cls, folder: str | Path) -> PassageIndex:
        """Read what :meth:`save` wrote (:class:`CorruptExpertError` when it is missing or unreadable)."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            data = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
            passages = [Passage.from_dict(p) for p in data["passages"]]
            embeddings = load_file(str(folder / EMBEDDINGS_FILE))["embeddings"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CorruptExpertError(f"cannot read the passage index in {str(folder)!r}: {e}") from None
        if embeddings.shape[0] != len(passages):
            raise CorruptExpertError(
                f"the passage index in {str(folder)!r} has {len(passages)} passages but "
                f"{embeddings.shape[0]} embeddings"
            )
        return cls(passages, embeddings.astype(np.float32), data.get("encoder", "minilm"))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@register_expert_kind
class RetrievalExpert(LoRAExpert):
    """A :class:`LoRAExpert` that answers from the ``top_k`` passages of its documents nearest to the
    question, and cites them (see the module docstring). ``top_k`` comes from the card's
    ``extra["retrieval"]["top_k"]`` (default 2), the share of a lexical score in retrieval from its
    ``lexical_weight`` (default 0), the re-ranking of its nearest passages from its ``rerank_weight`` (default
    0: none) and ``rerank_candidates`` (default 6); with ``extra["retrieval"]["quote"]`` its answers may only
    quote those passages (:class:`~adaptive_moe.model.constraints.QuoteConstraint`)."""

    kind = "retrieval"
    files = (*LoRAExpert.files, INDEX_FILE, EMBEDDINGS_FILE)

    def __init__(self, card, path, *, allow_pickle: bool = False, embedder: Any = None) -> None:
        super().__init__(card, path, allow_pickle=allow_pickle)
        self._index: PassageIndex | None = None
        self._embedder = embedder

    @property
    def top_k(self) -> int:
        """How many passages go in front of a question."""
        return int((self.card.extra.get("retrieval") or {}).get("top_k", DEFAULT_TOP_K))

    @property
    def quote(self) -> bool:
        """Whether answers may only quote the passages read (the card's ``extra["retrieval"]["quote"]``)."""
        return bool((self.card.extra.get("retrieval") or {}).get("quote", False))

    @property
    def lexical_weight(self) -> float:
        """The share of the passages' BM25 score added to their cosine similarity when retrieving (the card's
        ``extra["retrieval"]["lexical_weight"]``; 0, cosine alone, when it names none)."""
        return self._card_weight("lexical_weight", 1)

    @property
    def sentence_match_weight(self) -> float:
        """How much :func:`sentence_match` adds to a reading's mean token log-probability when the surest of
        several readings is kept (the card's ``extra["retrieval"]["sentence_match_weight"]``; 0, the surest
        reading alone, when it names none)."""
        return self._card_weight("sentence_match_weight", 10)

    @property
    def rerank_weight(self) -> float:
        """How much :func:`question_likelihood` adds to a passage's retrieval score when the nearest
        :attr:`rerank_candidates` passages are ordered again by the base model (the card's
        ``extra["retrieval"]["rerank_weight"]``; 0, retrieval's order, when it names none)."""
        return self._card_weight("rerank_weight", 10)

    @property
    def rerank_candidates(self) -> int:
        """How many of the nearest passages :func:`rerank` orders again (the card's
        ``extra["retrieval"]["rerank_candidates"]``, default :data:`DEFAULT_RERANK_CANDIDATES`)."""
        given = (self.card.extra.get("retrieval") or {}).get("rerank_candidates", DEFAULT_RERANK_CANDIDATES)
        if isinstance(given, bool) or not isinstance(given, int) or not 1 <= given <= 50:
            raise CorruptExpertError(f"expert {self.name!r}: its card's retrieval rerank_candidates is {given!r}; "
                                     "allowed: a whole number from 1 to 50")  # fmt: skip
        return given

    def _card_weight(self, key: str, most: float) -> float:
        """The card's ``extra["retrieval"][key]`` (0 when it names none), a number from 0 to ``most``."""
        given = (self.card.extra.get("retrieval") or {}).get(key, 0.0)
        if isinstance(given, bool) or not isinstance(given, (int, float)) or not 0 <= given <= most:
            raise CorruptExpertError(
                f"expert {self.name!r}: its card's retrieval {key} is {given!r}; allowed: a number from 0 to {most}"
            )
        return float(given)

    @property
    def index(self) -> PassageIndex:
        """The expert's passages and their embeddings (read on first use)."""
        if self._index is None:
            self._index = PassageIndex.load(self.path)
        return self._index

    @property
    def embedder(self) -> Any:
        """The text encoder the index was built with."""
        if self._embedder is None:
            from ..model.encoders import make_embedder

            self._embedder = make_embedder(self.index.encoder)
        return self._embedder

    @property
    def readings(self) -> tuple[int, ...]:
        """How many passages each reading of a question shows (the card's ``extra["retrieval"]["readings"]``;
        ``(top_k,)`` when it names none): the answer of the surest reading is kept."""
        given = (self.card.extra.get("retrieval") or {}).get("readings") or [self.top_k]
        return tuple(dict.fromkeys(int(k) for k in given))

    def retrieve(self, questions: list[str], k: int | None = None) -> list[list[tuple[Passage, float]]]:
        """The ``k`` (default ``top_k``) passages for each question, best first, with their scores (cosine
        similarity, plus :attr:`lexical_weight` times their share of the best BM25 score). With a
        :attr:`rerank_weight` and the expert loaded, the nearest :attr:`rerank_candidates` are first ordered
        again by :func:`rerank` (the score then includes the weighted question likelihood); an expert not
        loaded keeps retrieval's order."""
        questions, k = list(questions), k or self.top_k
        weight, candidates = self.rerank_weight, self.rerank_candidates  # both checked, loaded or not
        weight = weight if self.base is not None else 0.0
        wanted = max(k, candidates) if weight else k
        hits = self.index.search(np.asarray(self.embedder.encode(questions)), wanted, questions, self.lexical_weight)
        rows = [[(self.index.passages[i], s) for i, s in row] for row in hits]
        if weight:
            rows = [rerank(self.base, q, row, weight) for q, row in zip(questions, rows, strict=True)]
        return [row[:k] for row in rows]

    def format_prompt(self, prompt: Prompt) -> Prompt:
        """The prompt with this expert's passages for it in front of the question."""
        return self.read(prompt)[0]

    def read(self, prompt: Prompt) -> tuple[Prompt, list[dict[str, Any]]]:
        """The prompt with this expert's passages in front, and those passages as citations (one retrieval)."""
        [hits] = self.retrieve([query_text(prompt)])
        return with_context(prompt, [p.text for p, _ in hits]), _citations(hits)

    def generate(self, prompts: Any, generation: GenerationConfig | None = None, **overrides: Any) -> list:
        """Retrieve, answer from the passages with the adapter active, and attach the citations.

        With several :attr:`readings`, each question is read once with each number of passages (all in one
        batch) and the answer with the highest mean token log-probability, plus :attr:`sentence_match_weight`
        times its :func:`sentence_match`, among those its passages back (:func:`supported_by`; among all when
        none is) is kept (:func:`rank_reading`), with the passages that reading showed as its citations. On the
        development documents, with a reader that never saw them, readings take the shared reader from 0.69 (the
        top 2 passages) to 0.79 of reader questions right: a small reader misses a fact among distractors that it
        finds alone, or finds it only with the next passage, and is surer when it has found it
        (``benchmarks/results/reader_train_all_linear.md``). A streamed answer is generated whole, then
        streamed."""
        if self.base is None:
            raise ModelBusyError(f"expert {self.name!r} is not loaded; use it inside `with pool.acquire([...])`")
        items = normalize_prompts(prompts)
        ks, weight = self.readings, self.sentence_match_weight
        hits = self.retrieve([query_text(p) for p in items], max(ks))
        rows: list[Prompt] = []
        shown: list[list[tuple[Passage, float]]] = []
        owner: list[int] = []
        for i, (p, h) in enumerate(zip(items, hits, strict=True)):
            for k in dict.fromkeys(min(k, len(h)) for k in ks):  # a short index makes some readings the same
                rows.append(with_context(p, [q.text for q, _ in h[:k]]))
                shown.append(h[:k])
                owner.append(i)
        gen = generation or GenerationConfig()
        gen = self.generation_config(gen.replace(**overrides) if overrides else gen)
        quotes = [[p.text for p, _ in h] for h in shown] if self.quote else None
        streamer = current_streamer() if len(rows) > len(items) else None
        with self.base.adapter_host.activated(self.slot), streaming(None) if streamer else contextlib.nullcontext():
            signals = self.base.generate_with_signals(rows, gen, quotes=quotes)
        weight = weight if len(rows) > len(items) else 0.0  # one reading per question: nothing to choose
        rank = [rank_reading(query_text(items[i]), s.text, [p.text for p, _ in h], MeanTokenLogProb().score(s), weight)
                for s, h, i in zip(signals, shown, owner, strict=True)]  # fmt: skip
        best = best_readings(rank, owner)
        out = []
        for i, original in enumerate(items):
            s, h = signals[best[i]], shown[best[i]]
            s.prompt = original
            s.citations = _citations(h)
            s.supported = rank[best[i]][0]
            out.append(s)
        if streamer is not None:
            replay(streamer, out[0].token_ids)
        return out


def rank_reading(question: str, answer: str, passages: list[str], sureness: float,
                 match_weight: float = 0.0) -> tuple[bool, float]:  # fmt: skip
    """How one reading of ``question`` ranks among the others (higher is better): whether ``passages`` back
    its ``answer`` (:func:`supported_by`), then its ``sureness`` (the mean token log-probability) plus
    ``match_weight`` times its :func:`sentence_match`."""
    match = sentence_match(question, answer, passages) if match_weight else 0.0
    return supported_by(answer, passages), sureness + match_weight * match


def best_readings(rank: list[tuple[bool, float]], owner: list[int]) -> dict[int, int]:
    """For each question, the row of its best reading: ``rank[r]`` is row ``r``'s :func:`rank_reading` (backed
    by its passages, score), ``owner[r]`` its question. A backed answer beats one that is not, then the higher
    score; a tie keeps the earlier row (the reading with fewer passages)."""
    best: dict[int, int] = {}
    for r, i in enumerate(owner):
        if i not in best or rank[r] > rank[best[i]]:
            best[i] = r
    return best


def _citations(hits: list[tuple[Passage, float]]) -> list[dict[str, Any]]:
    return [{"source": p.source, "lines": list(p.lines), "score": round(score, 4), "text": p.body, "cite": p.cite()}
            for p, score in hits]  # fmt: skip
