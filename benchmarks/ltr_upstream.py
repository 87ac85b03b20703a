"""The upstream models the learning-to-rank benchmark (benchmarks/ltr.py) reads, trained on a dataset's TRAIN
split with the ``ml/`` functions directly (no Dagster, no registry) and cached under benchmarks/.cache/.

Settings are read from a preset of genrank_assets/presets/ (``--preset``; cpu-real for mpd7k-size data: word2vec
dim 64 / window 50 / min_count 2 / 10 epochs; RQ-KMeans [128, 64, 32]; TIGER tiny, BPE 2,000, one code per
example, 4 samples per playlist, 8 epochs; cross-encoder from the TIGER encoder, 8 positives x 3 negatives per
playlist with generator hard negatives, 2 epochs, no song text; demo for the embedded demo data). As in the
pipeline, val playlists only give the early-stopping losses (TIGER val loss, ranker val AUC); they train no
weight.

    .venv/bin/python benchmarks/ltr_upstream.py [--data DIR] [--cache DIR] [--preset cpu-real|demo]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import DEFAULT_DATA, load_corpus  # noqa: E402

from genrank_assets.ml.data.corpus import train_popularity  # noqa: E402

log = logging.getLogger("benchmarks.ltr_upstream")

CACHE = Path(__file__).resolve().parent / ".cache" / "ltr"
PRESETS = Path(__file__).resolve().parents[1] / "genrank_assets" / "presets"


def preset_settings(name: str) -> dict:
    """The ``ops.<asset>.config`` mappings of a preset YAML, by asset name."""
    import yaml

    ops = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())["ops"]
    return {asset: dict(entry.get("config", {})) for asset, entry in ops.items()}


@dataclass
class Upstream:
    """What the candidate pool and the features read: corpus, song names, vectors, codes, generator, ranker."""

    corpus: pd.DataFrame
    songs: pd.DataFrame  # song_id, song_name, singer
    song_vectors: object  # SongVectors
    codes: tuple[list[str], np.ndarray]
    generator: object  # TigerGenerator
    ranker: object  # CrossEncoderRanker
    seconds: dict


def load_songs(data_dir: Path) -> pd.DataFrame:
    read = {"sep": "\t", "dtype": str, "keep_default_na": False, "quoting": csv.QUOTE_NONE, "encoding": "utf-8",
            "header": None}
    raw = pd.read_csv(data_dir / "gen_song_info.csv", usecols=[0, 1, 2], **read)
    raw.columns = ["song_id", "song_name", "singer"]
    return raw.drop_duplicates("song_id").reset_index(drop=True)


def load_data(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(corpus, songs). mpd7k through benchmarks/baselines.py's reader (clean files; the loader that reproduces
    docs/benchmark.md's figures); any other folder through the project's ingest (bad rows quarantined, as in the
    pipeline), every playlist kept."""
    if data_dir.resolve() == DEFAULT_DATA.resolve():
        return load_corpus(data_dir), load_songs(data_dir)
    from genrank_assets.ml.data.corpus import build_corpus
    from genrank_assets.ml.data.ingest import read_seed_folder

    raw = read_seed_folder(data_dir)
    corpus = build_corpus(raw.playlists, raw.playlist_songs, raw.songs, min_songs=1, max_songs=10**6).corpus
    corpus["song_ids"] = [list(map(str, s)) for s in corpus["song_ids"]]
    return corpus, raw.songs[["song_id", "song_name", "singer"]].drop_duplicates("song_id").reset_index(drop=True)


def _cache_dir(cache: Path, data_dir: Path, preset: str = "cpu-real") -> Path:
    tag = hashlib.sha256(f"{data_dir.resolve()}|{preset}".encode()).hexdigest()[:8]
    return cache / f"{data_dir.name}-{tag}"


def _timed(seconds: dict, name: str, fn):
    t0 = time.perf_counter()
    out = fn()
    seconds[name] = round(time.perf_counter() - t0, 1)
    return out


def fold_corpus(corpus: pd.DataFrame, fold: int, folds: int) -> pd.DataFrame:
    """Cross-fitting: the TRAIN playlists only, those of ``fold`` (crc32 of "ltr-fold:" + id, mod ``folds``)
    relabelled "val" — held out from every model fitted on this corpus, they become ranker training queries (and,
    as val does in the pipeline, the early-stopping set). The real val and test playlists are left out."""
    import zlib

    train = corpus[corpus["split"] == "train"].copy()
    held = np.array([zlib.crc32(f"ltr-fold:{p}".encode()) % folds == fold for p in train["playlist_id"]])
    train.loc[held, "split"] = "val"
    return train.reset_index(drop=True)


def build_upstream(data_dir: Path = DEFAULT_DATA, cache: Path = CACHE, threads: int = 2, preset: str = "cpu-real",
                   fold: tuple[int, int] | None = None) -> Upstream:
    """Train (or load from the cache) every upstream model on the train split of ``data_dir`` (with ``fold`` =
    (k, K): on the train playlists outside cross-fitting fold k, see ``fold_corpus``)."""
    import torch

    from genrank_assets.ml.semantic_ids.codes import codes_from_frame, codes_to_frame
    from genrank_assets.ml.vectors.song_vectors import from_frame, to_frame

    torch.set_num_threads(threads)
    directory = _cache_dir(cache, data_dir, preset)
    if fold is not None:
        directory = directory / f"fold{fold[0]}of{fold[1]}"
    settings = preset_settings(preset)
    directory.mkdir(parents=True, exist_ok=True)
    seconds: dict = json.loads((directory / "seconds.json").read_text()) if (directory / "seconds.json").exists() else {}
    corpus, songs = load_data(data_dir)
    if fold is not None:
        corpus = fold_corpus(corpus, *fold)

    vectors_path = directory / "song_vectors.parquet"
    if not vectors_path.exists():
        _timed(seconds, "word2vec", lambda: to_frame(_train_vectors(corpus, threads, settings["song_vectors"])).to_parquet(vectors_path))
    sv = from_frame(pd.read_parquet(vectors_path))

    codes_path = directory / "semantic_ids.parquet"
    if not codes_path.exists():
        _timed(seconds, "rq_kmeans", lambda: codes_to_frame(sv.song_ids, _fit_codes(sv, settings["semantic_ids"])).to_parquet(codes_path))
    song_ids, codes = codes_from_frame(pd.read_parquet(codes_path))

    from genrank_assets.ml.generator.tiger import load_tiger

    tiger_dir = directory / "tiger"
    if not (tiger_dir / "tiger_config.json").exists():
        _timed(seconds, "tiger", lambda: _train_tiger(corpus, song_ids, codes, tiger_dir, directory,
                                                                settings["tiger_model"]))
    generator = load_tiger(tiger_dir)

    from genrank_assets.ml.ranking.cross_encoder.model import load_ranker

    ranker_dir = directory / "ranker"
    if not (ranker_dir / "ranker_config.json").exists():
        _timed(seconds, "cross_encoder", lambda: _train_ranker(corpus, sv, song_ids, codes, generator, ranker_dir,
                                                               directory, settings))
    ranker = load_ranker(ranker_dir)
    (directory / "seconds.json").write_text(json.dumps(seconds, indent=2))
    return Upstream(corpus, songs, sv, (song_ids, codes), generator, ranker, seconds)


def _train_vectors(corpus: pd.DataFrame, threads: int, config: dict):
    from genrank_assets.ml.data.corpus import as_song_lists
    from genrank_assets.ml.vectors.song_vectors import train_song_vectors

    train = corpus[corpus["split"] == "train"]
    keys = ("vector_size", "window", "min_count", "epochs")
    return train_song_vectors(as_song_lists(train["song_ids"]), workers=threads,
                              **{k: config[k] for k in keys if k in config})


def _fit_codes(sv, config: dict) -> np.ndarray:
    from genrank_assets.ml.semantic_ids.rq_kmeans import RQKMeans

    return RQKMeans(levels=tuple(config["levels"]), seed=0).fit_predict(sv.normalized())


def _train_tiger(corpus, song_ids, codes, out_dir: Path, directory: Path, config: dict) -> None:
    from genrank_assets.ml.generator.dataset import build_generator_dataset, examples_from_pairs
    from genrank_assets.ml.generator.model import build_model
    from genrank_assets.ml.generator.tiger import CodeTable, TigerGenerator, save_tiger
    from genrank_assets.ml.generator.tokenizer import make_tokenizer
    from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger
    from genrank_assets.ml.training import TrainConfig

    popularity = train_popularity(corpus)
    code_of = {s: tuple(int(v) for v in c) for s, c in zip(song_ids, codes)}
    pairs, _ = build_generator_dataset(corpus, code_of, popularity, max_songs_per_target=20)
    levels = [int(v) for v in codes.max(axis=0) + 1]
    train = pairs[pairs["split"] == "train"]
    tokenizer = make_tokenizer("from_scratch", train["text"].tolist(), levels, vocab_size=config["vocab_size"])
    model = build_model(tokenizer, "from_scratch", config.get("preset", "tiny"), seed=0)
    settings = dict(mode=config.get("target_mode", "single"), max_codes=20, max_input_length=64,
                    samples_per_playlist=config.get("samples_per_playlist", 4))
    train_ds = examples_from_pairs(train, tokenizer, seed=0, **settings)
    val_ds = examples_from_pairs(pairs[pairs["split"] == "val"], tokenizer, seed=1, **settings)
    train_tiger(model, tokenizer, train_ds, val_ds, TrainConfig.from_mapping(config, TIGER_TRAINING),
                checkpoint_dir=directory / "ckpt_tiger", log_fn=log.info)
    table = CodeTable(song_ids, codes, np.array([popularity.get(s, 0) for s in song_ids], dtype=np.float64))
    save_tiger(TigerGenerator(model.to("cpu"), tokenizer, table, target_mode=settings["mode"],
                              num_beams=config.get("num_beams", 50)), out_dir)


def _train_ranker(corpus, sv, song_ids, codes, generator, out_dir: Path, directory: Path, settings: dict) -> None:
    from genrank_assets.ml.ranking.cross_encoder.examples import build_ranker_examples, generator_proposals
    from genrank_assets.ml.ranking.cross_encoder.model import build_ranker, save_ranker
    from genrank_assets.ml.ranking.cross_encoder.training import RANKER_TRAINING, train_ranker
    from genrank_assets.ml.training import TrainConfig

    titles = corpus.loc[corpus["split"].isin(["train", "val"]), "title"].astype(str)
    titles = sorted({t for t in titles if t.strip()})
    data, model = settings["ranker_dataset"], settings["ranker_model"]
    proposals = generator_proposals(generator, titles, data.get("generator_candidates", 50),
                                    data.get("generator_beams", 10), log_fn=log.info)
    cluster_of = dict(zip(song_ids, codes[:, 0].tolist()))
    frames = [build_ranker_examples(corpus, sv, split=split, max_positives_per_playlist=data["max_positives_per_playlist"],
                                    negatives_per_positive=data["negatives_per_positive"],
                                    hard_negative_fn=lambda t: proposals.get(t, []), cluster_of=cluster_of, seed=0)
              for split in ("train", "val")]
    ranker = build_ranker("tiger", sv.dim, generator=generator, use_song_text=model.get("use_song_text", False))
    train_ranker(ranker, frames[0], frames[1], sv, None, TrainConfig.from_mapping(model, RANKER_TRAINING),
                 checkpoint_dir=directory / "ckpt_ranker", log_fn=log.info)
    save_ranker(ranker.to("cpu"), out_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="cpu-real", help="a preset of genrank_assets/presets/ (cpu-real, demo)")
    parser.add_argument("--folds", type=int, default=0, help="also train the K cross-fitting fold models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    up = build_upstream(args.data, args.cache, args.threads, args.preset)
    print(json.dumps(up.seconds))
    for k in range(args.folds):
        up = build_upstream(args.data, args.cache, args.threads, args.preset, fold=(k, args.folds))
        print(f"fold {k}/{args.folds}:", json.dumps(up.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
