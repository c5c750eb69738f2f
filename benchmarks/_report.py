"""Shared output helpers for the benchmark scripts: JSON + Markdown, and matplotlib when present."""

from __future__ import annotations

import json
from pathlib import Path


def write_json_and_markdown(out: Path, name: str, result: dict, lines: list[str]) -> None:
    """Write ``{name}.json`` (the raw result) and ``{name}.md`` (the report lines) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
