"""Reading the user's documents: files (``.txt``, ``.md``, ``.jsonl`` with a ``"text"`` field per line),
folders of such files, raw strings or a ``datasets.Dataset`` with a ``"text"`` column, each with its
:class:`Source` (name, size, SHA-256); Markdown reduced to its prose; text split into passages and
sentences. Expert creation builds its training data on these, and anything that cites a document's
passages can too."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, ModelNotFoundError

__all__ = ["DOCUMENT_SUFFIXES", "Source", "load_documents", "markdown_to_text", "split_passages", "split_sentences"]

DOCUMENT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".jsonl")
_MARKDOWN = (".md", ".markdown")

# Abbreviations after which a period does not end a sentence (case-sensitive: "St." but not "st.").
_ABBREVIATIONS = frozenset(
    [
        "Dr",
        "Mr",
        "Mrs",
        "Ms",
        "St",
        "Mt",
        "Ft",
        "Jr",
        "Sr",
        "Prof",
        "Capt",
        "Gen",
        "Col",
        "Lt",
        "Sgt",
        "Rev",
        "Hon",
        "No",
        "Nos",
        "vs",
        "etc",
        "approx",
        "ca",
        "c",
        "Inc",
        "Ltd",
        "Co",
        "Corp",
        "Bros",
        "Ave",
        "Rd",
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Sept",
        "Oct",
        "Nov",
        "Dec",
        "fig",
        "vol",
        "pp",
        "cf",
        "al",
    ]
)
_DOTTED = re.compile(r"(?:[A-Za-z]\.){2,}$")  # e.g. i.e. U.S.


@dataclass(frozen=True)
class Source:
    """Where one document came from: ``name`` (a path, ``path:line`` for JSON lines, ``text[i]`` or
    ``dataset[i]``), its size in characters and the SHA-256 of its text."""

    name: str
    chars: int
    sha256: str


# -- reading documents ----------------------------------------------------------------------------
def load_documents(documents: Any) -> list[tuple[Source, str, bool]]:
    """(source, text, is_markdown) per document; see the module docstring for what ``documents`` may be."""
    if documents is None:
        raise InvalidInputError("no documents given; pass file paths, folders, texts or a datasets.Dataset")
    try:
        import datasets

        if isinstance(documents, datasets.Dataset):
            if "text" not in documents.column_names:
                raise InvalidInputError(
                    f"the dataset has columns {documents.column_names}; a 'text' column is required"
                )
            return [_text_document(t, f"dataset[{i}]") for i, t in enumerate(documents["text"])]
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    if isinstance(documents, (str, Path)):
        documents = [documents]
    out: list[tuple[Source, str, bool]] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, Path) or (isinstance(doc, str) and _looks_like_path(doc)):
            out += _path_documents(Path(doc).expanduser())
        elif isinstance(doc, str):
            out.append(_text_document(doc, f"text[{i}]"))
        else:
            raise InvalidInputError(f"document {i} has type {type(doc).__name__}; give a path or a string")
    if not out:
        raise InvalidInputError("no documents given; pass file paths, folders, texts or a datasets.Dataset")
    return out


def _looks_like_path(text: str) -> bool:
    """A one-line string that names a file ("notes.md", "docs/guild") rather than being prose."""
    if "\n" in text or len(text) > 1024 or not text.strip():
        return False
    text = text.strip()
    if re.search(r"\.[A-Za-z][A-Za-z0-9]{0,7}$", text) and not re.search(r"\s\S+\s", text):
        return True  # "notes.md", "my notes.txt"; prose has more than two words
    return bool(re.search(r"[/\\]", text)) and not re.search(r"[.!?]\s", text) and Path(text).suffix != "."


def _text_document(text: Any, name: str, markdown: bool = False) -> tuple[Source, str, bool]:
    if not isinstance(text, str):
        raise InvalidInputError(f"document {name} is a {type(text).__name__}, not text")
    if "\x00" in text:
        raise InvalidInputError(f"document {name} holds NUL bytes: it looks binary; give UTF-8 text")
    if not text.strip():
        raise InvalidInputError(f"document {name} is empty")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Source(name, len(text), digest), text, markdown


def _path_documents(path: Path) -> list[tuple[Source, str, bool]]:
    if not path.exists():
        raise ModelNotFoundError(f"document path {str(path)!r} does not exist")
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )  # fmt: skip
        if not files:
            raise InvalidInputError(f"folder {str(path)!r} holds no {'/'.join(DOCUMENT_SUFFIXES)} files")
        return [doc for f in files for doc in _path_documents(f)]
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_SUFFIXES:
        raise InvalidInputError(
            f"document {str(path)!r} has an unsupported extension {suffix or '(none)'!r}; "
            f"allowed: {', '.join(DOCUMENT_SUFFIXES)}"
        )
    data = path.read_bytes()
    if b"\x00" in data:
        raise InvalidInputError(f"document {str(path)!r} is a binary file (it holds NUL bytes); give UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"document {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if suffix != ".jsonl":
        return [_text_document(text, str(path), markdown=suffix in _MARKDOWN)]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or "text" not in record:
            raise InvalidInputError(f"{path}:{n}: each line must be a JSON object with a 'text' field")
        out.append(_text_document(record["text"], f"{path}:{n}"))
    if not out:
        raise InvalidInputError(f"document {str(path)!r} is empty")
    return out


# -- prose ----------------------------------------------------------------------------------------
def markdown_to_text(text: str) -> str:
    """Markdown reduced to prose: code blocks dropped (code is not prose a question can come from), heading
    markers, emphasis, links, images, HTML and tables removed, list items kept as sentences of their own.
    Headings and rules become paragraph breaks."""
    text = re.sub(r"(?ms)^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", "\n\n", text)  # fenced code blocks
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if re.match(r"^#{1,6}\s", stripped) or re.fullmatch(r"[-*_=]{3,}", stripped):
            lines += ["", ""]  # a heading or a rule ends the paragraph; its words are no sentence
            continue
        if re.match(r"^\[[^\]]+\]:\s*\S+", stripped) or re.fullmatch(r"\|.*\|", stripped):
            continue  # link reference definitions, table rows
        if line.startswith(("    ", "\t")) and not re.match(r"\s*(?:[-*+]|\d+[.)])\s", line):
            continue  # indented code
        stripped = re.sub(r"^>\s?", "", stripped)
        item = re.match(r"^(?:[-*+]|\d+[.)])\s+(.*)", stripped)
        if item:  # a list item is a sentence of its own
            body = item.group(1).strip()
            lines.append(body if re.search(r"[.!?:]$", body) else body + ".")
            lines.append("")
            continue
        lines.append(stripped)
    text = "\n".join(lines)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)  # images
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # [text](url)
    text = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", text)  # [text][ref]
    text = re.sub(r"<https?://[^>]+>", " ", text)
    text = re.sub(r"</?(?:b|i|em|strong|span|a|u|code|small|sup|sub|mark)\b[^>]*>", "", text)  # inline HTML
    text = re.sub(r"</?[A-Za-z][^>]*>", " ", text)  # other HTML tags
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\w)", r"\1", text)
    text = re.sub(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)", r"\1", text)
    return text


def split_passages(text: str) -> list[list[str]]:
    """Paragraphs (split at blank lines), each a list of sentences."""
    passages = []
    for block in re.split(r"\n\s*\n", text):
        sentences = split_sentences(block)
        if sentences:
            passages.append(sentences)
    return passages


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph. A period ends a sentence when an upper-case letter, digit or quote follows,
    except after an abbreviation ("Dr.", "St.", "e.g."), an initial ("J. R. Tolliver") or inside a number
    ("3.5")."""
    text = re.sub(r"\s+", " ", text).strip()
    out, start = [], 0
    for m in re.finditer(r"[.!?]+[\"')\]”’]*(?=\s+[\"'(“‘]?[A-Z0-9])", text):
        before = text[start : m.start()].split()
        word = before[-1] if before else ""
        if m.group().startswith(".") and (
            word.rstrip(".") in _ABBREVIATIONS
            or _DOTTED.search(word + ".")
            or re.fullmatch(r"[A-Z]", word)  # an initial
        ):
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return [s for s in out if re.search(r"[^\W\d_]", s)]
