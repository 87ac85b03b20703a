"""Cold-start song vectors: a vector for a song no train playlist holds, predicted from its name and singer.

word2vec gives a vector only to songs seen in the train playlists. A new song still has a name and a singer,
and a singer's songs tend to sit together in the vector space, so its vector can be guessed from the warm songs
(those with a vector) and then placed under a semantic ID like any other song. All vectors here are compared by
cosine (the geometry the semantic IDs and the word2vec neighbours use): targets and predictions are unit vectors.

* ``SingerMeanVectors``: the mean direction of the singer's warm songs;
* ``TextRidgeVectors``: ridge regression from hashed character n-grams of the name plus the singer as one token;
* ``global_mean_vector``: the fallback both use when nothing is known, the popularity-weighted mean direction;
* ``ColdStartVectors``: holds out warm songs, measures each method on them, keeps the best, refits it on all;
* ``cold_start_vectors``: SongVectors for a list of cold songs from a warm SongVectors and the song catalogue.

Plain numpy / scipy / scikit-learn (faiss for the neighbour figures); no Dagster.
"""
from __future__ import annotations

import time
import unicodedata
import zlib
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import Ridge

from genrank_assets.ml.vectors.song_vectors import SongVectors

METHODS = ("singer_mean", "text_ridge", "blend")  # simplest first: a tie goes to the earlier one
FALLBACK = "global_mean"
_EPS = 1e-12


# ------------------------------------------------------------------------------------------------- text
def normalize_text(text) -> str:
    """NFKC, casefolded, whitespace runs collapsed to one space and stripped; None or a non-string (NaN) -> ""."""
    if not isinstance(text, str):
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def normalize_singer(singer) -> str:
    """The key a singer is known by (``normalize_text``): "  Taylor  SWIFT " and "taylor swift" are one singer."""
    return normalize_text(singer)


# ---------------------------------------------------------------------------------------------- helpers
def unit_rows(vectors) -> np.ndarray:
    """float32 rows scaled to norm 1 (an all-zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, _EPS)).astype(np.float32)


def global_mean_vector(vectors, counts) -> np.ndarray:
    """The fallback, (dim,) float32 unit: the mean of the unit vectors weighted by ``counts`` (a song's
    occurrences in the train playlists), re-normalised. It points where the played songs are, so a song nobody
    knows anything about lands among the songs a listener most likely meets. All counts zero: the plain mean."""
    unit = unit_rows(vectors)
    weights = np.asarray(counts, dtype=np.float64)
    if weights.sum() <= 0:
        weights = np.ones(len(unit))
    mean = weights @ unit.astype(np.float64)
    if np.linalg.norm(mean) < 1e-9:  # opposite directions cancel: any fixed unit vector will do
        mean = np.zeros(unit.shape[1])
        mean[0] = 1.0
    return unit_rows(mean)


def _check_fit_inputs(where: str, song_ids, vectors, counts, **columns) -> tuple[list[str], np.ndarray, np.ndarray]:
    """song ids as str, vectors as float32 (n, dim), counts as int64 (n,); every column of length n."""
    song_ids = [str(s) for s in song_ids]
    vectors = np.asarray(vectors, dtype=np.float32)
    counts = np.asarray(counts, dtype=np.int64)
    n = len(song_ids)
    if n == 0:
        raise ValueError(f"{where}: no warm songs to fit on (song_ids is empty)")
    if vectors.ndim != 2 or len(vectors) != n:
        raise ValueError(f"{where}: vectors must be (len(song_ids), dim) = ({n}, dim), got shape {vectors.shape}")
    if counts.shape != (n,):
        raise ValueError(f"{where}: counts has shape {counts.shape}, song_ids has {n} entries")
    if (counts < 0).any():
        raise ValueError(f"{where}: counts must be >= 0")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{where}: vectors hold non-finite values")
    for name, column in columns.items():
        if len(column) != n:
            raise ValueError(f"{where}: {name} has {len(column)} entries, song_ids has {n}")
    if len(set(song_ids)) != n:
        raise ValueError(f"{where}: song_ids repeat a song")
    return song_ids, vectors, counts


def _check_same_length(where: str, **columns) -> int:
    (first, ref), *rest = columns.items()
    for name, column in rest:
        if len(column) != len(ref):
            raise ValueError(f"{where}: {name} has {len(column)} entries, {first} has {len(ref)}")
    return len(ref)


def _require_fitted(estimator, attribute: str) -> None:
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"{type(estimator).__name__} is not fitted yet: call fit first")


def _bucket(seed: int, song_id: str, salt: str = "") -> int:
    """A song's place in 0..9999, fixed by the seed and its id alone (crc32), so adding songs moves no other."""
    return zlib.crc32(f"cold-start{salt}:{seed}:{song_id}".encode("utf-8")) % 10_000


# ------------------------------------------------------------------------------------------ singer mean
class SingerMeanVectors(BaseEstimator):
    """A song's vector = the mean direction of its singer's warm songs, each unit vector weighted by
    log1p(count), re-normalised. log1p because counts span orders of magnitude: weighted by the raw count one hit
    would stand for the whole singer; unweighted, songs seen twice (whose word2vec vectors are barely trained,
    hence noisy) would count as much as the ones heard everywhere. An unknown or empty singer: the fallback
    (``global_mean_vector``)."""

    def fit(self, song_ids, vectors, counts, singers) -> SingerMeanVectors:
        _, vectors, counts = _check_fit_inputs("SingerMeanVectors.fit", song_ids, vectors, counts, singers=singers)
        unit = unit_rows(vectors)
        self.fallback_ = global_mean_vector(vectors, counts)
        keys = [normalize_singer(s) for s in singers]
        names = sorted({k for k in keys if k})
        self.singer_index_ = {name: i for i, name in enumerate(names)}
        rows = np.array([self.singer_index_.get(k, -1) for k in keys], dtype=np.int64)
        known = rows >= 0
        weights = np.log1p(counts[known].astype(np.float64))
        weights[weights <= 0] = _EPS  # a count-0 song still speaks for a singer with nothing else
        sums = np.zeros((len(names), unit.shape[1]), dtype=np.float64)
        np.add.at(sums, rows[known], weights[:, None] * unit[known])
        self.singer_songs_ = np.bincount(rows[known], minlength=len(names))
        means = unit_rows(sums)
        cancelled = np.linalg.norm(means, axis=1) < 0.5  # a singer whose songs cancel out says nothing
        means[cancelled] = self.fallback_
        self.singer_vectors_ = means
        return self

    def known(self, singers) -> np.ndarray:
        """bool (n,): the singer has warm songs (its prediction is its own, not the fallback)."""
        _require_fitted(self, "singer_vectors_")
        return np.array([normalize_singer(s) in self.singer_index_ for s in singers], dtype=bool)

    def predict(self, singers) -> np.ndarray:
        _require_fitted(self, "singer_vectors_")
        rows = np.array([self.singer_index_.get(normalize_singer(s), -1) for s in singers], dtype=np.int64)
        out = np.repeat(self.fallback_[None, :], len(rows), axis=0)
        out[rows >= 0] = self.singer_vectors_[rows[rows >= 0]]
        return out


# ------------------------------------------------------------------------------------------- text ridge
def _whole_singer(text) -> list[str]:
    """The analyzer of the singer block: the whole normalised singer string is one token."""
    key = normalize_singer(text)
    return [key] if key else []


class TextRidgeVectors(BaseEstimator):
    """Ridge regression from a song's text to its unit vector, trained on warm songs.

    Features (sparse): hashed ``char_wb`` n-grams of the normalised name (l2-normalised per song); the whole
    normalised singer as one hashed token of weight ``singer_weight``, so a known singer pulls towards its songs
    (like ``SingerMeanVectors``, shrunk by ``alpha``); with ``singer_ngram_weight`` > 0, the singer's char n-grams
    too (l2-normalised, times that weight), which say something of a singer never seen ("lil ", "dj ", "los ").
    Songs are weighted by log1p(count), as in ``SingerMeanVectors``. Only the hashed columns some fitted song
    uses are kept (the others would get a zero coefficient anyway), which keeps the lsqr solve small. Memory stays
    bounded: the features are sparse and at most ``max_fit_songs`` songs are fitted, the most played (ties by a
    crc32 of ``seed`` and the id). A song with no feature the model knows, or whose prediction is near zero,
    gets the fallback (``global_mean_vector`` of every warm song)."""

    def __init__(self, alpha: float = 1.0, ngram_range: tuple[int, int] = (2, 4), n_features: int = 2**18,
                 singer_weight: float = 1.0, singer_ngram_weight: float = 0.0, tol: float = 1e-3,
                 max_fit_songs: int = 200_000, seed: int = 0):
        self.alpha = alpha
        self.ngram_range = ngram_range
        self.n_features = n_features
        self.singer_weight = singer_weight
        self.singer_ngram_weight = singer_ngram_weight
        self.tol = tol
        self.max_fit_songs = max_fit_songs
        self.seed = seed

    def features(self, names, singers) -> sp.csr_matrix:
        """The sparse (n, 3 * n_features) design matrix of these songs: name n-grams, singer token, singer
        n-grams (all hashed columns, before the fitted model keeps the ones it uses)."""
        _check_same_length("TextRidgeVectors.features", names=names, singers=singers)
        names = [s if isinstance(s, str) else "" for s in names]
        singers = [s if isinstance(s, str) else "" for s in singers]
        ngrams = dict(analyzer="char_wb", ngram_range=tuple(self.ngram_range), n_features=self.n_features,
                      preprocessor=normalize_text, alternate_sign=False, norm="l2", dtype=np.float32)
        token = HashingVectorizer(analyzer=_whole_singer, n_features=self.n_features, alternate_sign=False,
                                  norm=None, dtype=np.float32)
        blocks = [HashingVectorizer(**ngrams).transform(names), self.singer_weight * token.transform(singers)]
        if self.singer_ngram_weight > 0:
            blocks.append(self.singer_ngram_weight * HashingVectorizer(**ngrams).transform(singers))
        else:
            blocks.append(sp.csr_matrix((len(names), self.n_features), dtype=np.float32))
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def fit(self, song_ids, vectors, counts, names, singers) -> TextRidgeVectors:
        if self.max_fit_songs < 1:
            raise ValueError(f"TextRidgeVectors: max_fit_songs must be >= 1, got {self.max_fit_songs}")
        song_ids, vectors, counts = _check_fit_inputs("TextRidgeVectors.fit", song_ids, vectors, counts,
                                                      names=names, singers=singers)
        self.fallback_ = global_mean_vector(vectors, counts)
        keep = np.arange(len(song_ids))
        if len(keep) > self.max_fit_songs:
            tie = np.array([_bucket(self.seed, s, ":ridge") for s in song_ids], dtype=np.int64)
            keep = np.sort(np.lexsort((np.arange(len(song_ids)), tie, -counts))[: self.max_fit_songs])
        X = self.features([names[i] for i in keep], [singers[i] for i in keep])
        self.columns_ = np.unique(X.indices)
        weights = np.log1p(counts[keep].astype(np.float64))
        weights = np.where(weights > 0, weights, _EPS) if weights.any() else None
        model = Ridge(alpha=self.alpha, solver="lsqr", tol=self.tol, fit_intercept=True)
        model.fit(X[:, self.columns_], unit_rows(vectors[keep]), sample_weight=weights)
        self.model_ = model
        self.n_fit_songs_ = len(keep)
        return self

    def predict(self, names, singers) -> np.ndarray:
        _require_fitted(self, "model_")
        n = _check_same_length("TextRidgeVectors.predict", names=names, singers=singers)
        out = np.repeat(self.fallback_[None, :], n, axis=0)
        if n == 0:
            return out
        X = self.features(names, singers)[:, self.columns_].tocsr()
        has = np.diff(X.indptr) > 0
        if has.any():
            raw = np.asarray(self.model_.predict(X[has]), dtype=np.float32)
            norms = np.linalg.norm(raw, axis=1)
            ok = norms > 1e-6
            rows = np.flatnonzero(has)[ok]
            out[rows] = raw[ok] / norms[ok, None]
        return out


# ------------------------------------------------------------------------------------------- neighbours
def nearest(pool: np.ndarray, queries: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """int64 (n_queries, k): the rows of ``pool`` with the highest inner product with each query (faiss exact
    search; queries in chunks, so memory stays at chunk x k)."""
    import faiss

    pool = np.ascontiguousarray(pool, dtype=np.float32)
    k = min(k, len(pool))
    index = faiss.IndexFlatIP(pool.shape[1])
    index.add(pool)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        part = np.ascontiguousarray(queries[start:start + chunk], dtype=np.float32)
        out[start:start + len(part)] = index.search(part, k)[1]
    return out


def held_out_figures(predicted: np.ndarray, trained: np.ndarray, pool: np.ndarray, true_neighbours: np.ndarray,
                     pool_size: int = 100) -> dict:
    """mean cosine of the predicted unit vectors to the trained ones, and neighbour recall: the share of each
    song's true neighbours (rows of ``pool``, by its trained vector) among the ``pool_size`` nearest pool songs
    of its predicted vector."""
    n = len(predicted)
    if n == 0:
        return {"mean_cosine": None, "neighbour_recall": None, "n": 0}
    cosine = np.sum(unit_rows(predicted) * unit_rows(trained), axis=1)
    found = nearest(pool, unit_rows(predicted), pool_size)
    hits = [len(np.intersect1d(t, f, assume_unique=True)) for t, f in zip(true_neighbours, found)]
    return {"mean_cosine": float(cosine.mean()), "neighbour_recall": float(np.sum(hits) / true_neighbours.size),
            "n": int(n)}


def held_out_split(song_ids, singers, share: float, seed: int, salt: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(known, unknown): bool masks of the songs held out, ``share`` of them by a crc32 of ``salt``, ``seed`` and
    the id. ``known``: held-out songs whose singer has another song, at least one of which stays in (a singer
    all of whose songs drew a held-out place keeps its first); ``unknown``: held-out songs whose singer has no
    other song, or is empty."""
    keys = [normalize_singer(s) for s in singers]
    held = np.array([_bucket(seed, str(s), salt) for s in song_ids], dtype=np.int64) < round(share * 10_000)
    songs_of: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            songs_of.setdefault(key, []).append(i)
    known = np.zeros(len(keys), dtype=bool)
    unknown = np.array([held[i] and (not key or len(songs_of[key]) == 1) for i, key in enumerate(keys)], dtype=bool)
    for rows in songs_of.values():
        chosen = [i for i in rows if held[i]]
        if len(rows) < 2 or not chosen:
            continue
        if len(chosen) == len(rows):
            chosen = chosen[1:]
        known[chosen] = True
    return known, unknown


# ----------------------------------------------------------------------------------------------- chooser
class ColdStartVectors(BaseEstimator):
    """Picks the cold-start method by how well it predicts held-out warm songs, then fits it on all of them.

    ``fit`` holds out ``val_share`` of the warm songs whose singer has at least one other warm song (a crc32 of
    the seed and the id decides; a singer keeps at least one song in the fit set), so the figure measures a
    song whose singer is known, as most cold songs' are (the benchmark measures that share). Each method is
    fitted on the rest and scored on them: mean cosine to the trained vector, and neighbour recall (the share of
    the song's ``k`` nearest fitted songs by its trained vector found among the ``pool`` nearest by its
    predicted one). The best mean cosine wins; within ``tie`` of a simpler method, the simpler one (order of
    ``METHODS``). The fallback's figures are the baseline. The same share of the songs whose singer has no other
    warm song (or none) is held out as well and reported under ``"singer_unknown"``; it does not decide.

    Methods: ``singer_mean`` (``SingerMeanVectors``), ``text_ridge`` (``TextRidgeVectors``), ``blend``: the plain
    average of the two unit predictions, re-normalised, where the singer is known, the ridge's alone where it is
    not (singer_mean would only add the fallback there). Each component is fitted once and shared (``seconds_``:
    blend's fit and predict time are both components'). ``report_`` holds the figures; ``method_`` the choice.
    """

    def __init__(self, alpha: float = 1.0, singer_weight: float = 1.0, singer_ngram_weight: float = 0.0,
                 max_fit_songs: int = 200_000, k: int = 10, pool: int = 100, tie: float = 1e-4):
        self.alpha = alpha
        self.singer_weight = singer_weight
        self.singer_ngram_weight = singer_ngram_weight
        self.max_fit_songs = max_fit_songs
        self.k = k
        self.pool = pool
        self.tie = tie

    def _fit_parts(self, methods, seed: int, song_ids, vectors, counts, names, singers) -> tuple[dict, dict]:
        """(the fitted components ``methods`` need, each fitted once; their fit seconds)."""
        parts, seconds = {}, {}
        if {"singer_mean", "blend"} & set(methods):
            t0 = time.perf_counter()
            parts["singer_mean"] = SingerMeanVectors().fit(song_ids, vectors, counts, singers)
            seconds["singer_mean"] = time.perf_counter() - t0
        if {"text_ridge", "blend"} & set(methods):
            t0 = time.perf_counter()
            parts["text_ridge"] = TextRidgeVectors(
                alpha=self.alpha, singer_weight=self.singer_weight, singer_ngram_weight=self.singer_ngram_weight,
                max_fit_songs=self.max_fit_songs, seed=seed).fit(song_ids, vectors, counts, names, singers)
            seconds["text_ridge"] = time.perf_counter() - t0
        return parts, seconds

    @staticmethod
    def _predict_parts(parts: dict, names, singers, seconds: dict | None = None) -> dict:
        """Each component's predictions, and where the singer is known (``"known"``); each one's predict
        seconds added to ``seconds``."""
        out = {}
        seconds = {} if seconds is None else seconds
        if "singer_mean" in parts:
            t0 = time.perf_counter()
            out["singer_mean"] = parts["singer_mean"].predict(singers)
            out["known"] = parts["singer_mean"].known(singers)
            seconds["singer_mean"] = seconds.get("singer_mean", 0.0) + time.perf_counter() - t0
        if "text_ridge" in parts:
            t0 = time.perf_counter()
            out["text_ridge"] = parts["text_ridge"].predict(names, singers)
            seconds["text_ridge"] = seconds.get("text_ridge", 0.0) + time.perf_counter() - t0
        return out

    @staticmethod
    def _combine(method: str, predicted: dict) -> np.ndarray:
        if method != "blend":
            return predicted[method]
        out = predicted["text_ridge"].copy()
        known = predicted["known"]
        out[known] = unit_rows(predicted["singer_mean"][known] + predicted["text_ridge"][known])
        return out

    def fit(self, song_ids, vectors, counts, names, singers, *, methods: Sequence[str] = METHODS,
            val_share: float = 0.1, seed: int = 0) -> ColdStartVectors:
        song_ids, vectors, counts = _check_fit_inputs("ColdStartVectors.fit", song_ids, vectors, counts,
                                                      names=names, singers=singers)
        methods = tuple(dict.fromkeys(methods))
        if not methods or any(m not in METHODS for m in methods):
            raise ValueError(f"ColdStartVectors.fit: methods must be some of {METHODS}, got {methods}")
        if not 0.0 < val_share < 1.0:
            raise ValueError(f"ColdStartVectors.fit: val_share must be in (0, 1), got {val_share}")
        names, singers = list(names), list(singers)
        val, unknown = held_out_split(song_ids, singers, val_share, seed)
        if not val.any():
            raise ValueError("ColdStartVectors.fit: no held-out song has a singer with another warm song "
                             f"(val_share={val_share}, {len(song_ids)} songs): nothing to choose by")
        fit_rows = np.flatnonzero(~(val | unknown))
        unit = unit_rows(vectors)
        pool = np.ascontiguousarray(unit[fit_rows])

        def take(rows, column):
            return [column[i] for i in rows]

        parts, fit_seconds = self._fit_parts(methods, seed, take(fit_rows, song_ids), vectors[fit_rows],
                                             counts[fit_rows], take(fit_rows, names), take(fit_rows, singers))
        fallback = global_mean_vector(vectors[fit_rows], counts[fit_rows])
        figures: dict[str, dict] = {m: {} for m in (FALLBACK, *methods)}
        component_seconds: dict[str, float] = {}
        combine_seconds = dict.fromkeys(methods, 0.0)
        for label, mask in (("val", val), ("singer_unknown", unknown)):
            rows = np.flatnonzero(mask)
            truth = nearest(pool, unit[rows], self.k) if len(rows) else np.empty((0, self.k), dtype=np.int64)
            figures[FALLBACK][label] = held_out_figures(np.repeat(fallback[None, :], len(rows), axis=0), unit[rows],
                                                        pool, truth, self.pool)
            predicted = self._predict_parts(parts, take(rows, names), take(rows, singers), component_seconds)
            for method in methods:
                t0 = time.perf_counter()
                combined = self._combine(method, predicted)
                combine_seconds[method] += time.perf_counter() - t0
                figures[method][label] = held_out_figures(combined, unit[rows], pool, truth, self.pool)

        best = methods[0]
        for method in methods[1:]:  # a less simple method must beat the best so far by more than `tie`
            if figures[method]["val"]["mean_cosine"] > figures[best]["val"]["mean_cosine"] + self.tie:
                best = method
        uses = {m: [m] if m != "blend" else ["singer_mean", "text_ridge"] for m in methods}
        self.seconds_ = {m: {"fit_s": sum(fit_seconds[p] for p in uses[m]),
                             "predict_s": sum(component_seconds[p] for p in uses[m]) + combine_seconds[m]}
                         for m in methods}
        t0 = time.perf_counter()
        self.parts_, _ = self._fit_parts((best,), seed, song_ids, vectors, counts, names, singers)
        self.seconds_["refit_s"] = time.perf_counter() - t0
        self.method_ = best
        self.fallback_ = global_mean_vector(vectors, counts)
        self.dim_ = vectors.shape[1]
        self.known_singers_ = frozenset(normalize_singer(s) for s in singers) - {""}
        self.report_ = {
            "chosen": best,
            "methods": {m: figures[m]["val"] for m in methods},
            "fallback": figures[FALLBACK]["val"],
            "singer_unknown": {m: figures[m]["singer_unknown"] for m in (FALLBACK, *methods)},
            "rule": f"best val mean cosine; a simpler method (order {METHODS}) wins within {self.tie}",
            "n_warm": len(song_ids), "n_fit": int(len(fit_rows)), "n_val": int(val.sum()),
            "n_singer_unknown": int(unknown.sum()), "val_share": val_share, "seed": seed,
            "k": self.k, "pool": self.pool,
        }
        return self

    def predict(self, names, singers) -> np.ndarray:
        """float32 (n, dim) unit vectors of these songs, by the chosen method."""
        _require_fitted(self, "parts_")
        _check_same_length("ColdStartVectors.predict", names=names, singers=singers)
        return self._combine(self.method_, self._predict_parts(self.parts_, list(names), list(singers)))

    def singer_known(self, singers) -> np.ndarray:
        """bool (n,): the singer has warm songs."""
        _require_fitted(self, "known_singers_")
        return np.array([normalize_singer(s) in self.known_singers_ for s in singers], dtype=bool)


def cold_start_vectors(warm: SongVectors, song_info: Mapping[str, tuple[str, str]], cold_song_ids: Sequence[str],
                       *, methods: Sequence[str] = METHODS, val_share: float = 0.1, seed: int = 0,
                       **params) -> tuple[SongVectors, ColdStartVectors]:
    """(SongVectors of ``cold_song_ids``, count 0, unit vectors; the fitted chooser). ``song_info``: song id ->
    (name, singer); a warm song missing from it is fitted with an empty name and singer (it still counts in the
    fallback), a cold one missing from it gets the fallback. ``params`` go to ``ColdStartVectors``. The same
    inputs and seed give the same vectors."""
    cold_song_ids = [str(s) for s in cold_song_ids]
    warm_cold = [s for s in cold_song_ids if warm.index_of(s) is not None]
    if warm_cold:
        raise ValueError(f"cold_start_vectors: cold_song_ids holds {len(warm_cold)} song(s) with a vector, "
                         f"e.g. {warm_cold[0]!r}")

    def info(song_id: str) -> tuple[str, str]:
        name, singer = song_info.get(song_id, ("", ""))
        return name, singer

    warm_info = [info(s) for s in warm.song_ids]
    chooser = ColdStartVectors(**params).fit(
        warm.song_ids, warm.vectors, warm.counts, [n for n, _ in warm_info], [s for _, s in warm_info],
        methods=methods, val_share=val_share, seed=seed)
    cold_info = [info(s) for s in cold_song_ids]
    vectors = chooser.predict([n for n, _ in cold_info], [s for _, s in cold_info])
    return SongVectors(song_ids=cold_song_ids, counts=np.zeros(len(cold_song_ids), dtype=np.int64), vectors=vectors,
                       stats={"cold_start_method": chooser.method_, "cold_songs": len(cold_song_ids)}), chooser
