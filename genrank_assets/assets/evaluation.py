"""Group `evaluation`: the held-out report (docs/benchmark.md), the registered recommender and the promotion gate."""
import time

import dagster as dg
import mlflow
import numpy as np
import pandas as pd

from genrank_assets.ml.evaluation.report import (
    decide_promotion,
    evaluate_method,
    fill_with,
    peak_rss_mib,
    results_table,
    write_report,
)
from genrank_assets.ml.plots import markdown_image
from genrank_assets.ml.ranking.baselines import (
    PopularityRecommender,
    benchmark_queries,
    knn_cooccurrence,
    reference_title_knn,
)
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.recommender import (
    Recommender,
    RecommenderConfig,
    component_scores,
    save_knn_corpus,
    save_recommender_config,
    tune_weights,
)
from genrank_assets.resources import ComputeResource, GenrankPaths, MlflowRegistry

SERVED_METHODS = ("generate_and_rank", "generate_and_rank_hybrid")


class EvaluationConfig(dg.Config):
    split: str = "test"
    tune_split: str = "val"  # weights of the final score are chosen here, never on the test split
    n_candidates: int = 100
    num_beams: int = 0  # 0: the generator's own setting
    popularity_grid: list[float] = [0.0, 0.25, 0.5, 1.0, 2.0]
    classical_grid: list[float] = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    served_method: str = "generate_and_rank_hybrid"  # which system is registered and gated
    latency_queries: int = 50
    promotion_tolerance: float = 0.0
    max_queries: int = 0  # 0: all queries of the split


def _uri_version(uri: str) -> int:
    return int(uri.rstrip("/").split("/")[-1])


@dg.asset(group_name="evaluation", kinds={"mlflow"})
def evaluation_report(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    playlist_corpus: pd.DataFrame,
    tiger_model: str,
    ranker_model: str,
    genrank_paths: GenrankPaths,
    mlflow_registry: MlflowRegistry,
    compute: ComputeResource,
) -> dg.Output[pd.DataFrame]:
    """Popularity, title-kNN, kNN+co-occurrence, generator only, generate-and-rank (+ hybrid) on held-out playlists."""
    if config.served_method not in SERVED_METHODS:
        raise ValueError(f"served_method must be one of {SERVED_METHODS}, got {config.served_method!r}")
    mlflow_registry.setup()
    compute.apply_threads()  # evaluation runs on CPU: the models are loaded there, as they are served
    tiger_py = registry.load_python_model(tiger_model)
    ranker_py = registry.load_python_model(ranker_model)
    generator, ranker = tiger_py.generator, ranker_py.ranker
    generator.reset_counters()
    qids, texts, truths = benchmark_queries(playlist_corpus, split=config.split)
    vqids, vtexts, vtruths = benchmark_queries(playlist_corpus, split=config.tune_split)
    if config.max_queries:
        qids, texts = qids[: config.max_queries], texts[: config.max_queries]
        truths = {q: truths[q] for q in qids}
        vqids, vtexts = vqids[: config.max_queries], vtexts[: config.max_queries]
        vtruths = {q: vtruths[q] for q in vqids}
    if not qids:
        raise ValueError(f"no {config.split} queries (playlists with a title) in playlist_corpus")
    context.log.info(f"evaluating on {len(qids)} {config.split} queries; tuning on {len(vqids)} {config.tune_split} queries")
    catalogue = len(ranker_py.song_vectors)

    # R-precision reads the top |truth| songs, and a truth can hold more than 100: every ranking is that deep.
    depth = max(100, max(len(t) for t in truths.values()))
    popularity = PopularityRecommender().fit(playlist_corpus)
    knn = reference_title_knn("char_wb").fit(playlist_corpus)
    knn_cooc = knn_cooccurrence().fit(playlist_corpus)
    popular = popularity.recommend("popular", depth)
    results = []
    for name, model in (("popularity", popularity), ("title_knn", knn), ("knn_cooccurrence", knn_cooc)):
        results.append(evaluate_method(name, lambda ts, m=model: m.recommend_many(ts, depth), qids, texts, truths,
                                       catalogue, rank_one=lambda t, m=model: m.recommend(t, 10),
                                       latency_queries=config.latency_queries))

    beams = config.num_beams or None

    found = []  # candidates the beams yielded per query, before the popularity fill

    def generator_only(ts):
        cands = generator.generate_candidates_batch(ts, n=100, num_beams=beams)
        found.extend(len(c) for c in cands)
        return [fill_with(c, popular, depth) for c in cands]

    gen_result = evaluate_method("generator", generator_only, qids, texts, truths, catalogue,
                                 rank_one=lambda t: generator.generate_candidates(t, n=100, num_beams=beams),
                                 latency_queries=config.latency_queries)
    gen_result.invalid_code_rate = generator.invalid_code_rate
    shortfall = float(np.mean([max(0, 100 - n) for n in found]))
    results.append(gen_result)

    served = {}
    stage_ms = {}
    tuning_tables = {}
    for method, source in (("generate_and_rank", "generator"), ("generate_and_rank_hybrid", "hybrid")):
        rec = Recommender(generator, ranker, ranker_py.song_vectors, ranker_py.song_info,
                          RecommenderConfig(n_candidates=config.n_candidates, candidate_source=source,
                                            num_beams=beams), knn=knn_cooc)
        classical_grid = config.classical_grid if source == "hybrid" else [0.0]
        if vqids:
            cs = component_scores(rec, vtexts, 100)
            pw, cw, trials = tune_weights(cs, vqids, vtruths, config.popularity_grid, classical_grid)
            tuning_tables[method] = pd.DataFrame(trials)
        else:
            pw, cw = 0.0, 0.0
        rec.config = RecommenderConfig(n_candidates=config.n_candidates, candidate_source=source,
                                       popularity_weight=pw, classical_weight=cw, num_beams=beams)
        context.log.info(f"{method}: popularity_weight={pw} classical_weight={cw} (chosen on {config.tune_split})")
        rec.times = type(rec.times)()
        res = evaluate_method(method, lambda ts, r=rec: [fill_with([x.song_id for x in recs], popular, depth)
                                                         for recs in r.recommend_many(ts, 100)],
                              qids, texts, truths, catalogue, rank_one=lambda t, r=rec: r.recommend(t, 10),
                              latency_queries=config.latency_queries)
        res.invalid_code_rate = generator.invalid_code_rate
        t = rec.times
        res.stage_ms = {"generate": float(np.median(t.generate_ms)), "classical": float(np.median(t.knn_ms)),
                        "rank": float(np.median(t.rank_ms))}
        results.append(res)
        served[method] = rec
        stage_ms.update({f"{method}:{k}": v for k, v in res.stage_ms.items() if v > 0})

    table = results_table(results)
    by_name = {r.name: r for r in results}
    new_ndcg = by_name[config.served_method].metrics["ndcg@10"]
    tiger_v, ranker_v = _uri_version(tiger_model), _uri_version(ranker_model)

    # -- champion on the same queries ---------------------------------------------------------------------------
    champion_version = registry.alias_version(registry.RECOMMENDER_NAME)
    champion_ndcg = None
    if champion_version is not None:
        champ = registry.load_python_model(f"models:/{registry.RECOMMENDER_NAME}/{champion_version}").recommender
        # Same call as for the new system (100 deep), so both rank the same kind of candidate lists.
        champ_rank = {q: [x.song_id for x in recs] for q, recs in zip(qids, champ.recommend_many(texts, 100))}
        from genrank_assets.ml.evaluation.metrics import evaluate_rankings

        champion_ndcg = evaluate_rankings(champ_rank, truths, ks=(10,))["ndcg@10"]
    decision = decide_promotion(new_ndcg, champion_ndcg, config.promotion_tolerance)
    context.log.info(f"promotion gate: {decision.reason}")

    # -- report -----------------------------------------------------------------------------------------------
    report_dir = genrank_paths.reports() / f"evaluation-{time.strftime('%Y%m%d-%H%M%S')}-{context.run_id[:8]}"
    lines = [
        f"Split `{config.split}`: {len(qids)} queries (docs/benchmark.md protocol); weights tuned on `{config.tune_split}` "
        f"({len(vqids)} queries). Models: `{tiger_model}`, `{ranker_model}`.",
        f"Every ranking is {depth} songs deep (the largest truth), so R-precision is exact. Generator-only rankings "
        f"are the candidates in generation order; generator rankings and generate-and-rank rankings continue with "
        f"popular songs after their candidates (generator shortfall for 100: {shortfall:.1f} songs per query).",
        "`title_knn` is docs/benchmark.md's reference (char 2-4-grams, 50 neighbours, song-id ties among voted songs).",
        f"Served system: `{config.served_method}` (popularity_weight={served[config.served_method].config.popularity_weight}, "
        f"classical_weight={served[config.served_method].config.classical_weight}).",
        f"**Promotion gate:** {decision.reason}.",
        f"Peak RSS of the evaluation process: {peak_rss_mib():.0f} MiB.",
    ]
    paths = write_report(results, report_dir, title="genrank evaluation report", context_lines=lines,
                         reference="title_knn", stage_ms=stage_ms)
    for method, trials in tuning_tables.items():
        trials.to_csv(report_dir / f"weights_{method}.csv", index=False)

    # -- MLflow: the recommender as a pyfunc, metrics on all runs, the gate ---------------------------------------
    rec = served[config.served_method]
    bundle = report_dir / "recommender"
    save_recommender_config(bundle / "config", rec.config)
    save_knn_corpus(bundle / "knn", playlist_corpus)
    metrics = {f"{r['method']}.{k}": float(r[k]) for r in table.to_dict("records")
               for k in ("recall@10", "ndcg@10", "recall@100", "r_precision", "coverage@10", "latency_p50_ms")
               if pd.notna(r[k])}
    metrics = {k.replace("@", "_at_"): v for k, v in metrics.items()}
    with mlflow.start_run(run_name=f"evaluation-{context.run_id[:8]}") as run:
        mlflow.log_params({"tiger_model": tiger_model, "ranker_model": ranker_model, "split": config.split,
                           "served_method": config.served_method, "popularity_weight": rec.config.popularity_weight,
                           "classical_weight": rec.config.classical_weight})
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(report_dir), "report")
        reg = registry.log_model_dir(
            tiger_py.artifact_paths["model_dir"], registered_name=registry.RECOMMENDER_NAME,
            python_model=registry.RecommenderPyfunc(), artifact_name="recommender",
            extra_artifacts={"tiger_dir": tiger_py.artifact_paths["model_dir"],
                             "ranker_dir": ranker_py.artifact_paths["model_dir"],
                             "songs_dir": ranker_py.artifact_paths["songs_dir"],
                             "config_dir": str(bundle / "config"), "knn_dir": str(bundle / "knn")},
        )
        mlflow.set_tags({"genrank.promoted": str(decision.promote), "genrank.gate_reason": decision.reason,
                         "genrank.new_ndcg_at_10": f"{new_ndcg:.6f}",
                         "genrank.champion_ndcg_at_10": "" if champion_ndcg is None else f"{champion_ndcg:.6f}"})
    for name, version in ((registry.TIGER_NAME, tiger_v), (registry.RANKER_NAME, ranker_v)):
        with mlflow.start_run(run_id=registry.run_id_of(name, version)):
            mlflow.log_metrics({f"eval.{k}": v for k, v in metrics.items()})
            mlflow.log_artifact(str(paths["markdown"]), "evaluation")
            mlflow.set_tag("genrank.evaluation_run", run.info.run_id)
    if decision.promote:
        for name, version in ((registry.TIGER_NAME, tiger_v), (registry.RANKER_NAME, ranker_v),
                              (registry.RECOMMENDER_NAME, reg.version)):
            registry.set_alias(name, version)
        context.log.info(f"champion -> tiger v{tiger_v}, ranker v{ranker_v}, recommender v{reg.version}")

    md = paths["markdown"].read_text().replace("![recall@K](recall_at_k.png)", markdown_image(paths["recall_png"], "recall@K"))
    md = md.replace("![latency](latency.png)", markdown_image(paths["latency_png"], "latency"))
    table.insert(0, "split", config.split)
    table["evaluated_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": len(table),
            "report": dg.MetadataValue.md(md),
            "report_path": str(paths["markdown"]),
            "queries": len(qids),
            **{f"{r.name}.ndcg@10": round(r.metrics["ndcg@10"], 4) for r in results},
            **{f"{r.name}.recall@100": round(r.metrics["recall@100"], 4) for r in results},
            "invalid_code_rate": float(generator.invalid_code_rate),
            "generator_shortfall_per_query": shortfall,
            "promoted": decision.promote,
            "gate_reason": decision.reason,
            "new_ndcg@10": float(new_ndcg),
            "champion_ndcg@10": float("nan") if champion_ndcg is None else float(champion_ndcg),
            "recommender_uri": reg.uri,
            "mlflow_run_id": run.info.run_id,
        },
    )


@dg.asset_check(asset=evaluation_report, description="Trie-constrained decoding produced no invalid code.")
def generator_codes_all_valid(evaluation_report: pd.DataFrame) -> dg.AssetCheckResult:
    rates = evaluation_report["invalid_code_rate"].dropna()
    worst = float(rates.max()) if len(rates) else 0.0
    return dg.AssetCheckResult(passed=worst == 0.0, metadata={"max_invalid_code_rate": worst})


@dg.asset_check(asset=evaluation_report, description="The full system beats popularity on NDCG@10.")
def system_beats_popularity(evaluation_report: pd.DataFrame) -> dg.AssetCheckResult:
    by = evaluation_report.set_index("method")["ndcg@10"]
    best_system = float(max(by.get(m, 0.0) for m in SERVED_METHODS))
    return dg.AssetCheckResult(passed=best_system > float(by["popularity"]), severity=dg.AssetCheckSeverity.WARN,
                               metadata={"system_ndcg@10": best_system, "popularity_ndcg@10": float(by["popularity"])})
