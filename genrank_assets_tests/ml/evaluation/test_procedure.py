"""The evaluation procedure on planted models: the results object and the champion comparison."""
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from genrank_assets.ml.evaluation.metrics import evaluate_rankings
from genrank_assets.ml.evaluation.procedure import (
    CV_FOLDS,
    REEVALUATED,
    REUSED,
    SERVED_METHODS,
    SYSTEMS,
    EvaluationSettings,
    Queries,
    TrainedModels,
    challenger_ndcg_at_10,
    choose_weights,
    compare_with_champion,
    evaluate_methods,
    recommender_ndcg_at_10,
)
from genrank_assets.ml.serving.classical_recommender import CLASSICAL_SYSTEMS, ClassicalRecommender
from genrank_assets.ml.serving.recommender import Recommender, RecommenderConfig
from genrank_assets_tests.ml.serving.fakes import HITS, SONGS, THEMES, FakeRanker, planted_corpus, planted_models

SETTINGS = EvaluationSettings(n_candidates=10, popularity_grid=[0.0, 1.0], classical_grid=[0.0, 2.0],
                              latency_queries=2)


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return planted_corpus()


PROGRESS: list[str] = []  # the progress lines of the `results` fixture's evaluation


@pytest.fixture(scope="module")
def results(corpus):
    models = TrainedModels(*planted_models(corpus))
    PROGRESS.clear()
    return evaluate_methods(corpus, models, Queries.of_split(corpus, "test"), Queries.of_split(corpus, "val"),
                            SETTINGS, log_fn=PROGRESS.append)


def test_queries_follow_the_protocol_and_identify_themselves(corpus):
    q = Queries.of_split(corpus, "test")
    assert len(q) == 3 * len(THEMES) and q.split == "test" and q.depth == 100
    assert q.truths[q.qids[0]] == set(SONGS["rock"][:5])
    first = Queries.of_split(corpus, "test", max_queries=2)
    assert first.qids == q.qids[:2] and set(first.truths) == set(first.qids)
    assert first.fingerprint != q.fingerprint and Queries.of_split(corpus, "test").fingerprint == q.fingerprint
    empty = corpus[corpus["split"] != "test"]
    with pytest.raises(ValueError, match="no test queries"):
        evaluate_methods(empty, TrainedModels(*planted_models(corpus)), Queries.of_split(empty, "test"),
                         Queries.of_split(corpus, "val"), SETTINGS)


def test_results_hold_every_method_in_order(results):
    assert [r.name for r in results.results] == ["popularity", "title_knn", "knn_cooccurrence",
                                                 "kernel_ridge_cooccurrence", "generator",
                                                 *SYSTEMS]  # no LTR ranker given: no ltr row
    table = results.table()
    assert table["method"].tolist() == [r.name for r in results.results]
    assert (table["n_queries"] == 9).all()
    assert results.invalid_code_rate == 0.0
    assert results.generator_shortfall == 90.0  # ten candidates per query out of 100
    metrics = results.mlflow_metrics()
    assert metrics["generate_and_rank.ndcg_at_10"] == pytest.approx(results.ndcg_at_10("generate_and_rank"))
    assert "popularity.recall_at_100" in metrics and not any("@" in k for k in metrics)


def test_each_phase_is_timed_and_reported_by_one_progress_line(results):
    phases = ["classical baselines", "generator", *SYSTEMS]  # no LTR ranker given: no ltr phases
    assert list(results.phase_s) == phases and all(s >= 0 for s in results.phase_s.values())
    assert len(PROGRESS) == len(phases)
    for i, (line, phase) in enumerate(zip(PROGRESS, phases), start=1):
        assert re.fullmatch(rf"evaluation_report {phase} done in \d+s \(phase {i}/{len(phases)}, \d+s so far\)", line)


def test_the_auto_choice_carries_its_margin_over_the_runner_up(results):
    """The served-by-auto system against the runner-up on the val queries, paired per query: the figures
    `auto` compared, and whether the choice is inside the noise."""
    margin = results.choice_margin
    # every servable system has its val figure: the classical ones (plain) and the generate-and-rank ones (CV)
    assert set(results.tune_rankings) == set(results.tune_ndcg) == {*CLASSICAL_SYSTEMS, *SYSTEMS}
    chosen = results.best_on_tuning_split()
    assert margin["served"] == chosen and margin["runner_up"] == results.ranked_on_tuning_split()[1]
    assert margin["n_queries"] == len(results.tune_queries)
    gap = results.tune_ndcg[chosen] - results.tune_ndcg[margin["runner_up"]]
    assert margin["mean_diff"] == pytest.approx(gap) and margin["mean_diff"] >= 0
    assert margin["ci_low"] <= margin["mean_diff"] <= margin["ci_high"]


def test_planted_figures(results):
    ndcg = {r.name: r.metrics["ndcg@10"] for r in results.results}
    assert ndcg["popularity"] < 0.1  # its top 5 are the hits, in no test playlist
    assert ndcg["generate_and_rank"] == pytest.approx(1.0)  # the ranker puts t_0..t_4 first
    assert ndcg["generator"] < 0.6  # the same candidates in generation order (t_9 first): hits at 6-10
    generated = results.result("generator").rankings[results.queries.qids[0]]
    assert generated[:10] == list(reversed(SONGS["rock"])) and generated[10:15] == HITS  # then popular songs
    assert len(set(generated)) == len(generated) == 35  # the popular fill runs to depth 100 or the catalogue's end


def test_systems_are_tuned_on_the_tune_split_and_timed(results):
    plain, hybrid = results.systems["generate_and_rank"], results.systems["generate_and_rank_hybrid"]
    assert plain.config.candidate_source == "generator" and hybrid.config.candidate_source == "hybrid"
    assert plain.knn is None and hybrid.knn is not None
    assert set(results.weight_trials) == set(SYSTEMS)
    assert results.weight_trials["generate_and_rank"]["classical_weight"].tolist() == [0.0, 0.0]
    assert len(results.weight_trials["generate_and_rank_hybrid"]) == 4  # 2 popularity x 2 classical weights
    # Val truths are t_0..t_4 too: weight 0 already ranks them perfectly, and ties go to the smaller weights.
    assert (plain.config.popularity_weight, plain.config.classical_weight) == (0.0, 0.0)
    # Each system's stages, as it ran them: the plain system scores no classical candidates.
    assert set(results.result("generate_and_rank").stage_ms) == {"generate", "rank"}
    assert set(results.result("generate_and_rank_hybrid").stage_ms) == {"generate", "classical", "rank"}
    assert "generate_and_rank:rank" in results.stage_ms


def test_choose_weights_finds_the_planted_popularity_signal(corpus):
    # Queries whose truth is the hits: only the popularity prior lifts them above the theme songs.
    truths_on_hits = corpus.copy()
    truths_on_hits["song_ids"] = [HITS if s == "val" else songs for s, songs in
                                  zip(truths_on_hits["split"], truths_on_hits["song_ids"])]
    generator, ranker, sv, info = planted_models(corpus)
    rec = Recommender(generator, ranker, sv, info, RecommenderConfig(n_candidates=10))
    val = Queries.of_split(truths_on_hits, "val")
    trials, cv = choose_weights(rec, val, [0.0, 1.0, 8.0], [0.0])
    assert rec.config.popularity_weight == 8.0 and len(trials) == 3
    by_weight = trials.set_index("popularity_weight")["val_ndcg@10"]
    assert by_weight[8.0] > by_weight[0.0]
    if len(val) >= CV_FOLDS:  # the signal holds in every fold: held-out queries get the in-sample figure
        assert set(cv) == set(val.qids)
        assert evaluate_rankings(cv, val.truths, ks=(10,))["ndcg@10"] == pytest.approx(by_weight[8.0])
    none, none_cv = choose_weights(rec, Queries.of_split(corpus[corpus["split"] != "val"], "val"), [1.0], [0.0])
    assert none is None and none_cv is None and rec.config.popularity_weight == 0.0


def test_cross_validated_tuning_never_scores_a_query_with_weights_chosen_on_it():
    # Two queries want opposite weights; each fold's weights come from the other queries only.
    from genrank_assets.ml.evaluation.metrics import ndcg_at_10_of
    from genrank_assets.ml.evaluation.procedure import cross_validated_rankings
    from genrank_assets.ml.serving.recommender import ComponentScores

    qids = [f"q{i}" for i in range(10)]
    # every query: candidates a (logit 1) and b (popularity 1); truth a for q0..q7, b for q8, q9
    cs = ComponentScores([["a", "b"]] * 10, [np.array([1.0, 0.0])] * 10, [np.array([0.0, 2.0])] * 10,
                         [np.zeros(2)] * 10)
    truths = {q: {"a"} if i < 8 else {"b"} for i, q in enumerate(qids)}
    cv = ndcg_at_10_of(cross_validated_rankings(cs, qids, truths, [0.0, 1.0], [0.0], folds=5), truths)
    # the majority (a: weight 0) wins every fold, so q8 and q9 rank b second; in-sample tuning gives the same
    expected = (8 * 1.0 + 2 * (1 / np.log2(3))) / 10
    assert cv == pytest.approx(expected)
    with pytest.raises(ValueError, match="too few"):
        cross_validated_rankings(ComponentScores([], [], [], []), [], {}, [0.0], [0.0], folds=5)


class _ReversedRanker(FakeRanker):
    """Ranks the planted order upside down (t_9 first): the model systems then miss what title-kNN finds."""

    def score(self, text, vectors, song_texts=None):
        return -super().score(text, vectors, song_texts)


def test_auto_serves_a_classical_system_when_it_is_the_best_on_val(corpus):
    """`auto` chooses among every system the report evaluates: with a ranker that gets the order wrong, the best
    val figure is a classical system's, and that system is what is served (never below the best classical)."""
    generator, _, sv, info = planted_models(corpus)
    models = TrainedModels(generator, _ReversedRanker(), sv, info)
    settings = EvaluationSettings(n_candidates=10, popularity_grid=[0.0], classical_grid=[0.0], latency_queries=0)
    tune = Queries.of_split(corpus, "val")
    found = evaluate_methods(corpus, models, Queries.of_split(corpus, "test"), tune, settings)
    chosen = found.best_on_tuning_split()
    assert chosen in CLASSICAL_SYSTEMS, found.tune_ndcg
    assert found.tune_ndcg[chosen] == max(found.tune_ndcg.values())
    assert all(found.tune_ndcg[chosen] > found.tune_ndcg[m] for m in SYSTEMS)
    served = found.systems[chosen]  # what evaluation_report registers
    assert isinstance(served, ClassicalRecommender) and served.method == chosen
    model = CLASSICAL_SYSTEMS[chosen]().fit(corpus)
    # its val figure is the plain one: fitted on train, nothing tuned on val
    plain = evaluate_rankings(dict(zip(tune.qids, model.recommend_many(tune.texts, 10))), tune.truths, ks=(10,))
    assert found.tune_ndcg[chosen] == pytest.approx(plain["ndcg@10"])
    # served through the served interface it gives the report's test figure
    assert recommender_ndcg_at_10(served, found.queries) == pytest.approx(found.ndcg_at_10(chosen))


def test_equal_val_figures_serve_the_simpler_system(results):
    import dataclasses

    tied = dataclasses.replace(results, tune_ndcg={"ltr": 0.5, "generate_and_rank": 0.5, "knn_cooccurrence": 0.5,
                                                    "title_knn": 0.4})
    assert tied.ranked_on_tuning_split() == ["knn_cooccurrence", "generate_and_rank", "ltr", "title_knn"]
    assert SERVED_METHODS.index("popularity") == 0 and SERVED_METHODS[-1] == "ltr"


def test_the_gate_reuses_the_challengers_figure_on_the_same_queries_only(results):
    """The challenger's NDCG@10 recorded by its evaluation is the gate's figure on the same queries (nothing is
    scored); on other queries (a mismatched fingerprint) it is evaluated there."""
    queries, loads = results.queries, []
    served = results.systems["generate_and_rank"]

    def load():
        loads.append(1)
        return served

    same = SimpleNamespace(queries_fingerprint=queries.fingerprint, ndcg_at_10=0.123)
    assert challenger_ndcg_at_10(same, queries, load) == (0.123, REUSED) and loads == []
    other = SimpleNamespace(queries_fingerprint="another", ndcg_at_10=0.123)
    figure, how = challenger_ndcg_at_10(other, queries, load)
    assert how == REEVALUATED and loads == [1]
    assert figure == pytest.approx(results.ndcg_at_10("generate_and_rank"))


class _Fixed:
    """A champion that always answers with the same songs."""

    def __init__(self, songs):
        self.songs = songs

    def recommend_many(self, texts, k):
        return [[SimpleNamespace(song_id=s) for s in self.songs[:k]] for _ in texts]


def test_champion_comparison_decides_on_the_same_queries(corpus, results):
    queries = results.queries
    new = results.ndcg_at_10("generate_and_rank_hybrid")
    first = compare_with_champion(new, None, queries)
    assert first.promote and first.champion_ndcg is None and "first" in first.reason

    worse = compare_with_champion(new, _Fixed(HITS), queries)
    assert worse.promote and worse.champion_ndcg == 0.0 and worse.new_ndcg == pytest.approx(new)

    rock_only = _Fixed(SONGS["rock"][:5])  # perfect on the three rock queries, nothing on the rest
    assert recommender_ndcg_at_10(rock_only, queries) == pytest.approx(1 / 3)
    refused = compare_with_champion(0.2, rock_only, queries)
    assert not refused.promote and "champion kept" in refused.reason
    assert compare_with_champion(0.2, rock_only, queries, tolerance=0.2).promote
    # The same system as champion: equal figures on the same queries, so it is not worse.
    assert compare_with_champion(new, results.systems["generate_and_rank_hybrid"], queries).promote
    md = refused.gate_markdown("models:/genrank-recommender/2", "models:/genrank-recommender/1")
    assert "0.2000" in md and "0.3333" in md and "champion kept" in md
