"""The registered TIGER generator on mpd7k: training throughput, generation latency, candidate quality.

Reads the warehouse and MLflow registry an end-to-end run left under --home (benchmarks/end_to_end.py):

1. Training throughput on CPU (one thread): a fresh tiny TIGER (the preset's size, a BPE tokenizer of 2,000
   pieces on the train titles) trained for --train-steps steps on the mpd7k train playlists with the
   warehouse's semantic IDs, single-code and sequence targets; samples/s is the median of the rates
   ``train_tiger`` logs every 10 steps (cumulative since the start of the call). Beside it: the samples/s that
   the registered generator's own training run logged to MLflow.
2. Latency of ``generate_candidates(text, n=100)`` for --latency-queries test titles one by one (after 3
   warm-up calls), at 20, 50 and 100 beams; p50 / p95.
3. Quality on every test query (docs/benchmark.md protocol) against the reference title-kNN fitted in the same run:
   Recall@100, NDCG@10, R-precision of the candidates in generation order, popularity-filled (train
   popularity, as the evaluation asset does) to max(100, largest truth) so that R-precision is exact; also
   Recall@100 of the bare candidates; paired bootstrap against title-kNN; candidate count / shortfall;
   invalid-code rate.

Everything runs with torch.set_num_threads(1): small models are fastest single-threaded on 2 cores
(docs/findings.md).

    .venv/bin/python benchmarks/generator.py [--home /tmp/genrank_mpd7k] [--train-steps 100]
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPUS, median, peak_rss_mib, warehouse_frames, write_json  # noqa: E402

from genrank_assets.ml.baselines.classical import PopularityRecommender, benchmark_queries, reference_title_knn  # noqa: E402
from genrank_assets.ml.evaluation.metrics import evaluate_rankings, paired_bootstrap  # noqa: E402
from genrank_assets.ml.evaluation.report import fill_with  # noqa: E402
from genrank_assets.ml.generator.dataset import make_training_examples  # noqa: E402
from genrank_assets.ml.generator.model import build_model  # noqa: E402
from genrank_assets.ml.generator.tiger import CodeTable  # noqa: E402
from genrank_assets.ml.generator.tokenizer import build_tokenizer  # noqa: E402
from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger  # noqa: E402
from genrank_assets.ml.semantic_ids.codes import code_space_of  # noqa: E402
from genrank_assets.ml.serving import registry  # noqa: E402

log = logging.getLogger("benchmarks.generator")

BEAM_WIDTHS = (20, 50, 100)
N_CANDIDATES = 100
RATE_PATTERN = re.compile(r"step (\d+)/\d+ .* (\d+) samples/s")


# ------------------------------------------------------------------------------------------------ data
def load_warehouse(home: Path) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """(corpus, semantic-ID song ids, codes (n, L)) from the run's DuckDB warehouse, opened read-only."""
    corpus, sem = warehouse_frames(home, CORPUS, "select * from genrank.semantic_ids")
    corpus["song_ids"] = corpus["song_ids"].map(lambda ids: [str(s) for s in ids])
    levels = sorted((c for c in sem.columns if re.fullmatch(r"l\d+", c)), key=lambda c: int(c[1:]))
    return corpus, sem["song_id"].astype(str).tolist(), sem[levels].to_numpy(dtype=np.int64)


# ------------------------------------------------------------------------------------------ throughput
def training_throughput(corpus: pd.DataFrame, song_ids: list[str], codes: np.ndarray, mode: str,
                        steps: int, batch_size: int, samples_per_playlist: int) -> dict:
    """Train a fresh tiny TIGER for ``steps`` steps; samples/s as logged by train_tiger."""
    train = corpus[(corpus["split"] == "train") & corpus["title"].fillna("").str.strip().astype(bool)]
    levels = code_space_of(codes)
    tokenizer = build_tokenizer(train["title"].tolist(), levels, vocab_size=2000)
    table = CodeTable(song_ids, codes, np.zeros(len(song_ids)))
    dataset = make_training_examples(train["title"].tolist(), train["song_ids"].tolist(), table, tokenizer,
                                     mode=mode, max_codes=20, samples_per_playlist=samples_per_playlist, seed=0)
    model = build_model(tokenizer, "from_scratch", "tiny", seed=0)
    lines: list[str] = []
    config = replace(TIGER_TRAINING, epochs=1000, batch_size=batch_size, lr=1e-3, early_stopping_patience=None,
                     max_steps=steps, log_every_steps=10)
    result = train_tiger(model, tokenizer, dataset, None, config, log_fn=lines.append)
    rates = [(int(m.group(1)), float(m.group(2))) for m in map(RATE_PATTERN.search, lines) if m]
    later = [r for step, r in rates if step > 10] or [r for _, r in rates]  # the first window holds warm-up
    return {
        "target_mode": mode, "examples_per_epoch": len(dataset), "batch_size": batch_size, "steps": result.steps,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "samples_per_second_median_logged": median(later) if later else result.samples_per_second,
        "samples_per_second_overall": result.samples_per_second, "seconds": result.seconds,
        "logged_rates": rates,
    }


def registered_training(client: MlflowClient, version: int) -> dict:
    """What the registered generator's training run logged to MLflow."""
    run = client.get_run(client.get_model_version(registry.TIGER_NAME, str(version)).run_id)
    metrics, params = run.data.metrics, run.data.params
    # Per-epoch samples_per_second is a series by epoch; the whole call's figure is train_samples_per_second.
    history = client.get_metric_history(run.info.run_id, "samples_per_second")
    per_epoch = [m.value for m in sorted(history, key=lambda m: m.step)]
    return {
        "run_id": run.info.run_id,
        "samples_per_second": metrics.get("train_samples_per_second", median(per_epoch) if per_epoch else None),
        "samples_per_second_per_epoch": per_epoch,
        "samples_per_second_median_epoch": median(per_epoch),
        "train_seconds": metrics.get("train_seconds"),
        "best_val_loss": metrics.get("best_val_loss"),
        "params": {k: params.get(k) for k in ("preset", "target_mode", "batch_size", "epochs", "samples_per_playlist",
                                              "train_examples", "num_beams", "device", "precision", "levels")},
    }


# ------------------------------------------------------------------------------------------------ latency
def generation_latency(generator, texts: list[str], beams: int) -> dict:
    for text in texts[:3]:  # warm-up
        generator.generate_candidates(text, n=N_CANDIDATES, num_beams=beams)
    ms, counts = [], []
    for text in texts:
        t0 = time.perf_counter()
        cands = generator.generate_candidates(text, n=N_CANDIDATES, num_beams=beams)
        ms.append((time.perf_counter() - t0) * 1000)
        counts.append(len(cands))
    return {"num_beams": beams, "queries": len(texts), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "mean_candidates": float(np.mean(counts))}


# ------------------------------------------------------------------------------------------------ quality
def summary(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("recall@10", "ndcg@10", "recall@100", "r_precision")}


def generator_quality(generator, qids, texts, truths, popular: list[str], depth: int, beams: int,
                      reference: dict) -> dict:
    generator.reset_counters()
    t0 = time.perf_counter()
    candidates = generator.generate_candidates_batch(texts, n=N_CANDIDATES, num_beams=beams)
    seconds = time.perf_counter() - t0
    bare = evaluate_rankings({q: list(c) for q, c in zip(qids, candidates)}, truths, ks=(10, 100))
    filled = evaluate_rankings({q: fill_with(c, popular, depth) for q, c in zip(qids, candidates)}, truths,
                               ks=(10, 100))
    counts = np.array([len(c) for c in candidates])
    return {
        "num_beams": beams,
        "filled": summary(filled),
        "bare_candidates": summary(bare),
        "mean_candidates": float(counts.mean()),
        "mean_shortfall": float(np.mean([c.shortfall for c in candidates])),
        "share_queries_short": float((counts < N_CANDIDATES).mean()),
        "invalid_code_rate": generator.invalid_code_rate,
        "codes_generated": generator.codes_generated,
        "batched_ms_per_query": seconds * 1000 / len(texts),
        "bootstrap_vs_title_knn": {
            m: paired_bootstrap(filled["per_query"][m], reference["per_query"][m], n=1000, seed=0)
            for m in ("recall@100", "ndcg@10", "r_precision")
        },
    }


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default="/tmp/genrank_mpd7k")
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--max-queries", type=int, default=0, help="0: every test query (a smaller number: smoke runs)")
    ap.add_argument("--name", default="generator", help="results/<name>.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("genrank_assets.ml.evaluation.metrics").setLevel(logging.ERROR)  # bare candidate lists are short
    torch.set_num_threads(1)
    home = Path(args.home)

    corpus, song_ids, codes = load_warehouse(home)
    qids, texts, truths = benchmark_queries(corpus, "test")
    if args.max_queries:
        qids, texts = qids[: args.max_queries], texts[: args.max_queries]
        truths = {q: truths[q] for q in qids}
    log.info("%d test queries, %d songs with a semantic ID", len(qids), len(song_ids))

    # 1. training throughput
    throughput = [training_throughput(corpus, song_ids, codes, mode, args.train_steps, 64, 4)
                  for mode in ("single", "sequence")]

    registry.connect(home)
    version = registry.alias_version(registry.TIGER_NAME)
    if version is None:
        raise SystemExit(f"{registry.TIGER_NAME} has no @champion in {home}/mlflow.db: run end_to_end.py first")
    registered = {"version": version, **registered_training(MlflowClient(), version)}
    generator = registry.load_python_model(f"models:/{registry.TIGER_NAME}@{registry.CHAMPION}").generator
    generator.model.eval()

    # 2. latency, one query at a time
    latency = [generation_latency(generator, texts[: args.latency_queries], b) for b in BEAM_WIDTHS]

    # 3. quality against the reference title-kNN, on the same queries
    depth = max(N_CANDIDATES, max(len(t) for t in truths.values()))
    popular = PopularityRecommender().fit(corpus).recommend("popular", depth)
    knn = reference_title_knn("char_wb").fit(corpus)
    t0 = time.perf_counter()
    knn_rankings = dict(zip(qids, knn.recommend_many(texts, depth)))
    knn_ms = (time.perf_counter() - t0) * 1000 / len(texts)
    knn_metrics = evaluate_rankings(knn_rankings, truths, ks=(10, 100))
    quality = [generator_quality(generator, qids, texts, truths, popular, depth, b, knn_metrics) for b in BEAM_WIDTHS]

    # -- table ----------------------------------------------------------------------------------------------
    print(f"\nTraining throughput, fresh tiny TIGER, {args.train_steps} steps, batch 64, 1 thread")
    print(f"{'target mode':<12} {'samples/s (median logged)':>26} {'overall':>9} {'seconds':>8}")
    for t in throughput:
        print(f"{t['target_mode']:<12} {t['samples_per_second_median_logged']:>26.0f} "
              f"{t['samples_per_second_overall']:>9.0f} {t['seconds']:>8.1f}")
    print(f"registered genrank-tiger v{version} ({registered['params']['target_mode']} targets): "
          f"{registered['samples_per_second']:.0f} samples/s (median epoch {registered['samples_per_second_median_epoch']:.0f}) "
          f"over {registered['train_seconds']:.0f} s of training")
    print(f"\nGeneration latency, {N_CANDIDATES} candidates, {latency[0]['queries']} test titles one by one")
    print(f"{'beams':>6} {'p50 ms':>8} {'p95 ms':>8} {'mean cands':>11}")
    for lt in latency:
        print(f"{lt['num_beams']:>6} {lt['p50_ms']:>8.1f} {lt['p95_ms']:>8.1f} {lt['mean_candidates']:>11.1f}")
    print(f"\nQuality on {len(qids)} test queries (generator: candidates in generation order, then popular songs)")
    print(f"{'method':<22} {'R@100':>7} {'R@100 bare':>10} {'NDCG@10':>8} {'R-prec':>7} {'cands':>6} "
          f"{'invalid':>8} {'ΔR@100 vs kNN [95% CI]':>30}")
    print(f"{'title-kNN (reference)':<22} {knn_metrics['recall@100']:>7.4f} {'':>10} {knn_metrics['ndcg@10']:>8.4f} "
          f"{knn_metrics['r_precision']:>7.4f}")
    for q in quality:
        b = q["bootstrap_vs_title_knn"]["recall@100"]
        print(f"{'generator ' + str(q['num_beams']) + ' beams':<22} {q['filled']['recall@100']:>7.4f} "
              f"{q['bare_candidates']['recall@100']:>10.4f} {q['filled']['ndcg@10']:>8.4f} "
              f"{q['filled']['r_precision']:>7.4f} {q['mean_candidates']:>6.1f} {q['invalid_code_rate']:>8.4f} "
              f"{b['mean_diff']:>+10.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]")

    _, per_code = np.unique(codes, axis=0, return_counts=True)
    write_json(args.name, {
        "home": str(home),
        "semantic_ids": {"songs": len(song_ids), "distinct_codes": len(per_code),
                         "max_songs_per_code": int(per_code.max()), "levels_used": code_space_of(codes),
                         "note": "candidates = the songs of the generated codes, one code per beam (single-code "
                                 "targets): with one song per code a list holds at most num_beams songs"},
        "threads": 1,
        "threads_note": "torch.set_num_threads(1) throughout: small models are fastest single-threaded on 2 cores "
                        "(docs/findings.md: two threads were only 1.5x one thread). The e2e run used the compute "
                        "resource's default, also 1 thread on this machine.",
        "protocol": "docs/benchmark.md: test split, query = title as stored, truth = distinct songs of the playlist",
        "n_queries": len(qids),
        "training_throughput": {
            "setup": f"fresh tiny TIGER (build_model preset 'tiny', BPE 2,000 pieces on train titles), "
                     f"{args.train_steps} steps, batch 64, samples_per_playlist 4 (single), max_codes 20 "
                     "(sequence), mpd7k train playlists with the warehouse's semantic IDs; samples/s = median of "
                     "the cumulative rates train_tiger logs every 10 steps (first 10 steps left out)",
            "runs": throughput,
            "single_vs_sequence_ratio": throughput[0]["samples_per_second_median_logged"]
                                        / throughput[1]["samples_per_second_median_logged"],
            "registered_generator_run": registered,
        },
        "generation_latency": {"setup": f"generate_candidates(text, n={N_CANDIDATES}) one title at a time after 3 "
                                        "warm-up calls, trie-constrained beam search, model loaded from the "
                                        "registry (@champion), CPU", "by_beams": latency},
        "quality": {
            "setup": "candidates of generate_candidates_batch(n=100) in generation order; 'filled' continues each "
                     f"list with train-popular songs up to max(100, largest truth) = {depth} (as the evaluation "
                     "asset does, so R-precision is exact); 'bare_candidates' scores the candidates alone (missing "
                     "slots count as misses). Paired bootstrap (1,000 resamples, seed 0) of filled generator minus "
                     "title-kNN per query.",
            "title_knn_reference": {**summary(knn_metrics), "ms_per_query_batched": knn_ms,
                                    "benchmark_md_recall@100": 0.0670},
            "generator": quality,
        },
        "peak_rss_mib": peak_rss_mib(),
    })


if __name__ == "__main__":
    main()
