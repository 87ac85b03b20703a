"""The corpus the learned upstream models are fitted on: a share of train playlists held out for the LTR ranker."""
import pandas as pd
import pytest

from genrank_assets.ml.data.corpus import HOLDOUT, split_of, upstream_corpus


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
