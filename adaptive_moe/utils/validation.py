"""Input checks shared by the numeric modules (calibration, routing metrics)."""

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
