"""The recommender on planted models: one final-score formula for serving and tuning, public stage timings."""
import numpy as np
import pytest

from genrank_assets.ml.baselines.classical import knn_cooccurrence
from genrank_assets.ml.serving.recommender import (
    ComponentScores,
    Recommender,
    RecommenderConfig,
    final_order,
    final_scores,
    rank_with_weights,
)
from genrank_assets_tests.ml.serving.fakes import SONGS, planted_corpus, planted_models

TEXTS = ["rock night", "chill evening", "party", "nothing at all"]


@pytest.fixture(scope="module")
def corpus():
    return planted_corpus()


@pytest.fixture(scope="module")
def knn(corpus):
    return knn_cooccurrence().fit(corpus)


def make(corpus, knn=None, **config) -> Recommender:
    generator, ranker, sv, info = planted_models(corpus)
    return Recommender(generator, ranker, sv, info, RecommenderConfig(**config), knn=knn)


def test_final_score_formula():
    logits, lp, cl = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, 3.0]), np.array([1.0, 0.0, 0.5])
    np.testing.assert_allclose(final_scores(logits, lp, 0.5, 2.0, cl), logits + 0.5 * lp + 2.0 * cl)
    np.testing.assert_array_equal(final_scores(logits, lp, 0.5), logits + 0.5 * lp)  # no classical part needed
    # Equal scores: the more popular song first, then the given order.
    assert final_order(np.array([1.0, 1.0, 2.0, 1.0]), np.array([0.0, 2.0, 0.0, 0.0])).tolist() == [2, 1, 0, 3]


def test_ranking_agrees_with_the_weight_tuning_ranking(corpus, knn):
    """Serving (rank_rows) and tuning (rank_with_weights over component_scores) rank with the same formula."""
    for pw, cw in [(0.0, 0.0), (1.0, 0.0), (0.5, 4.0), (0.0, 16.0)]:
        rec = make(corpus, knn, candidate_source="hybrid", n_candidates=10, popularity_weight=pw, classical_weight=cw)
        served = [[r.song_id for r in recs] for recs in rec.recommend_many(TEXTS, 20)]
        tuned = rank_with_weights(rec.component_scores(TEXTS, 20), pw, cw, 20)
        assert served == tuned, (pw, cw)


def test_ranker_fixes_the_generator_order(corpus):
    rec = make(corpus)
    top = [r.song_id for r in rec.recommend("rock night", 5)]
    assert top == SONGS["rock"][:5]  # the generator proposes rock_9 first; the ranker puts rock_0 first
    assert [r.rank for r in rec.recommend("rock night", 5)] == [1, 2, 3, 4, 5]


def test_component_scores_tail_follows_the_scored_candidates():
    cs = ComponentScores(song_ids=[["a", "b"]], logits=[np.array([0.0, 1.0])], log_popularity=[np.zeros(2)],
                         classical=[np.zeros(2)], tail=[["z"]])
    assert rank_with_weights(cs, 0.0, 0.0, None) == [["b", "a", "z"]]
    assert rank_with_weights(cs, 0.0, 0.0, 1) == [["b"]]


def test_stage_times_are_a_public_result(corpus, knn):
    rec = make(corpus, knn, candidate_source="hybrid", classical_weight=1.0)
    assert rec.stage_times.generate_ms == []
    rec.recommend_many(TEXTS, 10)
    times = rec.stage_times
    assert len(times.generate_ms) == len(times.knn_ms) == len(times.rank_ms) == len(times.total_ms) == len(TEXTS)
    medians = times.medians()
    assert set(medians) == {"generate", "classical", "rank"} and medians["rank"] > 0
    rec.reset_stage_times()
    assert rec.stage_times.rank_ms == []


def test_set_weights_keeps_the_candidates_and_checks_the_classical_recommender(corpus):
    rec = make(corpus, n_candidates=7)
    rec.set_weights(2.0, 0.0)
    assert (rec.config.popularity_weight, rec.config.classical_weight, rec.config.n_candidates) == (2.0, 0.0, 7)
    with pytest.raises(ValueError, match="classical recommender"):
        rec.set_weights(0.0, 1.0)  # no kNN to score with
    assert rec.config.classical_weight == 0.0
    with pytest.raises(ValueError, match="classical recommender"):
        make(corpus, candidate_source="hybrid")


def test_bad_queries_raise(corpus):
    rec = make(corpus)
    with pytest.raises(ValueError, match="empty"):
        rec.recommend("  ")
    with pytest.raises(ValueError, match="k must be"):
        rec.recommend("rock", 0)
