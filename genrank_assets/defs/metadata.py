"""Reading back what an asset's last materialisation recorded (its checks judge the run's own settings)."""
from __future__ import annotations

import dagster as dg


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    """The plain values of the latest materialisation's metadata of `key`; {} when there is none."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
