"""Input checks shared by the numeric modules (calibration, evaluation metrics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError


def as_labels(values: Any, name: str = "correct") -> np.ndarray:
    """``values`` as a non-empty 1-D bool array; accepts bools or the numbers 0 and 1 only."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name}: expected a 1-D sequence of labels, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{name}: empty; need at least one label")
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise InvalidInputError(f"{name}: labels must be bool or 0/1, got values of type {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        shown = ", ".join(repr(v.item()) for v in np.unique(arr[bad])[:5])
        raise InvalidInputError(f"{name}: labels must be bool or 0/1 (1 = base answer right); got {shown}")
    return arr.astype(bool)


def as_finite(values: Any, name: str, *, allow_scalar: bool = False) -> np.ndarray:
    """``values`` as a non-empty float64 array of finite numbers; 1-D unless ``allow_scalar`` (then any shape)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: expected numbers, got {type(values).__name__}") from None
    if not allow_scalar and arr.ndim != 1:
        raise InvalidInputError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{name}: empty; need at least one value")
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.flatnonzero(bad.ravel())
        raise InvalidInputError(
            f"{name}: {where.size} value(s) are NaN or infinite (first at index {int(where[0])}: "
            f"{arr.ravel()[where[0]]}); values must be finite"
        )
    return arr
