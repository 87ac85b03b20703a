"""A broken input is refused before anything is replaced: the last good tables stay."""
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets.defs.automation import INGEST_ASSETS
from genrank_assets.ml.data.ingest import PLAYLIST_INFO_FILE, SONG_INFO_FILE, IngestError
from genrank_assets_tests import BAD_ROWS


def ingest(home: Path, data: Path, raise_on_error: bool = True):
    return dg.materialize(
        [a for a in all_assets if "data" in set((a.group_names_by_key or {}).values())] + all_asset_checks,
        resources=build_resources(home=str(home), data_dir=str(data)),
        selection=dg.AssetSelection.assets(*INGEST_ASSETS), raise_on_error=raise_on_error,
    )


def counts(home: Path) -> dict[str, int]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return {t: con.execute(f"select count(*) from genrank.{t}").fetchone()[0]
                for t in ("raw_playlists", "raw_playlist_songs", "raw_songs", "ingest_rejects")}
    finally:
        con.close()


@pytest.mark.parametrize("damage", ["empty_song_info", "info_rows_all_malformed"])
def test_broken_input_is_refused_and_the_last_good_tables_stay(genrank_home, tmp_path, damage):
    data = tmp_path / "data"
    shutil.copytree(BAD_ROWS, data)
    ingest(genrank_home, data)
    good = counts(genrank_home)
    assert good["raw_playlists"] > 0 and good["raw_songs"] > 0

    if damage == "empty_song_info":
        (data / SONG_INFO_FILE).write_bytes(b"")
        expected = "no song survived"
    else:  # every info row has one column too many (the header has not): the wrong export
        lines = (data / PLAYLIST_INFO_FILE).read_bytes().splitlines()
        (data / PLAYLIST_INFO_FILE).write_bytes(b"\n".join([lines[0]] + [ln + b"\tx" for ln in lines[1:]]) + b"\n")
        expected = rf"{PLAYLIST_INFO_FILE}: \d+ of \d+ rows rejected"
    with pytest.raises(IngestError, match=rf"refusing to replace the current tables: .*{expected}"):
        ingest(genrank_home, data)
    assert counts(genrank_home) == good


def test_a_batch_whose_rows_are_all_bad_is_refused_in_the_ledger_and_nothing_else_changes(genrank_home, tmp_path):
    from genrank_assets_tests.defs.test_automation import materialize_ingest, warehouse_tables, write_seed

    data = write_seed(tmp_path / "data", {"p1": ("morning", ["s1", "s2", "s3"]), "p2": ("night", ["s3", "s4"])},
                      {"s1": "one", "s2": "two", "s3": "three", "s4": "four"}, complete=False)
    materialize_ingest(genrank_home, data)
    good = warehouse_tables(genrank_home)
    # every row of the batch is malformed: info rows with a column too many, song rows with one too few
    write_seed(data / "incoming" / "broken", {}, {}, extra_info=["p9\tx\tnick\ttag\t0\t1\t5\textra"] * 3,
               extra_song_rows=["p9"] * 4)
    assert materialize_ingest(genrank_home, data, ["broken"]).success
    after = warehouse_tables(genrank_home)
    ledger = after["ingested_batches"].set_index("batch_id")
    assert ledger.loc["broken", "status"] == "refused"
    assert "gen_playlist_info.csv: 3 of 3 rows rejected" in ledger.loc["broken", "reason"]
    assert ledger.loc["broken", "playlists"] == 0 and ledger.loc["broken", "rejects"] == 7
    rejects = after["ingest_rejects"]
    assert (rejects["batch_id"] == "broken").sum() == 7  # quarantined with their reasons, nothing lost
    assert rejects.loc[rejects["batch_id"] == "broken", "reason"].str.len().gt(0).all()
    for table in ("raw_playlists", "raw_playlist_songs", "raw_songs"):  # nothing of it merged
        pd.testing.assert_frame_equal(after[table], good[table])

    # named again unchanged: refused again, one ledger row, its rejects once
    assert materialize_ingest(genrank_home, data, ["broken"]).success
    again = warehouse_tables(genrank_home)
    assert list(again["ingested_batches"]["batch_id"]) == ["broken"]
    assert (again["ingest_rejects"]["batch_id"] == "broken").sum() == 7
    # a later run that names other batches keeps the refusal and its rejects
    write_seed(data / "incoming" / "ok", {"p3": ("gym", ["s1", "s5"])}, {"s1": "one", "s5": "five"})
    assert materialize_ingest(genrank_home, data, ["ok"]).success
    later = warehouse_tables(genrank_home)
    statuses = dict(zip(later["ingested_batches"]["batch_id"], later["ingested_batches"]["status"]))
    assert statuses == {"broken": "refused", "ok": "ingested"}
    assert (later["ingest_rejects"]["batch_id"] == "broken").sum() == 7
    assert "p3" in set(later["raw_playlists"]["playlist_id"])
    # fixed and named again: ingested, its seq kept
    write_seed(data / "incoming" / "broken", {"p9": ("fixed", ["s2", "s5"])}, {"s2": "two", "s5": "five"})
    assert materialize_ingest(genrank_home, data, ["broken"]).success
    fixed = warehouse_tables(genrank_home)["ingested_batches"].set_index("batch_id")
    assert fixed.loc["broken", "status"] == "ingested" and fixed.loc["broken", "seq"] == 1
    assert fixed.loc["broken", "playlists"] == 1
