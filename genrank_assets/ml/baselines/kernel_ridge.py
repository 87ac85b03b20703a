"""Kernel ridge + co-occurrence (docs/benchmark.md, the strongest classical baseline) in a bounded form.

docs/benchmark.md's row is a dual ridge regression from the title TF-IDF to song indicators with kernel
k(x, x') = cos(x, x')**2 and lambda = 200, followed by the two-hop co-occurrence walk of kNN + co-occurrence.
``baselines.KernelRidgeRecommender`` solves it exactly: it keeps (K + lambda I)^-1 over ALL train playlists,
which is O(n_train^2) memory and O(n_train^2) work per query, and fitting inverts an n_train x n_train matrix.

:class:`BoundedKernelRidgeRecommender` solves the same regression on the query's ``neighbours`` nearest train
titles only (a local kernel ridge): with N the top-M train playlists by cosine similarity,

    scores(q) = k_N(q)^T (K_NN + lambda I)^-1 Y_N,

an M x M solve per query (M = 300: ~3 ms), nothing to fit beyond the TF-IDF, memory linear in the train
playlists. Why this is close to the full solution: k = cos**2 makes far titles nearly weightless, and on mpd7k
the largest eigenvalue of the whole Gram matrix (~66) is well below lambda, so (K + lambda I)^-1 is dominated by
its diagonal and by the interactions between close titles. Measured (benchmarks/results/experiments/ltr.json): val NDCG@10
0.1404 bounded vs 0.1412 exact; test 0.1239 bounded vs 0.1245 exact (docs/benchmark.md: 0.1252).
``neighbours=None`` is the exact dual of the parent class.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import scipy.linalg
from threadpoolctl import ThreadpoolController

from genrank_assets.ml.baselines.classical import (
    CoOccurrenceRecommender,
    EvidenceScores,
    KernelRidgeRecommender,
    top_k_indices,
)

DEFAULT_NEIGHBOURS = 300


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The process's BLAS libraries, found once: ``threadpool_limits`` rescans every loaded library per call (~8 ms
    a query with torch and LightGBM loaded, measured in the LTR features' profile), more than the solve itself."""
    return ThreadpoolController()

class BoundedKernelRidgeRecommender(KernelRidgeRecommender):
    """Kernel ridge on each query's ``neighbours`` most similar train titles (None: the exact dual over all)."""

    def __init__(self, ridge_lambda: float = 200.0, kernel_power: float = 2.0,
                 neighbours: int | None = DEFAULT_NEIGHBOURS, analyzer: str = "char",
                 ngram_range: tuple[int, int] | None = (1, 4), normalize_titles: bool = True):
        super().__init__(ridge_lambda=ridge_lambda, kernel_power=kernel_power, analyzer=analyzer,
                         ngram_range=ngram_range, normalize_titles=normalize_titles)
        if neighbours is not None and (isinstance(neighbours, bool) or int(neighbours) < 1):
            raise ValueError(f"neighbours must be a positive integer or None, got {neighbours!r}")
        self.neighbours = None if neighbours is None else int(neighbours)

    def _fit(self, train_df: pd.DataFrame) -> None:
        if self.neighbours is None:
            super()._fit(train_df)
            return
        self.title_vectors = self.tfidf.fit_transform(train_df["title"].astype(str).tolist())

    def title_similarities(self, texts: list[str]) -> np.ndarray:
        """Dense (len(texts), n_train) cosine similarities of each text to every train title."""
        self._require_fit()
        queries = self.tfidf.transform(texts)
        return np.ascontiguousarray((self.title_vectors @ queries.T.toarray()).T)

    def dual_weights(self, similarities: np.ndarray) -> np.ndarray:
        """(n_train,) dual coefficients of one query from its similarities to the train titles."""
        weights = np.zeros(len(similarities), dtype=np.float64)
        near, dual = self._local_dual(similarities)
        weights[near] = dual
        return weights

    def _local_dual(self, similarities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The query's ``neighbours`` nearest train titles (similarity order) and their dual coefficients."""
        near = top_k_indices(similarities, min(self.neighbours, len(similarities)))
        near = near[similarities[near] > 0]
        if len(near) == 0:
            return near, np.zeros(0, dtype=np.float64)
        titles = self.title_vectors[near]
        gram = (titles @ titles.T).toarray() ** self.kernel_power
        gram[np.diag_indices_from(gram)] += self.ridge_lambda
        # K + lambda I is symmetric positive definite: Cholesky. One BLAS thread: an M x M solve gains nothing
        # from threads, and OpenBLAS threads beside torch's on 2 busy cores made it ~100x slower (measured).
        with _blas_controller().limit(limits=1, user_api="blas"):
            dual = scipy.linalg.solve(gram, similarities[near] ** self.kernel_power, assume_a="pos",
                                      check_finite=False)
        return near, dual

    def evidence(self, text: str) -> EvidenceScores:
        if self.neighbours is None:
            return super().evidence(text)
        return self.evidence_from_similarities(self.title_similarities([text])[0])

    def evidence_from_similarities(self, similarities: np.ndarray) -> EvidenceScores:
        """One query's scores from its row of ``title_similarities``, sparse: the songs of its ``neighbours``
        nearest train playlists (every other song scores 0.0), bitwise ``scores_from_similarities``' row."""
        catalogue = self._require_fit()
        near, dual = self._local_dual(similarities)
        order = np.argsort(near)
        songs, scores = catalogue.songs_of_playlists(near[order], dual[order])  # songs None: dense scores
        return EvidenceScores(len(catalogue), songs, scores)

    def _score_matrix(self, texts: list[str]) -> np.ndarray:
        if self.neighbours is None:
            return super()._score_matrix(texts)
        return self.scores_from_similarities(self.title_similarities(texts))

    def scores_from_similarities(self, similarities: np.ndarray) -> np.ndarray:
        """Song scores (n, n_songs) from the (n, n_train) output of ``title_similarities`` (bounded form)."""
        catalogue = self._require_fit()
        return catalogue.songs_from_playlists(np.stack([self.dual_weights(row) for row in similarities]))


def kernel_ridge_cooccurrence(neighbours: int | None = DEFAULT_NEIGHBOURS, ridge_lambda: float = 200.0,
                              n_seeds: int = 100, walk_weight: float = 3.0) -> CoOccurrenceRecommender:
    """docs/benchmark.md 'kernel ridge + co-occurrence' (kernel cos^2, lambda 200, the kNN + co-occurrence walk),
    with the bounded ridge by default."""
    base = BoundedKernelRidgeRecommender(ridge_lambda=ridge_lambda, neighbours=neighbours)
    return CoOccurrenceRecommender(base, n_seeds=n_seeds, walk_weight=walk_weight)


__all__ = ["DEFAULT_NEIGHBOURS", "BoundedKernelRidgeRecommender", "kernel_ridge_cooccurrence"]
