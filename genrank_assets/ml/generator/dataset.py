"""(text, target) pairs for the TIGER generator: a playlist title -> its songs' semantic-ID tokens."""
from __future__ import annotations

import numpy as np
import pandas as pd

from genrank_assets.ml.data.corpus import as_song_lists


def code_tokens(code) -> str:
    """(45, 67, 123) -> '<id_l1_45> <id_l2_67> <id_l3_123>'."""
    return " ".join(f"<id_l{level}_{int(k)}>" for level, k in enumerate(code, start=1))


def parse_target(target: str) -> list[tuple[int, ...]]:
    """Inverse of the target string: the list of codes, in order."""
    codes, current = [], []
    for tok in target.split():
        if not (tok.startswith("<id_l") and tok.endswith(">")):
            raise ValueError(f"not a semantic-ID token: {tok!r}")
        level, k = tok[5:-1].split("_")
        level = int(level)
        if level == 1 and current:
            codes.append(tuple(current))
            current = []
        if level != len(current) + 1:
            raise ValueError(f"token {tok!r} out of level order in target {target[:80]!r}")
        current.append(int(k))
    if current:
        codes.append(tuple(current))
    return codes


def query_text(title: str, tags: str, include_tags: bool) -> str:
    title = str(title).strip()
    tags = str(tags or "").strip()
    if include_tags and tags:
        return f"{title} {tags.replace(',', ' ')}".strip()
    return title


def build_generator_dataset(
    corpus: pd.DataFrame,
    code_of: dict[str, tuple[int, ...]],
    popularity: dict[str, int],
    *,
    splits: tuple[str, ...] = ("train", "val"),
    song_order: str = "playlist",
    max_songs_per_target: int = 20,
    windows_per_playlist: int = 1,
    include_tags: bool = False,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Rows (playlist_id, split, text, target, n_codes, window).

    Only playlists of ``splits`` are used (test never reaches training). A playlist's songs without a code are
    skipped; repeated codes (songs sharing a concept cluster) are kept once, first occurrence. With
    ``windows_per_playlist > 1`` a long playlist yields several targets: consecutive windows of
    ``max_songs_per_target`` codes (playlist order) or, once the windows run out, seeded random samples.
    """
    if song_order not in ("playlist", "popularity"):
        raise ValueError(f"song_order must be 'playlist' or 'popularity', got {song_order!r}")
    if max_songs_per_target < 1 or windows_per_playlist < 1:
        raise ValueError("max_songs_per_target and windows_per_playlist must be >= 1")
    rng = np.random.default_rng(seed)
    rows = []
    stats = {"playlists_in": 0, "no_text": 0, "no_coded_songs": 0, "songs_without_code": 0}
    part = corpus[corpus["split"].isin(splits)]
    for pid, title, tags, split, songs in zip(
        part["playlist_id"], part["title"], part["tags"], part["split"], as_song_lists(part["song_ids"])
    ):
        stats["playlists_in"] += 1
        text = query_text(title, tags, include_tags)
        if not text:
            stats["no_text"] += 1
            continue
        if song_order == "popularity":
            songs = sorted(dict.fromkeys(songs), key=lambda s: -popularity.get(s, 0))
        codes, seen = [], set()
        for s in songs:
            c = code_of.get(s)
            if c is None:
                stats["songs_without_code"] += 1
                continue
            if c not in seen:
                seen.add(c)
                codes.append(c)
        if not codes:
            stats["no_coded_songs"] += 1
            continue
        for w, window in enumerate(_windows(codes, max_songs_per_target, windows_per_playlist, rng)):
            rows.append((pid, split, text, " ".join(code_tokens(c) for c in window), len(window), w))
    df = pd.DataFrame(rows, columns=["playlist_id", "split", "text", "target", "n_codes", "window"])
    stats["pairs"] = len(df)
    stats.update({f"pairs_{s}": int((df["split"] == s).sum()) for s in splits})
    return df, stats


def _windows(codes: list, size: int, n: int, rng: np.random.Generator) -> list[list]:
    out = [codes[i : i + size] for i in range(0, len(codes), size)][:n]
    # Short playlists give one window; long ones give up to n, topped up with random ordered samples.
    while len(out) < n and len(codes) > size:
        idx = np.sort(rng.choice(len(codes), size=size, replace=False))
        out.append([codes[i] for i in idx])
    return out
