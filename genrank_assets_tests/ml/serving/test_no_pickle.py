"""Loading a registered model runs no pickle: genrank logs its pyfuncs from code, and a pickle planted in the
artifact store (what an attacker with write access to it would do) is never unpickled."""
import os
import pickle
from pathlib import Path

import mlflow
import pytest

from genrank_assets.ml.serving import registry

READS_ITS_DIR = str(Path(__file__).with_name("reads_its_dir_model.py"))


class _Crafted:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Pickled(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture()
def store(genrank_home, tmp_path):
    registry.connect(experiment="genrank")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "weights.txt").write_text("ok")
    yield weights
    mlflow.set_tracking_uri(None)


def _plant(uri: str, marker: Path) -> Path:
    """Write a crafted python_model.pkl into the stored model: the version's logged model, a local folder."""
    name, version = registry.name_and_version(uri)
    source = mlflow.MlflowClient().get_model_version(name, str(version)).source  # models:/m-<id>
    stored = Path(mlflow.get_logged_model(source.removeprefix("models:/")).artifact_location.removeprefix("file://"))
    (stored / "python_model.pkl").write_bytes(pickle.dumps(_Crafted(marker)))
    return stored


def test_models_logged_from_code_never_read_a_planted_pickle(store, tmp_path):
    with mlflow.start_run():
        reg = registry.log_model_dir(store, registered_name="genrank-test", python_model=READS_ITS_DIR)
    marker = tmp_path / "pwned"
    stored = _plant(reg.uri, marker)
    assert "model_code_path" in (stored / "MLmodel").read_text()
    model = registry.load_python_model(reg.uri)
    assert model.text == "ok"
    assert not marker.exists()


def test_a_pickled_model_is_refused_unless_the_operator_allows_it(store, tmp_path, monkeypatch):
    monkeypatch.delenv(registry.ALLOW_PICKLE_ENV, raising=False)
    with mlflow.start_run():
        reg = registry.log_model_dir(store, registered_name="genrank-test", python_model=_Pickled())
    marker = tmp_path / "pwned"
    _plant(reg.uri, marker)
    with pytest.raises(mlflow.exceptions.MlflowException, match="pickle is disallowed"):
        registry.load_python_model(reg.uri)
    assert not marker.exists()
    assert registry.ALLOW_PICKLE_ENV not in os.environ  # the guard leaves the environment as it found it
    # What used to happen, and still does where the operator allows pickles: the planted pickle runs.
    monkeypatch.setenv(registry.ALLOW_PICKLE_ENV, "true")
    with pytest.raises(AttributeError):  # os.system's return value is no PythonModel
        registry.load_python_model(reg.uri)
    assert marker.exists()
