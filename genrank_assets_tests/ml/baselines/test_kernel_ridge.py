"""Kernel ridge + co-occurrence in its bounded form: equal to the exact dual when every title is a neighbour, and
right on planted data."""
import numpy as np
import pytest

from genrank_assets.ml.baselines.classical import CoOccurrenceRecommender, KernelRidgeRecommender
from genrank_assets.ml.baselines.kernel_ridge import BoundedKernelRidgeRecommender, kernel_ridge_cooccurrence
from genrank_assets_tests.ml.ltr_world import make_corpus

QUERIES = ["rock", "best jazz", "深夜 歌", "gym mix", "zzz unknown"]


def test_bounded_with_all_neighbours_is_the_exact_dual():
    corpus = make_corpus()
    corpus["title"] = corpus["title"] + " mix"  # one shared word: every train title is near every query
    exact = KernelRidgeRecommender(ridge_lambda=2.0).fit(corpus)
    bounded = BoundedKernelRidgeRecommender(ridge_lambda=2.0, neighbours=10_000).fit(corpus)
    assert not hasattr(bounded, "dual_inverse")  # nothing n_train x n_train is kept
    queries = [f"{q} mix" for q in QUERIES]
    assert (bounded.title_similarities(queries) > 0).all()  # so the local and the global solution must agree
    np.testing.assert_allclose(bounded.score_matrix(queries), exact.score_matrix(queries), rtol=1e-9, atol=1e-12)
    full = BoundedKernelRidgeRecommender(ridge_lambda=2.0, neighbours=None).fit(corpus)
    np.testing.assert_allclose(full.score_matrix(QUERIES), exact.score_matrix(QUERIES), rtol=1e-12)


def test_bounded_ridge_cooccurrence_finds_the_theme():
    corpus = make_corpus()
    model = kernel_ridge_cooccurrence(neighbours=5).fit(corpus)
    assert isinstance(model, CoOccurrenceRecommender) and isinstance(model.base, BoundedKernelRidgeRecommender)
    for query, theme in [("rock", "rock"), ("my jazz", "jazz"), ("深夜", "深夜")]:
        top = model.recommend(query, 10)
        assert all(song.startswith(theme) for song in top[:10]), (query, top)
    assert len(model.recommend("zzz unknown", 10)) == 10  # no neighbour: popularity fill


def test_bounded_ridge_checks_its_arguments():
    for bad in (0, -3, True):
        with pytest.raises(ValueError, match="neighbours"):
            BoundedKernelRidgeRecommender(neighbours=bad)
    with pytest.raises(ValueError, match="ridge_lambda"):
        BoundedKernelRidgeRecommender(ridge_lambda=0)
