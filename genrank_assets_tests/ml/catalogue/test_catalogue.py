"""The catalogue: a full build places cold songs under codes; a refresh never changes an existing song's code."""
import numpy as np

from genrank_assets.ml.catalogue.catalogue import (
    build_catalogue,
    changed_codes,
    extend_catalogue,
    from_frame,
    load_state,
    save_state,
    to_frame,
)
from genrank_assets.ml.semantic_ids.codes import code_space_of
from genrank_assets.ml.semantic_ids.rq_kmeans import RQKMeans
from genrank_assets.ml.vectors.song_vectors import train_word2vec, vectors_of

SMALL = {"vector_size": 8, "window": 5, "epochs": 3, "min_count": 2, "seed": 0}


def world(seed=0):
    """Playlists drawn from 6 singers' songs (a playlist mostly one singer); song info for every song."""
    rng = np.random.default_rng(seed)
    songs = {f"g{g}_{j}": (f"tune {j}", f"singer{g}") for g in range(6) for j in range(20)}
    by_singer = [[s for s in songs if s.startswith(f"g{g}_")] for g in range(6)]

    def playlist():
        g = int(rng.integers(6))
        return [str(s) for s in rng.choice(by_singer[g][:15], size=8)]  # songs 15..19 never played
    return songs, [playlist() for _ in range(150)], playlist


def fitted(songs, playlists):
    sv, model = train_word2vec(playlists, **SMALL)
    quantizer = RQKMeans(levels=(4, 3), n_iter=5, seed=0)
    codes = quantizer.fit_predict(sv.normalized())
    return sv, model, quantizer, dict(zip(sv.song_ids, codes.tolist())), code_space_of(codes)


def test_full_build_gives_every_song_a_code_and_flags_the_cold_ones():
    songs, playlists, _ = world()
    sv, _, quantizer, codes, space = fitted(songs, playlists)
    cat, cold_model = build_catalogue(sv, codes, quantizer, songs, list(songs), space, seed=0)
    assert set(cat.song_ids) == set(songs)
    assert cat.n_cold == len(songs) - len(sv)
    cold_rows = np.flatnonzero(cat.cold_start)
    assert all(cat.song_ids[r].split("_")[1] in {"15", "16", "17", "18", "19"} for r in cold_rows)
    assert (cat.codes < np.asarray(space)).all()
    assert all(cat.code_of()[s] == tuple(codes[s]) for s in sv.song_ids)  # warm songs keep their fitted codes
    assert cat.code_table().popularity[cold_rows].max() == 0  # cold songs come last within a code
    assert from_frame(to_frame(cat)).code_of() == cat.code_of()


def test_refresh_keeps_codes_and_vectors_and_warms_cold_songs(tmp_path):
    songs, playlists, playlist = world()
    sv, model, quantizer, codes, space = fitted(songs, playlists)
    before, _ = build_catalogue(sv, codes, quantizer, songs, list(songs), space, seed=0)
    new_songs = {**songs, "brand_new": ("new tune", "singer2"), "orphan": ("x", "")}
    batch = [playlist() + ["g2_17", "g2_17", "fresh_a", "fresh_a"] for _ in range(10)]
    after, ext = extend_catalogue(before, model, batch, quantizer, new_songs, list(new_songs), space, seed=0)
    assert changed_codes(before, after) == []
    for s in before.song_ids:
        if not before.cold_start[before.row_of(s)]:
            assert np.array_equal(before.vectors[before.row_of(s)], after.vectors[after.row_of(s)])
    assert "g2_17" in ext.warmed and not after.cold_start[after.row_of("g2_17")]
    assert "fresh_a" in ext.new_learned and {"brand_new", "orphan"} <= set(ext.new_cold)
    assert np.all(np.isfinite(after.vectors)) and (after.codes < np.asarray(space)).all()
    # the state round-trips and a second identical run gives identical output
    save_state(tmp_path, after, model, ["p"], {"quantizer": "q"})
    again, model2, trained, info = load_state(tmp_path)
    assert again.code_of() == after.code_of() and trained == {"p"} and info == {"quantizer": "q"}
    assert vectors_of(model2).song_ids == vectors_of(model).song_ids


def test_a_batch_with_nothing_new_changes_nothing():
    songs, playlists, _ = world()
    sv, model, quantizer, codes, space = fitted(songs, playlists)
    before, _ = build_catalogue(sv, codes, quantizer, songs, list(songs), space, seed=0)
    after, ext = extend_catalogue(before, model, [], quantizer, songs, list(songs), space, seed=0)
    assert ext.new_songs == [] and ext.warmed == []
    assert after.code_of() == before.code_of() and np.array_equal(after.vectors, before.vectors)
