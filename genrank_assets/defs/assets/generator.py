"""Group `generator`: (title -> semantic-ID tokens) pairs and the TIGER model registered in MLflow."""

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from genrank_assets.defs.config import check_one_of, config_fields, training_fields
from genrank_assets.defs.metadata import latest_metadata
from genrank_assets.defs.resources import (
    GPU_TAGS,
    ComputeResource,
    GenrankPaths,
    MlflowRegistry,
    TrainingDeviceConfig,
    step_name,
    step_run,
)
from genrank_assets.ml.data.corpus import train_popularity
from genrank_assets.ml.generator.dataset import (
    GENERATOR_DATASET,
    SONG_ORDERS,
    build_generator_dataset,
    examples_from_pairs,
)
from genrank_assets.ml.generator.model import MODEL_PRESETS, PRIOR_MASSES, TARGET_MODES, TIGER, build_model
from genrank_assets.ml.generator.tiger import CodeTable, TigerGenerator, save_tiger
from genrank_assets.ml.generator.tokenizer import make_tokenizer
from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger
from genrank_assets.ml.plots import history_plot, markdown_image
from genrank_assets.ml.semantic_ids.codes import code_space, codes_from_frame
from genrank_assets.ml.serving import registry
from genrank_assets.ml.training import judge_training


class GeneratorDatasetConfig(dg.Config):
    """(title -> codes) pairs; defaults and their meaning: ml.generator.dataset.GeneratorDatasetDefaults."""

    song_order: str = GENERATOR_DATASET.song_order
    max_songs_per_target: int = Field(default=GENERATOR_DATASET.max_songs_per_target, ge=1)
    windows_per_playlist: int = Field(default=GENERATOR_DATASET.windows_per_playlist, ge=1)
    include_tags: bool = GENERATOR_DATASET.include_tags
    seed: int = Field(default=GENERATOR_DATASET.seed, ge=0)

    @model_validator(mode="after")
    def _known_order(self):
        check_one_of("song_order", self.song_order, SONG_ORDERS)
        return self


@dg.asset(group_name="generator")
def generator_dataset(
    context: dg.AssetExecutionContext,
    config: GeneratorDatasetConfig,
    upstream_corpus: pd.DataFrame,
    semantic_ids: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Rows (playlist_id, split, text, target): train and val playlists only; test and the LTR holdout never reach
    training."""
    song_ids, codes = codes_from_frame(semantic_ids)
    code_of = {s: tuple(int(v) for v in c) for s, c in zip(song_ids, codes)}
    df, stats = build_generator_dataset(
        upstream_corpus, code_of, train_popularity(upstream_corpus), song_order=config.song_order,
        max_songs_per_target=config.max_songs_per_target, windows_per_playlist=config.windows_per_playlist,
        include_tags=config.include_tags, seed=config.seed,
    )
    context.log.info(f"generator dataset: {stats}")
    hist = np.histogram(df["n_codes"], bins=[1, 2, 5, 10, 20, 50, 100, 200, 10**6])[0] if len(df) else []
    edges = ["1", "2-4", "5-9", "10-19", "20-49", "50-99", "100-199", "200+"]
    hist_md = pd.DataFrame({"codes per target": edges, "pairs": list(hist)}).to_markdown(index=False)
    return dg.Output(df, metadata={"dagster/row_count": len(df), **stats,
                                   "target_length_histogram": dg.MetadataValue.md(hist_md)})


_TigerSettings = config_fields(TIGER, auto=("num_beams",), base=TrainingDeviceConfig)


class TigerModelConfig(training_fields(TIGER_TRAINING, auto=("epochs",), base=_TigerSettings)):
    """The generator's settings and training; defaults: ml.generator.model.TIGER and ...training.TIGER_TRAINING;
    None ("auto"): the default for this asset's device, ml.device_defaults (CPU-sized unless it resolves to CUDA).
    ``base_model``: from_scratch, or a local path / hub name of a pretrained T5 (Langboat/mengzi-t5-base)."""

    gradient_checkpointing: bool = False
    max_steps: int = 0  # 0 = no cap

    @model_validator(mode="after")
    def _known_values(self):
        check_one_of("target_mode", self.target_mode, TARGET_MODES)
        check_one_of("prior_mass", self.prior_mass, PRIOR_MASSES)
        if self.base_model == "from_scratch":
            check_one_of("preset", self.preset, sorted(MODEL_PRESETS))
        small = {k: getattr(self, k) for k in ("vocab_size", "max_codes", "samples_per_playlist", "max_input_length",
                                                "num_beams") if (getattr(self, k) or 1) < 1}
        if small:
            raise ValueError(f"must be >= 1: {small}")
        if self.prior_weight < 0:
            raise ValueError(f"prior_weight must be >= 0 (0 = no popularity prior), got {self.prior_weight}")
        return self


def song_popularity_array(song_ids: list[str], corpus: pd.DataFrame) -> np.ndarray:
    pop = train_popularity(corpus)
    return np.array([pop.get(s, 0) for s in song_ids], dtype=np.float64)


@dg.asset(group_name="generator", op_tags=GPU_TAGS, kinds={"pytorch", "mlflow"}, io_manager_key="model_io_manager")
def tiger_model(
    context: dg.AssetExecutionContext,
    config: TigerModelConfig,
    generator_dataset: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    semantic_id_metrics: pd.DataFrame,
    upstream_corpus: pd.DataFrame,
    compute: ComputeResource,
    genrank_paths: GenrankPaths,
    mlflow_registry: MlflowRegistry,
) -> dg.Output[str]:
    """T5 text -> semantic-ID generator, logged in MLflow; value: the logged model's URI. It becomes a version of
    `genrank-tiger` only when the evaluation registers it, after its blocking check passed."""
    resolved, config, auto = compute.for_step("tiger_model", config, context.log.info)
    song_ids, codes = codes_from_frame(semantic_ids)
    levels = code_space(semantic_id_metrics)
    train = generator_dataset[generator_dataset["split"] == "train"]
    tokenizer = make_tokenizer(config.base_model, train["text"].tolist(), levels, vocab_size=config.vocab_size,
                               max_length=config.max_input_length)
    model = build_model(tokenizer, config.base_model, config.preset, seed=config.seed)
    settings = dict(mode=config.target_mode, max_codes=config.max_codes, max_input_length=config.max_input_length,
                    samples_per_playlist=config.samples_per_playlist)
    train_ds = examples_from_pairs(train, tokenizer, seed=config.seed, **settings)
    val_ds = examples_from_pairs(generator_dataset[generator_dataset["split"] == "val"], tokenizer,
                                 seed=config.seed + 1, **settings)
    n_params = int(sum(p.numel() for p in model.parameters()))
    context.log.info(f"training TIGER ({config.base_model}/{config.preset}, {n_params:,} parameters) on "
                     f"{len(train_ds or [])} examples, {len(val_ds or [])} val, {resolved.device} {resolved.precision}")
    with step_run(context, genrank_paths, mlflow_registry) as step:
        result = train_tiger(model, tokenizer, train_ds, val_ds, config.train_config(), resolved,
                             gradient_checkpointing=config.gradient_checkpointing,
                             checkpoint_dir=genrank_paths.checkpoints(step_name(context)), log_fn=context.log.info)
        code_table = CodeTable(song_ids=song_ids, codes=codes,
                               popularity=song_popularity_array(song_ids, upstream_corpus))
        generator = TigerGenerator(model.to("cpu"), tokenizer, code_table, target_mode=config.target_mode,
                                   max_codes=config.max_codes, max_input_length=config.max_input_length,
                                   num_beams=config.num_beams, prior_weight=config.prior_weight,
                                   prior_mass=config.prior_mass)
        save_tiger(generator, step.folder)
        plot = history_plot(result.epochs, ["train_loss", "val_loss"],
                            step.folder.parent / f"{step.folder.name}-loss.png", title="TIGER loss")
        summary = result.summary()
        mlflow.log_params({**config.model_dump(), "device": resolved.device, "precision": resolved.precision,
                           "device_defaults": ",".join(auto) or "none",
                           "levels": str(levels), "train_examples": len(train_ds), "dagster_run_id": context.run.run_id})
        registry.log_history(result.epochs)
        mlflow.log_metrics({k: v for k, v in summary.items() if not isinstance(v, str)})
        mlflow.log_artifact(str(plot), "plots")
        reg = registry.log_model_dir(step.folder, registered_name=None, python_model=registry.TIGER_CODE)
    context.log.info(f"logged {reg.uri} (run {step.run_id}); the evaluation registers it once its checks pass")
    history_md = pd.DataFrame(result.history).to_markdown(index=False) if result.history else "no epochs"
    return dg.Output(reg.uri, metadata={
        "model_uri": reg.uri, "mlflow_run_id": reg.run_id, "model_dir": str(step.folder), "parameters": n_params,
        "train_examples": len(train_ds), **summary,
        "device": resolved.device, "precision": resolved.precision, "epochs_configured": config.epochs,
        "num_beams": config.num_beams, "device_defaults": dg.MetadataValue.json(auto),
        "loss_curve": dg.MetadataValue.md(markdown_image(plot, "loss") + "\n\n" + history_md),
    })


@dg.asset_check(asset=tiger_model, blocking=True, description="Weights all finite; val loss below the untrained "
                "model's (measured before training). A failure stops the ranker and the evaluation.")
def tiger_model_learned(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta = latest_metadata(context.instance, tiger_model.key)
    passed, figures = judge_training(meta["model_dir"], meta)
    return dg.AssetCheckResult(passed=passed, metadata=figures)
