"""Group `crossfit`: the cross-fitting folds as assets (defs/folds.py says what a fold is).

Fold ``k`` copies the served chain under the key prefix ``fold_<k>``: ``upstream_corpus`` (the served one with
the fold's train playlists held out), then song_vectors, semantic_ids, generator_dataset, tiger_model (and
ranker_dataset, ranker_model when the LTR ranker learns from the cross-encoder: folds.ltr_cross_encoder) and
song_catalogue — the served asset functions themselves, their inputs rewired to the fold's assets (raw_songs and
the other shared tables stay the served ones) — and ``ranking_features``, the features of the fold's own
playlists. The ranker (``ltr_ranker``) and the evaluation read every fold's ``ranking_features``; no fold model
is registered or served. Each fold is its own chain of steps, so the multiprocess executor runs the folds beside
each other and beside the served chain, and a fold re-materialises alone (``--select 'fold_1/*'``).
"""

import functools
import inspect
import os
import typing
from collections.abc import Callable

import dagster as dg
import pandas as pd

from genrank_assets.defs.assets import catalogue, data, generator, ranking, semantic_ids, vectors
from genrank_assets.defs.folds import (
    FOLD_GROUP,
    crossfit_folds,
    fold_key,
    fold_prefix,
    ltr_cross_encoder,
    served_config,
)
from genrank_assets.ml.data.corpus import HOLDOUT, SPLITS, fold_corpus

# The served assets each fold copies, in chain order; the cross-encoder's only when the ranker learns from it.
CHAIN = (vectors.song_vectors, semantic_ids.semantic_ids, generator.generator_dataset, generator.tiger_model,
         catalogue.song_catalogue)
CROSS_ENCODER_CHAIN = (ranking.ranker_dataset, ranking.ranker_model)
# (the function, the served op whose config it runs with, its output) beside the copies: the fold's own features
FEATURES_STEP = (ranking.fold_ranking_features, "ltr_tables", "ranking_features")
# The CPU priority of a fold step: the served chain (every train playlist, twice a fold's data) is the run's
# critical path, so where they compete for cores the folds yield (nice 5: a third of the served step's share)
# and fill what it leaves idle.
FOLD_NICENESS = 5


def _yield_to_the_served_chain() -> None:
    """This process's niceness at least FOLD_NICENESS (absolute, so a step run in the caller's process, as
    dg.materialize runs them, lowers it once and no further)."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < FOLD_NICENESS:
            os.setpriority(os.PRIO_PROCESS, 0, FOLD_NICENESS)
    except (AttributeError, OSError):  # no priorities on this platform, or not permitted: run as it is
        pass


def fold_corpus_asset(fold: int, folds: int) -> dg.AssetsDefinition:
    @dg.asset(key=fold_key(fold, "upstream_corpus"), group_name=FOLD_GROUP,
              description=f"upstream_corpus with fold {fold}'s train playlists (of {folds}) held out: what fold "
                          f"{fold}'s models are fitted on, and whose holdout they score for the ranker.")
    def _fold_corpus(context: dg.AssetExecutionContext, upstream_corpus: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        _yield_to_the_served_chain()
        config = served_config(context, data.UpstreamCorpusConfig, "upstream_corpus", dg.AssetKey("upstream_corpus"))
        corpus = fold_corpus(upstream_corpus, fold, folds, config.seed)
        splits = corpus["split"].value_counts().to_dict()
        context.log.info(f"fold {fold} of {folds}: {splits.get(HOLDOUT, 0)} train playlists held out, "
                         f"{splits.get('train', 0)} to fit on")
        return dg.Output(corpus, metadata={"dagster/row_count": len(corpus), "fold": fold, "folds": folds,
                                           **{f"split_{s}": int(splits.get(s, 0)) for s in (*SPLITS, HOLDOUT)}})

    return _fold_corpus


def _with_served_config(fn: Callable, served_op: str, served_key: dg.AssetKey) -> Callable:
    """``fn`` without its ``config`` parameter: it runs with the served op's config (folds.served_config)."""
    hints = typing.get_type_hints(fn)
    config_class = hints.get("config")
    if config_class is None:
        return fn
    signature = inspect.signature(fn)
    # resolved annotations: Dagster reads them off the wrapper, whose module globals are not the asset module's
    parameters = [p.replace(annotation=hints.get(n, p.annotation)) for n, p in signature.parameters.items()
                  if n != "config"]

    def config_of(args, kwargs):
        _yield_to_the_served_chain()
        context = kwargs.get("context", args[0] if args else None)
        return served_config(context, config_class, served_op, served_key)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            yield from fn(*args, config=config_of(args, kwargs), **kwargs)
    else:
        @functools.wraps(fn)
        def run(*args, **kwargs):
            return fn(*args, config=config_of(args, kwargs), **kwargs)
    # Dagster reads the parameters (inputs, resources) from the signature: the same, less `config`.
    run.__signature__ = signature.replace(parameters=parameters, return_annotation=hints.get("return",
                                                                                           signature.return_annotation))
    run.__annotations__ = {k: v for k, v in hints.items() if k != "config"}
    del run.__wrapped__
    return run


def _copy(fn: Callable, op_name: str, served_op: str, outs: dict[str, tuple[dg.AssetKey, dg.AssetSpec | None, str | None]],
          inputs: dict[str, dg.AssetKey], fold: int, fold_names: set[str], served_key: dg.AssetKey,
          tags: dict, can_subset: bool) -> dg.AssetsDefinition:
    def here(key: dg.AssetKey) -> dg.AssetKey:
        return fold_key(fold, key.path[-1]) if key.path[-1] in fold_names and len(key.path) == 1 else key

    asset_outs = {}
    for name, (key, spec, io_manager_key) in outs.items():
        asset_outs[name] = dg.AssetOut(key=here(key), io_manager_key=io_manager_key, is_required=not can_subset,
                                       description=f"Fold {fold}'s `{key.path[-1]}`, fitted without the fold's "
                                                   f"train playlists. {spec.description if spec else ''}".strip(),
                                       kinds=set(spec.kinds) if spec else None)
    return dg.multi_asset(name=f"{fold_prefix(fold)}__{op_name}", outs=asset_outs, group_name=FOLD_GROUP,
                          ins={name: dg.AssetIn(key=here(key)) for name, key in inputs.items()},
                          op_tags=tags, can_subset=can_subset)(_with_served_config(fn, served_op, served_key))


def chain(cross_encoder: bool) -> tuple[dg.AssetsDefinition, ...]:
    """The served assets a fold copies, in chain order."""
    return (*CHAIN[:4], *CROSS_ENCODER_CHAIN, *CHAIN[4:]) if cross_encoder else CHAIN


def fold_assets(folds: int | None = None, cross_encoder: bool | None = None) -> list[dg.AssetsDefinition]:
    """Every fold's assets (none when cross-fitting is off); with ``cross_encoder`` (default: the code location's
    ltr_cross_encoder) each fold fits its own cross-encoder for its features."""
    folds = crossfit_folds() if folds is None else folds
    cross_encoder = ltr_cross_encoder() if cross_encoder is None else cross_encoder
    copied = chain(cross_encoder)
    fold_names = {"upstream_corpus", FEATURES_STEP[2], *(k.path[-1] for a in copied for k in a.keys)}
    out = []
    for fold in range(folds):
        out.append(fold_corpus_asset(fold, folds))
        for asset in copied:
            outs = {name: (key, asset.specs_by_key[key], asset.node_def.output_def_named(name).io_manager_key)
                    for name, key in asset.keys_by_output_name.items()}
            out.append(_copy(asset.op.compute_fn.decorated_fn, asset.op.name, asset.op.name, outs,
                             dict(asset.keys_by_input_name),
                             fold, fold_names, next(iter(asset.keys)), dict(asset.op.tags), asset.can_subset))
        fn, served_op, name = FEATURES_STEP
        inputs = {p: dg.AssetKey(p) for p in _asset_params(fn)}
        if cross_encoder:  # the fold's own cross-encoder (fold_names holds it)
            inputs[ranking.CROSS_ENCODER_INPUT] = dg.AssetKey(ranking.CROSS_ENCODER_INPUT)
        spec = dg.AssetSpec(name, description=inspect.getdoc(fn))
        out.append(_copy(fn, name, served_op, {"result": (dg.AssetKey(name), spec, None)}, inputs, fold,
                         fold_names, dg.AssetKey(name), {}, False))
    return out


def _asset_params(fn: Callable) -> list[str]:
    """The parameters of an asset function that are asset inputs: all but the context, config and resources."""
    hints = typing.get_type_hints(fn)
    return [n for n, p in inspect.signature(fn).parameters.items() if n not in ("context", "config")
            and p.kind is not p.VAR_KEYWORD  # the optional inputs (**models), named by the caller
            and not (isinstance(hints.get(n), type) and issubclass(hints[n], dg.ConfigurableResource))]
