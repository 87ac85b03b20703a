"""A classical system served: the fitted model behind the served interface, and the same system registered as a
`genrank-recommender` bundle in a real sqlite MLflow registry, loaded back and answering as it did in process."""
import mlflow
import pandas as pd
import pytest

from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.classical_recommender import CLASSICAL_SYSTEMS, ClassicalRecommender
from genrank_assets.ml.serving.recommender import ClassicalConfig, load_recommender_config
from genrank_assets_tests.ml.serving.fakes import SONGS, planted_corpus, register_classical, song_info


@pytest.fixture()
def store(genrank_home):
    registry.connect(experiment="genrank")
    yield genrank_home
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("method", list(CLASSICAL_SYSTEMS))
def test_a_classical_system_serves_its_fitted_ranking(method):
    corpus, info = planted_corpus(), song_info()
    rec = ClassicalRecommender.fit(corpus, method, info)
    model = CLASSICAL_SYSTEMS[method]().fit(corpus)
    texts = ["rock night 0", "chill evening", "party"]
    for text, recs in zip(texts, rec.recommend_many(texts, 8)):
        assert [r.song_id for r in recs] == model.recommend(text, 8)  # the report's ranking, exactly
        assert [r.rank for r in recs] == list(range(1, 9))
        assert all(r.name == info[r.song_id][0] for r in recs)
        assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    assert rec.describe()["method"] == method and rec.config == ClassicalConfig(method)
    assert set(rec.stage_times.medians()) == {"classical"}
    rec.reset_stage_times()
    assert rec.stage_times.medians() == {}
    explained = rec.explain("rock night 0", 3)
    assert [e.song_id for e in explained] == model.recommend("rock night 0", 3)
    assert [s.name for e in explained for s in e.sources] == [method] * 3
    assert "rank 1 of 3" in "\n".join(explained[0].lines())
    assert explained[0].to_dict()["sources"] == [{"name": method, "rank": 1, "of": 3}]
    with pytest.raises(ValueError, match="empty"):
        rec.recommend("  ")
    with pytest.raises(ValueError, match="one of"):
        ClassicalConfig("generate_and_rank")


def test_a_registered_classical_system_loads_and_recommends_as_it_was_evaluated(store, tmp_path):
    corpus = planted_corpus()
    made = register_classical(tmp_path, "knn_cooccurrence", corpus)
    assert made == registry.challenger() and made.method == "knn_cooccurrence"
    assert load_recommender_config(tmp_path / "bundle-knn_cooccurrence" / "config") == ClassicalConfig("knn_cooccurrence")
    registry.promote(made)
    champion = registry.load_recommender("champion")  # what `genrank recommend`, explain and the gate load
    assert isinstance(champion, ClassicalRecommender) and champion.method == "knn_cooccurrence"
    direct = ClassicalRecommender.fit(corpus, "knn_cooccurrence", song_info())
    for text in ["rock night 1", "gym running bgm", "派对 party"]:
        assert [(r.song_id, r.score) for r in champion.recommend(text, 10)] == \
            [(r.song_id, r.score) for r in direct.recommend(text, 10)]
    assert set(SONGS["rock"]) & {r.song_id for r in champion.recommend("rock night 1", 10)}
    out = mlflow.pyfunc.load_model(f"models:/{registry.RECOMMENDER_NAME}@champion").predict(
        pd.DataFrame({"text": ["rock night 1", "chill"], "k": [3, 4]}))
    assert out.groupby("text").size().to_dict() == {"rock night 1": 3, "chill": 4}
    assert out[out.text == "chill"].song_id.tolist() == [r.song_id for r in direct.recommend("chill", 4)]
