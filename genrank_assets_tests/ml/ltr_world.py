"""A small planted world for the learning-to-rank tests: themed playlists (English and Chinese titles), songs
with names and singers, song vectors clustered by theme, and tiny untrained TIGER / cross-encoder models (their
outputs are arbitrary but deterministic, which is all the feature tests need)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from genrank_assets.ml.vectors.song_vectors import SongVectors

THEMES = ["rock", "jazz", "gym", "深夜", "古风", "party"]
SONGS_PER_THEME = 12
SONG_DIM = 8
LEVELS = [4, 4, 4]
FILLERS = ["best", "my", "mix", "歌", "love", "new"]


def make_corpus(seed: int = 0) -> pd.DataFrame:
    """Per theme 10 train, 3 val and 2 test playlists titled with the theme's word, of that theme's songs."""
    rng = np.random.default_rng(seed)
    rows = []
    for t, theme in enumerate(THEMES):
        pool = [f"{theme}_{k}" for k in range(SONGS_PER_THEME)]
        for p in range(15):
            split = "train" if p < 10 else "val" if p < 13 else "test"
            title = f"{rng.choice(FILLERS)} {theme}" if p % 3 else theme
            songs = list(rng.choice(pool, size=5, replace=False))
            rows.append({"playlist_id": f"{split}_{t}_{p}", "title": title, "tags": "", "song_ids": songs,
                         "split": split})
    return pd.DataFrame(rows)


def song_info() -> dict[str, tuple[str, str]]:
    info = {}
    for t, theme in enumerate(THEMES):
        for k in range(SONGS_PER_THEME):
            name = f"{theme} song {k}" if k % 2 == 0 else f"track {t}{k}"
            info[f"{theme}_{k}"] = (name, f"singer {t}")
    return info


def song_vectors(seed: int = 0) -> SongVectors:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(THEMES), SONG_DIM))
    ids, vectors = [], []
    for t, theme in enumerate(THEMES):
        for k in range(SONGS_PER_THEME):
            ids.append(f"{theme}_{k}")
            vectors.append(centres[t] + 0.3 * rng.normal(size=SONG_DIM))
    return SongVectors(ids, rng.integers(1, 20, size=len(ids)), np.asarray(vectors, dtype=np.float32))


def tiny_generator(corpus: pd.DataFrame, vectors: SongVectors, seed: int = 0):
    """An untrained tiny TIGER over codes that follow the themes (level 1 = theme mod 4)."""
    from genrank_assets.ml.generator.model import build_model
    from genrank_assets.ml.generator.tiger import CodeTable, TigerGenerator
    from genrank_assets.ml.generator.tokenizer import build_tokenizer

    rng = np.random.default_rng(seed)
    tokenizer = build_tokenizer(list(corpus["title"]) * 5, LEVELS, vocab_size=300, max_length=16)
    codes = np.array([[THEMES.index(s.split("_")[0]) % LEVELS[0], rng.integers(0, LEVELS[1]),
                       rng.integers(0, LEVELS[2])] for s in vectors.song_ids], dtype=np.int64)
    popularity = rng.integers(1, 30, size=len(vectors)).astype(np.float64)
    model = build_model(tokenizer, preset="tiny", seed=seed)
    return TigerGenerator(model, tokenizer, CodeTable(vectors.song_ids, codes, popularity), target_mode="single",
                          num_beams=8)


def tiny_ranker(generator, seed: int = 0):
    from genrank_assets.ml.ranking.cross_encoder.model import CrossEncoderRanker

    return CrossEncoderRanker.from_config(generator.tokenizer, "tiny", SONG_DIM, seed=seed, use_song_text=False)


def tiny_world() -> dict:
    """The planted corpus, its song vectors, and the tiny untrained TIGER and cross-encoder over them."""
    corpus, vectors = make_corpus(), song_vectors()
    generator = tiny_generator(corpus, vectors)
    return {"corpus": corpus, "vectors": vectors, "generator": generator, "ranker": tiny_ranker(generator)}
