"""Read the seed's three-file format (docs/input-format.md) into tables, quarantining every bad row with a reason.

Files are read with pyarrow's CSV reader as *binary* columns (no quoting, TAB-separated, `.gz` decompressed by
pyarrow), so that undecodable bytes are detected per row instead of being replaced: a row that is not valid
UTF-8 goes to the rejects with its raw bytes shown backslash-escaped. Rows with the wrong column count are
caught by pyarrow's invalid-row handler, which also reports the physical line number.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

log = logging.getLogger(__name__)

PLAYLIST_SONG_FILE = "gen_playlist_song.csv.sort"
PLAYLIST_INFO_FILE = "gen_playlist_info.csv"
SONG_INFO_FILE = "gen_song_info.csv"
INFO_HEADER = ["glid", "listname", "nickname", "tag_list", "feat", "collect_type", "play_count"]
INFO_NUMERIC = ["feat", "collect_type", "play_count"]

REJECT_COLUMNS = ["file", "line_no", "raw_line", "reason"]
REASONS = (
    "wrong_column_count",
    "empty_id",
    "undecodable_bytes",
    "non_numeric_field",
    "orphan_song_row",
    "duplicate_info_row",
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


class _FileReader:
    """Reads one TAB file into binary columns, collecting wrong-column-count rows as rejects."""

    def __init__(self, path: Path, n_columns: int, header: bool, allow_extra_columns: bool = False):
        self.path = path
        self.n_columns = n_columns
        self.header = header
        self.allow_extra = allow_extra_columns
        self.rejects: list[tuple[str, int, str, str]] = []
        self.bad_lines: list[int] = []  # physical line numbers pyarrow skipped (rejected or rescued)
        self.rescued: list[tuple[int, list[bytes]]] = []  # rows with extra trailing columns, when allowed

    def _on_invalid(self, row) -> str:
        line_no = int(row.number) if row.number is not None else -1
        text = row.text if isinstance(row.text, str) else str(row.text)
        self.bad_lines.append(line_no)
        if self.allow_extra and row.actual_columns > self.n_columns:
            # Extra trailing columns are allowed by the format: keep the first n columns.
            self.rescued.append((line_no, [p.encode("utf-8", "surrogateescape") for p in text.split("\t")]))
        else:
            self.rejects.append(
                (self.path.name, line_no, text,
                 "wrong_column_count")
            )
        return "skip"

    def read(self) -> tuple[pa.Table, np.ndarray]:
        """Table of binary columns c0..c{n-1} and the physical (1-based) line number of every row."""
        names = [f"c{i}" for i in range(self.n_columns)]
        try:
            table = pacsv.read_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    column_names=names, skip_rows=1 if self.header else 0, use_threads=False, block_size=1 << 24
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter="\t", quote_char=False, escape_char=False, newlines_in_values=False,
                    ignore_empty_lines=False, invalid_row_handler=self._on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.binary() for n in names}, strings_can_be_null=False,
                    quoted_strings_can_be_null=False, null_values=[],
                ),
            )
        except pa.ArrowInvalid as err:
            # A file without rows is valid (e.g. a batch that brings no new songs); pyarrow refuses it.
            if "Empty CSV file" not in str(err):
                raise
            table = pa.table({n: pa.array([], type=pa.binary()) for n in names})
        first = 2 if self.header else 1
        total = table.num_rows + len(self.bad_lines)
        physical = np.arange(first, first + total, dtype=np.int64)
        if self.bad_lines:
            physical = physical[~np.isin(physical, np.asarray(self.bad_lines, dtype=np.int64))]
        if self.rescued:
            extra = pa.table(
                {n: pa.array([r[1][i] for r in self.rescued], type=pa.binary()) for i, n in enumerate(names)}
            )
            table = pa.concat_tables([table, extra])
            physical = np.concatenate([physical, np.asarray([r[0] for r in self.rescued], dtype=np.int64)])
            order = np.argsort(physical, kind="stable")
            table = table.take(pa.array(order))
            physical = physical[order]
        return table, physical


def _decode_columns(table: pa.Table, lines: np.ndarray, file: str, rejects: list) -> tuple[pa.Table, np.ndarray]:
    """Cast binary columns to UTF-8 strings; rows with invalid UTF-8 anywhere are quarantined."""
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
    if bad.any():
        raw_cols = [table[n].to_pylist() for n in table.column_names]
        for i in np.flatnonzero(bad):
            raw = b"\t".join(c[i] for c in raw_cols)
            rejects.append((file, int(lines[i]), _escape(raw), "undecodable_bytes"))
        keep = pa.array(~bad)
        table = table.filter(keep)
        lines = lines[~bad]
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
    _check_info_header(paths["playlists"])
    rejects: list[tuple[str, int, str, str]] = []

    # --- playlist info -------------------------------------------------------------------------------------
    reader = _FileReader(paths["playlists"], len(INFO_HEADER), header=True)
    table, lines = reader.read()
    rejects += reader.rejects
    table, lines = _decode_columns(table, lines, paths["playlists"].name, rejects)
    info = table.rename_columns(INFO_HEADER).to_pandas()
    info["line_no"] = lines
    info = _with_raw(info, INFO_HEADER)
    info = _reject_empty(info, ["glid", "listname"], paths["playlists"].name, rejects)
    for c in INFO_NUMERIC:
        text = info[c].str.strip()
        parsed = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = parsed.isna() & text.ne("")
        for line, raw in zip(info.loc[bad, "line_no"], info.loc[bad, "_raw"]):
            rejects.append((paths["playlists"].name, int(line), raw, "non_numeric_field"))
        info = info[~bad]
        info[c] = parsed[~bad].astype("Int64")
    dup = info.duplicated("glid", keep="first")
    for line, raw in zip(info.loc[dup, "line_no"], info.loc[dup, "_raw"]):
        rejects.append((paths["playlists"].name, int(line), raw, "duplicate_info_row"))
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

    # --- songs ---------------------------------------------------------------------------------------------
    reader = _FileReader(paths["songs"], 3, header=False, allow_extra_columns=True)
    table, lines = reader.read()
    rejects += reader.rejects
    table, lines = _decode_columns(table, lines, paths["songs"].name, rejects)
    songs = table.rename_columns(["song_id", "song_name", "singer"]).to_pandas()
    songs["line_no"] = lines
    songs = _with_raw(songs, ["song_id", "song_name", "singer"])
    songs = _reject_empty(songs, ["song_id"], paths["songs"].name, rejects)
    dup = songs.duplicated("song_id", keep="first")
    for line, raw in zip(songs.loc[dup, "line_no"], songs.loc[dup, "_raw"]):
        rejects.append((paths["songs"].name, int(line), raw, "duplicate_info_row"))
    songs = songs.loc[~dup, ["song_id", "song_name", "singer"]].reset_index(drop=True)

    # --- playlist songs ------------------------------------------------------------------------------------
    reader = _FileReader(paths["playlist_songs"], 2, header=False)
    table, lines = reader.read()
    rejects += reader.rejects
    table, lines = _decode_columns(table, lines, paths["playlist_songs"].name, rejects)
    ps_file = paths["playlist_songs"].name
    pid = table["c0"]
    sid = table["c1"]
    empty = pc.or_(pc.equal(pc.utf8_trim_whitespace(pid), ""), pc.equal(pc.utf8_trim_whitespace(sid), ""))
    orphan = pc.invert(pc.is_in(pid, value_set=pa.array(playlists["playlist_id"].tolist(), type=pa.string())))
    orphan = pc.and_(orphan, pc.invert(empty))
    for mask, reason in ((empty, "empty_id"), (orphan, "orphan_song_row")):
        idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(idx):
            bp, bs = pid.take(pa.array(idx)).to_pylist(), sid.take(pa.array(idx)).to_pylist()
            rejects += [(ps_file, int(lines[i]), f"{p}\t{s}", reason) for i, p, s in zip(idx, bp, bs)]
    keep = pc.invert(pc.or_(empty, orphan))
    table = table.filter(keep)
    playlist_songs = pd.DataFrame(
        {"playlist_id": table["c0"].to_numpy(zero_copy_only=False).astype(object),
         "song_id": table["c1"].to_numpy(zero_copy_only=False).astype(object)}
    )
    # Position = order within the playlist as it appears in the file (the playlist's order).
    playlist_songs["position"] = playlist_songs.groupby("playlist_id", sort=False).cumcount().astype("int32")

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


def _check_info_header(path: Path) -> None:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        first = fh.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    got = first.split("\t")
    missing = [c for c in INFO_HEADER if c not in got]
    if missing:
        raise IngestError(
            f"{path}: header is missing column(s) {', '.join(missing)} (expected: {' '.join(INFO_HEADER)}; got: {first!r})"
        )
    if got[: len(INFO_HEADER)] != INFO_HEADER:
        raise IngestError(f"{path}: header columns out of order: expected {' '.join(INFO_HEADER)}, got {first!r}")
