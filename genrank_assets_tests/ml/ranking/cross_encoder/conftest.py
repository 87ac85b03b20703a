import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from genrank_assets.ml.vectors.song_vectors import SongVectors  # noqa: E402
from genrank_assets_tests.ml.ranking.cross_encoder.world import (  # noqa: E402
    FILLERS,
    SONG_DIM,
    SONGS_PER_THEME,
    THEMES,
    make_tokenizer,
)


@pytest.fixture(scope="session")
def world():
    """8 themes; songs whose vectors cluster by theme; playlists titled with their theme's word."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(len(THEMES), SONG_DIM)).astype(np.float32)
    song_ids, vectors, theme_of = [], [], {}
    for t, theme in enumerate(THEMES):
        for k in range(SONGS_PER_THEME):
            sid = f"{theme}_{k}"
            song_ids.append(sid)
            vectors.append(centers[t] + 0.3 * rng.normal(size=SONG_DIM).astype(np.float32))
            theme_of[sid] = t
    song_vectors = SongVectors(song_ids, rng.integers(1, 50, size=len(song_ids)), np.stack(vectors))
    song_text_of = {
        sid: f"track{int(rng.integers(0, 20))} - artist{int(rng.integers(0, 20))}" for sid in song_ids
    }
    rows = []
    for t, theme in enumerate(THEMES):
        for p in range(12):
            title = f"{rng.choice(FILLERS)} {theme} {rng.choice(FILLERS)}"
            songs = list(rng.choice([f"{theme}_{k}" for k in range(SONGS_PER_THEME)], size=6, replace=False))
            rows.append(
                {
                    "playlist_id": f"pl{t}_{p}",
                    "title": title,
                    "tags": "",
                    "song_ids": songs,
                    "split": "val" if p >= 9 else "train",
                }
            )
    corpus = pd.DataFrame(rows)
    texts = list(corpus["title"]) + list(song_text_of.values()) + ["unseen words here"]
    return {
        "corpus": corpus,
        "song_vectors": song_vectors,
        "song_text_of": song_text_of,
        "theme_of": theme_of,
        "tokenizer": make_tokenizer(texts),
    }
