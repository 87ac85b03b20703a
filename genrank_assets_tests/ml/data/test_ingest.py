"""Ingest and corpus: the reject path on hand-written bad rows, clear failures, and a real materialisation."""
import gzip
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from genrank_assets.automation import INGEST_ASSETS
from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets.ml.data.corpus import build_corpus, split_of
from genrank_assets.ml.data.ingest import IngestError, read_seed_folder

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "bad_rows"

# (file, line_no, reason) of every bad row in fixtures/bad_rows — see the files themselves.
EXPECTED_REJECTS = {
    ("gen_playlist_info.csv", 4, "empty_id"),
    ("gen_playlist_info.csv", 5, "undecodable_bytes"),
    ("gen_playlist_info.csv", 6, "wrong_column_count"),
    ("gen_playlist_info.csv", 7, "duplicate_info_row"),
    ("gen_playlist_info.csv", 8, "non_numeric_field"),
    ("gen_playlist_song.csv.sort", 5, "orphan_song_row"),
    ("gen_playlist_song.csv.sort", 6, "empty_id"),
    ("gen_playlist_song.csv.sort", 7, "wrong_column_count"),
    ("gen_playlist_song.csv.sort", 8, "empty_id"),
    ("gen_playlist_song.csv.sort", 9, "undecodable_bytes"),
    ("gen_song_info.csv", 3, "empty_id"),
    ("gen_song_info.csv", 4, "undecodable_bytes"),
    ("gen_song_info.csv", 5, "wrong_column_count"),
}


def test_bad_rows_get_exactly_the_expected_rejects():
    raw = read_seed_folder(FIXTURE)
    got = {(r.file, r.line_no, r.reason) for r in raw.rejects.itertuples()}
    assert got == EXPECTED_REJECTS
    # Undecodable bytes are quarantined verbatim (escaped), never decoded with replacement.
    bad = raw.rejects[raw.rejects.reason == "undecodable_bytes"]
    assert all("\\x" in line for line in bad.raw_line)
    assert not raw.playlists.title.str.contains("\ufffd").any()
    # Ids stay strings: "0012" and "12" are different playlists.
    assert {"0012", "12", "1"} <= set(raw.playlists.playlist_id)
    assert raw.playlists.set_index("playlist_id").loc["12", "title"] == "twelve"
    # Extra trailing columns are allowed in the song file; the first occurrence of a duplicate is kept.
    assert set(raw.songs.song_id) == {"s1", "s2"}
    assert raw.playlists.set_index("playlist_id").loc["1", "title"] == "ok one"
    # Playlist order is kept across a quarantined row.
    songs_of_1 = raw.playlist_songs[raw.playlist_songs.playlist_id == "1"].sort_values("position")
    assert list(songs_of_1.song_id) == ["s1", "s2", "s9"]


def test_gzip_input_reads_the_same(tmp_path):
    for f in FIXTURE.iterdir():
        with open(f, "rb") as src, gzip.open(tmp_path / (f.name + ".gz"), "wb") as dst:
            dst.write(src.read())
    plain, zipped = read_seed_folder(FIXTURE), read_seed_folder(tmp_path)
    pd.testing.assert_frame_equal(plain.playlists, zipped.playlists)
    pd.testing.assert_frame_equal(plain.playlist_songs, zipped.playlist_songs)
    assert {(r.line_no, r.reason) for r in plain.rejects.itertuples()} == {
        (r.line_no, r.reason) for r in zipped.rejects.itertuples()
    }


def test_missing_file_names_it(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "d")
    (tmp_path / "d" / "gen_song_info.csv").unlink()
    with pytest.raises(IngestError, match="gen_song_info.csv"):
        read_seed_folder(tmp_path / "d")


def test_missing_header_column_names_it(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "d")
    info = tmp_path / "d" / "gen_playlist_info.csv"
    lines = info.read_bytes().split(b"\n")
    lines[0] = lines[0].replace(b"\tplay_count", b"")
    info.write_bytes(b"\n".join(lines))
    with pytest.raises(IngestError, match="play_count"):
        read_seed_folder(tmp_path / "d")


def test_split_rule_matches_benchmark():
    for pid in ["0", "12", "0012", "3000123", "abc"]:
        b = zlib.crc32(pid.encode("utf-8")) % 10
        assert split_of(pid) == {0: "test", 1: "val"}.get(b, "train")


def test_corpus_length_bounds_and_unknown_songs():
    playlists = pd.DataFrame({"playlist_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"], "tags": ["", "", "", ""]})
    rows = [("a", f"s{i}") for i in range(3)] + [("b", f"s{i}") for i in range(12)] + [("c", f"s{i}") for i in range(40)]
    ps = pd.DataFrame(rows, columns=["playlist_id", "song_id"])
    ps["position"] = ps.groupby("playlist_id").cumcount()
    songs = pd.DataFrame({"song_id": [f"s{i}" for i in range(10)], "song_name": "x", "singer": "y"})
    res = build_corpus(playlists, ps, songs, min_songs=5, max_songs=20)
    assert list(res.corpus.playlist_id) == ["b"]
    assert res.dropped == {"no_songs": 1, "too_short": 1, "too_long": 1}
    assert list(res.corpus.song_ids[0]) == [f"s{i}" for i in range(12)]
    res = build_corpus(playlists, ps, songs, min_songs=5, max_songs=20, drop_unknown_songs=True)
    # c's 40 rows shrink to its 10 known songs and fit the bounds; a is still too short.
    assert list(res.corpus.playlist_id) == ["b", "c"] and list(res.corpus.song_ids.map(len)) == [10, 10]
    assert res.unknown_songs_removed == 2 + 30
    with pytest.raises(ValueError, match="min_songs"):
        build_corpus(playlists, ps, songs, min_songs=0)


def _materialize_ingest(home: Path, data: Path, run_config=None):
    data_assets = [a for a in all_assets if a.group_names_by_key and set(a.group_names_by_key.values()) == {"data"}]
    return dg.materialize(
        data_assets + all_asset_checks, resources=build_resources(home=str(home), data_dir=str(data)),
        run_config=run_config or {}, selection=dg.AssetSelection.groups("data"),
    )


def test_materialize_ingest_and_corpus_on_demo_data(tiny_demo_dir, genrank_home):
    result = _materialize_ingest(genrank_home, tiny_demo_dir)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    raw = read_seed_folder(tiny_demo_dir)
    con = duckdb.connect(str(genrank_home / "warehouse.duckdb"), read_only=True)
    counts = {t: con.execute(f"select count(*) from genrank.{t}").fetchone()[0]
              for t in ["raw_playlists", "raw_playlist_songs", "raw_songs", "ingest_rejects", "playlist_corpus"]}
    assert counts["raw_playlists"] == len(raw.playlists)
    assert counts["raw_playlist_songs"] == len(raw.playlist_songs)
    assert counts["ingest_rejects"] == len(raw.rejects) > 0  # the demo data plants malformed rows
    assert set(raw.rejects.reason) >= {"wrong_column_count", "empty_id", "undecodable_bytes", "orphan_song_row",
                                       "duplicate_info_row"}
    corpus = con.execute("select playlist_id, split, len(song_ids) as n from genrank.playlist_corpus").fetchdf()
    con.close()
    assert (corpus.n >= 10).all() and (corpus.n <= 300).all()
    assert (corpus.split == corpus.playlist_id.map(split_of)).all()
    mat = result.asset_materializations_for_node("playlist_corpus")[0]
    assert mat.metadata["kept"].value == len(corpus)


def test_materialize_fails_naming_missing_file(tmp_path, genrank_home):
    shutil.copytree(FIXTURE, tmp_path / "d")
    (tmp_path / "d" / "gen_playlist_song.csv.sort").unlink()
    with pytest.raises(Exception, match="gen_playlist_song.csv.sort"):
        _materialize_ingest(genrank_home, tmp_path / "d")


def test_data_dir_is_selectable_per_run(tiny_demo_dir, genrank_home):
    # The resource default points nowhere useful; run config chooses the folder.
    result = dg.materialize(
        [a for a in all_assets if "data" in set((a.group_names_by_key or {}).values())],
        resources=build_resources(home=str(genrank_home), data_dir=str(genrank_home / "nowhere")),
        selection=dg.AssetSelection.assets(*INGEST_ASSETS),
        run_config={"resources": {"genrank_paths": {"config": {"data_dir": str(FIXTURE)}}}},
    )
    assert result.success
    assert result.output_for_node("raw_tables", "raw_playlists").playlist_id.tolist() == ["1", "0012", "12"]


def test_dagster_cli_materializes_everything(tiny_demo_dir, genrank_home, tmp_path):
    """The real `dagster` CLI, in a subprocess, materialises the whole graph with the tiny test preset."""
    repo = Path(__file__).resolve().parents[3]
    env = {"GENRANK_HOME": str(genrank_home), "GENRANK_DATA_DIR": str(tiny_demo_dir),
           "DAGSTER_HOME": str(tmp_path / "dagster_home"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    (tmp_path / "dagster_home").mkdir()
    dagster = str(Path(sys.executable).parent / "dagster")
    proc = subprocess.run(
        [dagster, "asset", "materialize", "-m", "genrank_assets.definitions", "--select", "*",
         "-c", str(repo / "genrank_assets" / "presets" / "test.yaml")],
        env=env, capture_output=True, text=True, timeout=900, cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    con = duckdb.connect(str(genrank_home / "warehouse.duckdb"), read_only=True)
    assert con.execute("select count(*) from genrank.playlist_corpus").fetchone()[0] > 0
    con.close()
