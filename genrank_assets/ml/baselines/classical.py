"""Classical title-to-songs baselines of docs/benchmark.md, fitted on the TRAIN playlists of a corpus.

A corpus is the shared DataFrame (playlist_id, title, tags, song_ids, split); only rows with split == "train"
reach ``fit``. Every recommender scores the whole train catalogue (every song of a train playlist) for a
query title and returns song ids best first. Equal scores are broken by train popularity (the number of
train playlists holding the song; then song id, for determinism): songs are indexed in that order, so
"lower index wins" is the tie rule everywhere and popularity fills the list once the evidence runs out.

Recommenders:
- ``PopularityRecommender``: the same list for every query.
- ``TitleKNNRecommender``: TF-IDF over titles, nearest train playlists, each song scores the sum of its
  playlists' (possibly squared) cosine similarities; optional popularity blend. Its defaults are the reference
  row of docs/benchmark.md as written; ``reference_title_knn()`` is the variant that reproduces the reference
  figures (equal kNN scores ordered by song id, see its docstring); ``tuned_title_knn()`` builds the tuned
  row.
- ``KernelRidgeRecommender``: dual ridge regression from title TF-IDF to song indicators (kernel cos^p).
- ``CoOccurrenceRecommender``: a base recommender's top songs walk to the train playlists holding them and on
  to those playlists' songs (two-hop item walk); ``knn_cooccurrence()`` builds the docs/benchmark.md row.

Two computations of the same scores: ``score_matrix`` builds dense rows over the whole catalogue (evaluation
grids, and the reference); the serving path (``recommend``, ``score_candidates``, ``evidence``, the LTR pool)
scores a query by its evidence (``EvidenceScores``: the songs its neighbour playlists and the co-occurrence walk
vote for; every other song scores 0 or the popularity term, so the popularity head covers them), with bitwise the
same values and the same top k (genrank_assets_tests/ml/baselines/test_evidence.py), its work following the
evidence. Where the evidence is most of the catalogue (the tuned kNN: every train title shares a character
n-gram with nearly every query), or holds over 1/40 of its playlist-song pairs (the walk of popular seeds), the
dense product is the cheaper and is used (benchmarks/serving_cost.py).
"""
from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from genrank_assets.ml.checks import check_k
from genrank_assets.ml.data.corpus import HOLDOUT, SPLITS, train_popularity

log = logging.getLogger(__name__)

CORPUS_COLUMNS = ("playlist_id", "title", "song_ids", "split")
# Dense score rows per chunk are (chunk, n_songs) float64; this bounds one chunk to ~64 MB.
_CHUNK_CELLS = 8_000_000


# ----------------------------------------------------------------------------------------------- corpus
def check_corpus(corpus_df: pd.DataFrame) -> None:
    """Raise ValueError naming the first missing column or bad split value."""
    if not isinstance(corpus_df, pd.DataFrame):
        raise ValueError(f"corpus_df must be a pandas DataFrame, got {type(corpus_df).__name__}")
    for column in CORPUS_COLUMNS:
        if column not in corpus_df.columns:
            raise ValueError(f"corpus_df: missing column {column!r} (needs {list(CORPUS_COLUMNS)})")
    bad = set(corpus_df["split"].unique()) - {*SPLITS, HOLDOUT}
    if bad:
        raise ValueError(f"corpus_df['split']: unknown values {sorted(map(str, bad))[:5]}")


def train_playlists(corpus_df: pd.DataFrame) -> pd.DataFrame:
    check_corpus(corpus_df)
    train = corpus_df[corpus_df["split"] == "train"]
    if len(train) == 0:
        raise ValueError("corpus_df: no playlist with split == 'train'")
    return train.reset_index(drop=True)


def benchmark_queries(
    corpus_df: pd.DataFrame, split: str = "test"
) -> tuple[list[str], list[str], dict[str, set[str]]]:
    """The protocol's queries: every ``split`` playlist with a non-empty title (whitespace-only counts as
    empty) and at least one song. Query = the title exactly as stored; truth = its set of distinct songs.

    Returns (qids, texts, truths) with ``truths[qid]``; qids follow the corpus row order.
    """
    check_corpus(corpus_df)
    if split not in (*SPLITS, HOLDOUT):
        raise ValueError(f"split must be one of {(*SPLITS, HOLDOUT)}, got {split!r}")
    rows = corpus_df[corpus_df["split"] == split]
    qids, texts, truths = [], [], {}
    n_untitled = n_empty = 0
    for pid, title, songs in zip(rows["playlist_id"], rows["title"], rows["song_ids"]):
        if not isinstance(title, str) or not title.strip():
            n_untitled += 1
            continue
        if len(songs) == 0:
            n_empty += 1
            continue
        qids.append(str(pid))
        texts.append(title)
        truths[str(pid)] = set(map(str, songs))
    log.info("%d %s queries (%d without title, %d without songs skipped)", len(qids), split, n_untitled, n_empty)
    return qids, texts, truths


def normalize_title(text: str) -> str:
    """NFKC, lowercase, punctuation and emoji replaced by spaces, whitespace collapsed (tuned kNN's input)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


class SongCatalogue:
    """Train songs in popularity order, and the binary train-playlist x song matrix.

    ``song_ids[i]`` is the i-th most popular song (popularity = number of distinct train playlists holding
    it; ties by song id), so a lower index always means "more popular".
    """

    def __init__(self, train_df: pd.DataFrame):
        """``train_df``: the train playlists of a corpus (``train_playlists``)."""
        song_lists = [list(dict.fromkeys(map(str, songs))) for songs in train_df["song_ids"]]
        counts = train_popularity(train_df)
        self.song_ids: list[str] = sorted(counts, key=lambda s: (-counts[s], s))
        self.index = {s: i for i, s in enumerate(self.song_ids)}
        self.counts = np.array([counts[s] for s in self.song_ids], dtype=np.int64)
        rows = np.repeat(np.arange(len(song_lists)), [len(s) for s in song_lists])
        cols = np.fromiter((self.index[s] for songs in song_lists for s in songs), dtype=np.int64, count=len(rows))
        # playlists: (n_train_playlists, n_songs) 0/1 csr; column sums equal counts
        self.playlists = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(song_lists), len(self.song_ids))
        )
        self._playlists_t = self.playlists.T.tocsr()  # (n_songs, n_train): fast dense products below
        log.info("catalogue: %d train playlists, %d songs, %d playlist-song pairs",
                 len(song_lists), len(self.song_ids), len(rows))

    def __len__(self) -> int:
        return len(self.song_ids)

    def songs_from_playlists(self, weights: np.ndarray) -> np.ndarray:
        """weights (n_rows, n_train) dense -> (n_rows, n_songs) = weights @ playlists, C-contiguous.

        (scipy's dense @ sparse returns a Fortran-ordered array, whose rows are slow to rank.)"""
        return np.ascontiguousarray((self._playlists_t @ np.asarray(weights).T).T)

    def playlists_from_songs(self, weights: sp.csr_matrix) -> np.ndarray:
        """sparse song weights (n_rows, n_songs) -> dense (n_rows, n_train) = weights @ playlists.T."""
        return (sp.csr_matrix(weights) @ self._playlists_t).toarray()

    def songs_of_playlists(self, rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """``songs_from_playlists`` of one weight row that is nonzero on train playlists ``rows`` only (ascending),
        by its evidence: (the songs of those playlists ascending, their summed weights), bitwise the dense
        product's values there (each song's terms are added in the same, ascending playlist, order); songs left
        out score 0.0. When those playlists hold more than 1/``_GATHER_SHARE`` of the catalogue's playlist-song
        pairs, the dense product is the cheaper one (one sequential pass over the pairs costs ~1/40 of gathering
        a pair, measured on mpd7k): then (None, the dense row)."""
        return _gather(self.playlists, self._playlists_t, rows, weights)

    def playlists_of_songs(self, cols: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """``playlists_from_songs`` of one weight row nonzero on songs ``cols`` only (ascending), likewise."""
        return _gather(self._playlists_t, self.playlists, cols, weights)

    def indices_of(self, song_ids: Sequence[str]) -> np.ndarray:
        """Catalogue index of each id, -1 for songs outside the train catalogue."""
        return np.array([self.index.get(str(s), -1) for s in song_ids], dtype=np.int64)


_GATHER_SHARE = 40


def _gather(matrix: sp.csr_matrix, transposed: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray
            ) -> tuple[np.ndarray | None, np.ndarray]:
    """``weights @ matrix[rows]`` for ascending ``rows`` (``transposed`` = matrix.T as csr). Sparse: (the columns
    those rows hold, ascending, without those whose sum is 0.0; their sums), each column's terms added in
    ascending row order (np.bincount adds in input order), the order of the dense ``transposed @ w`` (scipy's
    csr matvec), so the sums are bitwise its. Work and memory follow the rows' entries. Rows holding at least
    1/``_GATHER_SHARE`` of the matrix's entries: (None, the dense product)."""
    rows = np.asarray(rows, dtype=np.int64)
    start = matrix.indptr[rows]
    length = matrix.indptr[rows + 1] - start
    total = int(length.sum())
    if total * _GATHER_SHARE >= matrix.nnz:
        dense = np.zeros(matrix.shape[0], dtype=np.float64)
        dense[rows] = weights
        return None, transposed @ dense
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    offsets = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(total)
    values = np.repeat(np.asarray(weights, dtype=np.float64), length) * matrix.data[offsets]
    cols, inverse = np.unique(matrix.indices[offsets], return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=values, minlength=len(cols))
    kept = sums != 0
    return cols[kept].astype(np.int64), sums[kept]


# ------------------------------------------------------------------------------------------- ranking
def _top_k_exact(scores: np.ndarray, k: int) -> np.ndarray:
    """top_k_indices by a full selection over ``scores`` (the reference implementation)."""
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    threshold = scores[part].min()
    above = np.flatnonzero(scores > threshold)
    tied = np.flatnonzero(scores == threshold)[: k - len(above)]
    chosen = np.concatenate([above, tied])  # each part ascending, so the stable sort keeps low index first
    return chosen[np.argsort(-scores[chosen], kind="stable")]


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first; equal scores go to the lower index.

    Fast path for long rows: the k-th largest score of a prefix is a lower bound ``floor`` on the k-th largest
    overall, so the top k lie among the (usually few) entries >= floor. When fewer than k entries beat the
    floor, the rest are the floor's ties in index order; this also handles rows that are mostly zeros.
    """
    scores = np.asarray(scores)
    n = len(scores)
    prefix = max(4 * k, 1024)
    if k >= n or prefix >= n:
        return _top_k_exact(scores, k)
    floor = np.partition(scores[:prefix], prefix - k)[prefix - k]
    above = np.flatnonzero(scores > floor)
    if len(above) >= k:
        return above[_top_k_exact(scores[above], k)]
    tied = np.flatnonzero(scores == floor)[: k - len(above)]
    head = above[np.argsort(-scores[above], kind="stable")]
    return np.concatenate([head, tied])


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, got one string (use recommend for one query)")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a str, got {type(text).__name__}")
    return texts


def _max_normalise_rows_(matrix: np.ndarray) -> np.ndarray:
    """Divide each row by its maximum, in place (rows whose maximum is <= 0 stay as they are)."""
    peak = matrix.max(axis=1, keepdims=True)
    matrix /= np.where(peak > 0, peak, 1.0)
    return matrix


def _rank_votes(votes: sp.csr_matrix, tie_rank: np.ndarray, k: int) -> list[np.ndarray]:
    """Per row of a sparse vote matrix: voted songs by score (equal scores: lower ``tie_rank`` first), then
    the unvoted songs in catalogue (= popularity) order until k."""
    ranked = []
    for r in range(votes.shape[0]):
        cols = votes.indices[votes.indptr[r]:votes.indptr[r + 1]]
        vals = votes.data[votes.indptr[r]:votes.indptr[r + 1]]
        cols, vals = cols[vals > 0], vals[vals > 0]
        voted = cols[np.lexsort((tie_rank[cols], -vals))][:k]
        # the first (k - len(voted)) unvoted songs lie in range(k + len(cols))
        fill = np.setdiff1d(np.arange(min(votes.shape[1], k + len(cols))), cols, assume_unique=True)
        ranked.append(np.concatenate([voted, fill[: k - len(voted)]]))
    return ranked


# Evidence rows denser than this share of the catalogue are ranked as a dense row (top_k_indices' fast path
# beats sorting most of the catalogue).
_DENSE_SHARE = 0.25


class EvidenceScores:
    """One query's scores over the ``n`` songs of a catalogue, held by its evidence: the songs ``idx``
    (ascending) score ``vals``; every other song i scores ``fill(i)`` (0.0 when ``fill`` is None), which must not
    increase with i (the catalogue is in popularity order: the fill is a popularity term or nothing). With
    ``idx`` None, ``vals`` is the dense row of every song (sources whose evidence is the whole catalogue, such
    as the tuned kNN). Exact: every value is bitwise the dense ``score_matrix`` row's, and ``top_k`` is
    ``top_k_indices`` of that row (equal scores: lower index), while its work follows the evidence.
    """

    __slots__ = ("n", "idx", "vals", "fill")

    def __init__(self, n: int, idx: np.ndarray | None, vals: np.ndarray, fill=None):
        self.n, self.idx, self.vals, self.fill = int(n), idx, np.asarray(vals, dtype=np.float64), fill

    @classmethod
    def dense(cls, row: np.ndarray) -> EvidenceScores:
        return cls(len(row), None, row)

    @property
    def is_dense(self) -> bool:
        return self.idx is None

    def fill_at(self, rows: np.ndarray) -> np.ndarray:
        return np.zeros(len(rows)) if self.fill is None else np.asarray(self.fill(rows), dtype=np.float64)

    def at(self, rows: np.ndarray) -> np.ndarray:
        """Scores of catalogue rows ``rows`` (each in [0, n))."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.idx is None:
            return self.vals[rows]
        pos = np.minimum(np.searchsorted(self.idx, rows), max(len(self.idx) - 1, 0))
        hit = self.idx[pos] == rows if len(self.idx) else np.zeros(len(rows), dtype=bool)
        out = self.fill_at(rows)
        out[hit] = self.vals[pos[hit]]
        return out

    def first_outside(self) -> int | None:
        """The lowest song without evidence (the best of the fill), None when every song has evidence."""
        if self.idx is None or len(self.idx) >= self.n:
            return None
        gap = np.flatnonzero(self.idx != np.arange(len(self.idx)))
        return int(gap[0]) if len(gap) else len(self.idx)

    def peak(self) -> float:
        """The row's maximum (of the evidence and of the fill's best song)."""
        best = float(self.vals.max()) if len(self.vals) else -np.inf
        first = self.first_outside()
        return best if first is None else max(best, float(self.fill_at(np.array([first]))[0]))

    def normalised(self) -> EvidenceScores:
        """``_max_normalise_rows_`` of the row: divided by its maximum when that is > 0."""
        peak = self.peak()
        div = peak if peak > 0 else 1.0
        fill = None if self.fill is None else (lambda rows, f=self.fill: f(rows) / div)
        return EvidenceScores(self.n, self.idx, self.vals / div, fill)

    def to_dense(self) -> np.ndarray:
        if self.idx is None:
            return self.vals.copy()
        row = self.fill_at(np.arange(self.n))
        row[self.idx] = self.vals
        return row

    def top_k(self, k: int) -> np.ndarray:
        """``top_k_indices`` of the dense row: the k best, equal scores to the lower index. A song without
        evidence can only enter through the fill, whose best are the lowest rows without evidence: the first k of
        them (all in range(k + len(idx))) join the evidence as candidates."""
        k = min(int(k), self.n)
        if self.idx is None or len(self.idx) > _DENSE_SHARE * self.n:
            return top_k_indices(self.vals if self.idx is None else self.to_dense(), k)
        head = np.setdiff1d(np.arange(min(self.n, k + len(self.idx))), self.idx, assume_unique=True)[:k]
        cand = np.concatenate([self.idx, head])
        score = np.concatenate([self.vals, self.fill_at(head)])
        if len(cand) > 4 * k:  # keep only what reaches the k-th best score (all of its ties)
            keep = score >= score[np.argpartition(-score, k - 1)[k - 1]]
            cand, score = cand[keep], score[keep]
        return cand[np.lexsort((cand, -score))[:k]]


def _merge(*parts: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sorted union of ascending unique index arrays and each one's positions in it, in time linear in their
    lengths (a stable sort of sorted runs is a merge)."""
    joined = np.concatenate(parts)
    order = np.argsort(joined, kind="stable")
    ordered = joined[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    position = np.empty(len(joined), dtype=np.int64)
    position[order] = np.cumsum(first) - 1
    bounds = np.cumsum([0, *map(len, parts)])
    return ordered[first], [position[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class Recommender:
    """Common interface. Subclasses implement ``_fit(train_df)`` and ``_score_matrix(texts)``, which returns
    dense scores (len(texts), n_songs) over ``self.catalogue``, higher is better; equal scores rank the more
    popular song first (``score_matrix`` is its public, checked form). ``_rank_chunk`` and ``evidence`` (one
    query's row as ``EvidenceScores``) may be overridden with faster exact equivalents."""

    catalogue: SongCatalogue | None = None

    def fit(self, corpus_df: pd.DataFrame) -> Recommender:
        train = train_playlists(corpus_df)
        self.catalogue = SongCatalogue(train)
        self._fit(train)
        return self

    def _fit(self, train_df: pd.DataFrame) -> None:  # pragma: no cover - trivial default
        pass

    def _score_matrix(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def evidence(self, text: str) -> EvidenceScores:
        """One query's scores as ``EvidenceScores`` (exactly the ``score_matrix`` row): the serving path.
        Default: the dense row; sources with sparse evidence override it."""
        self._require_fit()
        return EvidenceScores.dense(self._score_matrix([text])[0])

    def _require_fit(self) -> SongCatalogue:
        if self.catalogue is None:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(corpus_df) first")
        return self.catalogue

    def _chunks(self, texts: list[str]):
        size = max(1, _CHUNK_CELLS // max(1, len(self._require_fit())))
        for start in range(0, len(texts), size):
            yield texts[start:start + size]

    def _rank_chunk(self, texts: list[str], k: int) -> list[np.ndarray]:
        """Catalogue indices of the top k songs for each text."""
        return [top_k_indices(row, k) for row in self._score_matrix(texts)]

    def recommend_many(self, texts: Sequence[str], k: int) -> list[list[str]]:
        """Top-k song ids for each text, best first (at most the catalogue size)."""
        k = check_k(k)
        texts = _check_texts(texts)
        catalogue = self._require_fit()
        ranked: list[list[str]] = []
        for chunk in self._chunks(texts):
            for indices in self._rank_chunk(chunk, k):
                ranked.append([catalogue.song_ids[i] for i in indices])
        return ranked

    def recommend(self, text: str, k: int) -> list[str]:
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        return self.recommend_many([text], k)[0]

    def score_matrix(self, texts: Sequence[str]) -> np.ndarray:
        """Dense scores (len(texts), len(catalogue)) of every train song for each text, higher is better; column
        j is ``catalogue.song_ids[j]``. For a few texts at a time: each row holds the whole catalogue."""
        self._require_fit()
        return self._score_matrix(_check_texts(texts))

    def score_candidates(self, text: str, song_ids: Sequence[str]) -> np.ndarray:
        """The recommender's score of each song for ``text`` (float64, aligned with ``song_ids``). Songs
        outside the train catalogue score 0.0 (no evidence; every method here except kernel ridge scores
        >= 0)."""
        catalogue = self._require_fit()
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        idx = catalogue.indices_of(song_ids)
        return np.where(idx >= 0, self.evidence(text).at(np.maximum(idx, 0)), 0.0)


class PopularityRecommender(Recommender):
    """Most train playlists first (distinct songs per playlist counted), the same list for every query."""

    def _score_matrix(self, texts: list[str]) -> np.ndarray:
        counts = self._require_fit().counts.astype(np.float64)
        return np.tile(counts, (len(texts), 1))

    def _rank_chunk(self, texts: list[str], k: int) -> list[np.ndarray]:
        top = np.arange(min(k, len(self._require_fit())))  # the catalogue is in popularity order
        return [top] * len(texts)

    def evidence(self, text: str) -> EvidenceScores:
        counts = self._require_fit().counts
        return EvidenceScores(len(counts), np.zeros(0, dtype=np.int64), np.zeros(0),
                              lambda rows: counts[rows].astype(np.float64))


def _query_similarities(queries: sp.csr_matrix, titles: sp.csr_matrix) -> np.ndarray:
    """Dense (n_queries, n_titles) dot products for a few query rows: titles (csr) times the queries as a
    dense block is much faster than a sparse x sparse product with a nearly dense result."""
    return np.ascontiguousarray((titles @ queries.T.toarray()).T)


class _TitleTfidf:
    """TF-IDF of titles, l2-normalised (so a dot product is the cosine similarity)."""

    def __init__(self, analyzer: str, ngram_range: tuple[int, int] | None, sublinear_tf: bool,
                 lowercase: bool, normalize_titles: bool):
        if analyzer not in ("char_wb", "char", "word"):
            raise ValueError(f"analyzer must be 'char_wb', 'char' or 'word', got {analyzer!r}")
        if ngram_range is None:
            ngram_range = (1, 1) if analyzer == "word" else (2, 4)
        if len(ngram_range) != 2 or not 1 <= ngram_range[0] <= ngram_range[1]:
            raise ValueError(f"ngram_range must be (min_n, max_n) with 1 <= min_n <= max_n, got {ngram_range!r}")
        self.normalize_titles = normalize_titles
        self.vectorizer = TfidfVectorizer(
            analyzer=analyzer, ngram_range=tuple(ngram_range), sublinear_tf=sublinear_tf, lowercase=lowercase,
            dtype=np.float64,
        )

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        return [normalize_title(t) for t in texts] if self.normalize_titles else list(texts)

    def fit_transform(self, titles: Sequence[str]) -> sp.csr_matrix:
        return self.vectorizer.fit_transform(self._prepare(titles)).tocsr()

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.vectorizer.transform(self._prepare(texts)).tocsr()


class TitleKNNRecommender(Recommender):
    """Title kNN: the ``k_neighbors`` train playlists whose titles are most similar (TF-IDF cosine) vote for
    their songs; a song scores the sum of its voters' similarity ** ``similarity_power``.

    With ``popularity_weight`` w > 0 the score becomes kNN / max(kNN) + w * popularity / max(popularity)
    (both max-normalised per query). Defaults are the docs/benchmark.md reference row; ``ngram_range=None`` means
    (2, 4) for character analyzers and (1, 1) for ``analyzer="word"``. ``k_neighbors=None`` uses every train
    playlist. ``normalize_titles`` applies ``normalize_title`` to titles and queries first.

    ``tie_break`` orders songs the neighbours voted for whose scores are equal: "popularity" (the rule
    docs/benchmark.md states) or "song_id" (ascending id, i.e. arbitrary but fixed; this is what reproduces
    docs/benchmark.md's reference figures, see `python -m benchmarks.baselines`). Songs nobody voted for always follow
    in popularity order (the popularity fill).
    """

    def __init__(
        self,
        analyzer: str = "char_wb",
        ngram_range: tuple[int, int] | None = None,
        k_neighbors: int | None = 50,
        sublinear_tf: bool = True,
        lowercase: bool = True,
        similarity_power: float = 1.0,
        popularity_weight: float = 0.0,
        normalize_titles: bool = False,
        tie_break: str = "popularity",
    ):
        if tie_break not in ("popularity", "song_id"):
            raise ValueError(f"tie_break must be 'popularity' or 'song_id', got {tie_break!r}")
        if tie_break == "song_id" and popularity_weight > 0:
            raise ValueError("tie_break='song_id' needs popularity_weight=0 (a popularity blend scores every song)")
        if k_neighbors is not None:
            check_k(k_neighbors)
        if similarity_power <= 0:
            raise ValueError(f"similarity_power must be positive, got {similarity_power!r}")
        if popularity_weight < 0:
            raise ValueError(f"popularity_weight must be >= 0, got {popularity_weight!r}")
        self.tfidf = _TitleTfidf(analyzer, ngram_range, sublinear_tf, lowercase, normalize_titles)
        self.k_neighbors = k_neighbors
        self.similarity_power = similarity_power
        self.popularity_weight = popularity_weight
        self.tie_break = tie_break

    def _fit(self, train_df: pd.DataFrame) -> None:
        self.title_vectors = self.tfidf.fit_transform(train_df["title"].astype(str).tolist())
        n_songs = len(self.catalogue)
        if self.tie_break == "song_id":  # rank of each song in song-id order
            self._tie_rank = np.empty(n_songs, dtype=np.int64)
            self._tie_rank[np.argsort(np.asarray(self.catalogue.song_ids), kind="stable")] = np.arange(n_songs)
        else:  # catalogue order is popularity order
            self._tie_rank = np.arange(n_songs, dtype=np.int64)
        log.info("title TF-IDF: %d train titles, %d features", *self.title_vectors.shape)

    def neighbour_weights(self, texts: list[str]) -> np.ndarray | sp.csr_matrix:
        """(len(texts), n_train) weights: similarity ** power of the chosen neighbours (0 elsewhere); sparse
        csr when only ``k_neighbors`` neighbours are kept, dense otherwise."""
        self._require_fit()
        sims = _query_similarities(self.tfidf.transform(texts), self.title_vectors)
        if self.similarity_power != 1.0:
            sims **= self.similarity_power  # monotone: the same neighbours either way
        if self.k_neighbors is None:
            return sims
        rows, cols = [], []
        for r, row in enumerate(sims):
            top = top_k_indices(row, self.k_neighbors)  # equal similarities: earlier train row wins
            top = top[row[top] > 0]
            rows.append(np.full(len(top), r))
            cols.append(top)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        return sp.csr_matrix((sims[rows, cols], (rows, cols)), shape=sims.shape)

    def _votes(self, texts: list[str]) -> np.ndarray | sp.csr_matrix:
        """Each song's summed neighbour weight: (len(texts), n_songs), sparse when neighbours are sparse."""
        catalogue = self._require_fit()
        weights = self.neighbour_weights(texts)
        if sp.issparse(weights):
            return weights @ catalogue.playlists
        return catalogue.songs_from_playlists(weights)

    def _score_matrix(self, texts: list[str]) -> np.ndarray:
        catalogue = self._require_fit()
        votes = self._votes(texts)
        scores = votes.toarray() if sp.issparse(votes) else votes
        if self.popularity_weight > 0:
            _max_normalise_rows_(scores)
            scores += (self.popularity_weight / catalogue.counts.max()) * catalogue.counts
        return scores

    def evidence(self, text: str) -> EvidenceScores:
        """The kNN row: sparse over the neighbours' songs when ``k_neighbors`` bounds them (+ the popularity
        term as the fill), the dense row otherwise (every title shares a character n-gram with nearly every
        query: the neighbours are nearly all train playlists)."""
        catalogue = self._require_fit()
        if self.k_neighbors is None:
            return super().evidence(text)
        sims = _query_similarities(self.tfidf.transform([text]), self.title_vectors)[0]
        if self.similarity_power != 1.0:
            sims **= self.similarity_power
        top = top_k_indices(sims, self.k_neighbors)
        rows = np.sort(top[sims[top] > 0])
        songs, votes = catalogue.songs_of_playlists(rows, sims[rows])
        scores = EvidenceScores(len(catalogue), songs, votes)
        if self.popularity_weight <= 0:
            return scores
        scores = scores.normalised()
        scale = self.popularity_weight / catalogue.counts.max()
        counts = catalogue.counts
        return EvidenceScores(len(catalogue), songs, scores.vals + scale * (counts if songs is None else counts[songs]),
                              lambda r: 0.0 + scale * counts[r])

    def _rank_chunk(self, texts: list[str], k: int) -> list[np.ndarray]:
        if self.k_neighbors is None:
            if self.tie_break == "song_id":
                scores = self._score_matrix(texts)
                return _rank_votes(sp.csr_matrix(scores), self._tie_rank, k)
            return super()._rank_chunk(texts, k)
        if self.tie_break == "popularity":
            return [self.evidence(text).top_k(k) for text in texts]
        return _rank_votes(sp.csr_matrix(self._votes(texts)), self._tie_rank, k)


def reference_title_knn(analyzer: str = "char_wb") -> TitleKNNRecommender:
    """docs/benchmark.md reference title-kNN ("char_wb": char 2-4-grams; "word": words), configured to reproduce
    its printed figures: 50 neighbours, sum of cosine similarities, popularity fill, and songs with equal kNN
    scores ordered by song id. (With the written rule, popularity, the figures come out higher: NDCG@10
    +2.3% char, +8.9% word on mpd7k; benchmarks/results/baselines.json.)"""
    return TitleKNNRecommender(analyzer=analyzer, k_neighbors=50, tie_break="song_id")


def tuned_title_knn() -> TitleKNNRecommender:
    """docs/benchmark.md 'title-kNN tuned': char 1-4 TF-IDF on NFKC-lowercased titles without punctuation/emoji,
    all train playlists as neighbours, similarity squared, + 0.3 x max-normalised popularity."""
    return TitleKNNRecommender(
        analyzer="char", ngram_range=(1, 4), k_neighbors=None, similarity_power=2.0, popularity_weight=0.3,
        normalize_titles=True,
    )


class KernelRidgeRecommender(Recommender):
    """Dual ridge regression from title TF-IDF to song indicators with kernel cos(x, x') ** ``kernel_power``:
    scores(q) = k(q, X) (K + lambda I)^-1 Y, Y the train playlist x song 0/1 matrix."""

    def __init__(self, ridge_lambda: float = 200.0, kernel_power: float = 2.0, analyzer: str = "char",
                 ngram_range: tuple[int, int] | None = (1, 4), normalize_titles: bool = True):
        if ridge_lambda <= 0:
            raise ValueError(f"ridge_lambda must be positive, got {ridge_lambda!r}")
        self.tfidf = _TitleTfidf(analyzer, ngram_range, True, True, normalize_titles)
        self.ridge_lambda = ridge_lambda
        self.kernel_power = kernel_power

    def _fit(self, train_df: pd.DataFrame) -> None:
        self.title_vectors = self.tfidf.fit_transform(train_df["title"].astype(str).tolist())
        gram = (self.title_vectors @ self.title_vectors.T).toarray() ** self.kernel_power
        gram[np.diag_indices_from(gram)] += self.ridge_lambda
        # (K + lambda I)^-1, kept explicitly: a query then costs one (n_train,) x (n_train, n_train) product
        self.dual_inverse = np.linalg.inv(gram)

    def _score_matrix(self, texts: list[str]) -> np.ndarray:
        catalogue = self._require_fit()
        kernel = _query_similarities(self.tfidf.transform(texts), self.title_vectors) ** self.kernel_power
        dual = kernel @ self.dual_inverse
        return catalogue.songs_from_playlists(dual)


class CoOccurrenceRecommender(Recommender):
    """Two-hop co-occurrence walk on top of a base recommender (docs/benchmark.md 'kNN + co-occurrence').

    The base's top ``n_seeds`` songs s each carry weight base(s) / popularity(s)**``seed_popularity_power``;
    the weights flow to the train playlists holding them and on to those playlists' songs:
    walk = (seed weights @ Y^T) @ Y, Y the 0/1 train playlist x song matrix. Final score =
    base / max(base) + ``walk_weight`` * walk / max(walk), per query.
    """

    def __init__(self, base: Recommender, n_seeds: int = 100, walk_weight: float = 3.0,
                 seed_popularity_power: float = 1.0, target_popularity_power: float = 0.0):
        if not isinstance(base, Recommender):
            raise ValueError(f"base must be a Recommender, got {type(base).__name__}")
        check_k(n_seeds)
        if walk_weight < 0:
            raise ValueError(f"walk_weight must be >= 0, got {walk_weight!r}")
        self.base = base
        self.n_seeds = n_seeds
        self.walk_weight = walk_weight
        self.seed_popularity_power = seed_popularity_power
        self.target_popularity_power = target_popularity_power

    def fit(self, corpus_df: pd.DataFrame) -> CoOccurrenceRecommender:
        self.base.fit(corpus_df)
        self.catalogue = self.base.catalogue  # same train rows, same song order
        return self

    def evidence(self, text: str) -> EvidenceScores:
        return self.walk_from(self.base.evidence(text))

    def _rank_chunk(self, texts: list[str], k: int) -> list[np.ndarray]:
        return [self.evidence(text).top_k(k) for text in texts]

    def walk_from(self, base: EvidenceScores) -> EvidenceScores:
        """The co-occurrence scores of one query from its base's ``EvidenceScores``: the walk of
        ``_score_matrix`` on the seeds' playlists and their songs only (sparse whatever the base)."""
        catalogue = self._require_fit()
        counts = catalogue.counts
        seeds = np.sort(base.top_k(min(self.n_seeds, len(catalogue))))
        seed_weights = base.at(seeds) / counts[seeds].astype(np.float64) ** self.seed_popularity_power
        playlists, mass = catalogue.playlists_of_songs(seeds, seed_weights)
        if playlists is None:
            playlists = np.flatnonzero(mass)
            mass = mass[playlists]
        kept = mass != 0  # a zero mass adds +0.0 to every song of its playlist
        songs, walk = catalogue.songs_of_playlists(playlists[kept], mass[kept])
        if self.target_popularity_power:
            walk = walk / (counts if songs is None else counts[songs]).astype(np.float64) ** self.target_popularity_power
        walk = EvidenceScores(len(catalogue), songs, walk).normalised()
        base = base.normalised()
        if walk.is_dense:
            return EvidenceScores.dense(base.to_dense() + self.walk_weight * walk.vals)
        if base.is_dense:
            scores = base.vals.copy()
            scores[songs] = scores[songs] + self.walk_weight * walk.vals
            return EvidenceScores.dense(scores)
        union, (at_base, at_walk) = _merge(base.idx, songs)
        base_vals = base.fill_at(union)
        base_vals[at_base] = base.vals
        walk_vals = np.zeros(len(union))
        walk_vals[at_walk] = walk.vals
        return EvidenceScores(len(catalogue), union, base_vals + self.walk_weight * walk_vals, base.fill)

    def _score_matrix(self, texts: list[str]) -> np.ndarray:
        catalogue = self._require_fit()
        base = self.base._score_matrix(texts)
        counts = catalogue.counts.astype(np.float64)
        seed_cols = np.stack([top_k_indices(row, min(self.n_seeds, len(row))) for row in base])
        seed_rows = np.repeat(np.arange(len(base)), seed_cols.shape[1])
        seed_cols = seed_cols.ravel()
        seed_weights = base[seed_rows, seed_cols] / counts[seed_cols] ** self.seed_popularity_power
        seeds = sp.csr_matrix((seed_weights, (seed_rows, seed_cols)), shape=base.shape)
        playlist_mass = catalogue.playlists_from_songs(seeds)  # (n_queries, n_train)
        walk = catalogue.songs_from_playlists(playlist_mass)
        if self.target_popularity_power:
            walk /= counts ** self.target_popularity_power
        scores = _max_normalise_rows_(base)
        scores += self.walk_weight * _max_normalise_rows_(walk)
        return scores


def knn_cooccurrence() -> CoOccurrenceRecommender:
    """docs/benchmark.md 'kNN + co-occurrence': tuned kNN's top-100 songs, weight kNN score / popularity, two-hop
    walk, final = max-normalised kNN + 3 x max-normalised walk."""
    return CoOccurrenceRecommender(tuned_title_knn(), n_seeds=100, walk_weight=3.0)


def kernel_ridge_cooccurrence() -> CoOccurrenceRecommender:
    """docs/benchmark.md 'kernel ridge + co-occurrence': kernel cos^2, lambda 200, then the same walk."""
    return CoOccurrenceRecommender(KernelRidgeRecommender(ridge_lambda=200.0), n_seeds=100, walk_weight=3.0)


__all__ = [
    "CoOccurrenceRecommender",
    "EvidenceScores",
    "KernelRidgeRecommender",
    "PopularityRecommender",
    "Recommender",
    "SongCatalogue",
    "TitleKNNRecommender",
    "benchmark_queries",
    "kernel_ridge_cooccurrence",
    "knn_cooccurrence",
    "normalize_title",
    "reference_title_knn",
    "top_k_indices",
    "tuned_title_knn",
]
