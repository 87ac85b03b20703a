"""The one Definitions object of the genrank code location: assets by stage, their checks, resources, automation."""
from __future__ import annotations

import importlib

import dagster as dg

import genrank_assets.paths as paths
from genrank_assets.defs.assets import STAGES
from genrank_assets.defs.automation import build_automation
from genrank_assets.defs.crossfit import fold_assets
from genrank_assets.defs.executors import genrank_executor
from genrank_assets.defs.io_managers import warehouse_io_manager
from genrank_assets.defs.resources import ComputeResource, GenrankPaths, MlflowRegistry
from genrank_assets.defs.run_checks import register_config_classes

# One asset module per stage, in pipeline order: data -> vectors -> semantic_ids -> generator -> ranking ->
# evaluation -> serving (defs/assets/<stage>.py).
STAGE_MODULES = [importlib.import_module(f"genrank_assets.defs.assets.{stage}") for stage in STAGES]


def build_resources(home: str | None = None, data_dir: str | None = None, warehouse: str | None = None) -> dict:
    """Resources for one GENRANK_HOME; tests pass a temporary home and data folder. `warehouse`: duckdb (one
    file) or parquet (a file per table), default GENRANK_WAREHOUSE, else duckdb (io_managers.warehouse_kind)."""
    home_path = paths.genrank_home(home)
    home_path.mkdir(parents=True, exist_ok=True)
    return {
        "io_manager": warehouse_io_manager(home_path, warehouse),
        "genrank_paths": GenrankPaths(home=str(home_path), data_dir=str(paths.data_dir(data_dir))),
        "compute": ComputeResource(),
        "mlflow_registry": MlflowRegistry(home=str(home_path)),
        # Non-tabular values (model URIs, small dicts) are pickled under GENRANK_HOME.
        "model_io_manager": dg.FilesystemIOManager(base_dir=str(home_path / "storage")),
    }


# The served graph, and a copy of its upstream chain per cross-fitting fold (group `crossfit`, defs/crossfit.py).
all_assets = [*dg.load_assets_from_modules(STAGE_MODULES), *fold_assets()]
all_asset_checks = dg.load_asset_checks_from_modules(STAGE_MODULES)
register_config_classes([*all_assets, *all_asset_checks])  # a run's config is checked whole before its first step
automation = build_automation(all_assets)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_asset_checks,
    resources=build_resources(),
    jobs=automation.jobs,
    schedules=automation.schedules,
    sensors=automation.sensors,
    # Multiprocess by default (independent steps at once; one DuckDB writer at a time through the IO manager's
    # lock wait), in_process or dask per run config: genrank_assets/defs/executors.py.
    executor=genrank_executor,
)
