"""Which k-means RQ-KMeans runs: faiss on CPU; on CUDA faiss's GPU k-means when faiss-gpu sees the GPU, else the
torch Lloyd loop. This machine's faiss is faiss-cpu, so the CUDA paths here are the fallback's."""
import numpy as np
import pytest
import torch

from genrank_assets.ml.semantic_ids.kmeans_backends import faiss_gpus, kmeans, kmeans_backend, torch_kmeans
from genrank_assets.ml.semantic_ids.rq_kmeans import RQKMeans

no_faiss_gpu = pytest.mark.skipif(faiss_gpus() > 0, reason="faiss sees a GPU (faiss-gpu and CUDA present)")


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]], dtype=np.float32)
    return (np.repeat(centres, 40, axis=0) + rng.normal(0, 0.3, (120, 2))).astype(np.float32), centres


def test_cpu_is_faiss():
    assert kmeans_backend("cpu") == "faiss-cpu"


@no_faiss_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_faiss_gpu_falls_back_to_the_torch_loop(device):
    assert faiss_gpus() == 0
    assert kmeans_backend(device) == "torch"
    assert RQKMeans(levels=(2,), device=device).kmeans_backend == "torch"  # no CUDA needed to ask


def test_the_torch_fallback_is_seeded_lloyd():
    # The fallback's Lloyd loop, run on CPU tensors: the same code that runs on a GPU without faiss-gpu. Seeded, and
    # converged: every centroid is the mean of the points nearest to it.
    points, _ = _blobs()
    found = torch_kmeans(points, 3, 20, seed=0, device="cpu")
    assert np.array_equal(found, torch_kmeans(points, 3, 20, seed=0, device="cpu"))
    labels = np.linalg.norm(points[:, None] - found[None], axis=2).argmin(axis=1)
    for j in np.unique(labels):
        np.testing.assert_allclose(found[j], points[labels == j].mean(axis=0), atol=1e-4)


def test_backends_do_not_share_checkpoints():
    points, _ = _blobs()
    cpu, cuda = RQKMeans(levels=(3,), device="cpu"), RQKMeans(levels=(3,), device="cuda")
    assert cpu._fingerprint(points) != cuda._fingerprint(points)


@pytest.mark.skipif(not (torch.cuda.is_available() and faiss_gpus() > 0), reason="needs faiss-gpu and CUDA")
def test_faiss_gpu_kmeans_finds_what_the_cpu_finds():  # unrun without a GPU
    # The same seeded initial centroids (faiss samples them on the host); only the nearest-centroid search moved.
    points, _ = _blobs()
    assert kmeans_backend("cuda") == "faiss-gpu"
    np.testing.assert_allclose(kmeans(points, 3, 20, seed=0, device="cuda"),
                               kmeans(points, 3, 20, seed=0, device="cpu"), atol=1e-3)
