"""Cross-encoder ranker speed on this machine's CPU: scoring latency and training throughput.

Usage: .venv/bin/python benchmarks/ranker_model.py [--data ../shared/datasets/mpd7k] [--queries 200] [--threads 1]

Real text: test-split titles of mpd7k as queries, real "song name - singer" strings as candidates, a BPE tokenizer
of 2,000 pieces trained on train titles + song texts (as the TIGER tokenizer is). Song vectors are random (64-d):
their values do not change the cost. For each preset ("tiny", "small") and with/without song text:
- latency of ``score(title, 100 candidates)`` (one batched forward pass), p50/p95 over the queries, model loaded;
  baseline measured in the same run: the same 100 candidates scored one forward pass each;
- training throughput of ``train_ranker`` (samples/s, batch 64, fp32) on 4,096 (title, song) rows.
Prints a table and writes benchmarks/results/ranker_model.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrank_assets.ml.ranking.cross_encoder.model import CrossEncoderRanker
from genrank_assets.ml.ranking.cross_encoder.training import RANKER_TRAINING, train_ranker
from genrank_assets.ml.vectors.song_vectors import SongVectors

N_CANDIDATES = 100
SONG_DIM = 64


def load_text(data_dir: Path, n_songs: int, seed: int):
    info = pd.read_csv(
        data_dir / "gen_playlist_info.csv", sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False
    )
    info["split"] = [
        ("test", "val")[b] if (b := zlib.crc32(p.encode("utf-8")) % 10) < 2 else "train" for p in info["glid"]
    ]
    titles = info[info["listname"].str.strip() != ""]
    songs = pd.read_csv(
        data_dir / "gen_song_info.csv",
        sep="\t",
        header=None,
        dtype=str,
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        usecols=[0, 1, 2],
        names=["song_id", "name", "singer"],
    )
    songs = songs.sample(n=min(n_songs, len(songs)), random_state=seed)
    song_texts = (songs["name"] + " - " + songs["singer"]).tolist()
    return (
        titles[titles.split == "train"]["listname"].tolist(),
        titles[titles.split == "test"]["listname"].tolist(),
        songs["song_id"].tolist(),
        song_texts,
    )


def bpe_tokenizer(texts, vocab_size=2000):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"])
    )
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=128
    )


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "mean_ms": float(a.mean()),
    }


def time_scoring(ranker, queries, vectors, song_texts, rng, one_by_one: bool) -> dict:
    use_text = ranker.config.use_song_text
    times = []
    for i, q in enumerate(queries):
        pick = rng.choice(len(vectors), size=N_CANDIDATES, replace=False)
        texts = [song_texts[j] for j in pick] if use_text else None
        t0 = time.perf_counter()
        if one_by_one:
            for k, j in enumerate(pick):
                ranker.score(q, vectors[j : j + 1], texts[k : k + 1] if use_text else None)
        else:
            ranker.score(q, vectors[pick], texts)
        if i >= 5:  # the first calls warm up allocator and kernels
            times.append((time.perf_counter() - t0) * 1000)
    return percentiles(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/mpd7k"))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--baseline-queries", type=int, default=30)
    parser.add_argument("--train-rows", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results/ranker_model.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    train_titles, test_titles, song_ids, song_texts = load_text(Path(args.data), 5000, seed=0)
    tokenizer = bpe_tokenizer(train_titles + song_texts)
    vectors = rng.normal(scale=0.3, size=(len(song_ids), SONG_DIM)).astype(np.float32)
    song_vectors = SongVectors(song_ids, np.ones(len(song_ids), dtype=np.int64), vectors)
    song_text_of = dict(zip(song_ids, song_texts))
    queries = [test_titles[i] for i in rng.permutation(len(test_titles))[: args.queries]]
    rows_i = rng.integers(0, len(train_titles), size=args.train_rows)
    train_df = pd.DataFrame(
        {
            "text": [train_titles[i] for i in rows_i],
            "song_id": [song_ids[j] for j in rng.integers(0, len(song_ids), size=args.train_rows)],
            "label": rng.integers(0, 2, size=args.train_rows),
        }
    )
    val_df = train_df.head(512)

    results = []
    for preset in ("tiny", "small"):
        for use_song_text in (False, True):
            ranker = CrossEncoderRanker.from_config(
                tokenizer, preset, SONG_DIM, seed=0, use_song_text=use_song_text
            )
            n_params = sum(p.numel() for p in ranker.parameters())
            batched = time_scoring(
                ranker.eval(), queries, vectors, song_texts, np.random.default_rng(1), False
            )
            single = time_scoring(
                ranker, queries[: args.baseline_queries], vectors, song_texts, np.random.default_rng(1), True
            )
            trained = train_ranker(
                ranker,
                train_df,
                val_df,
                song_vectors,
                song_text_of,
                replace(RANKER_TRAINING, epochs=1, batch_size=64, lr=1e-3, seed=0, log_every_steps=10_000),
            )
            row = {
                "preset": preset,
                "use_song_text": use_song_text,
                "parameters": n_params,
                "score_100": batched,
                "score_100_one_by_one": single,
                "batched_speedup_p50": single["p50_ms"] / batched["p50_ms"],
                "train_samples_per_second": trained.samples_per_second,
            }
            results.append(row)
            print(
                f"{preset:5s} song_text={use_song_text!s:5s} params={n_params / 1e6:.2f}M  "
                f"score(100): p50 {batched['p50_ms']:.1f} ms p95 {batched['p95_ms']:.1f} ms | one-by-one p50 "
                f"{single['p50_ms']:.1f} ms ({row['batched_speedup_p50']:.1f}x) | train "
                f"{row['train_samples_per_second']:.0f} samples/s",
                flush=True,
            )

    machine = {
        "cores": os.cpu_count(),
        "torch_threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out = {
        "benchmark": "ranker_model",
        "machine": machine,
        "candidates": N_CANDIDATES,
        "queries": len(queries),
        "tokenizer_vocab": len(tokenizer),
        "train_rows": args.train_rows,
        "batch_size": 64,
        "precision": "fp32",
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
