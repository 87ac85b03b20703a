"""Group `evaluation`: every method side by side on held-out playlists (docs/benchmark.md), the report, and the
recommender registered as the challenger of the promotion gate (group `serving`)."""

import dagster as dg
import mlflow
import pandas as pd
from pydantic import Field, model_validator

from genrank_assets.defs.folds import fold_ins
from genrank_assets.defs.io_managers import batched_read
from genrank_assets.defs.resources import ComputeResource, GenrankPaths, MlflowRegistry, step_run
from genrank_assets.ml.catalogue.catalogue import cold_songs, save_bundle_dirs, song_info
from genrank_assets.ml.catalogue.catalogue import from_frame as catalogue_from_frame
from genrank_assets.ml.data.corpus import SPLITS
from genrank_assets.ml.evaluation.metrics import format_diff_ci
from genrank_assets.ml.evaluation.procedure import (
    LTR,
    MODEL_SYSTEMS,
    SERVED_METHODS,
    EvaluationSettings,
    Queries,
    TrainedModels,
    evaluate_methods,
    write_evaluation_report,
)
from genrank_assets.ml.evaluation.report import report_markdown
from genrank_assets.ml.ranking.ltr.tables import with_fold_rows
from genrank_assets.ml.serving import registry


class EvaluationConfig(dg.Config):
    split: str = "test"
    tune_split: str = "val"  # weights of the final score are chosen here, never on the test split
    n_candidates: int = Field(default=100, ge=1)
    num_beams: int = Field(default=0, ge=0)  # 0: the generator's own setting
    popularity_grid: list[float] = [0.0, 0.25, 0.5, 1.0, 2.0]
    classical_grid: list[float] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    # Which system is registered and gated: one of SERVED_METHODS (the classical systems included), or auto
    # (the best NDCG@10 on tune_split among all of them; equal figures: the simpler system).
    served_method: str = "auto"
    latency_queries: int = Field(default=50, ge=0)
    max_queries: int = Field(default=0, ge=0)  # 0: all queries of the split
    # also serve the LTR system without the cold-start path, for the report's cold part (one more test pass)
    cold_start_ablation: bool = True

    @model_validator(mode="after")
    def _known_values(self):
        if self.served_method not in (*SERVED_METHODS, "auto"):
            raise ValueError(f"served_method must be auto or one of {SERVED_METHODS}, got {self.served_method!r}")
        bad = [s for s in (self.split, self.tune_split) if s not in SPLITS]
        if bad or self.split == self.tune_split:
            raise ValueError(f"split and tune_split must be two different splits of {SPLITS}, got "
                             f"{self.split!r} and {self.tune_split!r}")
        if not self.popularity_grid or not self.classical_grid:
            raise ValueError("popularity_grid and classical_grid need at least one weight each")
        return self


# The features (every split: the ablations refit on the training rows and rank test's) in float32 batches.
@dg.asset(group_name="evaluation", kinds={"mlflow"},
          ins={"ranking_features": dg.AssetIn(metadata=batched_read()), **fold_ins("ranking_features", batched_read())})
def evaluation_report(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    playlist_corpus: pd.DataFrame,
    tiger_model: str,
    ranker_model: str,
    ranking_features: pd.DataFrame,
    ltr_ranker: str,
    song_catalogue: pd.DataFrame,
    raw_songs: pd.DataFrame,
    genrank_paths: GenrankPaths,
    mlflow_registry: MlflowRegistry,
    compute: ComputeResource,
    **fold_features: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Popularity, title-kNN, kNN / kernel ridge + co-occurrence, generator only, generate-and-rank (+ hybrid), the
    LTR system and its ablations (vs ridge + co-occurrence) on held-out playlists; the served system is
    registered as `genrank-recommender` under the alias `challenger`."""
    mlflow_registry.setup()
    compute.apply_threads()  # evaluation runs on CPU: the models are loaded there, as they are served
    models = registry.register_evaluated(tiger_model, ranker_model, ltr_ranker)
    queries = Queries.of_split(playlist_corpus, config.split, config.max_queries)
    tune = Queries.of_split(playlist_corpus, config.tune_split, config.max_queries)
    context.log.info(f"evaluating on {len(queries)} {queries.split} queries; tuning on {len(tune)} {tune.split} queries")
    settings = EvaluationSettings(config.n_candidates, config.num_beams or None, config.popularity_grid,
                                  config.classical_grid, config.latency_queries)
    catalogue = catalogue_from_frame(song_catalogue)
    trained = catalogue_models(models, catalogue, raw_songs, with_ablation=config.cold_start_ablation)
    features = with_fold_rows(ranking_features, fold_features.values(), consume=True)  # LTR rows + test's, once
    results = evaluate_methods(playlist_corpus, trained, queries, tune, settings,
                               ltr=(features, models.ltr_py.ltr), log_fn=context.log.info)
    method = results.best_on_tuning_split() if config.served_method == "auto" else config.served_method
    context.log.info(_serving_line(results, method, config))
    served = results.systems[method]
    with step_run(context, genrank_paths, mlflow_registry, name="evaluation", under=genrank_paths.reports()) as step:
        paths = write_evaluation_report(results, step.folder, models=models.uris, served_method=method)
        metrics = results.mlflow_metrics()
        mlflow.log_params(_run_params(models, config, len(queries), method, served))
        mlflow.log_metrics(metrics)
        is_ltr = method == LTR
        bundle = save_bundle_dirs(step.folder / "catalogue", models.tiger_py.generator, catalogue, raw_songs)
        challenger = registry.register_recommender(
            models.tiger_py, models.ranker_py, None if is_ltr else served.config, playlist_corpus,
            step.folder / "recommender", method=method, split=queries.split, queries=len(queries),
            queries_fingerprint=queries.fingerprint, ndcg_at_10=results.ndcg_at_10(method),
            ltr_py=models.ltr_py if is_ltr else None, catalogue_dirs=bundle, run_kind="full",
            catalogue_fingerprint=registry.catalogue_fingerprint(playlist_corpus, catalogue.song_ids))
        mlflow.log_artifacts(str(step.folder), "report")
    registry.log_evaluation_on_models(models.uris, metrics, paths["markdown"], step.run_id)
    context.log.info(f"{challenger.uri} is the challenger (NDCG@10 {challenger.ndcg_at_10:.4f}); the `champion` step "
                     "gates it")
    table = results.table()
    table.insert(0, "split", config.split)
    table["evaluated_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    return dg.Output(table, metadata={
        "dagster/row_count": len(table), "report": dg.MetadataValue.md(report_markdown(paths)),
        "report_path": str(paths["markdown"]), "queries": len(queries), **_results_metadata(results, method),
        "recommender_uri": challenger.uri, "tiger_model_uri": models.tiger_uri,
        "ranker_model_uri": models.ranker_uri, "mlflow_run_id": step.run_id, "ltr_model_uri": models.ltr_uri,
    })


def _run_params(models, config: EvaluationConfig, queries: int, method: str, served) -> dict:
    """The evaluation run's MLflow params: the models, the split, the served system and its settings."""
    return {"tiger_model": models.tiger_uri, "ranker_model": models.ranker_uri, "ltr_model": models.ltr_uri,
            "split": config.split, "queries": queries, "served_method": method,
            **{f"served.{k}": v for k, v in served.describe().items()}}


def catalogue_models(models, catalogue, raw_songs: pd.DataFrame, with_ablation: bool) -> TrainedModels:
    """The registered models over the whole catalogue (the generator with its code table, every song's vector),
    and, with ``with_ablation``, the same models over the songs with learned vectors only."""
    generator, ranker_py = models.tiger_py.generator, models.ranker_py
    warm = TrainedModels(generator, ranker_py.ranker, ranker_py.song_vectors, ranker_py.song_info)
    return TrainedModels(generator.with_code_table(catalogue.code_table()), ranker_py.ranker,
                         catalogue.song_vectors(), song_info(raw_songs), cold_songs(catalogue),
                         without_cold_start=warm if with_ablation else None)


def _serving_line(results, method: str, config: EvaluationConfig) -> str:
    """The log line that says which system is served, and why."""
    margin = results.choice_margin
    margin_text = "" if margin is None else f"; {margin['served']} - {margin['runner_up']} {format_diff_ci(margin)} paired"
    why = "chosen on " + config.tune_split if config.served_method == "auto" else "configured"
    return f"serving {method} ({why}; {config.tune_split} NDCG@10: {results.tune_ndcg}{margin_text})"


def _results_metadata(results, method: str) -> dict:
    """The evaluation's figures as asset metadata: every method's NDCG@10 and Recall@100, the served system and
    its choice on the tuning split, the ablation lines and the phases' seconds."""
    margin = results.choice_margin
    return {
        **{f"{r.name}.ndcg@10": round(r.metrics["ndcg@10"], 4) for r in results.results},
        **{f"{r.name}.recall@100": round(r.metrics["recall@100"], 4) for r in results.results},
        "invalid_code_rate": results.invalid_code_rate, "generator_shortfall_per_query": results.generator_shortfall,
        "served_method": method, **{f"{m}.tune_ndcg@10": round(v, 4) for m, v in results.tune_ndcg.items()},
        "new_ndcg@10": results.ndcg_at_10(method),
        "ablation": dg.MetadataValue.md("\n".join(results.ablation_lines)),
        "phase_s": dg.MetadataValue.json(results.phase_s),
        **({"auto_choice_margin": dg.MetadataValue.json(margin)} if margin else {}),
        **_cold_metadata(results.cold),
    }


def _cold_metadata(cold: dict) -> dict:
    """The cold part's figures: its share of the truth, each method's cold Recall@100, the paired comparison."""
    if not cold:
        return {}
    table = cold["table"].set_index("method")
    out = {"cold_truth_share": round(cold["share"], 4),
           **{f"{m}.cold_recall@100": round(float(v), 4) for m, v in table["cold_recall@100"].dropna().items()},
           "cold_source_reach": dg.MetadataValue.json(cold["source_reach"])}
    if cold["comparison"]:
        out["cold_recall@100_with_minus_without"] = dg.MetadataValue.json(cold["comparison"])
    return out


@dg.asset_check(asset=evaluation_report, description="Trie-constrained decoding produced no invalid code.")
def generator_codes_all_valid(evaluation_report: pd.DataFrame) -> dg.AssetCheckResult:
    rates = evaluation_report["invalid_code_rate"].dropna()
    worst = float(rates.max()) if len(rates) else 0.0
    return dg.AssetCheckResult(passed=worst == 0.0, metadata={"max_invalid_code_rate": worst})


@dg.asset_check(asset=evaluation_report, description="The full system beats popularity on NDCG@10.")
def system_beats_popularity(evaluation_report: pd.DataFrame) -> dg.AssetCheckResult:
    by = evaluation_report.set_index("method")["ndcg@10"]
    best_system = float(max(by.get(m, 0.0) for m in MODEL_SYSTEMS))
    return dg.AssetCheckResult(passed=best_system > float(by["popularity"]), severity=dg.AssetCheckSeverity.WARN,
                               metadata={"system_ndcg@10": best_system, "popularity_ndcg@10": float(by["popularity"])})
