"""Recommender.explain on planted models: the recommended order, the sources that proposed each song, the parts
of its score."""
import json

import numpy as np
import pytest

from genrank_assets.ml.generator.tiger import CandidateList
from genrank_assets.ml.serving.explain import CLASSICAL, GENERATOR, POPULAR
from genrank_assets.ml.serving.recommender import Recommender, RecommenderConfig
from genrank_assets_tests.ml.serving import test_recommender
from genrank_assets_tests.ml.serving.fakes import SONGS, FakeGenerator, planted_models, theme_of

TEXTS = test_recommender.TEXTS
corpus, knn = test_recommender.corpus, test_recommender.knn  # the planted corpus and its kNN (fixtures)


class CodedGenerator(FakeGenerator):
    """The fake generator with codes as a TigerGenerator has them: song t_i has code (theme, i // 2, i % 2); the
    beams rank the theme's codes from (theme, 4, 1) down to (theme, 0, 0), so t_9 comes first."""

    def __init__(self, corpus, song_ids):
        super().__init__(corpus, song_ids)
        self.code_table.songs_by_code = {}
        for row, s in enumerate(song_ids):
            theme, _, i = s.partition("_")
            t = len(SONGS) if theme == "hit" else list(SONGS).index(theme)
            self.code_table.songs_by_code.setdefault((t, int(i) // 2, int(i) % 2), []).append(row)

    def generate_candidates(self, text, n=100, num_beams=None):
        theme = theme_of(text)
        if theme is None:
            return CandidateList([], n, [])
        t = list(SONGS).index(theme)
        codes = [((t, i // 2, i % 2), -0.1 * (9 - i)) for i in reversed(range(10))]
        return CandidateList(list(reversed(SONGS[theme]))[:n], n, codes)


def make(corpus, knn=None, coded=True, **config) -> Recommender:
    _, ranker, sv, info = planted_models(corpus)
    generator = (CodedGenerator if coded else FakeGenerator)(corpus, sv.song_ids)
    return Recommender(generator, ranker, sv, info, RecommenderConfig(**config), knn=knn)


@pytest.mark.parametrize("config", [
    {}, {"popularity_weight": 1.0},
    {"candidate_source": "hybrid", "n_candidates": 6, "popularity_weight": 0.5, "classical_weight": 4.0},
    {"candidate_source": "hybrid", "n_candidates": 3, "knn_candidates": 5, "classical_weight": 16.0},
    {"n_candidates": 2, "classical_weight": 1.0},  # classical scores without proposing candidates
])
def test_explained_order_is_the_recommended_order(corpus, knn, config):
    rec = make(corpus, knn, **config)
    for text in TEXTS:
        for k in (1, 5, 20):
            recommended = rec.recommend(text, k)
            explained = rec.explain(text, k)
            assert [(e.rank, e.song_id, e.name, e.singer) for e in explained] == \
                   [(r.rank, r.song_id, r.name, r.singer) for r in recommended], (text, k)
            np.testing.assert_allclose([e.score for e in explained], [r.score for r in recommended])


def test_components_add_up_to_the_score(corpus, knn):
    rec = make(corpus, knn, candidate_source="hybrid", popularity_weight=0.5, classical_weight=4.0)
    for e in rec.explain("rock night", 15):
        c = e.components
        assert (c.popularity_weight, c.classical_weight) == (0.5, 4.0)
        assert 0.0 <= c.classical <= 1.0
        assert c.final == pytest.approx(c.ranker_logit + 0.5 * c.log_popularity + 4.0 * c.classical) == e.score
    without = make(corpus).explain("rock night", 3)
    assert all(e.components.classical is None for e in without)  # weight 0: not computed, not shown
    assert "classical" not in without[0].components.describe()


def test_generator_source_has_the_code_and_its_beam_rank(corpus):
    top = make(corpus).explain("rock night", 10)
    assert [e.song_id for e in top] == SONGS["rock"]
    first = top[0]  # rock_0: the generator's last song, under its last code
    assert [s.name for s in first.sources] == [GENERATOR]
    src = first.sources[0]
    assert (src.rank, src.of, src.code, src.code_rank) == (10, 10, (0, 0, 0), 10)
    assert src.code_score == pytest.approx(-0.9)
    assert top[9].sources[0].code == (0, 4, 1) and top[9].sources[0].code_rank == 1
    line = "\n".join(first.lines())
    assert "generator (song 10 of 10; code (0, 0, 0), code 10 of the beams" in line and "score " in line
    # A generator without codes (a plain list): its rank only.
    plain = make(corpus, coded=False).explain("rock night", 1)[0].sources[0]
    assert (plain.name, plain.rank, plain.code, plain.code_rank) == (GENERATOR, 10, None, None)


def test_hybrid_sources_and_popularity_fill_in(corpus, knn):
    rec = make(corpus, knn, candidate_source="hybrid", n_candidates=10, knn_candidates=12, classical_weight=1.0)
    explained = rec.explain("rock night", 20)
    by_id = {e.song_id: e for e in explained}
    both = by_id["rock_5"]  # in 4 of the 6 rock train playlists: kNN + co-occurrence propose it too
    assert [(s.name, s.rank, s.of) for s in both.sources] == [(GENERATOR, 5, 10), (CLASSICAL, 6, 12)]
    assert "title-kNN + co-occurrence (rank 6 of 12)" in explained[by_id["rock_5"].rank - 1].lines()[2]
    assert any([s.name for s in e.sources] == [CLASSICAL] for e in explained)  # hits: kNN only
    # Nothing proposes songs for a text of no theme and no title match: popular songs fill in, most popular first.
    filled = make(corpus).explain("nothing at all", 3)
    assert all(e.sources[0].name == POPULAR for e in filled)
    assert [e.sources[0].rank for e in filled] == [1, 2, 3]


def test_to_dict_is_json(corpus, knn):
    rec = make(corpus, knn, candidate_source="hybrid", classical_weight=2.0)
    d = rec.explain("chill evening", 2)[0].to_dict()
    assert set(d) == {"rank", "song_id", "name", "singer", "score", "sources", "components"}
    assert d["sources"][0]["name"] == GENERATOR and isinstance(d["sources"][0]["code"], list)
    assert set(d["components"]) == {"ranker_logit", "log_popularity", "popularity_weight", "classical",
                                    "classical_weight", "final"}
    json.dumps(d)


def test_explain_records_stage_times_and_checks_its_input(corpus):
    rec = make(corpus)
    rec.explain("party", 3)
    t = rec.stage_times
    assert len(t.generate_ms) == len(t.rank_ms) == len(t.total_ms) == 1
    with pytest.raises(ValueError, match="empty"):
        rec.explain(" ")
    with pytest.raises(ValueError, match="k must be"):
        rec.explain("rock", 0)
