"""Group `generator`: (title -> semantic-ID tokens) pairs and the TIGER model registered in MLflow."""
import time

import dagster as dg
import mlflow
import numpy as np
import pandas as pd

from genrank_assets.ml.data.corpus import train_popularity
from genrank_assets.ml.generator.dataset import build_generator_dataset, parse_target
from genrank_assets.ml.generator.tiger import (
    CodeTable,
    TigerDataset,
    TigerGenerator,
    build_model,
    build_tokenizer,
    load_pretrained_tokenizer,
    save_tiger,
)
from genrank_assets.ml.generator.training import train_tiger
from genrank_assets.ml.plots import history_plot, markdown_image
from genrank_assets.ml.semantic_ids.codes import codes_from_frame
from genrank_assets.ml.serving import registry
from genrank_assets.resources import GPU_TAGS, ComputeResource, GenrankPaths, MlflowRegistry


class GeneratorDatasetConfig(dg.Config):
    song_order: str = "playlist"  # playlist | popularity
    max_songs_per_target: int = 20  # the seed used ~127 on GPU
    windows_per_playlist: int = 1  # >1: long playlists yield several targets (augmentation)
    include_tags: bool = False
    seed: int = 0


@dg.asset(group_name="generator")
def generator_dataset(
    context: dg.AssetExecutionContext,
    config: GeneratorDatasetConfig,
    playlist_corpus: pd.DataFrame,
    semantic_ids: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Rows (playlist_id, split, text, target): train and val playlists only; test never reaches training."""
    song_ids, codes = codes_from_frame(semantic_ids)
    code_of = {s: tuple(int(v) for v in c) for s, c in zip(song_ids, codes)}
    df, stats = build_generator_dataset(
        playlist_corpus, code_of, train_popularity(playlist_corpus), song_order=config.song_order,
        max_songs_per_target=config.max_songs_per_target, windows_per_playlist=config.windows_per_playlist,
        include_tags=config.include_tags, seed=config.seed,
    )
    context.log.info(f"generator dataset: {stats}")
    hist = np.histogram(df["n_codes"], bins=[1, 2, 5, 10, 20, 50, 100, 200, 10**6])[0] if len(df) else []
    edges = ["1", "2-4", "5-9", "10-19", "20-49", "50-99", "100-199", "200+"]
    hist_md = pd.DataFrame({"codes per target": edges, "pairs": list(hist)}).to_markdown(index=False)
    return dg.Output(df, metadata={"dagster/row_count": len(df), **stats,
                                   "target_length_histogram": dg.MetadataValue.md(hist_md)})


class TigerModelConfig(dg.Config):
    base_model: str = "from_scratch"  # or a local path / hub name of a pretrained T5 (Langboat/mengzi-t5-base)
    preset: str = "tiny"  # from_scratch size: tiny | small | base
    vocab_size: int = 2000
    target_mode: str = "single"  # single (one code per example, TIGER) | sequence (the seed's)
    max_codes: int = 20
    samples_per_playlist: int = 4
    max_input_length: int = 64
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    early_stopping_patience: int = 3
    gradient_checkpointing: bool = False
    checkpoint_every_steps: int = 500
    max_steps: int = 0  # 0 = no cap
    num_beams: int = 50
    seed: int = 0


def song_popularity_array(song_ids: list[str], corpus: pd.DataFrame) -> np.ndarray:
    pop = train_popularity(corpus)
    return np.array([pop.get(s, 0) for s in song_ids], dtype=np.float64)


@dg.asset(group_name="generator", op_tags=GPU_TAGS, kinds={"pytorch", "mlflow"}, io_manager_key="model_io_manager")
def tiger_model(
    context: dg.AssetExecutionContext,
    config: TigerModelConfig,
    generator_dataset: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    playlist_corpus: pd.DataFrame,
    compute: ComputeResource,
    genrank_paths: GenrankPaths,
    mlflow_registry: MlflowRegistry,
) -> dg.Output[str]:
    """T5 text -> semantic-ID generator, registered as a new version of `genrank-tiger`; value: the model URI."""
    import torch

    device = compute.resolved_device()
    precision = compute.resolved_precision()
    compute.apply_threads()
    torch.manual_seed(config.seed)
    song_ids, codes = codes_from_frame(semantic_ids)
    levels = [int(v) for v in codes.max(axis=0) + 1]
    train = generator_dataset[generator_dataset["split"] == "train"]
    val = generator_dataset[generator_dataset["split"] == "val"]
    if config.base_model == "from_scratch":
        tokenizer = build_tokenizer(train["text"].tolist(), levels, vocab_size=config.vocab_size,
                                    max_length=config.max_input_length)
    else:
        tokenizer = load_pretrained_tokenizer(config.base_model, levels, max_length=config.max_input_length)
    model = build_model(tokenizer, config.base_model, config.preset, seed=config.seed)

    def dataset(part: pd.DataFrame, seed: int) -> TigerDataset:
        return TigerDataset(
            part["text"].tolist(), [np.asarray(parse_target(t), dtype=np.int64) for t in part["target"]], tokenizer,
            mode=config.target_mode, max_codes=config.max_codes, samples_per_playlist=config.samples_per_playlist,
            max_input_length=config.max_input_length, seed=seed,
        )

    train_ds, val_ds = dataset(train, config.seed), dataset(val, config.seed + 1) if len(val) else None
    context.log.info(f"training TIGER ({config.base_model}/{config.preset}, {sum(p.numel() for p in model.parameters()):,} "
                     f"parameters) on {len(train_ds)} examples, {len(val_ds or [])} val, device {device} {precision}")
    result = train_tiger(
        model, tokenizer, train_ds, val_ds, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
        early_stopping_patience=config.early_stopping_patience, device=device, precision=precision,
        gradient_checkpointing=config.gradient_checkpointing, seed=config.seed,
        checkpoint_dir=genrank_paths.checkpoints("tiger_model"), checkpoint_every_steps=config.checkpoint_every_steps,
        max_steps=config.max_steps or None, log_fn=context.log.info,
    )
    code_table = CodeTable(song_ids=song_ids, codes=codes, popularity=song_popularity_array(song_ids, playlist_corpus))
    generator = TigerGenerator(model.to("cpu"), tokenizer, code_table, target_mode=config.target_mode,
                               max_codes=config.max_codes, max_input_length=config.max_input_length,
                               num_beams=config.num_beams)
    out_dir = genrank_paths.artifacts("tiger_model", time.strftime("%Y%m%d-%H%M%S") + f"-{context.run_id[:8]}")
    save_tiger(generator, out_dir)
    plot = history_plot(result.history, ["train_loss", "val_loss"], out_dir.parent / f"{out_dir.name}-loss.png",
                        title="TIGER loss")

    mlflow_registry.setup()
    with mlflow.start_run(run_name=f"tiger_model-{context.run_id[:8]}") as run:
        mlflow.log_params({**config.model_dump(), "device": device, "precision": precision, "levels": str(levels),
                           "train_examples": len(train_ds), "dagster_run_id": context.run_id})
        registry.log_history(result.history)
        mlflow.log_metrics({"overall_samples_per_second": result.samples_per_second, "train_seconds": result.seconds,
                            **({"best_val_loss": result.best_val_loss} if result.best_val_loss is not None else {})})
        mlflow.log_artifact(str(plot), "plots")
        reg = registry.log_model_dir(out_dir, registered_name=registry.TIGER_NAME, python_model=registry.TigerPyfunc())
    context.log.info(f"registered {reg.uri} (run {run.info.run_id})")
    history_md = pd.DataFrame(result.history).to_markdown(index=False) if result.history else "no epochs"
    return dg.Output(
        reg.uri,
        metadata={
            "model_uri": reg.uri, "mlflow_run_id": reg.run_id, "version": reg.version, "model_dir": str(out_dir),
            "parameters": int(sum(p.numel() for p in model.parameters())), "device": device, "precision": precision,
            "train_examples": len(train_ds), "epochs_run": len(result.history), "stop_reason": result.stop_reason,
            "best_val_loss": float(result.best_val_loss) if result.best_val_loss is not None else float("nan"),
            "samples_per_second": round(result.samples_per_second, 1), "train_seconds": round(result.seconds, 1),
            "resumed_from_step": result.resumed_from_step or 0,
            "loss_curve": dg.MetadataValue.md(markdown_image(plot, "loss") + "\n\n" + history_md),
        },
    )
