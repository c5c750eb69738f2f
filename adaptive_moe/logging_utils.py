"""Opt-in logging set-up. Importing adaptive_moe never configures the root logger; the package logger
``adaptive_moe`` only gets a ``NullHandler`` until :func:`setup_logging` is called."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

PACKAGE_LOGGER = "adaptive_moe"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_COLOURS = {"DEBUG": "\033[2m", "INFO": "\033[36m", "WARNING": "\033[33m", "ERROR": "\033[31m", "CRITICAL": "\033[41m"}
_RESET = "\033[0m"


class _ColourFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        colour = _COLOURS.get(record.levelname)
        return f"{colour}{text}{_RESET}" if colour else text


def setup_logging(
    level: int | str = "INFO",
    file: str | os.PathLike[str] | None = None,
    *,
    max_bytes: int = 5_000_000,
    backup_count: int = 3,
    colour: bool | None = None,
) -> logging.Logger:
    """Send the ``adaptive_moe`` logger to the console (coloured on a terminal) and optionally to a
    rotating file. Calling it again replaces the handlers it added before. Returns the logger."""
    from .errors import InvalidInputError

    logger = logging.getLogger(PACKAGE_LOGGER)
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise InvalidInputError(f"unknown log level {level!r}; allowed: DEBUG, INFO, WARNING, ERROR, CRITICAL")
        level = resolved
    for handler in [h for h in logger.handlers if getattr(h, "_adaptive_moe", False)]:
        logger.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    use_colour = colour if colour is not None else (sys.stderr.isatty() and "NO_COLOR" not in os.environ)
    console.setFormatter(_ColourFormatter(_FORMAT) if use_colour else logging.Formatter(_FORMAT))
    handlers: list[logging.Handler] = [console]
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
        )
        rotating.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(rotating)
    for handler in handlers:
        handler._adaptive_moe = True  # type: ignore[attr-defined]
        handler.setLevel(level)
        logger.addHandler(handler)
    logger.setLevel(level)
    return logger
