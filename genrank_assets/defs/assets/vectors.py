"""Group `vectors`: skip-gram word2vec song vectors trained on the train split only."""
import dagster as dg
import pandas as pd
from pydantic import Field

from genrank_assets.defs.resources import GenrankPaths, step_name
from genrank_assets.ml.data.corpus import as_song_lists
from genrank_assets.ml.vectors.song_vectors import W2V, neighbour_table, save_word2vec, to_frame, train_word2vec


class SongVectorsConfig(dg.Config):
    """word2vec hyperparameters; the defaults (and why) are `ml.vectors.song_vectors.Word2VecDefaults`."""

    sg: int = Field(default=W2V.sg, ge=0, le=1)  # 1 skip-gram, 0 CBOW
    vector_size: int = Field(default=W2V.vector_size, ge=1)
    window: int = Field(default=W2V.window, ge=1)
    min_count: int = Field(default=W2V.min_count, ge=1)
    sample: float = Field(default=W2V.sample, ge=0.0)
    epochs: int = Field(default=W2V.epochs, ge=1)
    negative: int = Field(default=W2V.negative, ge=0)
    workers: int = Field(default=W2V.workers, ge=1)
    seed: int = Field(default=W2V.seed, ge=0)


@dg.asset(group_name="vectors")
def song_vectors(
    context: dg.AssetExecutionContext, config: SongVectorsConfig, upstream_corpus: pd.DataFrame, raw_songs: pd.DataFrame,
    genrank_paths: GenrankPaths,
) -> dg.Output[pd.DataFrame]:
    """song_id, count, vector FLOAT[dim] — from the train playlists only (docs/benchmark.md split), less the LTR
    holdout (upstream_corpus). The gensim model is saved beside (metadata `word2vec_model`): the catalogue
    refresh continues it on new playlists (`ml/catalogue/`)."""
    train = upstream_corpus[upstream_corpus["split"] == "train"]
    sentences = as_song_lists(train["song_ids"])
    context.log.info(f"training word2vec on {len(sentences)} train playlists ({sum(map(len, sentences))} rows)")
    sv, model = train_word2vec(sentences, **config.model_dump())
    model_path = genrank_paths.artifacts("vectors", step_name(context)) / f"word2vec-{context.run.run_id[:8]}.model"
    save_word2vec(model, model_path, train["playlist_id"].astype(str))
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
            "word2vec_model": str(model_path),
            "nearest_neighbours": dg.MetadataValue.md(table.to_markdown(index=False)),
        },
    )
