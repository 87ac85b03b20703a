"""The `serving` asset (the promotion gate) in the test-preset build, and the registered models used as a client
would: through the MLflow registry, the pyfunc, `mlflow models serve`; the gate refusing a worse model and
promoting a better one, and the learning-to-rank system served (both in a copy of the build)."""
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest

import genrank_assets.paths as paths
from genrank_assets.ml.evaluation.procedure import Queries, recommender_ndcg_at_10
from genrank_assets.ml.serving import registry
from genrank_assets_tests.builds import MODELS, champions, materialize, metadata, run_config, tables
from genrank_assets_tests.processes import free_port, start, stop_group


def test_the_first_models_are_promoted(built):
    assert built.first_champions == {name: 1 for name in MODELS}
    report, gate = metadata(built.result, "evaluation_report"), metadata(built.result, "champion")
    assert gate["promoted"] is True and "first" in gate["gate_reason"]
    assert gate["new_ndcg@10"] == report["new_ndcg@10"]  # the served system's figure, exactly
    assert gate["champion_ndcg@10"] != gate["champion_ndcg@10"]  # NaN: there was no champion to re-evaluate
    assert gate["candidate_uri"] == report["recommender_uri"] == f"models:/{registry.RECOMMENDER_NAME}/1"
    assert "# Promotion gate" in gate["gate"]


def test_recommend_through_the_registry(built):
    rec = registry.load_recommender("champion")
    for text in ["适合深夜听的抒情歌曲", "gym running bgm", "🎧🔥 派对 party", "<id_l1_3> sneaky"]:
        results = rec.recommend(text, k=10)
        assert len(results) == 10
        assert len({r.song_id for r in results}) == 10
        assert [r.rank for r in results] == list(range(1, 11))
        assert all(r.song_id in rec.song_info and r.name for r in results)
        assert results[0].score >= results[-1].score
    for bad in ["", "   \n"]:
        with pytest.raises(ValueError, match="empty"):
            rec.recommend(bad)


def test_pyfunc_predict_from_the_registry(built):
    model = mlflow.pyfunc.load_model(f"models:/{registry.RECOMMENDER_NAME}@champion")
    out = model.predict(pd.DataFrame({"text": ["深夜 抒情", "workout"], "k": [3, 5]}))
    assert list(out.columns) == ["text", "rank", "song_id", "name", "singer", "score"]
    assert out.groupby("text").size().to_dict() == {"深夜 抒情": 3, "workout": 5}
    direct = registry.load_recommender("champion").recommend("workout", 5)
    assert out[out.text == "workout"].song_id.tolist() == [r.song_id for r in direct]


def test_the_recommender_tells_a_client_what_it_takes_and_returns(built):
    """Its MLflow signature and input example, as a client, `mlflow models serve` and the MLflow UI read them."""
    model = mlflow.pyfunc.load_model(f"models:/{registry.RECOMMENDER_NAME}@champion")
    inputs = model.metadata.get_input_schema()
    assert inputs is not None and inputs.input_names() == ["text", "k"]
    assert [c.required for c in inputs.inputs] == [True, False]
    assert model.metadata.get_output_schema().input_names() == ["text", "rank", "song_id", "name", "singer", "score"]
    example = model.input_example
    assert list(example.columns) == ["text", "k"]
    out = model.predict(example)  # the logged example runs through the registered bundle
    assert out.groupby("text").size().to_dict() == {text: int(k) for text, k in zip(example.text, example.k)}
    assert len(model.predict(pd.DataFrame({"text": ["workout"]}), params={"k": 4})) == 4  # k as a param


def test_registered_models_are_code_not_pickles(built):
    """All three pyfuncs are logged from code (MLflow models-from-code): nothing to unpickle at load time."""
    client = mlflow.MlflowClient()
    for name in MODELS:
        source = client.get_model_version(name, str(registry.alias_version(name))).source
        stored = Path(mlflow.get_logged_model(source.removeprefix("models:/")).artifact_location.removeprefix("file://"))
        assert "model_code_path" in (stored / "MLmodel").read_text(), name
        assert not list(stored.rglob("*.pkl")), name


def test_mlflow_serves_the_recommender_over_rest(built):
    """`mlflow models serve -m models:/genrank-recommender@champion` on 127.0.0.1, queried, then stopped by PID."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "MLFLOW_TRACKING_URI": paths.mlflow_tracking_uri(built.home)}
    proc = start([str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{registry.RECOMMENDER_NAME}@champion",
                  "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env)
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.time() < deadline, "server did not come up"
                time.sleep(2)
        body = json.dumps({"dataframe_records": [{"text": "gym running bgm", "k": 4}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        preds = json.loads(urllib.request.urlopen(req, timeout=120).read())["predictions"]
        assert [p["rank"] for p in preds] == [1, 2, 3, 4]
        direct = registry.load_recommender("champion").recommend("gym running bgm", 4)
        assert [p["song_id"] for p in preds] == [r.song_id for r in direct]
    finally:
        stop_group(proc)


def _new_versions(result) -> dict[str, int]:
    """The versions this run registered: all three by the evaluation, after the models' blocking checks passed."""
    report = metadata(result, "evaluation_report")
    return {registry.TIGER_NAME: registry.version_of(report["tiger_model_uri"]),
            registry.RANKER_NAME: registry.version_of(report["ranker_model_uri"]),
            registry.RECOMMENDER_NAME: registry.version_of(report["recommender_uri"])}


def test_gate_refuses_a_worse_model_and_accepts_a_better_one(own_build):
    home, data = own_build.home, own_build.data
    ops = ("tiger_model", "ranker_model", "evaluation_report", "champion")
    models = dg.AssetSelection.assets(*ops)
    before = champions()
    assert before == own_build.first_champions
    first_ndcg = metadata(own_build.result, "evaluation_report")["new_ndcg@10"]
    # Deliberately worse: a briefly trained generator (the models still pass their blocking checks), served without
    # the classical signal or the popularity prior.
    worse = run_config(
        tiger_model={"epochs": 4},
        evaluation_report={"served_method": "generate_and_rank", "popularity_grid": [0.0], "classical_grid": [0.0]},
    )
    result = materialize(home, data, worse, selection=models, ops=ops)
    report, gate = metadata(result, "evaluation_report"), metadata(result, "champion")
    # The gate step shows both figures on the same test queries and its decision; the champion stays.
    assert gate["promoted"] is False and "champion kept" in gate["gate_reason"]
    assert gate["new_ndcg@10"] == report["new_ndcg@10"] < gate["champion_ndcg@10"]
    assert gate["queries"] == report["queries"]
    assert gate["champion_ndcg@10"] == pytest.approx(first_ndcg)  # re-evaluated: the figure it was promoted with
    assert gate["candidate_uri"] == report["recommender_uri"] != gate["previous_champion"]
    assert registry.challenger().uri == report["recommender_uri"]
    assert champions() == before
    assert result.output_for_node("champion") == f"models:/{registry.RECOMMENDER_NAME}/{before[registry.RECOMMENDER_NAME]}"
    # The usual config again: at least as good as the champion on the same queries -> promoted.
    result = materialize(home, data, run_config(), selection=models, ops=ops)
    report, gate = metadata(result, "evaluation_report"), metadata(result, "champion")
    assert gate["promoted"] is True, gate["gate_reason"]
    assert gate["new_ndcg@10"] == report["new_ndcg@10"] >= gate["champion_ndcg@10"]
    assert champions() == _new_versions(result) != before
    run = mlflow.get_run(report["mlflow_run_id"])
    assert run.data.tags["genrank.promoted"] == "True" and run.data.tags["genrank.champion_ndcg_at_10"] != ""


def test_the_ltr_system_is_served_through_the_registry(own_build):
    """served_method: ltr registers the learning-to-rank recommender (bundling genrank-ltr) as the challenger; its
    pyfunc answers, and re-evaluated on the test queries it gives the report's ltr figure."""
    ops = ("evaluation_report",)
    result = materialize(own_build.home, own_build.data, run_config(evaluation_report={"served_method": "ltr"}),
                         selection=dg.AssetSelection.assets(*ops), ops=ops)
    report = metadata(result, "evaluation_report")
    assert report["served_method"] == "ltr" and report["ltr_model_uri"].startswith(f"models:/{registry.LTR_NAME}/")
    candidate = registry.challenger()
    assert candidate.uri == report["recommender_uri"] and candidate.method == "ltr"
    assert (registry.LTR_NAME, registry.version_of(report["ltr_model_uri"])) in candidate.bundled()
    model = mlflow.pyfunc.load_model(f"models:/{registry.RECOMMENDER_NAME}@{registry.CHALLENGER}")
    out = model.predict(pd.DataFrame({"text": ["深夜 抒情", "workout"], "k": [3, 5]}))
    assert out.groupby("text").size().to_dict() == {"深夜 抒情": 3, "workout": 5}
    rec = model.unwrap_python_model().recommender
    assert rec.describe()["method"] == "ltr"
    (corpus,) = tables(own_build.home, "playlist_corpus")  # as the assets load it
    queries = Queries.of_split(corpus, candidate.split, candidate.queries)
    assert queries.fingerprint == candidate.queries_fingerprint
    assert recommender_ndcg_at_10(rec, queries) == pytest.approx(candidate.ndcg_at_10, abs=1e-12)
    assert round(candidate.ndcg_at_10, 4) == report["ltr.ndcg@10"]
