"""The ranker's training rows: the served table's holdout and val rows with every cross-fitting fold's own rows."""
import pandas as pd
import pytest

from genrank_assets.ml.data.corpus import HOLDOUT
from genrank_assets.ml.ranking.ltr.tables import training_rows, with_fold_rows


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
