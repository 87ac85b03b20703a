"""The evaluation procedure (docs/benchmark.md protocol) and the champion comparison, as plain functions.

``evaluate_methods`` ranks the queries of one split with every method side by side: popularity, the reference
title-kNN, title-kNN + co-occurrence, the generator alone, and the two generate-and-rank systems (generator
candidates; generator ∪ kNN + co-occurrence candidates), whose final-score weights are first chosen on another
split (never the test split). It returns an ``EvaluationResults``: the per-method results, the servable systems
(the classical ones too: ``served_method: auto`` chooses among all of them by val NDCG@10), the weight trials and
the figures the report shows.

``write_evaluation_report`` writes them as the stage's report (``report.write_report`` with the protocol's context).
``compare_with_champion`` re-evaluates the current champion on the same queries and applies the promotion rule
(``report.decide_promotion``) to the new system's NDCG@10, which ``challenger_ndcg_at_10`` takes from the
challenger's own evaluation when that was on the same queries (else it evaluates it there too).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from genrank_assets.ml.baselines.classical import benchmark_queries
from genrank_assets.ml.evaluation.ablation import ablation_markdown, ltr_ablation, val_rankings
from genrank_assets.ml.evaluation.cold import (
    cold_comparison,
    cold_markdown,
    cold_metrics,
    cold_share,
    cold_table,
    cold_truths,
    source_reach,
)
from genrank_assets.ml.evaluation.metrics import evaluate_rankings, format_diff_ci, ndcg_at_10_of, paired_bootstrap
from genrank_assets.ml.evaluation.report import (
    MethodResult,
    PromotionDecision,
    decide_promotion,
    evaluate_method,
    fill_with,
    peak_rss_mib,
    results_table,
    write_report,
)
from genrank_assets.ml.ranking.ltr.candidates import SOURCES, CandidateSources
from genrank_assets.ml.ranking.ltr.ranker import LTRParams, query_folds
from genrank_assets.ml.ranking.ltr.tables import training_mask
from genrank_assets.ml.serving.classical_recommender import CLASSICAL_SYSTEMS, ClassicalRecommender
from genrank_assets.ml.serving.ltr_recommender import LTRRecommender
from genrank_assets.ml.serving.recommender import (
    ClassicalConfig,
    ComponentScores,
    Recommender,
    RecommenderConfig,
    rank_with_weights,
)
from genrank_assets.ml.training import format_duration

log = logging.getLogger(__name__)

# The generate-and-rank systems, by the candidate source of their recommender.
SYSTEMS = {"generate_and_rank": "generator", "generate_and_rank_hybrid": "hybrid"}
LTR = "ltr"  # the learning-to-rank system (ml.serving.ltr_recommender), evaluated when its ranker is given
LTR_WITHOUT_COLD_START = "ltr_without_cold_start"  # the same ranker over the songs with learned vectors only
MODEL_SYSTEMS = (*SYSTEMS, LTR)  # the systems built on the trained models
# Any of them can be served; "auto": the best on the tuning split, equal figures going to the earlier one here
# (the simpler system: the classical ones, simplest first, then the model systems)
SERVED_METHODS = (*CLASSICAL_SYSTEMS, *MODEL_SYSTEMS)
CANDIDATES = 100  # songs each system and the generator alone propose per query (the protocol's Recall@100)
RIDGE = "kernel_ridge_cooccurrence"  # docs/benchmark.md's strongest classical baseline (bounded form), the CI reference
CV_FOLDS = LTRParams().folds  # folds of the honest tuning-split figures (the LTR ranker's cross-validation folds)
MLFLOW_METRICS = ("recall@10", "ndcg@10", "recall@100", "r_precision", "coverage@10", "latency_p50_ms")


class PhaseClock:
    """Wall seconds of each phase of the evaluation, and one progress line per finished phase, in the training
    loop's format (``<name> <phase> done in 1m12s (phase 2/6, 1m40s so far)``), to ``log_fn`` and this logger."""

    def __init__(self, total: int, log_fn: Callable[[str], None] | None = None, name: str = "evaluation_report"):
        self.total, self.log_fn, self.name = total, log_fn, name
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def phase(self, label: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[label] = round(time.perf_counter() - t0, 1)
        line = (f"{self.name} {label} done in {format_duration(self.seconds[label])} "
                f"(phase {len(self.seconds)}/{self.total}, {format_duration(time.perf_counter() - self._start)} so far)")
        log.info(line)
        if self.log_fn is not None:
            self.log_fn(line)


@dataclass(frozen=True)
class Queries:
    """The protocol's queries of one split: playlists with a title and songs; truth = their distinct songs."""

    split: str
    qids: list[str]
    texts: list[str]
    truths: dict[str, set[str]]

    @classmethod
    def of_split(cls, corpus: pd.DataFrame, split: str, max_queries: int = 0) -> Queries:
        """Every query of ``split`` in corpus order, or the first ``max_queries`` of them (0: all)."""
        qids, texts, truths = benchmark_queries(corpus, split=split)
        if max_queries:
            qids, texts = qids[:max_queries], texts[:max_queries]
            truths = {q: truths[q] for q in qids}
        return cls(split, qids, texts, truths)

    def __len__(self) -> int:
        return len(self.qids)

    @property
    def depth(self) -> int:
        """How deep every ranking goes: R-precision reads the top |truth| songs, and a truth can exceed 100."""
        return max(CANDIDATES, max(len(t) for t in self.truths.values()))

    @property
    def fingerprint(self) -> str:
        """Identifies these queries (ids in order), so a later step can check it evaluates the same ones."""
        return hashlib.sha1("\n".join(self.qids).encode("utf-8")).hexdigest()[:16]


@dataclass
class TrainedModels:
    """What the systems are built from: the generator, the ranker and the song side the ranker reads."""

    generator: Any  # TigerGenerator
    ranker: Any  # the cross-encoder ranker
    song_vectors: Any  # SongVectors
    song_info: dict[str, tuple[str, str]]
    cold_songs: frozenset[str] = frozenset()  # songs whose vectors (and codes) are cold-start predictions
    # The same models over the songs with learned vectors only: the served system without the cold-start path
    without_cold_start: TrainedModels | None = None


@dataclass
class EvaluationSettings:
    n_candidates: int = 100  # generator candidates per query of the systems' recommenders
    num_beams: int | None = None  # None: the generator's own setting
    popularity_grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0)
    classical_grid: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # hybrid only; the other uses 0
    latency_queries: int = 50  # queries timed one by one per method


@dataclass
class EvaluationResults:
    queries: Queries
    tune_queries: Queries
    results: list[MethodResult]
    systems: dict[str, Recommender]  # method -> its recommender, weights chosen on ``tune_queries``
    weight_trials: dict[str, pd.DataFrame] = field(default_factory=dict)  # method -> every weight pair tried
    generator_shortfall: float = 0.0  # mean songs short of 100 in the generator's candidates, before the fill
    ablation: pd.DataFrame | None = None  # the LTR system and its ablations vs ridge + co-occurrence (ablation.py)
    ablation_lines: list[str] = field(default_factory=list)  # the same as markdown, for the report
    # system -> NDCG@10 on the tuning split, measured on queries it was not fitted on: the classical systems'
    # plain figure (fitted on train, nothing tuned), the generate-and-rank systems' cross-validated (weights
    # chosen on other folds), the LTR ranker's out-of-fold scores; what `served_method: auto` compares
    tune_ndcg: dict[str, float] = field(default_factory=dict)
    phase_s: dict[str, float] = field(default_factory=dict)  # phase of evaluate_methods -> wall seconds
    tune_rankings: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # the rankings behind tune_ndcg
    cold: dict = field(default_factory=dict)  # the cold part of the truth (``cold_part``)

    def ranked_on_tuning_split(self) -> list[str]:
        """The systems measured on the tuning (val) split, best NDCG@10 first (equal: the earlier served method)."""
        return sorted(self.tune_ndcg, key=lambda m: (-self.tune_ndcg[m], SERVED_METHODS.index(m)))

    def best_on_tuning_split(self) -> str:
        """The system with the best NDCG@10 on the tuning (val) split: what ``served_method: auto`` serves."""
        if not self.tune_ndcg:
            raise ValueError("no system was measured on the tuning split")
        return self.ranked_on_tuning_split()[0]

    @cached_property
    def choice_margin(self) -> dict | None:
        """How far ``best_on_tuning_split`` is ahead of the runner-up on the tuning queries both ranked: a paired
        bootstrap of per-query NDCG@10 (1,000 resamples), so a choice inside the noise shows as one. None with
        fewer than two systems measured."""
        if len(self.tune_rankings) < 2:
            return None
        chosen, runner_up = self.ranked_on_tuning_split()[:2]
        truths = {q: self.tune_queries.truths[q] for q in self.tune_queries.qids
                  if q in self.tune_rankings[chosen] and q in self.tune_rankings[runner_up]}
        per_query = [evaluate_rankings({q: self.tune_rankings[m][q] for q in truths}, truths, ks=(10,))
                     ["per_query"]["ndcg@10"] for m in (chosen, runner_up)]
        return {"served": chosen, "runner_up": runner_up, **paired_bootstrap(*per_query, n=1000, seed=0)}

    def result(self, method: str) -> MethodResult:
        return next(r for r in self.results if r.name == method)

    def ndcg_at_10(self, method: str) -> float:
        return float(self.result(method).metrics["ndcg@10"])

    @property
    def invalid_code_rate(self) -> float:
        """The generator's invalid-code rate over every generation of the evaluation."""
        rates = [r.invalid_code_rate for r in self.results if r.invalid_code_rate is not None]
        return float(rates[-1] if rates else 0.0)

    @property
    def stage_ms(self) -> dict[str, float]:
        """`method:stage` -> median ms per query, for the systems' stages that took time."""
        return {f"{r.name}:{k}": v for r in self.results for k, v in r.stage_ms.items() if v > 0}

    def table(self) -> pd.DataFrame:
        return results_table(self.results)

    def mlflow_metrics(self) -> dict[str, float]:
        """`method.metric` -> value (MLflow names: `@` spelt `_at_`), for the figures present."""
        rows = self.table().to_dict("records")
        return {f"{r['method']}.{k}".replace("@", "_at_"): float(r[k]) for r in rows for k in MLFLOW_METRICS
                if pd.notna(r[k])}


def evaluate_methods(corpus: pd.DataFrame, models: TrainedModels, queries: Queries, tune_queries: Queries,
                     settings: EvaluationSettings | None = None, ltr: tuple[pd.DataFrame, Any] | None = None,
                     log_fn: Callable[[str], None] | None = None) -> EvaluationResults:
    """Every method on ``queries`` (classical ones fitted on the corpus's train split); the systems' weights are
    chosen on ``tune_queries`` first (none: both weights 0). Rankings are ``queries.depth`` deep; the generator's
    and the systems' continue with popular songs after their candidates. With ``ltr`` = (the ranking_features
    table, the LTRRanker trained on its ``training_rows``): the learning-to-rank system and its ablations on the test rows
    (``ablation.ltr_ablation``), each against kernel ridge + co-occurrence. Each phase (the classical baselines,
    the generator, each system, the LTR ablation) logs one progress line to ``log_fn`` when done; its wall seconds
    are ``phase_s``."""
    settings = settings or EvaluationSettings()
    if not len(queries):
        raise ValueError(f"no {queries.split} queries (playlists with a title) in the corpus")
    depth, catalogue = queries.depth, len(models.song_vectors)
    clock = PhaseClock(2 + len(SYSTEMS) + (2 + (models.without_cold_start is not None) if ltr is not None else 0),
                       log_fn)
    systems, trials, tune_ndcg, tune_rankings = {}, {}, {}, {}
    with clock.phase("classical baselines"):
        classical = {name: make().fit(corpus) for name, make in CLASSICAL_SYSTEMS.items()}
        knn_cooc = classical["knn_cooccurrence"]
        popular = classical["popularity"].recommend("popular", depth)
        results = [evaluate_method(name, lambda ts, m=model: m.recommend_many(ts, depth), queries.qids,
                                   queries.texts, queries.truths, catalogue,
                                   rank_one=lambda t, m=model: m.recommend(t, 10),
                                   latency_queries=settings.latency_queries)
                   for name, model in classical.items()]
        for name, model in classical.items():  # servable too: `auto` weighs them against the model systems
            systems[name] = ClassicalRecommender(model, ClassicalConfig(name), models.song_info)
            if len(tune_queries):  # nothing of theirs is tuned: their plain val figure is honest
                tune_rankings[name] = dict(zip(tune_queries.qids, model.recommend_many(tune_queries.texts, 10)))
                tune_ndcg[name] = ndcg_at_10_of(tune_rankings[name], tune_queries.truths)

    generator = models.generator
    generator.reset_counters()
    with clock.phase("generator"):
        generated, shortfall = evaluate_generator(generator, queries, popular, catalogue, settings)
    results.append(generated)
    for method, source in SYSTEMS.items():
        with clock.phase(method):
            rec = Recommender(models.generator, models.ranker, models.song_vectors, models.song_info,
                              RecommenderConfig(n_candidates=settings.n_candidates, candidate_source=source,
                                                num_beams=settings.num_beams),
                              knn=knn_cooc if source == "hybrid" else None)
            grid = settings.classical_grid if source == "hybrid" else [0.0]
            trials[method], cv_ranked = choose_weights(rec, tune_queries, settings.popularity_grid, grid)
            if cv_ranked is not None:
                tune_rankings[method] = cv_ranked
                tune_ndcg[method] = ndcg_at_10_of(cv_ranked, tune_queries.truths)
            log.info("%s: popularity_weight=%s classical_weight=%s (chosen on %d %s queries)", method,
                     rec.config.popularity_weight, rec.config.classical_weight, len(tune_queries),
                     tune_queries.split)
            result = evaluate_system(method, rec, queries, popular, catalogue, settings.latency_queries)
            result.invalid_code_rate = generator.invalid_code_rate
            results.append(result)
            systems[method] = rec
    ablation = None
    if ltr is not None:
        served, ltr_results, ablation = _evaluate_ltr(*ltr, corpus, models, queries, tune_queries, classical, results,
                                                      popular, settings, clock, systems, tune_rankings, tune_ndcg)
        results.extend([served, *ltr_results])
    cold = cold_part(results, queries, corpus, None if ltr is None else ltr[0])
    lines = [] if ablation is None else ablation_markdown(ablation, RIDGE)
    return EvaluationResults(
        queries=queries, tune_queries=tune_queries, results=results, systems=systems,
        weight_trials={m: t for m, t in trials.items() if t is not None}, generator_shortfall=shortfall,
        ablation=ablation, ablation_lines=lines + cold_markdown(cold["table"], cold["share"], cold["comparison"],
                                                                 cold["source_reach"]),
        tune_ndcg=tune_ndcg, phase_s=clock.seconds, tune_rankings=tune_rankings, cold=cold)


def cold_part(results: list[MethodResult], queries: Queries, corpus: pd.DataFrame,
              features: pd.DataFrame | None) -> dict:
    """The cold part of the test truth (``ml/evaluation/cold.py``): its share, every method's figures on it, the
    served LTR system with vs without the cold-start path (paired), and which pool sources reach it."""
    by_name = {r.name: r for r in results}
    comparison = {}
    if LTR in by_name and LTR_WITHOUT_COLD_START in by_name:
        comparison = cold_comparison(by_name[LTR].rankings, by_name[LTR_WITHOUT_COLD_START].rankings,
                                     queries.truths, corpus)
    reach = {}
    if features is not None:
        test_rows = features[features["split"] == queries.split]
        reach = source_reach(test_rows, cold_truths(queries.truths, corpus), SOURCES)
    return {"share": cold_share(queries.truths, corpus), "table": cold_table(results, queries.truths, corpus),
            "comparison": comparison, "source_reach": reach}


def _evaluate_ltr(features: pd.DataFrame, ltr_model, corpus: pd.DataFrame, models: TrainedModels, queries: Queries,
                  tune_queries: Queries, classical: dict, results: list[MethodResult], popular: list[str],
                  settings: EvaluationSettings, clock: PhaseClock, systems: dict, tune_rankings: dict,
                  tune_ndcg: dict) -> tuple[MethodResult, list[MethodResult], pd.DataFrame]:
    """The learning-to-rank system served (added to ``systems``), its out-of-fold figure on the tuning queries
    (added to ``tune_rankings`` / ``tune_ndcg``) and its ablations against kernel ridge + co-occurrence: (the
    served system's result, the ablations' results, the ablation table)."""
    depth, catalogue = queries.depth, len(models.song_vectors)
    with clock.phase(LTR):
        # The served LTR system, through the serving code path (pools and features built live, query by
        # query); the pool's classical sources are the baselines fitted above (the same configs), not a refit
        sources = CandidateSources.of_fitted(corpus, classical["knn_cooccurrence"], classical[RIDGE], models.generator)
        rec = LTRRecommender.fit(corpus, models.generator, models.ranker, models.song_vectors,
                                 models.song_info, ltr_model, sources=sources, cold_songs=models.cold_songs)
        served = evaluate_system(LTR, rec, queries, popular, catalogue, settings.latency_queries)
        systems[LTR] = rec
    extra = []
    if models.without_cold_start is not None:
        with clock.phase(LTR_WITHOUT_COLD_START):
            warm = models.without_cold_start
            sources = CandidateSources.of_fitted(corpus, classical["knn_cooccurrence"], classical[RIDGE], warm.generator)
            rec = LTRRecommender.fit(corpus, warm.generator, warm.ranker, warm.song_vectors, warm.song_info,
                                     ltr_model, sources=sources)
            extra.append(evaluate_system(LTR_WITHOUT_COLD_START, rec, queries, popular, catalogue, 0))
    with clock.phase("ltr ablation"):
        # out-of-fold NDCG@10 on the tuning queries that have features (every one unless max_queries differ); it
        # fails when the out-of-fold scores do not match the training rows of the features
        tune_rankings[LTR] = val_rankings(ltr_model, features, tune_queries.truths, training_mask(features))
        tune_ndcg[LTR] = ndcg_at_10_of(tune_rankings[LTR], tune_queries.truths)
        ridge = next(r for r in results if r.name == RIDGE)
        ltr_results, ablation = ltr_ablation(features, ltr_model, queries.truths, ridge.rankings, ridge,
                                             catalogue, depth, val_truths=tune_queries.truths, served=served)
    return served, [*extra, *ltr_results], ablation


def write_evaluation_report(results: EvaluationResults, out_dir: Path, *, models: Sequence[str],
                            served_method: str) -> dict[str, Path]:
    """The evaluation stage's report (``write_report`` with the protocol's context) and, per system, the weight
    pairs tried on the tuning split (``weights_<method>.csv``)."""
    q, tune = results.queries, results.tune_queries
    served = ", ".join(f"{k}={v}" for k, v in results.systems[served_method].describe().items() if k != "method")
    on_tune = ", ".join(f"`{m}` {v:.4f}" for m, v in results.tune_ndcg.items())
    margin = results.choice_margin
    lines = [
        f"Split `{q.split}`: {len(q)} queries (docs/benchmark.md protocol); weights tuned on `{tune.split}` "
        f"({len(tune)} queries). Models: {', '.join(f'`{m}`' for m in models)}.",
        f"Every ranking is {q.depth} songs deep (the largest truth), so R-precision is exact. Generator-only rankings "
        f"are the candidates in generation order; generator rankings and generate-and-rank rankings continue with "
        f"popular songs after their candidates (generator shortfall for 100: {results.generator_shortfall:.1f} songs "
        f"per query).",
        "`title_knn` is docs/benchmark.md's reference (char 2-4-grams, 50 neighbours, song-id ties among voted songs).",
        f"Served system: `{served_method}` ({served}). NDCG@10 of the systems on `{tune.split}` (what "
        f"`served_method: auto` chooses by, equal figures going to the simpler system; the classical systems' "
        f"are plain, fitted on train; the generate-and-rank systems' cross-validated; the LTR ranker's "
        f"out-of-fold): {on_tune or 'not measured'}."
        + ("" if margin is None else f" `{margin['served']}` − `{margin['runner_up']}` there: "
           f"{format_diff_ci(margin)} (paired bootstrap, {margin['n_queries']} queries)."),
        f"**Promotion gate:** the `champion` step compares `{served_method}` (NDCG@10 "
        f"{results.ndcg_at_10(served_method):.4f}) with the current champion re-evaluated on these queries; its "
        f"decision is that step's metadata, `gate.md` beside this report in MLflow and the run's `genrank.*` tags.",
        f"Peak RSS of the evaluation process: {peak_rss_mib():.0f} MiB.",
    ]
    paths = write_report(results.results, out_dir, title="genrank evaluation report", context_lines=lines,
                         reference="title_knn", highlight=(served_method,))
    for method, trials in results.weight_trials.items():
        trials.to_csv(out_dir / f"weights_{method}.csv", index=False)
    if results.cold:  # the cold part of the truth, for benchmarks/end_to_end.py and a notebook
        cold = {**results.cold, "table": results.cold["table"].to_dict("records")}
        (out_dir / "cold.json").write_text(json.dumps(cold, indent=1, default=float))
    if results.ablation is not None:
        results.ablation.to_csv(out_dir / "ablation.csv", index=False)
        md = paths["markdown"]
        md.write_text(md.read_text() + "\n" + "\n".join(results.ablation_lines))
    return paths


def evaluate_generator(generator, queries: Queries, popular: list[str], catalogue: int,
                       settings: EvaluationSettings) -> tuple[MethodResult, float]:
    """The generator alone: its candidates in generation order, then popular songs. Also returns the mean
    shortfall of its candidate lists (songs short of 100, before the fill)."""
    found = []

    def rank_many(texts):
        candidates = generator.generate_candidates_batch(texts, n=CANDIDATES, num_beams=settings.num_beams)
        found.extend(len(c) for c in candidates)
        return [fill_with(c, popular, queries.depth) for c in candidates]

    result = evaluate_method(
        "generator", rank_many, queries.qids, queries.texts, queries.truths, catalogue,
        rank_one=lambda t: generator.generate_candidates(t, n=CANDIDATES, num_beams=settings.num_beams),
        latency_queries=settings.latency_queries)
    result.invalid_code_rate = generator.invalid_code_rate
    return result, float(np.mean([max(0, CANDIDATES - n) for n in found]))


def tune_weights(cs: ComponentScores, qids: Sequence[str], truths: dict, popularity_grid: Sequence[float],
                 classical_grid: Sequence[float]) -> tuple[float, float, list[dict]]:
    """The (popularity, classical) weights of the final score with the best mean NDCG@10 on these (validation)
    queries, ranking as the recommender ranks (``rank_with_weights``); ties: the smaller weights. Also returns
    every pair tried."""
    trials = []
    for pw in popularity_grid:
        for cw in classical_grid:
            ranked = rank_with_weights(cs, pw, cw, 10)
            m = evaluate_rankings(dict(zip(qids, ranked)), truths, ks=(10,))
            trials.append({"popularity_weight": pw, "classical_weight": cw, "val_ndcg@10": m["ndcg@10"]})
    best = max(trials, key=lambda t: (t["val_ndcg@10"], -t["popularity_weight"] - t["classical_weight"]))
    return best["popularity_weight"], best["classical_weight"], trials


def cross_validated_rankings(cs: ComponentScores, qids: Sequence[str], truths: dict,
                             popularity_grid: Sequence[float], classical_grid: Sequence[float], folds: int = CV_FOLDS,
                             seed: int = 0) -> dict[str, list[str]]:
    """The top 10 of every query under weight tuning on queries it did not tune on: per query fold (``query_folds``,
    the folds the LTR ranker's out-of-fold scores use), the weights are chosen on the other folds and rank this
    one. Their NDCG@10 is the honest figure to compare with the LTR ranker's out-of-fold NDCG (the tuned pair's
    own NDCG is in-sample)."""
    qids = list(qids)
    fold = query_folds(qids, folds, seed)
    ranked = {}
    for k in range(folds):
        held, rest = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        if not len(held) or not len(rest):
            continue
        pick = lambda idx: ComponentScores(*[[part[i] for i in idx] for part in  # noqa: E731
                                              (cs.song_ids, cs.logits, cs.log_popularity, cs.classical)],
                                           tail=None if cs.tail is None else [cs.tail[i] for i in idx])
        rest_q = [qids[i] for i in rest]
        pw, cw, _ = tune_weights(pick(rest), rest_q, {q: truths[q] for q in rest_q}, popularity_grid, classical_grid)
        ranked.update(zip([qids[i] for i in held], rank_with_weights(pick(held), pw, cw, 10)))
    if not ranked:
        raise ValueError(f"too few tuning queries ({len(qids)}) for {folds}-fold cross-validation")
    return ranked


def choose_weights(rec: Recommender, tune_queries: Queries, popularity_grid: Sequence[float],
                   classical_grid: Sequence[float]) -> tuple[pd.DataFrame | None, dict[str, list[str]] | None]:
    """Set the recommender's final-score weights to the grid pair with the best NDCG@10 on ``tune_queries``
    (none: both 0); returns every pair tried with its NDCG@10 (None without queries) and the cross-validated
    rankings of that choice (``cross_validated_rankings``; None with fewer queries than folds)."""
    if not len(tune_queries):
        rec.set_weights(0.0, 0.0)
        return None, None
    components = rec.component_scores(tune_queries.texts, CANDIDATES)
    pw, cw, trials = tune_weights(components, tune_queries.qids, tune_queries.truths, popularity_grid, classical_grid)
    rec.set_weights(pw, cw)
    cv = None
    if len(tune_queries) >= CV_FOLDS:
        cv = cross_validated_rankings(components, tune_queries.qids, tune_queries.truths, popularity_grid,
                                      classical_grid)
    return pd.DataFrame(trials), cv


def evaluate_system(method: str, rec: Recommender, queries: Queries, popular: list[str], catalogue: int,
                    latency_queries: int) -> MethodResult:
    """A generate-and-rank system: its top 100, then popular songs; with the median time of each stage."""
    rec.reset_stage_times()
    result = evaluate_method(
        method, lambda ts: [fill_with([x.song_id for x in recs], popular, queries.depth)
                            for recs in rec.recommend_many(ts, CANDIDATES)],
        queries.qids, queries.texts, queries.truths, catalogue, rank_one=lambda t: rec.recommend(t, 10),
        latency_queries=latency_queries, before_timing=rec.reset_stage_times)  # stages: single-query times
    result.stage_ms = rec.stage_times.medians()
    return result


def recommender_ndcg_at_10(rec, queries: Queries) -> float:
    """NDCG@10 of a (registered) recommender on ``queries``, asked for 100 songs as ``evaluate_system`` asks."""
    ranked = {q: [x.song_id for x in recs] for q, recs in zip(queries.qids, rec.recommend_many(queries.texts, CANDIDATES))}
    return float(evaluate_rankings(ranked, queries.truths, ks=(10,))["ndcg@10"])


def compare_with_champion(new_ndcg: float, champion, queries: Queries, tolerance: float = 0.0) -> PromotionDecision:
    """The promotion decision for a new system whose NDCG@10 on ``queries`` is ``new_ndcg``: ``champion`` (the
    current champion recommender, None when there is none) is re-evaluated on the same queries first."""
    champion_ndcg = None if champion is None else recommender_ndcg_at_10(champion, queries)
    return decide_promotion(float(new_ndcg), champion_ndcg, tolerance)


REUSED, REEVALUATED = "reused", "re-evaluated"  # how the gate got the challenger's figure


def challenger_ndcg_at_10(candidate, queries: Queries, load_challenger: Callable[[], Any]) -> tuple[float, str]:
    """The challenger's NDCG@10 on ``queries`` and how it was got. ``candidate`` (a ``registry.Challenger``)
    carries the figure its own evaluation recorded on that registered version (the report's, or a refresh's gate
    evaluation) and the fingerprint of the queries it was measured on: on the same queries that figure is the
    one (``REUSED``, nothing is scored); on others the challenger (``load_challenger()``) is evaluated on these
    (``REEVALUATED``), as the champion is."""
    if candidate.queries_fingerprint == queries.fingerprint:
        return float(candidate.ndcg_at_10), REUSED
    return recommender_ndcg_at_10(load_challenger(), queries), REEVALUATED


@dataclass
class GateEvaluation:
    """What a refresh's gate reads: the served system's figures on the test queries and on their cold part."""

    result: MethodResult
    cold: dict  # cold_recall@100, cold_ndcg@10 (NaN without cold truth), cold_share, cold_queries

    def metadata(self) -> dict:
        m = self.result.metrics
        return {"ndcg@10": round(float(m["ndcg@10"]), 4), "recall@100": round(float(m["recall@100"]), 4),
                **{k: round(float(v), 4) for k, v in self.cold.items()}}


def gate_evaluation(method: str, rec, corpus: pd.DataFrame, queries: Queries) -> GateEvaluation:
    """The served system alone on ``queries`` (no baselines, no ablations: what the promotion gate needs, sized
    for a refresh per landed batch), through the serving code path; rankings continue with popular train songs."""
    popular = CLASSICAL_SYSTEMS["popularity"]().fit(corpus).recommend("popular", queries.depth)
    result = evaluate_system(method, rec, queries, popular, len(rec.song_info), latency_queries=0)
    cold = cold_truths(queries.truths, corpus)
    found = cold_metrics(result.rankings, cold)
    return GateEvaluation(result, {"cold_recall@100": found["cold_recall@100"], "cold_ndcg@10": found["cold_ndcg@10"],
                                   "cold_share": cold_share(queries.truths, corpus), "cold_queries": len(cold)})
