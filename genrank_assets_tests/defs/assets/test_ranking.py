"""The `ranking` assets in the test-preset build: the candidate pools and the learning-to-rank ranker, the
cross-encoder (trained on planted pairs, listwise on pool negatives), and its blocking check."""
from pathlib import Path

import dagster as dg
import numpy as np

from genrank_assets.ml.ranking.cross_encoder.model import load_ranker
from genrank_assets.ml.serving import registry
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
