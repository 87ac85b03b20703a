"""Generator changes of issue 12 (item 4), each measured on mpd7k VAL against the current generator in the same run.

Baseline: the cached upstream TIGER (benchmarks/ltr_upstream.py: tiny T5 trained on the TRAIN split, cpu-real
preset, 50 beams). Test is never touched. Per setting, on the val queries (docs/benchmark.md protocol):

* generator alone: its first 100 candidate songs (codes in beam order, songs of a code most popular first), then
  popular songs (as ``ml/evaluation/procedure.evaluate_generator``): NDCG@10, Recall@100, R-precision;
* the pool's recall ceiling from the generator source: the share of a query's truth among the generator's first
  ``PoolConfig.generator_songs`` songs (what ``candidates.recall_ceiling`` reports as ``generator``);
* distinct songs the beams reach, milliseconds per query (batched and one query at a time, model loaded).

Phase ``decode`` (no retraining): more beams (50 / 100 / 200) and the popularity prior of beam search
(``TigerGenerator(prior_weight=w, prior_mass=...)``: every step adds w x the gain in log(1 + mass under the
prefix)); also re-scoring the finished beams only (score + w log(1 + mass of the code)). Weights are chosen on val;
a 2-fold split of the val queries (choose on one half, score the other) shows how much of the gain is selection.

Phase ``retrain``: DSI-style indexing pairs added to the generator's training data (``build_generator_dataset``
with ``index_songs`` / ``index_singers``: "song name - singer" -> the song's code, singer -> codes of the singer's
songs), the rest as the baseline (same preset, seed, tokenizer on titles); compared paired on val.

Every comparison is a paired bootstrap (2,000 resamples) of per-query figures against the baseline generator.

Phase ``ltr``: the LTR system on val with and without the generator, current generator vs the prior (+ more
beams), val-only protocol (see ``phase_ltr``). Phase ``latency``: one query at a time, model loaded.

Run as in results/generator_changes.json (one torch thread: on shared cores two threads thrash):

    .venv/bin/python benchmarks/generator_changes.py --phase decode --threads 1 --beams 50 --weights 0.5 1 2 4 --masses popularity songs
    .venv/bin/python benchmarks/generator_changes.py --phase decode --threads 1 --beams 100 200 --weights 1 2 --masses popularity
    .venv/bin/python benchmarks/generator_changes.py --phase retrain --threads 1 --name dsi --prior '[1.0, "popularity"]' \
        --variant '{"index_songs": 3000, "index_singers": 3000, "max_codes_per_singer": 20, "index_samples": 1}'
    .venv/bin/python benchmarks/generator_changes.py --phase ltr --threads 1 --weights 1.0 --beams 100
    .venv/bin/python benchmarks/generator_changes.py --phase latency --threads 1 --beams 50 100 200 --weights 1.0
    .venv/bin/python benchmarks/generator_changes.py --phase report
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json  # noqa: E402
from baselines import DEFAULT_DATA  # noqa: E402
from ltr_upstream import CACHE, _cache_dir, load_data, preset_settings  # noqa: E402

from genrank_assets.ml.baselines import classical as bl  # noqa: E402
from genrank_assets.ml.evaluation.metrics import evaluate_rankings, paired_bootstrap  # noqa: E402
from genrank_assets.ml.evaluation.report import fill_with  # noqa: E402
from genrank_assets.ml.ranking.ltr.candidates import PoolConfig  # noqa: E402

log = logging.getLogger("benchmarks.generator_changes")

WORK = Path(__file__).resolve().parent / ".cache" / "generator_changes"
CANDIDATES = 100  # the generator-alone ranking: its first 100 songs, then popular ones
POOL_SONGS = PoolConfig.generator_songs
METRICS = ("ndcg@10", "recall@100", "r_precision", "pool_recall")
BEAMS = (50, 100, 200)
WEIGHTS = (0.25, 0.5, 1.0, 2.0)
MASSES = ("popularity", "songs")
LATENCY_QUERIES = 50


class Val:
    """The val queries, their truths, the popular fill and the rankings' depth."""

    def __init__(self, corpus):
        self.qids, self.texts, self.truths = bl.benchmark_queries(corpus, "val")
        self.depth = max(CANDIDATES, max(len(t) for t in self.truths.values()))
        self.popular = bl.PopularityRecommender().fit(corpus).recommend("popular", self.depth)


def score_codes(generator, val: Val, codes_per_query) -> dict:
    """Per-query figures of the generator's code lists."""
    rankings, pool, reach = {}, [], []
    for qid, codes in zip(val.qids, codes_per_query):
        songs = generator.candidates_from_codes(codes, max(POOL_SONGS, CANDIDATES))
        rankings[qid] = fill_with(songs[:CANDIDATES], val.popular, val.depth)
        truth = val.truths[qid]
        pool.append(len(truth & set(songs[:POOL_SONGS])) / len(truth))
        reach.append(len(songs))
    scores = evaluate_rankings(rankings, val.truths)
    per_query = {m: np.asarray(scores["per_query"][m]).tolist() for m in METRICS if m != "pool_recall"}
    per_query["pool_recall"] = pool
    return {"per_query": per_query, "mean_songs_reached": float(np.mean(reach)),
            "mean_codes": float(np.mean([len(c) for c in codes_per_query]))}


def rescored(generator, codes, weight: float):
    """Finished beams re-ranked by score + weight * log(1 + mass of the code) (the generator's trie mass)."""
    out = [(c, s + weight * np.log1p(generator.trie.mass(c))) for c, s in codes]
    return sorted(out, key=lambda cs: -cs[1])


def run_setting(generator, val: Val, num_beams: int, prior_weight: float):
    t0 = time.perf_counter()
    codes = generator.generate_codes_batch(val.texts, num_beams=num_beams, prior_weight=prior_weight)
    batch_ms = (time.perf_counter() - t0) * 1000 / len(val.texts)
    return codes, batch_ms


def single_query_ms(generator, val: Val, num_beams: int, prior_weight: float) -> dict:
    def candidates(text):
        codes = generator.generate_codes(text, num_beams=num_beams, prior_weight=prior_weight)
        return generator.candidates_from_codes(codes, POOL_SONGS)

    for text in val.texts[:3]:
        candidates(text)
    times = []
    for text in val.texts[:LATENCY_QUERIES]:
        t0 = time.perf_counter()
        candidates(text)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def summary(row: dict, base: dict | None) -> dict:
    out = {m: float(np.mean(row["per_query"][m])) for m in METRICS}
    out.update({k: v for k, v in row.items() if k != "per_query"})
    if base is not None:
        for m in METRICS:
            b = paired_bootstrap(row["per_query"][m], base["per_query"][m], n=2000, seed=0)
            out[f"vs_baseline_{m}"] = {k: b[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value")}
    return out


def two_fold_selection(rows: dict, keys: list[str], base_key: str, metric: str = "ndcg@10", seed: int = 0) -> dict:
    """Choose the best of ``keys`` on one half of the val queries, score it on the other half (both ways)."""
    n = len(rows[base_key]["per_query"][metric])
    half = np.random.default_rng(seed).permutation(n) < n // 2
    gains, chosen = [], []
    for pick in (half, ~half):
        best = max(keys, key=lambda k: np.mean(np.asarray(rows[k]["per_query"][metric])[pick]))
        chosen.append(best)
        held = ~pick
        gains.append(np.asarray(rows[best]["per_query"][metric])[held] - np.asarray(rows[base_key]["per_query"][metric])[held])
    diff = np.concatenate(gains)
    b = paired_bootstrap(diff, np.zeros_like(diff), n=2000, seed=0)
    return {"chosen_per_half": chosen, "held_out_mean_gain": float(diff.mean()), "ci_low": b["ci_low"],
            "ci_high": b["ci_high"]}


# ----------------------------------------------------------------------------------------------------------
# phase decode
# ----------------------------------------------------------------------------------------------------------


def phase_decode(upstream_dir: Path, val: Val, beams=BEAMS, weights=WEIGHTS, masses=MASSES) -> dict:
    from genrank_assets.ml.generator.tiger import TigerGenerator, load_tiger

    base = load_tiger(upstream_dir / "tiger")
    gens = {m: TigerGenerator(base.model, base.tokenizer, base.code_table, target_mode=base.target_mode,
                              max_codes=base.max_codes, max_input_length=base.encoder.max_length,
                              num_beams=base.num_beams, prior_mass=m) for m in masses}
    rows: dict[str, dict] = {}
    for nb in beams:
        codes, ms = run_setting(gens[masses[0]], val, nb, 0.0)
        rows[f"beams{nb}"] = {**score_codes(base, val, codes), "batch_ms": ms, "beams": nb, "prior": "none"}
        log.info("beams %d: %s", nb, {m: round(float(np.mean(rows[f'beams{nb}']['per_query'][m])), 4) for m in METRICS})
        for m in masses:
            for w in weights:
                rows[f"beams{nb}_rescore_{m}_{w}"] = {**score_codes(base, val, [rescored(gens[m], c, w) for c in codes]),
                                                      "batch_ms": ms, "beams": nb, "prior": f"rescore/{m}", "weight": w}
        for m in masses:
            for w in weights:
                codes_w, ms_w = run_setting(gens[m], val, nb, w)
                key = f"beams{nb}_search_{m}_{w}"
                rows[key] = {**score_codes(base, val, codes_w), "batch_ms": ms_w, "beams": nb, "prior": f"search/{m}",
                             "weight": w}
                log.info("%s: %s (%.0f ms/query batched)", key,
                         {k: round(float(np.mean(rows[key]['per_query'][k])), 4) for k in METRICS}, ms_w)
    return rows


# ----------------------------------------------------------------------------------------------------------
# phase retrain
# ----------------------------------------------------------------------------------------------------------


def train_variant(corpus, songs, song_ids, codes, out_dir: Path, config: dict, dataset_settings: dict) -> dict:
    """ltr_upstream._train_tiger with extra dataset settings (the baseline's otherwise); returns timings."""
    from genrank_assets.ml.data.corpus import train_popularity
    from genrank_assets.ml.generator.dataset import GENERATOR_DATASET, build_generator_dataset, examples_from_pairs
    from genrank_assets.ml.generator.model import build_model
    from genrank_assets.ml.generator.tiger import CodeTable, TigerGenerator, save_tiger
    from genrank_assets.ml.generator.tokenizer import make_tokenizer
    from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger
    from genrank_assets.ml.training import TrainConfig

    popularity = train_popularity(corpus)
    code_of = {s: tuple(int(v) for v in c) for s, c in zip(song_ids, codes)}
    pairs, stats = build_generator_dataset(corpus, code_of, popularity, max_songs_per_target=20, songs=songs,
                                           **{k: v for k, v in dataset_settings.items() if k != "index_samples"})
    log.info("dataset %s: %s", dataset_settings, stats)
    levels = [int(v) for v in codes.max(axis=0) + 1]
    train = pairs[pairs["split"] == "train"]
    titles = train[train["source"] == "playlist"]["text"].tolist()  # the baseline's tokenizer: titles only
    tokenizer = make_tokenizer("from_scratch", titles, levels, vocab_size=config["vocab_size"])
    model = build_model(tokenizer, "from_scratch", config.get("preset", "tiny"), seed=0)
    settings = dict(mode=config.get("target_mode", "single"), max_codes=20, max_input_length=64,
                    samples_per_playlist=config.get("samples_per_playlist", 4))
    index_samples = dataset_settings.get("index_samples", GENERATOR_DATASET.index_samples)
    train_ds = examples_from_pairs(train, tokenizer, seed=0, index_samples=index_samples, **settings)
    val_ds = examples_from_pairs(pairs[pairs["split"] == "val"], tokenizer, seed=1, **settings)
    t0 = time.perf_counter()
    result = train_tiger(model, tokenizer, train_ds, val_ds, TrainConfig.from_mapping(config, TIGER_TRAINING),
                         checkpoint_dir=out_dir.parent / f"ckpt_{out_dir.name}", log_fn=log.info)
    seconds = time.perf_counter() - t0
    table = CodeTable(song_ids, codes, np.array([popularity.get(s, 0) for s in song_ids], dtype=np.float64))
    save_tiger(TigerGenerator(model.to("cpu"), tokenizer, table, target_mode=settings["mode"],
                              num_beams=config.get("num_beams", 50)), out_dir)
    info = {"train_seconds": seconds, "train_examples_per_epoch": len(train_ds), "dataset_stats": stats,
            "best_val_loss": result.summary().get("best_val_loss"), "epochs_run": len(result.epochs)}
    (out_dir / "variant.json").write_text(json.dumps(info, indent=2, default=str))
    return info


def phase_retrain(upstream_dir: Path, val: Val, corpus, songs, variant: dict, name: str, beams: int,
                  prior: tuple[float, str] | None) -> dict:
    """Train the variant (once; cached) and score it at ``beams`` beams, without and with ``prior`` = (w, mass).
    The baseline's figures are phase decode's (the same deterministic generator on the same queries)."""
    import pandas as pd

    from genrank_assets.ml.generator.tiger import TigerGenerator, load_tiger
    from genrank_assets.ml.semantic_ids.codes import codes_from_frame

    song_ids, codes = codes_from_frame(pd.read_parquet(upstream_dir / "semantic_ids.parquet"))
    out_dir = WORK / name
    if not (out_dir / "tiger_config.json").exists():
        train_variant(corpus, songs, song_ids, codes, out_dir, preset_settings("cpu-real")["tiger_model"], variant)
    info = json.loads((out_dir / "variant.json").read_text())
    gen = load_tiger(out_dir)
    rows = {}
    for w in [0.0] if prior is None else [0.0, prior[0]]:
        if w:
            gen = TigerGenerator(gen.model, gen.tokenizer, gen.code_table, target_mode=gen.target_mode,
                                 max_codes=gen.max_codes, max_input_length=gen.encoder.max_length,
                                 num_beams=gen.num_beams, prior_mass=prior[1])
        codes_w, ms = run_setting(gen, val, beams, w)
        key = f"beams{beams}" + (f"_search_{prior[1]}_{w}" if w else "")
        rows[key] = {**score_codes(gen, val, codes_w), "batch_ms": ms, "beams": beams, "prior_weight": w}
        log.info("%s %s: %s", name, key, {m: round(float(np.mean(rows[key]['per_query'][m])), 4) for m in METRICS})
    return {"variant": variant, "info": info, "rows": rows}


def phase_ltr(val: Val, prior_weight: float, num_beams: int, threads: int) -> dict:
    """The generator's weight in the LTR system on val, the current generator vs the prior: val-only protocol of
    benchmarks/ltr.py (LightGBM trained on the val queries, rounds by 5-fold CV over them, figures out-of-fold;
    the parameters its cross-fitted run chose on val), pool of its results/ltr.json. Rows: ltr and
    ltr_no_generator (the generator's songs and features removed) for each generator setting; features of each
    setting are built in this run, cached under .cache/generator_changes (never the LTR benchmark's cache)."""
    import ltr as bench
    import torch
    from ltr_upstream import build_upstream

    from genrank_assets.ml.ranking.ltr.candidates import CandidateSources
    from genrank_assets.ml.ranking.ltr.features import FEATURES, GENERATOR_FEATURES, FeatureBuilder
    from genrank_assets.ml.ranking.ltr.ranker import LTRParams

    previous = json.loads((Path(__file__).resolve().parent / "results" / "ltr.json").read_text())
    params = LTRParams(**{**previous["ltr"]["ltr"]["params"], "num_threads": threads})
    pool_config = PoolConfig(**{**previous["pool_config"], "num_beams": num_beams,
                                "sources": tuple(previous["pool_config"]["sources"])})
    up = build_upstream(DEFAULT_DATA, CACHE)
    torch.set_num_threads(threads)
    sources = CandidateSources.fit(up.corpus, up.generator)
    song_info = {s: (n, g) for s, n, g in zip(up.songs["song_id"], up.songs["song_name"], up.songs["singer"])}
    builder = FeatureBuilder(sources, up.corpus, song_info, up.song_vectors, up.ranker)
    out, per_query = {"params": asdict_(params), "pool_config": asdict_(pool_config)}, {}
    for label, (w, nb) in {"current": (0.0, 50), "changed": (prior_weight, num_beams)}.items():
        up.generator.prior_weight = w
        cfg = replace(pool_config, num_beams=nb)
        directory = WORK / f"ltr_{label}_w{w}_b{nb}"
        directory.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        qids, texts, truths, frame, extra = bench.pools_and_features("val", up.corpus, "val", sources, builder, cfg,
                                                                     directory)
        build_s = time.perf_counter() - t0
        gen_hit = []
        labels = bench.label(frame, truths)
        for qid, rows in frame.groupby("query", sort=False).indices.items():
            idx = extra["proposed"][qid].get("generator", [])
            gen_hit.append(labels[rows][idx].sum() / len(truths[qid]))
        only_gen = frame[(frame["generator_proposed"] > 0) & (frame[["knn_proposed", "knn_cooc_proposed",
                                                                   "ridge_cooc_proposed"]].sum(axis=1) == 0)]
        variants = {"ltr": (frame, FEATURES),
                    "ltr_no_generator": (bench.without_generator(frame),
                                         tuple(f for f in FEATURES if f not in GENERATOR_FEATURES))}
        for name, (f, feats) in variants.items():
            model = bench.fit_ltr((f, bench.label(f, truths)), feats, params)
            scores = evaluate_rankings(bench.rankings_of(f, model.oof_scores, extra["fill"], val.depth), truths)
            per_query[f"{label}/{name}"] = {m: np.asarray(scores["per_query"][m]) for m in
                                            ("ndcg@10", "recall@100", "r_precision")}
            out[f"{label}/{name}"] = {m: float(scores[m]) for m in ("ndcg@10", "recall@100", "r_precision")}
            out[f"{label}/{name}"]["n_rounds"] = model.n_rounds
        out[f"{label}/pool"] = {"prior_weight": w, "num_beams": nb, "features_build_s": build_s,
                                "generator_recall_ceiling": float(np.mean(gen_hit)),
                                "songs_only_the_generator_proposed_per_query": len(only_gen) / len(qids),
                                "truth_hits_only_the_generator_proposed_per_query":
                                    float(bench.label(only_gen, truths).sum()) / len(qids)}
        log.info("%s: %s", label, {k: v for k, v in out.items() if k.startswith(label)})
    for a, b in (("changed/ltr", "changed/ltr_no_generator"), ("current/ltr", "current/ltr_no_generator"),
                 ("changed/ltr", "current/ltr")):
        out[f"{a} vs {b}"] = {m: {k: v for k, v in paired_bootstrap(per_query[a][m], per_query[b][m], n=2000,
                                                                     seed=0).items()
                                  if k in ("mean_diff", "ci_low", "ci_high", "p_value")}
                              for m in ("ndcg@10", "recall@100", "r_precision")}
    return out


def asdict_(obj) -> dict:
    from dataclasses import asdict

    return asdict(obj)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("decode", "latency", "retrain", "ltr", "report"), required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beams", type=int, nargs="*", default=list(BEAMS))
    parser.add_argument("--weights", type=float, nargs="*", default=list(WEIGHTS))
    parser.add_argument("--masses", nargs="*", default=list(MASSES))
    parser.add_argument("--variant", type=json.loads, default=None, help="retrain: build_generator_dataset settings")
    parser.add_argument("--name", default="dsi")
    parser.add_argument("--prior", type=json.loads, default=None, help='retrain: also with the prior, [w, "mass"]')
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    upstream_dir = _cache_dir(CACHE, DEFAULT_DATA)
    corpus, songs = load_data(DEFAULT_DATA)
    val = Val(corpus)
    started = time.perf_counter()
    if args.phase == "decode":
        rows = phase_decode(upstream_dir, val, args.beams, args.weights, args.masses)
        (WORK / f"decode_{'_'.join(map(str, args.beams))}.json").write_text(json.dumps(rows))
    elif args.phase == "latency":
        from genrank_assets.ml.generator.tiger import load_tiger

        base = load_tiger(upstream_dir / "tiger")
        out = {}
        for nb in args.beams:
            for w in [0.0, *args.weights]:
                out[f"beams{nb}_prior{w}"] = single_query_ms(base, val, nb, w)
                log.info("latency beams %d prior %s: %s", nb, w, out[f"beams{nb}_prior{w}"])
        (WORK / "latency.json").write_text(json.dumps(out))
    elif args.phase == "retrain":
        result = phase_retrain(upstream_dir, val, corpus, songs, args.variant or {}, args.name, args.beams[0],
                               tuple(args.prior) if args.prior else None)
        (WORK / f"retrain_{args.name}.json").write_text(json.dumps(result, default=str))
    elif args.phase == "ltr":
        result = phase_ltr(val, args.weights[0], args.beams[0], args.threads)
        (WORK / "ltr.json").write_text(json.dumps(result, default=str))
    else:
        report()
    log.info("phase %s: %.0f s, peak RSS %.0f MiB", args.phase, time.perf_counter() - started,
             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return 0


def report() -> None:
    """benchmarks/results/generator_changes.json from the phases' files (per-query figures stay in .cache)."""
    import glob

    decode: dict[str, dict] = {}
    for path in sorted(glob.glob(str(WORK / "decode_*.json"))):
        decode.update(json.loads(Path(path).read_text()))
    base = decode["beams50"]
    rows = {k: summary(v, None if k == "beams50" else base) for k, v in decode.items()}
    prior_keys = [k for k in decode if k.startswith("beams50_search_popularity")]
    selection = {m: two_fold_selection(decode, prior_keys, "beams50", m) for m in ("ndcg@10", "pool_recall")}
    latency = json.loads((WORK / "latency.json").read_text()) if (WORK / "latency.json").exists() else {}
    retrain = {}
    for path in sorted(glob.glob(str(WORK / "retrain_*.json"))):
        r = json.loads(Path(path).read_text())
        out = {"variant": r["variant"], "info": r["info"], "rows": {}}
        for k, v in r["rows"].items():
            out["rows"][k] = summary(v, base)  # against the current generator (50 beams, no prior)
            if k != "beams50" and k in decode:  # and against the current generator with the same decoding
                same = summary(v, decode[k])
                out["rows"][k]["vs_baseline_same_decoding"] = {m: same[f"vs_baseline_{m}"] for m in METRICS}
        retrain[Path(path).stem] = out
    result = {
        "dataset": str(DEFAULT_DATA), "split": "val", "queries": len(base["per_query"]["ndcg@10"]),
        "baseline": "cached upstream TIGER (benchmarks/ltr_upstream.py, cpu-real preset), 50 beams, no prior",
        "protocol": ("generator alone = first 100 candidate songs then popular songs; pool_recall = share of truth "
                     f"in the generator's first {POOL_SONGS} songs (candidates.recall_ceiling's generator source); "
                     "vs_baseline_* = paired bootstrap (2,000 resamples) of per-query differences, 95% CI"),
        "decode": rows, "prior_weight_selection_2fold": selection, "latency_single_query": latency,
        "retrain": retrain,
        "ltr_val": json.loads((WORK / "ltr.json").read_text()) if (WORK / "ltr.json").exists() else None,
    }
    write_json("generator_changes", result)
    for k, v in rows.items():
        ci = v.get("vs_baseline_ndcg@10")
        extra = f"  dNDCG {ci['mean_diff']:+.4f} [{ci['ci_low']:+.4f}, {ci['ci_high']:+.4f}]" if ci else ""
        print(f"{k:<36}" + " ".join(f"{v[m]:.4f}" for m in METRICS) + f" {v['batch_ms']:.0f}ms" + extra)


if __name__ == "__main__":
    raise SystemExit(main())
