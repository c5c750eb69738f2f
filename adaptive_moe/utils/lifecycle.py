"""``with obj:`` for objects that hold something to release: the block closes them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, TypeVar

T = TypeVar("T", bound="Closable")


class Closable(ABC):
    """A base for objects with a :meth:`close`: ``with obj as o:`` gives the object and closes it at the end."""

    @abstractmethod
    def close(self) -> None:
        """Release what the object holds (idempotent)."""

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
