"""Group `catalogue`: every song of the song file with a vector and a semantic ID, cold-start songs included.

A full retrain rebuilds it from the song vectors and codes fitted in the same run; between full retrains every
run extends the previous catalogue (the refresh, `ml/catalogue/catalogue.py`): word2vec goes on over the new
train playlists with the known vectors locked, new songs get codes from the fitted quantizer, and no existing
song's code changes (the blocking check `existing_codes_unchanged`).
"""
import dagster as dg
import mlflow
import numpy as np
import pandas as pd
from gensim.models import Word2Vec
from pydantic import Field

from genrank_assets.defs.folds import sibling_key
from genrank_assets.defs.metadata import latest_metadata
from genrank_assets.defs.resources import ComputeResource, GenrankPaths, MlflowRegistry, step_name, step_run
from genrank_assets.ml.baselines.classical import knn_cooccurrence
from genrank_assets.ml.catalogue.catalogue import (
    build_catalogue,
    changed_codes,
    cold_songs,
    extend_catalogue,
    load_state,
    save_bundle_dirs,
    save_state,
    song_info,
    to_frame,
)
from genrank_assets.ml.catalogue.catalogue import from_frame as catalogue_from_frame
from genrank_assets.ml.data.corpus import as_song_lists
from genrank_assets.ml.evaluation.procedure import LTR, Queries, gate_evaluation
from genrank_assets.ml.semantic_ids.codes import code_space, codes_from_frame
from genrank_assets.ml.semantic_ids.rq_kmeans import RQKMeans
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.classical_recommender import CLASSICAL_SYSTEMS, ClassicalRecommender
from genrank_assets.ml.serving.ltr_recommender import LTRRecommender
from genrank_assets.ml.serving.recommender import Recommender
from genrank_assets.ml.vectors.song_vectors import from_frame, trained_playlists_of


class SongCatalogueConfig(dg.Config):
    seed: int = 0  # the cold-start model's held-out songs and fit


@dg.asset(group_name="catalogue")
def song_catalogue(context: dg.AssetExecutionContext, config: SongCatalogueConfig, song_vectors: pd.DataFrame,
                   semantic_ids: pd.DataFrame, semantic_id_metrics: pd.DataFrame, raw_songs: pd.DataFrame,
                   upstream_corpus: pd.DataFrame, genrank_paths: GenrankPaths) -> dg.Output[pd.DataFrame]:
    """song_id, count, cold_start, vector_source, l1..lL, vector: every song of the song file (learned or
    cold-start vector), its code, and whether a refresh may still give it history."""
    instance = context.instance
    # the assets beside this one: a fold's copy (defs/crossfit.py) reads its own fold's vectors and codebook
    vectors_event = instance.get_latest_materialization_event(sibling_key(context, "song_vectors"))
    vectors_meta = latest_metadata(instance, sibling_key(context, "song_vectors"))
    previous = latest_metadata(instance, context.asset_key)
    quantizer_path = latest_metadata(instance, sibling_key(context, "semantic_ids")).get("codebook_path")
    if not vectors_meta.get("word2vec_model") or not quantizer_path:
        raise ValueError("song_vectors / semantic_ids were materialised without their word2vec model or codebook "
                         "file: run a full retrain (retrain_all_job)")
    space, quantizer = code_space(semantic_id_metrics), RQKMeans.load(quantizer_path)
    info = song_info(raw_songs)
    train = upstream_corpus[upstream_corpus["split"] == "train"]
    refresh = bool(previous.get("state_dir")) and previous.get("base_vectors_run") == vectors_event.run_id
    before = None
    if refresh:  # between full retrains: extend what the last run left
        before, model, trained, _ = load_state(previous["state_dir"])
    else:  # the song vectors changed (a full retrain): start from them and their codes
        model = Word2Vec.load(vectors_meta["word2vec_model"])
        trained = trained_playlists_of(vectors_meta["word2vec_model"])
        ids, codes = codes_from_frame(semantic_ids)
        before, cold_model = build_catalogue(from_frame(song_vectors), dict(zip(ids, codes.tolist())), quantizer,
                                             info, raw_songs["song_id"].astype(str).tolist(), space, config.seed)
        context.log.info(f"cold-start vectors: {cold_model.method_} (chosen on held-out warm songs)")
    new = train[~train["playlist_id"].astype(str).isin(trained)]
    catalogue, extension = extend_catalogue(before, model, as_song_lists(new["song_ids"]), quantizer, info,
                                            raw_songs["song_id"].astype(str).tolist(), space, config.seed)
    state = save_state(genrank_paths.artifacts("catalogue", step_name(context), context.run.run_id[:8]), catalogue, model,
                       [*trained, *new["playlist_id"].astype(str)],
                       {"quantizer": quantizer_path, "base_vectors_run": vectors_event.run_id})
    context.log.info(f"{'refresh' if refresh else 'full'}: {len(catalogue)} songs, {catalogue.n_cold} cold-start; "
                     f"{extension.summary()}")
    cold_sources = pd.Series(catalogue.vector_source)[catalogue.cold_start].value_counts().to_dict()
    return dg.Output(to_frame(catalogue), metadata={
        "dagster/row_count": len(catalogue), "run_kind": "refresh" if refresh else "full",
        "state_dir": str(state), "previous_state_dir": previous.get("state_dir", "") if refresh else "",
        "base_vectors_run": vectors_event.run_id, "cold_start_songs": catalogue.n_cold,
        "cold_start_share": round(catalogue.n_cold / len(catalogue), 4), **extension.summary(),
        "codes_changed": len(changed_codes(before, catalogue)),
        "distinct_codes": int(len(np.unique(catalogue.codes, axis=0))),
        "cold_start_vector_sources": dg.MetadataValue.json(cold_sources),
    })


@dg.asset_check(asset=song_catalogue, blocking=True,
                description="A refresh left the code of every song already in the catalogue as it was.")
def existing_codes_unchanged(context: dg.AssetCheckExecutionContext,
                             song_catalogue: pd.DataFrame) -> dg.AssetCheckResult:
    meta = latest_metadata(context.instance, dg.AssetKey("song_catalogue"))
    if not meta.get("previous_state_dir"):
        return dg.AssetCheckResult(passed=True, metadata={"run_kind": meta.get("run_kind", ""), "compared": 0})
    before = load_state(meta["previous_state_dir"])[0]
    changed = changed_codes(before, catalogue_from_frame(song_catalogue))
    return dg.AssetCheckResult(passed=not changed, metadata={
        "run_kind": "refresh", "compared": len(before), "changed": len(changed), "sample": ", ".join(changed[:5])})


class CatalogueRefreshConfig(dg.Config):
    split: str = "test"  # the gate's queries, as the full evaluation's
    max_queries: int = Field(default=0, ge=0)  # 0: every query of the split


# After the full evaluation when both run (materialising everything): it then finds the same catalogue as the
# full retrain's challenger and registers nothing.
@dg.asset(group_name="catalogue", deps=["evaluation_report"], kinds={"mlflow"}, io_manager_key="model_io_manager")
def catalogue_refresh(context: dg.AssetExecutionContext, config: CatalogueRefreshConfig,
                      playlist_corpus: pd.DataFrame, song_catalogue: pd.DataFrame, raw_songs: pd.DataFrame,
                      tiger_model: str, ranker_model: str, ltr_ranker: str, genrank_paths: GenrankPaths,
                      mlflow_registry: MlflowRegistry, compute: ComputeResource) -> dg.Output[str]:
    """The refresh's challenger: the last full retrain's generator, cross-encoder and LTR ranker (not retrained)
    over the refreshed catalogue, its classical sources refitted on the grown corpus, evaluated on the test
    queries alone (the gate's evaluation) and registered with `genrank.run_kind = refresh`; value: its URI
    ("" when the batch brought nothing new: no version is registered, the gate keeps its decision)."""
    mlflow_registry.setup()
    compute.apply_threads()
    catalogue = catalogue_from_frame(song_catalogue)
    fingerprint = registry.catalogue_fingerprint(playlist_corpus, catalogue.song_ids)
    current = registry.challenger()
    if current is not None and current.catalogue_fingerprint == fingerprint:
        context.log.info(f"nothing new since {current.uri} (same train playlists and songs): nothing registered")
        return dg.Output("", metadata={"registered": False, "reason": f"same catalogue as {current.uri}"})
    served = latest_metadata(context.instance, dg.AssetKey("evaluation_report"))
    method = served.get("served_method", LTR)
    models = registry.register_evaluated(tiger_model, ranker_model, ltr_ranker)
    rec = refreshed_recommender(method, models, catalogue, playlist_corpus, raw_songs, served.get("recommender_uri"))
    queries = Queries.of_split(playlist_corpus, config.split, config.max_queries)
    context.log.info(f"refresh gate evaluation of {method} on {len(queries)} {queries.split} queries")
    gate = gate_evaluation(method, rec, playlist_corpus, queries)
    with step_run(context, genrank_paths, mlflow_registry, name="refresh") as step:
        mlflow.set_tags({"genrank.run_kind": "refresh", "dagster_run_id": context.run.run_id})
        mlflow.log_metrics({k.replace("@", "_at_"): float(v) for k, v in gate.metadata().items() if v == v})
        bundle = save_bundle_dirs(step.folder / "catalogue", models.tiger_py.generator, catalogue, raw_songs)
        challenger = registry.register_recommender(
            models.tiger_py, models.ranker_py, None if method == LTR else rec.config, playlist_corpus,
            step.folder / "recommender", method=method, split=queries.split, queries=len(queries),
            queries_fingerprint=queries.fingerprint, ndcg_at_10=float(gate.result.metrics["ndcg@10"]),
            ltr_py=models.ltr_py if method == LTR else None, catalogue_dirs=bundle, run_kind="refresh",
            catalogue_fingerprint=fingerprint)
    context.log.info(f"{challenger.uri} (refresh) is the challenger: NDCG@10 {challenger.ndcg_at_10:.4f}, "
                     f"cold Recall@100 {gate.cold['cold_recall@100']:.4f}")
    return dg.Output(challenger.uri, metadata={
        "registered": True, "run_kind": "refresh", "served_method": method, "queries": len(queries),
        **gate.metadata(), "recommender_uri": challenger.uri, "mlflow_run_id": step.run_id})


def refreshed_recommender(method: str, models, catalogue, corpus: pd.DataFrame, raw_songs: pd.DataFrame,
                          full_uri: str | None):
    """The served system of the last full evaluation, rebuilt over the refreshed catalogue and corpus (a
    classical system: refitted on the grown train corpus; it never recommends a cold-start song, which has no
    train history)."""
    if method in CLASSICAL_SYSTEMS:
        return ClassicalRecommender.fit(corpus, method, song_info(raw_songs))
    generator = models.tiger_py.generator.with_code_table(catalogue.code_table())
    ranker, vectors, info = models.ranker_py.ranker, catalogue.song_vectors(), song_info(raw_songs)
    if method == LTR:
        return LTRRecommender.fit(corpus, generator, ranker, vectors, info, models.ltr_py.ltr,
                                  cold_songs=cold_songs(catalogue))
    if not full_uri:
        raise ValueError(f"the last evaluation serves {method} but recorded no recommender_uri: run a full retrain")
    config = registry.load_python_model(full_uri).recommender.config  # the weights chosen on val, kept
    knn = knn_cooccurrence().fit(corpus) if config.candidate_source == "hybrid" or config.classical_weight else None
    return Recommender(generator, ranker, vectors, info, config, knn=knn)
