"""The whole recommender: text -> TIGER candidates (optionally united with a classical recommender's) ->
ranker -> top-K.

Final score of a candidate (``final_scores``, the one definition: serving, weight tuning and the ranker benchmark
all rank with it) = ranker logit + ``popularity_weight`` * log(1 + train popularity)
+ ``classical_weight`` * (classical score / its max over the candidates); equal scores rank the more popular song
first (``final_order``). The generator and ranker do not learn
the popularity prior well on small data (docs/findings.md), and title-kNN + co-occurrence is the strongest classical
signal (docs/benchmark.md); both weights are chosen on the validation split by the evaluation
(``ml.evaluation.procedure.tune_weights`` over ``component_scores``, ranked by ``rank_with_weights``) and saved with
the recommender. With ``candidate_source="generator"`` and both weights 0 this is plain generate-and-rank.
"""
from __future__ import annotations

import json
import logging
import time
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from genrank_assets.ml.checks import check_k
from genrank_assets.ml.ranking.cross_encoder.model import song_text

if TYPE_CHECKING:
    from genrank_assets.ml.serving.explain import Explanation

log = logging.getLogger(__name__)

CANDIDATE_SOURCES = ("generator", "hybrid")


@dataclass
class RecommenderConfig:
    n_candidates: int = 100
    candidate_source: str = "generator"  # generator | hybrid (generator ∪ classical top-N)
    popularity_weight: float = 0.0
    classical_weight: float = 0.0  # needs the classical recommender (hybrid)
    num_beams: int | None = None  # None: the generator's own setting
    knn_candidates: int = 100

    def __post_init__(self) -> None:
        if self.candidate_source not in CANDIDATE_SOURCES:
            raise ValueError(f"candidate_source must be one of {CANDIDATE_SOURCES}, got {self.candidate_source!r}")
        if self.n_candidates < 1:
            raise ValueError(f"n_candidates must be >= 1, got {self.n_candidates}")


@dataclass
class Recommendation:
    rank: int
    song_id: str
    name: str
    singer: str
    score: float

    def __str__(self) -> str:
        return f"{self.rank}. {self.name} - {self.singer} (ID: {self.song_id})"


@dataclass
class StageTimes:
    """Milliseconds per query of each stage, one entry per query (rank: per ranked candidate list)."""

    generate_ms: list[float] = field(default_factory=list)
    knn_ms: list[float] = field(default_factory=list)
    rank_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)

    def medians(self) -> dict[str, float]:
        """Median ms per query of the stages that ran: generate, classical (the kNN scores), rank."""
        return stage_medians({"generate": self.generate_ms, "classical": self.knn_ms, "rank": self.rank_ms})


def stage_medians(stages: dict[str, list[float]]) -> dict[str, float]:
    """Median ms per query of each stage that ran (a stage with no timings is left out)."""
    return {name: float(np.median(ms)) for name, ms in stages.items() if ms}


@dataclass
class ScoreParts:
    """The parts of candidates' final scores (``final_scores``): ranker logits, log(1 + train popularity), the
    max-normalised classical scores (None when the classical weight is 0: not computed) and the final scores."""

    logits: np.ndarray
    log_popularity: np.ndarray
    classical: np.ndarray | None
    final: np.ndarray


def final_scores(logits: np.ndarray, log_popularity: np.ndarray, popularity_weight: float,
                 classical_weight: float = 0.0, classical: np.ndarray | None = None) -> np.ndarray:
    """The final score of candidates: ranker logit + popularity_weight * log(1 + train popularity)
    + classical_weight * (classical score / its max over the candidates). ``classical`` is read only when its
    weight is non-zero, so callers may skip computing it."""
    scores = logits + popularity_weight * log_popularity
    if classical_weight:
        scores = scores + classical_weight * classical
    return scores


def final_order(scores: np.ndarray, log_popularity: np.ndarray) -> np.ndarray:
    """Candidate indices best first by final score; equal scores: the more popular song, then the given order."""
    return np.lexsort((-log_popularity, -scores))


class ServedRecommender:
    """What every served recommender shares: the query checks, ``recommend`` through ``recommend_many``, and
    ``explain``. A subclass implements ``_recommend_many(texts, k)`` and ``_explain(text, k)`` on checked input."""

    def recommend(self, text: str, k: int = 10) -> list[Recommendation]:
        return self.recommend_many([text], k)[0]

    def recommend_many(self, texts: Sequence[str], k: int = 10) -> list[list[Recommendation]]:
        return self._recommend_many([check_text(t) for t in texts], check_k(k))

    def explain(self, text: str, k: int = 10):
        """``recommend(text, k)`` with, per song, why: the sources that proposed it and the parts of its score;
        the order is the recommended order."""
        return self._explain(check_text(text), check_k(k))


class Recommender(ServedRecommender):
    def __init__(self, generator, ranker, song_vectors, song_info: dict[str, tuple[str, str]],
                 config: RecommenderConfig | None = None, knn=None):
        self.generator = generator
        self.ranker = ranker
        self.song_vectors = song_vectors
        self.song_info = song_info
        self.config = config or RecommenderConfig()
        self.knn = knn
        self._check_knn(self.config)
        table = generator.code_table
        pop = dict(zip(table.song_ids, table.popularity))
        self.log_popularity = np.log1p(np.array([pop.get(s, 0.0) for s in song_vectors.song_ids], dtype=np.float64))
        # Fallback when the candidates hold fewer than k songs: the most popular songs that can be scored.
        self._popular = np.argsort(-self.log_popularity, kind="stable")
        self._times = StageTimes()
        self._classical: dict[str, np.ndarray] = {}  # text -> classical score row, between candidates and ranking
        self._proposals: dict[str, tuple] = {}  # text -> (generator's list, classical top-N or None), for explain

    def _check_knn(self, config: RecommenderConfig) -> None:
        if (config.candidate_source == "hybrid" or config.classical_weight) and self.knn is None:
            raise ValueError("candidate_source='hybrid' / classical_weight need a fitted classical recommender (knn=...)")

    def set_weights(self, popularity_weight: float, classical_weight: float) -> None:
        """The weights of the final score (chosen on the validation split); candidates stay as configured."""
        config = replace(self.config, popularity_weight=popularity_weight, classical_weight=classical_weight)
        self._check_knn(config)
        self.config = config

    def describe(self) -> dict:
        """What this recommender serves (for `genrank recommend --json` and the report)."""
        return {"method": "generate_and_rank", **asdict(self.config)}

    @property
    def stage_times(self) -> StageTimes:
        """Per-query stage timings of every call since construction or ``reset_stage_times``."""
        return self._times

    def reset_stage_times(self) -> None:
        self._times = StageTimes()

    # -- candidates -------------------------------------------------------------------------------------------
    def _rows(self, song_ids: Sequence[str]) -> list[int]:
        rows, seen = [], set()
        for s in song_ids:
            r = self.song_vectors.index_of(str(s))
            if r is not None and r not in seen:
                seen.add(r)
                rows.append(r)
        return rows

    def candidate_rows(self, texts: Sequence[str], k: int) -> list[list[int]]:
        """Rows of candidate songs per text; also keeps the classical scores for ``rank_rows``."""
        c = self.config
        t0 = time.perf_counter()
        gen = self.generator.generate_candidates_batch(list(texts), n=c.n_candidates, num_beams=c.num_beams)
        t1 = time.perf_counter()
        knn = None
        self._classical = {}
        self._proposals = {}
        if self.knn is not None and (c.candidate_source == "hybrid" or c.classical_weight):
            from genrank_assets.ml.baselines.classical import top_k_indices

            matrix = self.knn.score_matrix(list(texts))
            ids = self.knn.catalogue.song_ids
            knn = []
            for text, row in zip(texts, matrix):
                self._classical[text] = row
                knn.append([ids[j] for j in top_k_indices(row, c.knn_candidates)] if c.candidate_source == "hybrid" else [])
        t2 = time.perf_counter()
        per_query_gen = (t1 - t0) * 1000 / max(1, len(texts))
        per_query_knn = (t2 - t1) * 1000 / max(1, len(texts))
        out = []
        for i in range(len(texts)):
            self._proposals[texts[i]] = (gen[i], knn[i] if knn is not None else None)
            ids = list(gen[i]) + (list(knn[i]) if knn is not None else [])
            rows = self._rows(ids)
            if len(rows) < k:
                have = set(rows)
                rows += [int(r) for r in self._popular[: k + len(rows)] if int(r) not in have][: k - len(rows)]
            out.append(rows)
            self._times.generate_ms.append(per_query_gen)
            if knn is not None:  # a system without the classical stage has no time for it
                self._times.knn_ms.append(per_query_knn)
        return out

    # -- ranking ----------------------------------------------------------------------------------------------
    def rank_rows(self, text: str, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(rows sorted best first, their final scores)."""
        order, parts = self.ranked_parts(text, rows)
        return np.asarray(rows)[order], parts.final[order]

    def ranked_parts(self, text: str, rows: list[int]) -> tuple[np.ndarray, ScoreParts]:
        """(the order of ``rows`` best first, the parts of their final scores in the given order)."""
        t0 = time.perf_counter()
        c = self.config
        log_popularity = self.log_popularity[rows]
        classical = self.classical_scores(text, rows) if c.classical_weight else None
        logits = self.ranker_logits(text, rows)
        scores = final_scores(logits, log_popularity, c.popularity_weight, c.classical_weight, classical)
        order = final_order(scores, log_popularity)
        self._times.rank_ms.append((time.perf_counter() - t0) * 1000)
        return order, ScoreParts(logits, log_popularity, classical, scores)

    def classical_scores(self, text: str, rows: list[int]) -> np.ndarray:
        """The classical recommender's scores of the candidates, divided by their max (0 when none scored)."""
        row = self._classical.get(text)
        if row is None:
            row = self.knn.score_matrix([text])[0]
        idx = self.knn.catalogue.indices_of([self.song_vectors.song_ids[r] for r in rows])
        vals = np.where(idx >= 0, row[np.maximum(idx, 0)], 0.0).astype(np.float64)
        top = vals.max() if len(vals) else 0.0
        return vals / top if top > 0 else vals

    def ranker_logits(self, text: str, rows: list[int]) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        clean = self.generator.encoder.clean(text)
        song_texts = None
        if self.ranker.config.use_song_text:
            song_texts = [self._song_text(self.song_vectors.song_ids[r]) for r in rows]
        return np.asarray(self.ranker.score(clean, self.song_vectors.vectors[rows], song_texts), dtype=np.float64)

    def _song_text(self, song_id: str) -> str:
        return song_text(*self.song_info.get(song_id, ("", "")))

    # -- public: recommend / recommend_many / explain come from ServedRecommender -----------------------------
    def _recommend_many(self, texts: list[str], k: int) -> list[list[Recommendation]]:
        out = []
        for start in range(0, len(texts), 32):  # chunks bound the memory of classical score rows
            chunk = texts[start:start + 32]
            t0 = time.perf_counter()
            for text, rows in zip(chunk, self.candidate_rows(chunk, k)):
                ranked, scores = self.rank_rows(text, rows)
                recs = []
                for i, (r, sc) in enumerate(zip(ranked[:k], scores[:k]), start=1):
                    sid = self.song_vectors.song_ids[int(r)]
                    name, singer = self.song_info.get(sid, ("", ""))
                    recs.append(Recommendation(i, sid, name, singer, float(sc)))
                out.append(recs)
            self._times.total_ms.extend([(time.perf_counter() - t0) * 1000 / len(chunk)] * len(chunk))
            self._classical = {}
        return out

    def _explain(self, text: str, k: int) -> list[Explanation]:
        """Per song, the candidate sources that proposed it and the parts of its final score (same candidates,
        same ranking code: the order is the recommended order)."""
        from genrank_assets.ml.serving.explain import explain_ranked

        t0 = time.perf_counter()
        rows = self.candidate_rows([text], k)[0]
        order, parts = self.ranked_parts(text, rows)
        out = explain_ranked(self, rows, order[:k], parts, self._proposals.get(text, ([], None)))
        self._times.total_ms.append((time.perf_counter() - t0) * 1000)
        self._classical, self._proposals = {}, {}
        return out

    def component_scores(self, texts: Sequence[str], k: int = 100) -> ComponentScores:
        """Candidates of each text (as ``recommend_many(texts, k)`` ranks them) with the three parts of their final
        score, to try weights without scoring again. The classical part is zero without a classical recommender."""
        out = ComponentScores([], [], [], [])
        for start in range(0, len(texts), 32):
            chunk = list(texts[start:start + 32])
            for text, rows in zip(chunk, self.candidate_rows(chunk, k)):
                out.song_ids.append([self.song_vectors.song_ids[r] for r in rows])
                out.logits.append(self.ranker_logits(text, rows))
                out.log_popularity.append(self.log_popularity[rows])
                out.classical.append(self.classical_scores(text, rows) if self.knn is not None else np.zeros(len(rows)))
            self._classical = {}
        return out


def check_text(text) -> str:
    """The query as given; a ValueError when it is not a string or holds nothing but whitespace and control
    or format characters (a query of `\\x01\\x02` would otherwise get generic popular songs)."""
    if not isinstance(text, str):
        raise ValueError(f"query text must be a string, got {type(text).__name__}")
    if all(c.isspace() or unicodedata.category(c).startswith("C") for c in text):
        raise ValueError("query text is empty: type a playlist title or a mood, e.g. '适合深夜听的抒情歌曲'")
    return text


# -- persistence ----------------------------------------------------------------------------------------------

def save_song_side(directory, song_vectors, raw_songs: pd.DataFrame | None, cold_songs=()) -> Path:
    """Song vectors and name/singer of every vectored song, as plain files (npz + json), and the songs whose
    vectors are cold-start predictions (``cold_start.json``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "song_vectors.npz", song_ids=np.asarray(song_vectors.song_ids).astype(str),
             counts=song_vectors.counts, vectors=song_vectors.vectors)
    info = {}
    if raw_songs is not None and len(raw_songs):
        known = raw_songs.drop_duplicates("song_id").set_index("song_id")
        names, singers = known["song_name"].to_dict(), known["singer"].to_dict()
        info = {s: [str(names.get(s, "")), str(singers.get(s, ""))] for s in song_vectors.song_ids}
    (directory / "song_info.json").write_text(json.dumps(info, ensure_ascii=False))
    (directory / "cold_start.json").write_text(json.dumps(sorted(map(str, cold_songs))))
    return directory


def load_cold_songs(directory) -> frozenset[str]:
    """The cold-start songs ``save_song_side`` recorded (none for a song side saved without the catalogue)."""
    path = Path(directory) / "cold_start.json"
    return frozenset(json.loads(path.read_text())) if path.is_file() else frozenset()


def load_song_side(directory):
    from genrank_assets.ml.vectors.song_vectors import SongVectors

    directory = Path(directory)
    data = np.load(directory / "song_vectors.npz", allow_pickle=False)
    sv = SongVectors([str(s) for s in data["song_ids"]], data["counts"], data["vectors"])
    info = {k: (v[0], v[1]) for k, v in json.loads((directory / "song_info.json").read_text()).items()}
    return sv, info


def save_knn_corpus(directory, corpus: pd.DataFrame) -> Path:
    """Train titles and songs, enough to refit the title-kNN when a hybrid recommender loads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train = corpus[corpus["split"] == "train"]
    payload = {"playlist_id": train["playlist_id"].astype(str).tolist(), "title": train["title"].astype(str).tolist(),
               "song_ids": [list(map(str, s)) for s in train["song_ids"]]}
    (directory / "knn_corpus.json").write_text(json.dumps(payload, ensure_ascii=False))
    return directory


def load_train_corpus(directory) -> pd.DataFrame:
    """The train corpus ``save_knn_corpus`` saved (tags empty: no classical model reads them)."""
    payload = json.loads((Path(directory) / "knn_corpus.json").read_text())
    return pd.DataFrame({**payload, "tags": "", "split": "train"})


def load_knn(directory):
    """Refit the classical recommender (tuned title-kNN + co-occurrence walk) on the saved train corpus."""
    from genrank_assets.ml.baselines.classical import knn_cooccurrence

    return knn_cooccurrence().fit(load_train_corpus(directory))


LTR_METHOD = "ltr"  # recommender.json of a learning-to-rank recommender: {"method": "ltr"} (its ranker says the rest)
# The classical systems that can be served (``ml/serving/classical_recommender.py``), simplest first.
CLASSICAL_METHODS = ("popularity", "title_knn", "knn_cooccurrence", "kernel_ridge_cooccurrence")


@dataclass(frozen=True)
class ClassicalConfig:
    """What a classical bundle's ``recommender.json`` says: which system (the rest is its fixed recipe)."""

    method: str

    def __post_init__(self) -> None:
        if self.method not in CLASSICAL_METHODS:
            raise ValueError(f"a classical system is one of {CLASSICAL_METHODS}, got {self.method!r}")


def save_recommender_config(directory, config: RecommenderConfig | ClassicalConfig | None) -> Path:
    """``config`` of a generate-and-rank or a classical recommender, or None for a learning-to-rank one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"method": LTR_METHOD} if config is None else asdict(config)
    (directory / "recommender.json").write_text(json.dumps(payload))
    return directory


def load_recommender_config(directory) -> RecommenderConfig | ClassicalConfig | None:
    """The saved RecommenderConfig, or ClassicalConfig; None for a learning-to-rank recommender."""
    payload = json.loads((Path(directory) / "recommender.json").read_text())
    if payload.get("method") == LTR_METHOD:
        return None
    return ClassicalConfig(**payload) if "method" in payload else RecommenderConfig(**payload)


# -- weight tuning --------------------------------------------------------------------------------------------

@dataclass
class ComponentScores:
    """Per query: candidate song ids and the three score components, to try weights without re-scoring.

    ``tail``: per query, songs that follow the scored candidates in their given order whatever the weights
    (e.g. candidates without a song vector); empty by default."""

    song_ids: list[list[str]]
    logits: list[np.ndarray]
    log_popularity: list[np.ndarray]
    classical: list[np.ndarray]
    tail: list[list[str]] | None = None


def rank_with_weights(cs: ComponentScores, popularity_weight: float, classical_weight: float,
                      k: int | None) -> list[list[str]]:
    """Each query's candidates by ``final_scores`` with these weights, then its tail; the top k (None: all)."""
    ranked = []
    tails = cs.tail if cs.tail is not None else [[] for _ in cs.song_ids]
    for ids, lg, lp, cl, tail in zip(cs.song_ids, cs.logits, cs.log_popularity, cs.classical, tails):
        order = final_order(final_scores(lg, lp, popularity_weight, classical_weight, cl), lp)
        ranked.append(([ids[i] for i in order] + list(tail))[:k])
    return ranked
