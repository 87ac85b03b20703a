"""Ingest and corpus as plain functions: the reject path on hand-written bad rows, clear failures, length bounds.

The assets over them (materialisation, checks) are tested in genrank_assets_tests/defs/assets/test_data.py.
"""
import gzip
import shutil
import zlib

import pandas as pd
import pytest

from genrank_assets.ml.data.corpus import build_corpus, split_of
from genrank_assets.ml.data.ingest import IngestError, read_seed_folder
from genrank_assets_tests import BAD_ROWS

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
    raw = read_seed_folder(BAD_ROWS)
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
    for f in BAD_ROWS.iterdir():
        with open(f, "rb") as src, gzip.open(tmp_path / (f.name + ".gz"), "wb") as dst:
            dst.write(src.read())
    plain, zipped = read_seed_folder(BAD_ROWS), read_seed_folder(tmp_path)
    pd.testing.assert_frame_equal(plain.playlists, zipped.playlists)
    pd.testing.assert_frame_equal(plain.playlist_songs, zipped.playlist_songs)
    assert {(r.line_no, r.reason) for r in plain.rejects.itertuples()} == {
        (r.line_no, r.reason) for r in zipped.rejects.itertuples()
    }


def test_missing_file_names_it(tmp_path):
    shutil.copytree(BAD_ROWS, tmp_path / "d")
    (tmp_path / "d" / "gen_song_info.csv").unlink()
    with pytest.raises(IngestError, match="gen_song_info.csv"):
        read_seed_folder(tmp_path / "d")


def test_missing_header_column_names_it(tmp_path):
    shutil.copytree(BAD_ROWS, tmp_path / "d")
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
