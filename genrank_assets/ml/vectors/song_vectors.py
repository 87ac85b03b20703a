"""Stage `vectors`: skip-gram word2vec over playlists (songs are words, playlists are sentences)."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word2VecDefaults:
    """Defaults of `train_song_vectors`, which the `song_vectors` asset config reads (one place for each).

    The seed used vector_size=512, min_count=10, epochs=20 (presets/gpu-seed.yaml). Smaller here: on
    mpd7k-sized data min_count 10 throws away over half of what users want, and 64 dimensions did as well as
    128 (docs/findings.md). workers=1 keeps gensim bit-for-bit reproducible.
    """

    sg: int = 1
    vector_size: int = 64
    window: int = 50
    min_count: int = 2
    sample: float = 1e-3
    epochs: int = 10
    negative: int = 5
    workers: int = 1
    seed: int = 0


W2V = Word2VecDefaults()


@dataclass
class SongVectors:
    """Song vectors in a fixed order: row i of ``vectors`` belongs to ``song_ids[i]``."""

    song_ids: list[str]
    counts: np.ndarray  # int64, occurrences in the training playlists
    vectors: np.ndarray  # float32 (n_songs, dim)
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if len(self.song_ids) != len(self.counts) or len(self.song_ids) != len(self.vectors):
            raise ValueError(
                f"SongVectors: {len(self.song_ids)} ids, {len(self.counts)} counts, {len(self.vectors)} vectors"
            )
        self._index = {s: i for i, s in enumerate(self.song_ids)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.song_ids)

    def index_of(self, song_id: str) -> int | None:
        return self._index.get(song_id)

    def normalized(self) -> np.ndarray:
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        return self.vectors / np.maximum(norms, 1e-12)

    def most_similar(self, song_id: str, k: int = 10) -> list[tuple[str, float]]:
        """The k songs with the highest cosine similarity to ``song_id`` (itself excluded)."""
        i = self.index_of(song_id)
        if i is None:
            raise KeyError(f"song {song_id!r} has no vector (unknown, test-only, or below min_count)")
        unit = self.normalized()
        sims = unit @ unit[i]
        sims[i] = -np.inf
        k = min(k, len(self) - 1)
        top = np.argpartition(-sims, k)[:k] if k < len(self) - 1 else np.arange(len(self))
        top = top[np.argsort(-sims[top], kind="stable")][:k]
        return [(self.song_ids[j], float(sims[j])) for j in top]


def train_song_vectors(sentences: Sequence[Sequence[str]], **params) -> SongVectors:
    """``train_word2vec``'s song vectors alone (the model is dropped)."""
    return train_word2vec(sentences, **params)[0]


def train_word2vec(
    sentences: Sequence[Sequence[str]],
    *,
    vector_size: int = W2V.vector_size,
    window: int = W2V.window,
    min_count: int = W2V.min_count,
    sg: int = W2V.sg,
    sample: float = W2V.sample,
    epochs: int = W2V.epochs,
    negative: int = W2V.negative,
    workers: int = W2V.workers,
    seed: int = W2V.seed,
):
    """Train gensim Word2Vec; songs are words, playlists are sentences. Returns (SongVectors, the gensim model):
    the model (with its output weights and vocabulary) is what ``update_word2vec`` continues from.

    gensim is only bit-for-bit reproducible with ``workers=1`` (thread scheduling changes the order of
    updates); ``stats['deterministic']`` says which case a run was.
    """
    from gensim.models import Word2Vec

    sentences = _clean_sentences(sentences)
    if not sentences:
        raise ValueError("train_song_vectors: no non-empty playlists to train on")
    t0 = time.perf_counter()
    model = Word2Vec(
        sentences=sentences,
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        sg=sg,
        sample=sample,
        epochs=epochs,
        negative=negative,
        workers=workers,
        seed=seed,
        # hashfxn must not depend on PYTHONHASHSEED for the initial vectors to be reproducible
        hashfxn=_stable_hash,
    )
    seconds = time.perf_counter() - t0
    sv = vectors_of(model)
    total_tokens = sum(len(s) for s in sentences)
    covered = int(sv.counts.sum())
    log.info("word2vec: %d songs from %d playlists in %.1fs", len(sv), len(sentences), seconds)
    sv.stats = {
        "vocabulary_size": len(sv),
        "train_playlists": len(sentences),
        "train_rows": total_tokens,
        "train_rows_covered": covered,
        "share_train_rows_covered": covered / total_tokens if total_tokens else 0.0,
        "training_seconds": seconds,
        "deterministic": workers == 1,
    }
    return sv, model


def vectors_of(model) -> SongVectors:
    """The SongVectors of a gensim Word2Vec model, in its vocabulary order."""
    wv = model.wv
    song_ids = list(wv.index_to_key)
    counts = np.array([wv.get_vecattr(s, "count") for s in song_ids], dtype=np.int64)
    return SongVectors(song_ids=song_ids, counts=counts, vectors=np.asarray(wv.vectors, dtype=np.float32))


def update_word2vec(model, sentences: Sequence[Sequence[str]], epochs: int | None = None) -> dict:
    """Continue ``model`` on new playlists, in place: songs first seen here (at least ``min_count`` times in
    them) join the vocabulary and are trained; every song the model knew keeps its vector exactly (its lock
    factor is 0: the codes, the cross-encoder and the ranker were fitted to those vectors). The output weights
    go on learning, so the next update starts from what this one saw. Deterministic for a given model (its
    random state and hash function travel in the saved model; workers=1). Returns what changed."""
    sentences = _clean_sentences(sentences)
    known = len(model.wv)
    if not sentences:
        return {"new_songs": 0, "playlists": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    model.build_vocab(sentences, update=True)
    lock = np.ones(len(model.wv), dtype=np.float32)
    lock[:known] = 0.0
    model.wv.vectors_lockf = lock
    model.train(sentences, total_examples=len(sentences), epochs=epochs or model.epochs)
    model.wv.vectors_lockf = np.ones(1, dtype=np.float32)  # a later full use of the model trains every song
    return {"new_songs": len(model.wv) - known, "playlists": len(sentences), "seconds": time.perf_counter() - t0}


def save_word2vec(model, path, trained_playlists: Sequence[str]) -> Path:
    """The gensim model and, beside it (``<path>.playlists.json``), the ids of the playlists it trained on, so a
    later ``update_word2vec`` can tell which playlists are new to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    Path(f"{path}.playlists.json").write_text(json.dumps(sorted(map(str, trained_playlists))))
    return path


def trained_playlists_of(path) -> set[str]:
    """The playlist ids ``save_word2vec`` recorded with the model at ``path``."""
    sidecar = Path(f"{path}.playlists.json")
    if not sidecar.is_file():
        raise ValueError(f"{sidecar} is missing: the word2vec model at {path} does not say what it trained on")
    return set(json.loads(sidecar.read_text()))


def _clean_sentences(sentences: Sequence[Sequence[str]]) -> list[list[str]]:
    return [list(map(str, s)) for s in sentences if len(s) > 0]


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def to_frame(sv: SongVectors):
    """The warehouse layout: song_id, count, vector (float32 arrays; stored as FLOAT[dim])."""
    import pandas as pd

    return pd.DataFrame({"song_id": sv.song_ids, "count": sv.counts, "vector": list(sv.vectors)})


def from_frame(df) -> SongVectors:
    if len(df) == 0:
        raise ValueError("song_vectors table is empty")
    return SongVectors(
        song_ids=[str(s) for s in df["song_id"]],
        counts=df["count"].to_numpy(),
        vectors=np.stack([np.asarray(v, dtype=np.float32) for v in df["vector"]]),
    )


def neighbour_table(sv: SongVectors, songs, n_queries: int = 5, k: int = 5):
    """Nearest neighbours of the most frequent songs, with names, so a person can judge the vectors."""
    import pandas as pd

    info = songs.set_index("song_id") if songs is not None and len(songs) else None

    def label(song_id: str) -> str:
        if info is not None and song_id in info.index:
            row = info.loc[song_id]
            return f"{row['song_name']} – {row['singer']}"
        return song_id

    rows = []
    for i in np.argsort(-sv.counts, kind="stable")[:n_queries]:
        query = sv.song_ids[i]
        for rank, (other, sim) in enumerate(sv.most_similar(query, k), start=1):
            rows.append({"song": label(query), "rank": rank, "neighbour": label(other), "cosine": round(sim, 3)})
    return pd.DataFrame(rows)
