"""Song vectors: word2vec on planted playlists recovers the clusters, is reproducible, and round-trips a table."""
import numpy as np
import pandas as pd
import pytest

from genrank_assets.ml.vectors.song_vectors import (
    SongVectors,
    from_frame,
    neighbour_table,
    to_frame,
    train_song_vectors,
)

CLUSTERS = {"a": [f"a{i}" for i in range(8)], "b": [f"b{i}" for i in range(8)], "c": [f"c{i}" for i in range(8)]}
SMALL = {"vector_size": 16, "window": 5, "min_count": 1, "sample": 0.0, "epochs": 30, "workers": 1}


def planted_playlists(n_per_cluster: int = 40, seed: int = 0) -> list[list[str]]:
    """Each playlist draws 6 songs from one cluster only: a cluster's songs co-occur, other clusters' never."""
    rng = np.random.default_rng(seed)
    playlists = []
    for songs in CLUSTERS.values():
        for _ in range(n_per_cluster):
            playlists.append(list(rng.choice(songs, size=6, replace=False)))
    order = rng.permutation(len(playlists))
    return [playlists[i] for i in order]


@pytest.fixture(scope="module")
def trained() -> SongVectors:
    return train_song_vectors(planted_playlists(), seed=1, **SMALL)


def test_neighbours_come_from_the_planted_cluster(trained):
    assert len(trained) == 24 and trained.dim == 16
    for cluster, songs in CLUSTERS.items():
        for song in songs:
            top = [s for s, _ in trained.most_similar(song, k=5)]
            assert song not in top
            assert all(s.startswith(cluster) for s in top), (song, top)
    sims = [sim for _, sim in trained.most_similar("a0", k=23)]
    assert sims == sorted(sims, reverse=True) and len(sims) == 23
    # k beyond the vocabulary gives every other song once.
    assert len(trained.most_similar("a0", k=100)) == 23


def test_counts_and_stats(trained):
    playlists = planted_playlists()
    counts = pd.Series([s for p in playlists for s in p]).value_counts()
    assert dict(zip(trained.song_ids, trained.counts.tolist())) == counts.to_dict()
    assert trained.stats["train_playlists"] == len(playlists) and trained.stats["train_rows"] == 6 * len(playlists)
    assert trained.stats["share_train_rows_covered"] == 1.0 and trained.stats["deterministic"] is True


def test_deterministic_with_one_worker_and_a_seed(trained):
    again = train_song_vectors(planted_playlists(), seed=1, **SMALL)
    assert again.song_ids == trained.song_ids
    np.testing.assert_array_equal(again.vectors, trained.vectors)
    other_seed = train_song_vectors(planted_playlists(), seed=2, **SMALL)
    assert not np.array_equal(other_seed.vectors, trained.vectors)
    threaded = train_song_vectors(planted_playlists(), seed=1, **{**SMALL, "workers": 2, "epochs": 1})
    assert threaded.stats["deterministic"] is False


def test_min_count_drops_rare_songs_and_empty_input_is_refused():
    playlists = planted_playlists(n_per_cluster=5) + [["rare", "a0"]]
    sv = train_song_vectors(playlists, seed=0, **{**SMALL, "min_count": 2, "epochs": 2})
    assert sv.index_of("rare") is None and sv.index_of("a0") is not None
    assert sv.stats["share_train_rows_covered"] < 1.0
    with pytest.raises(KeyError, match="'rare' has no vector"):
        sv.most_similar("rare")
    with pytest.raises(ValueError, match="no non-empty playlists"):
        train_song_vectors([[], []], **SMALL)


def test_frame_round_trip(trained):
    frame = to_frame(trained)
    assert list(frame.columns) == ["song_id", "count", "vector"] and len(frame) == len(trained)
    assert frame["vector"].iloc[0].dtype == np.float32
    # As DuckDB hands a FLOAT[dim] column back: float lists, and ids that may come back as other objects.
    frame["vector"] = frame["vector"].map(lambda v: [float(x) for x in v])
    back = from_frame(frame)
    assert back.song_ids == trained.song_ids
    np.testing.assert_array_equal(back.counts, trained.counts)
    np.testing.assert_array_equal(back.vectors, trained.vectors)
    assert back.vectors.dtype == np.float32 and back.most_similar("b3", 3) == trained.most_similar("b3", 3)
    with pytest.raises(ValueError, match="empty"):
        from_frame(frame.iloc[:0])


def test_lengths_must_agree_and_zero_vectors_normalise_safely():
    with pytest.raises(ValueError, match="2 ids, 1 counts, 2 vectors"):
        SongVectors(song_ids=["x", "y"], counts=[1], vectors=np.ones((2, 3)))
    sv = SongVectors(song_ids=["x", "y"], counts=[1, 1], vectors=np.array([[0, 0], [3, 4]]))
    np.testing.assert_allclose(sv.normalized(), [[0, 0], [0.6, 0.8]])


def test_neighbour_table_labels_songs(trained):
    songs = pd.DataFrame({"song_id": trained.song_ids, "song_name": [f"name {s}" for s in trained.song_ids],
                          "singer": "someone"})
    table = neighbour_table(trained, songs, n_queries=2, k=3)
    assert len(table) == 6 and list(table.columns) == ["song", "rank", "neighbour", "cosine"]
    assert table["song"].str.startswith("name ").all() and table["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    unnamed = neighbour_table(trained, None, n_queries=1, k=2)
    assert set(unnamed["song"]) <= set(trained.song_ids)
