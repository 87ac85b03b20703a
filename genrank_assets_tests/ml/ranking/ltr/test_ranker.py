"""The LightGBM lambdarank ranker on planted data: it must combine features that no single one can replace."""
import numpy as np
import pandas as pd
import pytest

from genrank_assets.ml.evaluation.metrics import ndcg_at_k
from genrank_assets.ml.ranking.ltr.ranker import LTRParams, LTRRanker, _rounds_from_other_folds, query_folds

FEATURES = ["a", "b", "noise"]


def planted(n_queries: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Relevant songs are high in a AND in b (each alone is weak: half the high-a songs are low in b); some
    absent values (NaN) in a, as a source that did not propose the song."""
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for q in range(n_queries):
        n = 40
        a, b = rng.random(n), rng.random(n)
        relevant = (a > 0.6) & (b > 0.6)
        a_seen = np.where(rng.random(n) < 0.1, np.nan, a)
        frames.append(pd.DataFrame({"query": f"q{q}", "song_id": [f"q{q}_s{i}" for i in range(n)], "a": a_seen,
                                    "b": b, "noise": rng.random(n)}))
        labels.append(relevant.astype(float))
    return pd.concat(frames, ignore_index=True), np.concatenate(labels)


def mean_ndcg(frame: pd.DataFrame, scores: np.ndarray, labels: np.ndarray) -> float:
    values = []
    for _, rows in frame.groupby("query", sort=False).indices.items():
        truth = set(frame["song_id"].to_numpy()[rows][labels[rows] > 0])
        if truth:
            order = rows[np.argsort(-np.nan_to_num(scores[rows], nan=-1.0), kind="stable")]
            values.append(ndcg_at_k(list(frame["song_id"].to_numpy()[order]), truth, 10))
    return float(np.mean(values))


def test_lambdarank_beats_every_single_feature_and_round_trips(tmp_path):
    train, y_train = planted(150, seed=0)
    test, y_test = planted(60, seed=1)
    params = LTRParams(num_leaves=7, min_data_in_leaf=20, max_rounds=200, early_stopping_rounds=20, folds=3,
                       num_threads=1)
    ranker = LTRRanker(FEATURES, params).fit(train, y_train, train["query"])
    learned = mean_ndcg(test, ranker.predict(test), y_test)
    single = {f: mean_ndcg(test, test[f].to_numpy(), y_test) for f in FEATURES}
    assert learned > max(single.values()) + 0.05, (learned, single)
    assert 1 <= ranker.n_rounds <= 200 and len(ranker.cv["best_rounds"]) == 3
    assert len(ranker.cv["oof_rounds"]) == 3 and all(1 <= r <= 200 for r in ranker.cv["oof_rounds"])
    assert ranker.oof_scores.shape == (len(train),)
    assert mean_ndcg(train, ranker.oof_scores, y_train) > max(mean_ndcg(train, train[f].to_numpy(), y_train)
                                                             for f in FEATURES)
    importance = ranker.feature_importance()
    assert list(importance)[-1] == "noise" and set(importance) == set(FEATURES)

    loaded = LTRRanker.load(ranker.save(tmp_path / "ltr"))
    np.testing.assert_array_equal(loaded.predict(test), ranker.predict(test))
    one = test[test["query"] == "q3"]
    assert loaded.rank(one) == ranker.rank(one) and set(loaded.rank(one)) == set(one["song_id"])


def test_early_stopping_on_separate_validation_queries():
    train, y_train = planted(120, seed=3)
    val, y_val = planted(40, seed=4)
    val["query"] = "v" + val["query"]
    params = LTRParams(num_leaves=7, min_data_in_leaf=20, max_rounds=300, early_stopping_rounds=20, num_threads=1)
    ranker = LTRRanker(FEATURES, params).fit(train, y_train, train["query"], validation=(val, y_val, val["query"]))
    assert 1 <= ranker.n_rounds < 300 and ranker.booster.current_iteration() == ranker.n_rounds
    np.testing.assert_array_equal(ranker.oof_scores, ranker.predict(val))
    with pytest.raises(ValueError, match="validation queries"):
        LTRRanker(FEATURES, params).fit(train, y_train, train["query"], validation=(train, y_train, train["query"]))


def test_ltr_checks_its_inputs(tmp_path):
    frame, labels = planted(6, seed=2)
    shuffled = frame.sample(frac=1.0, random_state=0)
    with pytest.raises(ValueError, match="contiguous"):
        LTRRanker(FEATURES, LTRParams(folds=2)).fit(shuffled, labels, shuffled["query"])
    with pytest.raises(ValueError, match="missing columns"):
        LTRRanker(["a", "zz"]).fit(frame, labels, frame["query"])
    with pytest.raises(ValueError, match="not fitted"):
        LTRRanker(FEATURES).predict(frame)
    with pytest.raises(FileNotFoundError):
        LTRRanker.load(tmp_path)
    with pytest.raises(ValueError, match="folds"):
        LTRParams(folds=1)


def test_query_folds_keep_a_query_in_one_fold():
    queries = ["a", "a", "b", "c", "c", "c", "d"]
    folds = query_folds(queries, 3)
    assert folds[0] == folds[1] and folds[3] == folds[4] == folds[5]
    assert np.array_equal(folds, query_folds(queries, 3))


def test_a_folds_out_of_fold_rounds_come_from_the_other_folds_curves():
    """Fold 0's own curve peaks at round 4; the other folds' mean peaks at round 2: its out-of-fold scores use 2
    (a round picked on its own labels would flatter the estimate). The other folds' common length and the rounds
    fold 0's model has bound the choice."""
    curves = [np.array([0.1, 0.2, 0.3, 0.4, 0.3]), np.array([0.2, 0.5, 0.4]), np.array([0.3, 0.4, 0.35, 0.3])]
    assert _rounds_from_other_folds(curves, 0, trained=5) == 2
    assert _rounds_from_other_folds(curves, 1, trained=3) == 3  # folds 0 and 2: 0.2, 0.3, 0.325 over 3 rounds
    assert _rounds_from_other_folds(curves, 1, trained=2) == 2  # its model has 2 rounds
    assert _rounds_from_other_folds(curves[:1], 0, trained=5) == 4  # no other fold: its own curve


def test_each_fold_is_binned_and_trained_as_a_copy_of_its_rows_was():
    """fit builds each CV fold's Datasets from its rows of the matrix read a batch at a time (no copy of them):
    the folds train exactly as LightGBM Datasets of the folds' own copies of the rows (the code before) did: the
    same rounds and out-of-fold scores; the refit equals a plain fit of those rounds on every row."""
    import lightgbm as lgb

    from genrank_assets.ml.ranking.ltr.ranker import _group_sizes

    frame, labels = planted(90, seed=2)
    params = LTRParams(num_leaves=7, min_data_in_leaf=20, max_rounds=60, early_stopping_rounds=10, folds=3,
                       num_threads=1)
    ranker = LTRRanker(FEATURES, params).fit(frame, labels, frame["query"])

    X, q = frame[FEATURES].to_numpy(np.float32), frame["query"].to_numpy()
    fold = query_folds(q, params.folds, params.seed)
    best, oof = [], np.zeros(len(X))
    for k in range(params.folds):
        train, held = fold != k, fold == k
        dtrain = lgb.Dataset(X[train], labels[train], group=_group_sizes(q[train]), feature_name=FEATURES,
                             free_raw_data=False)
        dheld = lgb.Dataset(X[held], labels[held], group=_group_sizes(q[held]), reference=dtrain)
        booster = lgb.train(params.lightgbm(), dtrain, params.max_rounds, valid_sets=[dheld],
                            callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])
        best.append(booster.best_iteration)
        oof[held] = booster.predict(X[held], num_iteration=ranker.cv["oof_rounds"][k])
    assert ranker.cv["best_rounds"] == best
    np.testing.assert_array_equal(ranker.oof_scores, oof)
    plain = LTRRanker(FEATURES, params).fit_rounds(frame, labels, frame["query"], ranker.n_rounds)
    fresh = lgb.train(params.lightgbm(), lgb.Dataset(X, labels, group=_group_sizes(q), feature_name=FEATURES),
                      ranker.n_rounds)
    assert plain.booster.model_to_string() == ranker.booster.model_to_string() == fresh.model_to_string()
