"""Planted data of the semantic-ID tests: well-separated Gaussian blobs."""
import numpy as np


def make_blobs(n_blobs=4, per_blob=100, dim=16, spread=0.05, seed=0, sizes=None):
    """Well-separated Gaussian blobs around random unit centres; returns (X, blob label per row, centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = sizes or [per_blob] * n_blobs
    labels = np.repeat(np.arange(n_blobs), sizes)
    X = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return X.astype(np.float32), labels, centres.astype(np.float32)
