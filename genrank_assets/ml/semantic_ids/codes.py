"""The semantic_ids table's columns: `song_id, l1, l2, ... lL`, one integer column per code level."""
from __future__ import annotations

import numpy as np
import pandas as pd


def code_columns(n_levels: int) -> list[str]:
    return [f"l{i}" for i in range(1, n_levels + 1)]


def codes_to_frame(song_ids, codes: np.ndarray) -> pd.DataFrame:
    """The semantic_ids table from song ids and codes (n, L)."""
    cols = code_columns(codes.shape[1])
    return pd.DataFrame({"song_id": list(song_ids), **{c: codes[:, i] for i, c in enumerate(cols)}})


def codes_from_frame(df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """(song_ids, codes (n, L)) from the semantic_ids table."""
    cols = sorted((c for c in df.columns if c.startswith("l") and c[1:].isdigit()), key=lambda c: int(c[1:]))
    return [str(s) for s in df["song_id"]], df[cols].to_numpy(dtype=np.int64)
