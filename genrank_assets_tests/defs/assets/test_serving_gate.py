"""The `champion` step (the promotion gate) on classical recommenders in a real sqlite MLflow registry: it decides
on the challenger's figure as its evaluation recorded it when the queries are the same (the challenger is not
scored again), re-evaluates only the current champion, and evaluates the challenger too when the queries changed.
Classical bundles load in milliseconds, so the step runs as it does in the graph, without the test-preset build."""
import dagster as dg
import mlflow
import pytest

from genrank_assets.defs.assets.serving import ChampionConfig, champion
from genrank_assets.defs.resources import ComputeResource, MlflowRegistry
from genrank_assets.ml.evaluation import procedure
from genrank_assets.ml.evaluation.procedure import Queries, recommender_ndcg_at_10
from genrank_assets.ml.serving import registry
from genrank_assets_tests.ml.serving.fakes import planted_corpus, register_classical


@pytest.fixture()
def store(genrank_home):
    registry.connect(experiment="genrank")
    yield genrank_home
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def scored(monkeypatch):
    """Which recommender versions the gate scored (recommender_ndcg_at_10 calls), by the version they load as."""
    calls = []
    loads = {}
    real_load, real_score = registry.load_recommender, procedure.recommender_ndcg_at_10

    def load(alias=registry.CHAMPION, version=None):
        rec = real_load(alias, version)
        loads[id(rec)] = version
        return rec

    def score(rec, queries):
        calls.append(loads.get(id(rec)))
        return real_score(rec, queries)

    monkeypatch.setattr(registry, "load_recommender", load)
    monkeypatch.setattr(procedure, "recommender_ndcg_at_10", score)
    return calls


def run_gate(corpus):
    result = champion(context=dg.build_asset_context(), config=ChampionConfig(), playlist_corpus=corpus,
                      mlflow_registry=MlflowRegistry(), compute=ComputeResource())
    return result.value, {k: getattr(v, "value", v) for k, v in result.metadata.items()}


def test_the_gate_reuses_the_challengers_recorded_figure_and_re_evaluates_the_champion(store, tmp_path, scored):
    corpus = planted_corpus()
    queries = Queries.of_split(corpus, "test")
    first = register_classical(tmp_path / "v1", "title_knn", corpus, queries_fingerprint=queries.fingerprint,
                               ndcg_at_10=0.25, queries=len(queries))
    uri, meta = run_gate(corpus)
    assert meta["promoted"] is True and meta["challenger_figure"] == "reused" and meta["champion_figure"] == "none"
    assert uri == first.uri and scored == []  # no champion yet, and the challenger's figure is its evaluation's
    champion_ndcg = recommender_ndcg_at_10(registry.load_recommender(version=first.version), queries)
    scored.clear()
    # A second system, recorded better than the champion measures: decided on that record, champion re-scored.
    second = register_classical(tmp_path / "v2", "knn_cooccurrence", corpus, queries_fingerprint=queries.fingerprint,
                                ndcg_at_10=champion_ndcg + 0.01, queries=len(queries))
    uri, meta = run_gate(corpus)
    assert scored == [first.version]  # only the champion was scored
    assert meta["challenger_figure"] == "reused" and meta["champion_figure"] == "re-evaluated"
    assert meta["new_ndcg@10"] == pytest.approx(champion_ndcg + 0.01)
    assert meta["champion_ndcg@10"] == pytest.approx(champion_ndcg)
    assert meta["promoted"] is True and uri == second.uri
    assert isinstance(registry.load_recommender("champion"), type(registry.load_recommender(version=first.version)))


def test_on_changed_queries_the_gate_evaluates_the_challenger_too(store, tmp_path, scored):
    corpus = planted_corpus()
    queries = Queries.of_split(corpus, "test")
    first = register_classical(tmp_path / "v1", "title_knn", corpus, queries_fingerprint=queries.fingerprint,
                               ndcg_at_10=0.25, queries=len(queries))
    run_gate(corpus)
    # recorded on other queries (and far better than it is): the record is not what the gate decides on
    second = register_classical(tmp_path / "v2", "popularity", corpus, queries_fingerprint="other-queries",
                                ndcg_at_10=0.99, queries=len(queries))
    scored.clear()
    uri, meta = run_gate(corpus)
    assert sorted(scored) == sorted([first.version, second.version])
    assert meta["challenger_figure"] == "re-evaluated"
    measured = recommender_ndcg_at_10(registry.load_recommender(version=second.version), queries)
    assert meta["new_ndcg@10"] == pytest.approx(measured) and measured < meta["champion_ndcg@10"]
    assert meta["promoted"] is False and uri == first.uri  # popularity is worse than title-kNN here
    tags = mlflow.get_run(second.evaluation_run_id).data.tags
    assert float(tags["genrank.new_ndcg_at_10"]) == pytest.approx(measured, abs=1e-6)  # the figure decided on


def test_a_catalogue_refresh_refits_a_served_classical_system():
    """catalogue_refresh rebuilds the served system over the grown corpus: a classical one is refitted on its
    train playlists (no generator or ranker needed) and gated like any other; a cold-start song, with no train
    history, is never among its recommendations."""
    import pandas as pd

    from genrank_assets.defs.assets.catalogue import refreshed_recommender
    from genrank_assets.ml.evaluation.procedure import gate_evaluation

    corpus = planted_corpus()
    batch = pd.DataFrame({"playlist_id": ["rock-train-new"], "title": ["rock anthems"], "tags": "",
                          "song_ids": [["rock_new", "rock_0", "rock_1"]], "split": ["train"]})
    grown = pd.concat([corpus, batch], ignore_index=True)
    songs = sorted({s for ids in grown["song_ids"] for s in ids} | {"cold_song"})
    raw_songs = pd.DataFrame({"song_id": songs, "song_name": [s.title() for s in songs], "singer": "Singer"})
    rec = refreshed_recommender("title_knn", None, None, grown, raw_songs, None)
    assert rec.method == "title_knn" and "rock_new" in rec.model.catalogue.index
    assert "rock_new" in {r.song_id for r in rec.recommend("rock anthems", 20)}  # voted for by its playlist
    assert "cold_song" not in rec.model.catalogue.index
    gate = gate_evaluation("title_knn", rec, grown, Queries.of_split(grown, "test"))
    assert gate.result.name == "title_knn" and 0 < gate.metadata()["ndcg@10"] <= 1
