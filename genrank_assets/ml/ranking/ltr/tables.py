"""Stage `ranking`: the learning-to-rank tables of the pipeline (candidate pools, features) and the ablation
subsets, from the plain API of ``candidates.py`` / ``features.py`` / ``ranker.py`` (a thin adapter for the assets).

``build_tables`` builds each query's pool once (``build_pool``, one query at a time) and from it both tables:

* pools: split, playlist_id, song_id, then per source ``<source>_proposed`` / ``_score`` / ``_rank`` (NaN when
  the source did not rank or cannot score the song);
* features: split, playlist_id, song_id, the ``FEATURES`` columns (the one ``FeatureBuilder.features`` that
  serving calls too) and ``label`` (the song is in the query's playlist).

Queries must be playlists the sources were not fitted on (``check_not_in_training``): the LTR holdout (with
sources fitted on the train playlists less the holdout), val and test, never train. The ranker trains on the
``TRAINING_SPLITS`` rows (``training_rows``); test is scored once.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from genrank_assets.ml.data.corpus import HOLDOUT
from genrank_assets.ml.ranking.ltr.candidates import (
    CLASSICAL_SOURCES,
    SOURCES,
    CandidateSources,
    PoolConfig,
    build_pool,
    check_not_in_training,
    recall_ceiling,
)
from genrank_assets.ml.ranking.ltr.features import (
    CLASSICAL_FEATURES,
    CROSS_ENCODER_FEATURES,
    FEATURES,
    GENERATOR_FEATURES,
    MENTION_FEATURES,
    FeatureBuilder,
)
from genrank_assets.ml.ranking.ltr.ranker import LTRParams, LTRRanker, feature_matrix, ranked_with_fill

KEYS = ("split", "playlist_id", "song_id")
TRAINING_SPLITS = (HOLDOUT, "val")  # the rows the LTR ranker learns from (rounds by query-fold CV over them)

# ablation variant -> the features it ranks with (``without_generator`` / ``without_mention`` also drop that
# source's candidates: ``variant_rows``), of every feature; ``variants`` those of a ranker's own features
VARIANTS = {
    "ltr": FEATURES,
    "ltr_no_generator": tuple(f for f in FEATURES if f not in GENERATOR_FEATURES),
    "ltr_no_cross_encoder": tuple(f for f in FEATURES if f not in CROSS_ENCODER_FEATURES),
    "ltr_no_classical": tuple(f for f in FEATURES if f not in CLASSICAL_FEATURES),
    "ltr_no_mention": tuple(f for f in FEATURES if f not in MENTION_FEATURES),
}


def variants(features: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The ablation variants of a ranker over ``features``: ``ltr`` (all of them), then each VARIANTS entry less
    what the ranker never had; a variant that would drop nothing (a ranker without the cross-encoder's features has
    no ``ltr_no_cross_encoder``) is left out."""
    features = tuple(features)
    out = {"ltr": features}
    for name, names in VARIANTS.items():
        kept = tuple(f for f in features if f in names)
        if name != "ltr" and len(kept) < len(features):
            out[name] = kept
    return out


def with_fold_rows(features: pd.DataFrame, fold_features, consume: bool = False) -> pd.DataFrame:
    """The features table and the cross-fitting folds' rows (split ``HOLDOUT``, each fold's own playlists), as one
    table: a playlist in two of them was scored twice, which would give it double weight and leak its label
    across the ranker's CV folds, so that is refused. ``consume``: the parts are emptied a column at a time as
    the table is built, so their rows are not held twice (a step's inputs: Dagster holds them until it returns)."""
    parts = [features, *fold_features]
    if len(parts) == 1:
        return features
    seen: set[str] = set()
    for part in parts:
        ids = set(part.loc[part["split"] == HOLDOUT, "playlist_id"].astype(str))
        twice = seen & ids
        if twice:
            raise ValueError(f"{len(twice)} playlists have ranking rows in two folds (e.g. {sorted(twice)[:3]}): "
                             "the folds must partition the train playlists")
        seen |= ids
    names = list(features.columns)
    if any(list(part.columns) != names for part in parts):  # other columns: pd.concat's union of them
        return pd.concat(parts, ignore_index=True)
    columns = {}
    for name in names:
        columns[name] = _joined([part[name] for part in parts])
        if consume:
            for part in parts:
                del part[name]
    return pd.DataFrame(columns, copy=False)


def _joined(columns: Sequence[pd.Series]) -> pd.Series:
    """One column of several tables, one after another. Categoricals (io_managers.read_batched's strings) join on
    the sorted union of their categories and stay categorical (pd.concat would fall back to one Python string
    per row when their categories differ, ~45% of a ranking table's memory)."""
    if all(isinstance(c.dtype, pd.CategoricalDtype) for c in columns):
        return pd.Series(union_categoricals(list(columns), sort_categories=True), name=columns[0].name)
    return pd.concat(columns, ignore_index=True)


def pool_frame(split: str, playlist_id: str, pool) -> pd.DataFrame:
    """One query's pool as rows of the candidate_pools table."""
    n = len(pool)
    columns: dict[str, object] = {"split": [split] * n, "playlist_id": [str(playlist_id)] * n,
                                  "song_id": list(pool.song_ids)}
    for source in SOURCES:
        columns[f"{source}_proposed"] = np.asarray(pool.proposed[source], dtype=bool)
        columns[f"{source}_score"] = np.asarray(pool.scores[source], dtype=np.float64)
        columns[f"{source}_rank"] = np.asarray(pool.ranks[source], dtype=np.float64)
    return pd.DataFrame(columns)


def build_tables(queries: Mapping[str, tuple[Sequence[str], Sequence[str], Mapping[str, set]]],
                 sources: CandidateSources, builder: FeatureBuilder, config: PoolConfig,
                 log_fn=None, with_pools: bool = True
                 ) -> tuple[pd.DataFrame | None, pd.DataFrame, dict[str, dict[str, float]]]:
    """(pools table, features table, recall ceiling per split) for ``queries``: split -> (qids, texts, truths).
    ``with_pools`` False: no pools table (None), for a caller that keeps only the features."""
    pool_parts, feature_parts, ceilings = [], [], {}
    for split, (qids, texts, truths) in queries.items():
        check_not_in_training(qids, sources)  # a playlist must not vote for itself
        pools = []
        for i, (qid, text) in enumerate(zip(qids, texts)):
            pool = build_pool(text, sources, config)
            pools.append(pool)
            if with_pools:
                pool_parts.append(pool_frame(split, qid, pool))
            frame = builder.features(pool)
            frame.insert(0, "playlist_id", str(qid))
            frame.insert(0, "split", split)
            frame["label"] = np.array([s in truths[qid] for s in pool.song_ids], dtype=np.float64)
            feature_parts.append(frame)
            if log_fn is not None and (i + 1) % 200 == 0:
                log_fn(f"{split}: {i + 1}/{len(qids)} pools")
        if pools:
            ceilings[split] = recall_ceiling(pools, [truths[q] for q in qids])
    if not feature_parts:
        raise ValueError("no queries to build pools for")
    pools = pd.concat(pool_parts, ignore_index=True) if with_pools else None
    return pools, pd.concat(feature_parts, ignore_index=True), ceilings


def _without(frame: pd.DataFrame, source: str, kept: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The rows one of the ``kept`` sources proposed (a boolean mask) and n_sources / q_pool_size recounted without
    ``source`` (arrays over every row of ``frame``; only the masked ones mean anything)."""
    keep = np.nansum([frame[f"{s}_proposed"].to_numpy() for s in kept], axis=0) > 0
    query = pd.factorize(frame["playlist_id"])[0]
    pool_size = np.bincount(query, weights=keep)[query]  # each query's kept rows
    return keep, {"n_sources": (frame["n_sources"] - frame[f"{source}_proposed"]).to_numpy(),
                  "q_pool_size": pool_size.astype(np.float64)}


def _pool_without_generator(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return _without(frame, "generator", CLASSICAL_SOURCES)


def _pool_without_mention(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return _without(frame, "mention", tuple(s for s in SOURCES if s != "mention"))


VARIANT_ROWS = {"ltr_no_generator": _pool_without_generator, "ltr_no_mention": _pool_without_mention}


def variant_view(name: str, frame: pd.DataFrame) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """The rows of ``frame`` the ablation ``name`` ranks, without copying them: (a boolean mask, None for every
    row; the columns it recounts, over every row), for ``fit_ranker``'s ``rows`` / ``columns``."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; one of {tuple(VARIANTS)}")
    return VARIANT_ROWS[name](frame) if name in VARIANT_ROWS else (None, {})


def _view_rows(frame: pd.DataFrame, keep: np.ndarray | None, columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The rows of a view (``variant_view``) as a table of their own."""
    if keep is None:
        return frame
    out = frame[keep].reset_index(drop=True)
    for column, values in columns.items():
        out[column] = values[keep]
    return out


def variant_rows(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the ablation ``name`` ranks, as a table."""
    return _view_rows(frame, *variant_view(name, frame))


def without_generator(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows some classical source proposed, n_sources / q_pool_size recounted without the generator (the
    pool the system would have without its generator; the generator's features are dropped by ``VARIANTS``)."""
    return _view_rows(frame, *_pool_without_generator(frame))


def without_mention(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows some other source proposed, n_sources / q_pool_size recounted without ``mention`` (the pool the
    system would have without recognising names; the mention features are dropped by ``VARIANTS``)."""
    return _view_rows(frame, *_pool_without_mention(frame))


def training_order(frame: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
    """The positions of ``frame``'s rows (those of the boolean mask ``rows``; None: all) in the order
    ``fit_ranker`` trains on them: by playlist_id, stable (``LTRRanker.oof_scores`` follow it). A categorical
    playlist_id with sorted categories (io_managers.read_batched's) sorts by its codes, in the same order."""
    ids = frame["playlist_id"]
    sorted_codes = isinstance(ids.dtype, pd.CategoricalDtype) and ids.cat.categories.is_monotonic_increasing
    keys = ids.cat.codes.to_numpy() if sorted_codes else ids.to_numpy()
    positions = np.arange(len(frame)) if rows is None else np.flatnonzero(rows)
    return positions[np.argsort(keys[positions], kind="stable")]


def fit_ranker(frame: pd.DataFrame, features: Sequence[str], params: LTRParams, rounds: int | None = None,
               rows: np.ndarray | None = None, columns: Mapping[str, np.ndarray] | None = None) -> LTRRanker:
    """LTRRanker on ``frame`` (feature rows of queries the sources never saw), rounds by query-fold CV; with
    ``rounds``, one fit of that many rounds (no CV, no out-of-fold scores). ``rows``: a boolean mask of the rows
    to train on (None: every row) and ``columns``: values over every row that replace those columns (an
    ablation's, ``variant_view``): the rows a caller would select are never copied as a table."""
    order = training_order(frame, rows)
    labels = frame["label"].to_numpy()[order]
    if not len(order) or labels.sum() == 0:
        raise ValueError("no positive (query, candidate) rows to train the ranker on: the pools hold no truth")
    model, queries = LTRRanker(list(features), params), frame["playlist_id"].to_numpy()[order]
    # the rows in training order as one float32 matrix, filled column by column: no sorted copy of the frame; not
    # held here, so that fit_rounds frees it once LightGBM has binned it
    if rounds is not None:
        return model.fit_rounds(feature_matrix(frame, model.feature_names, order, columns), labels, queries, rounds)
    return model.fit(feature_matrix(frame, model.feature_names, order, columns), labels, queries)


def rankings(frame: pd.DataFrame, scores: np.ndarray, fills: Mapping[str, Sequence[str]] | None = None,
             depth: int = 100) -> dict[str, list[str]]:
    """playlist_id -> its pool by score (best first), then its ``fills`` list without the pool's songs."""
    songs = frame["song_id"].to_numpy()
    scores = np.asarray(scores, dtype=np.float64)
    out = {}
    for qid, rows in frame.groupby("playlist_id", sort=False, observed=True).indices.items():
        fill = (fills or {}).get(qid, ())
        out[qid] = ranked_with_fill(list(songs[rows]), scores[rows], fill, max(depth, len(rows)))
    return out


def training_mask(features: pd.DataFrame) -> np.ndarray:
    """Which rows of the features table the LTR ranker is trained on (``TRAINING_SPLITS``)."""
    return features["split"].isin(TRAINING_SPLITS).to_numpy()


def training_rows(features: pd.DataFrame) -> pd.DataFrame:
    """The rows of the features table the LTR ranker is trained on (``TRAINING_SPLITS``), in table order (the
    table itself when it holds nothing else: a batched read of those splits is not copied again)."""
    keep = training_mask(features)
    if keep.all() and features.index.equals(pd.RangeIndex(len(features))):
        return features
    return features[keep].reset_index(drop=True)


def oof_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` in the order ``fit_ranker`` trained on (``LTRRanker.oof_scores`` are aligned with it)."""
    return frame.iloc[training_order(frame)].reset_index(drop=True)


__all__ = ["KEYS", "TRAINING_SPLITS", "VARIANTS", "build_tables", "fit_ranker", "oof_frame", "pool_frame",
           "rankings", "training_mask", "training_order", "training_rows", "variant_rows", "variant_view", "variants",
           "without_generator", "without_mention"]
