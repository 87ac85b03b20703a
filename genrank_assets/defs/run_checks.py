"""Check a run's whole configuration before its first step, so that a bad value fails the run at once, naming
its key (`ops.ranker_model.config.batch_size: ...`), instead of after hours of upstream training.

Dagster checks the run config's types when the run starts, but the values (`batch_size: 0`, `levels: [0]`) are
checked only when a step builds its `dg.Config`, i.e. when that step runs. Here every op's `dg.Config` of the run
is built up front: their pydantic validators hold the rules (most of them call the plain `ml/` checks, so each
rule is written once). `definitions.py` registers the config class of every asset and check from the function
annotations; the resources call `check_run_config` when they are set up for a run, which the in-process
executor does before the first step (the compute resource also resolves the device there, once per run).

An asset config with its own ``device`` / ``precision`` (resources.DeviceConfig) is also resolved here against
the compute resource's settings, so ``ops.tiger_model.config.device: cuda:1`` on a machine without a second GPU
fails the run at once, naming that key. The in-process and multiprocess executors run every step on this
machine, so this machine is the one to ask; under an executor whose steps run on other machines (`dask`) only
the values' format is checked here, and the asset's step resolves its device where it runs.
"""
from __future__ import annotations

import typing

import dagster as dg
import pydantic

from genrank_assets.ml.compute import resolve_compute

_CONFIG_CLASSES: dict[str, type[dg.Config]] = {}


def register_config_classes(nodes) -> dict[str, type[dg.Config]]:
    """Record the `config` parameter's class of every asset / asset check op in `nodes`; the mapping."""
    for node in nodes:
        op = node.op if isinstance(node, dg.AssetsDefinition) else node.node_def
        fn = op.compute_fn.decorated_fn
        cls = typing.get_type_hints(fn).get("config")
        if isinstance(cls, type) and issubclass(cls, dg.Config):
            _CONFIG_CLASSES[op.name] = cls
    return dict(_CONFIG_CLASSES)


def config_errors(run_config: dict | None, compute: dict | None = None) -> list[str]:
    """One line per invalid value in the run config's `ops:` section. ``compute``: the compute resource's
    settings (device, precision, threads, processes) that an asset's own device is resolved against; None =
    the run config's `resources.compute.config` (what is not there: resolve_compute's defaults)."""
    if compute is None:
        compute = ((((run_config or {}).get("resources") or {}).get("compute") or {}).get("config") or {})
    errors = []
    for op, body in ((run_config or {}).get("ops") or {}).items():
        cls = _CONFIG_CLASSES.get(op)
        if cls is None:
            continue  # not a genrank op with config: Dagster's own schema check covers it
        try:
            cfg = cls(**((body or {}).get("config") or {}))
        except pydantic.ValidationError as err:
            for e in err.errors():
                where = ".".join(str(p) for p in e["loc"])
                errors.append(f"ops.{op}.config{'.' + where if where else ''}: {e['msg']}")
            continue
        device, precision = getattr(cfg, "device", ""), getattr(cfg, "precision", "")
        if (device or precision) and _steps_run_here(run_config):
            try:  # does this machine have the asset's own device, and does its precision fit it?
                resolve_compute(**compute, asset_device=device, asset_precision=precision, where=f"ops.{op}.config")
            except ValueError as err:
                errors.append(str(err))
    return errors


def _steps_run_here(run_config: dict | None) -> bool:
    """Whether the run's executor runs its steps on this machine (no `execution` config: the default executor)."""
    engines = set((((run_config or {}).get("execution") or {}).get("config") or {}))
    return engines <= {"in_process", "multiprocess"}


def check_run_config(run_config: dict | None, compute: dict | None = None) -> None:
    errors = config_errors(run_config, compute)
    if errors:
        raise dg.DagsterInvalidConfigError(
            "invalid run config (nothing was run):\n  " + "\n  ".join(errors), [], run_config)
