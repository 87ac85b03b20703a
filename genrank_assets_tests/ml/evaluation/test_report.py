"""Pure pieces of the evaluation: the promotion rule, ranking fill, weight tuning, the report files."""
import numpy as np
import pytest

from genrank_assets.ml.evaluation.procedure import tune_weights
from genrank_assets.ml.evaluation.report import (
    TOTAL_LABEL,
    decide_promotion,
    evaluate_method,
    fill_with,
    latency_groups,
    ndcg_intervals,
    report_markdown,
    write_report,
)
from genrank_assets.ml.serving.recommender import ComponentScores, RecommenderConfig, rank_with_weights


def test_promotion_rule():
    first = decide_promotion(0.10, None)
    assert first.promote and "first" in first.reason
    assert decide_promotion(0.20, 0.20).promote  # not worse = promoted
    refused = decide_promotion(0.19, 0.20)
    assert not refused.promote and "champion kept" in refused.reason
    assert decide_promotion(0.19, 0.20, tolerance=0.02).promote


def test_fill_with_keeps_order_and_skips_duplicates():
    assert fill_with(["a", "b", "a"], ["b", "c", "d"], 3) == ["a", "b", "c"]
    assert fill_with([], ["x"], 5) == ["x"]


def test_weights_are_tuned_on_the_given_queries():
    # Query q1's relevant song is popular but scored low by the ranker: only a popularity weight finds it.
    cs = ComponentScores(
        song_ids=[["a", "b", "c"]], logits=[np.array([1.0, 0.9, 0.0])],
        log_popularity=[np.array([0.0, 0.0, 5.0])], classical=[np.zeros(3)],
    )
    assert rank_with_weights(cs, 0.0, 0.0, 3)[0] == ["a", "b", "c"]
    assert rank_with_weights(cs, 1.0, 0.0, 3)[0][0] == "c"
    pw, cw, trials = tune_weights(cs, ["q1"], {"q1": {"c"}}, [0.0, 1.0], [0.0])
    assert (pw, cw) == (1.0, 0.0) and len(trials) == 2


def test_recommender_config_is_validated():
    with pytest.raises(ValueError, match="candidate_source"):
        RecommenderConfig(candidate_source="magic")
    with pytest.raises(ValueError, match="n_candidates"):
        RecommenderConfig(n_candidates=0)


def test_report_has_table_and_plots(tmp_path):
    truths = {"q1": {"a"}, "q2": {"b", "c"}}
    perfect = evaluate_method("perfect", lambda ts: [["a", "x"], ["b", "c"]], ["q1", "q2"], ["t1", "t2"], truths, 10)
    bad = evaluate_method("bad", lambda ts: [["x"], ["y"]], ["q1", "q2"], ["t1", "t2"], truths, 10)
    assert perfect.metrics["ndcg@10"] == pytest.approx(1.0) and bad.metrics["recall@100"] == 0.0
    paths = write_report([perfect, bad], tmp_path, title="t", reference="bad")
    text = paths["markdown"].read_text()
    assert "| perfect" in text and "Paired bootstrap" in text
    assert paths["recall_png"].stat().st_size > 1000 and paths["latency_png"].stat().st_size > 1000
    assert paths["ndcg_png"].stat().st_size > 1000
    inlined = report_markdown(paths)  # what the Dagster UI shows: every plot as a data URI, no file name left
    assert inlined.count("](data:image/png;base64,") == 3 and ".png)" not in inlined


def test_stage_times_are_single_query_times_beside_the_whole_query():
    truths = {"q1": {"a"}, "q2": {"b"}}
    calls = []
    result = evaluate_method("sys", lambda ts: (calls.append("batch"), [["a"], ["b"]])[1], ["q1", "q2"],
                             ["t1", "t2"], truths, 10, rank_one=lambda t: calls.append("one"),
                             before_timing=lambda: calls.append("reset"))
    assert calls == ["batch", "reset", "one", "one"]  # stage timers are reset after the batched pass
    result.stage_ms = {"generate": 3.0, "rank": 2.0}
    plain = evaluate_method("knn", lambda ts: [["a"], ["x"]], ["q1", "q2"], ["t1", "t2"], truths, 10)
    groups = latency_groups([plain, result])
    assert list(groups["knn"]) == [TOTAL_LABEL]  # a method without stages: its whole query only
    assert [k.split(" ")[0] for k in groups["sys"]] == ["generate", "rank", "whole"]
    mean, low, high = ndcg_intervals([plain])["knn"]
    assert mean == pytest.approx(0.5) and low <= mean <= high and (low, high) == (0.0, 1.0)  # one hit in two
