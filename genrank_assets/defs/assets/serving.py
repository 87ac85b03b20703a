"""Group `serving`: the promotion gate. The recommender `evaluation_report` registered as the challenger becomes
the `champion` of genrank-tiger, genrank-ranker and genrank-recommender only when its NDCG@10 is not worse than
the current champion's, re-evaluated here on the same test queries. The challenger's own figure is the one its
evaluation recorded on that version when the queries are the same (fingerprint); only when they changed is it
evaluated here as well."""
import dataclasses

import dagster as dg
import pandas as pd
from pydantic import Field

from genrank_assets.defs.resources import ComputeResource, MlflowRegistry
from genrank_assets.ml.evaluation.procedure import REUSED, Queries, challenger_ndcg_at_10, compare_with_champion
from genrank_assets.ml.serving import registry


class ChampionConfig(dg.Config):
    promotion_tolerance: float = Field(default=0.0, ge=0.0)  # promote when new NDCG@10 + tolerance >= the champion's


@dg.asset(group_name="serving", deps=["evaluation_report", "catalogue_refresh"], kinds={"mlflow"}, io_manager_key="model_io_manager")
def champion(
    context: dg.AssetExecutionContext,
    config: ChampionConfig,
    playlist_corpus: pd.DataFrame,
    mlflow_registry: MlflowRegistry,
    compute: ComputeResource,
) -> dg.Output[str]:
    """The promotion gate; value: the champion recommender's URI after it (`models:/genrank-recommender/N`)."""
    mlflow_registry.setup()
    compute.apply_threads()  # the champion is evaluated on CPU, as it is served
    candidate = registry.challenger()
    if candidate is None:
        raise ValueError(f"no {registry.RECOMMENDER_NAME}@{registry.CHALLENGER}: materialise evaluation_report first")
    already = registry.gate_decision(candidate.version)
    if already is not None:  # e.g. a refresh that had nothing new to register: the decision stands
        current = registry.alias_version(registry.RECOMMENDER_NAME)
        context.log.info(f"{candidate.uri} was gated before (promoted: {already}); champion stays v{current}")
        return dg.Output(f"models:/{registry.RECOMMENDER_NAME}/{current}", metadata={
            "promoted": False, "gate_reason": f"{candidate.uri} was gated before", "candidate_uri": candidate.uri,
            "champion_version": current, "run_kind": candidate.run_kind})
    queries = Queries.of_split(playlist_corpus, candidate.split, candidate.queries)
    new_ndcg, how = challenger_ndcg_at_10(candidate, queries,
                                          lambda: registry.load_recommender(version=candidate.version))
    if how == REUSED:
        context.log.info(f"{candidate.uri}: NDCG@10 {new_ndcg:.4f} as its evaluation (run "
                         f"{candidate.evaluation_run_id}) measured it on these {len(queries)} queries")
    else:
        context.log.info(f"the {candidate.split} queries changed since {candidate.uri} was evaluated "
                         f"(playlist_corpus was rebuilt): re-evaluated on them, NDCG@10 {new_ndcg:.4f} "
                         f"(recorded: {candidate.ndcg_at_10:.4f})")
        candidate = dataclasses.replace(candidate, ndcg_at_10=new_ndcg)  # the figure the gate decides on
    before = registry.alias_version(registry.RECOMMENDER_NAME)
    current = None if before is None else registry.load_recommender(version=before)
    decision = compare_with_champion(new_ndcg, current, queries, config.promotion_tolerance)
    context.log.info(f"promotion gate: {decision.reason}")
    if decision.promote:
        registry.promote(candidate)
        context.log.info("champion -> " + ", ".join(f"{name} v{v}" for name, v in candidate.bundled()))
    before_uri = None if before is None else f"models:/{registry.RECOMMENDER_NAME}/{before}"
    note = decision.gate_markdown(candidate.uri, before_uri)
    registry.record_gate(candidate, decision.promote, decision.reason, decision.champion_ndcg, note)
    after = registry.alias_version(registry.RECOMMENDER_NAME)
    return dg.Output(f"models:/{registry.RECOMMENDER_NAME}/{after}", metadata={
        "promoted": decision.promote, "gate_reason": decision.reason, "gate": dg.MetadataValue.md(note),
        "new_ndcg@10": float(decision.new_ndcg),
        "champion_ndcg@10": float("nan") if decision.champion_ndcg is None else float(decision.champion_ndcg),
        "candidate_uri": candidate.uri, "previous_champion": before_uri or "none",
        "champion_version": after, "queries": len(queries), "evaluation_run_id": candidate.evaluation_run_id,
        "run_kind": candidate.run_kind, "challenger_figure": how,
        "champion_figure": "none" if current is None else "re-evaluated",
    })
