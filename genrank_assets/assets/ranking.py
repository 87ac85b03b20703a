"""Group `ranking`: (title, song, label) examples with hard negatives, and the cross-encoder in MLflow."""
import time

import dagster as dg
import mlflow
import pandas as pd

from genrank_assets.ml.plots import history_plot, markdown_image
from genrank_assets.ml.ranking.ranker_model import CrossEncoderRanker, build_ranker_examples, save_ranker, train_ranker
from genrank_assets.ml.semantic_ids.codes import codes_from_frame
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.recommender import save_song_side, song_text
from genrank_assets.ml.vectors.song_vectors import from_frame
from genrank_assets.resources import GPU_TAGS, ComputeResource, GenrankPaths, MlflowRegistry


class RankerDatasetConfig(dg.Config):
    max_positives_per_playlist: int = 20
    negatives_per_positive: int = 4
    random_negative_share: float = 0.5  # the rest: generator proposals and same level-1 cluster songs
    popularity_weighted: bool = True
    generator_negatives: bool = True
    generator_candidates: int = 50
    generator_beams: int = 10
    seed: int = 0


def song_texts(raw_songs: pd.DataFrame) -> dict[str, str]:
    """'song name - singer' per song id, the text the ranker reads beside the title."""
    return {str(sid): song_text(str(name), str(singer))
            for sid, name, singer in zip(raw_songs["song_id"], raw_songs["song_name"], raw_songs["singer"])}


@dg.asset(group_name="ranking", kinds={"pandas"})
def ranker_dataset(
    context: dg.AssetExecutionContext,
    config: RankerDatasetConfig,
    playlist_corpus: pd.DataFrame,
    song_vectors: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    tiger_model: str,
    compute: ComputeResource,
    mlflow_registry: MlflowRegistry,
) -> dg.Output[pd.DataFrame]:
    """Rows (playlist_id, split, text, song_id, label, negative_kind) for train and val playlists (split by playlist)."""
    compute.apply_threads()
    mlflow_registry.setup()  # the generator is read back from the registry by its URI
    sv = from_frame(song_vectors)
    song_ids, codes = codes_from_frame(semantic_ids)
    cluster_of = dict(zip(song_ids, codes[:, 0].tolist()))
    hard_fn = None
    if config.generator_negatives:
        generator = registry.load_python_model(tiger_model).generator
        titles = playlist_corpus.loc[playlist_corpus["split"].isin(["train", "val"]), "title"].astype(str)
        titles = sorted({t for t in titles if t.strip()})
        context.log.info(f"generating {config.generator_candidates} candidates for {len(titles)} distinct titles "
                         f"({config.generator_beams} beams) for hard negatives")
        t0 = time.perf_counter()
        proposals = {}
        for start in range(0, len(titles), 256):
            chunk = titles[start:start + 256]
            for t, cands in zip(chunk, generator.generate_candidates_batch(chunk, n=config.generator_candidates,
                                                                            num_beams=config.generator_beams)):
                proposals[t] = list(cands)
            context.log.info(f"  {min(start + 256, len(titles))}/{len(titles)} titles")
        context.log.info(f"generator proposals in {time.perf_counter() - t0:.1f}s")
        hard_fn = lambda title: proposals.get(title, [])  # noqa: E731
    parts = []
    for split in ("train", "val"):
        parts.append(build_ranker_examples(
            playlist_corpus, sv, split=split, max_positives_per_playlist=config.max_positives_per_playlist,
            negatives_per_positive=config.negatives_per_positive, random_negative_share=config.random_negative_share,
            popularity_weighted=config.popularity_weighted, hard_negative_fn=hard_fn, cluster_of=cluster_of,
            seed=config.seed,
        ))
    df = pd.concat(parts, ignore_index=True)
    counts = df.groupby(["split", "negative_kind"]).size().rename("rows").reset_index()
    meta = {f"{r.split}_{r.negative_kind}": int(r.rows) for r in counts.itertuples()}
    return dg.Output(df, metadata={"dagster/row_count": len(df), **meta,
                                   "playlists_train": int(df.loc[df.split == "train", "playlist_id"].nunique()),
                                   "playlists_val": int(df.loc[df.split == "val", "playlist_id"].nunique()),
                                   "counts": dg.MetadataValue.md(counts.to_markdown(index=False))})


class RankerModelConfig(dg.Config):
    init_from: str = "tiger"  # tiger (the trained TIGER encoder) | base_model | scratch
    base_model: str = ""  # local path or hub name, when init_from=base_model
    preset: str = "tiny"  # when init_from=scratch
    song_positions: int = 1
    use_song_text: bool = True
    max_title_tokens: int = 32
    max_song_text_tokens: int = 32
    interaction_dim: int = 32  # bilinear title x song-vector term beside the MLP head (0 = none)
    epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    early_stopping_patience: int = 2
    checkpoint_every_steps: int = 500
    max_steps: int = 0  # 0 = no cap
    seed: int = 0


@dg.asset(group_name="ranking", op_tags=GPU_TAGS, kinds={"pytorch", "mlflow"}, io_manager_key="model_io_manager")
def ranker_model(
    context: dg.AssetExecutionContext,
    config: RankerModelConfig,
    ranker_dataset: pd.DataFrame,
    song_vectors: pd.DataFrame,
    raw_songs: pd.DataFrame,
    tiger_model: str,
    compute: ComputeResource,
    genrank_paths: GenrankPaths,
    mlflow_registry: MlflowRegistry,
) -> dg.Output[str]:
    """Cross-encoder (title tokens + projected song vector in one T5 encoder), registered as `genrank-ranker`."""
    sv = from_frame(song_vectors)
    device = compute.resolved_device()
    precision = compute.resolved_precision()
    compute.apply_threads()
    mlflow_registry.setup()  # the TIGER encoder is read back from the registry by its URI
    texts = song_texts(raw_songs)
    head = dict(song_positions=config.song_positions, use_song_text=config.use_song_text,
                max_title_tokens=config.max_title_tokens, max_song_text_tokens=config.max_song_text_tokens,
                interaction_dim=config.interaction_dim)
    if config.init_from == "tiger":
        generator = registry.load_python_model(tiger_model).generator
        ranker = CrossEncoderRanker.from_encoder(generator.model, generator.tokenizer, sv.dim, **head)
    elif config.init_from == "base_model":
        if not config.base_model:
            raise ValueError("ranker_model: init_from=base_model needs base_model (a local path or hub name)")
        ranker = CrossEncoderRanker.from_pretrained_base(config.base_model, sv.dim, **head)
    elif config.init_from == "scratch":
        generator = registry.load_python_model(tiger_model).generator
        ranker = CrossEncoderRanker.from_config(generator.tokenizer, config.preset, sv.dim, seed=config.seed, **head)
    else:
        raise ValueError(f"ranker_model: init_from must be tiger, base_model or scratch, got {config.init_from!r}")
    train = ranker_dataset[ranker_dataset["split"] == "train"]
    val = ranker_dataset[ranker_dataset["split"] == "val"]
    context.log.info(f"training ranker ({config.init_from}) on {len(train)} pairs, {len(val)} val pairs, {device}")
    result = train_ranker(
        ranker, train, val if len(val) else None, sv, texts if config.use_song_text else None,
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay, early_stopping_patience=config.early_stopping_patience, device=device,
        precision=precision, seed=config.seed, checkpoint_dir=genrank_paths.checkpoints("ranker_model"),
        checkpoint_every_steps=config.checkpoint_every_steps, max_steps=config.max_steps or None,
        log_fn=context.log.info,
    )
    ranker = ranker.to("cpu")
    out_dir = genrank_paths.artifacts("ranker_model", time.strftime("%Y%m%d-%H%M%S") + f"-{context.run_id[:8]}")
    save_ranker(ranker, out_dir / "ranker")
    save_song_side(out_dir / "songs", sv, raw_songs)
    history = [h for h in result.history if not h.get("partial")]
    plot = history_plot(history, ["train_loss", "val_loss", "val_auc"], out_dir / "curves.png", title="ranker")

    mlflow_registry.setup()
    with mlflow.start_run(run_name=f"ranker_model-{context.run_id[:8]}"):
        mlflow.log_params({**config.model_dump(), "device": device, "precision": precision,
                           "train_pairs": len(train), "dagster_run_id": context.run_id, "tiger_model": tiger_model})
        registry.log_history(history)
        if result.best_val_auc is not None:
            mlflow.log_metric("best_val_auc", float(result.best_val_auc))
        mlflow.log_metrics({"train_seconds": float(result.train_seconds),
                            "train_samples_per_second": float(result.train_samples_per_second)})
        mlflow.log_artifact(str(plot), "plots")
        reg = registry.log_model_dir(out_dir / "ranker", registered_name=registry.RANKER_NAME,
                                     python_model=registry.RankerPyfunc(),
                                     extra_artifacts={"songs_dir": str(out_dir / "songs")})
    last = history[-1] if history else {}
    return dg.Output(
        reg.uri,
        metadata={
            "model_uri": reg.uri, "mlflow_run_id": reg.run_id, "version": reg.version, "model_dir": str(out_dir),
            "device": device, "init_from": config.init_from, "train_pairs": len(train), "val_pairs": len(val),
            "best_val_auc": float(result.best_val_auc) if result.best_val_auc is not None else float("nan"),
            **{k: float(last[k]) for k in ("val_f1", "val_precision", "val_recall", "val_accuracy") if k in last},
            "train_seconds": round(float(result.train_seconds), 1),
            "resumed_from_step": int(result.resumed_from_step or 0),
            "curves": dg.MetadataValue.md(markdown_image(plot, "ranker curves") + "\n\n"
                                          + (pd.DataFrame(history).to_markdown(index=False) if history else "")),
        },
    )
