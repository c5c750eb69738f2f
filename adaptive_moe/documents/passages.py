"""Documents cut into passages an expert can retrieve and cite.

A passage is a few sentences of one paragraph, one list item, or one table row, with where it came from
(source file and 1-based line span) and the headings above it. Its :attr:`Passage.text` puts the
document's title and section in front of the body ("Aquila TR-20 manual — Specifications: Weight: 340
g."), so a table row or list item still names what it is about when it is retrieved alone. Table rows
become "first cell: other cells" sentences (with the column names when there are more than two
columns) instead of being dropped, so spec sheets and manuals keep their facts. A document without a
title (a letter, a diary, notes) takes its file name as one ("letter_from_fenwick_farm.md" -> "Letter
from fenwick farm"): what a reader calls the document is then in every passage it retrieves.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidInputError
from .reading import load_documents, split_sentences

__all__ = ["Passage", "document_passages", "load_passages"]

MAX_WORDS = 40
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_BOLD_HEADING = re.compile(r"^()(?:\*\*|__)([^*_]{1,80}?)(?:\*\*|__):?$")
_TABLE = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of a document.

    Attributes:
        text: what is indexed and shown to the model: ``context`` and ``body``.
        body: the document's own words (inline Markdown removed).
        context: the document title and section heading ("" when there are none).
        source: the document's name (its path, ``path:line`` for JSON lines, ``text[i]``).
        lines: the 1-based first and last line of the body in the source.
    """

    text: str
    body: str
    context: str
    source: str
    lines: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["lines"] = list(self.lines)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Passage:
        """A passage from :meth:`to_dict`'s form."""
        return cls(data["text"], data["body"], data["context"], data["source"], tuple(data["lines"]))

    def cite(self) -> str:
        """``source:first-last`` (or ``source:line``)."""
        a, b = self.lines
        return f"{self.source}:{a}" if a == b else f"{self.source}:{a}-{b}"


def _inline(text: str) -> str:
    """Inline Markdown removed: links, images, code spans, emphasis, HTML tags."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"</?[A-Za-z][^>]*>", " ", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\w)", r"\1", text)
    text = re.sub(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def _cells(line: str) -> list[str]:
    return [_inline(c) for c in line.strip().strip("|").split("|")]


def _sentence(text: str) -> str:
    return text if re.search(r"[.!?:]$", text) else text + "."


def _windows(sentences: list[str], max_words: int) -> list[list[str]]:
    """Consecutive sentences grouped up to ``max_words`` words (a longer sentence stands alone)."""
    out: list[list[str]] = []
    for s in sentences:
        if out and sum(len(x.split()) for x in out[-1]) + len(s.split()) <= max_words:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def title_from_name(source: str) -> str:
    """A title made from a document's file name: ``"notes/letter_from_fenwick_farm.md"`` -> ``"Letter
    from fenwick farm"``; ``""`` for sources that are not files (``text[0]``, ``dataset[3]``)."""
    if re.fullmatch(r"(?:text|dataset)\[\d+\]", source):
        return ""
    stem = re.sub(r":\d+$", "", source).replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem.strip(".") else stem
    words = re.sub(r"[_\-\s.]+", " ", stem).strip()
    return (words[:1].upper() + words[1:]) if re.search(r"[^\W\d_]", words) else ""


def document_passages(
    text: str, source: str, markdown: bool = True, max_words: int = MAX_WORDS, default_title: str | None = None
) -> list[Passage]:
    """Cut one document into passages (see the module docstring). Plain text is cut at blank lines;
    its first line is taken as the title when it is short and does not end a sentence. A document
    without a title of its own is titled ``default_title`` (``None``: :func:`title_from_name` of
    ``source``; ``""``: no title)."""
    lines = text.splitlines()
    fallback = title_from_name(source) if default_title is None else default_title
    title, heading = "", ""
    header: list[str] = []
    out: list[Passage] = []

    def context() -> str:
        main = title or fallback
        if heading and main and heading != main:
            return f"{main} — {heading}"
        return heading or main

    def emit(body: str, first: int, last: int) -> None:
        body = body.strip()
        if not re.search(r"[^\W\d_]|\d", body):
            return
        ctx = context()
        shown = f"{ctx}: {body}" if ctx else body
        out.append(Passage(shown, body, ctx, source, (first + 1, last + 1)))

    def flush_paragraph(first: int, last: int) -> None:
        words = _inline(" ".join(lines[first : last + 1]))
        sentences = split_sentences(words) or ([words] if words else [])
        pos = first
        for window in _windows(sentences, max_words):
            emit(" ".join(window), pos, last)

    i, n = 0, len(lines)
    start: int | None = None
    while i < n:
        line = lines[i]
        stripped = line.strip()
        heading_match = _HEADING.match(stripped) if markdown else None
        if markdown and not heading_match and start is None:
            heading_match = _BOLD_HEADING.match(stripped)  # a line in bold alone is a heading too
        breaks = not stripped or heading_match or (markdown and (_ITEM.match(line) or _TABLE.match(line)))
        if breaks and start is not None:
            flush_paragraph(start, i - 1)
            start = None
        if not stripped:
            header = []
            i += 1
            continue
        if heading_match:
            level, words = len(heading_match.group(1)) or 6, _inline(heading_match.group(2))
            if level == 1 and not title:
                title = words
            else:
                heading = words
            i += 1
            continue
        if markdown and _TABLE.match(line):
            if _TABLE_RULE.match(line):
                i += 1
                continue
            cells = _cells(line)
            if not header and i + 1 < n and _TABLE_RULE.match(lines[i + 1]):
                header = cells
                i += 1
                continue
            if len(cells) == 2 or not header:
                body = f"{cells[0]}: {', '.join(c for c in cells[1:] if c)}"
            else:
                body = f"{cells[0]}: " + "; ".join(
                    f"{h}: {c}" for h, c in zip(header[1:], cells[1:], strict=False) if c
                )
            emit(_sentence(body), i, i)
            i += 1
            continue
        item = _ITEM.match(line) if markdown else None
        if item:
            first, body = i, [item.group(1)]
            i += 1
            while i < n and lines[i].strip() and lines[i].startswith((" ", "\t")) and not _ITEM.match(lines[i]):
                body.append(lines[i].strip())
                i += 1
            words = _inline(" ".join(body))
            for window in _windows(split_sentences(words) or [words], max_words):
                emit(_sentence(" ".join(window)), first, i - 1)
            continue
        if (
            not markdown
            and not title
            and not out
            and start is None
            and len(stripped.split()) <= 12
            and not re.search(r"[.!?]$", stripped)
        ):
            title = _inline(stripped)
            i += 1
            continue
        if start is None:
            start = i
        i += 1
    if start is not None:
        flush_paragraph(start, n - 1)
    return out


def load_passages(documents: Any, max_words: int = MAX_WORDS) -> list[Passage]:
    """Passages of every document (paths, folders, texts or a ``datasets.Dataset``, as
    :func:`~adaptive_moe.documents.load_documents` reads them)."""
    passages = []
    for source, text, markdown in load_documents(documents):
        passages += document_passages(text, source.name, markdown=markdown, max_words=max_words)
    if not passages:
        raise InvalidInputError("the documents hold no passage of text to index")
    return passages
