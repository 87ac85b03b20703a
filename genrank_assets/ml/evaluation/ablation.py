"""What each stage adds: the learning-to-rank system and its ablations on the test split, each with a
paired-bootstrap 95% CI of NDCG@10 against kernel ridge + co-occurrence, and what removing the stage costs the full
system (``ltr`` minus the variant, paired CI on the same queries).

Every ranker is trained on the same training rows (``training_mask``: every train playlist's cross-fitted rows,
the LTR holdout's if any, and VAL's; features from models that never saw those playlists) and scores the TEST rows
once: the full ranker with its rounds by query-fold CV over them, each variant at those rounds (one fit, no
out-of-fold val figure). Rankings are a
query's pool by LTR score, then ridge + co-occurrence's ranking (the fill). Rows: ``ltr`` (every source and
feature), ``ltr_no_generator`` (the generator's candidates and features removed), ``ltr_no_cross_encoder``,
``ltr_no_classical``, ``ltr_no_mention`` (the candidates only the ``mention`` source proposed and the mention
features removed: the system that recognises no name), and ``pool_recall_ceiling`` (an oracle that puts the
pool's true songs first: the best any ranker of this pool can do).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genrank_assets.ml.evaluation.metrics import (
    catalogue_coverage,
    evaluate_rankings,
    ndcg_at_10_of,
    paired_bootstrap,
    recall_curve,
)
from genrank_assets.ml.evaluation.report import RECALL_CURVE_KS, MethodResult, fill_with
from genrank_assets.ml.ranking.ltr.ranker import LTRRanker
from genrank_assets.ml.ranking.ltr.tables import (
    fit_ranker,
    rankings,
    training_mask,
    training_order,
    variant_rows,
    variant_view,
    variants,
)

CEILING = "pool_recall_ceiling"


def result_of(name: str, ranked: Mapping[str, Sequence[str]], truths: Mapping[str, set], catalogue: int
              ) -> MethodResult:
    """A method's figures from rankings computed already (no latency: the time was spent elsewhere)."""
    ranked = {q: list(ranked[q]) for q in truths}
    metrics = evaluate_rankings(ranked, truths, ks=(10, 100))
    metrics["coverage@10"] = catalogue_coverage(ranked, catalogue, k=10)
    metrics["recall_curve"] = recall_curve(ranked, truths, RECALL_CURVE_KS)
    return MethodResult(name, ranked, metrics)


def val_rankings(model: LTRRanker, train_rows: pd.DataFrame, truths: Mapping[str, set],
                 rows: np.ndarray | None = None) -> dict[str, list[str]]:
    """The rankings of the ranker's out-of-fold scores for those of its training queries (``train_rows``, the rows
    it was fitted on: those of the boolean mask ``rows`` when given) that ``truths`` holds (the val queries). Only
    those queries' keys are gathered, never a sorted copy of the training rows."""
    order = training_order(train_rows, rows)  # the rows of oof_scores, in their order
    if model.oof_scores is None or len(model.oof_scores) != len(order):
        found = 0 if model.oof_scores is None else len(model.oof_scores)
        raise ValueError(f"the LTR ranker's out-of-fold scores ({found}) do not match its {len(order)} training rows")
    wanted = train_rows["playlist_id"].isin(set(truths)).to_numpy()[order]
    at = order[wanted]
    frame = pd.DataFrame({key: train_rows[key].iloc[at].to_numpy() for key in ("playlist_id", "song_id")})
    ranked = rankings(frame, model.oof_scores[wanted])
    if not ranked:
        raise ValueError("none of the ranker's training queries is among the given truths")
    return ranked


def val_ndcg_at_10(model: LTRRanker, train_rows: pd.DataFrame, truths: Mapping[str, set],
                   rows: np.ndarray | None = None) -> float:
    """The protocol's NDCG@10 of ``val_rankings``."""
    return ndcg_at_10_of(val_rankings(model, train_rows, truths, rows), truths)


def ltr_ablation(features: pd.DataFrame, model: LTRRanker, truths: Mapping[str, set],
                 fills: Mapping[str, Sequence[str]], baseline: MethodResult, catalogue: int, depth: int,
                 val_truths: Mapping[str, set] | None = None, served: MethodResult | None = None
                 ) -> tuple[list[MethodResult], pd.DataFrame]:
    """The ablation rows on the test rows of ``features`` (``model``: the full system, trained on the training rows;
    the others are trained here on them with its parameters) and the table with the CI against ``baseline``.
    ``served``: the full system's result measured through the served recommender (``LTRRecommender``), used as the
    ``ltr`` row (it is not returned again); without it the ``ltr`` row ranks the table's test rows."""
    train = training_mask(features)  # the training rows are masked, never copied (every train playlist's)
    test = features[(features["split"] == "test") & features["playlist_id"].isin(set(truths))].reset_index(drop=True)
    results, rows = [], []
    for name, names in variants(model.feature_names).items():
        keep, columns = variant_view(name, features)
        kept = train if keep is None else train & keep
        # Each variant is refit once on the same rows at the full ranker's CV rounds (its own 5-fold CV would cost
        # six fits per variant: the evaluation's longest phase on mpd7k); so a variant has no out-of-fold val figure.
        ranker = model if name == "ltr" else fit_ranker(features, names, model.params, rounds=model.n_rounds,
                                                        rows=kept, columns=columns)
        if name == "ltr" and served is not None:
            result = served
        else:
            rows_t = variant_rows(name, test)
            ranked = rankings(rows_t, ranker.predict(rows_t), fills, depth) if len(rows_t) else {}
            ranked = {q: ranked.get(q) or fill_with([], fills.get(q, ()), depth) for q in truths}
            result = result_of(name, ranked, truths, catalogue)
        val_ndcg = np.nan
        if val_truths is not None and ranker.oof_scores is not None:
            val_ndcg = val_ndcg_at_10(ranker, features, val_truths, kept)
        results.append(result)
        rows.append({"variant": name, "n_features": len(names), "n_rounds": ranker.n_rounds, "val_ndcg@10": val_ndcg})
    # the oracle of the pool: its true songs first (in pool order), then the fill
    oracle = {}
    for qid, frame in test.groupby("playlist_id", sort=False, observed=True):
        hits = frame.loc[frame["label"] > 0, "song_id"].tolist()
        oracle[qid] = fill_with(hits, fills.get(qid, ()), depth)
    results.append(result_of(CEILING, {q: oracle.get(q) or list(fills.get(q, ()))[:depth] for q in truths}, truths,
                             catalogue))
    ceiling = test.groupby("playlist_id", observed=True)["label"].sum()
    rows.append({"variant": CEILING, "n_features": 0, "n_rounds": 0, "val_ndcg@10": np.nan,
                 "recall_ceiling": float(np.mean([ceiling.get(q, 0.0) / len(t) for q, t in truths.items()]))})
    base = baseline.metrics["per_query"]["ndcg@10"]
    full = results[0].metrics["per_query"]["ndcg@10"]  # the ltr row: what removing a stage costs is measured on it
    for row, result in zip(rows, results):
        per_query = result.metrics["per_query"]["ndcg@10"]
        ci = paired_bootstrap(per_query, base, n=1000, seed=0)
        cost = paired_bootstrap(full, per_query, n=1000, seed=0)
        row.update({"ndcg@10": result.metrics["ndcg@10"], "recall@100": result.metrics["recall@100"],
                    "r_precision": result.metrics["r_precision"], f"diff_vs_{baseline.name}": ci["mean_diff"],
                    "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "p_value": ci["p_value"],
                    "ltr_minus_variant": cost["mean_diff"], "ltr_minus_ci_low": cost["ci_low"],
                    "ltr_minus_ci_high": cost["ci_high"]})
    return results if served is None else results[1:], pd.DataFrame(rows)


def ablation_markdown(table: pd.DataFrame, baseline: str) -> list[str]:
    """The ablation table as report lines."""
    lines = [f"## What each stage adds (test split; rankers trained on the cross-fitted train rows + val, the "
             f"variants at the full ranker's CV rounds; NDCG@10 against "
             f"`{baseline}`, paired bootstrap, 1,000 resamples)", "",
             "| variant | NDCG@10 | Recall@100 | R-prec | diff | 95% CI | p | ltr − variant [95% CI] | val NDCG@10 (OOF) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        val = "" if pd.isna(r.get("val_ndcg@10")) else f"{r['val_ndcg@10']:.4f}"
        cost = "" if r["variant"] == "ltr" else (f"{r['ltr_minus_variant']:+.4f} [{r['ltr_minus_ci_low']:+.4f}, "
                                                 f"{r['ltr_minus_ci_high']:+.4f}]")
        lines.append(f"| {r['variant']} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['r_precision']:.4f} | "
                     f"{r[f'diff_vs_{baseline}']:+.4f} | [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | "
                     f"{r['p_value']:.3f} | {cost} | {val} |")
    ceiling = table.loc[table["variant"] == CEILING, "recall_ceiling"]
    if len(ceiling):
        lines += ["", f"Pool recall ceiling (share of the test truth inside the pool): {float(ceiling.iloc[0]):.4f}."]
    return lines + [""]


__all__ = ["CEILING", "ablation_markdown", "ltr_ablation", "result_of", "val_ndcg_at_10", "val_rankings"]
