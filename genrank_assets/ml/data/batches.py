"""New playlists landing: batches in a drop folder, merged into the base data in the order they were ingested.

Layout (docs/input-format.md's three-file format in every folder):

    GENRANK_DATA_DIR/                      the base data
    GENRANK_DATA_DIR/incoming/<batch_id>/  one batch; complete once the file `_SUCCESS` exists in it

The ingest is a pure function of (base folder, batches ingested before, batches named in this run): every run
re-reads them all and writes the full tables, so running the same batch twice adds nothing. When a playlist id
comes again in a later batch, the later info row replaces the earlier one ("updated, not duplicated"), and so
do its song rows when the later batch carries any (a batch that only fixes a title keeps the songs). For songs
the later row wins. Inside one batch the ordinary reject rules of `read_seed_folder` apply, so a duplicate row
inside one file is still a reject; every reject carries the id of the batch it came from ("base" for the base).

A new batch that is unusable on its own (``batch_problems``: a table of it came out empty, or a file of it lost
more than the reject limit) is **refused**: the ledger records it with status ``refused`` and the reason, its
rejects stay in the rejects table, and none of its rows is merged, so every other table is as it was. Naming a
refused batch again (after fixing its files) reads it again.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from genrank_assets.ml.data.ingest import IngestError, RawTables, batch_problems, read_seed_folder

log = logging.getLogger(__name__)

INCOMING_DIRNAME = "incoming"
SUCCESS_MARKER = "_SUCCESS"
BASE_BATCH_ID = "base"  # batch id of the base folder's rows in ingest_rejects; reserved, no batch may use it
# Batch ids become Dagster run keys and tag values and folder names: keep them short and plain.
BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

COUNT_COLUMNS = ["playlists", "playlist_song_rows", "songs", "rejects", "playlists_updated"]
BATCH_STATS_COLUMNS = ["batch_id", *COUNT_COLUMNS, "status", "reason"]
LEDGER_COLUMNS = ["seq", "batch_id", "ingested_at", "run_id", *BATCH_STATS_COLUMNS[1:]]
INGESTED, REFUSED = "ingested", "refused"  # a ledger row's status


def incoming_dir(data_dir: str | Path) -> Path:
    """The drop folder of a data folder: `<data_dir>/incoming`."""
    return Path(data_dir) / INCOMING_DIRNAME


def validate_batch_id(batch_id: str) -> str:
    """The id itself when usable; a ValueError naming it otherwise."""
    if not isinstance(batch_id, str) or not BATCH_ID_PATTERN.fullmatch(batch_id):
        raise ValueError(
            f"batch id {batch_id!r} is not valid: use 1-63 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if batch_id == BASE_BATCH_ID:
        raise ValueError(f"batch id {BASE_BATCH_ID!r} is reserved for the base folder; rename the batch folder")
    return batch_id


def is_valid_batch_id(batch_id: str) -> bool:
    try:
        validate_batch_id(batch_id)
    except ValueError:
        return False
    return True


def is_complete(batch_dir: str | Path) -> bool:
    """A batch is complete once its `_SUCCESS` marker exists (written last by whoever copies the batch in)."""
    return (Path(batch_dir) / SUCCESS_MARKER).is_file()


@dataclass
class IncomingScan:
    complete: list[str]  # valid batch ids with a _SUCCESS marker, sorted
    incomplete: list[str]  # valid batch ids still being copied (no marker yet)
    invalid: list[str]  # folder names that cannot be batch ids (never read)


def scan_incoming(incoming: str | Path) -> IncomingScan:
    """Sorted batch folders of a drop folder; a missing drop folder is simply empty."""
    incoming = Path(incoming)
    scan = IncomingScan(complete=[], incomplete=[], invalid=[])
    if not incoming.is_dir():
        return scan
    for entry in sorted(incoming.iterdir(), key=lambda p: p.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue  # stray files and hidden folders (e.g. a copy tool's temp dir) are not batches
        if not is_valid_batch_id(entry.name):
            scan.invalid.append(entry.name)
        elif is_complete(entry):
            scan.complete.append(entry.name)
        else:
            scan.incomplete.append(entry.name)
    return scan


def read_batch(data_dir: str | Path, batch_id: str, require_marker: bool = True) -> RawTables:
    """Read one batch folder; errors name the batch (missing folder, no marker, missing file or column)."""
    validate_batch_id(batch_id)
    folder = incoming_dir(data_dir) / batch_id
    if not folder.is_dir():
        raise IngestError(f"batch {batch_id!r}: folder {folder} does not exist")
    if require_marker and not is_complete(folder):
        raise IngestError(
            f"batch {batch_id!r} is not complete: no {SUCCESS_MARKER} marker in {folder} (write it after the "
            "three files are fully copied)"
        )
    try:
        return read_seed_folder(folder)
    except IngestError as err:
        raise IngestError(f"batch {batch_id!r}: {err}") from err


@dataclass
class MergedIngest:
    tables: RawTables  # merged tables; rejects carry a batch_id column
    batch_stats: pd.DataFrame  # BATCH_STATS_COLUMNS, one row per incoming batch read (not the base)
    base: RawTables  # the base folder as read, for its own counts


def _keep_last_in_first_order(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per key: the values of its last occurrence, at the position of its first occurrence."""
    first_seen = frame[key].drop_duplicates(keep="first").to_numpy()
    last = frame.drop_duplicates(key, keep="last").set_index(key)
    return last.loc[first_seen].reset_index()


def merge_sources(sources: list[tuple[str, RawTables]]) -> tuple[RawTables, pd.DataFrame]:
    """Merge (batch_id, tables) in the given order; later sources update earlier ones. Returns tables, stats."""
    if not sources:
        raise ValueError("sources must hold at least the base folder")
    stats = []
    seen_playlists: set[str] = set()
    for batch_id, raw in sources:
        ids = set(raw.playlists["playlist_id"])
        stats.append((batch_id, len(raw.playlists), len(raw.playlist_songs), len(raw.songs), len(raw.rejects),
                      len(ids & seen_playlists), INGESTED, ""))
        seen_playlists |= ids
    stats_df = pd.DataFrame(stats, columns=BATCH_STATS_COLUMNS)

    rejects = typed_if_empty(pd.concat(
        [raw.rejects.assign(batch_id=batch_id) for batch_id, raw in sources], ignore_index=True
    ))
    if len(sources) == 1:
        only = sources[0][1]
        merged = RawTables(playlists=typed_if_empty(only.playlists),
                           playlist_songs=typed_if_empty(only.playlist_songs), songs=typed_if_empty(only.songs),
                           rejects=rejects, files=dict(only.files))
        return merged, stats_df

    playlists = _keep_last_in_first_order(
        pd.concat([raw.playlists for _, raw in sources], ignore_index=True), "playlist_id"
    )
    songs = _keep_last_in_first_order(pd.concat([raw.songs for _, raw in sources], ignore_index=True), "song_id")

    # A playlist's song rows come from the latest source that carries any for it; playlists stay where the song
    # files first had them (factorize numbers them in order of appearance).
    rows = pd.concat(
        [raw.playlist_songs.assign(_src=i) for i, (_, raw) in enumerate(sources)], ignore_index=True
    )
    rows["_order"] = pd.factorize(rows["playlist_id"])[0]
    latest_src = rows.groupby("playlist_id", sort=False)["_src"].transform("max")
    rows = rows[rows["_src"].eq(latest_src)].sort_values(["_order", "position"], kind="stable")
    playlist_songs = rows.drop(columns=["_src", "_order"]).reset_index(drop=True)
    playlist_songs["position"] = playlist_songs["position"].astype("int32")

    files = {f"{batch_id}:{name}": path for batch_id, raw in sources for name, path in raw.files.items()}
    merged = RawTables(playlists=typed_if_empty(playlists), playlist_songs=typed_if_empty(playlist_songs),
                       songs=typed_if_empty(songs), rejects=rejects, files=files)
    return merged, stats_df


def ingest_with_batches(data_dir: str | Path, ingested: list[str], new: list[str], refused: list[str] = (),
                        max_reject_share: float = 1.0) -> MergedIngest:
    """Base folder + batches ingested before (in that order) + new batches (in that order), merged.

    A batch ingested before must still be in the drop folder: the tables are rebuilt from it on every run, and
    quietly leaving it out would remove its playlists. A new batch must be complete (its `_SUCCESS` exists); one
    with ``batch_problems`` (at ``max_reject_share``) is refused: only its rejects are kept. ``refused``: batches
    refused before and not named again; their rejects are read again while their folder exists.
    """
    for batch_id in [*ingested, *new, *refused]:
        validate_batch_id(batch_id)
    duplicated = sorted({b for b in new if new.count(b) > 1} | (set(new) & set(ingested)))
    if duplicated:
        raise ValueError(f"batches named more than once (or already ingested): {duplicated}")
    base = read_seed_folder(data_dir)
    sources: list[tuple[str, RawTables]] = [(BASE_BATCH_ID, base)]
    for batch_id in ingested:
        folder = incoming_dir(data_dir) / batch_id
        if not folder.is_dir():
            raise IngestError(
                f"batch {batch_id!r} was ingested before but its folder {folder} is gone; restore it (the tables "
                "are rebuilt from the base folder and every ingested batch on each run)"
            )
        sources.append((batch_id, read_batch(data_dir, batch_id, require_marker=False)))
    refusals: list[tuple[str, RawTables, str]] = []
    for batch_id in new:
        batch = read_batch(data_dir, batch_id, require_marker=True)
        problems = batch_problems(batch, max_reject_share, whole_input=False)
        if problems:
            refusals.append((batch_id, batch, "; ".join(problems)))
            log.warning("batch %r refused, none of its rows is merged: %s", batch_id, "; ".join(problems))
        else:
            sources.append((batch_id, batch))
    for batch_id in refused:
        if (incoming_dir(data_dir) / batch_id).is_dir():
            refusals.append((batch_id, read_batch(data_dir, batch_id, require_marker=False), ""))
    tables, stats = merge_sources(sources)
    if refusals:
        tables.rejects = typed_if_empty(pd.concat(
            [tables.rejects, *[batch.rejects.assign(batch_id=b) for b, batch, _ in refusals]], ignore_index=True))
        refused_stats = pd.DataFrame([(b, 0, 0, 0, len(batch.rejects), 0, REFUSED, reason)
                                      for b, batch, reason in refusals], columns=BATCH_STATS_COLUMNS)
        stats = pd.concat([stats, refused_stats], ignore_index=True)
    log.info(
        "ingest %s + %d earlier batch(es) + %d new batch(es) (%d refused): %d playlists, %d playlist-song rows, "
        "%d songs, %d rejects", data_dir, len(ingested), len(new), len(refusals), len(tables.playlists),
        len(tables.playlist_songs), len(tables.songs), len(tables.rejects),
    )
    return MergedIngest(tables=tables, batch_stats=stats[stats["batch_id"] != BASE_BATCH_ID].reset_index(drop=True),
                        base=base)


def typed_if_empty(frame: pd.DataFrame) -> pd.DataFrame:
    """An empty frame's object columns as pandas strings: stored empty, an object column becomes a column of
    type NULL in DuckDB, and the next non-empty write into that table would then fail."""
    if len(frame):
        return frame
    return frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})


def empty_ledger() -> pd.DataFrame:
    ledger = pd.DataFrame({c: pd.Series(dtype=object) for c in LEDGER_COLUMNS})
    for c in ["seq", *COUNT_COLUMNS]:
        ledger[c] = ledger[c].astype("int64")
    return typed_if_empty(ledger)


def update_ledger(previous: pd.DataFrame, batch_stats: pd.DataFrame, ingested_at: str, run_id: str) -> pd.DataFrame:
    """The ledger after this run: earlier batches keep their seq, time and run (a refused batch that is now
    ingested takes this run's), counts and status are as read now; a refused batch not read again (its folder
    is gone) keeps its row."""
    previous = previous if len(previous) else empty_ledger()
    kept = previous.set_index("batch_id")
    next_seq = int(previous["seq"].max()) + 1 if len(previous) else 1
    rows = []
    for stat in batch_stats.itertuples(index=False):
        if stat.batch_id in kept.index:
            seq, at, run, status = kept.loc[stat.batch_id, ["seq", "ingested_at", "run_id", "status"]]
            if status == REFUSED and stat.status == INGESTED:
                at, run = ingested_at, run_id
        else:
            seq, at, run = next_seq, ingested_at, run_id
            next_seq += 1
        rows.append({"seq": int(seq), "batch_id": stat.batch_id, "ingested_at": str(at), "run_id": str(run),
                     **{c: int(getattr(stat, c)) for c in COUNT_COLUMNS}, "status": stat.status,
                     "reason": stat.reason or (kept.loc[stat.batch_id, "reason"] if stat.batch_id in kept.index
                                               else "")})
    read = set(batch_stats["batch_id"])
    rows += [row for row in previous.to_dict("records") if row["batch_id"] not in read and row["status"] == REFUSED]
    if not rows:
        return empty_ledger()
    ledger = pd.DataFrame(rows, columns=LEDGER_COLUMNS).sort_values("seq", kind="stable").reset_index(drop=True)
    return ledger.astype({c: "int64" for c in ["seq", *COUNT_COLUMNS]})


def read_ledger(warehouse: str | Path, table: str = "ingested_batches") -> pd.DataFrame:
    """The `ingested_batches` table of a DuckDB warehouse file, in ingestion order; empty when there is none.

    The table is looked up in any schema, so a warehouse whose schema was renamed still finds its ledger. More
    than one is ambiguous: a clear error rather than a guess.
    """
    import duckdb

    warehouse = Path(warehouse)
    if not warehouse.is_file():
        return empty_ledger()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        schemas = [r[0] for r in con.execute(
            "select table_schema from information_schema.tables where table_name = ?", [table]
        ).fetchall()]
        if not schemas:
            return empty_ledger()
        if len(schemas) > 1:
            raise IngestError(f"{warehouse}: table {table!r} exists in several schemas {schemas}; keep one")
        ledger = con.execute(f'select * from "{schemas[0]}"."{table}" order by seq').fetchdf()
    finally:
        con.close()
    if "status" not in ledger.columns:  # a ledger written before batches could be refused: all were ingested
        ledger = ledger.assign(status=INGESTED, reason="")
    missing = [c for c in LEDGER_COLUMNS if c not in ledger.columns]
    if missing:
        raise IngestError(f"{warehouse}: table {table!r} lacks column(s) {missing}")
    return ledger[LEDGER_COLUMNS].reset_index(drop=True)
