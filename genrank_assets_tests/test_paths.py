"""Where genrank keeps things: an argument wins over the environment, which wins over the defaults."""
from pathlib import Path

import genrank_assets.paths as paths


def test_home_and_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENRANK_HOME", raising=False)
    monkeypatch.delenv("GENRANK_DATA_DIR", raising=False)
    assert paths.genrank_home() == tmp_path / ".genrank" and paths.data_dir() == tmp_path / "data"
    monkeypatch.setenv("GENRANK_HOME", "from-env")
    monkeypatch.setenv("GENRANK_DATA_DIR", str(tmp_path / "in"))
    assert paths.genrank_home() == tmp_path / "from-env" and paths.data_dir() == tmp_path / "in"
    # An explicit value wins; an empty one means "not given".
    assert paths.genrank_home(tmp_path / "arg") == tmp_path / "arg" and paths.genrank_home("") == tmp_path / "from-env"
    assert paths.data_dir("other") == tmp_path / "other" and paths.data_dir("") == tmp_path / "in"
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert paths.genrank_home("~/g") == tmp_path / "user" / "g"  # ~ expanded, always absolute


def test_everything_lives_under_the_home(tmp_path):
    home = tmp_path / "h"
    assert paths.warehouse_path(home) == home / "warehouse.duckdb"
    assert {p(home).parent for p in (paths.reports_dir, paths.checkpoints_dir, paths.artifacts_dir,
                                     paths.mlflow_artifact_root)} == {home}


def test_mlflow_uri_defaults_to_sqlite_under_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert paths.mlflow_tracking_uri(tmp_path) == f"sqlite:///{Path(tmp_path) / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert paths.mlflow_tracking_uri(tmp_path) == "http://mlflow.internal:5000"
