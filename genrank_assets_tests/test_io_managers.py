"""The DuckDB warehouse IO manager on a real file: FLOAT[dim] vectors, empty tables, tables replaced whole."""
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from genrank_assets.io_managers import WarehouseIOManager


def warehouse(path: Path) -> dict:
    return {"io_manager": WarehouseIOManager(database=str(path), schema="genrank")}


def column_types(path: Path, table: str) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("select column_name, data_type from information_schema.columns "
                           "where table_schema = 'genrank' and table_name = ? order by ordinal_position", [table]).fetchall()
    finally:
        con.close()
    return dict(rows)


def read(path: Path, table: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"select * from genrank.{table}").fetchdf()
    finally:
        con.close()


def materialize_and_load(asset: dg.AssetsDefinition, db: Path) -> tuple[dg.ExecuteInProcessResult, pd.DataFrame]:
    """Materialise `asset` and a downstream asset; return the run and the frame the downstream one was given."""
    seen = {}

    @dg.asset(ins={"upstream": dg.AssetIn(asset.key)})
    def downstream(upstream: pd.DataFrame) -> None:
        seen["frame"] = upstream

    result = dg.materialize([asset, downstream], resources=warehouse(db))
    assert result.success
    return result, seen["frame"]


@pytest.fixture()
def db(tmp_path) -> Path:
    return tmp_path / "warehouse.duckdb"


VECTORS = np.arange(12, dtype=np.float32).reshape(3, 4) / 7


def test_float32_vectors_round_trip_as_fixed_size_arrays(db):
    @dg.asset
    def vectors() -> pd.DataFrame:
        return pd.DataFrame({"song_id": ["a", "b", "c"], "count": [3, 2, 1], "vector": list(VECTORS)})

    result, back = materialize_and_load(vectors, db)
    assert column_types(db, "vectors") == {"song_id": "VARCHAR", "count": "BIGINT", "vector": "FLOAT[4]"}
    assert back.song_id.tolist() == ["a", "b", "c"] and back["count"].tolist() == [3, 2, 1]
    np.testing.assert_array_equal(np.stack([np.asarray(v, dtype=np.float32) for v in back.vector]), VECTORS)
    meta = result.asset_materializations_for_node("vectors")[0].metadata
    assert meta["dagster/row_count"].value == 3


def test_other_list_columns_stay_lists(db):
    @dg.asset
    def corpus() -> pd.DataFrame:
        # Songs of unequal length, and float64 arrays: neither is a vector column.
        return pd.DataFrame({"playlist_id": ["p", "q"], "song_ids": [["s1", "s2"], ["s3"]],
                             "weights": [np.array([0.5, 1.0]), np.array([2.0, 3.0])]})

    assert dg.materialize([corpus], resources=warehouse(db)).success
    types = column_types(db, "corpus")
    assert types["song_ids"] == "VARCHAR[]" and types["weights"] == "DOUBLE[]"
    assert read(db, "corpus").song_ids.map(list).tolist() == [["s1", "s2"], ["s3"]]


def test_empty_frame_makes_an_empty_table_downstream_can_read(db):
    @dg.asset
    def ingest_rejects() -> pd.DataFrame:
        return pd.DataFrame({"file": pd.Series(dtype=str), "line_no": pd.Series(dtype="int64")})

    result, back = materialize_and_load(ingest_rejects, db)
    assert list(back.columns) == ["file", "line_no"] and len(back) == 0
    assert list(column_types(db, "ingest_rejects")) == ["file", "line_no"]
    assert result.asset_materializations_for_node("ingest_rejects")[0].metadata["dagster/row_count"].value == 0


def test_a_new_run_replaces_the_table_with_its_own_columns(db):
    def version(frame: pd.DataFrame):
        @dg.asset(name="songs")
        def songs() -> pd.DataFrame:
            return frame

        return songs

    first = pd.DataFrame({"song_id": ["a", "b", "c"], "singer": ["x", "y", "z"]})
    assert dg.materialize([version(first)], resources=warehouse(db)).success
    # Fewer rows, a column added and one changing type: the stock pandas handler fails here ("2 columns but 3").
    second = pd.DataFrame({"song_id": ["a"], "song_name": ["one"], "singer": [7],
                           "vector": [np.ones(2, dtype=np.float32)]})
    assert dg.materialize([version(second)], resources=warehouse(db)).success
    assert column_types(db, "songs") == {"song_id": "VARCHAR", "song_name": "VARCHAR", "singer": "BIGINT",
                                         "vector": "FLOAT[2]"}
    back = read(db, "songs")
    assert back.song_id.tolist() == ["a"] and back.song_name.tolist() == ["one"]
