"""Metrics against hand-computed cases (docs/benchmark.md definitions)."""
import math

import numpy as np
import pytest

from genrank_assets.ml.evaluation.metrics import (
    catalogue_coverage,
    evaluate_rankings,
    ndcg_at_k,
    paired_bootstrap,
    r_precision,
    recall_at_k,
    recall_curve,
)


def test_recall_counts_hits_in_top_k_over_truth_size():
    ranked = ["a", "x", "c", "y", "b"]
    truth = {"a", "b", "c", "z"}
    assert recall_at_k(ranked, truth, 1) == pytest.approx(1 / 4)
    assert recall_at_k(ranked, truth, 3) == pytest.approx(2 / 4)
    assert recall_at_k(ranked, truth, 5) == pytest.approx(3 / 4)


def test_recall_with_k_larger_than_ranking_scores_missing_slots_as_misses():
    assert recall_at_k(["a", "b"], {"a", "b", "c"}, 100) == pytest.approx(2 / 3)
    assert recall_at_k([], {"a"}, 10) == 0.0


def test_duplicate_in_ranking_counts_once_and_uses_its_slot():
    # the repeated "a" earns nothing and pushes "b" out of the top 2
    assert recall_at_k(["a", "a", "b"], {"a", "b"}, 2) == pytest.approx(1 / 2)
    assert recall_at_k(["a", "a", "b"], {"a", "b"}, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "a"], {"a", "b"}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert r_precision(["a", "a", "b"], {"a", "b"}) == pytest.approx(1 / 2)


def test_ndcg_binary_relevance_hand_computed():
    ranked = ["x", "a", "y", "b"]
    truth = {"a", "b"}
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # hits at ranks 2 and 4
    ideal = 1 + 1 / math.log2(3)  # two hits at ranks 1 and 2
    assert ndcg_at_k(ranked, truth, 4) == pytest.approx(dcg / ideal)
    # cut at k=2: only the rank-2 hit counts; ideal still over min(|truth|, 2) = 2 hits
    assert ndcg_at_k(ranked, truth, 2) == pytest.approx((1 / math.log2(3)) / ideal)


def test_ndcg_ideal_uses_min_of_truth_size_and_k():
    truth = {"a", "b", "c", "d", "e"}
    assert ndcg_at_k(["a", "b"], truth, 2) == pytest.approx(1.0)  # perfect top 2 of a 5-song truth
    # a single relevant song at rank 1 is perfect whatever k is
    assert ndcg_at_k(["a", "x", "y"], {"a"}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], {"a"}, 10) == pytest.approx(1 / math.log2(3))


def test_r_precision_cuts_at_truth_size():
    assert r_precision(["a", "x", "b", "c"], {"a", "b", "c"}) == pytest.approx(2 / 3)
    assert r_precision(["a"], {"a", "b", "c"}) == pytest.approx(1 / 3)


@pytest.mark.parametrize("func", [lambda t: recall_at_k(["a"], t, 10), lambda t: ndcg_at_k(["a"], t, 10),
                                  lambda t: r_precision(["a"], t)])
def test_empty_truth_raises(func):
    with pytest.raises(ValueError, match="truth is empty"):
        func(set())


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k(["a"], {"a"}, k)


def test_evaluate_rankings_means_and_aligned_per_query_arrays():
    rankings = {"q1": ["a", "x", "b"], "q2": ["y", "c"], "extra": ["z"]}
    truths = {"q1": {"a", "b"}, "q2": {"c", "d", "e"}}
    result = evaluate_rankings(rankings, truths, ks=(1, 3))
    assert result["n_queries"] == 2
    assert result["qids"] == ["q1", "q2"]  # the ranking without a truth is ignored
    np.testing.assert_allclose(result["per_query"]["recall@1"], [1 / 2, 0.0])
    np.testing.assert_allclose(result["per_query"]["recall@3"], [1.0, 1 / 3])
    q1_ndcg3 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    q2_ndcg3 = (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    np.testing.assert_allclose(result["per_query"]["ndcg@3"], [q1_ndcg3, q2_ndcg3])
    np.testing.assert_allclose(result["per_query"]["r_precision"], [1 / 2, 1 / 3])
    assert result["recall@3"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert result["ndcg@3"] == pytest.approx((q1_ndcg3 + q2_ndcg3) / 2)
    assert result["r_precision"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert result["n_short_rankings"] == 1  # q2's ranking holds 2 songs, fewer than |truth| = 3 = max(ks)


def test_evaluate_rankings_rejects_missing_ranking_and_empty_truth():
    with pytest.raises(ValueError, match="no ranking for 1 queries"):
        evaluate_rankings({"q1": ["a"]}, {"q1": {"a"}, "q2": {"b"}})
    with pytest.raises(ValueError, match="truths\\['q2'\\]: truth is empty"):
        evaluate_rankings({"q1": ["a"], "q2": ["b"]}, {"q1": {"a"}, "q2": set()})
    with pytest.raises(ValueError, match="no queries"):
        evaluate_rankings({}, {})


def test_catalogue_coverage_counts_distinct_songs_in_top_k():
    rankings = {"q1": ["a", "b", "c"], "q2": ["a", "d", "e"], "q3": ["b"]}
    assert catalogue_coverage(rankings, catalogue_size=10, k=2) == pytest.approx(3 / 10)  # a, b, d
    assert catalogue_coverage(rankings, catalogue_size=10, k=3) == pytest.approx(5 / 10)
    with pytest.raises(ValueError, match="catalogue_size"):
        catalogue_coverage(rankings, catalogue_size=0)


def test_recall_curve_matches_recall_at_k_and_grows_with_k():
    rankings = {"q1": ["a", "x", "b", "y"], "q2": ["c", "z", "w", "d"]}
    truths = {"q1": {"a", "b"}, "q2": {"c", "d", "e", "f"}}
    curve = recall_curve(rankings, truths, ks=[1, 2, 3, 4])
    assert curve == pytest.approx({1: (1 / 2 + 1 / 4) / 2, 2: (1 / 2 + 1 / 4) / 2, 3: (1 + 1 / 4) / 2,
                                   4: (1 + 2 / 4) / 2})
    values = [curve[k] for k in (1, 2, 3, 4)]
    assert values == sorted(values)


def test_paired_bootstrap_constant_difference():
    b = np.linspace(0, 1, 50)
    result = paired_bootstrap(b + 0.1, b, n=200, seed=0)
    assert result["mean_diff"] == pytest.approx(0.1)
    assert result["ci_low"] == pytest.approx(0.1) and result["ci_high"] == pytest.approx(0.1)
    assert result["share_a_better"] == 1.0
    assert result["p_value"] == 0.0


def test_paired_bootstrap_identical_scores_is_not_significant():
    a = np.array([0.0, 0.5, 1.0, 0.2])
    result = paired_bootstrap(a, a.copy(), n=100, seed=0)
    assert result["mean_diff"] == 0.0
    assert result["p_value"] == 1.0
    assert result["share_a_better"] == 0.0 and result["share_b_better"] == 0.0


def test_paired_bootstrap_noisy_difference_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    b = rng.random(300)
    a = b + rng.normal(0.02, 0.1, size=300)
    first = paired_bootstrap(a, b, n=500, seed=3)
    again = paired_bootstrap(a, b, n=500, seed=3)
    other = paired_bootstrap(a, b, n=500, seed=4)
    assert first == again
    assert first["ci_low"] != other["ci_low"]
    assert first["ci_low"] < first["mean_diff"] < first["ci_high"]
    assert 0.0 <= first["p_value"] <= 1.0
    assert first["share_a_better"] > 0.9  # true shift +0.02 with standard error ~0.006


def test_paired_bootstrap_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap([], [])
