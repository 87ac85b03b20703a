"""The whole asset graph, materialised in-process on tiny generated data, then used as a person would:
through the MLflow registry, the pyfunc model, the CLI and the promotion gate.

The module's tests share one built GENRANK_HOME, in any order: what the first build left is recorded by the
fixture, the gate test moves the champion, and the others read whichever champion there is."""
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import pandas as pd
import pytest
import yaml

import genrank_assets.paths as paths
from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets.ml.evaluation.procedure import SERVED_METHODS
from genrank_assets.ml.serving import registry

PRESET = Path(__file__).resolve().parent.parent / "genrank_assets" / "presets" / "test.yaml"
TABLES = ["raw_playlists", "raw_playlist_songs", "raw_songs", "ingest_rejects", "playlist_corpus", "upstream_corpus",
          "song_vectors",
          "semantic_ids", "semantic_id_metrics", "generator_dataset", "ranker_dataset", "candidate_pools", "ranking_features",
          "evaluation_report"]


def _run_config(**overrides) -> dict:
    cfg = yaml.safe_load(PRESET.read_text())
    for op, values in overrides.items():
        cfg["ops"].setdefault(op, {}).setdefault("config", {}).update(values)
    return cfg


def _materialize(home: Path, data: Path, run_config: dict, selection=None, ops: tuple[str, ...] = ()):
    if ops:  # a partial run takes config for its own ops only
        run_config = {**run_config, "ops": {k: v for k, v in run_config["ops"].items() if k in ops}}
    return dg.materialize(all_assets + all_asset_checks, resources=build_resources(home=str(home), data_dir=str(data)),
                          run_config=run_config, selection=selection)


MODELS = (registry.TIGER_NAME, registry.RANKER_NAME, registry.RECOMMENDER_NAME)


def _champions() -> dict[str, int | None]:
    return {name: registry.alias_version(name) for name in MODELS}


def _metadata(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _tables(home: Path, *names: str) -> list[pd.DataFrame]:
    """The warehouse tables ``names`` of ``home``, read through a read-only connection."""
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return [con.execute(f"select * from genrank.{name}").fetchdf() for name in names]
    finally:
        con.close()


def _report_table(home: Path) -> pd.DataFrame:
    return _tables(home, "evaluation_report")[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_demo_dir):
    """GENRANK_HOME after one full materialisation of every asset, and what that build left (champions, report)."""
    home = tmp_path_factory.mktemp("pipeline_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("GENRANK_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _materialize(home, tiny_demo_dir, _run_config())
    assert result.success
    registry.connect(home)
    yield {"home": home, "data": tiny_demo_dir, "result": result, "first_champions": _champions(),
           "first_report": _report_table(home)}
    mp.undo()


def test_all_artifacts_exist(built):
    con = duckdb.connect(str(built["home"] / "warehouse.duckdb"), read_only=True)
    counts = {t: con.execute(f"select count(*) from genrank.{t}").fetchone()[0] for t in TABLES}
    vec_type = con.execute("select data_type from information_schema.columns where table_name='song_vectors' "
                           "and column_name='vector'").fetchone()[0]
    con.close()
    assert all(n > 0 for n in counts.values()), counts
    assert vec_type == "FLOAT[16]"  # fixed-size array, the test preset's vector_size
    assert built["first_champions"] == {name: 1 for name in MODELS}  # first models: promoted
    checks = {e.check_name: e.passed for e in built["result"].get_asset_check_evaluations()}
    assert checks["generator_codes_all_valid"] and checks["every_song_has_a_code"], checks
    report = built["result"].asset_materializations_for_node("evaluation_report")[0].metadata
    assert report["invalid_code_rate"].value == 0.0
    gate = _metadata(built["result"], "champion")
    assert gate["promoted"] is True and "first" in gate["gate_reason"]
    assert gate["new_ndcg@10"] == report["new_ndcg@10"].value  # the served system's figure, exactly
    served = report["served_method"].value  # `auto`: the system with the best val NDCG@10
    assert served == max(SERVED_METHODS, key=lambda m: report[f"{m}.tune_ndcg@10"].value)
    margin = report["auto_choice_margin"].value  # how far ahead of the runner-up on val, paired per query
    assert margin["served"] == served and margin["runner_up"] in SERVED_METHODS and margin["runner_up"] != served
    assert margin["ci_low"] <= margin["mean_diff"] <= margin["ci_high"] and margin["mean_diff"] >= 0
    assert round(gate["new_ndcg@10"], 4) == report[f"{served}.ndcg@10"].value
    assert gate["champion_ndcg@10"] != gate["champion_ndcg@10"]  # NaN: there was no champion to re-evaluate
    assert gate["candidate_uri"] == report["recommender_uri"].value == f"models:/{registry.RECOMMENDER_NAME}/1"
    assert "# Promotion gate" in gate["gate"]
    # Model artifacts live under GENRANK_HOME, not in an ./mlruns of whatever directory the run started in.
    for node in ("tiger_model", "ranker_model", "evaluation_report"):
        run_id = built["result"].asset_materializations_for_node(node)[0].metadata["mlflow_run_id"].value
        assert mlflow.get_run(run_id).info.artifact_uri.startswith(built["home"].as_uri()), node
    assert Path(report["report_path"].value).exists()
    assert (Path(report["report_path"].value).parent / "recall_at_k.png").stat().st_size > 1000


def test_learning_to_rank_stage_and_its_ablation(built):
    pools = next({k: v.value for k, v in m.metadata.items()}
                 for m in built["result"].asset_materializations_for_node("ltr_tables")
                 if m.asset_key == dg.AssetKey("candidate_pools"))
    for split in ("val", "test"):
        for source in ("generator", "knn", "knn_cooc", "ridge_cooc", "union"):
            assert 0.0 <= pools[f"{split}.recall_ceiling.{source}"] <= 1.0
        assert pools[f"{split}.recall_ceiling.union"] >= pools[f"{split}.recall_ceiling.ridge_cooc"]
    ltr = _metadata(built["result"], "ltr_ranker")
    assert Path(ltr["model_dir"], "model.txt").exists() and ltr["n_rounds"] >= 1
    assert 0.0 <= ltr["val_cv_ndcg@10"] <= 1.0 and "data:image/png;base64," in ltr["feature_importance"]
    report = built["first_report"].set_index("method")
    for row in ("kernel_ridge_cooccurrence", "ltr", "ltr_no_generator", "ltr_no_cross_encoder", "ltr_no_classical",
                "pool_recall_ceiling"):
        assert row in report.index, report.index.tolist()
    assert report.loc["pool_recall_ceiling", "ndcg@10"] >= report.loc["ltr", "ndcg@10"]
    evaluation = _metadata(built["result"], "evaluation_report")
    ablation = evaluation["ablation"]
    assert "95% CI" in ablation and "ltr_no_generator" in ablation and "Pool recall ceiling" in ablation
    assert list(evaluation["phase_s"]) == ["classical baselines", "generator", "generate_and_rank",
                                           "generate_and_rank_hybrid", "ltr", "ltr ablation"]
    assert len(ltr["cv_oof_rounds"].strip("[]").split(",")) == len(ltr["cv_best_rounds"].strip("[]").split(","))


def test_the_ltr_holdout_reaches_no_upstream_model_and_trains_the_ranker(built):
    """The train playlists upstream_corpus holds out are in no training set of word2vec, TIGER or the
    cross-encoder; the LTR ranker trains on their feature rows (and val's); the classical baselines keep them."""
    con = duckdb.connect(str(built["home"] / "warehouse.duckdb"), read_only=True)
    try:
        corpus = con.execute("select playlist_id, split from genrank.upstream_corpus").fetchdf()
        held = set(corpus.loc[corpus["split"] == "holdout", "playlist_id"])
        used = {t: set(con.execute(f"select distinct playlist_id from genrank.{t}").fetchdf()["playlist_id"])
                for t in ("generator_dataset", "ranker_dataset")}
        feature_splits = con.execute("select split, count(distinct playlist_id) from genrank.ranking_features "
                                     "group by split").fetchall()
        original = con.execute("select count(*) from genrank.playlist_corpus where split = 'train'").fetchone()[0]
    finally:
        con.close()
    assert held and len(held) + (corpus["split"] == "train").sum() == original
    for table, ids in used.items():
        assert not ids & held, table
    assert _metadata(built["result"], "song_vectors")["train_playlists"] == (corpus["split"] == "train").sum()
    by_split = dict(feature_splits)
    assert set(by_split) == {"holdout", "val", "test"} and by_split["holdout"] > 0
    ltr = _metadata(built["result"], "ltr_ranker")
    assert ltr["holdout_queries"] == by_split["holdout"] and ltr["val_queries"] == by_split["val"]


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


def test_registered_models_are_code_not_pickles(built):
    """All three pyfuncs are logged from code (MLflow models-from-code): nothing to unpickle at load time."""
    client = mlflow.MlflowClient()
    for name in (registry.TIGER_NAME, registry.RANKER_NAME, registry.RECOMMENDER_NAME):
        source = client.get_model_version(name, str(registry.alias_version(name))).source
        stored = Path(mlflow.get_logged_model(source.removeprefix("models:/")).artifact_location.removeprefix("file://"))
        assert "model_code_path" in (stored / "MLmodel").read_text(), name
        assert not list(stored.rglob("*.pkl")), name


def test_tiger_from_registry_gives_identical_logits(built):
    import torch

    champion = registry.alias_version(registry.TIGER_NAME)  # 1, or the gate test's promoted version
    a = registry.load_python_model(f"models:/{registry.TIGER_NAME}/{champion}").generator
    b = registry.load_python_model(f"models:/{registry.TIGER_NAME}@champion").generator
    batch = a.encoder.encode_batch(["深夜 抒情", "gym"])
    labels = torch.tensor([[a.vocab.code_token_ids(a.code_table.codes[0])[0]]] * 2)
    with torch.no_grad():
        la = a.model(**batch, labels=labels).logits
        lb = b.model(**batch, labels=labels).logits
    assert torch.equal(la, lb)


def test_planted_structure_full_system_beats_popularity(built):
    report = built["first_report"].set_index("method")
    pop = report.loc["popularity", "ndcg@10"]
    system = report.loc["generate_and_rank_hybrid", "ndcg@10"]
    assert system > 2 * pop and system - pop > 0.1, report[["ndcg@10", "recall@100"]]
    # Without the classical signal too: the generator alone, and generate-and-rank, beat popularity's top-10.
    # (Recall@100 is no test here: 100 popular songs are an eighth of this tiny catalogue.)
    assert report.loc["generator", "ndcg@10"] > pop, report[["ndcg@10", "recall@100"]]
    assert report.loc["generate_and_rank", "ndcg@10"] > pop, report[["ndcg@10", "recall@100"]]


def test_cli_recommend_prints_ranked_songs(built):
    env = {"GENRANK_HOME": str(built["home"]), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1", "HOME": str(built["home"])}
    genrank = str(Path(sys.executable).parent / "genrank")
    out = subprocess.run([genrank, "recommend", "适合深夜听的抒情歌曲", "-k", "5"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [l for l in out.stdout.splitlines() if l.strip()]
    assert len(lines) == 5 and lines[0].startswith("1. ") and "(ID: " in lines[0]
    assert out.stderr.strip().splitlines()[-1].startswith("latency: model load ")  # stdout: the answer only
    js = subprocess.run([genrank, "recommend", "适合深夜听的抒情歌曲", "-k", "5", "--json"], env=env,
                        capture_output=True, text=True, timeout=300)
    assert js.returncode == 0, js.stderr[-2000:]
    results = json.loads(js.stdout)["results"]  # the explained order is the recommended one
    assert [f"{r['rank']}. {r['name']} - {r['singer']} (ID: {r['song_id']})" for r in results] == lines
    served = _metadata(built["result"], "evaluation_report")["served_method"]
    parts = {"score", "bias", "top"} if served == "ltr" else {"ranker_logit", "log_popularity", "final"}
    assert all(r["sources"] and parts <= set(r["components"]) for r in results), results
    demo = subprocess.run([genrank, "demo", "-k", "3"], input="gym running bgm\n\nquit\n", env=env,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0 and demo.stdout.count("(ID: ") == 3, demo.stdout + demo.stderr[-2000:]
    empty = subprocess.run([genrank, "recommend", "  ", "-k", "5"], env=env, capture_output=True, text=True, timeout=300)
    assert empty.returncode == 2 and "empty" in empty.stderr


def _new_versions(result) -> dict[str, int]:
    """The versions this run registered: all three by the evaluation, after the models' blocking checks passed."""
    report = _metadata(result, "evaluation_report")
    return {registry.TIGER_NAME: registry.version_of(report["tiger_model_uri"]),
            registry.RANKER_NAME: registry.version_of(report["ranker_model_uri"]),
            registry.RECOMMENDER_NAME: registry.version_of(report["recommender_uri"])}


def test_gate_refuses_a_worse_model_and_accepts_a_better_one(built):
    ops = ("tiger_model", "ranker_model", "evaluation_report", "champion")
    models = dg.AssetSelection.assets(*ops)
    before = _champions()
    assert before == built["first_champions"]  # no other test moves an alias
    first_ndcg = _metadata(built["result"], "evaluation_report")["new_ndcg@10"]
    # Deliberately worse: a briefly trained generator (the models still pass their blocking checks), served without
    # the classical signal or the popularity prior.
    worse = _run_config(
        tiger_model={"epochs": 4},
        evaluation_report={"served_method": "generate_and_rank", "popularity_grid": [0.0], "classical_grid": [0.0]},
    )
    result = _materialize(built["home"], built["data"], worse, selection=models, ops=ops)
    report, gate = _metadata(result, "evaluation_report"), _metadata(result, "champion")
    # The gate step shows both figures on the same test queries and its decision; the champion stays.
    assert gate["promoted"] is False and "champion kept" in gate["gate_reason"]
    assert gate["new_ndcg@10"] == report["new_ndcg@10"] < gate["champion_ndcg@10"]
    assert gate["queries"] == report["queries"]
    assert gate["champion_ndcg@10"] == pytest.approx(first_ndcg)  # re-evaluated: the figure it was promoted with
    assert gate["candidate_uri"] == report["recommender_uri"] != gate["previous_champion"]
    assert registry.challenger().uri == report["recommender_uri"]
    assert _champions() == before
    assert result.output_for_node("champion") == f"models:/{registry.RECOMMENDER_NAME}/{before[registry.RECOMMENDER_NAME]}"
    # The usual config again: at least as good as the champion on the same queries -> promoted.
    result = _materialize(built["home"], built["data"], _run_config(), selection=models, ops=ops)
    report, gate = _metadata(result, "evaluation_report"), _metadata(result, "champion")
    assert gate["promoted"] is True, gate["gate_reason"]
    assert gate["new_ndcg@10"] == report["new_ndcg@10"] >= gate["champion_ndcg@10"]
    assert _champions() == _new_versions(result) != before
    run = mlflow.get_run(report["mlflow_run_id"])
    assert run.data.tags["genrank.promoted"] == "True" and run.data.tags["genrank.champion_ndcg_at_10"] != ""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_serves_the_recommender_over_rest(built):
    """`mlflow models serve -m models:/genrank-recommender@champion` on 127.0.0.1, queried, then stopped by PID."""
    import json
    import os
    import signal
    import time
    import urllib.request

    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "MLFLOW_TRACKING_URI": paths.mlflow_tracking_uri(built["home"])}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os,signal,sys; signal.signal(signal.SIGTERM, signal.SIG_DFL); "
         "os.execv(sys.argv[1], sys.argv[1:])", str(bin_dir / "mlflow"), "models", "serve", "-m",
         f"models:/{registry.RECOMMENDER_NAME}@champion", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
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
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode is not None


def test_ranker_separates_planted_pairs_and_reloads_identically(built):
    import numpy as np

    from genrank_assets.ml.ranking.cross_encoder.model import load_ranker

    meta = built["result"].asset_materializations_for_node("ranker_model")[0].metadata
    # Planted themes: clearly better than chance (0.5) after brief training. Measured with the head seeded
    # (ml/ranking/cross_encoder/model.py), ranker_model.seed 0 / 1 / 2: 0.584 / 0.625 / 0.601; the former bar of 0.6 sat inside
    # that seed-to-seed spread and passed only with the unseeded head's draw in this process.
    assert meta["best_val_auc"].value > 0.55
    from_registry = registry.load_python_model(f"models:/{registry.RANKER_NAME}/1")
    saved = load_ranker(Path(meta["model_dir"].value) / "ranker")
    vectors = from_registry.song_vectors.vectors[:20]
    a = from_registry.ranker.score("深夜 抒情", vectors)
    b = saved.score("深夜 抒情", vectors)
    assert np.array_equal(a, b)


def test_cli_similar_and_codes(built):
    env = {"GENRANK_HOME": str(built["home"]), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1", "HOME": str(built["home"])}
    genrank = str(Path(sys.executable).parent / "genrank")
    con = duckdb.connect(str(built["home"] / "warehouse.duckdb"), read_only=True)
    song = con.execute("select song_id from genrank.song_vectors order by count desc limit 1").fetchone()[0]
    con.close()
    similar = subprocess.run([genrank, "similar", song, "-k", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert similar.returncode == 0 and similar.stdout.count("cos=") == 3, similar.stderr[-2000:]
    code = subprocess.run([genrank, "codes", "song", song], env=env, capture_output=True, text=True, timeout=120)
    assert code.returncode == 0 and "-> code (" in code.stdout, code.stderr[-2000:]
    unknown = subprocess.run([genrank, "codes", "song", "no-such-song"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert unknown.returncode == 1 and "no semantic ID" in unknown.stderr


def _versions(name: str) -> int:
    return len(mlflow.MlflowClient().search_model_versions(f"name='{name}'"))


def test_a_model_that_fails_its_check_is_never_registered(built):
    """A ranker that did not learn (two steps at a vanishing rate) fails its blocking check: the evaluation does
    not run, and no genrank-ranker or genrank-recommender version is made from it."""
    before = {name: _versions(name) for name in MODELS}
    champions = _champions()
    ops = ("ranker_model", "evaluation_report", "champion")
    failed = _run_config(ranker_model={"lr": 1e-12, "max_steps": 2})
    result = dg.materialize(
        all_assets + all_asset_checks, resources=build_resources(home=str(built["home"]), data_dir=str(built["data"])),
        run_config={**failed, "ops": {k: v for k, v in failed["ops"].items() if k in ops}},
        selection=dg.AssetSelection.assets(*ops), raise_on_error=False,
    )
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["ranker_model_learned"] is False
    assert not result.asset_materializations_for_node("evaluation_report")
    assert {name: _versions(name) for name in MODELS} == before
    assert _champions() == champions


def test_the_ltr_system_is_served_through_the_registry(built):
    """served_method: ltr registers the learning-to-rank recommender (bundling genrank-ltr) as the challenger; its
    pyfunc answers, and re-evaluated on the test queries it gives the report's ltr figure."""
    from genrank_assets.ml.evaluation.procedure import Queries, recommender_ndcg_at_10

    ops = ("evaluation_report",)
    result = _materialize(built["home"], built["data"], _run_config(evaluation_report={"served_method": "ltr"}),
                          selection=dg.AssetSelection.assets(*ops), ops=ops)
    report = _metadata(result, "evaluation_report")
    assert report["served_method"] == "ltr" and report["ltr_model_uri"].startswith(f"models:/{registry.LTR_NAME}/")
    candidate = registry.challenger()
    assert candidate.uri == report["recommender_uri"] and candidate.method == "ltr"
    assert (registry.LTR_NAME, registry.version_of(report["ltr_model_uri"])) in candidate.bundled()
    model = mlflow.pyfunc.load_model(f"models:/{registry.RECOMMENDER_NAME}@{registry.CHALLENGER}")
    out = model.predict(pd.DataFrame({"text": ["深夜 抒情", "workout"], "k": [3, 5]}))
    assert out.groupby("text").size().to_dict() == {"深夜 抒情": 3, "workout": 5}
    rec = model.unwrap_python_model().recommender
    assert rec.describe()["method"] == "ltr"
    con = duckdb.connect(str(built["home"] / "warehouse.duckdb"), read_only=True)
    corpus = con.execute("select * from genrank.playlist_corpus").fetchdf()  # as the assets load it
    con.close()
    queries = Queries.of_split(corpus, candidate.split, candidate.queries)
    assert queries.fingerprint == candidate.queries_fingerprint
    assert recommender_ndcg_at_10(rec, queries) == pytest.approx(candidate.ndcg_at_10, abs=1e-12)
    assert round(candidate.ndcg_at_10, 4) == report["ltr.ndcg@10"]


def test_the_cross_encoder_learns_listwise_from_cross_fitted_pool_negatives(built):
    """ranker_dataset with pool_negatives draws hard negatives from each playlist's own classical pool (sources that
    never saw it) and ranker_model with loss: listwise trains on those lists and passes its blocking check; the
    defaults are materialised again afterwards (same config, same table), so other tests see the usual graph."""
    ops = ("ranker_dataset", "ranker_model")
    variant = _run_config(ranker_dataset={"pool_negatives": True, "pool_folds": 3, "random_negative_share": 0.5},
                          ranker_model={"loss": "listwise"})
    home, data = built["home"], built["data"]
    try:
        result = _materialize(home, data, variant, dg.AssetSelection.assets(*ops), ops)
        assert result.success
        meta = _metadata(result, "ranker_dataset")
        assert meta["train_pool"] > 0 and meta["val_pool"] > 0, meta
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["ranker_model_learned"] is True
        examples, corpus = _tables(home, "ranker_dataset", "upstream_corpus")
        own = {p: set(s) for p, s in zip(corpus.playlist_id, corpus.song_ids)}
        pooled = examples[examples.negative_kind == "pool"]
        assert not any(s in own[p] for p, s in zip(pooled.playlist_id, pooled.song_id))
    finally:
        assert _materialize(home, data, _run_config(), dg.AssetSelection.assets(*ops), ops).success
