"""The warehouse IO managers on real files: FLOAT[dim] vectors, empty tables, tables replaced whole; the Parquet
store loads what the DuckDB store loads; writers in several processes at once."""
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

import genrank_assets.paths as paths
from genrank_assets.defs.io_managers import (
    WAREHOUSE_ENV,
    ParquetWarehouseIOManager,
    WarehouseIOManager,
    batched_read,
    warehouse_io_manager,
)


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

    dg.materialize([corpus], resources=warehouse(db))
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
    dg.materialize([version(first)], resources=warehouse(db))
    # Fewer rows, a column added and one changing type: the stock pandas handler fails here ("2 columns but 3").
    second = pd.DataFrame({"song_id": ["a"], "song_name": ["one"], "singer": [7],
                           "vector": [np.ones(2, dtype=np.float32)]})
    dg.materialize([version(second)], resources=warehouse(db))
    assert column_types(db, "songs") == {"song_id": "VARCHAR", "song_name": "VARCHAR", "singer": "BIGINT",
                                         "vector": "FLOAT[2]"}
    back = read(db, "songs")
    assert back.song_id.tolist() == ["a"] and back.song_name.tolist() == ["one"]


# --- the Parquet store, and both stores with writers in several processes ------------------------------------

def parquet_store(home: Path) -> dict:
    return {"io_manager": warehouse_io_manager(home, "parquet")}


def mixed_frame() -> pd.DataFrame:
    """Every kind of column the pipeline stores: strings, ints, floats with NaN, tz-aware times, lists, vectors."""
    return pd.DataFrame({
        "song_id": ["a", "b", "c"], "count": [3, 2, 1], "score": [0.5, float("nan"), 2.0],
        "at": pd.to_datetime(["2024-06-01 10:00", "2024-06-02 11:30", "2024-06-03 00:00"]).tz_localize("UTC"),
        "song_ids": [["s1", "s2"], ["s3"], []], "vector": list(VECTORS),
    })


def test_parquet_store_loads_what_the_duckdb_store_loads(tmp_path):
    """The same frames through both stores: the loaded frames are equal, and the catalog's view has FLOAT[4]."""
    @dg.asset
    def vectors() -> pd.DataFrame:
        return mixed_frame()

    _, from_duckdb = materialize_and_load(vectors, tmp_path / "duckdb_warehouse.duckdb")
    seen = {}

    @dg.asset(ins={"upstream": dg.AssetIn(vectors.key)})
    def downstream(upstream: pd.DataFrame) -> None:
        seen["frame"] = upstream

    home = tmp_path / "parquet_home"
    result = dg.materialize([vectors, downstream], resources=parquet_store(home))
    pd.testing.assert_frame_equal(seen["frame"], from_duckdb)
    assert (home / "warehouse" / "genrank" / "vectors.parquet").is_file()
    catalog = paths.warehouse_path(home)
    assert column_types(catalog, "vectors")["vector"] == "FLOAT[4]"
    pd.testing.assert_frame_equal(read(catalog, "vectors"), from_duckdb)
    meta = result.asset_materializations_for_node("vectors")[0].metadata
    assert meta["dagster/row_count"].value == 3 and meta["dagster/storage_kind"].value == "parquet"


def test_parquet_store_empty_frame_and_replacement(tmp_path):
    frames = [pd.DataFrame({"file": pd.Series(dtype=str), "line_no": pd.Series(dtype="int64")}),
              pd.DataFrame({"file": ["x"], "reason": ["empty_id"]})]
    for frame in frames:
        @dg.asset(name="ingest_rejects")
        def ingest_rejects() -> pd.DataFrame:
            return frame  # noqa: B023 - materialised before the next iteration rebinds it

        dg.materialize([ingest_rejects], resources=parquet_store(tmp_path))
        pd.testing.assert_frame_equal(read(paths.warehouse_path(tmp_path), "ingest_rejects"), frame)
    assert not list((tmp_path / "warehouse" / "genrank").glob(".*tmp"))  # no temporary file left behind


def test_parquet_store_errors_name_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv(WAREHOUSE_ENV, "sqlite")
    with pytest.raises(ValueError, match="GENRANK_WAREHOUSE='sqlite'"):
        warehouse_io_manager(tmp_path)
    monkeypatch.setenv(WAREHOUSE_ENV, "Parquet")
    assert isinstance(warehouse_io_manager(tmp_path), ParquetWarehouseIOManager)

    @dg.asset(name="raw_songs")
    def raw_songs() -> pd.DataFrame:
        return pd.DataFrame({"song_id": ["a"]})

    @dg.asset(ins={"raw_songs": dg.AssetIn("raw_songs")})
    def reader(raw_songs: pd.DataFrame) -> None:
        pass

    with pytest.raises(FileNotFoundError, match="raw_songs: no table at .*raw_songs.parquet"):
        dg.materialize([raw_songs.to_source_asset(), reader], resources=parquet_store(tmp_path))
    # A home whose DuckDB file holds the duckdb store's tables is not silently turned into views.
    dg.materialize([raw_songs], resources={"io_manager": warehouse_io_manager(tmp_path, "duckdb")})
    with pytest.raises(ValueError, match="holds a table genrank.raw_songs of the duckdb warehouse"):
        dg.materialize([raw_songs], resources=parquet_store(tmp_path))


WRITER = """
import sys
import dagster as dg
import pandas as pd
from pathlib import Path
from genrank_assets.defs.io_managers import warehouse_io_manager

home, kind, name, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
store = {"io_manager": warehouse_io_manager(home, kind)}
for i in range(n):
    @dg.asset(name=f"{name}_{i}")
    def table() -> pd.DataFrame:
        return pd.DataFrame({"writer": [name] * 2000, "i": range(2000)})

    dg.materialize([table], resources=store)
print("ok")
"""


@pytest.mark.services
@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_writers_in_separate_processes_all_land(tmp_path, kind):
    """Three processes store tables at the same moment (as parallel steps do): with the DuckDB file each waits
    for the others' lock, with Parquet each writes its own file (and the catalog, briefly); every table lands."""
    import subprocess
    import sys

    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), kind, f"w{k}", "6"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    catalog = paths.warehouse_path(tmp_path)
    for k in range(3):
        for i in range(6):
            back = read(catalog, f"w{k}_{i}")
            assert len(back) == 2000 and set(back.writer) == {f"w{k}"}


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_batched_read_gives_the_rows_of_its_splits_as_float32_columns(tmp_path, kind):
    """batched_read: several small batches, only the splits asked for, floats as float32 (the same values to
    float32 precision), ints and booleans as they were, strings as Categoricals of their sorted values (each batch
    brings new ones; nulls stay missing); a fold's prefixed key is its own table."""
    rng = np.random.default_rng(0)
    n = 1000
    frame = pd.DataFrame({"split": rng.choice(["holdout", "val", "test"], n), "playlist_id": [f"p{i // 7}" for i in range(n)],
                          "rank": rng.integers(0, 50, n), "proposed": rng.random(n) < 0.5,
                          "score": rng.normal(size=n), "label": (rng.random(n) < 0.1).astype(np.float64),
                          "note": [None if i % 5 == 0 else f"n{i % 13}" for i in range(n)]})
    frame.loc[3, "score"] = np.nan
    seen = {}

    @dg.asset(key=["fold_1", "features"])
    def features() -> pd.DataFrame:
        return frame

    @dg.asset(ins={"whole": dg.AssetIn(features.key)})
    def plain(whole: pd.DataFrame) -> None:
        seen["whole"] = whole

    @dg.asset(ins={"training": dg.AssetIn(features.key, metadata=batched_read(["holdout", "val"], batch_rows=64))})
    def batched(training: pd.DataFrame) -> None:
        seen["training"] = training

    resources = parquet_store(tmp_path / "home") if kind == "parquet" else warehouse(tmp_path / "w.duckdb")
    dg.materialize([features, plain, batched], resources=resources)
    expected = frame[frame["split"].isin(["holdout", "val"])].reset_index(drop=True)
    got = seen["training"]
    assert len(got) == len(expected) and set(got["split"]) == {"holdout", "val"}
    assert got["score"].dtype == np.float32 and got["label"].dtype == np.float32
    assert got["rank"].dtype == np.int64 and got["proposed"].dtype == bool
    for column in ("split", "playlist_id", "note"):  # sorting the codes sorts the strings
        assert isinstance(got[column].dtype, pd.CategoricalDtype), column
        assert got[column].cat.categories.is_monotonic_increasing and not got[column].cat.categories.hasnans
    assert set(got["playlist_id"].cat.categories) == set(expected["playlist_id"])  # only the values read
    order = got.sort_values(["playlist_id", "score"], kind="stable").index
    want = expected.sort_values(["playlist_id", "score"], kind="stable").reset_index(drop=True)
    got = got.loc[order].reset_index(drop=True)
    np.testing.assert_array_equal(got["score"].to_numpy(), want["score"].to_numpy().astype(np.float32))
    for column in ("rank", "proposed", "label"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy().astype(got[column].dtype))
    for column in ("split", "playlist_id", "note"):
        assert got[column].astype(object).where(got[column].notna(), None).tolist() == want[column].tolist(), column
    pd.testing.assert_frame_equal(seen["whole"].reset_index(drop=True), frame)  # the plain read is unchanged
    if kind == "duckdb":
        assert len(read(tmp_path / "w.duckdb", "fold_1__features")) == n  # the key's prefix is in the table name
    else:
        assert (tmp_path / "home" / "warehouse" / "genrank" / "fold_1__features.parquet").is_file()
