"""The `vectors` asset in the test-preset build: one fixed-size vector per song."""
import duckdb

from genrank_assets import paths


def test_song_vectors_are_fixed_size_arrays(built):
    con = duckdb.connect(str(paths.warehouse_path(built.home)), read_only=True)
    try:
        vec_type = con.execute("select data_type from information_schema.columns where table_name='song_vectors' "
                               "and column_name='vector'").fetchone()[0]
    finally:
        con.close()
    assert vec_type == "FLOAT[16]"  # fixed-size array, the test preset's vector_size
