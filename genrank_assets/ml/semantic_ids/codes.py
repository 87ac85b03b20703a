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


def code_space_of(codes: np.ndarray) -> list[int]:
    """Codes each column can take: the fitted codebooks' sizes as the codes use them (max code + 1 per level).

    The generator's vocabulary holds one token per (level, code) of this space; it is published once, by the
    semantic_ids stage (in semantic_id_metrics), and read downstream with `code_space`."""
    return [int(v) + 1 for v in np.asarray(codes).max(axis=0)]


def metrics_frame(summary: dict, levels: pd.DataFrame, codes: np.ndarray) -> pd.DataFrame:
    """The semantic_id_metrics table: (metric, level, value) rows; level 0 holds the summary figures, and the
    per-level rows include ``code_space`` (`code_space_of`)."""
    rows = [{"metric": k, "level": 0, "value": float(v)} for k, v in summary.items()]
    for rec in levels.to_dict("records"):
        rows += [{"metric": k, "level": int(rec["level"]), "value": float(v)} for k, v in rec.items() if k != "level"]
    rows += [{"metric": "code_space", "level": i + 1, "value": float(n)} for i, n in enumerate(code_space_of(codes))]
    return pd.DataFrame(rows, columns=["metric", "level", "value"])


def code_space(metrics: pd.DataFrame) -> list[int]:
    """The code space per level, as the semantic_ids stage published it in semantic_id_metrics."""
    rows = metrics[metrics["metric"] == "code_space"].sort_values("level")
    if rows.empty:
        raise ValueError("semantic_id_metrics has no `code_space` rows: rematerialise semantic_ids")
    return [int(v) for v in rows["value"]]
