"""The serving path by evidence (classical.EvidenceScores) against the dense rows it replaces: the same values
bitwise and the same top k (same order, equal scores to the more popular song) for every recommender variant,
in both modes of the evidence gather (sparse sort, dense product), on a synthetic corpus full of ties and on a
slice of the demo data; and the candidate pool's classical ranks and scores against the dense rows.

The dense reference is each recommender's ``score_matrix`` (the unchanged dense computation; the evaluation
grids still use it) ranked by ``top_k_indices``."""
import numpy as np
import pandas as pd
import pytest

from benchmarks.serving_cost import load_corpus
from genrank_assets.ml.baselines import classical as bl
from genrank_assets.ml.baselines.kernel_ridge import BoundedKernelRidgeRecommender, kernel_ridge_cooccurrence
from genrank_assets.ml.ranking.ltr.candidates import CLASSICAL_SOURCES, CandidateSources, PoolConfig, build_pool

WORDS = ["rock", "chill", "gym", "jazz", "sad", "love", "rock chill", "x", "Rock!", "chill"]
QUERIES = ["rock", "chill rock", "zzzz", "jazz love", "q", "gym gym", "x", "ROCK", "😀"]  # zzzz, q, 😀: no evidence
KS = (1, 3, 10, 40, 100, 1000)  # 100, 1000: beyond the evidence and the catalogue

VARIANTS = {
    "popularity": bl.PopularityRecommender,
    "reference_knn": bl.reference_title_knn,
    "knn_5": lambda: bl.TitleKNNRecommender(k_neighbors=5),
    "knn_5_popularity": lambda: bl.TitleKNNRecommender(k_neighbors=5, popularity_weight=0.3),
    "knn_5_squared_word": lambda: bl.TitleKNNRecommender(analyzer="word", k_neighbors=5, similarity_power=2.0),
    "tuned_knn": bl.tuned_title_knn,
    "knn_cooccurrence": bl.knn_cooccurrence,
    "exact_ridge_cooccurrence": bl.kernel_ridge_cooccurrence,
    "bounded_ridge": lambda: BoundedKernelRidgeRecommender(neighbours=7),
    "bounded_ridge_exact": lambda: BoundedKernelRidgeRecommender(neighbours=None),
    "bounded_ridge_cooccurrence": lambda: kernel_ridge_cooccurrence(neighbours=7),
    "popularity_cooccurrence": lambda: bl.CoOccurrenceRecommender(bl.PopularityRecommender(), n_seeds=5,
                                                                  target_popularity_power=0.5),
    "knn_popularity_cooccurrence": lambda: bl.CoOccurrenceRecommender(
        bl.TitleKNNRecommender(k_neighbors=5, popularity_weight=0.3), n_seeds=7, seed_popularity_power=0.5),
}


def synthetic_corpus(seed: int, n_playlists: int = 120, n_songs: int = 60) -> pd.DataFrame:
    """Few distinct titles (many equal similarities) over a small catalogue (many equal votes)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_playlists):
        songs = [f"s{j:03d}" for j in rng.choice(n_songs, rng.integers(1, 8), replace=False)]
        rows.append((f"p{i}", str(rng.choice(WORDS)), songs, "train" if i % 5 else "test"))
    return pd.DataFrame(rows, columns=["playlist_id", "title", "song_ids", "split"])


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory) -> pd.DataFrame:
    from genrank_assets.ml.data.demo_data import generate_demo_data

    out = tmp_path_factory.mktemp("evidence_demo")
    generate_demo_data(out, n_playlists=300, n_songs=500, seed=3, malformed_rate=0.0)
    return load_corpus(out)


@pytest.fixture(params=["sparse", "dense"])
def gather_mode(request, monkeypatch):
    """Both modes of the evidence gather: always the sort (share 0), always the dense product (share 1e9)."""
    monkeypatch.setattr(bl, "_GATHER_SHARE", 0 if request.param == "sparse" else 10**9)
    return request.param


def assert_same_as_dense(model, queries):
    for query in queries:
        dense = model.score_matrix([query])[0]
        evidence = model.evidence(query)
        assert np.array_equal(evidence.to_dense(), dense), query
        rows = np.arange(len(dense))
        assert np.array_equal(evidence.at(rows), dense), query
        for k in KS:
            expected = bl.top_k_indices(dense, min(k, len(dense)))
            assert np.array_equal(evidence.top_k(k), expected), (query, k)
        if not (isinstance(model, bl.TitleKNNRecommender) and model.tie_break == "song_id"):
            top = [model.catalogue.song_ids[i] for i in bl.top_k_indices(dense, min(20, len(dense)))]
            assert model.recommend(query, 20) == top, query
            assert model.recommend_many([query], 20) == [top]
        ids = [*model.catalogue.song_ids[:5], "not-a-train-song"]
        expected = np.array([*dense[:5], 0.0])
        assert np.array_equal(model.score_candidates(query, ids), expected)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("seed", [0, 1])
def test_evidence_path_is_the_dense_row_and_its_top_k(name, seed, gather_mode):
    model = VARIANTS[name]().fit(synthetic_corpus(seed))
    assert_same_as_dense(model, QUERIES)


@pytest.mark.parametrize("name", ["knn_5_popularity", "tuned_knn", "knn_cooccurrence", "bounded_ridge_cooccurrence",
                                  "reference_knn"])
def test_evidence_path_on_a_slice_of_the_demo_data(name, demo_corpus, gather_mode):
    model = VARIANTS[name]().fit(demo_corpus)
    titles = demo_corpus.loc[demo_corpus["split"] != "train", "title"].tolist()[:15]
    assert_same_as_dense(model, [*titles, "zzzz", "😀"])


def test_evidence_of_a_bounded_source_is_sparse_and_empty_without_a_match(gather_mode):
    ridge = BoundedKernelRidgeRecommender(neighbours=3).fit(synthetic_corpus(0, n_playlists=400, n_songs=2000))
    if gather_mode == "sparse":
        assert not ridge.evidence("jazz").is_dense and len(ridge.evidence("jazz").idx) < len(ridge.catalogue) / 4
    empty = ridge.evidence("😀")  # no character n-gram of any title
    assert empty.to_dense().max() == 0.0
    assert np.array_equal(empty.top_k(7), np.arange(7))  # popularity order


def test_tied_scores_go_to_the_more_popular_song():
    # songs a, b, c each in one playlist titled "rock" (equal votes); z is the most popular, in "pop" playlists
    corpus = pd.DataFrame({"playlist_id": [f"p{i}" for i in range(6)],
                           "title": ["rock", "rock", "rock", "pop", "pop", "pop"],
                           "song_ids": [["c"], ["b", "z"], ["a"], ["z"], ["z", "y"], ["y"]],
                           "split": ["train"] * 6})
    model = bl.TitleKNNRecommender(k_neighbors=3).fit(corpus)
    ev = model.evidence("rock")
    assert model.recommend("rock", 5) == [model.catalogue.song_ids[i] for i in ev.top_k(5)]
    assert model.recommend("rock", 5)[:1] == ["z"] and set(model.recommend("rock", 5)[1:4]) == {"a", "b", "c"}
    dense = model.score_matrix(["rock"])[0]
    assert np.array_equal(ev.top_k(5), bl.top_k_indices(dense, 5))


@pytest.mark.parametrize("corpus_seed", [0, 2])
def test_pool_ranks_and_scores_are_the_dense_rows(corpus_seed, gather_mode):
    corpus = synthetic_corpus(corpus_seed, n_playlists=300, n_songs=200)
    sources = CandidateSources.fit(corpus, ridge_neighbours=9)
    config = PoolConfig(per_source=5, rank_depth=30, sources=CLASSICAL_SOURCES)
    models = {"knn": sources.knn_cooc.base, "knn_cooc": sources.knn_cooc, "ridge_cooc": sources.ridge_cooc}
    for query in QUERIES:
        pool = build_pool(query, sources, config)
        rows = pool.catalogue_index
        assert (rows >= 0).all()
        for name, model in models.items():
            dense = model.score_matrix([query])[0]
            order = bl.top_k_indices(dense, 30)
            assert np.array_equal(pool.scores[name], dense[rows]), (query, name)
            position = {int(r): float(i) for i, r in enumerate(order)}
            expected = np.array([position.get(int(r), np.nan) for r in rows])
            assert np.array_equal(pool.ranks[name], expected, equal_nan=True), (query, name)
            assert set(rows[pool.proposed[name]]) == set(order[:5].tolist())
        assert pool.classical_top == [int(i) for i in bl.top_k_indices(models["ridge_cooc"].score_matrix([query])[0],
                                                                        30)]
        assert np.array_equal(pool.base_scores["knn"], models["knn"].score_matrix([query])[0][rows])
        assert np.array_equal(pool.base_scores["ridge"], sources.ridge_cooc.base.score_matrix([query])[0][rows])
