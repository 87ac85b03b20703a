"""Argument checks that several ml/ modules share, each written once."""
from __future__ import annotations

import numpy as np


def check_k(k: int, name: str = "k") -> int:
    """``k`` as given when it is an integer >= 1 (not a bool); a ValueError naming ``name`` otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)
