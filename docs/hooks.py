"""MkDocs hook: the configuration reference is generated from the config dataclasses at build time, so
it cannot drift from the code."""

from __future__ import annotations

MARKER = "<!-- config-reference -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the marker on the configuration page with a table of every key, default and help text."""
    if MARKER not in markdown:
        return markdown
    from adaptive_moe.config import config_help

    rows = ["| key | default | what it does |", "|---|---|---|"]
    for key, default, help_text in config_help():
        cell = help_text.replace("|", "\\|")
        rows.append(f"| `{key}` | `{default}` | {cell} |")
    return markdown.replace(MARKER, "\n".join(rows))
