"""The MLflow glue against a real sqlite registry in a temporary GENRANK_HOME."""
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.pyfunc
import pytest
from mlflow import MlflowClient

import genrank_assets.paths as paths
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.recommender import RecommenderConfig, load_recommender_config
from genrank_assets_tests.ml.serving.fakes import planted_corpus

# A stand-in for the genrank pyfuncs, logged from code as they are: its state is the text file in its model dir.
READS_ITS_DIR = str(Path(__file__).with_name("reads_its_dir_model.py"))


def model_dir(root: Path, text: str) -> Path:
    root.mkdir(parents=True)
    (root / "weights.txt").write_text(text)
    return root


@pytest.fixture()
def store(genrank_home):
    """A fresh registry under the temporary GENRANK_HOME, with MLflow pointed at it."""
    experiment_id = registry.connect(experiment="genrank")
    yield genrank_home, experiment_id
    mlflow.set_tracking_uri(None)


def register(name: str, directory: Path) -> registry.RegisteredModel:
    with mlflow.start_run():
        return registry.log_model_dir(directory, registered_name=name, python_model=READS_ITS_DIR)


def test_connect_uses_the_store_under_genrank_home(store, monkeypatch):
    home, experiment_id = store
    assert mlflow.get_tracking_uri() == paths.mlflow_tracking_uri() == f"sqlite:///{home / 'mlflow.db'}"
    assert paths.mlflow_store_exists()
    experiment = mlflow.get_experiment(experiment_id)
    assert experiment.name == "genrank" and experiment.artifact_location == (home / "mlartifacts").as_uri()
    assert registry.connect(experiment="genrank") == experiment_id  # found again, not created twice
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert paths.mlflow_tracking_uri() == "http://tracking.example:5000" and paths.mlflow_store_exists()


def test_connect_to_a_second_home_in_the_same_process_uses_its_store(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI: a benchmark with two homes once registered the second
    home's models in the first's store. A URI the user set still wins."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        for home in (tmp_path / "a", tmp_path / "b"):
            registry.connect(home, experiment="genrank")
            assert mlflow.get_tracking_uri() == f"sqlite:///{home / 'mlflow.db'}"
            with mlflow.start_run():
                mlflow.log_param("home", home.name)
        for home in (tmp_path / "a", tmp_path / "b"):
            registry.connect(home)
            assert [r.data.params["home"] for r in MlflowClient().search_runs(
                [mlflow.get_experiment_by_name("genrank").experiment_id])] == [home.name]
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'team.db'}")
        registry.connect(tmp_path / "a")
        assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'team.db'}"
    finally:
        mlflow.set_tracking_uri(None)


def test_log_register_alias_and_load(store, tmp_path):
    with pytest.raises(RuntimeError, match="inside mlflow.start_run"):
        registry.log_model_dir(tmp_path, registered_name="genrank-test", python_model=READS_ITS_DIR)
    v1 = register("genrank-test", model_dir(tmp_path / "v1", "first"))
    v2 = register("genrank-test", model_dir(tmp_path / "v2", "second"))
    assert (v1.version, v2.version) == (1, 2) and v2.uri == "models:/genrank-test/2"
    assert mlflow.get_run(v1.run_id).info.artifact_uri.startswith(store[0].as_uri())
    assert registry.alias_version("genrank-test") is None
    registry.set_alias("genrank-test", 1)
    assert registry.alias_version("genrank-test") == 1
    by_alias = registry.load_python_model("models:/genrank-test@champion")
    by_version = registry.load_python_model("models:/genrank-test/2")
    assert (by_alias.text, by_version.text) == ("first", "second")
    assert by_alias.model_uri == "models:/genrank-test@champion"
    assert registry.name_and_version("models:/genrank-test@champion") == ("genrank-test", 1)
    assert registry.version_of("models:/genrank-test/2") == 2
    with pytest.raises(ValueError, match="no alias 'nope'"):
        registry.version_of("models:/genrank-test@nope")
    assert registry.run_id_of("genrank-test", 2) == v2.run_id


def test_challenger_round_trip_promotion_and_gate_record(store, tmp_path):
    tiger = register(registry.TIGER_NAME, model_dir(tmp_path / "tiger", "t"))
    ranker = register(registry.RANKER_NAME, model_dir(tmp_path / "ranker", "r"))
    (tmp_path / "songs").mkdir()
    tiger_py = SimpleNamespace(artifact_paths={"model_dir": str(tmp_path / "tiger")}, model_uri=tiger.uri)
    ranker_py = SimpleNamespace(artifact_paths={"model_dir": str(tmp_path / "ranker"), "songs_dir": str(tmp_path / "songs")},
                                model_uri=ranker.uri)
    assert registry.challenger() is None
    config = RecommenderConfig(candidate_source="hybrid", popularity_weight=0.5, classical_weight=4.0)
    with mlflow.start_run() as run:
        made = registry.register_recommender(tiger_py, ranker_py, config, planted_corpus(), tmp_path / "bundle",
                                             method="generate_and_rank_hybrid", split="test", queries=9,
                                             queries_fingerprint="abc123", ndcg_at_10=0.123456789012345)
    assert load_recommender_config(tmp_path / "bundle" / "config") == config
    found = registry.challenger()
    assert found == made
    assert (found.version, found.tiger_version, found.ranker_version) == (1, 1, 1)
    assert found.ndcg_at_10 == 0.123456789012345  # the exact float, through a string tag
    assert found.evaluation_run_id == run.info.run_id and found.uri == "models:/genrank-recommender/1"
    assert registry.alias_version(registry.RECOMMENDER_NAME) is None  # a challenger is not yet the champion
    # What a client, `mlflow models serve` and the MLflow UI read: the signature and the input example.
    info = mlflow.models.get_model_info(found.uri)
    assert info.signature.inputs.input_names() == ["text", "k"]
    assert [c.required for c in info.signature.inputs.inputs] == [True, False]
    assert info.signature.outputs.input_names() == ["text", "rank", "song_id", "name", "singer", "score"]
    assert [(p.name, p.default) for p in info.signature.params.params] == [("k", 10)]
    assert info.saved_input_example_info is not None

    registry.promote(found)
    assert [registry.alias_version(n) for n in (registry.TIGER_NAME, registry.RANKER_NAME,
                                                registry.RECOMMENDER_NAME)] == [1, 1, 1]
    registry.record_gate(found, True, "no champion yet", None, "# Promotion gate\n")
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert tags["genrank.promoted"] == "True" and tags["genrank.champion_ndcg_at_10"] == ""
    assert tags["genrank.new_ndcg_at_10"] == "0.123457"
    gate = MlflowClient().download_artifacts(run.info.run_id, "report/gate.md", str(tmp_path / "dl"))
    assert Path(gate).read_text() == "# Promotion gate\n"

    report = tmp_path / "report.md"
    report.write_text("report")
    registry.log_evaluation_on_models([tiger.uri], {"popularity.ndcg_at_10": 0.25}, report, run.info.run_id)
    trained = mlflow.get_run(tiger.run_id).data
    assert trained.metrics["eval.popularity.ndcg_at_10"] == 0.25
    assert trained.tags["genrank.evaluation_run"] == run.info.run_id
