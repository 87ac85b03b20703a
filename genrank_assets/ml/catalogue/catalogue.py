"""Stage `catalogue`: every song the system can recommend, with its vector, its semantic ID and whether that
vector was learned from playlists or predicted for a cold song.

Two ways a catalogue comes about:

* ``build_catalogue`` (a full retrain): the songs word2vec trained keep their vectors and the codes RQ-KMeans
  fitted; every other song of the song file gets a **cold-start vector** from its metadata
  (``ml/vectors/cold_start.py``) and a code from the fitted quantizer's ``predict``.
* ``extend_catalogue`` (a refresh per landed batch): word2vec continues on the new train playlists with every
  known song's vector locked (``update_word2vec``); songs new to the catalogue get a learned vector when the new
  playlists hold them often enough, else a cold-start one, and a code from the same ``predict``. **The code of a
  song already in the catalogue never changes**: the generator, the cross-encoder and the ranker were fitted to
  those codes and vectors. A cold song that the new playlists give history gets its learned vector and loses its
  ``cold_start`` flag, and keeps its code.

A predicted code is clipped into the generator's code space (its tokens), so every song stays reachable through
the trie without retraining TIGER.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from genrank_assets.ml.generator.tiger import CodeTable
from genrank_assets.ml.semantic_ids.codes import code_columns
from genrank_assets.ml.vectors.cold_start import ColdStartVectors
from genrank_assets.ml.vectors.song_vectors import SongVectors, update_word2vec, vectors_of

WORD2VEC = "word2vec"  # vector_source of a song whose vector word2vec learned


@dataclass
class Catalogue:
    """Row i is ``song_ids[i]``: its playlist count (what its vector was trained on; 0 for a cold song), its
    vector, its code (n, L), whether the vector is a cold-start prediction, and what gave it the vector."""

    song_ids: list[str]
    counts: np.ndarray
    vectors: np.ndarray
    codes: np.ndarray
    cold_start: np.ndarray
    vector_source: list[str]  # "word2vec" or "cold:<method>"

    def __post_init__(self) -> None:
        self.song_ids = [str(s) for s in self.song_ids]
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.cold_start = np.asarray(self.cold_start, dtype=bool)
        n = len(self.song_ids)
        shapes = {"counts": len(self.counts), "vectors": len(self.vectors), "codes": len(self.codes),
                  "cold_start": len(self.cold_start), "vector_source": len(self.vector_source)}
        bad = {k: v for k, v in shapes.items() if v != n}
        if bad:
            raise ValueError(f"catalogue: {n} song ids but {bad}")
        if len(set(self.song_ids)) != n:
            raise ValueError("catalogue: song_ids has duplicates")
        self._row = {s: i for i, s in enumerate(self.song_ids)}

    def __len__(self) -> int:
        return len(self.song_ids)

    def row_of(self, song_id: str) -> int | None:
        return self._row.get(song_id)

    @property
    def n_cold(self) -> int:
        return int(self.cold_start.sum())

    def song_vectors(self) -> SongVectors:
        """Every catalogue song's vector (learned or predicted), as the cross-encoder and features read them."""
        return SongVectors(self.song_ids, self.counts, self.vectors)

    def code_table(self) -> CodeTable:
        """The generator's code table over the whole catalogue; within a code the most played song comes first,
        so a cold song (count 0) follows the songs with history."""
        return CodeTable(self.song_ids, self.codes, self.counts.astype(np.float64))

    def code_of(self) -> dict[str, tuple[int, ...]]:
        return {s: tuple(int(v) for v in c) for s, c in zip(self.song_ids, self.codes.tolist())}


# -- building ---------------------------------------------------------------------------------------------------


def clip_codes(codes: np.ndarray, code_space: Sequence[int]) -> np.ndarray:
    """Codes kept inside the generator's tokens: a disambiguation slot past the last token shares the last one."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.shape[1] != len(code_space):
        raise ValueError(f"codes have {codes.shape[1]} levels, the code space {len(code_space)}")
    return np.minimum(codes, np.asarray(code_space, dtype=np.int64)[None, :] - 1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _predict_codes(quantizer, vectors: np.ndarray, code_space: Sequence[int]) -> np.ndarray:
    if len(vectors) == 0:
        return np.zeros((0, len(code_space)), dtype=np.int64)
    return clip_codes(quantizer.predict(_unit(vectors)), code_space)  # the codes were fitted on unit vectors


def _names_singers(song_info: Mapping[str, tuple[str, str]], song_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    info = [song_info.get(s, ("", "")) for s in song_ids]
    return [str(n) for n, _ in info], [str(g) for _, g in info]


def fit_cold_start(warm: SongVectors, song_info: Mapping[str, tuple[str, str]], seed: int) -> ColdStartVectors:
    """The cold-start model, fitted on the songs with learned vectors (its method chosen on held-out warm songs)."""
    names, singers = _names_singers(song_info, warm.song_ids)
    return ColdStartVectors().fit(warm.song_ids, warm.vectors, warm.counts, names, singers, seed=seed)


def _cold_rows(model: ColdStartVectors, song_info, song_ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    names, singers = _names_singers(song_info, song_ids)
    dim = model.dim_
    vectors = model.predict(names, singers) if song_ids else np.zeros((0, dim), dtype=np.float32)
    return np.asarray(vectors, dtype=np.float32), [f"cold:{model.method_}"] * len(song_ids)


def build_catalogue(warm: SongVectors, warm_codes: Mapping[str, Sequence[int]], quantizer,
                    song_info: Mapping[str, tuple[str, str]], catalogue_song_ids: Sequence[str],
                    code_space: Sequence[int], seed: int = 0) -> tuple[Catalogue, ColdStartVectors]:
    """The catalogue of a full retrain: word2vec's songs with their fitted codes, then every other song of
    ``catalogue_song_ids`` (the song file) with a cold-start vector and a predicted code."""
    missing = [s for s in warm.song_ids if s not in warm_codes]
    if missing:
        raise ValueError(f"{len(missing)} vectored songs have no code (semantic_ids is stale?), e.g. {missing[:3]}")
    cold_model = fit_cold_start(warm, song_info, seed)
    known = set(warm.song_ids)
    cold_ids = list(dict.fromkeys(s for s in map(str, catalogue_song_ids) if s not in known))
    cold_vectors, cold_source = _cold_rows(cold_model, song_info, cold_ids)
    codes = np.vstack([np.asarray([list(warm_codes[s]) for s in warm.song_ids], dtype=np.int64).reshape(len(warm), -1),
                       _predict_codes(quantizer, cold_vectors, code_space)])
    catalogue = Catalogue(
        song_ids=[*warm.song_ids, *cold_ids], counts=np.concatenate([warm.counts, np.zeros(len(cold_ids))]),
        vectors=np.vstack([warm.vectors, cold_vectors]), codes=clip_codes(codes, code_space),
        cold_start=np.concatenate([np.zeros(len(warm), bool), np.ones(len(cold_ids), bool)]),
        vector_source=[WORD2VEC] * len(warm) + cold_source,
    )
    return catalogue, cold_model


@dataclass
class Extension:
    """What a refresh changed: songs added (learned / cold-start vectors), cold songs that gained history."""

    new_learned: list[str]
    new_cold: list[str]
    warmed: list[str]  # cold before, learned vector now (code kept)
    playlists: int
    word2vec_seconds: float

    @property
    def new_songs(self) -> list[str]:
        return [*self.new_learned, *self.new_cold]

    def summary(self) -> dict:
        return {"new_songs": len(self.new_songs), "new_learned_vectors": len(self.new_learned),
                "new_cold_start_vectors": len(self.new_cold), "cold_songs_warmed": len(self.warmed),
                "new_playlists_trained": self.playlists, "word2vec_update_seconds": round(self.word2vec_seconds, 2)}


def extend_catalogue(previous: Catalogue, model, new_sentences: Sequence[Sequence[str]], quantizer,
                     song_info: Mapping[str, tuple[str, str]], catalogue_song_ids: Sequence[str],
                     code_space: Sequence[int], seed: int = 0) -> tuple[Catalogue, Extension]:
    """The catalogue after a refresh (``model``, the word2vec model ``previous`` was built with, is updated in
    place). Existing songs keep their codes; warm songs keep their vectors (locked in the update)."""
    update = update_word2vec(model, new_sentences)
    trained = vectors_of(model)
    learned = {s: i for i, s in enumerate(trained.song_ids)}
    song_ids, counts = list(previous.song_ids), previous.counts.copy()
    vectors, cold = previous.vectors.copy(), previous.cold_start.copy()
    source = list(previous.vector_source)
    warmed = []
    for row, song in enumerate(song_ids):
        i = learned.get(song)
        if i is None:
            continue
        counts[row] = trained.counts[i]
        if cold[row]:  # history at last: the learned vector replaces the prediction; the code stays
            vectors[row], cold[row], source[row] = trained.vectors[i], False, WORD2VEC
            warmed.append(song)
    have = set(song_ids)
    new_learned = [s for s in trained.song_ids if s not in have]
    have.update(new_learned)
    new_cold = list(dict.fromkeys(s for s in map(str, catalogue_song_ids) if s not in have))
    learned_vectors = (trained.vectors[[learned[s] for s in new_learned]] if new_learned
                       else np.zeros((0, previous.vectors.shape[1]), np.float32))
    cold_vectors, cold_source = np.zeros((0, previous.vectors.shape[1]), np.float32), []
    if new_cold:
        warm_rows = np.flatnonzero(~cold)
        warm = SongVectors([song_ids[r] for r in warm_rows], counts[warm_rows], vectors[warm_rows])
        cold_vectors, cold_source = _cold_rows(fit_cold_start(warm, song_info, seed), song_info, new_cold)
    added_vectors = np.vstack([learned_vectors, cold_vectors])
    catalogue = Catalogue(
        song_ids=[*song_ids, *new_learned, *new_cold],
        counts=np.concatenate([counts, [trained.counts[learned[s]] for s in new_learned], np.zeros(len(new_cold))]),
        vectors=np.vstack([vectors, added_vectors]),
        codes=np.vstack([previous.codes, _predict_codes(quantizer, added_vectors, code_space)]),
        cold_start=np.concatenate([cold, np.zeros(len(new_learned), bool), np.ones(len(new_cold), bool)]),
        vector_source=[*source, *[WORD2VEC] * len(new_learned), *cold_source],
    )
    return catalogue, Extension(new_learned, new_cold, warmed, update["playlists"], update["seconds"])


def changed_codes(before: Catalogue, after: Catalogue) -> list[str]:
    """Songs of ``before`` whose code differs (or that are gone) in ``after``: a refresh must leave none."""
    codes = after.code_of()
    return [s for s, c in before.code_of().items() if codes.get(s) != c]


# -- the warehouse table and the refresh state ------------------------------------------------------------------


def to_frame(catalogue: Catalogue) -> pd.DataFrame:
    """The `song_catalogue` table: song_id, count, cold_start, vector_source, l1..lL, vector."""
    frame = pd.DataFrame({"song_id": catalogue.song_ids, "count": catalogue.counts,
                          "cold_start": catalogue.cold_start, "vector_source": catalogue.vector_source})
    for i, col in enumerate(code_columns(catalogue.codes.shape[1])):
        frame[col] = catalogue.codes[:, i]
    frame["vector"] = list(catalogue.vectors)
    return frame


def from_frame(frame: pd.DataFrame) -> Catalogue:
    if len(frame) == 0:
        raise ValueError("song_catalogue table is empty")
    cols = sorted((c for c in frame.columns if c.startswith("l") and c[1:].isdigit()), key=lambda c: int(c[1:]))
    return Catalogue(frame["song_id"].astype(str).tolist(), frame["count"].to_numpy(),
                     np.stack([np.asarray(v, dtype=np.float32) for v in frame["vector"]]),
                     frame[cols].to_numpy(dtype=np.int64), frame["cold_start"].to_numpy(dtype=bool),
                     frame["vector_source"].astype(str).tolist())


STATE_FILES = ("catalogue.npz", "word2vec.model", "state.json")


def save_state(directory: str | Path, catalogue: Catalogue, model, trained_playlists: Sequence[str],
               info: Mapping) -> Path:
    """What the next refresh continues from: the catalogue, the word2vec model it came with, the playlists that
    model has trained on and ``info`` (e.g. the quantizer file and the full retrain it descends from)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "catalogue.npz", song_ids=np.asarray(catalogue.song_ids, dtype=str),
             counts=catalogue.counts, vectors=catalogue.vectors, codes=catalogue.codes,
             cold_start=catalogue.cold_start, vector_source=np.asarray(catalogue.vector_source, dtype=str))
    model.save(str(directory / "word2vec.model"))
    (directory / "state.json").write_text(json.dumps({**info, "trained_playlists": sorted(map(str, trained_playlists))}))
    return directory


def load_state(directory: str | Path):
    """(catalogue, word2vec model, trained playlist ids, info) saved by ``save_state``."""
    from gensim.models import Word2Vec

    directory = Path(directory)
    missing = [f for f in STATE_FILES if not (directory / f).is_file()]
    if missing:
        raise ValueError(f"{directory} is not a catalogue state (missing {missing}): run a full retrain")
    with np.load(directory / "catalogue.npz", allow_pickle=False) as d:
        catalogue = Catalogue(d["song_ids"].tolist(), d["counts"], d["vectors"], d["codes"], d["cold_start"],
                              d["vector_source"].tolist())
    info = json.loads((directory / "state.json").read_text())
    trained = set(info.pop("trained_playlists"))
    return catalogue, Word2Vec.load(str(directory / "word2vec.model")), trained, info


# -- what the ranking stage and the recommender bundle read ------------------------------------------------------


def song_info(raw_songs: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """song id -> (name, singer) of the song file."""
    songs = raw_songs.drop_duplicates("song_id")
    return dict(zip(songs["song_id"].astype(str),
                    zip(songs["song_name"].astype(str), songs["singer"].astype(str))))


def cold_songs(catalogue: Catalogue) -> frozenset[str]:
    return frozenset(s for s, c in zip(catalogue.song_ids, catalogue.cold_start) if c)


def save_bundle_dirs(directory: str | Path, generator, catalogue: Catalogue, raw_songs: pd.DataFrame
                     ) -> tuple[Path, Path]:
    """(generator dir, song-side dir) over the whole catalogue, for a recommender bundle: ``generator`` with the
    catalogue's code table, and every catalogue song's vector, name/singer and cold-start flag."""
    from genrank_assets.ml.generator.tiger import save_tiger
    from genrank_assets.ml.serving.recommender import save_song_side

    directory = Path(directory)
    tiger_dir = save_tiger(generator.with_code_table(catalogue.code_table()), directory / "tiger")
    songs_dir = save_song_side(directory / "songs", catalogue.song_vectors(), raw_songs, cold_songs(catalogue))
    return tiger_dir, songs_dir
