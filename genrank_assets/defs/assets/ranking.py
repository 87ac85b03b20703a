"""Group `ranking`: (title, song, label) examples with hard negatives, the cross-encoder in MLflow, and the
learning-to-rank stage: candidate pools, their features and the LightGBM lambdarank ranker trained on the LTR holdout
and val."""
import time
from dataclasses import asdict

import dagster as dg
import mlflow
import pandas as pd
from pydantic import Field, model_validator

from genrank_assets.defs.config import check_one_of, config_fields, dataclass_config, training_fields
from genrank_assets.defs.folds import CROSS_ENCODER_ENV, fold_ins, ltr_cross_encoder
from genrank_assets.defs.io_managers import batched_read
from genrank_assets.defs.metadata import latest_metadata
from genrank_assets.defs.resources import (
    GPU_TAGS,
    ComputeResource,
    DeviceConfig,
    GenrankPaths,
    MlflowRegistry,
    TrainingDeviceConfig,
    step_name,
    step_run,
)
from genrank_assets.ml.baselines.classical import benchmark_queries
from genrank_assets.ml.catalogue.catalogue import cold_songs, song_info
from genrank_assets.ml.catalogue.catalogue import from_frame as catalogue_from_frame
from genrank_assets.ml.data.corpus import HOLDOUT
from genrank_assets.ml.evaluation.ablation import val_ndcg_at_10
from genrank_assets.ml.plots import bar_plot, curves_plot, history_plot, markdown_image
from genrank_assets.ml.ranking.cross_encoder.examples import RANKER_EXAMPLES, build_ranker_examples, generator_proposals
from genrank_assets.ml.ranking.cross_encoder.model import (
    INIT_FROM,
    RankerConfig,
    build_ranker,
    save_ranker,
    song_text,
)
from genrank_assets.ml.ranking.cross_encoder.training import LOSSES, RANKER_TRAINING, train_ranker
from genrank_assets.ml.ranking.ltr.candidates import CandidateSources, PoolConfig, crossfit_pool_songs
from genrank_assets.ml.ranking.ltr.features import CROSS_ENCODER_FEATURES, FEATURES, FeatureBuilder, ltr_features
from genrank_assets.ml.ranking.ltr.mentions import CatalogueMentions
from genrank_assets.ml.ranking.ltr.ranker import LTRParams
from genrank_assets.ml.ranking.ltr.tables import (
    TRAINING_SPLITS,
    build_tables,
    fit_ranker,
    training_rows,
    with_fold_rows,
)
from genrank_assets.ml.semantic_ids.codes import codes_from_frame
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.recommender import save_song_side
from genrank_assets.ml.training import judge_training
from genrank_assets.ml.vectors.song_vectors import from_frame


class RankerDatasetConfig(DeviceConfig):
    """Cross-encoder examples; the sampling defaults are ml.ranking.cross_encoder.examples.RankerExamplesDefaults; None
    ("auto"): the default for this asset's device (ml.device_defaults); ``device``: where the beam search runs."""

    max_positives_per_playlist: int = Field(default=RANKER_EXAMPLES.max_positives_per_playlist, ge=1)
    negatives_per_positive: int = Field(default=RANKER_EXAMPLES.negatives_per_positive, ge=0)
    random_negative_share: float = Field(default=RANKER_EXAMPLES.random_negative_share, ge=0.0, le=1.0)
    popularity_weighted: bool = RANKER_EXAMPLES.popularity_weighted
    generator_negatives: bool = True  # hard negatives from the trained generator's proposals for the title
    generator_candidates: int | None = Field(default=None, ge=1)  # None: ml.device_defaults for the device
    generator_beams: int | None = Field(default=None, ge=1)  # None: ml.device_defaults for the device
    # hard negatives from each playlist's own classical pool, cross-fitted (candidates.crossfit_pool_songs)
    pool_negatives: bool = False
    pool_folds: int = Field(default=5, ge=2)
    pool_per_source: int = Field(default=PoolConfig.per_source, ge=1)
    seed: int = Field(default=RANKER_EXAMPLES.seed, ge=0)


def song_texts(raw_songs: pd.DataFrame) -> dict[str, str]:
    """'song name - singer' per song id, the text the ranker reads beside the title."""
    return {str(sid): song_text(str(name), str(singer))
            for sid, name, singer in zip(raw_songs["song_id"], raw_songs["song_name"], raw_songs["singer"])}


@dg.asset(group_name="ranking", kinds={"pandas"})
def ranker_dataset(
    context: dg.AssetExecutionContext,
    config: RankerDatasetConfig,
    upstream_corpus: pd.DataFrame,
    song_vectors: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    tiger_model: str,
    compute: ComputeResource,
    mlflow_registry: MlflowRegistry,
) -> dg.Output[pd.DataFrame]:
    """Rows (playlist_id, split, text, song_id, label, negative_kind) for train and val playlists (split by playlist)."""
    resolved, config, auto = compute.for_step("ranker_dataset", config, context.log.info)
    mlflow_registry.setup()  # the generator is read back from the registry by its URI
    sv = from_frame(song_vectors)
    song_ids, codes = codes_from_frame(semantic_ids)
    cluster_of = dict(zip(song_ids, codes[:, 0].tolist()))
    hard_fn = None
    if config.generator_negatives:
        generator = registry.load_python_model(tiger_model).generator
        generator.model.to(resolved.torch_device)  # beam search for every title on the compute device
        titles = upstream_corpus.loc[upstream_corpus["split"].isin(["train", "val"]), "title"].astype(str)
        titles = sorted({t for t in titles if t.strip()})
        context.log.info(f"generating {config.generator_candidates} candidates for {len(titles)} distinct titles "
                         f"({config.generator_beams} beams, {resolved.device}) for hard negatives")
        t0 = time.perf_counter()
        proposals = generator_proposals(generator, titles, config.generator_candidates, config.generator_beams,
                                        log_fn=context.log.info)
        context.log.info(f"generator proposals in {time.perf_counter() - t0:.1f}s")
        hard_fn = lambda title: proposals.get(title, [])  # noqa: E731
    pool_of = None
    if config.pool_negatives:
        t0 = time.perf_counter()
        pool_of = crossfit_pool_songs(upstream_corpus, ("train", "val"), config.pool_folds, config.pool_per_source,
                                      config.seed, log_fn=context.log.info)
        context.log.info(f"pools of {len(pool_of)} playlists for hard negatives in {time.perf_counter() - t0:.1f}s")
    parts = []
    for split in ("train", "val"):
        parts.append(build_ranker_examples(
            upstream_corpus, sv, split=split, max_positives_per_playlist=config.max_positives_per_playlist,
            negatives_per_positive=config.negatives_per_positive, random_negative_share=config.random_negative_share,
            popularity_weighted=config.popularity_weighted, hard_negative_fn=hard_fn, cluster_of=cluster_of,
            pool_of=pool_of, seed=config.seed,
        ))
    df = pd.concat(parts, ignore_index=True)
    counts = df.groupby(["split", "negative_kind"]).size().rename("rows").reset_index()
    meta = {f"{r.split}_{r.negative_kind}": int(r.rows) for r in counts.itertuples()}
    return dg.Output(df, metadata={"dagster/row_count": len(df), **meta, "device": resolved.device,
                                   "generator_candidates": config.generator_candidates,
                                   "generator_beams": config.generator_beams,
                                   "device_defaults": dg.MetadataValue.json(auto),
                                   "playlists_train": int(df.loc[df.split == "train", "playlist_id"].nunique()),
                                   "playlists_val": int(df.loc[df.split == "val", "playlist_id"].nunique()),
                                   "counts": dg.MetadataValue.md(counts.to_markdown(index=False))})


# The cross-encoder's settings and training fields of the ranker_model config, with their defaults where they are
# defined (RankerConfig, RANKER_TRAINING); None ("auto"): the default for the asset's device (ml.device_defaults).
RANKER_HEAD_FIELDS = ("song_positions", "use_song_text", "max_title_tokens", "max_song_text_tokens", "interaction_dim")
_RankerHead = config_fields(RankerConfig, names=RANKER_HEAD_FIELDS, auto=("use_song_text",), base=TrainingDeviceConfig)


class RankerModelConfig(training_fields(RANKER_TRAINING, auto=("epochs", "batch_size"), base=_RankerHead)):
    """The ranker's settings and training; defaults: ml.ranking.cross_encoder.model.RankerConfig and ...training.
    RANKER_TRAINING; None ("auto"): the default for this asset's device, ml.device_defaults (CPU-sized unless it
    resolves to CUDA)."""

    init_from: str = "tiger"  # tiger (the trained TIGER encoder) | base_model | scratch
    base_model: str = ""  # local path or hub name, when init_from=base_model
    preset: str = "tiny"  # when init_from=scratch
    max_steps: int = 0  # 0 = no cap
    # "bce" (pointwise) or "listwise" (softmax over each playlist's examples, batches of whole lists ~batch_size rows)
    loss: str = "bce"

    @model_validator(mode="after")
    def _known_values(self):
        check_one_of("loss", self.loss, LOSSES)
        check_one_of("init_from", self.init_from, INIT_FROM)
        if self.init_from == "base_model" and not self.base_model:
            raise ValueError("init_from=base_model needs base_model (a local path or hub name)")
        if self.song_positions < 1 or self.max_title_tokens < 1 or self.interaction_dim < 0:
            raise ValueError("song_positions and max_title_tokens must be >= 1 and interaction_dim >= 0")
        return self


@dg.asset(group_name="ranking", op_tags=GPU_TAGS, kinds={"pytorch", "mlflow"}, io_manager_key="model_io_manager")
def ranker_model(
    context: dg.AssetExecutionContext,
    config: RankerModelConfig,
    ranker_dataset: pd.DataFrame,
    song_vectors: pd.DataFrame,
    raw_songs: pd.DataFrame,
    tiger_model: str,
    compute: ComputeResource,
    genrank_paths: GenrankPaths,
    mlflow_registry: MlflowRegistry,
) -> dg.Output[str]:
    """Cross-encoder (title tokens + projected song vector in one T5 encoder), logged in MLflow; the evaluation
    registers it as a `genrank-ranker` version after its blocking check passed."""
    sv = from_frame(song_vectors)
    resolved, config, auto = compute.for_step("ranker_model", config, context.log.info)
    mlflow_registry.setup()  # the TIGER encoder is read back from the registry by its URI
    head = {name: getattr(config, name) for name in RANKER_HEAD_FIELDS}
    generator = registry.load_python_model(tiger_model).generator if config.init_from != "base_model" else None
    ranker = build_ranker(config.init_from, sv.dim, generator=generator, base_model=config.base_model,
                          preset=config.preset, seed=config.seed, **head)
    train = ranker_dataset[ranker_dataset["split"] == "train"]
    val = ranker_dataset[ranker_dataset["split"] == "val"]
    context.log.info(f"training ranker ({config.init_from}) on {len(train)} pairs, {len(val)} val pairs, "
                     f"{resolved.device} {resolved.precision}")
    with step_run(context, genrank_paths, mlflow_registry) as step:
        result = train_ranker(ranker, train, val if len(val) else None, sv,
                              song_texts(raw_songs) if config.use_song_text else None,
                              config.train_config(), resolved,
                              checkpoint_dir=genrank_paths.checkpoints(step_name(context)), log_fn=context.log.info,
                              loss=config.loss)
        save_ranker(ranker.to("cpu"), step.folder / "ranker")
        save_song_side(step.folder / "songs", sv, raw_songs)
        plot = history_plot(result.epochs, ["train_loss", "val_loss", "val_auc"], step.folder / "curves.png",
                            title="ranker")
        summary = result.summary()
        mlflow.log_params({**config.model_dump(), "device": resolved.device, "precision": resolved.precision,
                           "device_defaults": ",".join(auto) or "none", "train_pairs": len(train),
                           "dagster_run_id": context.run.run_id, "tiger_model": tiger_model})
        registry.log_history(result.epochs)
        mlflow.log_metrics({k: v for k, v in summary.items() if not isinstance(v, str)})
        mlflow.log_artifact(str(plot), "plots")
        reg = registry.log_model_dir(step.folder / "ranker", registered_name=None,
                                     python_model=registry.RANKER_CODE,
                                     extra_artifacts={"songs_dir": str(step.folder / "songs")})
    history_md = pd.DataFrame(result.history).to_markdown(index=False) if result.history else ""
    return dg.Output(reg.uri, metadata={
        "model_uri": reg.uri, "mlflow_run_id": reg.run_id, "model_dir": str(step.folder),
        "init_from": config.init_from, "train_pairs": len(train), "val_pairs": len(val), **summary,
        "device": resolved.device, "precision": resolved.precision, "use_song_text": config.use_song_text,
        "epochs_configured": config.epochs, "batch_size": config.batch_size,
        "device_defaults": dg.MetadataValue.json(auto),
        "curves": dg.MetadataValue.md(markdown_image(plot, "ranker curves") + "\n\n" + history_md),
    })


@dg.asset_check(asset=ranker_model, blocking=True, description="Weights all finite; val loss below the untrained "
                "model's (measured before training); val AUC above 0.5. A failure stops the evaluation.")
def ranker_model_learned(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta = latest_metadata(context.instance, ranker_model.key)
    passed, figures = judge_training(meta["model_dir"], meta, min_auc=0.5)
    return dg.AssetCheckResult(passed=passed, metadata=figures)


POOL_CONFIG_KEY = "pool_config"  # ranking_features metadata: the PoolConfig its pools were built with
# ranking_features metadata: whether its cross-encoder columns hold logits (a table without the key predates it: yes)
CROSS_ENCODER_KEY = "cross_encoder_features"
# The cross-encoder an LTR features step scores with, when the ranker learns from it (folds.ltr_cross_encoder):
# without it the step does not wait for, or load, a cross-encoder.
CROSS_ENCODER_INPUT = "ranker_model"
CROSS_ENCODER_INS = {CROSS_ENCODER_INPUT: dg.AssetIn()} if ltr_cross_encoder() else {}


class CandidatePoolsConfig(dataclass_config(PoolConfig)):
    """The candidate pool of each val / test query; defaults: ml.ranking.ltr.candidates.PoolConfig."""

    max_queries: int = Field(default=0, ge=0)  # per split; 0: every query


@dg.multi_asset(
    group_name="ranking",
    outs={
        "candidate_pools": dg.AssetOut(description="split, playlist_id, song_id, per source proposed/score/rank "
                                                   "(NaN: absent) of each holdout / val / test query's candidate pool."),
        "ranking_features": dg.AssetOut(description="The FeatureBuilder features of every (query, candidate) of the "
                                                    "pools, and the label (the song is in the playlist); holdout, "
                                                    "val, test."),
    },
    ins=CROSS_ENCODER_INS,
)
def ltr_tables(context: dg.AssetExecutionContext, config: CandidatePoolsConfig, playlist_corpus: pd.DataFrame,
               upstream_corpus: pd.DataFrame, tiger_model: str, song_catalogue: pd.DataFrame,
               raw_songs: pd.DataFrame, compute: ComputeResource, mlflow_registry: MlflowRegistry,
               **cross_encoder: str):
    """Pools (TIGER beams, title-kNN, kNN / kernel ridge + co-occurrence, cold neighbours, the singers and songs a
    query names) and their features for queries no model behind them was fitted on: val / test (sources fitted on
    every train playlist, as served) and the LTR holdout when upstream_corpus has one (classical sources fitted on
    its train playlists; the upstream models never saw the holdout). The folds' own rows: fold_<k>/ranking_features."""
    parts = [(upstream_corpus, (HOLDOUT,)), (playlist_corpus, ("val", "test"))]
    pools, features, n_queries, ms, ceilings = _pool_tables(context, config, parts, tiger_model, cross_encoder,
                                                           song_catalogue, raw_songs, compute, mlflow_registry)
    ceiling_meta = {f"{split}.recall_ceiling.{k}": round(v, 4) for split, c in ceilings.items() for k, v in c.items()}
    table = pd.DataFrame(ceilings).T.round(4).reset_index(names="split")
    yield dg.Output(pools, "candidate_pools", metadata={
        "dagster/row_count": len(pools), "ms_per_query": round(ms, 1), **ceiling_meta,
        "recall_ceiling": dg.MetadataValue.md(table.to_markdown(index=False))})
    yield dg.Output(features, "ranking_features", metadata=_features_metadata(features, n_queries, config))


def fold_ranking_features(context: dg.AssetExecutionContext, config: CandidatePoolsConfig,
                          upstream_corpus: pd.DataFrame, tiger_model: str, song_catalogue: pd.DataFrame,
                          raw_songs: pd.DataFrame, compute: ComputeResource, mlflow_registry: MlflowRegistry,
                          **cross_encoder: str) -> dg.Output[pd.DataFrame]:
    """The features of one fold's own playlists (split `holdout` of the fold's corpus), from the fold's models and
    sources fitted on the other folds: the LTR ranker's training rows (defs/crossfit.py copies this per fold, with
    the fold's own cross-encoder as ``ranker_model`` when the ranker learns from it)."""
    _, features, n_queries, ms, ceilings = _pool_tables(context, config, [(upstream_corpus, (HOLDOUT,))],
                                                        tiger_model, cross_encoder, song_catalogue, raw_songs,
                                                        compute, mlflow_registry, with_pools=False)
    ceiling_meta = {f"recall_ceiling.{k}": round(v, 4) for c in ceilings.values() for k, v in c.items()}
    return dg.Output(features, metadata={**_features_metadata(features, n_queries, config),
                                         "ms_per_query": round(ms, 1), **ceiling_meta})


def _features_metadata(features: pd.DataFrame, n_queries: dict, config: CandidatePoolsConfig) -> dict:
    return {"dagster/row_count": len(features), "features": len(FEATURES),
            POOL_CONFIG_KEY: dg.MetadataValue.json(asdict(config.params())),
            CROSS_ENCODER_KEY: bool(features[list(CROSS_ENCODER_FEATURES)].notna().any(axis=None)),
            "positives": int(features["label"].sum()) if len(features) else 0,
            **{f"{s}_queries": n for s, n in n_queries.items()}}


def _pool_tables(context, config: CandidatePoolsConfig, parts, tiger_model: str, cross_encoder: dict[str, str],
                 song_catalogue: pd.DataFrame, raw_songs: pd.DataFrame, compute: ComputeResource,
                 mlflow_registry: MlflowRegistry, with_pools: bool = True):
    """(pools, features, queries per split, ms per query, recall ceilings) of the queries of each
    (corpus the sources and features are fitted on, the splits whose queries they score) of ``parts``; no pools
    (None) unless ``with_pools``; the cross-encoder's logits when ``cross_encoder`` holds its model
    (CROSS_ENCODER_INPUT), else NaN."""
    compute.apply_threads()  # pools are built on CPU, as they are served
    mlflow_registry.setup()
    # Every song of the catalogue, cold-start songs under their predicted codes: the held-out playlists' own songs
    # are cold for the upstream models, so the ranker learns where cold songs belong from real lists.
    catalogue = catalogue_from_frame(song_catalogue)
    generator = registry.load_python_model(tiger_model).generator.with_code_table(catalogue.code_table())
    ranker = registry.load_python_model(cross_encoder[CROSS_ENCODER_INPUT]).ranker if cross_encoder else None
    vectors, info, cold = catalogue.song_vectors(), song_info(raw_songs), cold_songs(catalogue)
    t0, pools, features, ceilings, n_queries = time.perf_counter(), [], [], {}, {}
    for corpus, splits in parts:
        queries = {}
        for split in splits:
            qids, texts, truths = benchmark_queries(corpus, split=split)
            if config.max_queries:
                qids, texts = qids[:config.max_queries], texts[:config.max_queries]
            if qids:
                queries[split] = (qids, texts, truths)
        if not queries:
            continue
        sources = CandidateSources.fit(corpus, generator).with_song_vectors(vectors).with_mentions(
            CatalogueMentions().fit(corpus, info))
        builder = FeatureBuilder(sources, corpus, info, vectors, ranker, cold_songs=cold)
        pool_rows, feature_rows, ceiling = build_tables(queries, sources, builder, config.params(),
                                                        log_fn=context.log.info, with_pools=with_pools)
        pools.append(pool_rows)
        features.append(feature_rows)
        ceilings.update(ceiling)
        n_queries.update({s: len(q[0]) for s, q in queries.items()})
    if not features:
        raise ValueError("no query to build candidate pools for: the corpus has no titled playlist in "
                         f"{[s for _, splits in parts for s in splits]}")
    ms = (time.perf_counter() - t0) * 1000 / max(1, sum(n_queries.values()))
    pools = pd.concat(pools, ignore_index=True) if with_pools else None
    return pools, pd.concat(features, ignore_index=True), n_queries, ms, ceilings


class LTRRankerConfig(dataclass_config(LTRParams)):
    """LightGBM lambdarank settings; defaults: ml.ranking.ltr.ranker.LTRParams (seed: LightGBM's, deterministic)."""


# Every fold's own rows and the served table's training splits: the ranker's rows, read in float32 batches
# (io_managers.batched_read), never the whole table as a float64 frame.
FOLD_FEATURES = fold_ins("ranking_features", batched_read())
RANKER_INS = {"ranking_features": dg.AssetIn(metadata=batched_read(TRAINING_SPLITS)), **FOLD_FEATURES}


def _training_tables_agree(context: dg.AssetExecutionContext) -> dict:
    """The PoolConfig of the ranker's training tables (serving builds its pools as they were built, so the ranker
    carries it), checked to be one for the served table and every fold's, their cross-encoder columns what the
    code location's ranker learns from."""
    wanted = ltr_cross_encoder()
    pool_config = latest_metadata(context.instance, dg.AssetKey("ranking_features")).get(POOL_CONFIG_KEY)
    if not pool_config:
        raise ValueError("ranking_features has no recorded pool_config: materialise ltr_tables again")
    for key in (dg.AssetKey("ranking_features"), *(ins.key for ins in FOLD_FEATURES.values())):
        meta = latest_metadata(context.instance, key)
        if meta.get(POOL_CONFIG_KEY) != pool_config:
            raise ValueError(f"{key.to_user_string()} was built with another pool config than ranking_features: "
                             "materialise the crossfit group and ltr_tables in one run")
        if wanted and not meta.get(CROSS_ENCODER_KEY, True):
            raise ValueError(f"{key.to_user_string()} has no cross-encoder logits but {CROSS_ENCODER_ENV}=1: "
                             "materialise the crossfit group and ltr_tables again with it set")
    return pool_config


@dg.asset(group_name="ranking", kinds={"lightgbm", "mlflow"}, io_manager_key="model_io_manager", ins=RANKER_INS)
def ltr_ranker(context: dg.AssetExecutionContext, config: LTRRankerConfig, ranking_features: pd.DataFrame,
               playlist_corpus: pd.DataFrame, genrank_paths: GenrankPaths, mlflow_registry: MlflowRegistry,
               **fold_features: pd.DataFrame) -> dg.Output[str]:
    """LightGBM lambdarank over the features, trained on every train playlist's cross-fitted rows (the folds'), the
    LTR holdout's if there is one, and the val queries (rounds by query-fold CV over them; test never seen), saved
    as plain files and logged to MLflow as a pyfunc model (value: its `models:/m-<id>` URI); the evaluation
    registers it as a `genrank-ltr` version."""
    pool_config = _training_tables_agree(context)
    rows = training_rows(with_fold_rows(ranking_features, fold_features.values(), consume=True))  # held once
    model = fit_ranker(rows, ltr_features(ltr_cross_encoder()), config.params())
    model.pool_config = asdict(PoolConfig.from_dict(pool_config))  # checked: known fields, valid values
    _, _, truths = benchmark_queries(playlist_corpus, split="val")
    val_ndcg = val_ndcg_at_10(model, rows, truths)  # out-of-fold, on the val queries among the training rows
    per_split = rows.groupby("split", observed=True)["playlist_id"].nunique()  # observed: split may be categorical
    queries_per_split = {f"{s}_queries": int(n) for s, n in per_split.items()}
    with step_run(context, genrank_paths, mlflow_registry) as step:
        model.save(step.folder / "ltr")
        curve = {i + 1: v for i, v in enumerate(model.cv.get("mean_ndcg_curve", []))}
        curve_png = curves_plot({f"CV NDCG@{config.eval_at} (pool)": curve}, step.folder / "cv_curve.png",
                                title="LTR: mean held-out-fold NDCG per round (val queries)", xlabel="round",
                                ylabel=f"NDCG@{config.eval_at}")
        importance = dict(list(model.feature_importance("gain").items())[:15])
        importance_png = bar_plot(importance, step.folder / "feature_importance.png",
                                  title="LTR feature importance (gain)", ylabel="total gain")
        mlflow.log_params({**config.model_dump(), **queries_per_split,
                           "n_rounds": model.n_rounds, "dagster_run_id": context.run.run_id})
        mlflow.log_metrics({"val_oof_ndcg_at_10": val_ndcg})
        mlflow.log_artifact(str(curve_png), "plots")
        mlflow.log_artifact(str(importance_png), "plots")
        reg = registry.log_model_dir(step.folder / "ltr", registered_name=None, python_model=registry.LTR_CODE)
    return dg.Output(reg.uri, metadata={
        "model_uri": reg.uri, "model_dir": str(step.folder / "ltr"), "mlflow_run_id": step.run_id,
        "n_rounds": model.n_rounds,
        "cv_best_rounds": str(model.cv.get("best_rounds")), "cv_oof_rounds": str(model.cv.get("oof_rounds")),
        "val_cv_ndcg@10": round(val_ndcg, 4),
        **queries_per_split, "training_rows": len(rows),
        "cv_curve": dg.MetadataValue.md(markdown_image(curve_png, "LTR CV curve")),
        "feature_importance": dg.MetadataValue.md(markdown_image(importance_png, "LTR feature importance")),
    })
