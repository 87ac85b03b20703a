"""Stage `semantic_ids`: semantic IDs by hierarchical residual K-Means (RQ-KMeans), balanced, resumable.

Every song vector becomes a short code ``(c_1, ..., c_L)``:

* level 1 clusters the vectors themselves (one global codebook of ``levels[0]`` centroids);
* level ``l > 1`` clusters the residual left by level ``l - 1``, L2-normalised (``normalize_residuals``),
  **within each parent cluster**: songs that share the prefix ``(c_1, ..., c_{l-1})`` get their own small
  k-means, so ``c_l`` is a code local to that prefix (``<id_l2_5>`` under one parent is not ``<id_l2_5>``
  under another);
* with ``unique_codes=True`` a last disambiguation level numbers the songs that share a full code
  ``0, 1, 2, ...`` in input row order (TIGER), so every song's code is unique.

Codebook storage ("arrays indexed by parent id"): the clusters of level ``l`` are rows of one array
``centroids_[l]`` (float32, ``(n_clusters_l, dim)``), grouped by parent: the children of parent row ``p``
(a row of level ``l - 1``) are rows ``offsets_[l][p] : offsets_[l][p + 1]``, and local code ``c`` is row
``offsets_[l][p] + c``. Level 1 has one parent (the root), ``offsets_[0] == [0, n_clusters_1]``. Every stored
cluster holds at least one training song, so every parent has at least one child and a new vector can
always follow its prefix down (``predict``).

Reconstruction (what ``decode`` and ``transform`` return). Write ``e_l`` for the residual a song leaves at
level ``l`` and ``u_l = e_l / ||e_l||`` for what level ``l + 1`` clusters. Each cluster of level ``l > 1``
stores ``scales_[l]``: the mean ``||e_{l-1}||`` of its training songs, i.e. how long the residuals it encodes
were before normalisation. Then::

    x_hat = C_1[c_1] + s_2 * (C_2[c_2] + s_3 * (C_3[c_3] + ...))

which uses nothing but the code, so ``||x - x_hat|| / ||x||`` is a relative reconstruction error comparable
to an additive quantizer such as faiss ``ResidualQuantizer`` (with ``normalize_residuals=False`` all scales
are 1 and this is plain additive residual quantization). Note that a per-parent model stores far more
centroids than a global one with the same code budget: up to one per song on the last level.

Number of clusters (the cap). A group of ``n`` songs at a level of size ``K`` gets
``k = min(K, max(1, n // min_cluster_size))`` clusters, so a catalogue smaller than the codebook (50 songs under
one parent, 128 level-2 codes; or fewer songs than ``K`` at level 1) never crashes: with the default
``min_cluster_size=1`` and ``n <= K`` every song becomes its own cluster (its centroid is the song itself).

Balance (``balanced=True``): after a seeded faiss k-means, Lloyd iterations continue with a
capacity-constrained assignment: every cluster takes at most ``ceil(n / k * (1 + balance_slack))`` songs.
The assignment is a vectorised proposal round: unassigned songs propose to their nearest cluster that still
has room; each cluster keeps its closest proposers up to its remaining capacity; the rest propose again.
Balance applies to the training catalogue (``codes_``); ``predict`` on new vectors takes the nearest child
without capacities, so for training rows it can differ from ``codes_`` where balancing moved a song.

Determinism: every k-means takes a seed derived from ``(seed, level, parent)``; the same input, config and
seed give identical codes on the CPU path, whatever faiss's thread count (distances and nearest-centroid
searches run on one thread because multi-threaded sgemm changes last bits and so flips near-ties). Checkpoints: with ``checkpoint_dir`` every finished level is written to
``level_<l>.npz`` together with a fingerprint of the input and the config; ``fit`` reloads the levels whose
fingerprint matches and continues at the first missing one, and ignores (then overwrites) stale ones.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genrank_assets.ml.compute import check_device
from genrank_assets.ml.semantic_ids.kmeans_backends import cluster_means, kmeans, kmeans_backend, nearest, sq_distances

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
_CHECKPOINT_NAME = "level_{}.npz"

# Defaults of the estimator, which the `semantic_ids` asset config reads (one place for each).
DEFAULT_LEVELS = (128, 128, 256)  # the seed's
# A group of n songs gets at most n // min_cluster_size clusters at the next level. With 1, a last level wider
# than its groups gives every song its own code (mpd7k at [128, 64, 32]: 58,138 codes for 58,138 songs, so 50
# beams can only ever name 50 songs); 2 keeps small "concept" sets of ~2 songs per code.
DEFAULT_MIN_CLUSTER_SIZE = 2
DEFAULT_N_ITER = 20


class RQKMeans:
    """Hierarchical residual K-Means producing semantic-ID codes (see the module docstring).

    Fitted attributes: ``codes_`` (int64 ``(n, L)``, the catalogue's codes, ``L = len(levels) + unique_codes``),
    ``centroids_``, ``scales_``, ``offsets_`` (one array per level), ``level_stats_`` (one dict per level: groups,
    clusters, capped groups, max/mean cluster size, seconds), ``n_levels_resumed_`` (levels loaded from
    checkpoints in the last ``fit``), ``dim_``.
    """

    def __init__(
        self,
        levels: Sequence[int] = DEFAULT_LEVELS,
        *,
        balanced: bool = True,
        unique_codes: bool = False,
        n_iter: int = DEFAULT_N_ITER,
        seed: int = 0,
        device: str = "cpu",
        checkpoint_dir: str | os.PathLike | None = None,
        normalize_residuals: bool = True,
        min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE,
        balance_slack: float = 0.0,
        verbose: bool = False,
    ) -> None:
        levels = tuple(levels) if not isinstance(levels, (int, np.integer)) else (levels,)
        if not levels or any(not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1 for k in levels):
            raise ValueError(f"levels must be a non-empty sequence of positive ints, got {levels!r}")
        if not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
            raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
        if not isinstance(min_cluster_size, (int, np.integer)) or min_cluster_size < 1:
            raise ValueError(f"min_cluster_size must be a positive int, got {min_cluster_size!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not (balance_slack >= 0):
            raise ValueError(f"balance_slack must be >= 0, got {balance_slack!r}")
        # A resolved device (ml.compute; the compute resource resolves "auto"); CUDA must exist only once fit runs,
        # so a model fitted on a GPU still loads on a CPU machine.
        device = check_device(device, require_available=False)
        self.levels = tuple(int(k) for k in levels)
        self.balanced = bool(balanced)
        self.unique_codes = bool(unique_codes)
        self.n_iter = int(n_iter)
        self.seed = int(seed)
        self.device = device
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.normalize_residuals = bool(normalize_residuals)
        self.min_cluster_size = int(min_cluster_size)
        self.balance_slack = float(balance_slack)
        self.verbose = bool(verbose)

    # ------------------------------------------------------------------ public API
    @property
    def kmeans_backend(self) -> str:
        """The k-means this estimator runs on its device (see :func:`kmeans_backend`)."""
        return kmeans_backend(self.device)

    @property
    def n_levels(self) -> int:
        """Columns of a code: the quantization levels plus the disambiguation level when ``unique_codes``."""
        return len(self.levels) + int(self.unique_codes)

    def fit(self, X: np.ndarray) -> RQKMeans:
        X = check_matrix(X, "X")
        self._check_device()
        t_start = time.perf_counter()
        fingerprint = self._fingerprint(X)
        loaded = self._load_checkpoints(fingerprint)
        self.centroids_, self.scales_, self.offsets_, self.level_stats_ = [], [], [], []
        self.dim_ = int(X.shape[1])
        self.n_levels_resumed_ = len(loaded)

        residual = X
        parent_rows = np.zeros(len(X), dtype=np.int64)  # everything starts under the root
        parent_norms = np.ones(len(X), dtype=np.float32)
        all_rows = []
        for level, size in enumerate(self.levels):
            if level < len(loaded):
                centroids, scales, offsets, rows, stats = loaded[level]
                log.info("rq-kmeans level %d/%d: resumed from checkpoint (%d clusters)",
                         level + 1, len(self.levels), len(centroids))
            else:
                centroids, scales, offsets, rows, stats = self._fit_level(
                    residual, parent_rows, parent_norms, size, level)
                self._save_checkpoint(level, fingerprint, centroids, scales, offsets, rows, stats)
            self.centroids_.append(centroids)
            self.scales_.append(scales)
            self.offsets_.append(offsets)
            self.level_stats_.append(stats)
            all_rows.append(rows)
            residual, parent_norms = self._next_residual(residual, centroids[rows])
            parent_rows = rows

        base_codes = self._rows_to_codes(np.stack(all_rows, axis=1))
        self._remember_base_codes(base_codes)
        self.codes_ = self._with_disambiguation(base_codes, fitted=True)
        log.info("rq-kmeans: %d songs -> %d distinct codes over %d levels in %.1fs",
                 len(X), len(np.unique(self.codes_, axis=0)), self.n_levels, time.perf_counter() - t_start)
        return self

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        """Fit and return the catalogue's (balanced) codes, ``codes_``."""
        return self.fit(X).codes_.copy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Codes of (new) vectors: at each level the nearest child of the prefix chosen so far.

        No capacities apply. With ``unique_codes`` the disambiguation column is the next free slot after the
        catalogue's songs with the same code (and after earlier rows of ``X`` with that code).
        """
        self._check_fitted()
        X = check_matrix(X, "X", dim=self.dim_)
        base_codes = self._rows_to_codes(self._encode_rows(X))
        return self._with_disambiguation(base_codes, fitted=False)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Reconstruction float32 ``(n, dim)`` of ``X`` from its predicted code (see ``decode``)."""
        return self.decode(self.predict(X))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction ``C_1[c_1] + s_2 * (C_2[c_2] + s_3 * (...))`` of codes; a disambiguation column is ignored."""
        self._check_fitted()
        rows = self._codes_to_rows(codes)
        recon = np.zeros((len(rows), self.dim_), dtype=np.float32)
        multiplier = np.ones(len(rows), dtype=np.float32)
        for level in range(len(self.levels)):
            multiplier = multiplier * self.scales_[level][rows[:, level]]
            recon += multiplier[:, None] * self.centroids_[level][rows[:, level]]
        return recon

    def level_codebook(self, level: int, prefix: Sequence[int] = ()) -> np.ndarray:
        """Centroids (float32, ``(k, dim)``) of the 1-based ``level`` under ``prefix`` (the codes of levels before it)."""
        self._check_fitted()
        if not 1 <= level <= len(self.levels):
            raise ValueError(f"level must be in 1..{len(self.levels)}, got {level}")
        if len(prefix) != level - 1:
            raise ValueError(f"prefix must hold {level - 1} codes for level {level}, got {tuple(prefix)!r}")
        parent = 0
        if level > 1:
            parent = int(self._codes_to_rows(np.asarray([list(prefix)], dtype=np.int64), n_levels=level - 1)[0, -1])
        offsets = self.offsets_[level - 1]
        return self.centroids_[level - 1][offsets[parent]:offsets[parent + 1]]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to one ``.npz`` (arrays + a JSON config string; loads without pickle)."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"config_json": np.array(json.dumps(self._config(), sort_keys=True)),
                  "codes": self.codes_, "base_code_keys": self._base_code_keys,
                  "base_code_counts": self._base_code_counts,
                  "level_stats_json": np.array(json.dumps(self.level_stats_))}
        for level in range(len(self.levels)):
            arrays[f"centroids_{level}"] = self.centroids_[level]
            arrays[f"scales_{level}"] = self.scales_[level]
            arrays[f"offsets_{level}"] = self.offsets_[level]
        _atomic_savez(path, arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RQKMeans:
        with np.load(Path(path), allow_pickle=False) as data:
            config = json.loads(str(data["config_json"]))
            if config.pop("format_version", None) != _FORMAT_VERSION:
                raise ValueError(f"{path}: not an RQKMeans file of format version {_FORMAT_VERSION}")
            model = cls(**config)
            n = len(model.levels)
            model.centroids_ = [data[f"centroids_{lv}"] for lv in range(n)]
            model.scales_ = [data[f"scales_{lv}"] for lv in range(n)]
            model.offsets_ = [data[f"offsets_{lv}"] for lv in range(n)]
            model.codes_ = data["codes"]
            model._base_code_keys = data["base_code_keys"]
            model._base_code_counts = data["base_code_counts"]
            model.level_stats_ = json.loads(str(data["level_stats_json"]))
        model.dim_ = int(model.centroids_[0].shape[1])
        model.n_levels_resumed_ = 0
        return model

    # ------------------------------------------------------------------ fitting one level
    def _fit_level(self, residual, parent_rows, parent_norms, size, level):
        """Cluster ``residual`` within each parent; return centroids, scales, offsets, rows, stats."""
        t0 = time.perf_counter()
        n_parents = 1 if level == 0 else len(self.centroids_[level - 1])
        order = np.argsort(parent_rows, kind="stable")
        bounds = np.searchsorted(parent_rows[order], np.arange(n_parents + 1))
        rows = np.empty(len(residual), dtype=np.int64)
        centroid_blocks, counts = [], [0]
        capped = 0
        report_every = max(1, n_parents // 10)
        for parent in range(n_parents):
            members = order[bounds[parent]:bounds[parent + 1]]
            k = min(size, max(1, len(members) // self.min_cluster_size))
            capped += k < size
            centroids, labels = self._cluster(residual[members], k, _derive_seed(self.seed, level, parent))
            rows[members] = counts[-1] + labels
            centroid_blocks.append(centroids)
            counts.append(counts[-1] + len(centroids))
            if self.verbose and n_parents > 1 and (parent + 1) % report_every == 0:
                log.info("rq-kmeans level %d: %d/%d parents clustered", level + 1, parent + 1, n_parents)
        centroids = np.concatenate(centroid_blocks).astype(np.float32, copy=False)
        offsets = np.asarray(counts, dtype=np.int64)
        sizes = np.bincount(rows, minlength=len(centroids))
        scales = (np.bincount(rows, weights=parent_norms, minlength=len(centroids)) / sizes).astype(np.float32)
        if level == 0:
            scales[:] = 1.0
        stats = {"level": level + 1, "size": size, "groups": n_parents, "clusters": len(centroids),
                 "capped_groups": int(capped), "max_cluster_size": int(sizes.max()),
                 "mean_cluster_size": float(sizes.mean()), "seconds": time.perf_counter() - t0}
        log.info("rq-kmeans level %d/%d: %d songs in %d groups -> %d clusters (%d groups capped below %d); "
                 "cluster size max %d mean %.2f; %.1fs", level + 1, len(self.levels), len(residual), n_parents,
                 len(centroids), capped, size, stats["max_cluster_size"], stats["mean_cluster_size"],
                 stats["seconds"])
        return centroids, scales, offsets, rows, stats

    def _cluster(self, points: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """k centroids and labels ``0..k'-1`` for ``points``; empty clusters are dropped (k' <= k)."""
        n = len(points)
        if k == 1:
            return points.mean(axis=0, keepdims=True), np.zeros(n, dtype=np.int64)
        if k >= n:  # one song per cluster: the centroid is the song itself
            return points.copy(), np.arange(n, dtype=np.int64)
        centroids = kmeans(points, k, self.n_iter, seed, self.device)
        if self.balanced:
            capacity = math.ceil(n / k * (1.0 + self.balance_slack))
            centroids, labels = self._balanced_lloyd(points, centroids, capacity)
        else:
            labels = nearest(points, centroids, self.device)
        used = np.flatnonzero(np.bincount(labels, minlength=len(centroids)))
        if len(used) < len(centroids):
            remap = np.full(len(centroids), -1, dtype=np.int64)
            remap[used] = np.arange(len(used))
            centroids, labels = centroids[used], remap[labels]
        return centroids, labels

    def _balanced_lloyd(self, points, centroids, capacity):
        """Lloyd iterations with capacity-constrained assignments, until the cost stops falling.

        The greedy assignment is not monotone, so the loop stops at the first iteration whose assignment
        costs no less than 0.01% below the previous one, keeping that previous one (and its means).
        """
        labels, cost = None, np.inf
        for _ in range(self.n_iter):
            sq = sq_distances(points, centroids, self.device)
            new_labels = balanced_assign(sq, capacity)
            new_cost = float(sq[np.arange(len(points)), new_labels].sum())
            if labels is not None and new_cost >= cost * (1.0 - 1e-4):
                break
            labels, cost = new_labels, new_cost
            centroids = cluster_means(points, labels, centroids)
        return centroids, labels

    def _next_residual(self, residual, assigned_centroids):
        """The residual the next level clusters and the norms it had before normalisation."""
        diff = (residual - assigned_centroids).astype(np.float32, copy=False)
        norms = np.linalg.norm(diff, axis=1).astype(np.float32)
        if not self.normalize_residuals:
            return diff, np.ones(len(diff), dtype=np.float32)
        unit = diff / np.maximum(norms, 1e-12)[:, None]
        unit[norms <= 1e-12] = 0.0  # a song equal to its centroid leaves nothing to encode
        return unit.astype(np.float32, copy=False), norms

    # ------------------------------------------------------------------ encoding / codes
    def _encode_rows(self, X: np.ndarray) -> np.ndarray:
        """Per level, the row (global cluster index) each vector's nearest child falls on."""
        rows = np.empty((len(X), len(self.levels)), dtype=np.int64)
        residual, parent_rows = X, np.zeros(len(X), dtype=np.int64)
        for level in range(len(self.levels)):
            centroids, offsets = self.centroids_[level], self.offsets_[level]
            order = np.argsort(parent_rows, kind="stable")
            parents, starts = np.unique(parent_rows[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            for parent, start, end in zip(parents, starts, ends):
                members = order[start:end]
                lo, hi = offsets[parent], offsets[parent + 1]
                rows[members, level] = lo + nearest(residual[members], centroids[lo:hi], self.device)
            residual, _ = self._next_residual(residual, centroids[rows[:, level]])
            parent_rows = rows[:, level]
        return rows

    def _rows_to_codes(self, rows: np.ndarray) -> np.ndarray:
        codes = rows.copy()
        for level in range(1, rows.shape[1]):
            codes[:, level] = rows[:, level] - self.offsets_[level][rows[:, level - 1]]
        return codes

    def _codes_to_rows(self, codes: np.ndarray, n_levels: int | None = None) -> np.ndarray:
        n_levels = len(self.levels) if n_levels is None else n_levels
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] < n_levels or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be an int array of shape (n, >= {n_levels}), got {codes.shape} {codes.dtype}")
        rows = np.empty((len(codes), n_levels), dtype=np.int64)
        parent = np.zeros(len(codes), dtype=np.int64)
        for level in range(n_levels):
            lo, hi = self.offsets_[level][parent], self.offsets_[level][parent + 1]
            local = codes[:, level].astype(np.int64)
            bad = (local < 0) | (local >= hi - lo)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"codes row {i}: level-{level + 1} code {int(local[i])} does not exist under "
                                 f"prefix {tuple(int(c) for c in codes[i, :level])}")
            rows[:, level] = parent = lo + local
        return rows

    def _remember_base_codes(self, base_codes: np.ndarray) -> None:
        keys, counts = np.unique(base_codes, axis=0, return_counts=True)
        self._base_code_keys, self._base_code_counts = keys.astype(np.int64), counts.astype(np.int64)

    def _with_disambiguation(self, base_codes: np.ndarray, fitted: bool) -> np.ndarray:
        """Append the TIGER disambiguation column when ``unique_codes``: rank among rows with the same code."""
        if not self.unique_codes:
            return base_codes
        _, inverse = np.unique(base_codes, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")  # row order within each code
        first = np.searchsorted(inverse[order], inverse[order], side="left")
        slot = np.empty(len(base_codes), dtype=np.int64)
        slot[order] = np.arange(len(order)) - first
        if not fitted:  # new songs come after the catalogue's songs with the same code
            slot += self._catalogue_count(base_codes)
        return np.column_stack([base_codes, slot])

    def _catalogue_count(self, base_codes: np.ndarray) -> np.ndarray:
        keys = self._base_code_keys
        lookup = {tuple(k): int(c) for k, c in zip(keys.tolist(), self._base_code_counts.tolist())}
        return np.array([lookup.get(tuple(code), 0) for code in base_codes.tolist()], dtype=np.int64)

    # ------------------------------------------------------------------ checkpoints
    def _config(self) -> dict:
        return {"levels": list(self.levels), "balanced": self.balanced, "unique_codes": self.unique_codes,
                "n_iter": self.n_iter, "seed": self.seed, "device": self.device,
                "normalize_residuals": self.normalize_residuals, "min_cluster_size": self.min_cluster_size,
                "balance_slack": self.balance_slack, "verbose": self.verbose, "format_version": _FORMAT_VERSION}

    def _fingerprint(self, X: np.ndarray) -> str:
        """Hash of the input and of everything that changes the levels (not ``unique_codes``, not logging)."""
        config = self._config()
        for key in ("unique_codes", "verbose", "device"):
            config.pop(key)
        # The k-means that ran: faiss-gpu's and the torch loop's centroids differ, so their checkpoints do too
        # ("cpu" / "cuda" as before for the two backends that existed first).
        config["backend"] = {"faiss-cpu": "cpu", "torch": "cuda", "faiss-gpu": "cuda-faiss"}[self.kmeans_backend]
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        digest.update(np.asarray(X.shape, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def _load_checkpoints(self, fingerprint: str) -> list:
        if self.checkpoint_dir is None:
            return []
        loaded = []
        for level in range(len(self.levels)):
            path = self.checkpoint_dir / _CHECKPOINT_NAME.format(level + 1)
            if not path.exists():
                break
            with np.load(path, allow_pickle=False) as data:
                if str(data["fingerprint"]) != fingerprint:
                    log.warning("rq-kmeans: ignoring checkpoint %s (fitted on other data or another config)", path)
                    break
                loaded.append((data["centroids"], data["scales"], data["offsets"], data["rows"],
                               json.loads(str(data["stats_json"]))))
        return loaded

    def _save_checkpoint(self, level, fingerprint, centroids, scales, offsets, rows, stats) -> None:
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        # A level refitted now invalidates any later level still on disk from an earlier run.
        for later in range(level + 1, len(self.levels)):
            (self.checkpoint_dir / _CHECKPOINT_NAME.format(later + 1)).unlink(missing_ok=True)
        _atomic_savez(self.checkpoint_dir / _CHECKPOINT_NAME.format(level + 1), {
            "fingerprint": np.array(fingerprint), "centroids": centroids, "scales": scales, "offsets": offsets,
            "rows": rows, "stats_json": np.array(json.dumps(stats))})

    def _check_device(self) -> None:
        check_device(self.device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "centroids_"):
            raise RuntimeError("RQKMeans is not fitted yet: call fit(X) first")


# ---------------------------------------------------------------------- balanced assignment
def balanced_assign(sq_distances: np.ndarray, capacity: int) -> np.ndarray:
    """Assign every row to a column so that no column takes more than ``capacity`` rows.

    Proposal rounds: every unassigned row proposes to its nearest column with room left; a column keeps its
    closest proposers up to its remaining room (ties: lower row index) and the others propose again. Each
    round fills a column or finishes, so there are at most ``k + 1`` rounds. Deterministic.
    """
    n, k = sq_distances.shape
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} clusters cannot hold {n} points")
    labels = np.full(n, -1, dtype=np.int64)
    room = np.full(k, capacity, dtype=np.int64)
    pending = np.arange(n)
    while len(pending):
        dist = sq_distances[pending]
        dist[:, room == 0] = np.inf
        choice = dist.argmin(axis=1)
        chosen_dist = dist[np.arange(len(pending)), choice]
        order = np.lexsort((pending, chosen_dist, choice))  # by column, then distance, then row
        by_column = choice[order]
        rank = np.arange(len(order)) - np.searchsorted(by_column, by_column, side="left")
        accepted = rank < room[by_column]
        labels[pending[order[accepted]]] = by_column[accepted]
        room -= np.bincount(by_column[accepted], minlength=k)
        pending = np.sort(pending[order[~accepted]])
    return labels


# ---------------------------------------------------------------------- small helpers
def check_matrix(X, name: str, dim: int | None = None) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, dim), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"{name} has {X.shape[1]} columns, the model was fitted on {dim}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return X


def _derive_seed(seed: int, level: int, parent: int) -> int:
    return int(np.random.SeedSequence([seed, level, parent]).generate_state(1)[0] & 0x7FFFFFFF)


def _atomic_savez(path: Path, arrays: dict) -> None:
    """Write an npz next to ``path`` and rename it into place, so a killed run never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
