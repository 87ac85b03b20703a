"""Read the seed's three-file format (docs/input-format.md) into tables, quarantining every bad row with a reason.

Files are read with pyarrow's CSV reader as *binary* columns (no quoting, TAB-separated, `.gz` decompressed by
pyarrow), so that undecodable bytes are detected per row instead of being replaced: a row that is not valid
UTF-8 goes to the rejects with its raw bytes shown backslash-escaped. Rows with the wrong column count are
caught by pyarrow's invalid-row handler, which also reports the physical line number.
"""
from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

PLAYLIST_SONG_FILE = "gen_playlist_song.csv.sort"
PLAYLIST_INFO_FILE = "gen_playlist_info.csv"
SONG_INFO_FILE = "gen_song_info.csv"
INFO_HEADER = ["glid", "listname", "nickname", "tag_list", "feat", "collect_type", "play_count"]
INFO_NUMERIC = ["feat", "collect_type", "play_count"]
UTF8_BOM = b"\xef\xbb\xbf"

REJECT_COLUMNS = ["file", "line_no", "raw_line", "reason"]
REASONS = (
    "wrong_column_count",
    "empty_id",
    "undecodable_bytes",
    "non_numeric_field",
    "orphan_song_row",
    "duplicate_info_row",
    "nul_byte",
)


class IngestError(ValueError):
    """A whole input is unusable (missing file or column): the run must fail, naming it."""


@dataclass
class RawTables:
    playlists: pd.DataFrame  # playlist_id, title, nickname, tags, feat, collect_type, play_count
    playlist_songs: pd.DataFrame  # playlist_id, song_id, position
    songs: pd.DataFrame  # song_id, song_name, singer
    rejects: pd.DataFrame  # file, line_no, raw_line, reason
    files: dict[str, str] = field(default_factory=dict)  # logical name -> path read

    def reject_counts(self) -> dict[str, int]:
        counts = self.rejects["reason"].value_counts().to_dict() if len(self.rejects) else {}
        return {r: int(counts.get(r, 0)) for r in REASONS}


def batch_problems(raw: RawTables, max_reject_share: float, whole_input: bool = True) -> list[str]:
    """Why ``raw`` must not be used, empty when it is usable: a file lost more than ``max_reject_share`` of its
    rows to rejects (a wrong format, not a few bad rows), or nothing survived. ``whole_input`` (the tables the
    models are built from) needs every table non-empty; a batch may update a title alone, but one whose every
    row was rejected is refused."""
    tables = (("playlist", raw.playlists), ("song", raw.songs), ("playlist-song row", raw.playlist_songs))
    if whole_input:
        problems = [f"no {what} survived" for what, table in tables if table.empty]
    else:
        problems = ["no row survived"] if all(t.empty for _, t in tables) and len(raw.rejects) else []
    kept = {PLAYLIST_INFO_FILE: len(raw.playlists), SONG_INFO_FILE: len(raw.songs),
            PLAYLIST_SONG_FILE: len(raw.playlist_songs)}
    for file, n_kept in kept.items():
        n_bad = int(raw.rejects["file"].isin([file, f"{file}.gz"]).sum())
        if n_bad and n_bad / (n_bad + n_kept) > max_reject_share:
            reasons = raw.rejects.loc[raw.rejects["file"].isin([file, f"{file}.gz"]), "reason"].value_counts()
            problems.append(f"{file}: {n_bad} of {n_bad + n_kept} rows rejected ({reasons.to_dict()})")
    return problems


def refuse_unusable(raw: RawTables, max_reject_share: float) -> None:
    """Raise IngestError when the new tables must not replace the current ones (``batch_problems``)."""
    problems = batch_problems(raw, max_reject_share)
    if problems:
        raise IngestError(
            "refusing to replace the current tables: " + "; ".join(problems)
            + f". The last good tables stay as they are; fix the input (the per-file reject limit is "
            f"{max_reject_share:.0%}, ops.raw_tables.config.max_reject_share)."
        )


def resolve_input(folder: Path, name: str) -> Path:
    """`name` or `name.gz` inside folder; a clear error naming the file when neither exists."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IngestError(f"input folder {folder} does not exist (set GENRANK_DATA_DIR or the data_dir config)")
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise IngestError(f"missing input file {folder / name} (or {name}.gz) in {folder}")


def _escape(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def read_input_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped for `.gz`, without a UTF-8 byte-order mark; an unreadable file (corrupt or
    truncated gzip, I/O error) is an IngestError naming it."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        kind = "corrupt or truncated gzip file" if path.suffix == ".gz" else "unreadable file"
        raise IngestError(f"{path}: {kind} ({type(err).__name__}: {err})") from err
    return data[len(UTF8_BOM):] if data.startswith(UTF8_BOM) else data


def _lines(data: bytes) -> pa.BinaryArray:
    """The lines of ``data`` (CRLF or LF) as a binary array, without copying them one by one."""
    data = data.replace(b"\r\n", b"\n")
    if not data:
        return pa.array([], type=pa.binary())
    if not data.endswith(b"\n"):
        data += b"\n"
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n")) + 1
    offsets = np.concatenate([[0], ends]).astype(np.int32 if len(data) < 2**31 else np.int64)
    kind = pa.binary() if offsets.dtype == np.int32 else pa.large_binary()
    with_newline = pa.Array.from_buffers(kind, len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pc.binary_slice(with_newline, 0, -1).cast(pa.binary())


class _FileReader:
    """Reads one TAB file into binary columns; rows with the wrong column count become rejects.

    The split into lines and columns happens on bytes (pyarrow compute over a binary array), so no row is ever
    decoded here: a row may be undecodable *and* have the wrong column count, and still only that row is lost
    (pyarrow's CSV invalid-row handler decodes the row text itself and fails the whole read on such a row).
    """

    def __init__(self, path: Path, n_columns: int, header: bool, allow_extra_columns: bool = False):
        self.path = path
        self.n_columns = n_columns
        self.header = header
        self.allow_extra = allow_extra_columns
        self.rejects: list[tuple[str, int, str, str]] = []

    def read(self) -> tuple[pa.Table, np.ndarray]:
        """Table of binary columns c0..c{n-1} and the physical (1-based) line number of every row."""
        names = [f"c{i}" for i in range(self.n_columns)]
        rows = _lines(read_input_bytes(self.path))
        first = 1
        if self.header and len(rows):
            rows, first = rows.slice(1), 2
        physical = np.arange(first, first + len(rows), dtype=np.int64)
        n_fields = pc.add(pc.count_substring(rows, "\t"), 1).to_numpy(zero_copy_only=False)
        good = n_fields >= self.n_columns if self.allow_extra else n_fields == self.n_columns
        empty = pc.equal(pc.binary_length(rows), 0).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(~good):
            line = rows[int(i)].as_py()
            reason = "empty_id" if empty[i] else "wrong_column_count"  # an empty line has empty ids
            self.rejects.append((self.path.name, int(physical[i]), _escape(line), reason))
        self.raw_lines = rows.filter(pa.array(good))  # each kept row as read, for the rejects of later checks
        fields = pc.split_pattern(self.raw_lines, "\t")
        if len(fields) == 0:
            return pa.table({n: pa.array([], type=pa.binary()) for n in names}), physical[good]
        table = pa.table({n: pc.list_element(fields, i) for i, n in enumerate(names)})
        return table, physical[good]


def _decode_columns(reader: _FileReader, table: pa.Table, lines: np.ndarray, rejects: list) -> tuple[pa.Table, np.ndarray]:
    """Cast binary columns to UTF-8 strings; rows with invalid UTF-8 or a NUL byte anywhere are quarantined."""
    file = reader.path.name
    bad = np.zeros(table.num_rows, dtype=bool)
    for name in table.column_names:
        col = table[name]
        try:
            col.cast(pa.string())
        except pa.ArrowInvalid:
            # Rare path: find the offending rows one by one.
            for i, value in enumerate(col.to_pylist()):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    bad[i] = True
    # NUL bytes are valid UTF-8 but no id or title holds one: they would be stored verbatim and break C readers.
    nul = np.zeros(table.num_rows, dtype=bool)
    for name in table.column_names:
        nul |= pc.fill_null(pc.match_substring(table[name], "\x00"), False).to_numpy(zero_copy_only=False)
    nul &= ~bad
    if bad.any() or nul.any():
        for mask, reason in ((bad, "undecodable_bytes"), (nul, "nul_byte")):
            for i in np.flatnonzero(mask):
                raw = reader.raw_lines[int(i)].as_py()
                rejects.append((file, int(lines[i]), _escape(raw).replace("\x00", "\\x00"), reason))
        keep = ~(bad | nul)
        table = table.filter(pa.array(keep))
        lines = lines[keep]
    return table.cast(pa.schema([(n, pa.string()) for n in table.column_names])), lines


def _reject_empty(df: pd.DataFrame, id_cols: list[str], file: str, rejects: list) -> pd.DataFrame:
    empty = np.zeros(len(df), dtype=bool)
    for c in id_cols:
        empty |= df[c].str.strip().eq("").to_numpy()
    if empty.any():
        bad = df[empty]
        for line, raw in zip(bad["line_no"], bad["_raw"]):
            rejects.append((file, int(line), raw, "empty_id"))
    return df[~empty]


def _with_raw(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    df["_raw"] = df[cols].agg("\t".join, axis=1) if len(df) else pd.Series(dtype=str)
    return df


def read_seed_folder(folder: str | Path) -> RawTables:
    """Read and validate the three files of a seed-format folder. Every bad row ends in ``rejects``."""
    folder = Path(folder)
    paths = {
        "playlist_songs": resolve_input(folder, PLAYLIST_SONG_FILE),
        "playlists": resolve_input(folder, PLAYLIST_INFO_FILE),
        "songs": resolve_input(folder, SONG_INFO_FILE),
    }
    rejects: list[tuple[str, int, str, str]] = []
    playlists = read_playlist_info(paths["playlists"], rejects)
    songs = read_song_info(paths["songs"], rejects)
    playlist_songs = read_playlist_songs(paths["playlist_songs"], playlists["playlist_id"], rejects)
    rejects_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    rejects_df["line_no"] = rejects_df["line_no"].astype("int64")
    rejects_df = rejects_df.sort_values(["file", "line_no"], kind="stable").reset_index(drop=True)
    log.info(
        "ingest %s: %d playlists, %d playlist-song rows, %d songs, %d rejects",
        folder, len(playlists), len(playlist_songs), len(songs), len(rejects_df),
    )
    return RawTables(
        playlists=playlists, playlist_songs=playlist_songs, songs=songs, rejects=rejects_df,
        files={k: str(v) for k, v in paths.items()},
    )


def read_playlist_info(path: Path, rejects: list) -> pd.DataFrame:
    """The playlist info file (its header checked first): one row per playlist id, the numbers as Int64. Bad rows
    (wrong column count, undecodable, empty id or title, a non-numeric number, a second row for an id) are
    appended to ``rejects`` as (file, line, raw, reason)."""
    info_has_extra_columns = _check_info_header(path)
    reader = _FileReader(path, len(INFO_HEADER), header=True, allow_extra_columns=info_has_extra_columns)
    table, lines = reader.read()
    rejects += reader.rejects
    table, lines = _decode_columns(reader, table, lines, rejects)
    info = table.rename_columns(INFO_HEADER).to_pandas()
    info["line_no"] = lines
    info = _with_raw(info, INFO_HEADER)
    info = _reject_empty(info, ["glid", "listname"], path.name, rejects)
    for c in INFO_NUMERIC:
        text = info[c].str.strip()
        parsed = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = parsed.isna() & text.ne("")
        for line, raw in zip(info.loc[bad, "line_no"], info.loc[bad, "_raw"]):
            rejects.append((path.name, int(line), raw, "non_numeric_field"))
        info = info[~bad]
        info[c] = parsed[~bad].astype("Int64")
    dup = info.duplicated("glid", keep="first")
    for line, raw in zip(info.loc[dup, "line_no"], info.loc[dup, "_raw"]):
        rejects.append((path.name, int(line), raw, "duplicate_info_row"))
    info = info[~dup]
    playlists = pd.DataFrame(
        {
            "playlist_id": info["glid"].to_numpy(dtype=object),
            "title": info["listname"].to_numpy(dtype=object),
            "nickname": info["nickname"].to_numpy(dtype=object),
            "tags": info["tag_list"].to_numpy(dtype=object),
            "feat": info["feat"].to_numpy(),
            "collect_type": info["collect_type"].to_numpy(),
            "play_count": info["play_count"].to_numpy(),
        }
    )
    for c in INFO_NUMERIC:
        playlists[c] = playlists[c].astype("Int64")
    return playlists


def read_song_info(path: Path, rejects: list) -> pd.DataFrame:
    """The song catalogue file: song_id, song_name, singer (extra trailing columns allowed, ignored). Bad rows (as
    above; an empty id; a second row for an id) are appended to ``rejects``."""
    reader = _FileReader(path, 3, header=False, allow_extra_columns=True)
    table, lines = reader.read()
    rejects += reader.rejects
    table, lines = _decode_columns(reader, table, lines, rejects)
    songs = table.rename_columns(["song_id", "song_name", "singer"]).to_pandas()
    songs["line_no"] = lines
    songs = _with_raw(songs, ["song_id", "song_name", "singer"])
    songs = _reject_empty(songs, ["song_id"], path.name, rejects)
    dup = songs.duplicated("song_id", keep="first")
    for line, raw in zip(songs.loc[dup, "line_no"], songs.loc[dup, "_raw"]):
        rejects.append((path.name, int(line), raw, "duplicate_info_row"))
    return songs.loc[~dup, ["song_id", "song_name", "singer"]].reset_index(drop=True)


def read_playlist_songs(path: Path, playlist_ids: pd.Series, rejects: list) -> pd.DataFrame:
    """The (playlist_id, song_id) rows with their position in the playlist (the file's order). Rows with an empty
    id, or whose playlist is not in ``playlist_ids`` (no info row), are appended to ``rejects``."""
    reader = _FileReader(path, 2, header=False)
    table, lines = reader.read()
    rejects += reader.rejects
    table, lines = _decode_columns(reader, table, lines, rejects)
    pid = table["c0"]
    sid = table["c1"]
    empty = pc.or_(pc.equal(pc.utf8_trim_whitespace(pid), ""), pc.equal(pc.utf8_trim_whitespace(sid), ""))
    orphan = pc.invert(pc.is_in(pid, value_set=pa.array(playlist_ids.tolist(), type=pa.string())))
    orphan = pc.and_(orphan, pc.invert(empty))
    for mask, reason in ((empty, "empty_id"), (orphan, "orphan_song_row")):
        idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(idx):
            bp, bs = pid.take(pa.array(idx)).to_pylist(), sid.take(pa.array(idx)).to_pylist()
            rejects += [(path.name, int(lines[i]), f"{p}\t{s}", reason) for i, p, s in zip(idx, bp, bs)]
    table = table.filter(pc.invert(pc.or_(empty, orphan)))
    playlist_songs = pd.DataFrame(
        {"playlist_id": table["c0"].to_numpy(zero_copy_only=False).astype(object),
         "song_id": table["c1"].to_numpy(zero_copy_only=False).astype(object)}
    )
    # Position = order within the playlist as it appears in the file (the playlist's order).
    playlist_songs["position"] = playlist_songs.groupby("playlist_id", sort=False).cumcount().astype("int32")
    return playlist_songs


def _check_info_header(path: Path) -> bool:
    """Refuse a header without the seed's columns in order; True when it declares extra trailing columns."""
    data = read_input_bytes(path)
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    got = first.split("\t")
    missing = [c for c in INFO_HEADER if c not in got]
    if missing:
        raise IngestError(
            f"{path}: header is missing column(s) {', '.join(missing)} (expected: {' '.join(INFO_HEADER)}; got: {first!r})"
        )
    if got[: len(INFO_HEADER)] != INFO_HEADER:
        raise IngestError(f"{path}: header columns out of order: expected {' '.join(INFO_HEADER)}, got {first!r}")
    if len(got) > len(INFO_HEADER):
        log.warning("%s: header has extra column(s) %s after the seed's; they are read and ignored", path,
                    got[len(INFO_HEADER):])
    return len(got) > len(INFO_HEADER)
