"""Classical baselines on a tiny hand-made corpus where the right answer is obvious."""
import numpy as np
import pandas as pd
import pytest

from genrank_assets.ml.baselines import classical as bl
from genrank_assets.ml.data.corpus import train_popularity

# Train popularity (distinct train playlists per song): r_hit 3; c_1 2 (3 occurrences, but twice in one
# playlist); p_hit 2; every other song 1. Equal counts go by song id, so the popularity order is:
POPULARITY_ORDER = ["r_hit", "c_1", "p_hit", "a_summer", "c_2", "c_3", "p_b", "r_a", "r_b", "r_c"]

ROWS = [
    # playlist_id, title, song_ids, split
    ("t1", "rock classics", ["r_hit", "r_b", "r_a"], "train"),
    ("t2", "Rock Anthems", ["r_hit", "r_c"], "train"),
    ("t3", "pop hits", ["p_hit", "r_hit", "p_b"], "train"),
    ("t4", "summer pop", ["a_summer", "p_hit"], "train"),
    ("t5", "chill evening", ["c_1", "c_1", "c_2"], "train"),
    ("t6", "lazy chill", ["c_1", "c_3"], "train"),
    ("v1", "pop", ["v_only", "p_hit"], "val"),
    ("x1", "rock", ["r_b", "r_c", "test_only", "r_b"], "test"),
    ("x2", "   ", ["r_hit"], "test"),
    ("x3", "", ["r_hit"], "test"),
]


@pytest.fixture
def corpus() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "playlist_id": [r[0] for r in ROWS],
            "title": [r[1] for r in ROWS],
            "tags": [""] * len(ROWS),
            "song_ids": [list(r[2]) for r in ROWS],
            "split": [r[3] for r in ROWS],
        }
    )


def rank_by_scores(model, text):
    """Catalogue sorted by score_candidates, equal scores by popularity: what recommend must return."""
    scores = model.score_candidates(text, POPULARITY_ORDER)
    return [POPULARITY_ORDER[i] for i in np.lexsort((np.arange(len(scores)), -scores))]


def test_popularity_counts_distinct_songs_per_train_playlist(corpus):
    model = bl.PopularityRecommender().fit(corpus)
    assert model.recommend("anything", 100) == POPULARITY_ORDER
    assert model.recommend_many(["a", "b"], 3) == [POPULARITY_ORDER[:3]] * 2
    np.testing.assert_array_equal(model.score_candidates("x", ["c_1", "r_hit", "v_only"]), [2.0, 3.0, 0.0])


def test_catalogue_counts_are_the_one_train_popularity(corpus):
    counts = train_popularity(corpus)
    assert counts["c_1"] == 2 and counts["r_hit"] == 3  # c_1 twice in t5 counts once; val/test rows never
    assert "v_only" not in counts and "test_only" not in counts
    catalogue = bl.PopularityRecommender().fit(corpus).catalogue
    assert catalogue.song_ids == POPULARITY_ORDER
    assert dict(zip(catalogue.song_ids, catalogue.counts.tolist())) == counts


def test_score_matrix_is_the_public_form_of_the_scores(corpus):
    model = bl.knn_cooccurrence().fit(corpus)
    matrix = model.score_matrix(["rock", "chill"])
    assert matrix.shape == (2, len(POPULARITY_ORDER))
    ids = model.catalogue.song_ids
    np.testing.assert_array_equal(matrix[1], model.score_candidates("chill", ids))
    with pytest.raises(ValueError, match="one string"):
        model.score_matrix("rock")
    with pytest.raises(ValueError, match="not fitted"):
        bl.knn_cooccurrence().score_matrix(["rock"])


def test_knn_rock_query_returns_rock_playlists_songs_first_then_popularity(corpus):
    model = bl.TitleKNNRecommender(k_neighbors=2).fit(corpus)
    ranked = model.recommend("rock", 100)
    assert ranked[0] == "r_hit"  # in both rock playlists
    assert set(ranked[1:4]) == {"r_a", "r_b", "r_c"}
    assert ranked.index("r_a") + 1 == ranked.index("r_b")  # same playlist, same score: popularity, then id
    assert ranked[4:] == [s for s in POPULARITY_ORDER if not s.startswith("r_")]  # the popularity fill


def test_knn_equal_scores_break_by_popularity_or_song_id(corpus):
    # only "summer pop" votes: its songs tie; playlist order (a_summer first) must not matter
    by_popularity = bl.TitleKNNRecommender(k_neighbors=1).fit(corpus)
    assert by_popularity.recommend("summer pop", 4) == ["p_hit", "a_summer", "r_hit", "c_1"]
    by_id = bl.TitleKNNRecommender(k_neighbors=1, tie_break="song_id").fit(corpus)
    assert by_id.recommend("summer pop", 4) == ["a_summer", "p_hit", "r_hit", "c_1"]


def test_knn_word_analyzer_lowercases_and_falls_back_to_popularity(corpus):
    model = bl.TitleKNNRecommender(analyzer="word", k_neighbors=2).fit(corpus)
    ranked = model.recommend("ROCK", 4)
    assert ranked[0] == "r_hit" and set(ranked[1:4]) == {"r_a", "r_b", "r_c"}
    assert model.recommend("zzz unknown", 100) == POPULARITY_ORDER
    assert model.recommend("😎", 100) == POPULARITY_ORDER


def test_val_and_test_songs_never_recommended(corpus):
    for model in (bl.PopularityRecommender(), bl.TitleKNNRecommender(), bl.tuned_title_knn(),
                  bl.knn_cooccurrence()):
        model.fit(corpus)
        for ranked in model.recommend_many(["rock", "pop", "chill"], 100):
            assert len(ranked) == len(POPULARITY_ORDER) == len(set(ranked))
            assert set(ranked) == set(POPULARITY_ORDER)  # no v_only, no test_only


@pytest.mark.parametrize("make", [
    lambda: bl.TitleKNNRecommender(k_neighbors=2),
    lambda: bl.TitleKNNRecommender(analyzer="word"),
    bl.tuned_title_knn,
    bl.knn_cooccurrence,
    lambda: bl.KernelRidgeRecommender(ridge_lambda=1.0),
])
def test_recommend_agrees_with_scores_and_batch(corpus, make):
    model = make().fit(corpus)
    texts = ["rock", "summer pop", "chill!!", "nothing matches"]
    batch = model.recommend_many(texts, 100)
    assert batch == [model.recommend(t, 100) for t in texts]
    assert batch == [rank_by_scores(model, t) for t in texts]
    assert model.recommend_many(texts, 3) == [r[:3] for r in batch]
    assert make().fit(corpus).recommend_many(texts, 100) == batch  # deterministic refit


def test_score_candidates_is_zero_without_evidence(corpus):
    model = bl.TitleKNNRecommender(k_neighbors=2).fit(corpus)
    scores = model.score_candidates("rock", ["r_hit", "r_a", "p_hit", "never_seen"])
    assert scores[0] > scores[1] > 0
    assert scores[2] == 0.0 and scores[3] == 0.0


def test_normalize_title_nfkc_lowercase_strips_punctuation_and_emoji():
    assert bl.normalize_title("Chill 😎 Vibes!!") == "chill vibes"
    assert bl.normalize_title("Ｒｏｃｋ＿ｎ’roll") == "rock n roll"  # full-width letters, underscore, quote
    assert bl.normalize_title("   ") == ""


def test_tuned_knn_ranks_matching_playlists_first(corpus):
    model = bl.tuned_title_knn().fit(corpus)
    ranked = model.recommend("ROCK!!! 🤘", 4)
    assert ranked[0] == "r_hit" and set(ranked[1:4]) == {"r_a", "r_b", "r_c"}


def test_cooccurrence_walk_lifts_songs_that_share_playlists_with_the_seeds(corpus):
    # base: only "Rock Anthems" votes (r_hit, r_c, score 1 each). Seed weight = score / popularity:
    # r_hit 1/3, r_c 1. Playlist mass: t1 1/3, t2 4/3, t3 1/3. Walk: r_hit 2, r_c 4/3, r_a = r_b = p_hit =
    # p_b = 1/3, others 0. Final = base/1 + 3 * walk/2: r_hit 4, r_c 3, the four co-occurring songs 0.5.
    model = bl.CoOccurrenceRecommender(bl.TitleKNNRecommender(k_neighbors=1), n_seeds=100, walk_weight=3.0)
    model.fit(corpus)
    assert model.recommend("Rock Anthems", 100) == [
        "r_hit", "r_c", "p_hit", "p_b", "r_a", "r_b", "c_1", "a_summer", "c_2", "c_3"]
    np.testing.assert_allclose(model.score_candidates("Rock Anthems", ["r_hit", "r_c", "r_a", "c_1"]),
                               [4.0, 3.0, 0.5, 0.0])


def test_kernel_ridge_exact_title_ranks_its_playlist_first(corpus):
    model = bl.KernelRidgeRecommender().fit(corpus)
    assert model.recommend("lazy chill", 2) == ["c_1", "c_3"]
    assert bl.kernel_ridge_cooccurrence().fit(corpus).recommend("lazy chill", 1) == ["c_1"]


def test_benchmark_queries_follow_the_protocol(corpus):
    qids, texts, truths = bl.benchmark_queries(corpus)
    assert qids == ["x1"] and texts == ["rock"]  # whitespace-only and empty titles are not queries
    assert truths == {"x1": {"r_b", "r_c", "test_only"}}  # distinct songs, test-only songs included
    assert bl.benchmark_queries(corpus, "val")[0] == ["v1"]


def test_top_k_indices_matches_lexsort_with_ties():
    rng = np.random.default_rng(0)
    for n, k, levels in [(10, 3, 2), (5000, 7, 3), (5000, 300, 50), (3000, 3000, 4), (20000, 100, 1)]:
        scores = rng.integers(0, levels, size=n).astype(np.float64)
        expected = np.lexsort((np.arange(n), -scores))[:k]
        np.testing.assert_array_equal(bl.top_k_indices(scores, k), expected)
    mostly_zero = np.zeros(50_000)
    mostly_zero[[40_000, 7, 300]] = [2.0, 1.0, 2.0]
    np.testing.assert_array_equal(bl.top_k_indices(mostly_zero, 5), [300, 40_000, 7, 0, 1])


def test_bad_input_raises_clear_errors(corpus):
    with pytest.raises(ValueError, match="song_ids"):
        bl.PopularityRecommender().fit(corpus.drop(columns="song_ids"))
    with pytest.raises(ValueError, match="no playlist with split == 'train'"):
        bl.PopularityRecommender().fit(corpus[corpus["split"] != "train"])
    with pytest.raises(ValueError, match="unknown values"):
        bl.PopularityRecommender().fit(corpus.assign(split="dev"))
    with pytest.raises(ValueError, match="not fitted"):
        bl.TitleKNNRecommender().recommend("rock", 10)
    model = bl.TitleKNNRecommender().fit(corpus)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.recommend("rock", 0)
    with pytest.raises(ValueError, match="one string"):
        model.recommend_many("rock", 10)
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        model.recommend_many(["rock", None], 10)
    with pytest.raises(ValueError, match="analyzer"):
        bl.TitleKNNRecommender(analyzer="bytes")
    with pytest.raises(ValueError, match="tie_break"):
        bl.TitleKNNRecommender(tie_break="random")
    with pytest.raises(ValueError, match="split"):
        bl.benchmark_queries(corpus, "dev")
