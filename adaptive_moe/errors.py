"""One exception root for everything the library raises on purpose.

Every class derives from :class:`AdaptiveMoEError` *and* from the built-in that fits, so callers can
catch either ``AdaptiveMoEError`` or the built-in they already expect (``ValueError``, ``KeyError``…).
"""

from __future__ import annotations

from collections.abc import Iterable


class AdaptiveMoEError(Exception):
    """Root of every exception adaptive_moe raises on purpose."""


class ConfigError(AdaptiveMoEError, ValueError):
    """A configuration value or file is invalid. ``problems`` lists every bad field at once."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class InvalidInputError(AdaptiveMoEError, ValueError):
    """An argument given to a library call is invalid (empty prompt, wrong type, bad value)."""


class UnsupportedPrecisionError(AdaptiveMoEError, ValueError):
    """The requested precision cannot run on the chosen device."""


class UnknownNameError(AdaptiveMoEError, KeyError):
    """An unknown expert, estimator, router or strategy name. The message lists the known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        shown = ", ".join(repr(k) for k in self.known) or "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; registered: {shown}")

    def __str__(self) -> str:  # KeyError would otherwise print the message quoted
        return str(self.args[0])


class ModelNotFoundError(AdaptiveMoEError, FileNotFoundError):
    """A model, file or folder the library was asked to open does not exist."""


class OutputExistsError(AdaptiveMoEError, FileExistsError):
    """An output folder exists and the call was not told to overwrite it."""


class ConversionError(AdaptiveMoEError, RuntimeError):
    """Converting the embedded model into the cache failed (unreadable GGUF, full or read-only disk)."""


class IncompatibleExpertError(AdaptiveMoEError, ValueError):
    """An expert does not fit the base model (other base, modules the base lacks, other shapes)."""


class CorruptExpertError(AdaptiveMoEError, ValueError):
    """An expert's files on disk cannot be read (truncated or corrupt weights, unreadable card)."""


class ModelBusyError(AdaptiveMoEError, RuntimeError):
    """The base model is in a state that forbids the call (for example experts resident in a pool
    while a LoRA is trained on the same base)."""


class MissingDependencyError(AdaptiveMoEError, ImportError):
    """An optional dependency is missing. The message says what to install."""


def missing_dependency(package: str, extra: str | None = None, purpose: str = "") -> MissingDependencyError:
    """Build the error for a missing optional dependency, naming the install command."""
    how = f"pip install 'adaptive-moe[{extra}]'" if extra else f"pip install {package}"
    why = f" for {purpose}" if purpose else ""
    return MissingDependencyError(f"{package} is required{why} but is not installed; run: {how}")
