"""Name -> class tables for the classes users extend (expert kinds, estimators, routers)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, InvalidInputError, UnknownNameError


def register_class(table: dict[str, type], cls: Any, base: type, attr: str, what: str) -> Any:
    """Put ``cls`` (a subclass of ``base``) into ``table`` under ``getattr(cls, attr)``, a short identifier.
    Re-registering the same class (or a redefinition of it, as in a reloaded notebook cell) is allowed;
    another class under a taken name is an error."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise InvalidInputError(f"registering a {what} takes a {base.__name__} subclass, got {cls!r}")
    key = getattr(cls, attr, None)
    if not isinstance(key, str) or not key.isidentifier():
        raise ConfigError(f"{cls.__name__}.{attr} must be a short identifier such as 'my_{what}', got {key!r}")
    existing = table.get(key)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ConfigError(f"{what} {attr} {key!r} is already registered by {existing.__name__}")
    table[key] = cls
    return cls


def lookup_class(table: dict[str, type], name: Any, what: str) -> type:
    """The class registered as ``name``; unknown names list the registered ones."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownNameError(what, str(name), table) from None
