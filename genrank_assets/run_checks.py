"""Check a run's whole configuration before its first step, so that a bad value fails the run at once, naming
its key (`ops.ranker_model.config.batch_size: ...`), instead of after hours of upstream training.

Dagster checks the run config's types when the run starts, but the values (`batch_size: 0`, `levels: [0]`) are
checked only when a step builds its `dg.Config`, i.e. when that step runs. Here every op's `dg.Config` of the run
is built up front: their pydantic validators hold the rules (most of them call the plain `ml/` checks, so each
rule is written once). `definitions.py` registers the config class of every asset and check from the function
annotations; the resources call `check_run_config` when they are set up for a run, which the in-process
executor does before the first step (the compute resource also resolves the device there, once per run).
"""
from __future__ import annotations

import typing

import dagster as dg
import pydantic

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


def config_errors(run_config: dict | None) -> list[str]:
    """One line per invalid value in the run config's `ops:` section."""
    errors = []
    for op, body in ((run_config or {}).get("ops") or {}).items():
        cls = _CONFIG_CLASSES.get(op)
        if cls is None:
            continue  # not a genrank op with config: Dagster's own schema check covers it
        try:
            cls(**((body or {}).get("config") or {}))
        except pydantic.ValidationError as err:
            for e in err.errors():
                where = ".".join(str(p) for p in e["loc"])
                errors.append(f"ops.{op}.config{'.' + where if where else ''}: {e['msg']}")
    return errors


def check_run_config(run_config: dict | None) -> None:
    errors = config_errors(run_config)
    if errors:
        raise dg.DagsterInvalidConfigError(
            "invalid run config (nothing was run):\n  " + "\n  ".join(errors), [], run_config)
