"""The whole asset graph built once per session with the test preset, and what the tests read from a build.

`build_test_preset` materialises every asset and check in-process (one process, the DuckDB warehouse) into a
GENRANK_HOME whose ``dagster/`` folder is a real Dagster instance, so the UIs show the run. The session fixture
`test_preset_build` (conftest.py) makes one; the stage tests under defs/assets/ and tools/test_cli.py read it, the
executor tests compare their runs with its tables, and the browser tests serve a copy of it. A test that
materialises again or moves an alias works on `copy_build` (a copy of the home, its MLflow paths relocated) so
that every other test sees the first build, in any order."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import pandas as pd
import pytest
import yaml

import genrank_assets.paths as paths
from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.relocate import relocate_home

MODELS = (registry.TIGER_NAME, registry.RANKER_NAME, registry.RECOMMENDER_NAME)


def run_config(**overrides: dict) -> dict:
    """The test preset's run config, with ``overrides`` merged into the named ops' config."""
    cfg = yaml.safe_load(paths.preset_file("test").read_text())
    for op, values in overrides.items():
        cfg["ops"].setdefault(op, {}).setdefault("config", {}).update(values)
    return cfg


def materialize(home: Path, data: Path, config: dict, selection=None, ops: tuple[str, ...] = (),
                **kwargs) -> dg.ExecuteInProcessResult:
    """dg.materialize of the whole graph (or ``selection``) into ``home``; a partial run (``ops``) takes config
    for its own ops only."""
    if ops:
        config = {**config, "ops": {k: v for k, v in config["ops"].items() if k in ops}}
    return dg.materialize(all_assets + all_asset_checks,
                          resources=build_resources(home=str(home), data_dir=str(data), warehouse="duckdb"),
                          run_config=config, selection=selection, **kwargs)


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict:
    """The metadata values of the first materialisation of ``node`` in ``result``."""
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def tables(home: Path, *names: str) -> list[pd.DataFrame]:
    """The warehouse tables ``names`` of ``home``, read through a read-only connection."""
    con = duckdb.connect(str(paths.warehouse_path(home)), read_only=True)
    try:
        return [con.execute(f"select * from genrank.{name}").fetchdf() for name in names]
    finally:
        con.close()


def table_names(home: Path) -> set[str]:
    """The names of the tables in ``home``'s warehouse."""
    con = duckdb.connect(str(paths.warehouse_path(home)), read_only=True)
    try:
        return {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    finally:
        con.close()


def champions() -> dict[str, int | None]:
    """The champion version of each of the three models, in the registry MLflow points at."""
    return {name: registry.alias_version(name) for name in MODELS}


def model_versions(name: str) -> int:
    return len(mlflow.MlflowClient().search_model_versions(f"name='{name}'"))


@dataclasses.dataclass(frozen=True)
class Build:
    """A GENRANK_HOME built with the test preset: the run's result, the Dagster instance folder it is recorded in,
    the seed data it read, and what it left (champion versions, the report table)."""
    home: Path
    data: Path
    result: dg.ExecuteInProcessResult
    first_champions: dict[str, int | None]
    first_report: pd.DataFrame

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    def use(self, monkeypatch: pytest.MonkeyPatch) -> Build:
        """Point GENRANK_HOME and MLflow at this home for one test."""
        monkeypatch.setenv("GENRANK_HOME", str(self.home))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        registry.connect(self.home)
        return self


def build_test_preset(home: Path, data: Path) -> Build:
    """Every asset and check materialised in-process with the test preset, the run recorded in home/dagster."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(paths.DAGSTER_YAML, dagster_home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        mp.setenv("GENRANK_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = materialize(home, data, run_config(), instance=instance)
        registry.connect(home)
        return Build(home=home, data=data, result=result, first_champions=champions(),
                     first_report=tables(home, "evaluation_report")[0])


def copy_build(build: Build, dest: Path) -> Build:
    """A copy of ``build``'s home at ``dest`` (a path that does not exist yet), its MLflow store and MLmodel files
    rewritten to the new path, for a test that materialises again or moves an alias."""
    shutil.copytree(build.home, dest)
    relocate_home(dest, old_home=build.home)
    return dataclasses.replace(build, home=dest)
