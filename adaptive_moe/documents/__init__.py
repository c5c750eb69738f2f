"""The user's documents: reading them (files, folders, texts, datasets; Markdown reduced to prose; sentences)
and cutting them into passages an expert can retrieve and cite."""

from .passages import Passage, document_passages, load_passages
from .reading import DOCUMENT_SUFFIXES, Source, load_documents, markdown_to_text, split_passages, split_sentences

__all__ = [
    "DOCUMENT_SUFFIXES",
    "Passage",
    "Source",
    "document_passages",
    "load_documents",
    "load_passages",
    "markdown_to_text",
    "split_passages",
    "split_sentences",
]
