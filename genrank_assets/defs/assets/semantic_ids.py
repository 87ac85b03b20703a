"""Group `semantic_ids`: balanced hierarchical residual K-Means codes for every vectored song."""
import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from genrank_assets.defs.resources import ComputeResource, DeviceConfig, GenrankPaths, step_name
from genrank_assets.ml.plots import code_usage_plot, markdown_image, songs_per_code_plot
from genrank_assets.ml.semantic_ids.codes import code_space_of, codes_from_frame, codes_to_frame, metrics_frame
from genrank_assets.ml.semantic_ids.metrics import semantic_id_metrics, semantic_id_tables
from genrank_assets.ml.semantic_ids.rq_kmeans import (
    DEFAULT_LEVELS,
    DEFAULT_MIN_CLUSTER_SIZE,
    DEFAULT_N_ITER,
    RQKMeans,
)
from genrank_assets.ml.vectors.song_vectors import from_frame


class SemanticIdsConfig(DeviceConfig):
    """Defaults are the seed's [128, 128, 256]. Keep prod(levels[:2]) well below the catalogue size, or level 2
    already gives most songs their own cluster (the demo preset uses [32, 16, 8] for 6,000 songs). ``device``
    (empty: the compute resource's): where RQ-KMeans runs, e.g. ``cpu`` while the models train on CUDA."""

    levels: list[int] = list(DEFAULT_LEVELS)
    balanced: bool = True
    balance_slack: float = 0.0  # capacity = ceil(n/k * (1 + slack)); > 0 trades uniqueness for coherence
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE  # why 2: see rq_kmeans.DEFAULT_MIN_CLUSTER_SIZE
    unique_codes: bool = False  # append a disambiguation level so every song's code is unique (TIGER)
    normalize_residuals: bool = True
    n_iter: int = DEFAULT_N_ITER
    seed: int = 0
    metrics_sample_size: int = Field(default=5000, ge=2)

    @model_validator(mode="after")
    def _estimator_accepts_it(self):
        # The estimator's own argument checks are the rules (levels, n_iter, min_cluster_size, seed, slack).
        RQKMeans(levels=tuple(self.levels), balanced=self.balanced, unique_codes=self.unique_codes,
                 normalize_residuals=self.normalize_residuals, n_iter=self.n_iter, seed=self.seed,
                 min_cluster_size=self.min_cluster_size, balance_slack=self.balance_slack)
        return self


class SemanticIdGateConfig(dg.Config):
    min_coverage: float = Field(default=0.5, ge=0.0, le=1.0)  # floor on distinct codes / songs, as a share of
    # what the code space can reach
    max_balance_ratio: float = Field(default=3.0, ge=1.0)  # ceiling on max / mean level-1 cluster size


@dg.multi_asset(
    group_name="semantic_ids",
    outs={
        "semantic_ids": dg.AssetOut(
            is_required=False, description="song_id, l1, l2, l3 (, l4 disambiguation): one code per vectored song."),
        "semantic_id_metrics": dg.AssetOut(
            is_required=False, description="Quality of the codes: reconstruction, usage, coverage, agreement; the "
                                           "code space (`size` per level)."),
    },
    can_subset=True,  # `--select '*semantic_ids'` fits the codes and writes only the table asked for
)
def semantic_ids(
    context: dg.AssetExecutionContext,
    config: SemanticIdsConfig,
    song_vectors: pd.DataFrame,
    compute: ComputeResource,
    genrank_paths: GenrankPaths,
):
    sv = from_frame(song_vectors)
    X = sv.normalized()  # cosine geometry, as word2vec neighbours are judged
    device = compute.for_step("semantic_ids", config)[0].device
    context.log.info(f"fitting RQ-KMeans {config.levels} on {len(sv)} songs (dim {sv.dim}) on {device}")
    model = RQKMeans(
        levels=tuple(config.levels), balanced=config.balanced, unique_codes=config.unique_codes,
        normalize_residuals=config.normalize_residuals, n_iter=config.n_iter, seed=config.seed, device=device,
        checkpoint_dir=str(genrank_paths.checkpoints(step_name(context))), balance_slack=config.balance_slack,
        min_cluster_size=config.min_cluster_size,
    )
    codes = model.fit_predict(X)
    codebook_path = model.save(genrank_paths.artifacts("semantic_ids", step_name(context)) / f"rq_kmeans-{context.run.run_id[:8]}.npz")
    metrics = semantic_id_metrics(X, codes, model, sample_size=config.metrics_sample_size, seed=config.seed)
    tables = semantic_id_tables(metrics)
    summary = tables["summary"].iloc[0].to_dict()
    levels = tables["levels"]
    context.log.info(f"{metrics['distinct_codes']} distinct codes for {len(sv)} songs "
                     f"(coverage {metrics['unique_code_coverage']:.3f}, max {metrics['max_songs_per_code']} per code)")
    table = codes_to_frame(sv.song_ids, codes)
    collisions = tables["collisions"].copy()
    collisions["songs_sample"] = [", ".join(sv.song_ids[i] for i in idx[:5]) for idx in collisions.pop("song_indices")]
    numeric = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float, np.integer, np.floating))
               and v is not None and not (isinstance(v, float) and np.isnan(v))}
    selected = context.op_execution_context.selected_output_names
    if "semantic_ids" in selected:
        levels_only = codes[:, : len(config.levels)]  # without an l4 disambiguation column
        plot_dir = genrank_paths.artifacts("semantic_ids", step_name(context))
        usage_png = code_usage_plot(levels_only, list(config.levels), plot_dir / f"code_usage-{context.run.run_id[:8]}.png")
        per_code_png = songs_per_code_plot(levels_only, plot_dir / f"songs_per_code-{context.run.run_id[:8]}.png")
        yield dg.Output(
            table, "semantic_ids",
            metadata={
                "dagster/row_count": len(table),
                "levels_configured": str(list(config.levels)),
                "code_columns": codes.shape[1],
                "codebook_path": str(codebook_path),
                "device": device,
                "kmeans_backend": model.kmeans_backend,  # faiss-cpu | faiss-gpu | torch
                **numeric,
                "max_l1_cluster": int(levels.loc[0, "max_cluster_size"]),
                "mean_l1_cluster": float(levels.loc[0, "mean_cluster_size"]),
                "levels": dg.MetadataValue.md(levels.round(4).to_markdown(index=False)),
                "largest_collisions": dg.MetadataValue.md(collisions.to_markdown(index=False) if len(collisions) else "none"),
                "code_usage": dg.MetadataValue.md(markdown_image(usage_png, "songs per code value, per level")),
                "songs_per_code": dg.MetadataValue.md(markdown_image(per_code_png, "songs per semantic ID")),
            },
        )
    if "semantic_id_metrics" in selected:
        metrics_table = metrics_frame(numeric, levels, codes)
        yield dg.Output(metrics_table, "semantic_id_metrics",
                        metadata={"dagster/row_count": len(metrics_table),
                                  "summary": dg.MetadataValue.md(tables["summary"].T.round(4).to_markdown())})


@dg.asset_check(asset="semantic_ids", blocking=True, description="Every vectored song has a code.",
                additional_ins={"song_vectors": dg.AssetIn("song_vectors")})
def every_song_has_a_code(semantic_ids: pd.DataFrame, song_vectors: pd.DataFrame) -> dg.AssetCheckResult:
    missing = set(song_vectors["song_id"]) - set(semantic_ids["song_id"])
    nulls = int(semantic_ids.isna().any(axis=1).sum())
    return dg.AssetCheckResult(passed=not missing and nulls == 0,
                               metadata={"songs_without_code": len(missing), "rows_with_nulls": nulls})


@dg.asset_check(asset="semantic_ids", description="Unique-code coverage and level-1 balance within configured bounds.")
def semantic_ids_coverage_and_balance(config: SemanticIdGateConfig, semantic_ids: pd.DataFrame) -> dg.AssetCheckResult:
    cfg = config
    _, codes = codes_from_frame(semantic_ids)
    coverage = len({tuple(c) for c in codes.tolist()}) / max(1, len(codes))
    # A code space smaller than the catalogue caps coverage: judge against what the codes in use can reach.
    reachable = min(1.0, float(np.prod(np.array(code_space_of(codes), dtype=float))) / max(1, len(codes)))
    sizes = np.bincount(codes[:, 0])
    sizes = sizes[sizes > 0]
    balance = float(sizes.max() / sizes.mean()) if len(sizes) else 0.0
    return dg.AssetCheckResult(
        passed=coverage >= cfg.min_coverage * reachable and balance <= cfg.max_balance_ratio,
        metadata={"unique_code_coverage": coverage, "reachable_coverage": reachable, "min_coverage": cfg.min_coverage,
                  "l1_max_over_mean": balance, "max_balance_ratio": cfg.max_balance_ratio},
    )
