"""DuckDB warehouse IO manager: the stock pandas one, with whole-table replacement and fixed-size vectors.

The stock handler skips empty DataFrames (no table is created, so a downstream load fails even though an
empty reject table is a perfectly good answer), keeps an existing table's columns (it empties the table and
inserts, so a new column breaks the next run), and stores numpy vectors as variable-length lists. Here every
unpartitioned output replaces its table with the frame's own schema, and a column of equal-length float32
arrays becomes `FLOAT[dim]`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from dagster import OutputContext
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb_pandas import DuckDBPandasTypeHandler


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

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [WarehousePandasTypeHandler()]

    @staticmethod
    def default_load_type():
        return pd.DataFrame
