"""A classical system served: popularity, the reference title-kNN, kNN + co-occurrence or kernel ridge +
co-occurrence (``ml/baselines``), fitted on the TRAIN playlists of a corpus, behind the interface every served
recommender has (``recommend`` / ``recommend_many`` / ``explain`` / ``describe`` / stage times).

``served_method: auto`` may choose one of them when its val NDCG@10 is the best (``ml/evaluation/procedure.py``);
the registered bundle (``registry.register_recommender``) holds the train corpus and the song side, and the
system is refitted on that corpus when the bundle loads (no generator or cross-encoder is loaded for it).
A classical system ranks songs of its train playlists only: a cold-start song (no train history) is never
recommended by it, and a catalogue refresh refits it on the grown train corpus.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import pandas as pd

from genrank_assets.ml.baselines.classical import (
    PopularityRecommender,
    knn_cooccurrence,
    reference_title_knn,
)
from genrank_assets.ml.baselines.classical import Recommender as ClassicalModel
from genrank_assets.ml.baselines.kernel_ridge import kernel_ridge_cooccurrence
from genrank_assets.ml.serving.recommender import (
    CLASSICAL_METHODS,
    ClassicalConfig,
    Recommendation,
    ServedRecommender,
    StageTimes,
)

# The classical systems of the evaluation report (``CLASSICAL_METHODS``, simplest first: an equal val figure
# serves the simpler one): name -> a factory of the unfitted model, as the report fits it.
CLASSICAL_SYSTEMS: dict[str, Callable[[], ClassicalModel]] = {
    "popularity": PopularityRecommender,
    "title_knn": partial(reference_title_knn, "char_wb"),  # docs/benchmark.md's reference row
    "knn_cooccurrence": knn_cooccurrence,
    "kernel_ridge_cooccurrence": kernel_ridge_cooccurrence,  # the bounded form (ml/baselines/kernel_ridge.py)
}
if tuple(CLASSICAL_SYSTEMS) != CLASSICAL_METHODS:  # the names a bundle's config may hold are these, in order
    raise ImportError(f"CLASSICAL_SYSTEMS {tuple(CLASSICAL_SYSTEMS)} != recommender.CLASSICAL_METHODS")
_CHUNK = 32  # queries scored together: each holds a dense score row over the train songs


class ClassicalRecommender(ServedRecommender):
    """A fitted classical model served: its ranking, each song's score under it, and the song's name/singer."""

    def __init__(self, model: ClassicalModel, config: ClassicalConfig, song_info: dict[str, tuple[str, str]]):
        if model.catalogue is None:
            raise ValueError(f"{config.method}: the classical model is not fitted")
        self.model, self.config, self.song_info = model, config, song_info
        self._times = StageTimes()

    @classmethod
    def fit(cls, corpus: pd.DataFrame, method: str, song_info: dict[str, tuple[str, str]]) -> ClassicalRecommender:
        """``method`` fitted on the train playlists of ``corpus``."""
        config = ClassicalConfig(method)
        return cls(CLASSICAL_SYSTEMS[method]().fit(corpus), config, song_info)

    @property
    def method(self) -> str:
        return self.config.method

    def describe(self) -> dict:
        """What this recommender serves (for `genrank recommend --json`, the report and the registry)."""
        return {"method": self.method, "model": type(self.model).__name__,
                "train_songs": len(self.model.catalogue)}

    @property
    def stage_times(self) -> StageTimes:
        return self._times

    def reset_stage_times(self) -> None:
        self._times = StageTimes()

    def _ranked(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        """(song id, its score under the model) of each text's top k, best first."""
        catalogue = self.model.catalogue
        out = []
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start:start + _CHUNK]
            t0 = time.perf_counter()
            ranked = self.model.recommend_many(chunk, k)
            scores = self.model.score_matrix(chunk)
            for ids, row in zip(ranked, scores):
                out.append([(s, float(row[catalogue.index[s]])) for s in ids])
            ms = (time.perf_counter() - t0) * 1000 / len(chunk)
            self._times.knn_ms.extend([ms] * len(chunk))
            self._times.total_ms.extend([ms] * len(chunk))
        return out

    def _recommend_many(self, texts: list[str], k: int) -> list[list[Recommendation]]:
        return [[Recommendation(rank, s, *self.song_info.get(s, ("", "")), score)
                 for rank, (s, score) in enumerate(ranked, start=1)] for ranked in self._ranked(texts, k)]

    def _explain(self, text: str, k: int):
        """Per song, the one source that proposed it (this system, and the song's rank in it) and its score."""
        from genrank_assets.ml.serving.explain import Explanation, Source

        ranked = self._ranked([text], k)[0]
        return [Explanation(rank, s, *self.song_info.get(s, ("", "")), score, [Source(self.method, rank, len(ranked))])
                for rank, (s, score) in enumerate(ranked, start=1)]


__all__ = ["CLASSICAL_SYSTEMS", "ClassicalConfig", "ClassicalRecommender"]
