"""The learning-to-rank recommender serves the code path its ranker was trained on: same pools, same features,
same scores; explanations follow the recommended order and add up to the score."""
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from genrank_assets.ml.baselines.classical import benchmark_queries
from genrank_assets.ml.ranking.ltr.candidates import CandidateSources, PoolConfig
from genrank_assets.ml.ranking.ltr.features import (
    CROSS_ENCODER_FEATURES,
    FEATURES,
    FeatureBuilder,
    ltr_features,
    uses_cross_encoder,
)
from genrank_assets.ml.ranking.ltr.mentions import CatalogueMentions
from genrank_assets.ml.ranking.ltr.ranker import LTRParams
from genrank_assets.ml.ranking.ltr.tables import build_tables, fit_ranker
from genrank_assets.ml.serving.explain import GENERATOR, LTRComponents, explain_ltr
from genrank_assets.ml.serving.ltr_recommender import LTRRecommender
from genrank_assets.ml.serving.recommender import load_train_corpus, save_knn_corpus
from genrank_assets_tests.ml.ltr_world import song_info, tiny_world

POOL = PoolConfig(generator_songs=12, num_beams=6, per_source=8, rank_depth=20)
PARAMS = LTRParams(num_leaves=4, min_data_in_leaf=5, max_rounds=30, early_stopping_rounds=5, folds=2, num_threads=1)


@pytest.fixture(scope="module")
def trained(one_torch_thread):
    """Tables built as the ltr_tables asset builds them (val + test), a ranker trained on val, and the corpus."""
    world = tiny_world()
    corpus, vectors, generator, ranker = world["corpus"], world["vectors"], world["generator"], world["ranker"]
    sources = CandidateSources.fit(corpus, generator).with_song_vectors(vectors).with_mentions(
        CatalogueMentions().fit(corpus, song_info()))  # the sources as LTRRecommender.fit sets them
    builder = FeatureBuilder(sources, corpus, song_info(), vectors, ranker)
    queries = {split: benchmark_queries(corpus, split=split) for split in ("val", "test")}
    _, features, _ = build_tables(queries, sources, builder, POOL)
    ltr = fit_ranker(features[features["split"] == "val"].reset_index(drop=True), FEATURES, PARAMS)
    ltr.pool_config = asdict(POOL)
    return {"corpus": corpus, "vectors": vectors, "generator": generator, "ranker": ranker, "features": features,
            "ltr": ltr, "test": queries["test"]}


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    """The recommender as a registered bundle refits it: from the saved train corpus only."""
    corpus = load_train_corpus(save_knn_corpus(tmp_path_factory.mktemp("knn"), trained["corpus"]))
    return LTRRecommender.fit(corpus, trained["generator"], trained["ranker"], trained["vectors"], song_info(),
                              trained["ltr"])


def test_serving_builds_the_training_features_and_ranks_by_the_ranker(trained, served):
    qids, texts, _ = trained["test"]
    table = trained["features"]
    for qid, text in zip(qids[:4], texts[:4]):
        rows = table[(table["split"] == "test") & (table["playlist_id"] == qid)].reset_index(drop=True)
        ranked = served.rank(text, 10)
        pd.testing.assert_frame_equal(ranked.features[["song_id", *FEATURES]], rows[["song_id", *FEATURES]])
        expected = rows["song_id"].to_numpy()[np.argsort(-trained["ltr"].predict(rows), kind="stable")][:10]
        assert [r.song_id for r in served.recommend(text, 10)] == list(expected)


def test_fewer_pool_songs_than_k_continue_with_the_fill(served):
    recs = served.recommend("rock", 60)  # the pool holds at most 12 + 3 * 8 songs
    ids = [r.song_id for r in recs]
    assert len(ids) == len(set(ids)) == 60
    assert served.stage_times.medians().keys() == {"pool", "features", "rank"}


def test_explain_follows_the_recommended_order_and_adds_up_to_the_score(served):
    text = "best jazz"
    explained = served.explain(text, 8)
    assert [e.song_id for e in explained] == [r.song_id for r in served.recommend(text, 8)]
    ranked = served.rank(text, 8)
    contrib = served.ltr.contributions(ranked.features)
    np.testing.assert_allclose(contrib.sum(axis=1), ranked.scores, rtol=1e-6, atol=1e-6)
    for e in explained:
        assert isinstance(e.components, LTRComponents) and len(e.components.top) == 5
        assert e.sources, e
        assert all(s.rank >= 1 for s in e.sources)
        gen = [s for s in e.sources if s.name == GENERATOR]
        assert all(s.code is not None and len(s.code) == 3 for s in gen)
        assert e.to_dict()["song_id"] == e.song_id and "LTR score" in e.lines()[1]


def test_a_ranker_without_its_pool_config_is_refused(trained, served):
    ltr = trained["ltr"]
    saved, ltr.pool_config = ltr.pool_config, {}
    try:
        with pytest.raises(ValueError, match="pool_config"):
            LTRRecommender(served.sources, served.builder, ltr, song_info())
    finally:
        ltr.pool_config = saved
    with pytest.raises(ValueError, match="no field"):
        PoolConfig.from_dict({"beams": 3})


def test_the_ranker_round_trips_its_pool_config(trained, tmp_path):
    from genrank_assets.ml.ranking.ltr.ranker import LTRRanker

    loaded = LTRRanker.load(trained["ltr"].save(tmp_path / "ltr"))
    assert PoolConfig.from_dict(loaded.pool_config) == POOL
    np.testing.assert_array_equal(loaded.oof_scores, trained["ltr"].oof_scores)  # the val figure of `auto`


def test_explain_shows_a_sources_rank_in_one_convention(served):
    """The feature line's `<source>_rank` is the same 1-based rank as the `proposed by` line's (the model's input
    is 0-based)."""
    text = "best jazz"
    ranked = served.rank(text, 8)
    compared = 0
    for e in explain_ltr(served, ranked, 8, top_features=len(FEATURES)):
        shown = {name: value for name, value, _ in e.components.top}
        row = ranked.features.set_index("song_id").loc[e.song_id]
        for source in e.sources:
            feature = f"{source.name}_rank"
            if feature in shown:
                assert shown[feature] == source.rank == row[feature] + 1, (e.song_id, feature)
                compared += 1
    assert compared > 0


def test_a_ranker_without_the_cross_encoder_is_served_without_its_logits(trained):
    """A ranker over ltr_features(cross_encoder=False) (the default) never needs the cross-encoder: serving does not
    score the pool with it (its columns NaN, as in the table that ranker learnt from) and ranks as that ranker."""
    served_features = ltr_features(cross_encoder=False)
    ltr = fit_ranker(trained["features"][trained["features"]["split"] == "val"].reset_index(drop=True),
                     served_features, PARAMS)
    ltr.pool_config = asdict(POOL)
    rec = LTRRecommender.fit(trained["corpus"], trained["generator"], trained["ranker"], trained["vectors"],
                             song_info(), ltr)
    assert rec.builder.ranker is None and not uses_cross_encoder(ltr.feature_names)
    qids, texts, _ = trained["test"]
    ranked = rec.rank(texts[0], 10)
    assert ranked.features[list(CROSS_ENCODER_FEATURES)].isna().all(axis=None)
    rows = trained["features"]
    rows = rows[(rows["split"] == "test") & (rows["playlist_id"] == qids[0])].reset_index(drop=True)
    pd.testing.assert_frame_equal(ranked.features[["song_id", *served_features]], rows[["song_id", *served_features]])
