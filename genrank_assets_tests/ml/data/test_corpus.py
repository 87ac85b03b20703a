"""The corpus the learned upstream models are fitted on: a share of train playlists held out for the LTR ranker."""
import pandas as pd
import pytest

from genrank_assets.ml.data.corpus import HOLDOUT, fold_corpus, split_of, upstream_corpus


def corpus(n: int = 2000) -> pd.DataFrame:
    ids = [f"p{i}" for i in range(n)]
    return pd.DataFrame({"playlist_id": ids, "title": "t", "tags": "", "song_ids": [["s"]] * n,
                         "split": [split_of(p) for p in ids]})


def test_a_share_of_train_playlists_and_nothing_else_is_held_out():
    base = corpus()
    held = upstream_corpus(base, share=0.2, seed=0)
    changed = held["split"] != base["split"]
    assert (held.loc[changed, "split"] == HOLDOUT).all() and (base.loc[changed, "split"] == "train").all()
    share = changed.sum() / (base["split"] == "train").sum()
    assert 0.17 < share < 0.23
    assert held.drop(columns="split").equals(base.drop(columns="split"))  # nothing else touched
    assert (base["split"] != HOLDOUT).all()  # the input is not modified


def test_the_holdout_is_deterministic_stable_and_seeded():
    base = corpus()
    first = upstream_corpus(base, 0.2, seed=0)
    pd.testing.assert_frame_equal(first, upstream_corpus(base, 0.2, seed=0))
    # a playlist keeps its place when others arrive (the sensor's retrains see a growing corpus)
    grown = upstream_corpus(pd.concat([base, corpus(2500).iloc[2000:]], ignore_index=True), 0.2, seed=0)
    assert grown["split"].iloc[:2000].tolist() == first["split"].tolist()
    other = upstream_corpus(base, 0.2, seed=1)
    assert (other["split"] != first["split"]).any()


def test_share_zero_holds_nothing_out_and_bad_shares_are_refused():
    base = corpus(300)
    assert upstream_corpus(base, 0.0)["split"].tolist() == base["split"].tolist()
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="holdout share"):
            upstream_corpus(base, bad)


def test_folds_partition_the_train_playlists_and_hold_out_one_fold_each():
    base = upstream_corpus(corpus(2000), 0.1, seed=0)  # a served holdout: out of every fold's fit, never rescored
    folds = 3
    held = [set(fold_corpus(base, k, folds, seed=0).query("split == @HOLDOUT")["playlist_id"]) for k in range(folds)]
    train = set(base.loc[base["split"] == "train", "playlist_id"])
    assert set().union(*held) == train and sum(map(len, held)) == len(train)  # each train playlist in one fold
    assert all(abs(len(h) - len(train) / folds) < 0.1 * len(train) for h in held)
    one = fold_corpus(base, 1, folds, seed=0)
    served_holdout = base.loc[base["split"] == HOLDOUT, "playlist_id"]
    assert len(served_holdout) and not one["playlist_id"].isin(served_holdout).any()
    kept = one[one["split"] != HOLDOUT]  # the rest, val and test included, unchanged
    assert kept.equals(base.loc[kept.index]) and len(kept) + len(held[1]) + len(served_holdout) == len(base)
    grown = fold_corpus(pd.concat([base, corpus(2500).iloc[2000:]], ignore_index=True), 1, folds)
    assert held[1] <= set(grown.loc[grown["split"] == HOLDOUT, "playlist_id"])  # a playlist keeps its fold
    assert held[0] != set(fold_corpus(base, 0, folds, seed=1).query("split == @HOLDOUT")["playlist_id"])
    with pytest.raises(ValueError, match="at least 2 folds"):
        fold_corpus(base, 0, 1)
    with pytest.raises(ValueError, match="fold must be in"):
        fold_corpus(base, 3, folds)
