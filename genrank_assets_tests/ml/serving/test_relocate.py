"""A GENRANK_HOME moved to another path serves its registered models again after `genrank relocate-home`."""
import shutil
from pathlib import Path

import mlflow
import pytest

from genrank_assets import paths
from genrank_assets.ml.serving.relocate import recorded_home, relocate_home
from genrank_assets.tools import cli


class _ReadsArtifact(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.word = Path(context.artifacts["words"], "word.txt").read_text()

    def predict(self, context, model_input, params=None):
        return [self.word]


def _build_home(home: Path) -> None:
    """A real sqlite store with the genrank experiment (artifacts under the home) and one registered model."""
    home.mkdir(parents=True)
    words = home / "artifacts" / "words"
    words.mkdir(parents=True)
    (words / "word.txt").write_text("hello")
    mlflow.set_tracking_uri(f"sqlite:///{paths.mlflow_db_path(home)}")
    mlflow.set_registry_uri(f"sqlite:///{paths.mlflow_db_path(home)}")
    exp = mlflow.create_experiment("genrank", artifact_location=paths.mlflow_artifact_root(home).as_uri())
    with mlflow.start_run(experiment_id=exp):
        mlflow.pyfunc.log_model(name="m", python_model=_ReadsArtifact(), artifacts={"words": str(words)},
                                registered_model_name="genrank-recommender", pip_requirements=[])


def _load(home: Path):
    mlflow.set_tracking_uri(f"sqlite:///{paths.mlflow_db_path(home)}")
    mlflow.set_registry_uri(f"sqlite:///{paths.mlflow_db_path(home)}")
    return mlflow.pyfunc.load_model("models:/genrank-recommender/1")


def test_moved_home_is_relocated_and_serves_again(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    old, new = tmp_path / "old" / "home", tmp_path / "restored" / "home"
    _build_home(old)
    new.parent.mkdir()
    shutil.move(old, new)
    assert recorded_home(new) == old
    with pytest.raises(mlflow.exceptions.MlflowException, match="No such artifact"):  # what an operator saw
        _load(new)

    assert cli.main(["relocate-home", "--home", str(new)]) == 0
    assert f"paths under {old} rewritten" in capsys.readouterr().out
    assert recorded_home(new) == new
    assert _load(new).predict(["x"]) == ["hello"]
    assert relocate_home(new) == {"rows": 0, "mlmodel_files": 0}  # idempotent


def test_relocate_without_a_store_is_one_line(tmp_path, capsys):
    assert cli.main(["relocate-home", "--home", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.strip().startswith("genrank relocate-home: no MLflow store")
