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


def metrics_frame(summary: dict, levels: pd.DataFrame) -> pd.DataFrame:
    """The semantic_id_metrics table: (metric, level, value) rows; level 0 holds the summary figures.

    The per-level rows include ``size``, the codebook size of each code column (the code space).
    """
    rows = [{"metric": k, "level": 0, "value": float(v)} for k, v in summary.items()]
    for rec in levels.to_dict("records"):
        rows += [{"metric": k, "level": int(rec["level"]), "value": float(v)} for k, v in rec.items() if k != "level"]
    return pd.DataFrame(rows, columns=["metric", "level", "value"])


def code_space(metrics: pd.DataFrame) -> list[int]:
    """Codebook size of each code column, read from the semantic_id_metrics table (the fitted model's levels)."""
    sizes = metrics[(metrics["metric"] == "size") & (metrics["level"] > 0)].sort_values("level")
    if sizes.empty:
        raise ValueError("semantic_id_metrics has no per-level `size` rows: rematerialise semantic_ids")
    return [int(v) for v in sizes["value"]]
