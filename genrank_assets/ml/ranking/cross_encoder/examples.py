"""Stage `ranking`, data: (text, song, label) examples with hard negatives, and their encoded form.

* :func:`build_ranker_examples` — the ``ranker_dataset`` table: positives from each playlist, negatives from
  the catalogue (random, by popularity), the generator's proposals, the positives' level-1 clusters and the
  playlist's own candidate pool (``candidates.crossfit_pool_songs``: the songs the ranker will score there).
* :class:`EncodedPairs` — pairs tokenised once (token lists per distinct text and song text, per-pair indices),
  batched on demand for training, evaluation and ``CrossEncoderRanker.score_pairs``; :func:`encode_frame` makes
  them from an examples table.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from genrank_assets.ml.vectors.song_vectors import SongVectors

log = logging.getLogger(__name__)

NEGATIVE_KINDS = ("positive", "random", "generator", "same_cluster", "pool")


@dataclass
class EncodedPairs:
    """Pairs kept compact: token lists per distinct text / song text, plus per-pair indices."""

    text_tokens: list[list[int]]
    text_index: np.ndarray  # (n,) into text_tokens
    song_text_tokens: list[list[int]] | None
    song_text_index: np.ndarray | None  # (n,) into song_text_tokens
    vector_table: np.ndarray  # (m, dim) float32
    vector_index: np.ndarray  # (n,) into vector_table
    labels: np.ndarray  # (n,) float32

    def __len__(self) -> int:
        return len(self.text_index)

    @classmethod
    def build(cls, ranker, texts, vector_table, vector_index, song_texts, labels) -> EncodedPairs:
        unique_texts, text_index = _factorize(texts)
        text_tokens = ranker.token_ids(unique_texts, ranker.config.max_title_tokens)
        song_text_tokens = song_text_index = None
        if song_texts is not None:
            unique_song_texts, song_text_index = _factorize(song_texts)
            song_text_tokens = ranker.token_ids(unique_song_texts, ranker.config.max_song_text_tokens)
        return cls(
            text_tokens=text_tokens,
            text_index=text_index,
            song_text_tokens=song_text_tokens,
            song_text_index=song_text_index,
            vector_table=np.ascontiguousarray(vector_table, dtype=np.float32),
            vector_index=np.asarray(vector_index, dtype=np.int64),
            labels=np.asarray(labels, dtype=np.float32),
        )

    def batch(self, ranker, rows: np.ndarray, device) -> tuple[torch.Tensor, ...]:
        sequences = [self.text_tokens[i] for i in self.text_index[rows]]
        if self.song_text_tokens is not None:
            sequences = [t + self.song_text_tokens[s] for t, s in zip(sequences, self.song_text_index[rows])]
        input_ids, attention_mask = ranker.pad(sequences)
        vectors = torch.from_numpy(self.vector_table[self.vector_index[rows]])
        labels = torch.from_numpy(self.labels[rows])
        return input_ids.to(device), attention_mask.to(device), vectors.to(device), labels.to(device)


def _factorize(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(list(values), dtype=object), sort=False)
    return [str(u) for u in uniques], codes.astype(np.int64)


def encode_frame(
    ranker, df: pd.DataFrame, song_vectors: SongVectors, song_text_of, name: str
) -> EncodedPairs:
    """``EncodedPairs`` of an examples table (columns text, song_id, label) for ``ranker``'s tokenizer."""
    missing = [c for c in ("text", "song_id", "label") if c not in df.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}")
    if len(df) == 0:
        raise ValueError(f"{name} has no rows")
    labels = pd.to_numeric(df["label"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"{name}.label must hold only 0 and 1")
    song_ids = df["song_id"].astype(str).tolist()
    vector_index = np.fromiter(
        (-1 if (i := song_vectors.index_of(s)) is None else i for s in song_ids),
        dtype=np.int64,
        count=len(song_ids),
    )
    unknown = vector_index < 0
    if unknown.any():
        examples = [song_ids[i] for i in np.flatnonzero(unknown)[:5]]
        raise ValueError(
            f"{name}: {int(unknown.sum())} rows have a song_id without a vector, e.g. {examples}"
        )
    song_texts = None
    if ranker.config.use_song_text:
        if song_text_of is None:
            raise ValueError("song_text_of is required: this ranker was built with use_song_text=True")
        song_texts = [str(song_text_of.get(s, "")) for s in song_ids]
        n_missing = sum(1 for s in set(song_ids) if s not in song_text_of)
        if n_missing:
            log.warning(
                "%s: %d songs have no text in song_text_of; they get an empty song text", name, n_missing
            )
    texts = df["text"].astype(str).tolist()
    return EncodedPairs.build(ranker, texts, song_vectors.vectors, vector_index, song_texts, labels)


def generator_proposals(generator, titles: Sequence[str], n: int, num_beams: int, *, chunk: int = 256,
                        log_fn: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """``generator.generate_candidates_batch`` for every title (on the generator's device), ``chunk`` titles at a
    time: title -> proposed song ids, the hard negatives' "generator" source."""
    proposals: dict[str, list[str]] = {}
    for start in range(0, len(titles), chunk):
        part = list(titles[start : start + chunk])
        for title, candidates in zip(part, generator.generate_candidates_batch(part, n=n, num_beams=num_beams)):
            proposals[title] = list(candidates)
        if log_fn is not None:
            log_fn(f"  {min(start + chunk, len(titles))}/{len(titles)} titles")
    return proposals


_CORPUS_COLUMNS = ("playlist_id", "title", "song_ids", "split")


@dataclass(frozen=True)
class RankerExamplesDefaults:
    """Defaults of `build_ranker_examples`, which the `ranker_dataset` asset config reads."""

    max_positives_per_playlist: int = 20
    negatives_per_positive: int = 4
    random_negative_share: float = 0.5  # the rest: generator proposals and same level-1 cluster songs
    popularity_weighted: bool = True
    seed: int = 0


RANKER_EXAMPLES = RankerExamplesDefaults()


def build_ranker_examples(
    corpus_df: pd.DataFrame,
    song_vectors: SongVectors,
    *,
    split: str | Sequence[str] = "train",
    max_positives_per_playlist: int = RANKER_EXAMPLES.max_positives_per_playlist,
    negatives_per_positive: int = RANKER_EXAMPLES.negatives_per_positive,
    random_negative_share: float = RANKER_EXAMPLES.random_negative_share,
    popularity_weighted: bool = RANKER_EXAMPLES.popularity_weighted,
    hard_negative_fn: Callable[[str], Sequence[str]] | None = None,
    cluster_of: Callable[[str], object] | Mapping[str, object] | None = None,
    pool_of: Mapping[str, Sequence[str]] | None = None,
    seed: int = RANKER_EXAMPLES.seed,
) -> pd.DataFrame:
    """(text, song, label) examples from playlists: the title is the text.

    Positives: distinct songs of the playlist that have a vector, at most ``max_positives_per_playlist``
    (seeded sample). Negatives: ``negatives_per_positive`` per positive, never a song of that playlist, never
    repeated within a playlist. ``random_negative_share`` of them are drawn from the whole catalogue (by
    popularity when ``popularity_weighted``, else uniformly); the rest are hard negatives, split evenly between
    the sources given: "generator" (uniform among ``hard_negative_fn(title)``'s proposals), "same_cluster"
    (a song of the same level-1 cluster as a positive, ``cluster_of(song_id)``) and "pool" (uniform among
    ``pool_of[playlist_id]``, its candidate pool from sources that never saw it). A hard source that runs short
    is filled by the other, then by random songs. Each playlist draws from its own RNG (seed, crc32 of its id),
    so the result is deterministic and a playlist's examples do not depend on the others.
    """
    _check_corpus(corpus_df)
    if max_positives_per_playlist <= 0:
        raise ValueError(f"max_positives_per_playlist must be positive, got {max_positives_per_playlist}")
    if negatives_per_positive < 0:
        raise ValueError(f"negatives_per_positive must be >= 0, got {negatives_per_positive}")
    if not 0.0 <= random_negative_share <= 1.0:
        raise ValueError(f"random_negative_share must be in [0, 1], got {random_negative_share}")
    if len(song_vectors) == 0:
        raise ValueError("song_vectors is empty")
    splits = {split} if isinstance(split, str) else set(split)
    selected = corpus_df[corpus_df["split"].isin(splits)]

    negatives_of = _NegativeSampler(song_vectors, negatives_per_positive, random_negative_share, popularity_weighted,
                                    hard_negative_fn, cluster_of, pool_of)
    columns: dict[str, list] = {
        c: [] for c in ("playlist_id", "split", "text", "song_id", "label", "negative_kind")
    }
    counts = {"playlists": 0, "skipped_empty_title": 0, "skipped_no_vectors": 0, "short_negatives": 0}

    for pid, title, songs, split_name in zip(
        selected["playlist_id"], selected["title"], selected["song_ids"], selected["split"]
    ):
        pid = str(pid)
        text = "" if title is None or (isinstance(title, float) and math.isnan(title)) else str(title).strip()
        if not text:
            counts["skipped_empty_title"] += 1
            continue
        own_songs = [str(s) for s in songs] if songs is not None else []
        own_indices = {i for i in map(song_vectors.index_of, own_songs) if i is not None}
        candidates = list(dict.fromkeys(i for i in map(song_vectors.index_of, own_songs) if i is not None))
        if not candidates:
            counts["skipped_no_vectors"] += 1
            continue
        rng = np.random.default_rng([seed, zlib.crc32(pid.encode("utf-8"))])
        positives = candidates
        if len(candidates) > max_positives_per_playlist:
            chosen = rng.choice(len(candidates), size=max_positives_per_playlist, replace=False)
            positives = [candidates[i] for i in np.sort(chosen)]

        negatives, short = negatives_of.sample(text, pid, positives, own_indices, rng)
        counts["short_negatives"] += short

        rows = [(i, 1, "positive") for i in positives] + [(i, 0, kind) for i, kind in negatives]
        for index, label, kind in rows:
            columns["playlist_id"].append(pid)
            columns["split"].append(str(split_name))
            columns["text"].append(text)
            columns["song_id"].append(song_vectors.song_ids[index])
            columns["label"].append(label)
            columns["negative_kind"].append(kind)
        counts["playlists"] += 1

    examples = pd.DataFrame(columns)
    examples["label"] = examples["label"].astype(np.int64)
    log.info(
        "ranker examples (%s): %d rows from %d playlists (%s); skipped %d empty titles, %d without vectors; "
        "%d negatives short (catalogue too small)",
        ",".join(sorted(splits)),
        len(examples),
        counts["playlists"],
        ", ".join(f"{k}={v}" for k, v in examples["negative_kind"].value_counts().items()),
        counts["skipped_empty_title"],
        counts["skipped_no_vectors"],
        counts["short_negatives"],
    )
    return examples


def _check_corpus(corpus_df: pd.DataFrame) -> None:
    if not isinstance(corpus_df, pd.DataFrame):
        raise TypeError(f"corpus_df must be a pandas DataFrame, got {type(corpus_df).__name__}")
    missing = [c for c in _CORPUS_COLUMNS if c not in corpus_df.columns]
    if missing:
        raise ValueError(f"corpus_df is missing column(s) {missing}; it has {list(corpus_df.columns)}")


def _split_evenly(total: int, parts: int) -> list[int]:
    """total split into `parts` integers that differ by at most one, the larger ones first."""
    if parts == 0:
        return []
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _sample_unused(pool: Sequence[int], wanted: int, taken: set[int], rng: np.random.Generator) -> list[int]:
    """Up to `wanted` distinct items of `pool` not in `taken`, uniformly; adds them to `taken`."""
    if wanted <= 0:
        return []
    free = [i for i in pool if i not in taken]
    if len(free) > wanted:
        free = [free[j] for j in np.sort(rng.choice(len(free), size=wanted, replace=False))]
    taken.update(free)
    return free


class _NegativeSampler:
    """The negatives of one playlist: hard sources first (generator proposals, same cluster, its pool), each topping
    up the one before it, then random catalogue songs for the rest; never a song in ``taken``."""

    def __init__(self, song_vectors, negatives_per_positive, random_share, popularity_weighted, hard_negative_fn,
                 cluster_of, pool_of=None):
        self.song_vectors = song_vectors
        self.per_positive = negatives_per_positive
        self.random_share = random_share
        self.random = _CatalogueSampler(song_vectors, popularity_weighted)
        self.hard_negative_fn = hard_negative_fn
        self.clusters = _ClusterIndex(song_vectors, cluster_of) if cluster_of is not None else None
        self.pool_of = pool_of
        self.sources = (["generator"] if hard_negative_fn is not None else []) + (
            ["same_cluster"] if self.clusters is not None else []) + (["pool"] if pool_of is not None else [])
        self.proposals_of_title: dict[str, list[int]] = {}

    def sample(self, text: str, playlist_id: str, positives: list[int], own: set[int], rng
               ) -> tuple[list[tuple[int, str]], int]:
        """(negatives as (song index, kind), how many the catalogue could not supply)."""
        n_negatives = len(positives) * self.per_positive
        n_random = round(n_negatives * self.random_share) if self.sources else n_negatives
        quota = _split_evenly(n_negatives - n_random, len(self.sources))
        taken = set(own)  # never a song of the playlist, never the same negative twice
        negatives: list[tuple[int, str]] = []
        shortfall = 0
        for source, wanted in zip(self.sources, quota):
            wanted += shortfall
            if source == "generator":
                picked = _sample_unused(self.proposals(text), wanted, taken, rng)
            elif source == "pool":
                picked = _sample_unused(self.indices(self.pool_of.get(playlist_id, ())), wanted, taken, rng)
            else:
                picked = self.clusters.sample(positives, wanted, taken, rng)
            negatives += [(i, source) for i in picked]
            shortfall = wanted - len(picked)
        n_random += shortfall
        picked = self.random.sample(n_random, taken, rng)
        return negatives + [(i, "random") for i in picked], n_random - len(picked)

    def proposals(self, text: str) -> list[int]:
        if text not in self.proposals_of_title:
            self.proposals_of_title[text] = self.indices(self.hard_negative_fn(text))
        return self.proposals_of_title[text]

    def indices(self, song_ids) -> list[int]:
        """The distinct vector indices of ``song_ids``, in order; songs without a vector dropped."""
        found = (self.song_vectors.index_of(str(s)) for s in song_ids)
        return list(dict.fromkeys(i for i in found if i is not None))


class _CatalogueSampler:
    """Draws songs from the whole catalogue, uniformly or proportionally to their train counts."""

    def __init__(self, song_vectors: SongVectors, popularity_weighted: bool):
        self.n = len(song_vectors)
        self.cumulative = None
        if popularity_weighted:
            weights = np.maximum(song_vectors.counts.astype(np.float64), 0.0)
            if weights.sum() <= 0:
                raise ValueError("popularity_weighted=True but song_vectors.counts are all zero")
            self.cumulative = np.cumsum(weights) / weights.sum()

    def draw(self, k: int, rng: np.random.Generator) -> np.ndarray:
        if self.cumulative is None:
            return rng.integers(0, self.n, size=k)
        return np.minimum(np.searchsorted(self.cumulative, rng.random(k), side="right"), self.n - 1)

    def sample(
        self, wanted: int, taken: set[int], rng: np.random.Generator, max_rounds: int = 30
    ) -> list[int]:
        picked: list[int] = []
        for _ in range(max_rounds):
            if len(picked) >= wanted:
                break
            for i in self.draw(2 * (wanted - len(picked)) + 8, rng).tolist():
                if i not in taken:
                    taken.add(i)
                    picked.append(i)
                    if len(picked) == wanted:
                        break
        return picked


class _ClusterIndex:
    """Level-1 cluster of every song with a vector, and the members of each cluster."""

    def __init__(self, song_vectors: SongVectors, cluster_of):
        lookup = cluster_of.get if isinstance(cluster_of, Mapping) else cluster_of
        self.cluster = [lookup(s) for s in song_vectors.song_ids]
        members: dict[object, list[int]] = {}
        for index, code in enumerate(self.cluster):
            if code is not None:
                members.setdefault(_hashable(code), []).append(index)
        self.members = {code: np.asarray(ix, dtype=np.int64) for code, ix in members.items()}

    def sample(
        self, positives: Sequence[int], wanted: int, taken: set[int], rng, attempts: int = 8
    ) -> list[int]:
        """For the k-th negative, a song from the cluster of positive k (cycling), not in `taken`."""
        picked: list[int] = []
        for k in range(wanted * 2):  # two passes over the positives before giving up
            if len(picked) == wanted:
                break
            code = self.cluster[positives[k % len(positives)]]
            pool = self.members.get(_hashable(code)) if code is not None else None
            if pool is None:
                continue
            for i in pool[rng.integers(0, len(pool), size=attempts)].tolist():
                if i not in taken:
                    taken.add(i)
                    picked.append(i)
                    break
        return picked


def _hashable(code):
    return code.item() if isinstance(code, np.generic) else code

