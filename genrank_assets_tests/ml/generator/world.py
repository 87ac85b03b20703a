"""Shared test data of the generator tests: titles, a code space and playlists whose titles own their songs."""
import numpy as np

LEVELS = [8, 8, 4]
TITLES = [
    "深夜伤感情歌", "gym running bgm", "适合深夜听的抒情歌曲", "emo 伤感 英文歌", "workout music 健身",
    "华语 流行 经典", "周末 咖啡馆 jazz", "study focus lofi", "古风 国风 中国风", "party dance 派对",
]  # fmt: skip


def playlists(code_table, n_playlists=20, seed=0):
    """Titles and song lists where each title owns a fixed group of songs (learnable)."""
    rng = np.random.default_rng(seed)
    texts, songs = [], []
    for p in range(n_playlists):
        group = TITLES[p % len(TITLES)]
        base = (p % len(TITLES)) * 4
        texts.append(f"{group} {p}")
        songs.append([code_table.song_ids[(base + int(j)) % len(code_table)] for j in rng.integers(0, 6, 5)])
    return texts, songs
