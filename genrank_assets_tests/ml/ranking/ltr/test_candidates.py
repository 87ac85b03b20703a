"""The candidate pool: the union of the sources' proposals, with who proposed what, ranks and scores."""
import numpy as np
import pandas as pd
import pytest

from genrank_assets.ml.ranking.ltr.candidates import (
    CLASSICAL_SOURCES,
    SOURCES,
    CandidateSources,
    PoolConfig,
    build_pool,
    build_pools,
    recall_ceiling,
)
from genrank_assets.ml.ranking.ltr.mentions import CatalogueMentions
from genrank_assets_tests.ml.ltr_world import make_corpus, song_info, song_vectors, tiny_generator


@pytest.fixture(scope="module")
def sources():
    corpus = make_corpus()
    return CandidateSources.fit(corpus, tiny_generator(corpus, song_vectors()), ridge_neighbours=20)


def test_pool_is_the_union_of_each_sources_top_songs(sources):
    config = PoolConfig(generator_songs=10, num_beams=4, per_source=8, rank_depth=30)
    pool = build_pool("best rock", sources, config)
    catalogue = sources.catalogue
    assert len(set(pool.song_ids)) == len(pool)
    expected = set(sources.generator.candidates_from_codes(pool.beams, 10))
    for name, model in (("knn", sources.knn_cooc.base), ("knn_cooc", sources.knn_cooc),
                        ("ridge_cooc", sources.ridge_cooc)):
        top = model.recommend("best rock", 8)
        expected |= set(top)
        proposed = {s for s, p in zip(pool.song_ids, pool.proposed[name]) if p}
        assert proposed == set(top)
        ranks = dict(zip(pool.song_ids, pool.ranks[name]))
        assert [ranks[s] for s in top] == list(range(8))  # 0-based, in the source's own order
        scores = model.score_candidates("best rock", pool.song_ids)
        inside = pool.catalogue_index >= 0  # every train song has each classical score; the others NaN
        np.testing.assert_allclose(pool.scores[name][inside], scores[inside])
        assert np.isnan(pool.scores[name][~inside]).all()
    assert set(pool.song_ids) == expected
    assert np.array_equal(pool.n_sources, np.sum([pool.proposed[s] for s in SOURCES], axis=0))
    # the generator: proposed songs have a beam rank and their code's beam score; the others NaN
    gen = pool.proposed["generator"]
    assert gen.any() and np.isfinite(pool.ranks["generator"][gen]).all()
    assert np.isnan(pool.ranks["generator"][~gen]).all()
    assert all(catalogue.song_ids[i] == s if i >= 0 else s not in catalogue.index
               for i, s in zip(pool.catalogue_index, pool.song_ids))


def test_absent_is_nan_never_zero(sources):
    pool = build_pool("gym", sources, PoolConfig(generator_songs=30, num_beams=8, per_source=3, rank_depth=3))
    for source in CLASSICAL_SOURCES:
        ranked = np.isfinite(pool.ranks[source])
        assert ranked.sum() == 3 and set(pool.ranks[source][ranked]) == {0.0, 1.0, 2.0}
        assert np.isnan(pool.ranks[source][~ranked]).all()


def test_pool_without_the_generator_and_batch_equals_single(sources):
    config = PoolConfig(per_source=5, rank_depth=10, sources=CLASSICAL_SOURCES)
    pool = build_pool("深夜 歌", sources, config)
    assert not pool.proposed["generator"].any() and not pool.beams
    assert np.isnan(pool.scores["generator"]).all()
    texts = ["深夜 歌", "party", "my jazz"]
    many = build_pools(texts, sources, PoolConfig(num_beams=4, generator_songs=6, per_source=5))
    for text, pool in zip(texts, many):
        one = build_pool(text, sources, PoolConfig(num_beams=4, generator_songs=6, per_source=5))
        assert one.song_ids == pool.song_ids
        for source in SOURCES:
            np.testing.assert_array_equal(one.ranks[source], pool.ranks[source])
            np.testing.assert_array_equal(one.scores[source], pool.scores[source])
    with pytest.raises(ValueError, match="one string"):
        build_pools("party", sources)
    with pytest.raises(ValueError, match="non-empty"):
        build_pool("  ", sources)
    with pytest.raises(ValueError, match="sources"):
        PoolConfig(sources=("generator", "bm25"))


def test_recall_ceiling_per_source_and_union(sources):
    config = PoolConfig(generator_songs=5, num_beams=4, per_source=4, rank_depth=10)
    pools = build_pools(["rock", "jazz"], sources, config)
    truths = [set(pools[0].song_ids[:2]) | {"not_in_pool_1", "not_in_pool_2"}, {pools[1].song_ids[0]}]
    ceiling = recall_ceiling(pools, truths)
    assert ceiling["union"] == pytest.approx((2 / 4 + 1) / 2)
    for source in SOURCES:
        inside = [sum(s in t and p for s, p in zip(pool.song_ids, pool.proposed[source])) / len(t)
                  for pool, t in zip(pools, truths)]
        assert ceiling[source] == pytest.approx(np.mean(inside))
        assert ceiling[source] <= ceiling["union"]
    assert ceiling["mean_pool_size"] == pytest.approx(np.mean([len(p) for p in pools]))
    with pytest.raises(ValueError, match="truth"):
        recall_ceiling(pools, [{"a"}])


def test_crossfit_pools_never_let_a_playlist_vote_for_itself():
    from genrank_assets.ml.ranking.ltr.candidates import crossfit_pool_songs

    corpus = make_corpus()
    # a planted train playlist whose title and songs are unique: only it could put those songs in a pool
    planted = {"playlist_id": "planted", "title": "zzqx planted", "tags": "", "song_ids": ["only_here_1", "only_here_2"],
               "split": "train"}
    corpus = pd.concat([corpus, pd.DataFrame([planted, {**planted, "playlist_id": "planted_val", "split": "val"}])],
                       ignore_index=True)
    pools = crossfit_pool_songs(corpus, ("train", "val"), folds=3, per_source=10)
    titled = corpus[corpus.split.isin(["train", "val"]) & corpus.title.str.strip().astype(bool)]
    assert set(pools) == set(titled.playlist_id)
    assert not {"only_here_1", "only_here_2"} & set(pools["planted"])  # its own songs never reach its pool
    assert {"only_here_1", "only_here_2"} <= set(pools["planted_val"])  # a val playlist sees every train one
    assert all(len(p) > 0 for p in pools.values())
    assert pools == crossfit_pool_songs(corpus, ("train", "val"), folds=3, per_source=10)  # deterministic
    with pytest.raises(ValueError, match="folds >= 2"):
        crossfit_pool_songs(corpus, folds=1)


def _with_cold_songs(per_theme: int = 3, seed: int = 1):
    """The planted vectors plus ``per_theme`` songs per theme that no playlist holds, near their theme's songs."""
    from genrank_assets.ml.vectors.song_vectors import SongVectors
    from genrank_assets_tests.ml.ltr_world import THEMES

    warm = song_vectors()
    rng = np.random.default_rng(seed)
    ids, vectors = list(warm.song_ids), [warm.vectors]
    for theme in THEMES:
        centre = warm.vectors[[i for i, s in enumerate(warm.song_ids) if s.startswith(f"{theme}_")]].mean(axis=0)
        for k in range(per_theme):
            ids.append(f"cold_{theme}_{k}")
            vectors.append((centre + 0.05 * rng.normal(size=centre.shape))[None, :])
    return SongVectors(ids, np.ones(len(ids), dtype=np.int64), np.concatenate(vectors).astype(np.float32))


def test_cold_neighbours_proposes_only_songs_without_history_nearest_the_query_centroid():
    corpus = make_corpus()
    vectors = _with_cold_songs()
    sources = CandidateSources.fit(corpus, None, ridge_neighbours=20).with_song_vectors(vectors)
    no_history = [s for s in vectors.song_ids if s not in sources.catalogue.index]  # planted or in val/test only
    assert sources.cold.song_ids == no_history and sum(s.startswith("cold_") for s in no_history) == 18
    config = PoolConfig(per_source=8, rank_depth=30, cold_songs=5, centroid_top=5)
    pool = build_pool("rock", sources, config)
    cold = pool.proposed["cold_neighbours"]
    proposed = [s for s, p in zip(pool.song_ids, cold) if p]
    assert len(proposed) == 5 and set(proposed) <= set(no_history)
    assert all(pool.catalogue_index[cold] < 0)  # no train playlist holds them
    ranked = sorted(proposed, key=lambda s: pool.ranks["cold_neighbours"][pool.song_ids.index(s)])
    assert {s.rsplit("_", 1)[0] for s in ranked[:3]} == {"cold_rock"}  # the query's theme first
    cosines = [pool.scores["cold_neighbours"][pool.song_ids.index(s)] for s in ranked]
    assert cosines == sorted(cosines, reverse=True)
    # the score is the cosine of the song's vector to the unit centroid of ridge_cooc's top 5 train songs
    unit = vectors.normalized()
    top = [vectors.index_of(sources.catalogue.song_ids[r]) for r in pool.classical_top[:5]]
    centroid = unit[top].mean(axis=0)
    centroid /= np.linalg.norm(centroid)
    for song in proposed:
        i = pool.song_ids.index(song)
        assert pool.scores["cold_neighbours"][i] == pytest.approx(float(unit[vectors.index_of(song)] @ centroid),
                                                                  abs=1e-5)
    # the songs with history have no cold score or rank; a pool without the source proposes none of them
    assert np.isnan(pool.scores["cold_neighbours"][~cold]).all()
    assert np.isnan(pool.ranks["cold_neighbours"][~cold]).all()
    without = build_pool("rock", sources, PoolConfig(per_source=8, rank_depth=30, sources=CLASSICAL_SOURCES))
    assert not set(without.song_ids) & set(no_history)
    # sources without song vectors: the source is silent
    plain = build_pool("rock", CandidateSources.fit(corpus, None, ridge_neighbours=20), config)
    assert not plain.proposed["cold_neighbours"].any() and np.isnan(plain.scores["cold_neighbours"]).all()
    with pytest.raises(ValueError, match="cold_songs"):
        PoolConfig(cold_songs=0)


def test_mention_proposes_the_named_singers_songs_first_cold_ones_too():
    corpus = make_corpus()
    info = {**song_info(), "cold_深夜": ("深夜 cold demo", "singer 3")}  # singer 3's song in no playlist
    sources = CandidateSources.fit(corpus, None, ridge_neighbours=20).with_mentions(
        CatalogueMentions().fit(corpus, info))
    config = PoolConfig(per_source=5, rank_depth=10, mention_songs=20)
    pool = build_pool("songs like singer 3", sources, config)
    assert pool.mentions.singers == {"singer 3": 1.0}
    named = [s for s, p in zip(pool.song_ids, pool.proposed["mention"]) if p]
    ranked = sorted(named, key=lambda s: pool.ranks["mention"][pool.song_ids.index(s)])
    # singer 3 sings the 12 songs of theme 深夜: the most played first, the cold one last; no other singer here
    popularity = {s: sources.catalogue.counts[sources.catalogue.index[s]] for s in ranked[:-1]}
    assert ranked[:-1] == sorted(popularity, key=lambda s: (-popularity[s], s)) and len(ranked) == 13
    assert ranked[-1] == "cold_深夜" and pool.catalogue_index[pool.song_ids.index("cold_深夜")] == -1
    assert set(pool.ranks["mention"][pool.proposed["mention"]]) == set(map(float, range(13)))
    assert (pool.scores["mention"][pool.proposed["mention"]] == 1.0).all()
    assert np.isnan(pool.ranks["mention"][~pool.proposed["mention"]]).all()
    assert np.isnan(pool.scores["mention"][~pool.proposed["mention"]]).all()
    # left out of the pool config: nothing proposed, its ranks still known for the features; a query naming no one
    left_out = build_pool("songs like singer 3", sources, PoolConfig(per_source=5, rank_depth=10,
                                                                     sources=CLASSICAL_SOURCES))
    assert not left_out.proposed["mention"].any() and "cold_深夜" not in left_out.song_ids
    assert np.isfinite(left_out.ranks["mention"]).sum() == sum(s.startswith("深夜_") for s in left_out.song_ids)
    plain = build_pool("rock", sources, config)
    assert len(plain.mentions) == 0 and not plain.proposed["mention"].any()
    unfitted = build_pool("songs like singer 3", CandidateSources.fit(corpus, None, ridge_neighbours=20), config)
    assert unfitted.mentions is None and np.isnan(unfitted.ranks["mention"]).all()
    with pytest.raises(ValueError, match="fitted CatalogueMentions"):
        sources.with_mentions(CatalogueMentions())
    with pytest.raises(ValueError, match="mention_songs"):
        PoolConfig(mention_songs=0)
