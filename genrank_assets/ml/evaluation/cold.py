"""The cold part of the truth: the songs of a held-out playlist that no train playlist holds.

No classical source can propose such a song (they score the train songs); the generator reaches it through the
code the catalogue gave it (``ml/catalogue/``). Figures are averaged over the queries whose truth holds at least one
cold song, with the truth restricted to those songs (Recall@100, NDCG@10 of the cold part alone).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from genrank_assets.ml.evaluation.metrics import evaluate_rankings, format_diff_ci, paired_bootstrap

COLD_METRICS = ("cold_recall@100", "cold_ndcg@10")


def train_songs(corpus: pd.DataFrame) -> set[str]:
    return {str(s) for songs in corpus.loc[corpus["split"] == "train", "song_ids"] for s in songs}


def cold_truths(truths: Mapping[str, set[str]], corpus: pd.DataFrame) -> dict[str, set[str]]:
    """Per query, its truth songs that no train playlist of ``corpus`` holds (queries with none left out)."""
    warm = train_songs(corpus)
    out = {q: {s for s in t if s not in warm} for q, t in truths.items()}
    return {q: t for q, t in out.items() if t}


def cold_share(truths: Mapping[str, set[str]], corpus: pd.DataFrame) -> float:
    """Share of all (query, truth song) pairs whose song no train playlist holds."""
    warm = train_songs(corpus)
    total = sum(len(t) for t in truths.values())
    return sum(s not in warm for t in truths.values() for s in t) / total if total else 0.0


def cold_metrics(rankings: Mapping[str, Sequence[str]], cold: Mapping[str, set[str]]) -> dict:
    """Recall@100 and NDCG@10 of the cold part, and their per-query values (for paired comparisons)."""
    asked = {q: t for q, t in cold.items() if q in rankings}
    if not asked:
        return {"cold_recall@100": float("nan"), "cold_ndcg@10": float("nan"), "per_query": {}}
    found = evaluate_rankings({q: rankings[q] for q in asked}, asked, ks=(10, 100))
    return {"cold_recall@100": float(found["recall@100"]), "cold_ndcg@10": float(found["ndcg@10"]),
            "per_query": {"cold_recall@100": found["per_query"]["recall@100"],
                          "cold_ndcg@10": found["per_query"]["ndcg@10"]}}


def cold_table(results, truths: Mapping[str, set[str]], corpus: pd.DataFrame) -> pd.DataFrame:
    """method, cold_recall@100, cold_ndcg@10, cold_queries for every evaluated method (``MethodResult``s)."""
    cold = cold_truths(truths, corpus)
    rows = []
    for r in results:
        m = cold_metrics(r.rankings, cold)
        rows.append({"method": r.name, **{k: m[k] for k in COLD_METRICS}, "cold_queries": len(cold)})
    return pd.DataFrame(rows, columns=["method", *COLD_METRICS, "cold_queries"])


def cold_comparison(with_cold: Mapping[str, Sequence[str]], without: Mapping[str, Sequence[str]],
                    truths: Mapping[str, set[str]], corpus: pd.DataFrame, metric: str = "cold_recall@100") -> dict:
    """Paired bootstrap (1,000 resamples) of ``metric`` on the cold part: with minus without the cold path."""
    cold = cold_truths(truths, corpus)
    qs = [q for q in cold if q in with_cold and q in without]
    if not qs:
        return {}
    a = cold_metrics({q: with_cold[q] for q in qs}, cold)["per_query"][metric]
    b = cold_metrics({q: without[q] for q in qs}, cold)["per_query"][metric]
    return {"metric": metric, "queries": len(qs), **paired_bootstrap(a, b, n=1000, seed=0)}


def source_reach(features: pd.DataFrame, cold: Mapping[str, set[str]], sources: Sequence[str]) -> dict[str, float]:
    """Share of the cold truth each candidate source put in the pools (``{source}_proposed`` of the features
    table's rows of the queries in ``cold``), and the union's."""
    total = sum(len(t) for t in cold.values())
    rows = features[features["playlist_id"].astype(str).isin(cold.keys())]
    hit = np.array([s in cold[str(q)] for q, s in zip(rows["playlist_id"], rows["song_id"])], dtype=bool)
    out = {src: float((hit & (rows[f"{src}_proposed"].to_numpy() > 0)).sum() / total) if total else 0.0
           for src in sources if f"{src}_proposed" in rows}
    out["union"] = float(hit.sum() / total) if total else 0.0
    return out


def cold_markdown(table: pd.DataFrame, share: float, comparison: Mapping, reach: Mapping[str, float]) -> list[str]:
    """The report's section on the cold part."""
    lines = ["", "### The cold part of the truth", "",
             f"Share of the test truth that no train playlist holds: **{share:.3f}**. Figures on that part alone, "
             f"over the {int(table['cold_queries'].max()) if len(table) else 0} queries whose truth holds some:", "",
             table.round(4).to_markdown(index=False), ""]
    if reach:
        lines += ["Share of the cold truth each source puts in the test pools: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in reach.items()) + " (classical sources score only train "
                  "songs: 0 by construction).", ""]
    if comparison:
        lines += [f"Served system with minus without the cold-start path, {comparison['metric']} on the cold part: "
                  f"{format_diff_ci(comparison)} (paired bootstrap, {comparison['queries']} queries).", ""]
    return lines
