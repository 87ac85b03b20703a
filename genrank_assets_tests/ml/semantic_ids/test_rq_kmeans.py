"""RQ-KMeans semantic IDs: recovery of planted clusters, balance, uniqueness, resume, persistence."""
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from genrank_assets.ml.semantic_ids.rq_kmeans import RQKMeans, balanced_assign
from genrank_assets_tests.ml.semantic_ids.blobs import make_blobs


def test_level1_codes_recover_the_blobs(blobs, blob_model):
    X, labels, _ = blobs
    codes = blob_model.codes_
    assert codes.shape == (len(X), 3) and codes.dtype == np.int64
    assert adjusted_rand_score(labels, codes[:, 0]) == pytest.approx(1.0)


def test_balanced_clusters_stay_near_n_over_k():
    # One blob holds 60% of the songs: plain k-means leaves one cluster far above N/K, balancing must not.
    X, _, _ = make_blobs(n_blobs=3, sizes=[240, 80, 80], seed=1, spread=0.3)
    k = 8
    balanced = RQKMeans(levels=(k, 4), n_iter=10, seed=0, balanced=True).fit(X)
    plain = RQKMeans(levels=(k, 4), n_iter=10, seed=0, balanced=False).fit(X)
    capacity = math.ceil(len(X) / k)
    assert np.bincount(balanced.codes_[:, 0]).max() <= capacity
    assert balanced.level_stats_[0]["max_cluster_size"] <= capacity
    # level 2 is balanced within each parent too
    for parent in np.unique(balanced.codes_[:, 0]):
        children = balanced.codes_[balanced.codes_[:, 0] == parent, 1]
        assert np.bincount(children).max() <= math.ceil(len(children) / 4)
    assert np.bincount(plain.codes_[:, 0]).max() > capacity  # the data really is unbalanced


def test_balanced_assign_respects_capacity_and_prefers_near_points():
    # Three points sit on centroid 0, one on centroid 1; capacity 2 pushes the farthest of the three away.
    sq = np.array([[0.0, 9.0], [0.1, 9.0], [0.5, 4.0], [9.0, 0.0]], dtype=np.float32)
    assert balanced_assign(sq, capacity=2).tolist() == [0, 0, 1, 1]
    rng = np.random.default_rng(0)
    labels = balanced_assign(rng.random((101, 7)).astype(np.float32), capacity=15)
    assert np.bincount(labels, minlength=7).max() <= 15 and (labels >= 0).all()
    with pytest.raises(ValueError, match="capacity"):
        balanced_assign(np.zeros((10, 2), dtype=np.float32), capacity=4)


def test_unique_codes_appends_a_disambiguation_level():
    X, _, _ = make_blobs(n_blobs=2, per_blob=30, dim=8, seed=2)
    X = np.concatenate([X, X[:5]])  # exact duplicates can never be told apart by the quantizer levels
    plain = RQKMeans(levels=(2, 2), n_iter=5, seed=0).fit(X)
    assert len(np.unique(plain.codes_, axis=0)) < len(X)

    model = RQKMeans(levels=(2, 2), n_iter=5, seed=0, unique_codes=True)
    codes = model.fit_predict(X)
    assert codes.shape == (len(X), 3) and model.n_levels == 3
    assert len(np.unique(codes, axis=0)) == len(X)
    np.testing.assert_array_equal(codes[:, :2], plain.codes_)
    # within a shared code, songs are numbered 0, 1, ... in row order
    for code in np.unique(codes[:, :2], axis=0):
        rows = np.flatnonzero((codes[:, :2] == code).all(axis=1))
        assert codes[rows, 2].tolist() == list(range(len(rows)))
    # a new vector goes to the next free slot of its code
    new = model.predict(X[:1])
    same = (codes[:, :2] == new[0, :2]).all(axis=1).sum()
    assert new[0, 2] == same


def test_resume_after_an_interrupted_fit_gives_the_same_codes(tmp_path, blobs):
    X, _, _ = blobs
    ckpt = tmp_path / "ckpt"
    full = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0, checkpoint_dir=ckpt).fit(X)
    assert sorted(p.name for p in ckpt.iterdir()) == ["level_1.npz", "level_2.npz", "level_3.npz"]

    # A run killed during level 2 leaves only level 1 on disk.
    for name in ("level_2.npz", "level_3.npz"):
        (ckpt / name).unlink()
    resumed = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0, checkpoint_dir=ckpt).fit(X)
    assert resumed.n_levels_resumed_ == 1
    np.testing.assert_array_equal(resumed.codes_, full.codes_)

    again = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0, checkpoint_dir=ckpt).fit(X)
    assert again.n_levels_resumed_ == 3
    np.testing.assert_array_equal(again.codes_, full.codes_)


def test_stale_checkpoints_of_other_data_or_config_are_not_reused(tmp_path, blobs):
    X, _, _ = blobs
    ckpt = tmp_path / "ckpt"
    RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0, checkpoint_dir=ckpt).fit(X)
    other_X = X[::-1].copy()
    stale = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0, checkpoint_dir=ckpt).fit(other_X)
    fresh = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0).fit(other_X)
    assert stale.n_levels_resumed_ == 0
    np.testing.assert_array_equal(stale.codes_, fresh.codes_)
    other_seed = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=1, checkpoint_dir=ckpt).fit(other_X)
    assert other_seed.n_levels_resumed_ == 0


def test_same_input_and_seed_give_identical_codes(blobs, blob_model):
    X, _, _ = blobs
    again = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0).fit(X)
    np.testing.assert_array_equal(again.codes_, blob_model.codes_)
    for a, b in zip(again.centroids_, blob_model.centroids_):
        np.testing.assert_array_equal(a, b)


def test_small_catalogue_with_a_big_codebook_is_capped_not_crashed():
    X, _, _ = make_blobs(n_blobs=2, per_blob=5, dim=8, seed=3)
    model = RQKMeans(levels=(128, 128, 256), n_iter=5, seed=0, min_cluster_size=1).fit(X)
    assert model.codes_.shape == (10, 3)
    assert model.level_stats_[0]["clusters"] == 10  # k = min(K, n // min_cluster_size): one song per cluster
    assert len(np.unique(model.codes_, axis=0)) == 10
    np.testing.assert_allclose(model.transform(X), X, atol=1e-6)  # each centroid is its song

    coarse = RQKMeans(levels=(128, 128), n_iter=5, seed=0, min_cluster_size=4).fit(X)
    assert coarse.level_stats_[0]["clusters"] == 2  # 10 // 4
    assert RQKMeans(levels=(8, 8)).fit(X[:1]).codes_.tolist() == [[0, 0]]


def test_predict_follows_the_prefix_for_new_vectors(blobs, blob_model):
    _, labels, centres = blobs
    rng = np.random.default_rng(5)
    new = centres + 0.05 * rng.normal(size=centres.shape).astype(np.float32)
    codes = blob_model.predict(new)
    for blob, code in enumerate(codes):
        # level 1: the code the blob's own songs got
        assert code[0] == np.bincount(blob_model.codes_[labels == blob, 0]).argmax()
        # level 2: the nearest child under that prefix, for the normalised level-1 residual
        residual = new[blob] - blob_model.level_codebook(1)[code[0]]
        residual /= np.linalg.norm(residual)
        children = blob_model.level_codebook(2, prefix=(code[0],))
        assert code[1] == np.argmin(((children - residual) ** 2).sum(axis=1))
        assert code[2] < len(blob_model.level_codebook(3, prefix=tuple(code[:2])))


def test_unbalanced_predict_reproduces_the_catalogue_codes(blobs):
    X, _, _ = blobs
    model = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0, balanced=False).fit(X)
    np.testing.assert_array_equal(model.predict(X), model.codes_)


def test_save_load_roundtrip_gives_the_same_predictions(tmp_path, blobs):
    X, _, _ = blobs
    model = RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0, unique_codes=True).fit(X)
    path = model.save(tmp_path / "model")
    assert path.suffix == ".npz"
    loaded = RQKMeans.load(path)
    assert loaded.levels == model.levels and loaded.unique_codes
    np.testing.assert_array_equal(loaded.codes_, model.codes_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.decode(model.codes_), model.decode(model.codes_))


def test_reconstruction_is_the_scaled_sum_of_centroids(blob_model, blobs):
    X, _, _ = blobs
    codes = blob_model.codes_
    c1 = blob_model.level_codebook(1)[codes[:, 0]]
    c2 = np.stack([blob_model.level_codebook(2, (a,))[b] for a, b in codes[:, :2]])
    c3 = np.stack([blob_model.level_codebook(3, (a, b))[c] for a, b, c in codes])
    rows2 = np.array([blob_model.offsets_[1][a] + b for a, b in codes[:, :2]])
    rows3 = np.array([blob_model.offsets_[2][r] + c for r, c in zip(rows2, codes[:, 2])])
    s2, s3 = blob_model.scales_[1][rows2], blob_model.scales_[2][rows3]
    expected = c1 + s2[:, None] * (c2 + s3[:, None] * c3)
    np.testing.assert_allclose(blob_model.decode(codes), expected, rtol=1e-5, atol=1e-6)
    error = np.linalg.norm(X - expected, axis=1) / np.linalg.norm(X, axis=1)
    level1_error = np.linalg.norm(X - c1, axis=1) / np.linalg.norm(X, axis=1)
    assert error.mean() < 0.8 * level1_error.mean()  # the residual levels add information


def test_bad_input_gets_a_clear_error(blob_model):
    with pytest.raises(ValueError, match="levels"):
        RQKMeans(levels=(4, 0))
    with pytest.raises(ValueError, match="device"):
        RQKMeans(device="tpu")
    with pytest.raises(ValueError, match="X"):
        RQKMeans(levels=(2,)).fit(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="columns"):
        blob_model.predict(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="does not exist"):
        blob_model.decode(np.array([[0, 99, 0]]))
    with pytest.raises(RuntimeError, match="not fitted"):
        RQKMeans().predict(np.zeros((1, 2)))


def test_cuda_device_without_cuda_is_a_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="CUDA"):
        RQKMeans(levels=(2,), device="cuda").fit(np.zeros((4, 2), dtype=np.float32))
