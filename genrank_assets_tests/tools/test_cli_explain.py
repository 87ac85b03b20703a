"""`genrank recommend --explain / --json`, the latency line of `recommend` and `generate`, and the champion in
`genrank status`: a real sqlite MLflow registry in a tmp GENRANK_HOME, planted models behind the registered URIs."""
import json
from types import SimpleNamespace

import duckdb
import mlflow
import pytest
from mlflow import MlflowClient

from genrank_assets.ml.baselines.classical import knn_cooccurrence
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.recommender import Recommender, RecommenderConfig
from genrank_assets.tools import cli
from genrank_assets_tests.ml.serving.fakes import SONGS, log_echo, planted_corpus, planted_models
from genrank_assets_tests.ml.serving.test_explain import CodedGenerator


def _planted_recommender() -> Recommender:
    corpus = planted_corpus()
    _, ranker, sv, info = planted_models(corpus)
    return Recommender(CodedGenerator(corpus, sv.song_ids), ranker, sv, info,
                       RecommenderConfig(candidate_source="hybrid", n_candidates=10, popularity_weight=0.5,
                                         classical_weight=2.0), knn=knn_cooccurrence().fit(corpus))


@pytest.fixture()
def served(genrank_home, monkeypatch):
    """v1 of the three models registered (champion = v1 via promote, with evaluation tags and metrics on its
    run); loading any of them gives the planted recommender / generator."""
    registry.connect(genrank_home, experiment="genrank")
    for name in (registry.TIGER_NAME, registry.RANKER_NAME):
        with mlflow.start_run():
            log_echo(name)
    with mlflow.start_run(run_name="evaluation-abcd1234") as run:
        mlflow.log_metrics({"generate_and_rank_hybrid.ndcg_at_10": 0.4321, "generate_and_rank_hybrid.recall_at_100": 0.9,
                            "popularity.ndcg_at_10": 0.05, "title_knn.ndcg_at_10": 0.2})
        log_echo(registry.RECOMMENDER_NAME)
    challenger = registry.Challenger(1, 1, 1, "generate_and_rank_hybrid", "test", 9, "fp", 0.4321, run.info.run_id)
    for key, value in challenger.tags().items():
        MlflowClient().set_model_version_tag(registry.RECOMMENDER_NAME, "1", key, value)
    registry.promote(challenger)
    rec = _planted_recommender()
    monkeypatch.setattr(registry, "load_python_model",
                        lambda uri: SimpleNamespace(recommender=rec, generator=rec.generator, model_uri=uri))
    return genrank_home, rec


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _latency_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latency: model load "), err
    return lines[0]


def test_plain_recommend_keeps_stdout_clean_and_reports_latency_on_stderr(served, capsys):
    home, rec = served
    rc, out, err = run_cli(capsys, "recommend", "rock night", "-k", "5", "--home", str(home))
    assert rc == 0
    assert out.splitlines() == [str(r) for r in rec.recommend("rock night", 5)]
    line = _latency_line(err)
    assert " s, query " in line and "generate " in line and "classical " in line and "rank " in line


def test_explain_prints_sources_and_scores_in_the_recommended_order(served, capsys):
    home, rec = served
    rc, out, err = run_cli(capsys, "recommend", "rock night", "-k", "4", "--explain", "--home", str(home))
    assert rc == 0
    _latency_line(err)
    lines = out.splitlines()
    recommended = rec.recommend("rock night", 4)
    assert lines[::3] == [str(r) for r in recommended]  # each song: its line, its score, its sources
    assert all(s.startswith("     score ") and " = ranker " in s and "× log-popularity" in s and "× classical" in s
               for s in lines[1::3])
    assert all(s.startswith("     proposed by: ") for s in lines[2::3])
    assert "generator (song " in out and "code (0, " in out and "title-kNN + co-occurrence (rank " in out


def test_json_is_machine_readable(served, capsys):
    home, rec = served
    rc, out, err = run_cli(capsys, "recommend", "rock night", "-k", "6", "--json", "--home", str(home))
    assert rc == 0
    _latency_line(err)
    doc = json.loads(out)
    assert doc["query"] == "rock night" and doc["k"] == 6
    assert doc["model"] == f"models:/{registry.RECOMMENDER_NAME}@champion"
    assert doc["config"]["popularity_weight"] == 0.5 and doc["config"]["classical_weight"] == 2.0
    assert {"model_load", "query", "generate", "classical", "rank"} <= set(doc["latency_ms"])
    results = doc["results"]
    assert [(r["rank"], r["song_id"]) for r in results] == [(r.rank, r.song_id) for r in rec.recommend("rock night", 6)]
    first = results[0]
    assert {"rank", "song_id", "name", "singer", "score", "sources", "components"} <= set(first)
    assert first["song_id"] in SONGS["rock"] and first["name"] and first["singer"] == "Singer"
    gen = next(s for s in first["sources"] if s["name"] == "generator")
    assert {"rank", "of", "code", "code_rank", "code_score"} <= set(gen)
    c = first["components"]
    assert first["score"] == pytest.approx(c["ranker_logit"] + c["popularity_weight"] * c["log_popularity"]
                                           + c["classical_weight"] * c["classical"])


def test_generate_reports_its_latency(served, capsys):
    home, _ = served
    rc, out, err = run_cli(capsys, "generate", "rock night", "-n", "4", "--home", str(home))
    assert rc == 0 and out.startswith("10 codes generated")
    _latency_line(err)


def test_status_shows_the_champions_evaluation_and_promotion_time(served, capsys):
    home, _ = served
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("create schema genrank")
    con.close()
    rc, out, _ = run_cli(capsys, "status", "--home", str(home))
    assert rc == 0
    lines = out.splitlines()
    champ = next(i for i, s in enumerate(lines) if s.startswith("champion: "))
    assert lines[champ].startswith(f"champion: {registry.RECOMMENDER_NAME} v1, promoted 20")
    assert lines[champ].endswith(" UTC")
    assert lines[champ + 1] == ("  serves generate_and_rank_hybrid (tiger v1, ranker v1); NDCG@10 0.4321 on 9 test "
                                "queries")
    assert lines[champ + 2] == "  evaluation: ndcg@10 0.4321, recall@100 0.9000"
    assert lines[champ + 3] == "  NDCG@10 of the other methods: popularity 0.0500, title_knn 0.2000"
    assert lines[champ + 4].startswith("  evaluation run ") and "(evaluation-abcd1234)" in lines[champ + 4]


def test_status_without_a_champion_says_so(genrank_home, capsys):
    registry.connect(genrank_home, experiment="genrank")
    with mlflow.start_run():
        log_echo(registry.RECOMMENDER_NAME)
    con = duckdb.connect(str(genrank_home / "warehouse.duckdb"))
    con.execute("create schema genrank")
    con.close()
    rc, out, _ = run_cli(capsys, "status", "--home", str(genrank_home))
    assert rc == 0 and "no genrank-recommender@champion yet" in out


def test_recommend_explains_a_classical_champion(genrank_home, tmp_path, capsys):
    """A served classical system (`auto` chose it on val) behind @champion: `genrank recommend` answers from the
    real bundle, --json names the system as each song's one source, and `status` says what it serves."""
    from genrank_assets_tests.ml.serving.fakes import register_classical

    registry.connect(genrank_home, experiment="genrank")
    try:
        registry.promote(register_classical(tmp_path, "title_knn", planted_corpus(), ndcg_at_10=0.3))
        rc, out, _ = run_cli(capsys, "recommend", "rock night 1", "-k", "4", "--json")
        doc = json.loads(out)
        assert rc == 0 and doc["config"]["method"] == "title_knn" and len(doc["results"]) == 4
        assert all(r["sources"][0]["name"] == "title_knn" and r["components"] is None for r in doc["results"])
        assert "latency_ms" in doc and "classical" in doc["latency_ms"]
        rc, out, _ = run_cli(capsys, "recommend", "rock night 1", "-k", "4", "--explain")
        assert rc == 0 and out.count("proposed by: title-kNN (rank ") == 4
        con = duckdb.connect(str(genrank_home / "warehouse.duckdb"))
        con.execute("create schema genrank")
        con.close()
        rc, out, _ = run_cli(capsys, "status", "--home", str(genrank_home))
        assert rc == 0 and "  serves title_knn (tiger v1, ranker v1); NDCG@10 0.3000 on 9 test queries" in out
    finally:
        mlflow.set_tracking_uri(None)
