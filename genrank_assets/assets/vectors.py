"""Group `vectors`: skip-gram word2vec song vectors trained on the train split only."""
import dagster as dg
import pandas as pd

from genrank_assets.ml.data.corpus import as_song_lists
from genrank_assets.ml.vectors.song_vectors import neighbour_table, to_frame, train_song_vectors


class SongVectorsConfig(dg.Config):
    """The seed used sg=1, vector_size=512, window=50, min_count=10, epochs=20 (see presets/gpu-seed.yaml).

    The defaults are smaller: on mpd7k-sized data min_count 10 throws away over half of what users want
    (docs/findings.md), and 64 dimensions did as well as 128. workers=1 keeps gensim bit-for-bit reproducible.
    """

    sg: int = 1
    vector_size: int = 64
    window: int = 50
    min_count: int = 2
    sample: float = 1e-3
    epochs: int = 10
    negative: int = 5
    workers: int = 1
    seed: int = 0


@dg.asset(group_name="vectors")
def song_vectors(
    context: dg.AssetExecutionContext, config: SongVectorsConfig, playlist_corpus: pd.DataFrame, raw_songs: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """song_id, count, vector FLOAT[dim] — from the train playlists only (docs/benchmark.md split)."""
    train = playlist_corpus[playlist_corpus["split"] == "train"]
    sentences = as_song_lists(train["song_ids"])
    context.log.info(f"training word2vec on {len(sentences)} train playlists ({sum(map(len, sentences))} rows)")
    sv = train_song_vectors(
        sentences, vector_size=config.vector_size, window=config.window, min_count=config.min_count, sg=config.sg,
        sample=config.sample, epochs=config.epochs, negative=config.negative, workers=config.workers, seed=config.seed,
    )
    context.log.info(f"{len(sv)} song vectors in {sv.stats['training_seconds']:.1f}s")
    table = neighbour_table(sv, raw_songs)
    return dg.Output(
        to_frame(sv),
        metadata={
            "dagster/row_count": len(sv),
            "vocabulary_size": len(sv),
            "dim": sv.dim,
            "train_playlists": sv.stats["train_playlists"],
            "share_train_rows_covered": round(sv.stats["share_train_rows_covered"], 4),
            "training_seconds": round(sv.stats["training_seconds"], 2),
            "deterministic": sv.stats["deterministic"],
            "nearest_neighbours": dg.MetadataValue.md(table.to_markdown(index=False)),
        },
    )
