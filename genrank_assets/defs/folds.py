"""The cross-fitting folds of the code location: how many, their asset keys, and the config a fold step runs with.

Each fold ``k`` is a chain of assets under the key prefix ``fold_<k>`` (group ``crossfit``, built by
defs/crossfit.py): its corpus (``upstream_corpus`` with the fold's train playlists held out), the upstream models
fitted on it (word2vec, semantic IDs, TIGER, the cross-encoder, the catalogue) and the ranking features of the
fold's own playlists. The fold count shapes the asset graph, so it is a property of the code location
(``GENRANK_CROSSFIT_FOLDS``, default ml.data.corpus.CROSSFIT_FOLDS; 0 turns cross-fitting off); so is whether the
LTR ranker learns from the cross-encoder (``GENRANK_LTR_CROSS_ENCODER``, default
ml.ranking.ltr.features.LTR_CROSS_ENCODER: off), since with it every fold trains its own cross-encoder.

A fold step has no config of its own: it runs with the config of the served step it copies (this run's, or else
the run config that last materialised the served asset), so that the fold models are the served models fitted
on less data, never a differently tuned model whose features the ranker would learn to trust.
"""
from __future__ import annotations

import os

import dagster as dg

from genrank_assets.ml.data.corpus import CROSSFIT_FOLDS
from genrank_assets.ml.ranking.ltr.features import LTR_CROSS_ENCODER

FOLDS_ENV = "GENRANK_CROSSFIT_FOLDS"
CROSS_ENCODER_ENV = "GENRANK_LTR_CROSS_ENCODER"
FOLD_GROUP = "crossfit"


def crossfit_folds() -> int:
    """The fold count: ``GENRANK_CROSSFIT_FOLDS`` (0, or 2 and more), else CROSSFIT_FOLDS."""
    raw = os.environ.get(FOLDS_ENV, "").strip()
    if not raw:
        return CROSSFIT_FOLDS
    try:
        folds = int(raw)
    except ValueError:
        raise ValueError(f"{FOLDS_ENV} must be an integer (0: no cross-fitting, or >= 2), got {raw!r}") from None
    if folds == 1 or folds < 0:
        raise ValueError(f"{FOLDS_ENV} must be 0 (no cross-fitting) or >= 2, got {folds}")
    return folds


def ltr_cross_encoder() -> bool:
    """Whether the LTR ranker learns from the cross-encoder's features: ``GENRANK_LTR_CROSS_ENCODER`` (1 / 0,
    true / false), else LTR_CROSS_ENCODER."""
    raw = os.environ.get(CROSS_ENCODER_ENV, "").strip().lower()
    if not raw:
        return LTR_CROSS_ENCODER
    if raw not in ("1", "0", "true", "false"):
        raise ValueError(f"{CROSS_ENCODER_ENV} must be 1 / 0 (or true / false), got {raw!r}")
    return raw in ("1", "true")


def fold_prefix(fold: int) -> str:
    return f"fold_{fold}"


def fold_key(fold: int, name: str) -> dg.AssetKey:
    """The key of fold ``fold``'s copy of the asset ``name`` (``fold_0/song_vectors``)."""
    return dg.AssetKey([fold_prefix(fold), name])


def fold_ins(name: str, metadata: dict | None = None) -> dict[str, dg.AssetIn]:
    """``fold_<k>_<name>`` -> every fold's copy of ``name``: the inputs of a served asset that reads all folds
    (``metadata``: the IO manager's input metadata, e.g. io_managers.batched_read)."""
    return {f"{fold_prefix(k)}_{name}": dg.AssetIn(key=fold_key(k, name), metadata=metadata)
            for k in range(crossfit_folds())}


def sibling_key(context: dg.AssetExecutionContext, name: str) -> dg.AssetKey:
    """The asset ``name`` beside this step's asset: ``fold_0/song_vectors`` for a step of fold 0, else
    ``song_vectors`` (a copied asset function finds its own fold's upstream metadata)."""
    return dg.AssetKey([*context.asset_key.path[:-1], name])


def served_config(context: dg.AssetExecutionContext, config_class: type[dg.Config], served_op: str,
                  served_key: dg.AssetKey) -> dg.Config:
    """The config a fold copy of the op ``served_op`` runs with: that op's config in this run's run config, else
    in the run config of the run that last materialised ``served_key``, else the defaults."""
    ops = (context.run.run_config or {}).get("ops") or {}
    if served_op not in ops:
        event = context.instance.get_latest_materialization_event(served_key)
        run = context.instance.get_run_by_id(event.run_id) if event is not None else None
        ops = ((run.run_config if run is not None else None) or {}).get("ops") or {}
        if served_op in ops:
            context.log.info(f"{served_op} is not in this run: its config is the one that materialised "
                             f"{served_key.to_user_string()} last (run {event.run_id[:8]})")
    return config_class(**(((ops.get(served_op) or {}).get("config")) or {}))
