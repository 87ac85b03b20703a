"""The numeric backends of RQ-KMeans: faiss k-means on CPU, faiss's GPU k-means (the `gpu` extra) or a torch Lloyd
loop on CUDA, and the distance / nearest-centroid / cluster-mean steps its balanced iterations run on the device.

CPU searches run on one faiss thread: multi-threaded sgemm changes last bits and so flips near-ties, and the codes
must not depend on the thread count."""
from __future__ import annotations

import contextlib

import numpy as np

from genrank_assets.ml.compute import check_device

# Below this many point-centroid pairs faiss k-means runs on one thread: thread start-up and synchronisation
# cost more than the work (measured 40x slower k-means of 454 points on a busy 2-core machine).
_SMALL_FAISS_WORK = 1 << 20


def faiss_gpus() -> int:
    """How many GPUs faiss can use: 0 with faiss-cpu (its ``get_num_gpus`` says 0) or a build without the call."""
    import faiss

    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return int(get_num_gpus()) if callable(get_num_gpus) else 0


def kmeans_backend(device: str) -> str:
    """The k-means for a resolved device: ``faiss-cpu`` on CPU; on ``cuda`` / ``cuda:N`` faiss's GPU k-means
    (``faiss-gpu``, the `gpu` extra) when faiss sees GPU N, else ``torch`` (a plain Lloyd loop on that GPU)."""
    device = check_device(device, require_available=False)
    if device == "cpu":
        return "faiss-cpu"
    index = int(device.split(":")[1]) if ":" in device else 0
    return "faiss-gpu" if faiss_gpus() > index else "torch"


_GPU_RESOURCES: dict[int, object] = {}  # one faiss StandardGpuResources per GPU: each reserves scratch memory


def _faiss_gpu_index(dim: int, device: str):
    """A flat L2 index on GPU ``device`` for faiss's k-means to search with (Kmeans(gpu=...) would use them all)."""
    import faiss

    gpu = int(device.split(":")[1]) if ":" in device else 0
    if gpu not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu] = faiss.StandardGpuResources()
    config = faiss.GpuIndexFlatConfig()
    config.device = gpu
    return faiss.GpuIndexFlatL2(_GPU_RESOURCES[gpu], dim, config)


def kmeans(points: np.ndarray, k: int, n_iter: int, seed: int, device: str) -> np.ndarray:
    """Seeded k-means centroids: faiss on CPU, and on CUDA with faiss-gpu (the same Kmeans, its nearest-centroid
    search on that GPU); a plain torch Lloyd loop on CUDA without faiss-gpu."""
    backend = kmeans_backend(device)
    if backend == "torch":
        return torch_kmeans(points, k, n_iter, seed, device)
    import faiss

    km = faiss.Kmeans(points.shape[1], k, niter=n_iter, seed=seed, min_points_per_centroid=1)
    if backend == "faiss-gpu":
        km.index = _faiss_gpu_index(points.shape[1], device)
    with faiss_threads(1 if len(points) * k < _SMALL_FAISS_WORK else None):
        km.train(np.ascontiguousarray(points, dtype=np.float32))
    return np.asarray(km.centroids, dtype=np.float32)


@contextlib.contextmanager
def faiss_threads(n_threads: int | None):
    """Run the faiss calls inside on ``n_threads`` (None: as configured), restoring the setting afterwards."""
    import faiss

    if n_threads is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def torch_kmeans(points, k, n_iter, seed, device):
    import torch

    x = torch.as_tensor(points, dtype=torch.float32, device=device)
    start = np.random.default_rng(seed).choice(len(points), size=k, replace=False)
    centroids = x[torch.as_tensor(np.sort(start), device=device)].clone()
    for _ in range(n_iter):
        labels = torch.cdist(x, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]  # an empty cluster keeps its centroid
    return centroids.cpu().numpy()


def sq_distances(points: np.ndarray, centroids: np.ndarray, device: str) -> np.ndarray:
    if device == "cpu":
        import faiss

        # One thread: sgemm's last bits change with the thread count, which flips near-ties (and, through
        # the balanced assignment, every later level); codes must not depend on the machine's cores.
        with faiss_threads(1):
            return faiss.pairwise_distances(np.ascontiguousarray(points, dtype=np.float32),
                                            np.ascontiguousarray(centroids, dtype=np.float32))
    import torch

    x = torch.as_tensor(points, device=device)
    c = torch.as_tensor(centroids, device=device)
    return (torch.cdist(x, c) ** 2).cpu().numpy()


def nearest(points: np.ndarray, centroids: np.ndarray, device: str) -> np.ndarray:
    if len(centroids) == 1:
        return np.zeros(len(points), dtype=np.int64)
    if device == "cpu":
        import faiss

        with faiss_threads(1):  # see sq_distances
            _, idx = faiss.knn(np.ascontiguousarray(points, dtype=np.float32),
                               np.ascontiguousarray(centroids, dtype=np.float32), 1)
        return idx[:, 0].astype(np.int64)
    return sq_distances(points, centroids, device).argmin(axis=1).astype(np.int64)


def cluster_means(points: np.ndarray, labels: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Mean of each cluster's points; an empty cluster keeps its previous centroid."""
    k = len(previous)
    counts = np.bincount(labels, minlength=k)
    sums = np.stack([np.bincount(labels, weights=points[:, j], minlength=k) for j in range(points.shape[1])], 1)
    means = previous.astype(np.float64, copy=True)
    filled = counts > 0
    means[filled] = sums[filled] / counts[filled, None]
    return means.astype(np.float32)
