"""Group `ingest`: the three seed-format files as tables, and every bad row quarantined with a reason.

The tables are the base folder (GENRANK_DATA_DIR) plus every batch ingested from its drop folder `incoming/`
so far, plus the batches named in this run's config (see `genrank_assets.ml.batches`). The `ingested_batches`
table is the ledger of batches already in; a run that names an ingested batch again adds nothing.
"""
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from genrank_assets import paths
from genrank_assets.ml.batches import ingest_with_batches, read_ledger, update_ledger
from genrank_assets.ml.ingest import REASONS
from genrank_assets.resources import GenrankPaths


class IngestConfig(dg.Config):
    """Batches of new playlists to add in this run: folder names under GENRANK_DATA_DIR/incoming/.

    The new-batch sensor fills this in; from the UI's launchpad name a batch by hand, e.g. to retry one whose
    run failed after its files were fixed. Batches ingested before are always included again.
    """

    batches: list[str] = []  # noqa: RUF012 (pydantic copies field defaults)


@dg.multi_asset(
    group_name="ingest",
    outs={
        "raw_playlists": dg.AssetOut(description="Playlist info rows (id, title, nickname, tags, numbers)."),
        "raw_playlist_songs": dg.AssetOut(description="(playlist_id, song_id, position) in playlist order."),
        "raw_songs": dg.AssetOut(description="Song catalogue: song_id, song_name, singer."),
        "ingest_rejects": dg.AssetOut(
            description="Quarantined input rows: file, line_no, raw_line, reason, batch_id ('base' = base folder)."
        ),
        "ingested_batches": dg.AssetOut(
            description="Ledger of batches from incoming/: seq, batch_id, ingested_at, run_id, row counts."
        ),
    },
)
def raw_tables(context: dg.AssetExecutionContext, config: IngestConfig, genrank_paths: GenrankPaths):
    """Read GENRANK_DATA_DIR (or the `genrank_paths.data_dir` resource config) and its batches into tables."""
    folder = genrank_paths.data_path
    warehouse = paths.warehouse_path(genrank_paths.home_path)
    previous = read_ledger(warehouse)
    ingested = previous["batch_id"].tolist()
    again = [b for b in config.batches if b in ingested]
    new = list(dict.fromkeys(b for b in config.batches if b not in ingested))
    if again:
        context.log.info(f"batch(es) {again} were ingested before: read again, nothing is added twice")
    context.log.info(f"reading {folder} + {len(ingested)} ingested batch(es) + new batch(es) {new}")
    merged = ingest_with_batches(folder, ingested, new)
    raw = merged.tables
    ledger = update_ledger(
        previous, merged.batch_stats, datetime.now(UTC).isoformat(timespec="seconds"), context.run.run_id
    )
    counts = raw.reject_counts()
    context.log.info(
        f"{len(raw.playlists)} playlists, {len(raw.playlist_songs)} playlist-song rows, {len(raw.songs)} songs; "
        f"{len(raw.rejects)} rows quarantined: {counts}"
    )
    common = {"data_dir": str(folder), "batches_ingested": len(ledger), "new_batches": ", ".join(new) or "none"}
    # The ledger first: it names the inputs of the tables below, so a failure after it never loses a batch.
    yield dg.Output(
        ledger, "ingested_batches",
        metadata={**common, "dagster/row_count": len(ledger),
                  "ledger": dg.MetadataValue.md(ledger.to_markdown(index=False) if len(ledger) else "none")},
    )
    yield dg.Output(raw.playlists, "raw_playlists",
                    metadata={**common, "dagster/row_count": len(raw.playlists),
                              "file": merged.base.files["playlists"]})
    yield dg.Output(raw.playlist_songs, "raw_playlist_songs",
                    metadata={**common, "dagster/row_count": len(raw.playlist_songs),
                              "file": merged.base.files["playlist_songs"]})
    yield dg.Output(raw.songs, "raw_songs",
                    metadata={**common, "dagster/row_count": len(raw.songs), "file": merged.base.files["songs"]})
    by_file = raw.rejects.groupby(["batch_id", "file", "reason"]).size().rename("rows").reset_index()
    yield dg.Output(
        raw.rejects, "ingest_rejects",
        metadata={
            **common,
            "dagster/row_count": len(raw.rejects),
            **{f"rejects_{r}": counts[r] for r in REASONS},
            "rejects_by_file": dg.MetadataValue.md(by_file.to_markdown(index=False) if len(by_file) else "none"),
        },
    )


@dg.asset_check(asset="raw_playlists", blocking=True, description="Playlist ids are non-empty and unique.")
def raw_playlists_ids_valid(raw_playlists: pd.DataFrame) -> dg.AssetCheckResult:
    empty = int(raw_playlists["playlist_id"].str.strip().eq("").sum())
    dup = int(raw_playlists["playlist_id"].duplicated().sum())
    return dg.AssetCheckResult(passed=empty == 0 and dup == 0, metadata={"empty_ids": empty, "duplicate_ids": dup})


@dg.asset_check(
    asset="raw_playlist_songs", blocking=True, description="No empty ids; every row's playlist exists.",
    additional_ins={"raw_playlists": dg.AssetIn("raw_playlists")},
)
def raw_playlist_songs_ids_valid(raw_playlist_songs: pd.DataFrame, raw_playlists: pd.DataFrame) -> dg.AssetCheckResult:
    empty = int((raw_playlist_songs["playlist_id"].eq("") | raw_playlist_songs["song_id"].eq("")).sum())
    orphans = int((~raw_playlist_songs["playlist_id"].isin(set(raw_playlists["playlist_id"]))).sum())
    return dg.AssetCheckResult(passed=empty == 0 and orphans == 0, metadata={"empty_ids": empty, "orphans": orphans})


@dg.asset_check(asset="raw_songs", blocking=True, description="Song ids are non-empty and unique.")
def raw_songs_ids_valid(raw_songs: pd.DataFrame) -> dg.AssetCheckResult:
    empty = int(raw_songs["song_id"].str.strip().eq("").sum())
    dup = int(raw_songs["song_id"].duplicated().sum())
    return dg.AssetCheckResult(passed=empty == 0 and dup == 0, metadata={"empty_ids": empty, "duplicate_ids": dup})


class RejectShareConfig(dg.Config):
    max_reject_share: float = 0.10


@dg.asset_check(
    asset="ingest_rejects", description="Quarantined rows stay below a share of all rows read.",
    additional_ins={"raw_playlist_songs": dg.AssetIn("raw_playlist_songs")},
)
def ingest_rejects_share(
    config: RejectShareConfig, ingest_rejects: pd.DataFrame, raw_playlist_songs: pd.DataFrame
) -> dg.AssetCheckResult:
    share = len(ingest_rejects) / max(1, len(ingest_rejects) + len(raw_playlist_songs))
    return dg.AssetCheckResult(
        passed=share <= config.max_reject_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reject_share": share, "max_reject_share": config.max_reject_share},
    )
