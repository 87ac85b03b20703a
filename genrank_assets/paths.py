"""Where genrank keeps things. Plain functions (no Dagster) so the CLI, benchmarks and assets agree."""
from __future__ import annotations

import os
from pathlib import Path

# Files that ship inside the package: the run-config presets and the Dagster instance settings.
PACKAGE_DIR = Path(__file__).resolve().parent
PRESETS_DIR = PACKAGE_DIR / "presets"
DAGSTER_YAML = PACKAGE_DIR / "dagster.yaml"
REPO_DIR = PACKAGE_DIR.parent  # the checkout (workspace.yaml) when installed editable, as `make` does

DEFAULT_HOME = ".genrank"
DEFAULT_DATA_DIR = "data"


def preset_file(name_or_path: str | os.PathLike) -> Path:
    """A run-config preset: a file stem in presets/ (``demo``, ``cpu-real``, ...) or a path to a YAML file; a
    ValueError naming the known presets otherwise."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml"):
        raise ValueError(f"no preset file {path}")
    candidate = PRESETS_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise ValueError(f"unknown preset {str(name_or_path)!r}: give a YAML path or one of {known}")
    return candidate


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


def mlflow_db_path(home: str | os.PathLike | None = None) -> Path:
    """The local sqlite MLflow store (tracking and registry) used when MLFLOW_TRACKING_URI is unset."""
    return genrank_home(home) / "mlflow.db"


def mlflow_tracking_uri(home: str | os.PathLike | None = None) -> str:
    """MLFLOW_TRACKING_URI when set (the one place genrank reads it), else the local sqlite store under GENRANK_HOME.
    ``ml.serving.registry.connect`` points MLflow at it for the assets, the CLI and the benchmarks."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_db_path(home)}"


def mlflow_store_exists(home: str | os.PathLike | None = None) -> bool:
    """Whether there is a store to read: a tracking server is assumed to exist; the local sqlite file must."""
    return mlflow_tracking_uri(home) != f"sqlite:///{mlflow_db_path(home)}" or mlflow_db_path(home).exists()


def mlflow_artifact_root(home: str | os.PathLike | None = None) -> Path:
    return genrank_home(home) / "mlartifacts"


def reports_dir(home: str | os.PathLike | None = None) -> Path:
    return genrank_home(home) / "reports"


def checkpoints_dir(home: str | os.PathLike | None = None) -> Path:
    return genrank_home(home) / "checkpoints"


def artifacts_dir(home: str | os.PathLike | None = None) -> Path:
    """Files that belong to an asset but are not tables (codebooks, tokenizers, model dirs)."""
    return genrank_home(home) / "artifacts"
