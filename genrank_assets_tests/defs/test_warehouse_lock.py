"""A materialisation that finds the warehouse held by a reader fails naming that reader, after a bounded wait."""

import dagster as dg
import pandas as pd

from genrank_assets.defs.io_managers import WarehouseIOManager, lock_holder
from genrank_assets_tests.processes import duckdb_holder


@dg.asset
def small_table() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2]})


def test_write_blocked_by_a_reader_names_the_reader(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    with duckdb_holder(db) as holder:
        result = dg.materialize(
            [small_table], raise_on_error=False,
            resources={"io_manager": WarehouseIOManager(database=str(db), schema="g", lock_timeout_s=1.0)},
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert f"the warehouse {db} is held by PID {holder.pid}: " in message
    assert "genrank-reader-marker" in message  # the holder's command line
    # Once the reader is gone, the same write goes through.
    dg.materialize([small_table], resources={"io_manager": WarehouseIOManager(database=str(db), schema="g")})


def test_lock_holder_without_a_pid():
    assert lock_holder("IO Error: Could not set lock on file") == "another process"
