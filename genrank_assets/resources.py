"""Dagster resources: where things live, which device trains, and the MLflow registry."""

from pathlib import Path

import dagster as dg

import genrank_assets.paths as paths
from genrank_assets.ml.compute import Compute, resolve_compute
from genrank_assets.run_checks import check_run_config

# Op tags of the steps that train on the compute resource's device. dagster-k8s reads `dagster-k8s/config` when
# the k8s_job_executor (or celery-k8s) launches a step's pod; `container_config` is merged into its container spec.
GPU_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}


class GenrankPaths(dg.ConfigurableResource):
    """Folders of one genrank installation. Empty strings fall back to GENRANK_HOME / GENRANK_DATA_DIR."""

    home: str = ""
    data_dir: str = ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Set up before the run's first step (the ingest needs this resource): a bad value anywhere fails now.
        check_run_config(context.dagster_run.run_config if context.dagster_run else None)

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
    """Which device and precision the models train on, resolved once by ``ml.compute.resolve_compute`` (the
    rules are in its docstring): ``auto`` is CUDA when present, else CPU, and fp32 on CPU; fp16/bf16 asked for on
    CPU, or a CUDA device this machine lacks, is a ValueError naming the ``compute.*`` field."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | fp16 | bf16 (fp16/bf16: CUDA only)
    threads: int = 0  # torch intra-op threads; 0 = auto (CPU: half the cores, at most 4; CUDA: torch's default)
    processes: int = 1  # data-parallel training processes per node (torch.distributed); 1 = no DDP

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Once per run, before its first step: the whole run config, and the device (`device: cuda` on a machine
        # without CUDA fails here, not after the ingest, corpus and vectors ran).
        check_run_config(context.dagster_run.run_config if context.dagster_run else None)
        self.resolve()

    def resolve(self) -> Compute:
        return resolve_compute(self.device, self.precision, self.threads, self.processes)

    def resolved_device(self) -> str:
        return self.resolve().device

    def apply_threads(self) -> None:
        self.resolve().apply_threads()


class MlflowRegistry(dg.ConfigurableResource):
    """MLflow tracking + model registry. Empty ``tracking_uri`` = MLFLOW_TRACKING_URI or sqlite under GENRANK_HOME."""

    tracking_uri: str = ""
    home: str = ""
    experiment: str = "genrank"

    def setup(self) -> str:
        """Point mlflow at this registry and return the experiment id (artifacts under GENRANK_HOME)."""
        from genrank_assets.ml.serving import registry

        return registry.connect(self.home or None, self.tracking_uri, self.experiment)

