"""The expert card: ``expert.json`` beside an expert's files, saying what the expert is, what it was
made from and for which base, and how well it did."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import CorruptExpertError, InvalidInputError
from ..utils.io import atomic_write_text

CARD_FILE = "expert.json"
CARD_SCHEMA = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_expert_name(name: Any) -> str:
    """An expert name becomes a folder name, so it may not leave the registry: 1 to 64 characters,
    letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit, no ``..``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidInputError(
            f"invalid expert name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit, without '..' or path separators"
        )
    return name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ExpertCard:
    """What ``expert.json`` holds.

    Attributes:
        name: the expert's name (also its folder in the registry).
        domain: what the expert covers, in words (used in reports and by matchers).
        kind: which :class:`~adaptive_moe.experts.Expert` class loads it (``"lora"`` by default).
        version: 1 for the first expert of this name, then 2, 3…
        base_fingerprint: fingerprint of the base it was made for; ``None`` for an imported adapter
            whose base was not checked (it is then checked by module names and shapes only).
        base_name: the base model's name, for people reading the card.
        lora: the LoRA settings (rank, alpha, target modules…).
        data: training-data provenance (hash, example counts).
        metrics: evaluation results (domain and general accuracy…).
        weights_sha256: hash of the weights file, checked by :meth:`ExpertRegistry.verify`.
        weights_bytes: size of the weights file.
        created: ISO time the card was written.
        extra: anything else (kept as given).
    """

    name: str
    domain: str = ""
    kind: str = "lora"
    version: int = 1
    base_fingerprint: str | None = None
    base_name: str | None = None
    lora: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None
    weights_bytes: int | None = None
    created: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_expert_name(self.name)
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise InvalidInputError(f"expert version must be an integer >= 1, got {self.version!r}")
        if not isinstance(self.domain, str):
            raise InvalidInputError(f"expert domain must be a string, got {type(self.domain).__name__}")
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidInputError(f"expert kind must be a non-empty string, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``expert.json`` holds)."""
        return {"schema": CARD_SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpertCard:
        """A card from :meth:`to_dict`'s form; unknown keys go to ``extra``."""
        if not isinstance(data, dict):
            raise InvalidInputError(f"an expert card is a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"schema"})
        extra = dict(data.get("extra") or {})
        extra.update({k: data[k] for k in unknown})  # newer cards keep their fields rather than losing them
        return cls(**{k: v for k, v in data.items() if k in known and k != "extra"}, extra=extra)

    def save(self, folder: Path) -> Path:
        """Write ``expert.json`` into ``folder`` atomically; returns its path."""
        path = Path(folder) / CARD_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> ExpertCard:
        """Read ``expert.json`` from ``folder`` (:class:`CorruptExpertError` when it is unreadable)."""
        path = Path(folder) / CARD_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise CorruptExpertError(f"expert folder {str(folder)!r} has no {CARD_FILE}") from None
        except (ValueError, TypeError) as e:
            raise CorruptExpertError(f"unreadable expert card {str(path)!r}: {e}") from None

    def summary(self) -> str:
        """One line: name, version, kind, domain, size."""
        acc = self.metrics.get("domain_accuracy")
        shown = f", domain accuracy {acc:.2f}" if isinstance(acc, int | float) else ""
        return f"{self.name} v{self.version} ({self.kind}): {self.domain or 'no description'}{shown}"
