"""The warehouse IO managers: one DuckDB file (the default), or one Parquet file per table for steps that run in
several processes or on several machines (`GENRANK_WAREHOUSE=parquet`, `warehouse_io_manager`).

The DuckDB one is the stock pandas IO manager, with whole-table replacement and fixed-size vectors.

The stock handler skips empty DataFrames (no table is created, so a downstream load fails even though an
empty reject table is a perfectly good answer), keeps an existing table's columns (it empties the table and
inserts, so a new column breaks the next run), and stores numpy vectors as variable-length lists. Here every
unpartitioned output replaces its table with the frame's own schema, and a column of equal-length float32
arrays becomes `FLOAT[dim]`.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dagster import OutputContext
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasTypeHandler
from pydantic import Field

import genrank_assets.paths as paths

# How long a load or store waits for another process's lock on a DuckDB file before it fails naming that process.
LOCK_TIMEOUT_S = 120.0


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


def connect_waiting(database: str, timeout_s: float, config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """A read-write connection to a DuckDB file, waiting up to `timeout_s` for another process's lock (with
    steps in several processes, each holds the file only while it loads or stores one table), then failing
    with a WarehouseLockedError naming the process that holds it."""
    config = {"custom_user_agent": "dagster", **(config or {})}
    deadline = time.monotonic() + float(timeout_s)
    delay = 0.1
    while True:
        try:
            return duckdb.connect(database=database, read_only=False, config=config)
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


def table_name(asset_key: dg.AssetKey) -> str:
    """The warehouse table of an asset: its name, with its key prefix joined by ``__`` (``fold_0/song_vectors`` ->
    ``fold_0__song_vectors``), so that a fold's copy of an asset never overwrites the served one's table."""
    return "__".join(asset_key.path)


class _PrefixedTablesIOManager(DbIOManager):
    """Dagster's DbIOManager names a table by the key's last part (and takes the prefix as the schema only when no
    schema is configured); here the whole key names it (``table_name``), in the configured schema."""

    def _get_table_slice(self, context, output_context):
        table_slice = super()._get_table_slice(context, output_context)
        return table_slice._replace(table=table_name(context.asset_key)) if context.has_asset_key else table_slice


class _WarehouseClient(DuckDbClient):
    """DuckDB client that waits up to `lock_timeout_s` for another process's lock, then names that process."""

    lock_timeout_s = LOCK_TIMEOUT_S

    @classmethod
    @contextmanager
    def connect(cls, context, _):
        conn = connect_waiting(context.resource_config["database"],
                               context.resource_config.get("lock_timeout_s", cls.lock_timeout_s),
                               context.resource_config["connection_config"])
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


# --- batched float32 reads: a wide numeric table (the ranking features) without the whole-frame fetch ---------

# Input metadata of a batched read (`dg.AssetIn(metadata=batched_read(...))`): the rows kept, the batch size.
BATCHED_READ_KEY = "genrank/batched_read"
BATCH_ROWS = 65_536


def batched_read(splits: Sequence[str] | None = None, batch_rows: int = BATCH_ROWS) -> dict:
    """Input metadata that loads a table in Arrow record batches into preallocated columns, floating-point
    columns as float32, and only the rows of ``splits`` (a ``split`` column; None: every row). DuckDB's
    ``fetchdf`` of a wide table peaks at ~2.3x its float64 frame; this one at the float32 frame plus a batch."""
    return {BATCHED_READ_KEY: {"splits": list(splits) if splits is not None else None, "batch_rows": int(batch_rows)}}


def read_batched(con: duckdb.DuckDBPyConnection, select: str, splits: Sequence[str] | None = None,
                 batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """The rows of ``select`` (those of ``splits`` when given), read ``batch_rows`` at a time into one array per
    column: floating-point columns float32, integers and booleans as they are, strings as pandas Categoricals
    (``string_codes``), anything else as objects."""
    where = ""
    if splits is not None:
        where = " where split in (" + ", ".join("'" + str(s).replace("'", "''") + "'" for s in splits) + ")"
    query = f"select * from ({select}) as t{where}"
    ((n,),) = con.execute(f"select count(*) from ({query}) as c").fetchall()
    reader = con.sql(query).fetch_record_batch(batch_rows)
    columns: dict[str, np.ndarray] = {}
    strings: dict[str, dict[str, int]] = {}  # string column -> its values so far, each with its code
    for field in reader.schema:
        kind = field.type
        if str(kind) in ("double", "float", "halffloat"):
            columns[field.name] = np.empty(n, dtype=np.float32)
        elif str(kind) in ("bool",) or str(kind).startswith(("int", "uint")):
            columns[field.name] = np.empty(n, dtype=kind.to_pandas_dtype())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            columns[field.name], strings[field.name] = np.empty(n, dtype=np.int32), {}
        else:
            columns[field.name] = np.empty(n, dtype=object)
    at = 0
    for batch in reader:
        size = batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns):
            if name in strings:
                columns[name][at:at + size] = string_codes(column, strings[name])
            else:
                columns[name][at:at + size] = column.to_numpy(zero_copy_only=False)
        at += size
    if at != n:
        raise RuntimeError(f"read {at} rows, expected {n}: the table changed while it was read")
    for name, values in strings.items():
        columns[name] = sorted_categorical(columns[name], values)
    return pd.DataFrame(columns, copy=False)


def string_codes(column: pa.Array, values: dict[str, int]) -> np.ndarray:
    """The codes of a string column's values in ``values`` (value -> code; a value first seen here gets the next
    code), -1 for null. A batch is dictionary-encoded, so each distinct string becomes a Python str once per
    batch, not once per row (the object columns of a ranking table were ~45% of its memory)."""
    encoded = column.dictionary_encode()
    lookup = np.array([values.setdefault(v, len(values)) for v in encoded.dictionary.to_pylist()] + [-1],
                      dtype=np.int32)
    return lookup[pc.fill_null(encoded.indices, len(lookup) - 1).to_numpy()]


def sorted_categorical(codes: np.ndarray, values: dict[str, int]) -> pd.Categorical:
    """The Categorical of ``codes`` into ``values`` (value -> code), its categories sorted: sorting or comparing it
    orders rows as its strings would (ranking.ltr.tables sorts by playlist_id's codes)."""
    categories = np.array(list(values), dtype=object)
    order = np.argsort(categories, kind="stable")
    recode = np.empty(len(order) + 1, dtype=np.int32)  # the last slot: null (-1) stays -1
    recode[order], recode[-1] = np.arange(len(order), dtype=np.int32), -1
    return pd.Categorical.from_codes(recode[codes], categories=pd.Index(categories[order], dtype=object),
                                     validate=False)


class WarehousePandasTypeHandler(DuckDBPandasTypeHandler):
    def load_input(self, context: dg.InputContext, table_slice: TableSlice, connection) -> pd.DataFrame:
        batched = (context.definition_metadata or {}).get(BATCHED_READ_KEY)
        if batched is None or table_slice.partition_dimensions:
            return super().load_input(context, table_slice, connection)
        return read_batched(connection, DuckDbClient.get_select_statement(table_slice), batched["splits"],
                            batched["batch_rows"])

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
    lock_timeout_s: float = LOCK_TIMEOUT_S

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [WarehousePandasTypeHandler()]

    @staticmethod
    def default_load_type():
        return pd.DataFrame

    def create_io_manager(self, context) -> DbIOManager:
        return _PrefixedTablesIOManager(
            db_client=_WarehouseClient(), database=self.database, schema=self.schema_,
            type_handlers=self.type_handlers(), default_load_type=self.default_load_type(),
            io_manager_name="WarehouseIOManager",
        )


# --- the Parquet store: one file per table, for steps in several processes or on several machines ------------

PARQUET_ARRAYS_KEY = "genrank.arrays"  # Parquet key-value metadata: JSON {column: dim} of the FLOAT[dim] columns


def _array_casts(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """`replace (cast("v" as FLOAT[16]) as "v")` for the fixed-size vector columns a Parquet file records
    (Parquet has lists only; the metadata keeps the length, so a read gives the DuckDB store's FLOAT[dim])."""
    rows = con.execute("select value from parquet_kv_metadata(?) where decode(key) = ?",
                       [str(path), PARQUET_ARRAYS_KEY]).fetchall()
    dims = json.loads(rows[0][0].decode()) if rows else {}
    casts = ", ".join(f'cast("{c}" as FLOAT[{int(d)}]) as "{c}"' for c, d in dims.items())
    return f"replace ({casts})" if casts else ""


def _select_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    quoted = str(path).replace("'", "''")
    return f"select * {_array_casts(con, path)} from read_parquet('{quoted}')"


class ParquetWarehouseIOManager(dg.ConfigurableIOManager):
    """The warehouse as one Parquet file per table, `<root>/<schema>/<table>.parquet`, on a folder every step's
    process can reach (a shared volume when steps run on several machines).

    A table is written to a temporary file beside its place and renamed over it, so a reader sees the old table
    or the new one, never half a file, and no step holds a lock while it computes: steps in separate processes
    store and load at once. Types are DuckDB's (a frame goes through an in-memory DuckDB on both ways, and
    FLOAT[dim] vectors keep their length), so the frames a step loads equal the DuckDB store's.

    `catalog` (default: GENRANK_HOME/warehouse.duckdb) is a DuckDB file of views over the Parquet files, for
    what reads the warehouse by SQL: the CLI, a notebook, and the ingest, which reads its ledger
    `ingested_batches` from it. Each store replaces one view, holding that file for milliseconds through the
    same bounded lock wait as the DuckDB store. "" leaves it out (then the ingest finds no ledger)."""

    root: str
    schema_: str = Field(default="genrank", alias="schema")
    catalog: str = ""
    lock_timeout_s: float = LOCK_TIMEOUT_S

    def table_path(self, asset_key: dg.AssetKey) -> Path:
        return Path(self.root) / self.schema_ / f"{table_name(asset_key)}.parquet"

    def _refuse_partitions(self, context) -> None:
        if context.has_asset_partitions:
            raise ValueError(f"{context.asset_key.to_user_string()}: the Parquet warehouse stores whole tables; "
                             "partitioned assets need the duckdb warehouse (GENRANK_WAREHOUSE=duckdb)")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        self._refuse_partitions(context)
        name = context.asset_key.to_user_string()
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{name}: the warehouse stores pandas DataFrames, got {type(obj).__name__}")
        path = self.table_path(context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        dims = _vector_columns(obj)
        con = duckdb.connect()
        try:
            con.register("obj", obj)
            con.execute("create table t as select * from obj")
            for column, dim in dims.items():
                con.execute(f'alter table t alter "{column}" type FLOAT[{dim}]')
            metadata = str(json.dumps(dims)).replace("'", "''")
            con.execute(f"copy t to '{tmp}' (format parquet, kv_metadata {{'{PARQUET_ARRAYS_KEY}': '{metadata}'}})")
            os.replace(tmp, path)
        finally:
            con.close()
            tmp.unlink(missing_ok=True)
        if self.catalog:
            self._publish_view(path)
        context.add_output_metadata({"dagster/row_count": len(obj), "dagster/storage_kind": "parquet",
                                     "path": dg.MetadataValue.path(str(path))})

    def _publish_view(self, path: Path) -> None:
        con = connect_waiting(self.catalog, self.lock_timeout_s)
        try:
            con.execute(f'create schema if not exists "{self.schema_}"')
            kind = con.execute("select table_type from information_schema.tables where table_schema = ? and "
                               "table_name = ?", [self.schema_, path.stem]).fetchall()
            if kind and kind[0][0] != "VIEW":
                raise ValueError(f"the catalog {self.catalog} holds a table {self.schema_}.{path.stem} of the duckdb "
                                 "warehouse; give the Parquet warehouse its own GENRANK_HOME (or catalog)")
            con.execute(f'create or replace view "{self.schema_}"."{path.stem}" as {_select_parquet(con, path)}')
        finally:
            con.close()

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        self._refuse_partitions(context)
        path = self.table_path(context.asset_key)
        if not path.is_file():
            raise FileNotFoundError(f"{context.asset_key.to_user_string()}: no table at {path}; materialise it first")
        batched = (context.definition_metadata or {}).get(BATCHED_READ_KEY)
        con = duckdb.connect()
        try:
            if batched is not None:
                return read_batched(con, _select_parquet(con, path), batched["splits"], batched["batch_rows"])
            return con.execute(_select_parquet(con, path)).fetchdf()
        finally:
            con.close()


# --- which store -----------------------------------------------------------------------------------------------

WAREHOUSE_ENV = "GENRANK_WAREHOUSE"
WAREHOUSE_KINDS = ("duckdb", "parquet")
DEFAULT_WAREHOUSE = "duckdb"  # one file, the simplest thing on one machine; parquet for steps on several


def warehouse_kind(kind: str | None = None) -> str:
    """`kind`, else GENRANK_WAREHOUSE, else duckdb; anything else is an error naming the variable."""
    value = (kind if kind not in (None, "") else os.environ.get(WAREHOUSE_ENV, "")).strip().lower() or DEFAULT_WAREHOUSE
    if value not in WAREHOUSE_KINDS:
        raise ValueError(f"{WAREHOUSE_ENV}={value!r}: the warehouse is one of {list(WAREHOUSE_KINDS)}")
    return value


def warehouse_io_manager(home: Path, kind: str | None = None, schema: str = "genrank") -> dg.IOManagerDefinition:
    """The warehouse IO manager of one GENRANK_HOME: the DuckDB file, or Parquet files under home/warehouse/
    with the DuckDB file as their catalog of views."""
    database = str(paths.warehouse_path(home))
    if warehouse_kind(kind) == "parquet":
        return ParquetWarehouseIOManager(root=str(Path(home) / "warehouse"), schema=schema, catalog=database)
    return WarehouseIOManager(database=database, schema=schema)
