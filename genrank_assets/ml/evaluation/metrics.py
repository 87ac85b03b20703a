"""Ranking metrics of the docs/benchmark.md protocol, per query and averaged, plus a paired bootstrap.

Conventions (every function here follows them):
- ``ranked`` is a list of song ids, best first; ``truth`` is a set of song ids (the distinct songs of the
  query's playlist).
- A song repeated in a ranking counts once: a repeat keeps its position (so it uses up one of the k slots)
  but earns nothing. Nobody can gain by repeating a hit, and nobody sees more than k slots.
- A ranking shorter than k is scored as if padded with misses.
- An empty truth raises ValueError: a query without truth is a bug in the caller's data (the protocol
  never produces one), and silently dropping it would change the mean.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from genrank_assets.ml.checks import check_k

log = logging.getLogger(__name__)


def _check_truth(truth: Iterable[str]) -> set[str]:
    truth = set(truth)
    if not truth:
        raise ValueError("truth is empty: a query needs at least one relevant song")
    return truth


def _hit_flags(ranked: Sequence[str], truth: set[str], k: int) -> list[bool]:
    """For each of the first k positions: is it the first occurrence of a relevant song?"""
    seen: set[str] = set()
    flags = []
    for song in ranked[:k]:
        flags.append(song in truth and song not in seen)
        seen.add(song)
    return flags


def recall_at_k(ranked: Sequence[str], truth: Iterable[str], k: int) -> float:
    """|top-k ∩ truth| / |truth|."""
    k = check_k(k)
    truth = _check_truth(truth)
    return sum(_hit_flags(ranked, truth, k)) / len(truth)


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2))


def ndcg_at_k(ranked: Sequence[str], truth: Iterable[str], k: int) -> float:
    """Binary-relevance NDCG@k; the ideal DCG puts min(|truth|, k) hits at the top."""
    k = check_k(k)
    truth = _check_truth(truth)
    flags = np.asarray(_hit_flags(ranked, truth, k), dtype=np.float64)
    dcg = float(flags @ _discounts(len(flags))) if len(flags) else 0.0
    ideal = float(_discounts(min(len(truth), k)).sum())
    return dcg / ideal


def r_precision(ranked: Sequence[str], truth: Iterable[str]) -> float:
    """|top-R ∩ truth| / R with R = |truth| (RecSys Challenge 2018, without artist credit)."""
    truth = _check_truth(truth)
    return sum(_hit_flags(ranked, truth, len(truth))) / len(truth)


def _query_ids(rankings: Mapping, truths: Mapping) -> list:
    """The queries that are scored: every query with a truth; each must have a ranking."""
    missing = [q for q in truths if q not in rankings]
    if missing:
        raise ValueError(f"rankings: no ranking for {len(missing)} queries, e.g. {missing[:3]!r}")
    if not truths:
        raise ValueError("truths: no queries to evaluate")
    return list(truths)


def evaluate_rankings(
    rankings: Mapping[str, Sequence[str]],
    truths: Mapping[str, Iterable[str]],
    ks: Sequence[int] = (10, 100),
) -> dict:
    """Mean Recall@k and NDCG@k for every k in ``ks``, and mean R-precision, over the queries of ``truths``.

    Returns ``{"n_queries", "qids", "recall@10", "ndcg@10", ..., "r_precision", "per_query": {metric: array}}``;
    ``per_query`` arrays are aligned with ``qids`` (the order of ``truths``) so that two methods scored on the
    same truths can be compared query by query (``paired_bootstrap``). Rankings for queries that have no
    truth are ignored; a query with a truth but no ranking, or with an empty truth, raises ValueError.

    R-precision looks at the top |truth| songs, so rankings should hold max(max(ks), |truth|) songs;
    ``n_short_rankings`` counts those that do not (their missing slots score as misses; a warning is logged).
    """
    ks = [check_k(k, "ks") for k in ks]
    qids = _query_ids(rankings, truths)
    per_query: dict[str, list[float]] = {f"{m}@{k}": [] for k in ks for m in ("recall", "ndcg")}
    per_query["r_precision"] = []
    n_short = 0
    for q in qids:
        try:
            truth = _check_truth(truths[q])
        except ValueError as err:
            raise ValueError(f"truths[{q!r}]: {err}") from None
        ranked = list(rankings[q])
        n_short += len(ranked) < max(max(ks), len(truth))
        for k in ks:
            per_query[f"recall@{k}"].append(recall_at_k(ranked, truth, k))
            per_query[f"ndcg@{k}"].append(ndcg_at_k(ranked, truth, k))
        per_query["r_precision"].append(r_precision(ranked, truth))
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in per_query.items()}
    if n_short:
        log.warning("%d of %d rankings are shorter than max(max(ks), |truth|): their R-precision / recall "
                    "count the missing slots as misses", n_short, len(qids))
    result: dict = {"n_queries": len(qids), "qids": qids, "n_short_rankings": n_short}
    result.update({name: float(values.mean()) for name, values in arrays.items()})
    result["per_query"] = arrays
    return result


def catalogue_coverage(rankings: Mapping[str, Sequence[str]], catalogue_size: int, k: int = 10) -> float:
    """Share of the catalogue that appears in at least one top-k list."""
    k = check_k(k)
    if catalogue_size < 1:
        raise ValueError(f"catalogue_size must be positive, got {catalogue_size!r}")
    shown: set[str] = set()
    for ranked in rankings.values():
        shown.update(ranked[:k])
    return len(shown) / catalogue_size


def recall_curve(
    rankings: Mapping[str, Sequence[str]], truths: Mapping[str, Iterable[str]], ks: Sequence[int]
) -> dict[int, float]:
    """Mean Recall@k for each k, over the queries of ``truths`` (same rules as ``evaluate_rankings``)."""
    ks = [check_k(k, "ks") for k in ks]
    qids = _query_ids(rankings, truths)
    totals = dict.fromkeys(ks, 0.0)
    for q in qids:
        truth = _check_truth(truths[q])
        ranked = list(rankings[q])
        for k in ks:
            totals[k] += recall_at_k(ranked, truth, k)
    return {k: totals[k] / len(qids) for k in ks}


def ndcg_at_10_of(rankings: Mapping[str, Sequence[str]], truths: Mapping[str, Iterable[str]]) -> float:
    """Mean NDCG@10 of ``rankings`` over their own queries (each must have a truth)."""
    return float(evaluate_rankings(rankings, {q: truths[q] for q in rankings}, ks=(10,))["ndcg@10"])


def format_diff_ci(ci: Mapping) -> str:
    """``paired_bootstrap``'s mean difference and 95% CI as text: ``+0.0023 [-0.0052, +0.0099]``."""
    return f"{ci['mean_diff']:+.4f} [{ci['ci_low']:+.4f}, {ci['ci_high']:+.4f}]"


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap of mean(a - b) over queries (a and b: per-query scores on the same queries).

    Resamples queries with replacement ``n`` times. Returns the observed mean difference, the 95% percentile
    interval of the resampled means, ``share_a_better`` (share of resamples with a mean difference > 0) and
    ``p_value``, a two-sided bootstrap p-value: twice the share of resamples on the far side of zero, capped
    at 1 (a rough figure, not an exact test).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D arrays of the same length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("a and b are empty")
    check_k(n, "n")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n, dtype=np.float64)
    for start in range(0, n, 256):  # chunks keep the index matrix small for many queries
        stop = min(n, start + 256)
        idx = rng.integers(0, len(diff), size=(stop - start, len(diff)))
        means[start:stop] = diff[idx].mean(axis=1)
    share_above = float((means > 0).mean())
    share_below = float((means < 0).mean())
    far_side = min(float((means <= 0).mean()), float((means >= 0).mean()))
    return {
        "mean_diff": float(diff.mean()),
        "ci_low": float(np.percentile(means, 2.5)),
        "ci_high": float(np.percentile(means, 97.5)),
        "share_a_better": share_above,
        "share_b_better": share_below,
        "p_value": min(1.0, 2.0 * far_side),
        "n_queries": len(diff),
        "n_resamples": int(n),
    }


def bootstrap_mean_ci(values: Sequence[float], n: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The mean of per-query ``values`` and its bootstrap percentile interval (queries resampled with
    replacement ``n`` times): ``mean``, ``ci_low``, ``ci_high``."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {x.shape}")
    check_k(n, "n")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = np.empty(n, dtype=np.float64)
    for start in range(0, n, 256):
        stop = min(n, start + 256)
        means[start:stop] = x[rng.integers(0, len(x), size=(stop - start, len(x)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return {"mean": float(x.mean()), "ci_low": float(np.percentile(means, tail)),
            "ci_high": float(np.percentile(means, 100 - tail)), "n_queries": len(x), "n_resamples": int(n)}


__all__ = [
    "bootstrap_mean_ci",
    "catalogue_coverage",
    "evaluate_rankings",
    "format_diff_ci",
    "ndcg_at_10_of",
    "ndcg_at_k",
    "paired_bootstrap",
    "r_precision",
    "recall_at_k",
    "recall_curve",
]
