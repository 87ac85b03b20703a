"""Stage `ranking`, first step of the learning-to-rank stage: the candidate pool of a query.

The pool is the union of what several cheap sources propose for the query text:

* ``generator`` — the songs of TIGER's trie-constrained beams (``TigerGenerator``), code by code in beam order,
  the most popular song of a code first, the first ``generator_songs`` distinct songs;
* ``knn`` — the tuned title-kNN's top ``per_source`` songs (docs/benchmark.md);
* ``knn_cooc`` — kNN + co-occurrence's top ``per_source``;
* ``ridge_cooc`` — kernel ridge + co-occurrence's top ``per_source`` (``ml/baselines/kernel_ridge.py``, bounded form);
* ``cold_neighbours`` — the songs with a vector but no train history (cold-start songs, placed by the catalogue)
  nearest by cosine to the centroid of ridge + co-occurrence's top ``centroid_top`` songs, the first
  ``cold_songs`` (``ColdNeighbours``; needs ``CandidateSources.with_song_vectors``). No other source can
  propose a song that no train playlist holds; the generator reaches them only through their code;
* ``mention`` — the songs a query names, then the songs of the singers it names (most played first), then those
  of the singers that co-occur most with them in train playlists, the first ``mention_songs``
  (``mentions.CatalogueMentions``; needs ``CandidateSources.with_mentions``). Its songs come from the song info, so
  a named singer's songs without train history are reachable too.

Every (query, song) of the pool records which sources proposed it and, per source, its score and 0-based rank;
a source that did not propose the song has rank NaN (``ABSENT``), never 0. The classical sources score every
song of their catalogue (the train songs), so their *scores* are known for every candidate; their ranks are
known down to ``rank_depth``. They are computed by the query's evidence (``classical.EvidenceScores``, bitwise the
dense rows of their ``score_matrix``), so no catalogue-length row is built where the evidence is sparse. ``cold_neighbours`` scores only the songs it can propose (the cosine), ``mention``
only the songs it ranked (the match score of the named song or singer, the strength of a co-occurring one). The
generator's score is the beam score of the song's code (NaN when the code was in no beam). The query's
``Mentions`` are kept in the pool (``QueryPool.mentions``) for the features.

A query is always processed alone (``build_pool``; ``build_pools`` is a loop over it), so a query's pool does not
depend on which other queries were built with it: training (many queries) and serving (one) see the same numbers.
Nothing here is fitted beyond the classical sources' ``fit`` on the TRAIN playlists of a corpus.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from genrank_assets.ml.baselines.classical import (
    CoOccurrenceRecommender,
    EvidenceScores,
    SongCatalogue,
    benchmark_queries,
    knn_cooccurrence,
    top_k_indices,
    train_playlists,
)
from genrank_assets.ml.baselines.kernel_ridge import (
    DEFAULT_NEIGHBOURS,
    BoundedKernelRidgeRecommender,
    kernel_ridge_cooccurrence,
)
from genrank_assets.ml.data.corpus import HOLDOUT
from genrank_assets.ml.overlap import beside
from genrank_assets.ml.ranking.ltr.mentions import CatalogueMentions, Mentions

log = logging.getLogger(__name__)

SOURCES = ("generator", "knn", "knn_cooc", "ridge_cooc", "cold_neighbours", "mention")
CLASSICAL_SOURCES = ("knn", "knn_cooc", "ridge_cooc")  # fitted on the train playlists, score every train song
ABSENT = np.nan  # rank (or score) of a song a source did not propose / cannot score


@dataclass(frozen=True)
class PoolConfig:
    """How many songs each source adds to a query's pool (a few hundred in all after overlaps)."""

    generator_songs: int = 200  # distinct songs from the beams' codes
    num_beams: int = 50
    per_source: int = 100  # top songs of each classical source
    rank_depth: int = 1000  # classical ranks below this are ABSENT
    cold_songs: int = 50  # songs without train history from cold_neighbours
    centroid_top: int = 20  # ridge + co-occurrence's top songs whose vectors make the query's centroid
    mention_songs: int = 100  # songs of the named songs / singers and their co-occurring singers from mention
    sources: tuple[str, ...] = SOURCES  # leave "generator" out for a pool without the generator

    def __post_init__(self) -> None:
        for name in ("generator_songs", "num_beams", "per_source", "rank_depth", "cold_songs", "centroid_top",
                     "mention_songs"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) < 1:
                raise ValueError(f"PoolConfig.{name} must be a positive integer, got {value!r}")
        if self.rank_depth < self.per_source:
            raise ValueError("PoolConfig.rank_depth must be >= per_source")
        unknown = set(self.sources) - set(SOURCES)
        if unknown or not self.sources:
            raise ValueError(f"PoolConfig.sources must be a non-empty subset of {SOURCES}, got {self.sources!r}")

    @classmethod
    def from_dict(cls, values: Mapping) -> PoolConfig:
        """The config of ``dataclasses.asdict(config)`` (e.g. read back from JSON); unknown keys are an error."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"PoolConfig has no field(s) {sorted(unknown)}")
        values = dict(values)
        if "sources" in values:
            values["sources"] = tuple(values["sources"])
        return cls(**values)


def unit_centroid(unit: np.ndarray, rows: Iterable[int | None], top: int) -> np.ndarray | None:
    """The unit-length mean of the first ``top`` rows of ``unit`` named by ``rows`` (None entries skipped); None
    when no row is named or the mean is zero. The query's centroid of the cold source and of the features."""
    chosen = [r for r in rows if r is not None][:top]
    if not chosen:
        return None
    centroid = unit[chosen].mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    return centroid / norm if norm > 0 else None


class ColdNeighbours:
    """Songs with a vector but no train history, found by the cosine of their vector to a query's centroid.

    ``song_vectors``: every song with a vector (the catalogue's: learned ones and cold-start predictions);
    ``catalogue``: the classical sources' train songs. The songs of ``song_vectors`` outside the catalogue are
    the ones this source can propose; the catalogue's songs give the centroid. Exact (a matrix product over the
    cold songs: a few thousand per refresh; faiss would pay off only far beyond that).
    """

    def __init__(self, song_vectors, catalogue: SongCatalogue):
        unit = song_vectors.normalized().astype(np.float32)
        rows = catalogue.indices_of(song_vectors.song_ids)
        self.song_ids = [s for s, r in zip(song_vectors.song_ids, rows) if r < 0]
        self.unit = np.ascontiguousarray(unit[rows < 0])
        # catalogue row -> its unit vector (zero where the train song has no vector, e.g. below min_count)
        self.catalogue_unit = np.zeros((len(catalogue), unit.shape[1]), dtype=np.float32)
        self.has_vector = np.zeros(len(catalogue), dtype=bool)
        self.catalogue_unit[rows[rows >= 0]] = unit[rows >= 0]
        self.has_vector[rows[rows >= 0]] = True
        self._position = {s: i for i, s in enumerate(self.song_ids)}

    def __len__(self) -> int:
        return len(self.song_ids)

    def centroid(self, catalogue_rows: Sequence[int], top: int) -> np.ndarray | None:
        """Unit centroid of the first ``top`` of ``catalogue_rows`` that have a vector (None when none has)."""
        return unit_centroid(self.catalogue_unit,
                             (int(r) if r >= 0 and self.has_vector[r] else None for r in catalogue_rows), top)

    def nearest(self, centroid: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """The ``k`` cold songs nearest ``centroid``, best first (ties by song order), and every cold song's cosine."""
        cosines = self.unit @ centroid
        order = top_k_indices(cosines, min(k, len(cosines))) if len(cosines) else np.zeros(0, dtype=np.int64)
        return [self.song_ids[i] for i in order], cosines

    def position(self, song_id: str) -> int | None:
        return self._position.get(song_id)


@dataclass
class QueryPool:
    """One query's candidates and what each source said about them (arrays aligned with ``song_ids``)."""

    text: str
    song_ids: list[str]
    catalogue_index: np.ndarray  # int64, row in the classical catalogue (-1: outside it)
    proposed: dict[str, np.ndarray]  # source -> bool, the source put the song in the pool
    ranks: dict[str, np.ndarray]  # source -> float, 0-based rank, ABSENT when not ranked
    scores: dict[str, np.ndarray]  # source -> float, the source's score, ABSENT when it cannot score the song
    base_scores: dict[str, np.ndarray]  # "knn", "ridge": the classical bases before the co-occurrence walk
    beams: list[tuple[tuple[int, ...], float]] = field(default_factory=list)  # generator codes, best beam first
    classical_top: list[int] = field(default_factory=list)  # catalogue rows of ridge_cooc's top rank_depth songs
    best_title_similarity: float = 0.0  # highest cosine of the query to a train title
    mentions: Mentions | None = None  # what the query names (None: the sources have no CatalogueMentions)

    def __len__(self) -> int:
        return len(self.song_ids)

    @property
    def n_sources(self) -> np.ndarray:
        return np.sum([p for p in self.proposed.values()], axis=0).astype(np.int64)


class CandidateSources:
    """The fitted classical sources (sharing one train catalogue) and, optionally, the generator."""

    def __init__(self, knn_cooc: CoOccurrenceRecommender, ridge_cooc: CoOccurrenceRecommender, generator=None):
        for name, model in (("knn_cooc", knn_cooc), ("ridge_cooc", ridge_cooc)):
            if not isinstance(model, CoOccurrenceRecommender) or model.catalogue is None:
                raise ValueError(f"{name} must be a fitted CoOccurrenceRecommender")
        if not isinstance(ridge_cooc.base, BoundedKernelRidgeRecommender):
            raise ValueError("ridge_cooc's base must be a BoundedKernelRidgeRecommender (kernel_ridge_cooccurrence())")
        if knn_cooc.catalogue.song_ids != ridge_cooc.catalogue.song_ids:
            raise ValueError("knn_cooc and ridge_cooc were fitted on different train playlists")
        self.knn_cooc = knn_cooc
        self.ridge_cooc = ridge_cooc
        self.generator = generator
        self.catalogue: SongCatalogue = knn_cooc.catalogue
        self.train_playlist_ids: frozenset[str] = frozenset()
        self.cold: ColdNeighbours | None = None
        self.mentions: CatalogueMentions | None = None

    def with_song_vectors(self, song_vectors) -> CandidateSources:
        """These sources with the ``cold_neighbours`` source over ``song_vectors`` (None: without it)."""
        self.cold = ColdNeighbours(song_vectors, self.catalogue) if song_vectors is not None else None
        return self

    def with_mentions(self, mentions: CatalogueMentions | None) -> CandidateSources:
        """These sources with the ``mention`` source over ``mentions``, a ``CatalogueMentions`` fitted on the same
        corpus (None: without it)."""
        if mentions is not None and (not isinstance(mentions, CatalogueMentions) or not mentions.fitted):
            raise ValueError(f"mentions must be a fitted CatalogueMentions, got {type(mentions).__name__}")
        self.mentions = mentions
        return self

    @classmethod
    def fit(cls, corpus: pd.DataFrame, generator=None, ridge_neighbours: int | None = DEFAULT_NEIGHBOURS
            ) -> CandidateSources:
        """Fit the classical sources on the TRAIN playlists of ``corpus`` (docs/benchmark.md configs)."""
        knn = knn_cooccurrence().fit(corpus)
        ridge = kernel_ridge_cooccurrence(neighbours=ridge_neighbours).fit(corpus)
        return cls.of_fitted(corpus, knn, ridge, generator)

    @classmethod
    def of_fitted(cls, corpus: pd.DataFrame, knn_cooc: CoOccurrenceRecommender, ridge_cooc: CoOccurrenceRecommender,
                  generator=None) -> CandidateSources:
        """The sources from classical models already fitted on the TRAIN playlists of ``corpus`` (e.g. the
        evaluation's baselines), without fitting them again."""
        sources = cls(knn_cooc, ridge_cooc, generator)
        sources.train_playlist_ids = frozenset(map(str, train_playlists(corpus)["playlist_id"]))
        return sources


def _ranks_of(order: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """0-based position of each of ``rows`` in ``order`` (ABSENT for rows not in it or < 0); no array of the
    catalogue's length."""
    out = np.full(len(rows), ABSENT)
    if len(order) == 0 or len(rows) == 0:
        return out
    sorter = np.argsort(order, kind="stable")
    loc = np.minimum(np.searchsorted(order, rows, sorter=sorter), len(order) - 1)
    hit = (rows >= 0) & (order[sorter[loc]] == rows)
    out[hit] = sorter[loc[hit]]
    return out


def _at(scores: EvidenceScores, rows: np.ndarray) -> np.ndarray:
    return np.where(rows >= 0, scores.at(np.maximum(rows, 0)), ABSENT)


def build_pool(text: str, sources: CandidateSources, config: PoolConfig = PoolConfig()) -> QueryPool:
    """The candidate pool of one query text."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    catalogue = sources.catalogue
    use_generator = "generator" in config.sources and sources.generator is not None
    order: dict[str, None] = {}  # the pool, in order of first proposal
    proposed_by: dict[str, set[str]] = {s: set() for s in SOURCES}

    def propose(source: str, song_ids: Iterable[str]) -> None:
        for song in song_ids:
            proposed_by[source].add(song)
            order.setdefault(song, None)

    beams: list[tuple[tuple[int, ...], float]] = []
    generator_rank: dict[str, int] = {}
    # the beam search in the side thread while this one computes the classical scores (ml/overlap.py)
    searched = beside(sources.generator.generate_codes, text, config.num_beams) if use_generator else None

    # each base once; the co-occurrence walks start from it (CoOccurrenceRecommender.walk_from). Every source's
    # scores are EvidenceScores: the songs its evidence reaches (+ a popularity fill), exactly its score_matrix row
    similarities = sources.ridge_cooc.base.title_similarities([text])
    ridge_base = sources.ridge_cooc.base.evidence_from_similarities(similarities[0])
    knn_base = sources.knn_cooc.base.evidence(text)
    evidence = {"knn": knn_base, "knn_cooc": sources.knn_cooc.walk_from(knn_base),
                "ridge_cooc": sources.ridge_cooc.walk_from(ridge_base)}

    if searched is not None:
        beams = searched.result()
        generated = sources.generator.candidates_from_codes(beams, config.generator_songs)
        generator_rank = {s: i for i, s in enumerate(generated)}
        propose("generator", generated)
    orders = {}
    for source in CLASSICAL_SOURCES:
        orders[source] = evidence[source].top_k(min(config.rank_depth, len(catalogue)))
        if source in config.sources:
            propose(source, (catalogue.song_ids[i] for i in orders[source][: config.per_source]))
    cold_rank, cold_cosines = {}, None
    centroid = sources.cold.centroid(orders["ridge_cooc"], config.centroid_top) if sources.cold is not None else None
    if centroid is not None and len(sources.cold):
        nearest, cold_cosines = sources.cold.nearest(centroid, config.cold_songs)
        cold_rank = {s: i for i, s in enumerate(nearest)}
        if "cold_neighbours" in config.sources:
            propose("cold_neighbours", nearest)
    mentions = sources.mentions.find(text) if sources.mentions is not None else None
    mentioned = sources.mentions.songs_for(mentions, config.mention_songs) if mentions else []
    mention_rank = {s: i for i, (s, _) in enumerate(mentioned)}
    mention_score = dict(mentioned)
    if "mention" in config.sources:
        propose("mention", mention_rank)

    order = list(order)
    rows = catalogue.indices_of(order)
    ranks = {s: _ranks_of(orders[s], rows) for s in CLASSICAL_SOURCES}
    ranks["generator"] = np.array([generator_rank.get(s, ABSENT) for s in order], dtype=np.float64)
    ranks["cold_neighbours"] = np.array([cold_rank.get(s, ABSENT) for s in order], dtype=np.float64)
    ranks["mention"] = np.array([mention_rank.get(s, ABSENT) for s in order], dtype=np.float64)
    code_score = {code: score for code, score in beams}
    scores = {s: _at(evidence[s], rows) for s in CLASSICAL_SOURCES}
    scores["generator"] = np.array([_generator_score(sources.generator, s, code_score) for s in order],
                                   dtype=np.float64)
    scores["cold_neighbours"] = _cold_scores(sources.cold, cold_cosines, order)
    scores["mention"] = np.array([mention_score.get(s, ABSENT) for s in order], dtype=np.float64)
    proposed = {s: np.array([song in proposed_by[s] for song in order], dtype=bool) for s in SOURCES}
    return QueryPool(
        text=text, song_ids=order, catalogue_index=rows, proposed=proposed, ranks=ranks, scores=scores,
        base_scores={"knn": _at(knn_base, rows), "ridge": _at(ridge_base, rows)}, beams=beams,
        classical_top=[int(i) for i in orders["ridge_cooc"]],
        best_title_similarity=float(similarities.max()) if similarities.size else 0.0, mentions=mentions,
    )


def _cold_scores(cold: ColdNeighbours | None, cosines: np.ndarray | None, song_ids: Sequence[str]) -> np.ndarray:
    """The cosine to the query's centroid of each cold song of ``song_ids`` (ABSENT for songs with history)."""
    out = np.full(len(song_ids), ABSENT)
    if cold is None or cosines is None:
        return out
    for i, song in enumerate(song_ids):
        position = cold.position(song)
        if position is not None:
            out[i] = cosines[position]
    return out


def _generator_score(generator, song_id: str, code_score: Mapping[tuple[int, ...], float]) -> float:
    if generator is None or not code_score:
        return ABSENT
    row = generator.code_table.row_of(song_id)
    if row is None:
        return ABSENT
    return float(code_score.get(tuple(int(v) for v in generator.code_table.codes[row]), ABSENT))


def build_pools(texts: Sequence[str], sources: CandidateSources, config: PoolConfig = PoolConfig()
                ) -> list[QueryPool]:
    """``build_pool`` for each text, one at a time (identical to building them one by one)."""
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, got one string (use build_pool)")
    return [build_pool(text, sources, config) for text in texts]


def check_not_in_training(playlist_ids: Sequence[str], sources: CandidateSources) -> None:
    """Raise ValueError when a query playlist is one the classical sources were fitted on: its own songs would
    vote for themselves (kNN neighbour of itself, co-occurrence with itself, same-title share of itself)."""
    leaked = [str(p) for p in playlist_ids if str(p) in sources.train_playlist_ids]
    if leaked:
        raise ValueError(f"{len(leaked)} query playlists are train playlists of the candidate sources (their songs "
                         f"would vote for themselves), e.g. {leaked[:3]}: build ranker training data from val")


def crossfit_pool_songs(corpus: pd.DataFrame, splits: Sequence[str] = ("train", "val"), folds: int = 5,
                        per_source: int = PoolConfig.per_source, seed: int = 0, log_fn=None) -> dict[str, list[str]]:
    """Playlist id -> the classical pool (``build_pool`` without the generator) of its title, for every titled
    playlist of ``splits``, from sources that never saw the playlist: a train playlist's from sources fitted on the
    train playlists outside its fold (``folds`` folds by crc32 of seed and id), any other's from sources fitted on
    every train playlist. What the cross-encoder will score in the pipeline's pools, for its hard negatives; a
    train playlist's own songs never vote for themselves (they would fill its pool with its truth)."""
    if folds < 2:
        raise ValueError(f"crossfit_pool_songs needs folds >= 2, got {folds}")
    config = PoolConfig(per_source=per_source, sources=CLASSICAL_SOURCES)
    fold = np.array([zlib.crc32(f"pool-fold:{seed}:{p}".encode("utf-8")) % folds
                     for p in corpus["playlist_id"].astype(str)])
    is_train = (corpus["split"] == "train").to_numpy()
    # (train playlists left out of the sources' fit, the playlists they answer for)
    jobs = [(is_train & (fold == k),) * 2 for k in range(folds)] if "train" in splits else []
    others = [s for s in splits if s != "train"]
    if others:
        jobs.append((np.zeros(len(corpus), dtype=bool), corpus["split"].isin(others).to_numpy()))
    out: dict[str, list[str]] = {}
    for left_out, asked in jobs:
        part = corpus.copy()
        part.loc[left_out, "split"] = HOLDOUT  # out of the fit
        sources = CandidateSources.fit(part)
        asked_corpus = corpus[asked]
        for split in pd.unique(asked_corpus["split"]):
            qids, texts, _ = benchmark_queries(asked_corpus, split=str(split))
            check_not_in_training(qids, sources)
            out.update((qid, list(build_pool(text, sources, config).song_ids)) for qid, text in zip(qids, texts))
        if log_fn is not None:
            log_fn(f"cross-fitted pools: {len(out)} playlists")
    return out


def recall_ceiling(pools: Sequence[QueryPool], truths: Sequence[Iterable[str]]) -> dict[str, float]:
    """Mean share of each query's truth that lies inside its pool: per source (what that source proposed) and
    for the union (``"union"``); also the mean pool size."""
    if len(pools) != len(truths) or not pools:
        raise ValueError(f"need one truth per pool and at least one pool, got {len(pools)} pools, {len(truths)}")
    shares: dict[str, list[float]] = {s: [] for s in (*SOURCES, "union")}
    for pool, truth in zip(pools, truths):
        truth = set(map(str, truth))
        if not truth:
            raise ValueError("a truth is empty")
        hit = np.array([s in truth for s in pool.song_ids], dtype=bool)
        shares["union"].append(hit.sum() / len(truth))
        for source in SOURCES:
            shares[source].append((hit & pool.proposed[source]).sum() / len(truth))
    out = {name: float(np.mean(values)) for name, values in shares.items()}
    out["mean_pool_size"] = float(np.mean([len(p) for p in pools]))
    return out


__all__ = [
    "ABSENT",
    "CLASSICAL_SOURCES",
    "ColdNeighbours",
    "SOURCES",
    "unit_centroid",
    "CandidateSources",
    "PoolConfig",
    "QueryPool",
    "build_pool",
    "build_pools",
    "check_not_in_training",
    "crossfit_pool_songs",
    "recall_ceiling",
]
