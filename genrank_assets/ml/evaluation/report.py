"""Held-out evaluation (docs/benchmark.md protocol): methods side by side, latency, report, promotion decision."""
from __future__ import annotations

import logging
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from genrank_assets.ml.evaluation.metrics import (
    bootstrap_mean_ci,
    catalogue_coverage,
    evaluate_rankings,
    paired_bootstrap,
    recall_curve,
)
from genrank_assets.ml.plots import curves_plot, grouped_bar_plot, interval_bar_plot, markdown_image

log = logging.getLogger(__name__)

RECALL_CURVE_KS = (1, 5, 10, 20, 50, 100)


@dataclass
class MethodResult:
    name: str
    rankings: dict[str, list[str]]
    metrics: dict
    latency_ms: list[float] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=dict)
    invalid_code_rate: float | None = None
    peak_rss_mib: float = 0.0

    def row(self) -> dict:
        lat = np.asarray(self.latency_ms) if self.latency_ms else np.asarray([np.nan])
        return {
            "method": self.name,
            "recall@10": self.metrics["recall@10"],
            "ndcg@10": self.metrics["ndcg@10"],
            "recall@100": self.metrics["recall@100"],
            "r_precision": self.metrics["r_precision"],
            "coverage@10": self.metrics.get("coverage@10", np.nan),
            "invalid_code_rate": np.nan if self.invalid_code_rate is None else self.invalid_code_rate,
            "latency_p50_ms": float(np.nanpercentile(lat, 50)),
            "latency_p95_ms": float(np.nanpercentile(lat, 95)),
            "peak_rss_mib": self.peak_rss_mib,
            "n_queries": self.metrics["n_queries"],
        }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate_method(
    name: str,
    rank_many: Callable[[list[str]], list[list[str]]],
    qids: Sequence[str],
    texts: Sequence[str],
    truths: dict[str, set[str]],
    catalogue_size: int,
    *,
    rank_one: Callable[[str], object] | None = None,
    latency_queries: int = 50,
    before_timing: Callable[[], object] | None = None,
) -> MethodResult:
    """Rank every query with ``rank_many`` (batched), then time ``rank_one`` on the first queries, one by one
    (``before_timing`` is called in between: e.g. to reset stage timers, so they hold single-query times)."""
    t0 = time.perf_counter()
    ranked = rank_many(list(texts))
    seconds = time.perf_counter() - t0
    rankings = {q: list(r) for q, r in zip(qids, ranked)}
    metrics = evaluate_rankings(rankings, truths, ks=(10, 100))
    metrics["coverage@10"] = catalogue_coverage(rankings, catalogue_size, k=10)
    metrics["recall_curve"] = recall_curve(rankings, truths, RECALL_CURVE_KS)
    latency = []
    if before_timing is not None:
        before_timing()
    for text in list(texts)[:latency_queries] if rank_one is not None else []:
        t = time.perf_counter()
        rank_one(text)
        latency.append((time.perf_counter() - t) * 1000)
    if not latency:  # batched methods: the mean time per query of the batched pass
        latency = [seconds * 1000 / max(1, len(texts))]
    log.info("%s: ndcg@10 %.4f recall@100 %.4f (%d queries, %.1fs)", name, metrics["ndcg@10"], metrics["recall@100"],
             len(qids), seconds)
    return MethodResult(name, rankings, metrics, latency_ms=latency, peak_rss_mib=peak_rss_mib())


def fill_with(ranked: Sequence[str], fallback: Sequence[str], n: int) -> list[str]:
    """``ranked`` then ``fallback`` songs not already in it, up to n."""
    out, seen = [], set()
    for s in list(ranked) + list(fallback):
        if s not in seen:
            seen.add(s)
            out.append(s)
            if len(out) == n:
                break
    return out


def results_table(results: Sequence[MethodResult]) -> pd.DataFrame:
    return pd.DataFrame([r.row() for r in results])


def significance(results: Sequence[MethodResult], reference: str, metric: str = "ndcg@10") -> dict[str, dict]:
    """Paired bootstrap of every method against ``reference`` on the same queries."""
    ref = next((r for r in results if r.name == reference), None)
    if ref is None:
        return {}
    out = {}
    for r in results:
        if r.name != reference:
            out[r.name] = paired_bootstrap(r.metrics["per_query"][metric], ref.metrics["per_query"][metric], n=1000)
    return out


STAGE_LABELS = {"generate": "generate (TIGER beam search)", "classical": "classical (kNN + co-occurrence scores)",
                "rank": "rank (ranker + final score)"}
TOTAL_LABEL = "whole query (p50)"


def latency_groups(results: Sequence[MethodResult]) -> dict[str, dict[str, float]]:
    """method -> {stage: median ms per query, ..., whole query: p50 ms}: the stages each system ran (timed on
    the single-query calls, as the p50 is), then the whole call, for every method."""
    groups = {}
    for r in results:
        stages = {STAGE_LABELS.get(k, k): float(v) for k, v in r.stage_ms.items() if np.isfinite(v)}
        groups[r.name] = {**stages, TOTAL_LABEL: r.row()["latency_p50_ms"]}
    return groups


def ndcg_intervals(results: Sequence[MethodResult], n: int = 1000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """method -> (NDCG@10, 95% bootstrap low, high) over the queries."""
    out = {}
    for r in results:
        ci = bootstrap_mean_ci(r.metrics["per_query"]["ndcg@10"], n=n, seed=seed)
        out[r.name] = (ci["mean"], ci["ci_low"], ci["ci_high"])
    return out


def write_report(
    results: Sequence[MethodResult],
    out_dir: Path,
    *,
    title: str,
    context_lines: Sequence[str] = (),
    reference: str | None = None,
    stage_ms: dict[str, float] | None = None,
    highlight: Sequence[str] = (),
) -> dict[str, Path]:
    """Markdown report under ``out_dir`` with three plots: NDCG@10 per method with bootstrap 95% intervals,
    Recall@K curves, and latency per method (its stages, when it has stages, and the whole query). The stages
    come from each result's ``stage_ms``; ``stage_ms`` (flat `method:stage` keys) is accepted and ignored."""
    del stage_ms
    out_dir.mkdir(parents=True, exist_ok=True)
    table = results_table(results)
    n = len(results[0].rankings) if results else 0
    ndcg_png = interval_bar_plot(ndcg_intervals(results), out_dir / "ndcg_at_10.png", highlight=highlight,
                                 title=f"NDCG@10 per method ({n} test queries)",
                                 xlabel="NDCG@10, with its 95% bootstrap interval (1,000 resamples of the queries)")
    curves = {r.name: r.metrics["recall_curve"] for r in results}
    recall_png = curves_plot(curves, out_dir / "recall_at_k.png", title="Recall@K on the test split",
                             xlabel="K (songs recommended)", ylabel="Recall@K", logx=True)
    latency_png = grouped_bar_plot(
        latency_groups(results), out_dir / "latency.png", title="Latency per query (ms, one query at a time)",
        ylabel="ms per query", fmt="{:.1f}", series_order=[*STAGE_LABELS.values(), TOTAL_LABEL],
        note="stages: median over the timed single queries; whole query: p50 of the same calls")
    lines = [f"# {title}", "", *context_lines, "", table.round(4).to_markdown(index=False), ""]
    if reference:
        sig = significance(results, reference)
        if sig:
            lines += [f"Paired bootstrap of NDCG@10 against `{reference}` (1,000 resamples):", "",
                      "| method | mean diff | 95% CI | p |", "|---|---|---|---|"]
            for name, s in sig.items():
                lines.append(f"| {name} | {s['mean_diff']:+.4f} | [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}] | {s['p_value']:.3f} |")
            lines.append("")
    lines += ["![NDCG@10](ndcg_at_10.png)", "", "![recall@K](recall_at_k.png)", "", "![latency](latency.png)", ""]
    md = out_dir / "report.md"
    md.write_text("\n".join(lines))
    return {"markdown": md, "ndcg_png": ndcg_png, "recall_png": recall_png, "latency_png": latency_png}


def report_markdown(paths: dict[str, Path]) -> str:
    """The report's markdown with its plots (the PNGs beside it) inlined, for a UI that cannot read the files."""
    md_path = paths["markdown"]

    def inline(match: re.Match) -> str:
        png = md_path.parent / match.group(2)
        return markdown_image(png, match.group(1)) if png.is_file() else match.group(0)

    return re.sub(r"!\[([^\]]*)\]\(([^)/:]+\.png)\)", inline, md_path.read_text())


@dataclass
class PromotionDecision:
    promote: bool
    reason: str
    new_ndcg: float
    champion_ndcg: float | None

    def gate_markdown(self, candidate: str, champion: str | None) -> str:
        """The decision as a short markdown note: what was compared, both figures, the outcome."""
        champ = "none" if self.champion_ndcg is None else f"{self.champion_ndcg:.4f}"
        return "\n".join([
            "# Promotion gate", "",
            f"- candidate: `{candidate}`, NDCG@10 {self.new_ndcg:.4f}",
            f"- champion: `{champion or 'none'}`, NDCG@10 {champ} (re-evaluated on the same queries)",
            f"- decision: {'promoted' if self.promote else 'champion kept'} ({self.reason})", ""])


def decide_promotion(new_ndcg: float, champion_ndcg: float | None, tolerance: float = 0.0) -> PromotionDecision:
    """Promote when there is no champion, or the new NDCG@10 is not worse than the champion's (same queries)."""
    if champion_ndcg is None:
        return PromotionDecision(True, "no champion yet: first model is promoted", new_ndcg, None)
    if new_ndcg + tolerance >= champion_ndcg:
        return PromotionDecision(True, f"new NDCG@10 {new_ndcg:.4f} >= champion {champion_ndcg:.4f}", new_ndcg,
                                 champion_ndcg)
    return PromotionDecision(False, f"new NDCG@10 {new_ndcg:.4f} < champion {champion_ndcg:.4f}: champion kept",
                             new_ndcg, champion_ndcg)
