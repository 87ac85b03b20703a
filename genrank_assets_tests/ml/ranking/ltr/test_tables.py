"""The ranker's training rows: the served table's holdout and val rows with every cross-fitting fold's own rows."""
import pandas as pd
import pytest

from genrank_assets.ml.data.corpus import HOLDOUT
from genrank_assets.ml.ranking.ltr.tables import oof_frame, training_mask, training_order, training_rows, with_fold_rows


def rows(split: str, playlists: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"split": [split] * (2 * len(playlists)), "playlist_id": [p for p in playlists for _ in "ab"],
                         "song_id": [s for _ in playlists for s in "ab"], "label": [1.0, 0.0] * len(playlists)})


def test_the_folds_rows_join_the_training_rows_and_test_stays_out():
    served = pd.concat([rows("val", ["v1"]), rows("test", ["t1"])], ignore_index=True)
    folds = [rows(HOLDOUT, ["a", "b"]), rows(HOLDOUT, ["c"])]
    together = with_fold_rows(served, folds)
    assert len(together) == len(served) + 6
    assert set(training_rows(together)["playlist_id"]) == {"v1", "a", "b", "c"}
    assert with_fold_rows(served, []) is served  # no folds: the table as it is


def test_a_playlist_scored_by_two_folds_is_refused():
    with pytest.raises(ValueError, match="rows in two folds"):
        with_fold_rows(rows(HOLDOUT, ["a"]), [rows(HOLDOUT, ["b"]), rows(HOLDOUT, ["a"])])


def test_categorical_keys_join_on_the_union_of_their_categories_and_sort_as_their_strings():
    """read_batched gives string columns as Categoricals of each table's own (sorted) values: joined, they stay
    categorical on the sorted union, and the training order sorts them as their strings."""
    served = pd.concat([rows("val", ["v2", "v1"]), rows("test", ["t1"])], ignore_index=True)
    folds = [rows(HOLDOUT, ["b", "a"]), rows(HOLDOUT, ["c"])]
    categorical = [p.astype({k: "category" for k in ("split", "playlist_id", "song_id")}) for p in [served, *folds]]
    plain, together = with_fold_rows(served, folds), with_fold_rows(categorical[0], categorical[1:])
    for key in ("split", "playlist_id", "song_id"):
        assert isinstance(together[key].dtype, pd.CategoricalDtype), key
        assert together[key].cat.categories.is_monotonic_increasing
        assert together[key].tolist() == plain[key].tolist()
    order = training_order(together)
    by_strings = plain.sort_values("playlist_id", kind="stable").index.tolist()
    assert order.tolist() == training_order(plain).tolist() == by_strings
    mask = training_mask(together)
    assert training_order(together, mask).tolist() == [i for i in order if mask[i]]
    assert oof_frame(together)["playlist_id"].tolist() == sorted(plain["playlist_id"])


def test_a_consuming_join_empties_its_parts_and_gives_the_same_table():
    served = pd.concat([rows("val", ["v1"]), rows("test", ["t1"])], ignore_index=True)
    folds = [rows(HOLDOUT, ["a", "b"]), rows(HOLDOUT, ["c"])]
    expected = with_fold_rows(served, folds)
    pd.testing.assert_frame_equal(expected, pd.concat([served, *folds], ignore_index=True))
    parts = [served.copy(), *(f.copy() for f in folds)]
    pd.testing.assert_frame_equal(with_fold_rows(parts[0], parts[1:], consume=True), expected)
    assert all(p.columns.empty for p in parts)  # their columns went as the table was built
