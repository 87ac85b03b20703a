"""The learning-to-rank recommender: text -> candidate pool (generator beams ∪ classical sources) -> features ->
LightGBM lambdarank -> top-K.

It serves exactly the code path the ranker was trained on: ``candidates.build_pool`` (one query at a time), then
``FeatureBuilder.features`` (the same function that built the ``ranking_features`` table), then
``LTRRanker.predict``; the pool is built with the ``PoolConfig`` the ranker's training pools had (saved in the
ranker). Songs come best score first; a query whose pool holds fewer than k songs continues with
ridge + co-occurrence's ranking, then the most popular train songs (``ranked_with_fill``).

The classical sources and the feature builder are fitted on the TRAIN playlists of the corpus given here (the
registered recommender bundles them, ``registry.register_recommender``), as at training time.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from genrank_assets.ml.ranking.ltr.candidates import SOURCES, CandidateSources, PoolConfig, QueryPool, build_pool
from genrank_assets.ml.ranking.ltr.features import FeatureBuilder, uses_cross_encoder
from genrank_assets.ml.ranking.ltr.mentions import CatalogueMentions
from genrank_assets.ml.ranking.ltr.ranker import LTRRanker, ranked_with_fill
from genrank_assets.ml.serving.recommender import Recommendation, ServedRecommender, stage_medians

METHOD = "ltr"


@dataclass
class LTRStageTimes:
    """Milliseconds per query of each stage: the pool (generator beams + classical scores), the features
    (teacher-forced generator log-probabilities, text matches, cross-encoder logits if the ranker uses them...),
    LightGBM, and the whole."""

    pool_ms: list[float] = field(default_factory=list)
    features_ms: list[float] = field(default_factory=list)
    rank_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)

    def medians(self) -> dict[str, float]:
        return stage_medians({"pool": self.pool_ms, "features": self.features_ms, "rank": self.rank_ms})


@dataclass
class RankedPool:
    """One query's pool, its features and LTR scores, and the order that ranks it (indices into the pool)."""

    pool: QueryPool
    features: pd.DataFrame
    scores: np.ndarray
    song_ids: list[str]  # the ranking: pool by score, then the fill


class LTRRecommender(ServedRecommender):
    """``recommend`` / ``recommend_many`` / ``explain`` like ``Recommender``, ranking with a learned ranker."""

    def __init__(self, sources: CandidateSources, builder: FeatureBuilder, ltr: LTRRanker,
                 song_info: dict[str, tuple[str, str]]):
        if not ltr.pool_config:
            raise ValueError("the LTR ranker does not record the PoolConfig of its training pools (pool_config)")
        self.sources = sources
        self.builder = builder
        self.ltr = ltr
        self.pool_config = PoolConfig.from_dict(ltr.pool_config)
        self.song_info = song_info
        self.generator = sources.generator
        catalogue = sources.catalogue
        order = np.lexsort((np.arange(len(catalogue)), -catalogue.counts))  # most popular first, then catalogue order
        self._popular = [catalogue.song_ids[i] for i in order]
        self._times = LTRStageTimes()

    @classmethod
    def fit(cls, corpus: pd.DataFrame, generator, ranker, song_vectors, song_info: dict[str, tuple[str, str]],
            ltr: LTRRanker, sources: CandidateSources | None = None,
            cold_songs: frozenset[str] = frozenset()) -> LTRRecommender:
        """Fit the classical sources (unless ``sources`` fitted on the same corpus are given) and the feature
        builder on the train playlists of ``corpus``; ``cold_songs``: the songs whose vectors are cold-start
        predictions (the catalogue's flag). The sources' ``cold_neighbours`` source is set over ``song_vectors``, their
        ``mention`` source over the names of ``song_info`` (``CatalogueMentions`` fitted on ``corpus``)."""
        sources = (sources or CandidateSources.fit(corpus, generator)).with_song_vectors(song_vectors).with_mentions(
            CatalogueMentions().fit(corpus, song_info))
        # the cross-encoder scores the pool only for a ranker that learnt from its logits (features.ltr_features)
        cross_encoder = ranker if uses_cross_encoder(ltr.feature_names) else None
        builder = FeatureBuilder(sources, corpus, song_info, song_vectors, cross_encoder, cold_songs=cold_songs)
        return cls(sources, builder, ltr, song_info)

    def describe(self) -> dict:
        """What this recommender serves (for `genrank recommend --json`, the report and the registry)."""
        return {"method": METHOD, "pool": asdict(self.pool_config), "ltr_rounds": self.ltr.n_rounds,
                "features": len(self.ltr.feature_names)}

    @property
    def stage_times(self) -> LTRStageTimes:
        return self._times

    def reset_stage_times(self) -> None:
        self._times = LTRStageTimes()

    # -- ranking ----------------------------------------------------------------------------------------------
    def rank(self, text: str, depth: int) -> RankedPool:
        """The ranked pool of one query, ``depth`` songs deep (the pool's size when it holds more)."""
        t0 = time.perf_counter()
        pool = build_pool(text, self.sources, self.pool_config)
        t1 = time.perf_counter()
        features = self.builder.features(pool)
        t2 = time.perf_counter()
        scores = self.ltr.predict(features)
        t3 = time.perf_counter()
        catalogue = self.sources.catalogue
        fill = [catalogue.song_ids[i] for i in pool.classical_top] + self._popular
        ranked = ranked_with_fill(pool.song_ids, scores, fill, max(depth, len(pool)))
        self._times.pool_ms.append((t1 - t0) * 1000)
        self._times.features_ms.append((t2 - t1) * 1000)
        self._times.rank_ms.append((t3 - t2) * 1000)
        return RankedPool(pool, features, scores, ranked)

    # -- public: recommend / recommend_many / explain come from ServedRecommender -----------------------------
    def _recommend_many(self, texts: list[str], k: int) -> list[list[Recommendation]]:
        out = []
        for text in texts:  # one query at a time: a pool never depends on the queries served with it
            t0 = time.perf_counter()
            ranked = self.rank(text, k)
            score_of = dict(zip(ranked.pool.song_ids, ranked.scores.tolist()))
            recs = []
            for i, song in enumerate(ranked.song_ids[:k], start=1):
                name, singer = self.song_info.get(song, ("", ""))
                recs.append(Recommendation(i, song, name, singer, float(score_of.get(song, float("-inf")))))
            out.append(recs)
            self._times.total_ms.append((time.perf_counter() - t0) * 1000)
        return out

    def _explain(self, text: str, k: int):
        """Per song, the sources that proposed it (and their ranks) and the LTR score as its largest feature
        contributions (LightGBM's SHAP values); the order is the recommended order."""
        from genrank_assets.ml.serving.explain import explain_ltr

        t0 = time.perf_counter()
        ranked = self.rank(text, k)
        out = explain_ltr(self, ranked, k)
        self._times.total_ms.append((time.perf_counter() - t0) * 1000)
        return out


__all__ = ["METHOD", "SOURCES", "LTRRecommender", "LTRStageTimes", "RankedPool"]
