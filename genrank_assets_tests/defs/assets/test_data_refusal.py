"""A broken input is refused before anything is replaced: the last good tables stay."""
import shutil
from pathlib import Path

import dagster as dg
import duckdb
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
