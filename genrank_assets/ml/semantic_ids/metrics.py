"""The quality of semantic-ID codes, for any quantizer: reconstruction, code usage per level, coverage and collisions,
level-1 cluster quality and neighbour agreement (``semantic_id_metrics``), and the same as tables
(``semantic_id_tables``)."""
from __future__ import annotations

import math

import numpy as np

from genrank_assets.ml.semantic_ids.codes import code_space_of
from genrank_assets.ml.semantic_ids.rq_kmeans import check_matrix


def semantic_id_metrics(
    X: np.ndarray,
    codes: np.ndarray,
    model=None,
    sample_size: int = 5000,
    seed: int = 0,
    neighbour_k: int = 10,
    top_collisions: int = 10,
) -> dict:
    """Quality of semantic-ID ``codes`` (int ``(n, L)``, row i belongs to ``X[i]``) as a JSON-ready dict.

    ``model`` is anything with ``decode(codes) -> (n, dim)`` (an ``RQKMeans``, or an adapter around another
    quantizer) and optionally ``levels`` (the codebook size of each level); ``None`` skips the reconstruction
    error. Keys:

    * ``relative_reconstruction_error``: mean / median / p90 of ``||x - decode(code)|| / ||x||``;
    * ``levels``: per code column, the codebook size, codes used, usage (used / size), entropy of the column
      normalised by ``log(size)``, distinct prefixes up to this column, entropy of those prefixes normalised by
      ``log(min(n, prod(sizes)))``, and max / mean songs per prefix (the cluster sizes of that level);
    * ``unique_code_coverage`` (distinct full codes / songs), ``share_songs_on_own_code``,
      ``max_songs_per_code``, ``largest_collisions`` (the ``top_collisions`` biggest shared codes with their
      song row indices), ``used_l1_l2_prefixes``;
    * ``level1_cluster_quality``: Calinski-Harabasz, Davies-Bouldin and silhouette (sklearn) of the level-1
      labels on a seeded sample of ``sample_size`` songs;
    * ``neighbour_agreement``: for a seeded sample of songs, the share of their ``neighbour_k`` nearest
      neighbours (cosine, faiss, the song itself excluded) with the same level-1 code and the same
      level-1+2 prefix, with the share expected by chance (sum over codes of (songs on it / n)^2) beside it.
    """
    X = check_matrix(X, "X")
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) != len(X) or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be an int array (n={len(X)}, L), got shape {codes.shape} {codes.dtype}")
    if sample_size < 2 or neighbour_k < 1:
        raise ValueError(f"need sample_size >= 2 and neighbour_k >= 1, got {sample_size}, {neighbour_k}")
    n, n_columns = codes.shape
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(sample_size, n), replace=False))
    sizes = _column_sizes(codes, model)

    _, prefix_ids = _prefix_ids(codes)
    full_ids = prefix_ids[-1]
    songs_per_code = np.bincount(full_ids)
    metrics = {
        "n_songs": int(n),
        "n_columns": int(n_columns),
        "relative_reconstruction_error": _reconstruction_error(X, codes, model),
        "levels": [_level_summary(codes[:, c], prefix_ids[c], sizes, c, n) for c in range(n_columns)],
        "unique_code_coverage": float(len(songs_per_code) / n),
        "distinct_codes": len(songs_per_code),
        "share_songs_on_own_code": float((songs_per_code[full_ids] == 1).mean()),
        "max_songs_per_code": int(songs_per_code.max()),
        "mean_songs_per_code": float(n / len(songs_per_code)),
        "largest_collisions": _largest_collisions(codes, full_ids, songs_per_code, top_collisions),
        "used_l1_l2_prefixes": int(prefix_ids[1].max() + 1) if n_columns > 1 else None,
        "level1_cluster_quality": _cluster_quality(X[sample], codes[sample, 0]),
        "neighbour_agreement": _neighbour_agreement(X, prefix_ids, sample, neighbour_k),
    }
    return metrics


def semantic_id_tables(metrics: dict) -> dict:
    """pandas tables of ``semantic_id_metrics``: ``summary`` (one row), ``levels``, ``collisions``."""
    import pandas as pd

    recon = metrics["relative_reconstruction_error"] or {}
    agreement = metrics["neighbour_agreement"]
    quality = metrics["level1_cluster_quality"] or {}
    summary = pd.DataFrame([{
        "songs": metrics["n_songs"], "distinct_codes": metrics["distinct_codes"],
        "unique_code_coverage": metrics["unique_code_coverage"],
        "share_songs_on_own_code": metrics["share_songs_on_own_code"],
        "max_songs_per_code": metrics["max_songs_per_code"],
        "rel_recon_error_mean": recon.get("mean"), "used_l1_l2_prefixes": metrics["used_l1_l2_prefixes"],
        "nn_share_same_l1": agreement["level_1"], "nn_share_same_l1_l2": agreement.get("level_1_2"),
        **{f"l1_{k}": v for k, v in quality.items()},
    }])
    levels = pd.DataFrame(metrics["levels"])
    collisions = pd.DataFrame([(tuple(c["code"]), c["songs"], c["song_indices"]) for c in metrics["largest_collisions"]],
                              columns=["code", "songs", "song_indices"])
    return {"summary": summary, "levels": levels, "collisions": collisions}


def _column_sizes(codes: np.ndarray, model) -> list[int]:
    """Codebook size of each column: the model's levels, else (and for a disambiguation column) max + 1."""
    observed = code_space_of(codes)
    levels = list(getattr(model, "levels", ()) or ())
    return [max(levels[c], observed[c]) if c < len(levels) else observed[c] for c in range(codes.shape[1])]


def _prefix_ids(codes: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For each column c, a dense id of the prefix ``codes[:, :c + 1]`` per row."""
    keys, ids = [], []
    current = np.zeros(len(codes), dtype=np.int64)
    for c in range(codes.shape[1]):
        pairs = np.stack([current, codes[:, c].astype(np.int64)], axis=1)
        uniq, current = np.unique(pairs, axis=0, return_inverse=True)
        current = current.reshape(-1)
        keys.append(uniq)
        ids.append(current)
    return keys, ids


def _normalised_entropy(counts: np.ndarray, size: int) -> float:
    if size <= 1:
        return 0.0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(size))


def _level_summary(column, prefix_id, sizes, c, n) -> dict:
    used = np.bincount(column.astype(np.int64))
    per_prefix = np.bincount(prefix_id)
    prefix_space = min(n, math.prod(sizes[: c + 1]))
    return {"level": c + 1, "size": int(sizes[c]), "used_codes": int((used > 0).sum()),
            "usage": float((used > 0).sum() / sizes[c]), "entropy_norm": _normalised_entropy(used, sizes[c]),
            "prefixes": len(per_prefix), "prefix_entropy_norm": _normalised_entropy(per_prefix, prefix_space),
            "max_cluster_size": int(per_prefix.max()), "mean_cluster_size": float(per_prefix.mean())}


def _reconstruction_error(X, codes, model) -> dict | None:
    if model is None:
        return None
    recon = np.asarray(model.decode(codes), dtype=np.float32)
    rel = np.linalg.norm(X - recon, axis=1) / np.maximum(np.linalg.norm(X, axis=1), 1e-12)
    return {"mean": float(rel.mean()), "median": float(np.median(rel)), "p90": float(np.percentile(rel, 90))}


def _largest_collisions(codes, full_ids, songs_per_code, top) -> list[dict]:
    shared = np.flatnonzero(songs_per_code > 1)
    biggest = shared[np.argsort(-songs_per_code[shared], kind="stable")][:top]
    out = []
    for code_id in biggest:
        members = np.flatnonzero(full_ids == code_id)
        out.append({"code": [int(v) for v in codes[members[0]]], "songs": len(members),
                    "song_indices": [int(i) for i in members]})
    return out


def _cluster_quality(points: np.ndarray, labels: np.ndarray) -> dict | None:
    """sklearn cluster-validity scores of the level-1 labels; None when they are undefined (1 or n labels)."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= len(points) - 1:
        return None
    return {"calinski_harabasz": float(calinski_harabasz_score(points, labels)),
            "davies_bouldin": float(davies_bouldin_score(points, labels)),
            "silhouette": float(silhouette_score(points, labels))}


def _neighbour_agreement(X, prefix_ids, sample, k) -> dict:
    import faiss

    unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    k = min(k, len(X) - 1)
    result = {"k": int(k), "queries": len(sample)}
    if k < 1:
        return result | {"level_1": None}
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    _, found = index.search(unit[sample], k + 1)
    neighbours = np.array([_drop_self(row, q, k) for row, q in zip(found, sample)])
    for c, name in ((0, "level_1"), (1, "level_1_2")):
        if c >= len(prefix_ids):
            continue
        ids = prefix_ids[c]
        result[name] = float((ids[neighbours] == ids[sample][:, None]).mean())
        share = np.bincount(ids) / len(ids)
        result[f"{name}_by_chance"] = float((share**2).sum())
    return result


def _drop_self(row: np.ndarray, query: int, k: int) -> np.ndarray:
    row = row[(row != query) & (row >= 0)]
    return row[:k]
