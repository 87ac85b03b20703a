"""TIGER generator on CPU, one thread: training throughput (single vs sequence targets) and the latency of
100 candidates with trie-constrained beam search (baseline: the same beams unconstrained).

Titles and playlists are mpd7k's (read in place, never copied); codes are random over levels [128, 128, 256]
for the songs seen at least twice (throughput and latency do not depend on what the codes mean; the trie has
the real shape: ~56k songs, every level-1/level-2 prefix present).

    .venv/bin/python benchmarks/tiger_generator.py [--steps 20] [--queries 30]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MPD7K, median, peak_rss_mib, write_json

from genrank_assets.ml.generator.dataset import make_training_examples
from genrank_assets.ml.generator.model import build_model
from genrank_assets.ml.generator.tiger import CodeTable, TigerGenerator
from genrank_assets.ml.generator.tokenizer import build_tokenizer
from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger

LEVELS = [128, 128, 256]


def load_playlists() -> tuple[list[str], list[list[str]]]:
    info = pd.read_csv(MPD7K / "gen_playlist_info.csv", sep="\t", dtype=str, keep_default_na=False)
    songs = pd.read_csv(MPD7K / "gen_playlist_song.csv.sort", sep="\t", header=None, names=["pid", "sid"], dtype=str)
    by_playlist = songs.groupby("pid", sort=False)["sid"].apply(list)
    titles = info.set_index("glid")["listname"]
    pids = [p for p in by_playlist.index if p in titles.index and titles[p].strip()]
    return [titles[p] for p in pids], [by_playlist[p] for p in pids]


def random_code_table(song_lists, seed=0) -> CodeTable:
    counts = Counter(s for songs in song_lists for s in songs)
    kept = sorted(s for s, c in counts.items() if c >= 2)
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, k, len(kept)) for k in LEVELS], axis=1)
    return CodeTable(kept, codes, np.array([counts[s] for s in kept]))


def train_throughput(model_seed, tokenizer, dataset, steps, repeats):
    rates = []
    for r in range(repeats):
        model = build_model(tokenizer, preset="tiny", seed=model_seed)
        config = replace(TIGER_TRAINING, epochs=1, batch_size=64, max_steps=steps, seed=r, log_every_steps=10**9)
        result = train_tiger(model, tokenizer, dataset, None, config)
        rates.append(result.samples_per_second)
    return model, rates


def latency_pair(generator, texts, n, num_beams, **generate_kwargs):
    """Per-query latency with the trie and without it, interleaved query by query so that load on the shared
    machine hits both alike. ``generate_kwargs`` go to ``model.generate`` (e.g. ``min_new_tokens``)."""
    from transformers import LogitsProcessorList

    processor = generator._processor(None)
    out = {}
    timings = {True: [], False: []}
    sizes = {True: [], False: []}
    codes = {True: 0, False: 0}
    invalid = {True: 0, False: 0}
    for text in texts:
        for constrained in (True, False):
            generator.reset_counters()
            t0 = time.perf_counter()
            inputs = generator.encoder.encode_batch([text])
            result = generator.model.generate(
                **inputs, num_beams=num_beams, num_return_sequences=num_beams,
                max_new_tokens=processor.constraint.max_new_tokens(), early_stopping=True,
                logits_processor=LogitsProcessorList([processor] if constrained else []),
                output_scores=True, return_dict_in_generate=True, **generate_kwargs,
            )  # fmt: skip
            ranked = generator._rank_codes(result.sequences[:, 1:].tolist(), result.sequences_scores.tolist())
            cands = generator.candidates_from_codes(ranked, n)
            timings[constrained].append(time.perf_counter() - t0)
            sizes[constrained].append(len(cands))
            codes[constrained] += generator.codes_generated
            invalid[constrained] += generator.invalid_codes
    for constrained in (True, False):
        out["trie" if constrained else "free"] = {
            "p50_ms": 1000 * median(timings[constrained]),
            "p95_ms": 1000 * float(np.percentile(timings[constrained], 95)),
            "median_candidates": median(sizes[constrained]),
            "codes_per_beam": codes[constrained] / (len(texts) * num_beams),
            "invalid_code_rate": invalid[constrained] / max(codes[constrained], 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20, help="training steps per throughput run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    titles, song_lists = load_playlists()
    table = random_code_table(song_lists)
    tokenizer = build_tokenizer(titles, LEVELS, vocab_size=2000)
    print(f"{len(titles)} playlists, {len(table)} coded songs, vocab {len(tokenizer)}")

    rows = {}
    models = {}
    for mode in ("single", "sequence"):
        data = make_training_examples(titles, song_lists, table, tokenizer, mode=mode, max_codes=20,
                                      samples_per_playlist=1, seed=0)
        models[mode], rates = train_throughput(0, tokenizer, data, args.steps, args.repeats)
        rows[f"train_{mode}"] = {"samples_per_s_median": median(rates), "runs": rates}
    n_params = sum(p.numel() for p in models["single"].parameters())

    queries = titles[:: max(1, len(titles) // args.queries)][: args.queries]
    gen_rows = {}
    settings = [("single", 20, {}), ("single", 50, {}), ("single", 100, {}), ("sequence", 20, {}),
                # A barely trained model ends sequences early; force all 20 codes for the worst case.
                ("sequence", 20, {"min_new_tokens": 20 * len(LEVELS)})]  # fmt: skip
    for mode, beams, kwargs in settings:
        generator = TigerGenerator(models[mode], tokenizer, table, target_mode=mode, max_codes=20)
        generator.generate_codes(queries[0], num_beams=beams)  # warm-up
        pair = latency_pair(generator, queries, 100, beams, **kwargs)
        for variant, row in pair.items():
            gen_rows[f"{mode}_{beams}beams{'_full20' if kwargs else ''}_{variant}"] = row

    print(f"\nT5 tiny ({n_params / 1e6:.2f}M params), CPU, 1 thread, batch 64")
    print(f"{'training targets':<20}{'samples/s (median)':>20}")
    for mode in ("single", "sequence"):
        print(f"{mode:<20}{rows[f'train_{mode}']['samples_per_s_median']:>20.0f}")
    ratio = rows["train_single"]["samples_per_s_median"] / rows["train_sequence"]["samples_per_s_median"]
    print(f"single / sequence: {ratio:.1f}x")
    print(f"\n100 candidates per query, {len(queries)} queries, batch 1")
    print(f"{'setting':<35}{'p50 ms':>9}{'p95 ms':>9}{'cands':>7}{'codes/beam':>11}{'invalid':>9}")
    for key, r in gen_rows.items():
        print(f"{key:<35}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['median_candidates']:>7.0f}"
              f"{r['codes_per_beam']:>11.2f}{r['invalid_code_rate']:>9.3f}")  # fmt: skip
    trie_overhead = {
        key: gen_rows[key]["p50_ms"] / gen_rows[key.replace("_trie", "_free")]["p50_ms"]
        for key in gen_rows if key.endswith("_trie")
    }  # fmt: skip
    write_json(
        "tiger_generator",
        {
            "setup": {"levels": LEVELS, "playlists": len(titles), "coded_songs": len(table), "vocab": len(tokenizer),
                      "params": n_params, "threads": 1, "batch_size": 64, "steps_per_run": args.steps,
                      "codes": "random (shape only)", "load_avg_1m": os.getloadavg()[0]},
            "training": rows,
            "training_single_over_sequence": ratio,
            "generation": gen_rows,
            "trie_latency_over_unconstrained_p50": trie_overhead,
            "peak_rss_mib": peak_rss_mib(),
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
