"""The cleaned playlist corpus: one row per kept playlist, songs in playlist order, a deterministic split."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
# A share of the train playlists the learned upstream models (word2vec, TIGER, the cross-encoder) are not fitted on:
# the learning-to-rank ranker trains on their candidate lists, whose features then come from models that never saw
# them (``upstream_corpus``). The classical baselines and the served sources still fit on every train playlist.
HOLDOUT = "holdout"
# 0: the served upstream models see every train playlist and the ranker learns from cross-fitted folds instead
# (``fold_corpus``); a share > 0 is the older single-holdout design (its rows join the folds' rows).
LTR_HOLDOUT_SHARE = 0.0
# Cross-fitting: K copies of the upstream models, each fitted without one K-th of the train playlists, give every
# train playlist features from models that never saw it. benchmarks/ltr.py --crossfit 2 measured 2 folds on mpd7k
# (+0.0127 [+0.0039, +0.0221] NDCG@10 over ridge + co-occurrence); more folds cost one more model chain each.
CROSSFIT_FOLDS = 2
CORPUS_COLUMNS = ["playlist_id", "title", "tags", "song_ids", "split"]


def split_of(playlist_id: str) -> str:
    """docs/benchmark.md: b = crc32(id) % 10; 0 -> test, 1 -> val, else train."""
    b = zlib.crc32(str(playlist_id).encode("utf-8")) % 10
    return "test" if b == 0 else "val" if b == 1 else "train"


def upstream_corpus(corpus: pd.DataFrame, share: float = LTR_HOLDOUT_SHARE, seed: int = 0) -> pd.DataFrame:
    """``corpus`` with ``share`` of its train playlists relabelled ``HOLDOUT`` (crc32 of "ltr-holdout:<seed>:<id>",
    so a playlist keeps its place when others are added): the corpus the learned upstream models are fitted on.
    ``share`` 0 holds nothing out."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the LTR holdout share must be in [0, 1), got {share}")
    out = corpus.copy()
    buckets = np.array([zlib.crc32(f"ltr-holdout:{seed}:{p}".encode("utf-8")) % 10_000
                        for p in out["playlist_id"].astype(str)], dtype=np.int64)
    held = (out["split"] == "train").to_numpy() & (buckets < round(share * 10_000))
    out.loc[held, "split"] = HOLDOUT
    return out


def fold_of(playlist_ids, folds: int, seed: int = 0) -> np.ndarray:
    """The cross-fitting fold of each playlist: crc32 of "crossfit:<seed>:<id>" mod ``folds`` (a playlist keeps its
    fold when others are added)."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    return np.array([zlib.crc32(f"crossfit:{seed}:{p}".encode("utf-8")) % folds for p in map(str, playlist_ids)],
                    dtype=np.int64)


def fold_corpus(corpus: pd.DataFrame, fold: int, folds: int, seed: int = 0) -> pd.DataFrame:
    """``corpus`` with the train playlists of ``fold`` relabelled ``HOLDOUT``: what fold ``fold``'s upstream models
    are fitted on (the other folds' train playlists, val for early stopping), and whose holdout playlists they
    score for the ranker. Playlists already held out stay out of the fit and are not scored again."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in [0, {folds}), got {fold}")
    out = corpus.loc[corpus["split"] != HOLDOUT].copy()
    held = (out["split"] == "train").to_numpy() & (fold_of(out["playlist_id"], folds, seed) == fold)
    out.loc[held, "split"] = HOLDOUT
    return out


@dataclass
class CorpusResult:
    corpus: pd.DataFrame
    dropped: dict[str, int]  # reason -> playlists dropped
    unknown_songs_removed: int  # playlist-song rows removed because the song is not in raw_songs
    length_histogram: dict[str, int]


def build_corpus(
    playlists: pd.DataFrame,
    playlist_songs: pd.DataFrame,
    songs: pd.DataFrame,
    *,
    min_songs: int = 10,
    max_songs: int = 300,
    drop_unknown_songs: bool = False,
) -> CorpusResult:
    """Group playlist-song rows into playlists and keep those with ``min_songs..max_songs`` rows.

    Length counts playlist-song rows (a repeated song counts each time), after unknown songs are removed when
    ``drop_unknown_songs`` is on. Playlists without any song rows are dropped with reason ``no_songs``.
    """
    if min_songs < 1 or max_songs < min_songs:
        raise ValueError(f"need 1 <= min_songs <= max_songs, got min_songs={min_songs}, max_songs={max_songs}")
    ps = playlist_songs.sort_values(["playlist_id", "position"], kind="stable")
    unknown_removed = 0
    if drop_unknown_songs:
        known = ps["song_id"].isin(set(songs["song_id"]))
        unknown_removed = int((~known).sum())
        ps = ps[known]
    grouped = ps.groupby("playlist_id", sort=False)["song_id"].agg(list)
    info = playlists.set_index("playlist_id")
    lengths = grouped.map(len)

    dropped = {"no_songs": int((~info.index.isin(grouped.index)).sum())}
    too_short = lengths < min_songs
    too_long = lengths > max_songs
    dropped["too_short"] = int(too_short.sum())
    dropped["too_long"] = int(too_long.sum())
    kept = grouped[~(too_short | too_long)]

    corpus = pd.DataFrame(
        {
            "playlist_id": kept.index.to_numpy(dtype=object),
            "title": info.loc[kept.index, "title"].to_numpy(dtype=object),
            "tags": info.loc[kept.index, "tags"].fillna("").to_numpy(dtype=object),
            "song_ids": kept.to_numpy(dtype=object),
        }
    )
    corpus["split"] = [split_of(p) for p in corpus["playlist_id"]]
    # Stable order (by id as string) so re-materialising gives identical tables.
    corpus = corpus.sort_values("playlist_id", kind="stable").reset_index(drop=True)
    return CorpusResult(
        corpus=corpus[CORPUS_COLUMNS],
        dropped=dropped,
        unknown_songs_removed=unknown_removed,
        length_histogram=length_histogram(lengths[~(too_short | too_long)].to_numpy()),
    )


def length_histogram(lengths: np.ndarray) -> dict[str, int]:
    edges = [1, 10, 20, 50, 100, 200, 300, 10**9]
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        label = f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+"
        out[label] = int(((lengths >= lo) & (lengths < hi)).sum())
    return out


def train_popularity(corpus: pd.DataFrame) -> dict[str, int]:
    """Train playlists holding each song (a song counts once per playlist): the popularity every stage ranks
    ties by, fills short lists with and adds as a prior. Rows whose split is not "train" are ignored."""
    counts: dict[str, int] = {}
    for songs in corpus.loc[corpus["split"] == "train", "song_ids"]:
        for song in dict.fromkeys(map(str, songs)):
            counts[song] = counts.get(song, 0) + 1
    return counts


def as_song_lists(column) -> list[list[str]]:
    """song_ids read back from DuckDB can be numpy arrays; normalise to lists of str."""
    return [list(map(str, s)) for s in column]
