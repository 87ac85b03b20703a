"""Group `corpus`: one row per kept playlist with songs in playlist order and the benchmark split."""

import dagster as dg
import pandas as pd

from genrank_assets.ml.corpus import SPLITS, build_corpus


class CorpusConfig(dg.Config):
    min_songs: int = 10
    max_songs: int = 300
    drop_unknown_songs: bool = False


@dg.asset(group_name="corpus")
def playlist_corpus(
    context: dg.AssetExecutionContext,
    config: CorpusConfig,
    raw_playlists: pd.DataFrame,
    raw_playlist_songs: pd.DataFrame,
    raw_songs: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """playlist_id, title, tags, song_ids (playlist order), split (crc32 rule of BENCHMARK.md)."""
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


class SplitCheckConfig(dg.Config):
    # Expected shares are 0.8/0.1/0.1; small corpora drift, so the tolerance is generous by default.
    tolerance: float = 0.05
    min_playlists_for_check: int = 200


@dg.asset_check(asset=playlist_corpus, blocking=True, description="No empty ids; every playlist within length bounds.")
def playlist_corpus_valid(context: dg.AssetCheckExecutionContext, playlist_corpus: pd.DataFrame) -> dg.AssetCheckResult:
    # The bounds the asset ran with are in its materialisation metadata (they are run config, not constants).
    event = context.instance.get_latest_materialization_event(dg.AssetKey("playlist_corpus"))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    lo = int(meta["min_songs"].value) if "min_songs" in meta else CorpusConfig().min_songs
    hi = int(meta["max_songs"].value) if "max_songs" in meta else CorpusConfig().max_songs
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
