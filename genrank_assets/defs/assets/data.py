"""Group `data`: the seed-format files as tables (every bad row quarantined with a reason) and the playlist corpus.

The raw tables are the base folder (GENRANK_DATA_DIR) plus every batch ingested from its drop folder `incoming/`
so far, plus the batches named in this run's config (see `genrank_assets.ml.data.batches`). The `ingested_batches`
table is the ledger of batches already in; a run that names an ingested batch again adds nothing.
`playlist_corpus` is one row per kept playlist with its songs in playlist order and its benchmark split.
"""
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from pydantic import Field, model_validator

import genrank_assets.paths as paths
from genrank_assets.defs.metadata import latest_metadata
from genrank_assets.defs.resources import GenrankPaths
from genrank_assets.ml.data.batches import INGESTED, REFUSED, ingest_with_batches, read_ledger, update_ledger
from genrank_assets.ml.data.corpus import HOLDOUT, LTR_HOLDOUT_SHARE, SPLITS, build_corpus
from genrank_assets.ml.data.corpus import upstream_corpus as hold_out
from genrank_assets.ml.data.ingest import REASONS, refuse_unusable


class IngestConfig(dg.Config):
    """Batches of new playlists to add in this run: folder names under GENRANK_DATA_DIR/incoming/.

    The new-batch sensor fills this in; from the UI's launchpad name a batch by hand, e.g. to retry one whose
    run failed after its files were fixed. Batches ingested before are always included again.
    """

    batches: list[str] = []  # noqa: RUF012 (pydantic copies field defaults)
    # Above this share of a file's rows rejected, the input is refused (a wrong format or a broken export, not a
    # few bad rows): a new batch alone, recorded in the ledger as refused with its rejects; the base folder (or
    # an earlier batch), by failing the run, so the current tables stay.
    max_reject_share: float = Field(default=0.9, ge=0.0, le=1.0)


@dg.multi_asset(
    group_name="data",
    outs={
        "raw_playlists": dg.AssetOut(is_required=False, description="Playlist info rows (id, title, nickname, tags, numbers)."),
        "raw_playlist_songs": dg.AssetOut(is_required=False, description="(playlist_id, song_id, position) in playlist order."),
        "raw_songs": dg.AssetOut(is_required=False, description="Song catalogue: song_id, song_name, singer."),
        "ingest_rejects": dg.AssetOut(
            is_required=False,
            description="Quarantined input rows: file, line_no, raw_line, reason, batch_id ('base' = base folder)."
        ),
        "ingested_batches": dg.AssetOut(
            is_required=False,
            description="Ledger of batches from incoming/: seq, batch_id, ingested_at, run_id, row counts."
        ),
    },
    # Upstream selections (`--select '*semantic_ids'`) pick some of the tables. Every table is a function of the
    # same inputs (base folder + ledger), so writing only the selected ones keeps them consistent, as long as the
    # ledger does not change: adding a batch needs `ingested_batches` in the selection (checked below).
    can_subset=True,
)
def raw_tables(context: dg.AssetExecutionContext, config: IngestConfig, genrank_paths: GenrankPaths):
    """Read GENRANK_DATA_DIR (or the `genrank_paths.data_dir` resource config) and its batches into tables."""
    folder = genrank_paths.data_path
    previous = read_ledger(paths.warehouse_path(genrank_paths.home_path))
    ingested = previous.loc[previous["status"] == INGESTED, "batch_id"].tolist()
    again = [b for b in config.batches if b in ingested]
    new = list(dict.fromkeys(b for b in config.batches if b not in ingested))  # a refused one named again: retried
    refused = [b for b in previous.loc[previous["status"] == REFUSED, "batch_id"] if b not in new]
    selected = context.op_execution_context.selected_output_names
    if new and "ingested_batches" not in selected:
        raise dg.DagsterInvalidConfigError(
            f"ops.raw_tables.config.batches adds {new}, but `ingested_batches` is not selected: the ledger would "
            "not record them and the next run would drop them. Select all five ingest tables (e.g. `--select "
            "'group:data'`).", [], config.batches,
        )
    if again:
        context.log.info(f"batch(es) {again} were ingested before: read again, nothing is added twice")
    context.log.info(f"reading {folder} + {len(ingested)} ingested batch(es) + new batch(es) {new}")
    merged = ingest_with_batches(folder, ingested, new, refused, config.max_reject_share)
    refusals = merged.batch_stats[(merged.batch_stats["status"] == REFUSED) & merged.batch_stats["batch_id"].isin(new)]
    for row in refusals.itertuples(index=False):
        context.log.warning(f"batch {row.batch_id!r} refused ({row.rejects} rows quarantined), nothing of it is "
                            f"merged: {row.reason}")
    ledger = update_ledger(
        previous, merged.batch_stats, datetime.now(UTC).isoformat(timespec="seconds"), context.run.run_id
    )
    raw = merged.tables
    refuse_unusable(raw, config.max_reject_share)  # before any output: nothing is replaced
    context.log.info(
        f"{len(raw.playlists)} playlists, {len(raw.playlist_songs)} playlist-song rows, {len(raw.songs)} songs; "
        f"{len(raw.rejects)} rows quarantined: {raw.reject_counts()}"
    )
    outputs = _ingest_outputs(merged, ledger, folder, new)
    skipped = [name for name, _, _ in outputs if name not in selected]
    if skipped:
        context.log.info(f"not selected in this run, left as they are: {skipped}")
    # The ledger first: it names the inputs of the tables below, so a failure after it never loses a batch.
    for name, value, metadata in outputs:
        if name in selected:
            yield dg.Output(value, name, metadata={**metadata, "dagster/row_count": len(value)})


def _ingest_outputs(merged, ledger: pd.DataFrame, folder, new: list[str]) -> list[tuple[str, pd.DataFrame, dict]]:
    """(output name, table, metadata) of the ingest multi-asset, ledger first."""
    raw, files = merged.tables, merged.base.files
    common = {"data_dir": str(folder), "batches_ingested": int((ledger["status"] == INGESTED).sum()),
              "batches_refused": int((ledger["status"] == REFUSED).sum()), "new_batches": ", ".join(new) or "none"}
    counts = raw.reject_counts()
    by_file = raw.rejects.groupby(["batch_id", "file", "reason"]).size().rename("rows").reset_index()
    return [
        ("ingested_batches", ledger,
         {**common, "ledger": dg.MetadataValue.md(ledger.to_markdown(index=False) if len(ledger) else "none")}),
        ("raw_playlists", raw.playlists, {**common, "file": files["playlists"]}),
        ("raw_playlist_songs", raw.playlist_songs, {**common, "file": files["playlist_songs"]}),
        ("raw_songs", raw.songs, {**common, "file": files["songs"]}),
        ("ingest_rejects", raw.rejects,
         {**common, **{f"rejects_{r}": counts[r] for r in REASONS},
          "rejects_by_file": dg.MetadataValue.md(by_file.to_markdown(index=False) if len(by_file) else "none")}),
    ]


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
    max_reject_share: float = Field(default=0.10, ge=0.0, le=1.0)


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

class CorpusConfig(dg.Config):
    min_songs: int = Field(default=10, ge=1)
    max_songs: int = Field(default=300, ge=1)
    drop_unknown_songs: bool = False

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_songs < self.min_songs:
            raise ValueError(f"max_songs ({self.max_songs}) must be >= min_songs ({self.min_songs})")
        return self


@dg.asset(group_name="data")
def playlist_corpus(
    context: dg.AssetExecutionContext,
    config: CorpusConfig,
    raw_playlists: pd.DataFrame,
    raw_playlist_songs: pd.DataFrame,
    raw_songs: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """playlist_id, title, tags, song_ids (playlist order), split (crc32 rule of docs/benchmark.md)."""
    result = build_corpus(
        raw_playlists, raw_playlist_songs, raw_songs,
        min_songs=config.min_songs, max_songs=config.max_songs, drop_unknown_songs=config.drop_unknown_songs,
    )
    corpus = result.corpus
    splits = corpus["split"].value_counts().to_dict()
    context.log.info(f"kept {len(corpus)} playlists, dropped {result.dropped}, splits {splits}")
    hist = pd.DataFrame({"songs": list(result.length_histogram), "playlists": list(result.length_histogram.values())})
    return dg.Output(
        corpus,
        metadata={
            "dagster/row_count": len(corpus),
            "kept": len(corpus),
            "min_songs": config.min_songs,
            "max_songs": config.max_songs,
            **{f"dropped_{k}": v for k, v in result.dropped.items()},
            "unknown_song_rows_removed": result.unknown_songs_removed,
            **{f"split_{s}": int(splits.get(s, 0)) for s in SPLITS},
            "length_histogram": dg.MetadataValue.md(hist.to_markdown(index=False)),
        },
    )


class UpstreamCorpusConfig(dg.Config):
    # 0 holds nothing out: the LTR ranker then trains on the val queries alone
    ltr_holdout_share: float = Field(default=LTR_HOLDOUT_SHARE, ge=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0)


@dg.asset(group_name="data")
def upstream_corpus(context: dg.AssetExecutionContext, config: UpstreamCorpusConfig,
                    playlist_corpus: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """What the learned upstream models (word2vec, TIGER, the cross-encoder) are fitted on: playlist_corpus with a
    share of its train playlists relabelled `holdout`. The LTR ranker trains on those playlists' candidate lists,
    so their features come from models that never saw them; classical baselines use every train playlist."""
    corpus = hold_out(playlist_corpus, config.ltr_holdout_share, config.seed)
    splits = corpus["split"].value_counts().to_dict()
    context.log.info(f"{splits.get(HOLDOUT, 0)} of {splits.get(HOLDOUT, 0) + splits.get('train', 0)} train "
                     f"playlists held out from the upstream models for the LTR ranker")
    return dg.Output(corpus, metadata={
        "dagster/row_count": len(corpus), "ltr_holdout_share": config.ltr_holdout_share,
        **{f"split_{s}": int(splits.get(s, 0)) for s in (*SPLITS, HOLDOUT)}})


class SplitCheckConfig(dg.Config):
    # Expected shares are 0.8/0.1/0.1; small corpora drift, so the tolerance is generous by default.
    tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    min_playlists_for_check: int = Field(default=200, ge=0)


@dg.asset_check(asset=playlist_corpus, blocking=True, description="No empty ids; every playlist within length bounds.")
def playlist_corpus_valid(context: dg.AssetCheckExecutionContext, playlist_corpus: pd.DataFrame) -> dg.AssetCheckResult:
    # The bounds the asset ran with are in its materialisation metadata (they are run config, not constants).
    meta = latest_metadata(context.instance, dg.AssetKey("playlist_corpus"))  # `playlist_corpus` is the frame here
    lo = int(meta.get("min_songs", CorpusConfig().min_songs))
    hi = int(meta.get("max_songs", CorpusConfig().max_songs))
    lengths = playlist_corpus["song_ids"].map(len)
    out_of_bounds = int(((lengths < lo) | (lengths > hi)).sum())
    empty_ids = int(playlist_corpus["playlist_id"].eq("").sum())
    dup = int(playlist_corpus["playlist_id"].duplicated().sum())
    return dg.AssetCheckResult(
        passed=empty_ids == 0 and dup == 0 and out_of_bounds == 0 and len(playlist_corpus) > 0,
        metadata={"empty_ids": empty_ids, "duplicate_ids": dup, "out_of_length_bounds": out_of_bounds,
                  "min_length": int(lengths.min()) if len(lengths) else 0,
                  "max_length": int(lengths.max()) if len(lengths) else 0, "bounds": f"{lo}-{hi}"},
    )


@dg.asset_check(asset=playlist_corpus, description="Split shares near 80/10/10 (crc32 rule).")
def playlist_corpus_split_proportions(config: SplitCheckConfig, playlist_corpus: pd.DataFrame) -> dg.AssetCheckResult:
    n = len(playlist_corpus)
    shares = {s: float((playlist_corpus["split"] == s).mean()) if n else 0.0 for s in SPLITS}
    expected = {"train": 0.8, "val": 0.1, "test": 0.1}
    worst = max(abs(shares[s] - expected[s]) for s in SPLITS)
    passed = n < config.min_playlists_for_check or worst <= config.tolerance
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.WARN,
        metadata={**{f"share_{s}": v for s, v in shares.items()}, "max_deviation": worst, "playlists": n},
    )
