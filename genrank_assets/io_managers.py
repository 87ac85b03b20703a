"""DuckDB warehouse IO manager: the stock pandas one, with whole-table replacement and fixed-size vectors.

The stock handler skips empty DataFrames (no table is created, so a downstream load fails even though an
empty reject table is a perfectly good answer), keeps an existing table's columns (it empties the table and
inserts, so a new column breaks the next run), and stores numpy vectors as variable-length lists. Here every
unpartitioned output replaces its table with the frame's own schema, and a column of equal-length float32
arrays becomes `FLOAT[dim]`.
"""
from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pandas as pd
from dagster import OutputContext
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasTypeHandler


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB warehouse; the message names it."""


def lock_holder(message: str) -> str:
    """'PID 123: genrank status --home ...' for DuckDB's "Conflicting lock is held in ... (PID 123)"."""
    match = re.search(r"\(PID (\d+)\)", message)
    if not match:
        return "another process"
    pid = match.group(1)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = ""
    return f"PID {pid}" + (f": {cmdline}" if cmdline else "")


class _WarehouseClient(DuckDbClient):
    """DuckDB client that waits up to `lock_timeout_s` for another process's lock, then names that process."""

    lock_timeout_s = 120.0

    @classmethod
    @contextmanager
    def connect(cls, context, _):
        database = context.resource_config["database"]
        config = {"custom_user_agent": "dagster", **context.resource_config["connection_config"]}
        deadline = time.monotonic() + float(context.resource_config.get("lock_timeout_s", cls.lock_timeout_s))
        delay = 0.1
        while True:
            try:
                conn = duckdb.connect(database=database, read_only=False, config=config)
                break
            except duckdb.IOException as err:
                if "lock" not in str(err).lower():
                    raise
                if time.monotonic() + delay > deadline:
                    raise WarehouseLockedError(
                        f"the warehouse {database} is held by {lock_holder(str(err))}; a reader (a notebook, "
                        "`genrank status`, a DuckDB shell) must close it before a materialisation can write"
                    ) from err
                time.sleep(delay)
                delay = min(2 * delay, 5.0)
        try:
            yield conn
        finally:
            conn.close()


def _vector_columns(df: pd.DataFrame) -> dict[str, int]:
    """Object columns holding float32 numpy vectors of one length -> that length."""
    out = {}
    for name in df.columns:
        if df[name].dtype != object or df.empty:
            continue
        first = df[name].iloc[0]
        if isinstance(first, np.ndarray) and first.dtype == np.float32 and first.ndim == 1:
            out[name] = int(first.shape[0])
    return out


class WarehousePandasTypeHandler(DuckDBPandasTypeHandler):
    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection):
        target = f"{table_slice.schema}.{table_slice.table}"
        if context.has_partition_key:
            super().handle_output(context, table_slice, obj, connection)
        else:
            connection.execute(f"create or replace table {target} as select * from obj")
            context.add_output_metadata({"dagster/row_count": len(obj), "dagster/storage_kind": "duckdb"})
        for column, dim in _vector_columns(obj).items():
            connection.execute(f'alter table {target} alter "{column}" type FLOAT[{dim}]')


class WarehouseIOManager(DuckDBIOManager):
    """The genrank DuckDB warehouse (one file under GENRANK_HOME)."""

    # How long a write waits for a reader's lock before it fails naming the reader.
    lock_timeout_s: float = 120.0

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [WarehousePandasTypeHandler()]

    @staticmethod
    def default_load_type():
        return pd.DataFrame

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=_WarehouseClient(), database=self.database, schema=self.schema_,
            type_handlers=self.type_handlers(), default_load_type=self.default_load_type(),
            io_manager_name="WarehouseIOManager",
        )
