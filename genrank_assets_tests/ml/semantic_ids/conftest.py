import pytest

from genrank_assets.ml.semantic_ids.rq_kmeans import RQKMeans
from genrank_assets_tests.ml.semantic_ids.blobs import make_blobs


@pytest.fixture(scope="session")
def blobs():
    return make_blobs()


@pytest.fixture(scope="session")
def blob_model(blobs):
    """RQ-KMeans fitted once on the blobs (levels 4, 4, 8), for the algorithm's and the metrics' tests."""
    X, _, _ = blobs
    return RQKMeans(levels=(4, 4, 8), n_iter=10, seed=0).fit(X)
