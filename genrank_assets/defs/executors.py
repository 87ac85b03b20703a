"""Where a run's steps execute: the `genrank` executor of the Definitions and of every job.

One executor, chosen per run by config (`execution: {config: {<engine>: {...}}}`), each engine Dagster's own:

- `multiprocess` (the default): Dagster's multiprocess executor. Steps that do not depend on each other run at
  the same time, each in its own process, at most `max_concurrent` at once (0 = one per core). Processes are
  forked from a forkserver that has imported the code location once (`genrank_assets.definitions`, ~5 s on 2
  cores), instead of spawning a fresh interpreter per step. Steps that train on the compute device (the ops
  tagged with `resources.GPU_TAGS`) run one at a time on a machine with a GPU, where two trainers would share
  its memory; on a CPU-only machine they run side by side (each uses its own torch threads, one on 2 cores:
  the served models and the cross-fitting folds' train two at a time).
- `in_process`: every step in the run's process, one after another (`dg.materialize`, debugging).
- `dask`: dagster-dask's executor on a dask.distributed cluster: `{cluster: {existing: {address:
  tcp://HOST:8786}}}` for a scheduler whose workers are already up (`dask scheduler`, `dask worker`), or
  `{cluster: {local: {n_workers: 2, ...}}}` (LocalCluster arguments) for one started for the run. Every worker
  imports the code location and needs the run's environment (GENRANK_HOME, DAGSTER_HOME, GENRANK_WAREHOUSE) and
  the same folders; with workers on other machines use GENRANK_WAREHOUSE=parquet on a shared volume and run
  storage every machine reaches (PostgreSQL, the team stack).

Multiple processes need a persistent Dagster instance (DAGSTER_HOME), as `dagster asset materialize`, the UI
and the daemon have; `dg.materialize` (an ephemeral instance, the tests) runs in process whatever this says.
"""
from __future__ import annotations

import dagster as dg
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
)

from genrank_assets.defs.resources import GPU_TAGS

# The module each step process would otherwise import on its own; the forkserver imports it once per run.
PRELOAD_MODULES = ["genrank_assets.definitions"]
# At most one training step at a time: they are the ops carrying GPU_TAGS (any value of its key).
TRAINING_LIMITS = [{"key": key, "limit": 1} for key in GPU_TAGS]

DASK_CONFIG = dg.Field(
    {
        "cluster": dg.Field(
            dg.Selector({
                "existing": dg.Field({"address": dg.StringSource}, description="A running dask scheduler."),
                "local": dg.Field(dg.Permissive(), description="dask.distributed.LocalCluster arguments."),
            }),
            description="The dask.distributed cluster the steps run on.",
        ),
    },
    description="Each step as a task of a dask.distributed cluster (dagster-dask).",
)

ENGINES = ("multiprocess", "in_process", "dask")


def multiprocess_config(config: dict, gpu: bool | None = None) -> dict:
    """The multiprocess executor's config with genrank's defaults where the run config leaves them out. ``gpu``:
    whether this machine has a CUDA device (None: ask torch); the one-trainer limit holds only there."""
    out = dict(config)
    out.setdefault("start_method", {"forkserver": {"preload_modules": PRELOAD_MODULES}})
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    if not out.get("tag_concurrency_limits") and gpu:
        out["tag_concurrency_limits"] = TRAINING_LIMITS
    return out


def _requirements(config: dict) -> list:
    return [] if "in_process" in config else dg.multiple_process_executor_requirements()


@dg.executor(
    name="genrank",
    config_schema=dg.Field(
        dg.Selector({"multiprocess": MULTI_PROC_CONFIG, "in_process": IN_PROC_CONFIG, "dask": DASK_CONFIG}),
        default_value={"multiprocess": {}},
    ),
    requirements=_requirements,
)
def genrank_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """multiprocess (default) | in_process | dask: see the module docstring."""
    ((engine, config),) = init_context.executor_config.items()
    if engine == "multiprocess":
        return _core_multiprocess_executor_creation(multiprocess_config(config))
    if engine == "in_process":
        return _core_in_process_executor_creation(config)
    # Imported here: dask.distributed adds ~1.5 s to every process that loads the code location.
    from dagster_dask.executor import DaskExecutor

    ((cluster_type, cluster_config),) = config["cluster"].items()
    return DaskExecutor(cluster_type, cluster_config)
