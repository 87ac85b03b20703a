"""Where genrank keeps things. Plain functions (no Dagster) so the CLI, benchmarks and assets agree."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".genrank"
DEFAULT_DATA_DIR = "data"


def genrank_home(home: str | os.PathLike | None = None) -> Path:
    """GENRANK_HOME (default ./.genrank): warehouse, MLflow DB and artifacts, reports, checkpoints."""
    raw = home if home not in (None, "") else os.environ.get("GENRANK_HOME") or DEFAULT_HOME
    return Path(raw).expanduser().resolve()


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """GENRANK_DATA_DIR (default ./data): the folder with the three seed-format input files."""
    raw = path if path not in (None, "") else os.environ.get("GENRANK_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()


def warehouse_path(home: str | os.PathLike | None = None) -> Path:
    return genrank_home(home) / "warehouse.duckdb"


def mlflow_tracking_uri(home: str | os.PathLike | None = None) -> str:
    """MLFLOW_TRACKING_URI when set, else a local sqlite registry under GENRANK_HOME."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{genrank_home(home) / 'mlflow.db'}"


def mlflow_artifact_root(home: str | os.PathLike | None = None) -> Path:
    return genrank_home(home) / "mlartifacts"


def reports_dir(home: str | os.PathLike | None = None) -> Path:
    return genrank_home(home) / "reports"


def checkpoints_dir(home: str | os.PathLike | None = None) -> Path:
    return genrank_home(home) / "checkpoints"


def artifacts_dir(home: str | os.PathLike | None = None) -> Path:
    """Files that belong to an asset but are not tables (codebooks, tokenizers, model dirs)."""
    return genrank_home(home) / "artifacts"
