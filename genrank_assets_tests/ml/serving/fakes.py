"""Planted stand-ins for the trained models, so the recommender and the evaluation run in milliseconds.

Three themes of ten songs each plus five hits that sit in every train playlist. The fake generator proposes the
ten songs of the theme named in the text, in reverse order (t_9 first); the fake ranker scores a song by how much
of the text's theme its vector holds, t_0 most, so ranking puts the order right. Test and val playlists hold
t_0..t_4 of their theme: the ranker finds them, the generator's own order does not, popularity never does.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd

from genrank_assets.ml.data.corpus import train_popularity
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.recommender import ClassicalConfig, save_song_side
from genrank_assets.ml.vectors.song_vectors import SongVectors

THEMES = ("rock", "chill", "party")
HITS = [f"hit_{i}" for i in range(5)]
SONGS = {t: [f"{t}_{i}" for i in range(10)] for t in THEMES}


def planted_corpus(n_test: int = 3, n_val: int = 2) -> pd.DataFrame:
    rows = []
    for t in THEMES:
        for j in range(6):
            theme_songs = [SONGS[t][(j + i) % 10] for i in range(6)]
            rows.append((f"{t}-train-{j}", f"{t} mix {j}", theme_songs + HITS, "train"))
        for j in range(n_val):
            rows.append((f"{t}-val-{j}", f"{t} evening {j}", SONGS[t][:5], "val"))
        for j in range(n_test):
            rows.append((f"{t}-test-{j}", f"{t} night {j}", SONGS[t][:5], "test"))
    return pd.DataFrame({"playlist_id": [r[0] for r in rows], "title": [r[1] for r in rows], "tags": "",
                         "song_ids": [r[2] for r in rows], "split": [r[3] for r in rows]})


def theme_of(text: str) -> str | None:
    return next((t for t in THEMES if t in text), None)


def planted_song_vectors() -> SongVectors:
    ids = [s for t in THEMES for s in SONGS[t]] + HITS
    vectors = np.zeros((len(ids), len(THEMES) + 1), dtype=np.float32)
    for row, song in enumerate(ids):
        theme, _, index = song.partition("_")
        if theme in THEMES:
            vectors[row, THEMES.index(theme)] = 1.0 - int(index) / 20  # t_0 strongest
        else:
            vectors[row, -1] = 1.0
    return SongVectors(ids, np.ones(len(ids), dtype=np.int64), vectors)


class FakeGenerator:
    """The interface the recommender and the evaluation read from a TigerGenerator."""

    num_beams = 4

    def __init__(self, corpus: pd.DataFrame, song_ids: list[str]):
        pop = train_popularity(corpus)
        self.code_table = SimpleNamespace(song_ids=list(song_ids),
                                          popularity=np.array([pop.get(s, 0) for s in song_ids], dtype=np.float64))
        self.encoder = SimpleNamespace(clean=lambda text: text.strip().lower())
        self.calls = 0

    def generate_candidates(self, text: str, n: int = 100, num_beams: int | None = None) -> list[str]:
        self.calls += 1
        theme = theme_of(text)
        return list(reversed(SONGS[theme]))[:n] if theme else []

    def generate_candidates_batch(self, texts, n: int = 100, num_beams: int | None = None) -> list[list[str]]:
        return [self.generate_candidates(t, n, num_beams) for t in texts]

    def reset_counters(self) -> None:
        self.calls = 0

    @property
    def invalid_code_rate(self) -> float:
        return 0.0


class FakeRanker:
    config = SimpleNamespace(use_song_text=False)

    def score(self, text: str, vectors: np.ndarray, song_texts=None) -> np.ndarray:
        direction = np.zeros(vectors.shape[1], dtype=np.float32)
        theme = theme_of(text)
        if theme:
            direction[THEMES.index(theme)] = 4.0
        return vectors @ direction


def planted_models(corpus: pd.DataFrame):
    """(generator, ranker, song_vectors, song_info) for ``corpus``."""
    sv = planted_song_vectors()
    info = {s: (s.replace("_", " ").title(), "Singer") for s in sv.song_ids}
    return FakeGenerator(corpus, sv.song_ids), FakeRanker(), sv, info


class EchoModel(mlflow.pyfunc.PythonModel):
    """A pyfunc that answers its input: something to register where only the registry's versions matter."""

    def predict(self, context, model_input, params=None):
        return model_input


def log_echo(registered_model_name: str) -> None:
    """Log an EchoModel in the active run and register it as a new version of ``registered_model_name``. No
    requirements to infer (MLflow would spend seconds on a subprocess that scans imports)."""
    mlflow.pyfunc.log_model(name="model", python_model=EchoModel(), registered_model_name=registered_model_name,
                            pip_requirements=[])


# A stand-in for the genrank pyfuncs, logged from code as they are: its state is the text file in its model dir.
READS_ITS_DIR = str(Path(__file__).with_name("reads_its_dir_model.py"))


def song_info() -> dict[str, tuple[str, str]]:
    return {s: (s.replace("_", " ").title(), "Singer") for s in planted_song_vectors().song_ids}


def register_classical(root: Path, method: str, corpus: pd.DataFrame, *, queries_fingerprint: str = "abc",
                       ndcg_at_10: float = 0.5, queries: int = 9) -> registry.Challenger:
    """``method`` registered as the challenger, as ``evaluation_report`` registers a served classical system:
    the run's generator and ranker (stand-ins here: the bundle records them, a classical system reads neither),
    the train corpus and the song side. Needs MLflow pointed at a registry (``registry.connect``)."""
    root.mkdir(parents=True, exist_ok=True)
    models = {}
    for name in (registry.TIGER_NAME, registry.RANKER_NAME):
        directory = root / name
        directory.mkdir(exist_ok=True)
        (directory / "weights.txt").write_text(name)
        with mlflow.start_run():
            models[name] = registry.log_model_dir(directory, registered_name=name, python_model=READS_ITS_DIR)
    info = song_info()
    raw_songs = pd.DataFrame({"song_id": list(info), "song_name": [v[0] for v in info.values()],
                              "singer": [v[1] for v in info.values()]})
    songs = save_song_side(root / "songs", planted_song_vectors(), raw_songs)
    tiger_py = SimpleNamespace(artifact_paths={"model_dir": str(root / registry.TIGER_NAME)},
                               model_uri=models[registry.TIGER_NAME].uri)
    ranker_py = SimpleNamespace(artifact_paths={"model_dir": str(root / registry.RANKER_NAME), "songs_dir": str(songs)},
                                model_uri=models[registry.RANKER_NAME].uri)
    with mlflow.start_run():
        return registry.register_recommender(tiger_py, ranker_py, ClassicalConfig(method), corpus,
                                             root / f"bundle-{method}", method=method, split="test",
                                             queries=queries, queries_fingerprint=queries_fingerprint,
                                             ndcg_at_10=ndcg_at_10)
