"""Dagster resources: where things live, which device trains, and the MLflow registry."""

import os
from pathlib import Path

import dagster as dg

from genrank_assets import paths

# Op tags of the steps that train on the compute resource's device. dagster-k8s reads `dagster-k8s/config` when
# the k8s_job_executor (or celery-k8s) launches a step's pod; `container_config` is merged into its container spec.
GPU_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}


class GenrankPaths(dg.ConfigurableResource):
    """Folders of one genrank installation. Empty strings fall back to GENRANK_HOME / GENRANK_DATA_DIR."""

    home: str = ""
    data_dir: str = ""

    @property
    def home_path(self) -> Path:
        return paths.genrank_home(self.home or None)

    @property
    def data_path(self) -> Path:
        return paths.data_dir(self.data_dir or None)

    def artifacts(self, *parts: str) -> Path:
        p = paths.artifacts_dir(self.home_path).joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def checkpoints(self, *parts: str) -> Path:
        p = paths.checkpoints_dir(self.home_path).joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def reports(self) -> Path:
        p = paths.reports_dir(self.home_path)
        p.mkdir(parents=True, exist_ok=True)
        return p


class ComputeResource(dg.ConfigurableResource):
    """Which device an asset trains on. ``auto`` picks CUDA when present, else CPU."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | fp16 | bf16 (mixed precision only on CUDA)
    threads: int = 0  # torch intra-op threads; 0 = auto (CPU: half the cores, at most 4; CUDA: torch's default)

    def resolved_device(self) -> str:
        import torch

        dev = self.device.strip().lower()
        if dev == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if dev == "cpu":
            return "cpu"
        if dev == "cuda" or dev.startswith("cuda:"):
            if not torch.cuda.is_available():
                raise ValueError(f"compute.device={self.device!r} but CUDA is not available on this machine")
            return dev
        raise ValueError(f"compute.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def resolved_precision(self) -> str:
        dev = self.resolved_device()
        p = self.precision.strip().lower()
        if p == "auto":
            return "fp32" if dev == "cpu" else "bf16"
        if p not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"compute.precision must be auto, fp32, fp16 or bf16, got {self.precision!r}")
        if dev == "cpu" and p != "fp32":
            # Mixed precision is a CUDA feature here; CPU training stays in fp32 rather than failing.
            return "fp32"
        return p

    def resolved_threads(self) -> int:
        if self.threads > 0:
            return self.threads
        # Small models on CPU: one thread per job beat two threads that fight over 2 cores (docs/findings.md: two
        # threads were only 1.5x one thread, and 15x slower once another process competed for the cores).
        cores = os.cpu_count() or 1
        return max(1, min(4, cores // 2)) if self.resolved_device() == "cpu" else 0

    def apply_threads(self) -> None:
        import torch

        n = self.resolved_threads()
        if n > 0:
            torch.set_num_threads(n)


class MlflowRegistry(dg.ConfigurableResource):
    """MLflow tracking + model registry. Empty ``tracking_uri`` = MLFLOW_TRACKING_URI or sqlite under GENRANK_HOME."""

    tracking_uri: str = ""
    home: str = ""
    experiment: str = "genrank"

    def uri(self) -> str:
        return self.tracking_uri or paths.mlflow_tracking_uri(self.home or None)

    def setup(self):
        """Point mlflow at this registry and return the experiment id (artifacts under GENRANK_HOME)."""
        import mlflow

        home = paths.genrank_home(self.home or None)
        home.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.uri())
        mlflow.set_registry_uri(self.uri())
        exp = mlflow.get_experiment_by_name(self.experiment)
        if exp is None:
            artifact_root = paths.mlflow_artifact_root(home)
            artifact_root.mkdir(parents=True, exist_ok=True)
            experiment_id = mlflow.create_experiment(self.experiment, artifact_location=artifact_root.as_uri())
        else:
            experiment_id = exp.experiment_id
        # Runs go to this experiment: MLflow's default one keeps artifacts in ./mlruns of the working directory.
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

