"""One name table type for everything users extend by name: routers, estimators, integrators, expert
kinds, calibrators, matchers, scorers and embedders.

Every table works the same way (PEFT's ``register_peft_method`` is the model): one ``register`` with one
name rule, one uniqueness check and one error style, and one ``get`` whose error lists the registered
names.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from ..errors import ConfigError, InvalidInputError, UnknownNameError

T = TypeVar("T")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")
_FROM_KEY: Any = object()  # register() without a name: the name is the class's key attribute


class RegistrationError(ConfigError, InvalidInputError):
    """A registration was refused: not the right kind of class, a bad name, or a name another class holds."""


class Registry(Generic[T]):
    """A table of names to classes (or, with ``base=None``, to factories), filled by :meth:`register`.

    Args:
        what: what the table holds, in words ("router", "scorer"), used in every message.
        base: entries must be concrete subclasses of it; ``None``: any callable (a factory).
        key: the class attribute that names a class when :meth:`register` is given no name (``"name"``;
            expert kinds use ``"kind"``).
    """

    def __init__(self, what: str, base: type | None = None, *, key: str = "name") -> None:
        self.what, self.base, self.key = what, base, key
        self._table: dict[str, T] = {}

    def register(self, obj: T, name: Any = _FROM_KEY, *, overwrite: bool = False) -> T:
        """Put ``obj`` under ``name`` (default: its ``key`` attribute) and return it, so it works as a class
        decorator. The name is a short lowercase identifier (``[a-z][a-z0-9_]*``). Registering the same
        object again, or a redefinition of it (same qualified name, as a re-run notebook cell makes), is
        allowed; another object under a taken name is refused unless ``overwrite``.

        Raises:
            RegistrationError: (a ``ValueError``) naming what was wrong and what is allowed.
        """
        self._check_kind(obj)
        if name is _FROM_KEY:
            name = getattr(obj, self.key, None)
            where = f"{getattr(obj, '__name__', obj)}.{self.key}"
        else:
            where = f"{self.what} name"
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise RegistrationError(
                f"{where} must be a short lowercase identifier ([a-z][a-z0-9_]*) such as 'my_{self.what.split()[-1]}', "
                f"got {name!r}"
            )
        existing = self._table.get(name)
        if existing is not None and not overwrite and not _same(existing, obj):
            raise RegistrationError(
                f"{self.what} {name!r} is already registered ({getattr(existing, '__name__', existing)}); choose "
                "another name or pass overwrite=True to replace it"
            )
        self._table[name] = obj
        return obj

    def _check_kind(self, obj: Any) -> None:
        if self.base is None:
            if not callable(obj):
                raise RegistrationError(f"a {self.what} factory must be callable, got {obj!r}")
            return
        if not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise RegistrationError(f"registering a {self.what} takes a {self.base.__name__} subclass, got {obj!r}")
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise RegistrationError(f"{obj.__name__} is abstract; implement {missing} before registering it")

    def get(self, name: Any) -> T:
        """The entry registered as ``name``; an unknown name raises :class:`UnknownNameError` (a
        ``KeyError``) listing the registered ones."""
        try:
            return self._table[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.what, str(name), self._table) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._table)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (unknown names raise :class:`UnknownNameError`)."""
        self.get(name)
        del self._table[name]

    def copy(self) -> Registry[T]:
        """A new table with the same entries (tests swap one in and restore the original)."""
        new = Registry(self.what, self.base, key=self.key)
        new._table = dict(self._table)
        return new

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._table))

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self.names()})"


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    both_classes = isinstance(a, type) and isinstance(b, type)
    return both_classes and (a.__qualname__, a.__module__) == (b.__qualname__, b.__module__)


__all__ = ["NAME_PATTERN", "RegistrationError", "Registry"]
