"""The TIGER generator on CPU, one thread, in two sections (``--sections``; default both).

``registered`` — the registered generator on mpd7k: training throughput, generation latency, candidate quality.
Reads the warehouse and MLflow registry an end-to-end run left under --home (``python -m benchmarks.end_to_end``):

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

``trie`` — the cost of the decoding itself: training throughput (single vs sequence targets, --trie-steps steps,
--trie-repeats runs) and the latency of 100 candidates with trie-constrained beam search against the same beams
unconstrained, interleaved query by query. Titles and playlists are mpd7k's (read in place, never copied); codes
are random over levels [128, 128, 256] for the songs seen at least twice (throughput and latency do not depend on
what the codes mean; the trie has the real shape: ~56k songs, every level-1/level-2 prefix present).

Everything runs with torch.set_num_threads(1): small models are fastest single-threaded on 2 cores
(docs/findings.md). Both sections go to one JSON (``sections.registered``, ``sections.trie``); a run of one
section leaves the other's entry as it was.

    python -m benchmarks.generator [--home /tmp/genrank_mpd7k] [--train-steps 100] [--sections registered trie]
    python -m benchmarks.generator --quick   # the quick end_to_end home, 50 test queries, a few steps
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from benchmarks._common import (
    CORPUS,
    DEFAULT_HOME,
    MPD7K,
    QUICK_HOME,
    add_output_args,
    argument_parser,
    median,
    output_path,
    parse_args,
    peak_rss_mib,
    pipeline_home,
    require_mpd7k,
    warehouse_frames,
    write_sections,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from genrank_assets.ml.generator.tiger import CodeTable

log = logging.getLogger("benchmarks.generator")

BEAM_WIDTHS = (20, 50, 100)
N_CANDIDATES = 100
RATE_PATTERN = re.compile(r"step (\d+)/\d+ .* (\d+) samples/s")
LEVELS = [128, 128, 256]  # the trie section's random codes
SECTIONS = ("registered", "trie")
QUICK = {"train_steps": 20, "latency_queries": 10, "max_queries": 50, "trie_steps": 5, "trie_repeats": 1,
         "trie_queries": 5}


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
    from genrank_assets.ml.generator.dataset import make_training_examples
    from genrank_assets.ml.generator.model import build_model
    from genrank_assets.ml.generator.tiger import CodeTable
    from genrank_assets.ml.generator.tokenizer import build_tokenizer
    from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger
    from genrank_assets.ml.semantic_ids.codes import code_space_of

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
    from genrank_assets.ml.serving import registry

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
    from genrank_assets.ml.evaluation.metrics import evaluate_rankings, paired_bootstrap
    from genrank_assets.ml.evaluation.report import fill_with

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


# ------------------------------------------------------------------------------------------- trie section
def load_playlists() -> tuple[list[str], list[list[str]]]:
    import pandas as pd

    info = pd.read_csv(MPD7K / "gen_playlist_info.csv", sep="\t", dtype=str, keep_default_na=False)
    songs = pd.read_csv(MPD7K / "gen_playlist_song.csv.sort", sep="\t", header=None, names=["pid", "sid"], dtype=str)
    by_playlist = songs.groupby("pid", sort=False)["sid"].apply(list)
    titles = info.set_index("glid")["listname"]
    pids = [p for p in by_playlist.index if p in titles.index and titles[p].strip()]
    return [titles[p] for p in pids], [by_playlist[p] for p in pids]


def random_code_table(song_lists, seed=0) -> CodeTable:
    from genrank_assets.ml.generator.tiger import CodeTable

    counts = Counter(s for songs in song_lists for s in songs)
    kept = sorted(s for s, c in counts.items() if c >= 2)
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, k, len(kept)) for k in LEVELS], axis=1)
    return CodeTable(kept, codes, np.array([counts[s] for s in kept]))


def train_throughput(model_seed, tokenizer, dataset, steps, repeats):
    from genrank_assets.ml.generator.model import build_model
    from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger

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

    processor = generator._processor(None, generator.prior_weight)
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


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argument_parser(__doc__, "generator")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--home", type=Path, default=None, help=f"registered: the home end_to_end left (default "
                    f"{DEFAULT_HOME}; --quick: {QUICK_HOME})")
    ap.add_argument("--train-steps", type=int, default=100, help="registered: steps of the fresh TIGER")
    ap.add_argument("--latency-queries", type=int, default=100, help="registered: titles timed one by one")
    ap.add_argument("--max-queries", type=int, default=0, help="registered: 0 = every test query (fewer: smoke runs)")
    ap.add_argument("--trie-steps", type=int, default=20, help="trie: training steps per throughput run")
    ap.add_argument("--trie-repeats", type=int, default=3, help="trie: throughput runs per target mode")
    ap.add_argument("--trie-queries", type=int, default=30, help="trie: titles timed per setting")
    add_output_args(ap, "the quick end_to_end home, 50 test queries, 20 + 5 training steps, 5 trie queries")
    args = parse_args(ap, QUICK)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("genrank_assets.ml.evaluation.metrics").setLevel(logging.ERROR)  # bare candidate lists are short
    import torch

    torch.set_num_threads(1)
    sections = {}
    if "registered" in args.sections:
        sections["registered"] = registered_section(pipeline_home(args), args)
    if "trie" in args.sections:
        require_mpd7k()
        sections["trie"] = trie_section(args.trie_steps, args.trie_repeats, args.trie_queries)
    write_sections(output_path(args, "generator"), {k: {**v, "quick": args.quick} for k, v in sections.items()})


def registered_section(home: Path, args) -> dict:
    """Training throughput, latency and quality of the generator registered in ``home`` (the module docstring)."""
    from mlflow import MlflowClient

    from genrank_assets.ml.baselines.classical import PopularityRecommender, benchmark_queries, reference_title_knn
    from genrank_assets.ml.evaluation.metrics import evaluate_rankings
    from genrank_assets.ml.semantic_ids.codes import code_space_of
    from genrank_assets.ml.serving import registry

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
        raise SystemExit(f"{registry.TIGER_NAME} has no @champion in {home}/mlflow.db: run "
                         "python -m benchmarks.end_to_end first")
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
          f"{_fmt(registered['samples_per_second'])} samples/s (median epoch "
          f"{_fmt(registered['samples_per_second_median_epoch'])}) over {_fmt(registered['train_seconds'])} s of training")
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
    return {
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
    }


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def trie_section(steps: int, repeats: int, n_queries: int) -> dict:
    """Throughput by target mode and trie vs unconstrained latency on random codes (the module docstring)."""
    from genrank_assets.ml.generator.dataset import make_training_examples
    from genrank_assets.ml.generator.tiger import TigerGenerator
    from genrank_assets.ml.generator.tokenizer import build_tokenizer

    titles, song_lists = load_playlists()
    table = random_code_table(song_lists)
    tokenizer = build_tokenizer(titles, LEVELS, vocab_size=2000)
    print(f"{len(titles)} playlists, {len(table)} coded songs, vocab {len(tokenizer)}")

    rows = {}
    models = {}
    for mode in ("single", "sequence"):
        data = make_training_examples(titles, song_lists, table, tokenizer, mode=mode, max_codes=20,
                                      samples_per_playlist=1, seed=0)
        models[mode], rates = train_throughput(0, tokenizer, data, steps, repeats)
        rows[f"train_{mode}"] = {"samples_per_s_median": median(rates), "runs": rates}
    n_params = sum(p.numel() for p in models["single"].parameters())

    queries = titles[:: max(1, len(titles) // n_queries)][: n_queries]
    gen_rows = {}
    settings = [("single", 20, {}), ("single", 50, {}), ("single", 100, {}), ("sequence", 20, {}),
                # A barely trained model ends sequences early; force all 20 codes for the worst case.
                ("sequence", 20, {"min_new_tokens": 20 * len(LEVELS)})]  # fmt: skip
    for mode, beams, kwargs in settings:
        # The trie alone (no popularity prior), as first measured; the registered section times the shipped
        # decoding, prior included.
        generator = TigerGenerator(models[mode], tokenizer, table, target_mode=mode, max_codes=20, prior_weight=0.0)
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
    return {
        "setup": {"levels": LEVELS, "playlists": len(titles), "coded_songs": len(table), "vocab": len(tokenizer),
                  "params": n_params, "threads": 1, "batch_size": 64, "steps_per_run": steps,
                  "codes": "random (shape only)", "prior_weight": 0.0},
        "training": rows,
        "training_single_over_sequence": ratio,
        "generation": gen_rows,
        "trie_latency_over_unconstrained_p50": trie_overhead,
        "peak_rss_mib": peak_rss_mib(),
    }


if __name__ == "__main__":
    main()
