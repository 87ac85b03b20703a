"""The `ranking` assets in the test-preset build: the candidate pools and the learning-to-rank ranker, the
cross-encoder (trained on planted pairs, listwise on pool negatives), and its blocking check."""
from pathlib import Path

import dagster as dg
import numpy as np

from genrank_assets.defs.folds import crossfit_folds, ltr_cross_encoder
from genrank_assets.ml.baselines.classical import benchmark_queries
from genrank_assets.ml.data.corpus import HOLDOUT
from genrank_assets.ml.ranking.cross_encoder.model import load_ranker
from genrank_assets.ml.ranking.ltr.features import CROSS_ENCODER_FEATURES
from genrank_assets.ml.serving import registry
from genrank_assets.ml.vectors.song_vectors import trained_playlists_of
from genrank_assets_tests.builds import MODELS, champions, materialize, metadata, model_versions, run_config, tables


def test_candidate_pools_and_the_ltr_ranker(built):
    pools = next({k: v.value for k, v in m.metadata.items()}
                 for m in built.result.asset_materializations_for_node("ltr_tables")
                 if m.asset_key == dg.AssetKey("candidate_pools"))
    for split in ("val", "test"):
        for source in ("generator", "knn", "knn_cooc", "ridge_cooc", "union"):
            assert 0.0 <= pools[f"{split}.recall_ceiling.{source}"] <= 1.0
        assert pools[f"{split}.recall_ceiling.union"] >= pools[f"{split}.recall_ceiling.ridge_cooc"]
    ltr = metadata(built.result, "ltr_ranker")
    assert Path(ltr["model_dir"], "model.txt").exists() and ltr["n_rounds"] >= 1
    assert 0.0 <= ltr["val_cv_ndcg@10"] <= 1.0 and "data:image/png;base64," in ltr["feature_importance"]
    assert len(ltr["cv_oof_rounds"].strip("[]").split(",")) == len(ltr["cv_best_rounds"].strip("[]").split(","))


def test_every_train_playlist_learns_from_fold_models_that_never_saw_it(built):
    """The leakage rule of cross-fitting: the folds partition the titled train playlists; a fold's ranking rows are
    its own playlists, and none of them reached that fold's word2vec, generator or cross-encoder training (when the
    ranker learns from one); the
    ranker learnt from every fold's rows and val's."""
    folds = crossfit_folds()
    assert folds >= 2
    (corpus,) = tables(built.home, "playlist_corpus")
    titled_train = set(benchmark_queries(corpus, split="train")[0])  # the train playlists that are queries
    scored = []
    for k in range(folds):
        rows, fold_corpus, gen_pairs = tables(
            built.home, *(f"fold_{k}__{name}" for name in ("ranking_features", "upstream_corpus", "generator_dataset")))
        ids = set(rows["playlist_id"])
        assert set(rows["split"]) == {HOLDOUT} and rows["label"].sum() > 0
        assert ids <= set(fold_corpus.loc[fold_corpus["split"] == HOLDOUT, "playlist_id"])
        vectors = metadata(built.result, f"fold_{k}__song_vectors")["word2vec_model"]
        fitted = trained_playlists_of(vectors) | set(gen_pairs["playlist_id"])
        if ltr_cross_encoder():  # the fold's own cross-encoder (defs/test_crossfit.py: none by default)
            fitted |= set(tables(built.home, f"fold_{k}__ranker_dataset")[0]["playlist_id"])
        else:
            assert rows[list(CROSS_ENCODER_FEATURES)].isna().all(axis=None)
        assert fitted and ids.isdisjoint(fitted), f"fold {k} scored playlists its models were fitted on"
        assert set(fold_corpus.loc[fold_corpus["split"].isin(["train", HOLDOUT]), "playlist_id"]) == set(
            corpus.loc[corpus["split"] == "train", "playlist_id"])
        scored.append(ids)
    assert set().union(*scored) == titled_train and sum(map(len, scored)) == len(titled_train)
    ltr = metadata(built.result, "ltr_ranker")
    assert ltr[f"{HOLDOUT}_queries"] == len(titled_train) and ltr["val_queries"] > 0
    served_vectors = metadata(built.result, "song_vectors")["word2vec_model"]
    assert titled_train <= trained_playlists_of(served_vectors)  # the served models saw every train playlist


def test_ranker_separates_planted_pairs_and_reloads_identically(built):
    meta = built.result.asset_materializations_for_node("ranker_model")[0].metadata
    # Planted themes: clearly better than chance (0.5) after brief training. Measured with the head seeded
    # (ml/ranking/cross_encoder/model.py), ranker_model.seed 0 / 1 / 2: 0.584 / 0.625 / 0.601; the former bar of 0.6 sat
    # inside that seed-to-seed spread and passed only with the unseeded head's draw in this process.
    assert meta["best_val_auc"].value > 0.55
    from_registry = registry.load_python_model(f"models:/{registry.RANKER_NAME}/1")
    saved = load_ranker(Path(meta["model_dir"].value) / "ranker")
    vectors = from_registry.song_vectors.vectors[:20]
    assert np.array_equal(from_registry.ranker.score("深夜 抒情", vectors), saved.score("深夜 抒情", vectors))


def test_the_cross_encoder_learns_listwise_from_cross_fitted_pool_negatives(own_build):
    """ranker_dataset with pool_negatives draws hard negatives from each playlist's own classical pool (sources that
    never saw it) and ranker_model with loss: listwise trains on those lists and passes its blocking check."""
    ops = ("ranker_dataset", "ranker_model")
    variant = run_config(ranker_dataset={"pool_negatives": True, "pool_folds": 3, "random_negative_share": 0.5},
                         ranker_model={"loss": "listwise"})
    result = materialize(own_build.home, own_build.data, variant, dg.AssetSelection.assets(*ops), ops)
    meta = metadata(result, "ranker_dataset")
    assert meta["train_pool"] > 0 and meta["val_pool"] > 0, meta
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["ranker_model_learned"] is True
    examples, corpus = tables(own_build.home, "ranker_dataset", "upstream_corpus")
    own = {p: set(s) for p, s in zip(corpus.playlist_id, corpus.song_ids)}
    pooled = examples[examples.negative_kind == "pool"]
    assert not any(s in own[p] for p, s in zip(pooled.playlist_id, pooled.song_id))


def test_a_model_that_fails_its_check_is_never_registered(own_build):
    """A ranker that did not learn (two steps at a vanishing rate) fails its blocking check: the evaluation does
    not run, and no genrank-ranker or genrank-recommender version is made from it."""
    before = {name: model_versions(name) for name in MODELS}
    champions_before = champions()
    ops = ("ranker_model", "evaluation_report", "champion")
    result = materialize(own_build.home, own_build.data, run_config(ranker_model={"lr": 1e-12, "max_steps": 2}),
                         dg.AssetSelection.assets(*ops), ops, raise_on_error=False)
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["ranker_model_learned"] is False
    assert not result.asset_materializations_for_node("evaluation_report")
    assert {name: model_versions(name) for name in MODELS} == before
    assert champions() == champions_before
