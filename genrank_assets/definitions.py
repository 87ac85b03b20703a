"""The one Definitions object of the genrank code location."""
from __future__ import annotations

import dagster as dg

from genrank_assets import paths
from genrank_assets.assets import corpus, evaluation, generator, ingest, ranker, semantic_ids, vectors
from genrank_assets.io_managers import WarehouseIOManager
from genrank_assets.resources import ComputeResource, GenrankPaths, MlflowRegistry

ASSET_MODULES = [ingest, corpus, vectors, semantic_ids, generator, ranker, evaluation]


def build_resources(home: str | None = None, data_dir: str | None = None) -> dict:
    """Resources for one GENRANK_HOME; tests pass a temporary home and data folder."""
    home_path = paths.genrank_home(home)
    home_path.mkdir(parents=True, exist_ok=True)
    return {
        "io_manager": WarehouseIOManager(database=str(paths.warehouse_path(home_path)), schema="genrank"),
        "genrank_paths": GenrankPaths(home=str(home_path), data_dir=str(paths.data_dir(data_dir))),
        "compute": ComputeResource(),
        "mlflow_registry": MlflowRegistry(home=str(home_path)),
        # Non-tabular values (model URIs, small dicts) are pickled under GENRANK_HOME.
        "model_io_manager": dg.FilesystemIOManager(base_dir=str(home_path / "storage")),
    }


all_assets = dg.load_assets_from_modules(ASSET_MODULES)
all_asset_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)

# Imported after the assets: automation builds jobs and schedules over them.
from genrank_assets import automation  # noqa: E402

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_asset_checks,
    resources=build_resources(),
    jobs=automation.JOBS,
    schedules=automation.SCHEDULES,
    sensors=automation.SENSORS,
    # One process: DuckDB allows one writer, and the training assets use both cores on their own.
    executor=dg.in_process_executor,
)
