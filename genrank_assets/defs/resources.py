"""Dagster resources: where things live, which device trains, and the MLflow registry; the per-asset device
fields and the device-dependent defaults of the asset configs that compute on a device."""

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import field_validator

import genrank_assets.paths as paths
from genrank_assets.defs.run_checks import check_run_config
from genrank_assets.ml.compute import Compute, check_asset_settings, resolve_compute
from genrank_assets.ml.device_defaults import for_device

# Op tags of the steps that train on the compute resource's device. dagster-k8s reads `dagster-k8s/config` when
# the k8s_job_executor (or celery-k8s) launches a step's pod; `container_config` is merged into its container spec.
GPU_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}


class GenrankPaths(dg.ConfigurableResource):
    """Folders of one genrank installation. Empty strings fall back to GENRANK_HOME / GENRANK_DATA_DIR."""

    home: str = ""
    data_dir: str = ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Set up before the run's first step (the ingest needs this resource): a bad value anywhere fails now.
        check_run_config(context.run.run_config if context.run else None)

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
        # Once per run, before its first step: the whole run config, the device (`device: cuda` on a machine
        # without CUDA fails here, not after the ingest, corpus and vectors ran) and every asset's own device
        # over this resource's settings (`ops.tiger_model.config.device: cuda:1` on a one-GPU machine).
        check_run_config(context.run.run_config if context.run else None, compute=self.settings())
        self.resolve()

    def settings(self) -> dict:
        return {"device": self.device, "precision": self.precision, "threads": self.threads,
                "processes": self.processes}

    def resolve(self, device: str = "", precision: str = "", *, where: str = "") -> Compute:
        """This resource's compute; with an asset config's own ``device`` / ``precision`` (empty: this
        resource's) that asset's, whose errors name ``{where}.device`` (``ops.tiger_model.config``)."""
        return resolve_compute(**self.settings(), asset_device=device, asset_precision=precision, where=where)

    def for_asset(self, op: str, config: "DeviceConfig") -> Compute:
        """The compute of asset op ``op``, whose config (a :class:`DeviceConfig`) may name its own device."""
        return self.resolve(config.device, getattr(config, "precision", ""), where=f"ops.{op}.config")

    def for_step(self, op: str, config: "DeviceConfig", log_fn=None) -> tuple[Compute, "DeviceConfig", dict]:
        """One call for a step that computes on a device: the compute of asset op ``op`` (its config may name its
        own device) with its torch threads set, ``config`` with each field left at None ("auto") filled from
        ``ml.device_defaults`` for that device (when that module has defaults for ``op``), and the values filled
        in, for the metadata. ``log_fn`` is told which defaults were used."""
        resolved = self.for_asset(op, config)
        resolved.apply_threads()
        defaults = getattr(for_device(resolved.device), op, None)
        if defaults is None:
            return resolved, config, {}
        config, filled = fill_device_defaults(config, defaults)
        if log_fn is not None:
            log_fn(f"{resolved.device} defaults for the fields left unset: {filled}" if filled
                   else "no device defaults used")
        return resolved, config, filled

    def resolved_device(self) -> str:
        return self.resolve().device

    def apply_threads(self) -> None:
        self.resolve().apply_threads()


class DeviceConfig(dg.Config):
    """The config of an asset that computes on a device: its own ``device`` (empty = the compute resource's)."""

    device: str = ""  # "" (the compute resource's) | auto | cpu | cuda | cuda:N

    @field_validator("device")
    @classmethod
    def _device_format(cls, value: str) -> str:
        check_asset_settings(device=value)  # whether it exists on this machine: run_checks, before the first step
        return value


class TrainingDeviceConfig(DeviceConfig):
    """The config of an asset that trains: its own ``device`` and ``precision`` (empty = the resource's)."""

    precision: str = ""  # "" (the compute resource's; fp32 when this asset's own device is cpu) | auto | fp32 | fp16 | bf16

    @field_validator("precision")
    @classmethod
    def _precision_format(cls, value: str) -> str:
        check_asset_settings(precision=value)
        return value


def fill_device_defaults(config: dg.Config, defaults) -> tuple[dg.Config, dict]:
    """``config`` with each field left at None ("auto") set to ``defaults``' value of that name (a dataclass
    of ``ml.device_defaults``, for the asset's resolved device); and the values filled in, for the metadata.
    An explicit value in the run config is never None, so it always wins."""
    filled = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)
              if getattr(config, f.name) is None}
    return config.model_copy(update=filled), filled


class MlflowRegistry(dg.ConfigurableResource):
    """MLflow tracking + model registry. Empty ``tracking_uri`` = MLFLOW_TRACKING_URI or sqlite under GENRANK_HOME."""

    tracking_uri: str = ""
    home: str = ""
    experiment: str = "genrank"

    def setup(self) -> str:
        """Point mlflow at this registry and return the experiment id (artifacts under GENRANK_HOME)."""
        from genrank_assets.ml.serving import registry

        return registry.connect(self.home or None, self.tracking_uri, self.experiment)



@dataclasses.dataclass(frozen=True)
class StepRun:
    """What a model-producing step writes into: its own folder and its MLflow run."""

    folder: Path
    run: object  # mlflow.ActiveRun

    @property
    def run_id(self) -> str:
        return self.run.info.run_id


def step_name(context) -> str:
    """The step's op name: ``tiger_model``, or ``fold_0__tiger_model`` for a fold's copy (defs/crossfit.py), so that
    the artifact and checkpoint folders of steps running side by side in one run never meet."""
    return context.op_execution_context.op.name


@contextmanager
def step_run(context: dg.AssetExecutionContext, genrank_paths: GenrankPaths, mlflow_registry: MlflowRegistry,
             name: str = "", under: Path | None = None) -> Iterator[StepRun]:
    """Open a step's artifact folder and its MLflow run together. The folder is ``<under>/<time>-<run8>`` (default
    ``under``: ``artifacts/<name>``) and the run is named ``<name>-<run8>``; ``name`` defaults to the asset's op."""
    import mlflow

    name = name or step_name(context)
    tag = context.run.run_id[:8]
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{tag}"
    if under is None:
        folder = genrank_paths.artifacts(name, stamp)
    else:
        folder = under / f"{name}-{stamp}"
        folder.mkdir(parents=True, exist_ok=True)
    mlflow_registry.setup()
    with mlflow.start_run(run_name=f"{name}-{tag}") as run:
        yield StepRun(folder, run)
