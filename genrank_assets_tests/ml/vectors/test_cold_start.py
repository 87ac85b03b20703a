"""Cold-start vectors on a planted catalogue: each genre has a direction, each singer a direction near its genre's,
each song a vector near its singer's; a song's name carries its genre's word. The singer mean must beat the global
fallback, unknown singers must get the fallback, the chooser must choose on its held-out songs, and all of it must
be deterministic."""
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from genrank_assets.ml.vectors.cold_start import (
    FALLBACK,
    METHODS,
    ColdStartVectors,
    SingerMeanVectors,
    TextRidgeVectors,
    cold_start_vectors,
    global_mean_vector,
    held_out_split,
    normalize_singer,
    unit_rows,
)
from genrank_assets.ml.vectors.song_vectors import SongVectors

DIM = 16
GENRES = ("rock", "jazz", "salsa", "opera")
SMALL_RIDGE = {"n_features": 2**12}


def planted(n_singers: int = 40, songs_per_singer: int = 12, singer_spread: float = 0.6, song_noise: float = 0.35,
            seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    genre_dirs = unit_rows(rng.normal(size=(len(GENRES), DIM)))
    ids, names, singers, vectors, counts = [], [], [], [], []
    for s in range(n_singers):
        g = s % len(GENRES)
        singer_dir = unit_rows(genre_dirs[g] + singer_spread * unit_rows(rng.normal(size=DIM)))
        for j in range(songs_per_singer):
            ids.append(f"s{s}-{j}")
            names.append(f"{GENRES[g]} song {rng.integers(1000)}")
            singers.append(f"Singer {s}")
            vectors.append((singer_dir + song_noise * rng.normal(size=DIM) / np.sqrt(DIM)) * rng.uniform(2, 5))
            counts.append(int(rng.integers(2, 200)))
    return {"song_ids": ids, "vectors": np.asarray(vectors, dtype=np.float32), "counts": np.asarray(counts),
            "names": names, "singers": singers}


@pytest.fixture(scope="module")
def catalogue() -> dict:
    return planted()


def subset(cat: dict, rows) -> dict:
    return {k: (v[rows] if isinstance(v, np.ndarray) else [v[i] for i in rows]) for k, v in cat.items()}


def cosines(predicted, trained) -> np.ndarray:
    return np.sum(unit_rows(predicted) * unit_rows(trained), axis=1)


def test_normalize_singer():
    assert normalize_singer("  Taylor   SWIFT ") == "taylor swift"
    assert normalize_singer("ＡＢＣ") == "abc"  # NFKC: full-width letters
    assert normalize_singer("Straße") == normalize_singer("STRASSE")  # casefold, not lower
    assert normalize_singer(None) == "" and normalize_singer(float("nan")) == "" and normalize_singer(" \t") == ""


def test_singer_mean_beats_the_global_fallback_on_held_out_songs(catalogue):
    val, unknown = held_out_split(catalogue["song_ids"], catalogue["singers"], 0.2, seed=0)
    assert val.sum() > 30 and not unknown.any()  # every singer has 12 songs: every held-out one is "known"
    fit, held = subset(catalogue, np.flatnonzero(~val)), subset(catalogue, np.flatnonzero(val))
    model = SingerMeanVectors().fit(fit["song_ids"], fit["vectors"], fit["counts"], fit["singers"])
    predicted = model.predict(held["singers"])
    assert predicted.dtype == np.float32 and predicted.shape == (len(held["song_ids"]), DIM)
    fallback = global_mean_vector(fit["vectors"], fit["counts"])
    mean_cos = cosines(predicted, held["vectors"]).mean()
    fallback_cos = cosines(np.repeat(fallback[None], len(predicted), 0), held["vectors"]).mean()
    assert mean_cos > 0.9 and mean_cos > fallback_cos + 0.3


def test_singer_mean_weights_unit_vectors_by_log1p_count():
    vectors = np.array([[10.0, 0.0], [0.0, 0.1], [0.0, 1.0]], dtype=np.float32)  # norms must not matter
    model = SingerMeanVectors().fit(["a", "b", "c"], vectors, [1, 1000, 5], ["X", "x ", "Y"])
    expected = unit_rows(np.log1p(1) * np.array([1.0, 0.0]) + np.log1p(1000) * np.array([0.0, 1.0]))
    np.testing.assert_allclose(model.predict(["X"])[0], expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict(["y"])[0], [0.0, 1.0], atol=1e-7)


@pytest.mark.parametrize("singer", ["Nobody Knows Me", "", "   ", None])
def test_an_unknown_or_empty_singer_gets_the_fallback(catalogue, singer):
    c = catalogue
    model = SingerMeanVectors().fit(c["song_ids"], c["vectors"], c["counts"], c["singers"])
    fallback = global_mean_vector(c["vectors"], c["counts"])
    got = model.predict([singer, "Singer 0"])
    assert np.isfinite(got).all()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(got[0], fallback)
    assert not np.array_equal(got[1], fallback)
    assert model.known([singer, "singer 0"]).tolist() == [False, True]


def test_global_mean_is_popularity_weighted_and_unit():
    vectors = np.array([[3.0, 0.0], [0.0, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(global_mean_vector(vectors, [3, 1]), unit_rows(np.array([3.0, 1.0])), rtol=1e-6)
    np.testing.assert_allclose(global_mean_vector(vectors, [0, 0]), unit_rows(np.array([1.0, 1.0])), rtol=1e-6)
    cancelled = global_mean_vector(np.array([[1.0, 0.0], [-1.0, 0.0]]), [1, 1])
    assert np.isfinite(cancelled).all() and np.isclose(np.linalg.norm(cancelled), 1.0)


def test_text_ridge_learns_names_and_falls_back_with_no_text(catalogue):
    c = catalogue
    # singers 0-3 (one a genre) are held out entirely: only their names' genre word says where they belong
    held = np.array([int(s.split()[1]) < 4 for s in c["singers"]])
    fit, new = subset(c, np.flatnonzero(~held)), subset(c, np.flatnonzero(held))
    model = TextRidgeVectors(**SMALL_RIDGE).fit(fit["song_ids"], fit["vectors"], fit["counts"], fit["names"],
                                                fit["singers"])
    predicted = model.predict(new["names"], new["singers"])
    fallback = global_mean_vector(fit["vectors"], fit["counts"])
    assert cosines(predicted, new["vectors"]).mean() > cosines(np.repeat(fallback[None], len(predicted), 0),
                                                               new["vectors"]).mean() + 0.2
    empty = model.predict(["", None], ["", "  "])
    np.testing.assert_array_equal(empty, np.repeat(model.fallback_[None], 2, 0))
    assert model.predict([], []).shape == (0, DIM)


def test_text_ridge_fits_at_most_max_fit_songs_the_most_played(catalogue):
    c = catalogue
    model = TextRidgeVectors(max_fit_songs=25, **SMALL_RIDGE).fit(
        c["song_ids"], c["vectors"], c["counts"], c["names"], c["singers"])
    assert model.n_fit_songs_ == 25
    # the kept columns are those of the 25 most played songs' text
    top = np.argsort(-c["counts"], kind="stable")[:25]
    X = model.features([c["names"][i] for i in top], [c["singers"][i] for i in top])
    assert set(np.unique(X.indices)) <= set(model.columns_)
    with pytest.raises(ValueError, match="max_fit_songs"):
        TextRidgeVectors(max_fit_songs=0).fit(c["song_ids"], c["vectors"], c["counts"], c["names"], c["singers"])


def test_bad_input_names_the_argument(catalogue):
    c = catalogue
    with pytest.raises(ValueError, match="singers has 3 entries"):
        SingerMeanVectors().fit(c["song_ids"], c["vectors"], c["counts"], c["singers"][:3])
    with pytest.raises(ValueError, match="names has 2 entries"):
        TextRidgeVectors().fit(c["song_ids"], c["vectors"], c["counts"], c["names"][:2], c["singers"])
    with pytest.raises(ValueError, match="counts has shape"):
        SingerMeanVectors().fit(c["song_ids"], c["vectors"], c["counts"][:-1], c["singers"])
    with pytest.raises(ValueError, match="vectors must be"):
        SingerMeanVectors().fit(c["song_ids"], c["vectors"][:, 0], c["counts"], c["singers"])
    with pytest.raises(ValueError, match="no warm songs"):
        SingerMeanVectors().fit([], np.zeros((0, DIM)), [], [])
    with pytest.raises(ValueError, match="repeat"):
        SingerMeanVectors().fit(["a", "a"], np.ones((2, DIM)), [1, 1], ["x", "y"])
    with pytest.raises(NotFittedError):
        SingerMeanVectors().predict(["x"])
    with pytest.raises(NotFittedError):
        ColdStartVectors().predict(["n"], ["x"])
    with pytest.raises(ValueError, match="methods must be"):
        ColdStartVectors().fit(c["song_ids"], c["vectors"], c["counts"], c["names"], c["singers"], methods=("knn",))
    with pytest.raises(ValueError, match="val_share"):
        ColdStartVectors().fit(c["song_ids"], c["vectors"], c["counts"], c["names"], c["singers"], val_share=1.0)


def test_held_out_split_keeps_a_song_of_every_singer():
    ids = [f"a{i}" for i in range(3)] + ["lonely", "nameless"]
    singers = ["A"] * 3 + ["B", ""]
    known, unknown = held_out_split(ids, singers, 0.999, seed=0)  # every song draws a held-out place
    assert known.tolist() == [False, True, True, False, False]  # A keeps its first song
    assert unknown.tolist() == [False, False, False, True, True]
    again = held_out_split(ids, singers, 0.999, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip((known, unknown), again))


@pytest.fixture(scope="module")
def chooser(catalogue) -> ColdStartVectors:
    c = catalogue
    return ColdStartVectors().fit(c["song_ids"], c["vectors"], c["counts"], c["names"], c["singers"],
                                  val_share=0.2, seed=3)


def test_the_chooser_chooses_on_val_and_reports_every_method(chooser):
    report = chooser.report_
    assert set(report["methods"]) == set(METHODS) and chooser.method_ == report["chosen"] in METHODS
    cos = {m: row["mean_cosine"] for m, row in report["methods"].items()}
    best = METHODS[0]
    for m in METHODS[1:]:
        if cos[m] > cos[best] + chooser.tie:
            best = m
    assert chooser.method_ == best
    for row in (*report["methods"].values(), report["fallback"]):
        assert row["n"] == report["n_val"] > 0 and 0.0 <= row["neighbour_recall"] <= 1.0
    assert report["n_fit"] + report["n_val"] + report["n_singer_unknown"] == report["n_warm"]
    assert all(row["mean_cosine"] > report["fallback"]["mean_cosine"] for row in report["methods"].values())
    assert report["methods"]["singer_mean"]["neighbour_recall"] > report["fallback"]["neighbour_recall"]
    assert set(report["singer_unknown"]) == {FALLBACK, *METHODS}
    assert set(chooser.seconds_) == {*METHODS, "refit_s"}
    got = chooser.predict(["rock song 1", "whatever"], ["Singer 0", "Unheard Of"])
    assert got.shape == (2, DIM) and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert chooser.singer_known(["singer 0", "Unheard Of", ""]).tolist() == [True, False, False]


def test_the_chooser_takes_the_text_when_it_says_more_than_the_singer():
    # singers sit on their genre's direction and have 3 noisy songs: the singer mean averages at most 2 of them,
    # the name's genre word the whole genre's
    c = planted(n_singers=80, songs_per_singer=3, singer_spread=0.0, song_noise=1.5, seed=1)
    model = ColdStartVectors().fit(c["song_ids"], c["vectors"], c["counts"], c["names"], c["singers"], val_share=0.3)
    cos = {m: row["mean_cosine"] for m, row in model.report_["methods"].items()}
    assert cos["text_ridge"] > cos["singer_mean"] + 0.02
    assert model.method_ != "singer_mean" and cos[model.method_] == max(cos.values())


def test_ties_go_to_the_simpler_method(catalogue):
    c = catalogue
    args = (c["song_ids"], c["vectors"], c["counts"], c["names"], c["singers"])
    assert ColdStartVectors(tie=10.0).fit(*args, val_share=0.2).method_ == "singer_mean"
    only = ColdStartVectors().fit(*args, methods=("text_ridge",), val_share=0.2)
    assert only.method_ == "text_ridge" and set(only.report_["methods"]) == {"text_ridge"}
    assert set(only.parts_) == {"text_ridge"}



def test_cold_start_vectors_is_deterministic(catalogue):
    c = catalogue
    cold = [i for i, s in enumerate(c["singers"]) if s in ("Singer 5", "Singer 6")][::3]
    warm_rows = [i for i in range(len(c["song_ids"])) if i not in set(cold)]
    warm = SongVectors([c["song_ids"][i] for i in warm_rows], c["counts"][warm_rows], c["vectors"][warm_rows])
    info = {s: (n, g) for s, n, g in zip(c["song_ids"], c["names"], c["singers"])}
    cold_ids = [c["song_ids"][i] for i in cold] + ["not-in-the-catalogue"]
    first, model = cold_start_vectors(warm, info, cold_ids, seed=1)
    again, model_again = cold_start_vectors(warm, info, cold_ids, seed=1)
    assert first.song_ids == cold_ids and (first.counts == 0).all() and first.dim == DIM
    np.testing.assert_array_equal(first.vectors, again.vectors)
    assert model.method_ == model_again.method_ and model.report_ == model_again.report_
    np.testing.assert_array_equal(first.vectors[-1], model.fallback_)  # no song info: the fallback
    assert cosines(first.vectors[:-1], c["vectors"][cold]).mean() > 0.9
    other_seed, _ = cold_start_vectors(warm, info, cold_ids, seed=2)
    assert other_seed.song_ids == cold_ids
    empty, _ = cold_start_vectors(warm, info, [], seed=1)
    assert len(empty) == 0 and empty.vectors.shape == (0, DIM)
    with pytest.raises(ValueError, match="with a vector"):
        cold_start_vectors(warm, info, [warm.song_ids[0]])
