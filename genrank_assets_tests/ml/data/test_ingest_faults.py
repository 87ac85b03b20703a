"""Faults that once killed or fooled the whole ingest: every bad row is quarantined, every bad file named."""
import gzip
from pathlib import Path

import pytest

from genrank_assets.ml.data.ingest import (
    INFO_HEADER,
    PLAYLIST_INFO_FILE,
    PLAYLIST_SONG_FILE,
    SONG_INFO_FILE,
    IngestError,
    read_seed_folder,
)

HEADER = "\t".join(INFO_HEADER).encode()


def write(folder: Path, info: list[bytes], songs: list[bytes], rows: list[bytes], header: bytes = HEADER,
          gz: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in ((PLAYLIST_INFO_FILE, [header, *info]), (SONG_INFO_FILE, songs), (PLAYLIST_SONG_FILE, rows)):
        data = b"".join(line + b"\n" for line in lines)
        if name in gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


GOOD_INFO = [b"p1\tmorning\tnick\ttag\t0\t1\t5", b"p2\tnight\tnick\t\t0\t1\t5"]
GOOD_SONGS = [b"s1\tone\tA", b"s2\ttwo\tB"]
GOOD_ROWS = [b"p1\ts1", b"p1\ts2", b"p2\ts2"]


def rejected(raw) -> list[tuple[str, int, str]]:
    return list(zip(raw.rejects["file"], raw.rejects["line_no"], raw.rejects["reason"]))


def test_undecodable_row_with_extra_columns_is_quarantined_not_fatal(tmp_path):
    """The probe of the issue: undecodable bytes *and* an extra trailing column in the song file used to fail
    the whole read (pyarrow's invalid-row handler decodes the row); now only that row is lost, in every file."""
    folder = write(
        tmp_path / "d",
        GOOD_INFO + [b"p3\tbad \xff\tnick\ttag\t0\t1\t5\textra"],
        GOOD_SONGS + [b"zz\xffq\tname\tsinger\t2014"],
        GOOD_ROWS + [b"p1\ts\xff\textra"],
    )
    raw = read_seed_folder(folder)
    assert sorted(rejected(raw)) == sorted([
        (PLAYLIST_INFO_FILE, 4, "wrong_column_count"),
        (SONG_INFO_FILE, 3, "undecodable_bytes"),
        (PLAYLIST_SONG_FILE, 4, "wrong_column_count"),
    ])
    assert raw.rejects.loc[raw.rejects["file"] == SONG_INFO_FILE, "raw_line"].item() == "zz\\xffq\tname\tsinger\t2014"
    assert raw.songs["song_id"].tolist() == ["s1", "s2"]
    # Every line accounted for: kept rows + rejects = lines read (the info header excluded).
    assert len(raw.playlists) + (raw.rejects["file"] == PLAYLIST_INFO_FILE).sum() == 3
    assert len(raw.playlist_songs) + (raw.rejects["file"] == PLAYLIST_SONG_FILE).sum() == 4


def test_utf8_bom_on_the_info_header_is_accepted(tmp_path):
    folder = write(tmp_path / "d", GOOD_INFO, GOOD_SONGS, GOOD_ROWS, header=b"\xef\xbb\xbf" + HEADER)
    raw = read_seed_folder(folder)
    assert raw.playlists["playlist_id"].tolist() == ["p1", "p2"] and raw.rejects.empty


def test_header_with_an_extra_column_keeps_rows_that_carry_it(tmp_path):
    folder = write(tmp_path / "d", [r + b"\tx" for r in GOOD_INFO], GOOD_SONGS, GOOD_ROWS,
                   header=HEADER + b"\tsource")
    raw = read_seed_folder(folder)
    assert raw.playlists["playlist_id"].tolist() == ["p1", "p2"] and raw.rejects.empty
    assert list(raw.playlists.columns)[:2] == ["playlist_id", "title"]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_broken_gzip_input_is_an_error_naming_the_file(tmp_path, damage):
    folder = write(tmp_path / "d", GOOD_INFO, GOOD_SONGS, GOOD_ROWS * 200, gz=(PLAYLIST_SONG_FILE,))
    path = folder / f"{PLAYLIST_SONG_FILE}.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:10] + b"\x00garbage" * 8)
    with pytest.raises(IngestError, match=rf"{PLAYLIST_SONG_FILE}\.gz: corrupt or truncated gzip file"):
        read_seed_folder(folder)


def test_nul_bytes_in_ids_and_titles_are_quarantined(tmp_path):
    folder = write(tmp_path / "d", GOOD_INFO + [b"p3\tti\x00tle\tnick\ttag\t0\t1\t5"], GOOD_SONGS + [b"s\x003\tx\tC"],
                   GOOD_ROWS + [b"p\x001\ts1"])
    raw = read_seed_folder(folder)
    assert sorted(rejected(raw)) == sorted([
        (PLAYLIST_INFO_FILE, 4, "nul_byte"), (SONG_INFO_FILE, 3, "nul_byte"), (PLAYLIST_SONG_FILE, 4, "nul_byte"),
    ])
    assert "\x00" not in "".join(raw.rejects["raw_line"])  # shown escaped
    assert not raw.songs["song_id"].str.contains("\x00").any()


def test_crlf_and_missing_final_newline(tmp_path):
    folder = write(tmp_path / "d", GOOD_INFO, GOOD_SONGS, GOOD_ROWS)
    path = folder / PLAYLIST_SONG_FILE
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n").rstrip(b"\r\n"))
    raw = read_seed_folder(folder)
    assert raw.playlist_songs[["playlist_id", "song_id"]].values.tolist() == [["p1", "s1"], ["p1", "s2"],
                                                                              ["p2", "s2"]]
    assert raw.rejects.empty
