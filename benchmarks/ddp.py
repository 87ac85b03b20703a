"""Data-parallel training on CPU: the tiny TIGER for a few hundred steps in 1 process vs N processes (gloo), the
same global batch and the same threads in all (1 process x T threads vs N processes x T/N threads).

Synthetic titles and codes (throughput does not depend on what they mean), so it needs no data folder.
Settings: 1 process x 1 thread, 1 process x T threads, N processes x T/N threads. Reported per setting:
samples/s over the training steps (rank 0's clock, what ``TrainResult`` reports), samples/s over the whole call
(worker start-up included), the final train loss; and the ratios N processes / 1 process.

    .venv/bin/python benchmarks/ddp.py [--steps 300] [--processes 2] [--threads 2] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json

from genrank_assets.ml.compute import Compute
from genrank_assets.ml.generator.dataset import make_training_examples
from genrank_assets.ml.generator.model import build_model
from genrank_assets.ml.generator.tiger import CodeTable
from genrank_assets.ml.generator.tokenizer import build_tokenizer
from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger

LEVELS = [16, 16, 16]
WORDS = ["rock", "jazz", "gym", "深夜", "古风", "party", "chill", "study", "love", "summer", "bgm", "经典"]


def synthetic(n_playlists: int, n_songs: int, seed: int):
    rng = np.random.default_rng(seed)
    titles = [" ".join(rng.choice(WORDS, size=rng.integers(1, 4))) for _ in range(n_playlists)]
    songs = [[f"s{j}" for j in rng.integers(0, n_songs, size=8)] for _ in range(n_playlists)]
    codes = np.stack([rng.integers(0, k, n_songs) for k in LEVELS], axis=1)
    return titles, songs, CodeTable([f"s{j}" for j in range(n_songs)], codes, rng.integers(1, 50, n_songs))


def run(tokenizer, dataset, config, compute: Compute) -> dict:
    model = build_model(tokenizer, preset="tiny", seed=0, dropout=0.0)
    compute.apply_threads()  # as the training assets do; workers of a data-parallel run set their own share
    t0 = time.perf_counter()
    result = train_tiger(model, tokenizer, dataset, None, config, compute)
    wall = time.perf_counter() - t0
    return {"processes": compute.processes, "threads_total": compute.threads, "steps": result.steps,
            "samples": result.samples, "train_samples_per_s": round(result.samples_per_second, 1),
            "call_samples_per_s": round(result.samples / wall, 1), "call_seconds": round(wall, 1),
            "final_train_loss": result.history[-1]["train_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in all, split among the processes")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    titles, songs, table = synthetic(n_playlists=4000, n_songs=2000, seed=0)
    tokenizer = build_tokenizer(titles, LEVELS, vocab_size=300, max_length=16)
    dataset = make_training_examples(titles, songs, table, tokenizer, mode="single", samples_per_playlist=1, seed=0)
    # Enough epochs for the budget; max_steps ends every run at the same step of the same schedule.
    epochs = math.ceil(args.steps / math.ceil(len(dataset) / args.batch_size))
    config = replace(TIGER_TRAINING, epochs=epochs, batch_size=args.batch_size, max_steps=args.steps, seed=0,
                     log_every_steps=10**9, warmup_steps=0)
    # 1 process on 1 thread too: on a shared 2-core machine two intra-op threads can be far slower than one
    # (docs/findings.md), which would flatter the N-process run against 1 process x T threads alone.
    settings = [(1, 1), (1, args.threads), (args.processes, args.threads)]
    rows = []
    for processes, threads in settings:
        row = run(tokenizer, dataset, config, Compute("cpu", "fp32", threads=threads, processes=processes))
        rows.append(row)
        print(f"{processes} process(es) x {max(1, threads // processes)} thread(s): "
              f"{row['train_samples_per_s']:.0f} samples/s in training steps, {row['call_samples_per_s']:.0f} "
              f"samples/s over the call ({row['call_seconds']:.1f}s), final loss {row['final_train_loss']:.4f}")
    many = rows[-1]
    ratios = {}
    for one in rows[:-1]:
        key = f"{args.processes}_processes_vs_1_process_{one['threads_total']}_threads"
        ratios[key] = {what: round(many[what] / one[what], 3) for what in ("train_samples_per_s", "call_samples_per_s")}
        print(f"{key}: {ratios[key]['train_samples_per_s']:.2f}x in training steps, "
              f"{ratios[key]['call_samples_per_s']:.2f}x over the call")
    write_json("ddp", {"model": "tiny TIGER (T5 preset tiny)", "examples": len(dataset), "batch_size": args.batch_size,
                       "steps": args.steps, "load_average_1m": [round(x, 2) for x in os.getloadavg()],
                       "runs": rows, "ratios": ratios})


if __name__ == "__main__":  # the spawned workers import this file again: only the caller runs main()
    main()
