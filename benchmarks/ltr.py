"""The learning-to-rank stage on mpd7k (issue 12): candidate pool + features + LightGBM lambdarank, against
kernel ridge + co-occurrence measured in the same run, with ablations.

Protocol (docs/benchmark.md): upstream models fitted on the train split (benchmarks/ltr_upstream.py, cached);
the ranker is trained on the VAL queries, whose playlists no upstream model was fitted on (the leakage rule:
a train playlist's own songs would vote for themselves in kNN / co-occurrence / same-title features); its
number of rounds and hyperparameters are chosen by 5-fold cross-validation over val queries, and the val
figures are the folds' out-of-fold predictions. Test is scored once, by the ranker fitted on all val queries.

Rows (test, each with a paired-bootstrap 95% CI of NDCG@10 against ridge + co-occurrence):
- ridge_cooc (bounded, the pool's source), ridge_cooc_exact (the docs/benchmark.md dual), knn_cooc;
- ltr: every source and feature;
- ltr_no_generator: the generator's candidates (songs only it proposed) and its features removed;
- ltr_no_cross_encoder: without the cross-encoder feature; ltr_no_classical: without the classical features;
- the pool's recall ceiling (share of truth inside the pool), per source and for the union.
Plus Recall@100 and R-precision, per-query latency of candidates + features + ranking (p50/p95, models loaded),
feature importances. A final ranking is the pool by LTR score, then ridge + co-occurrence's ranking (fill).

    .venv/bin/python benchmarks/ltr.py [--data DIR --preset demo] [--val-only] [--per-source N]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json  # noqa: E402
from baselines import DEFAULT_DATA  # noqa: E402
from ltr_upstream import CACHE, _cache_dir, build_upstream  # noqa: E402

from genrank_assets.ml.baselines import classical as bl  # noqa: E402
from genrank_assets.ml.evaluation.metrics import evaluate_rankings, paired_bootstrap  # noqa: E402
from genrank_assets.ml.ranking.ltr.candidates import CandidateSources, PoolConfig, build_pool, check_not_in_training  # noqa: E402
from genrank_assets.ml.ranking.ltr.features import (  # noqa: E402
    CLASSICAL_FEATURES,
    CROSS_ENCODER_FEATURES,
    FEATURES,
    GENERATOR_FEATURES,
    FeatureBuilder,
)
from genrank_assets.ml.ranking.ltr.ranker import LTRParams, LTRRanker, ranked_with_fill  # noqa: E402

log = logging.getLogger("benchmarks.ltr")

METRICS = ("recall@10", "ndcg@10", "recall@100", "r_precision")
GOAL = {"ndcg@10": 0.163, "recall@100": 0.101, "r_precision": 0.097}
PARAM_GRID = [  # chosen by cross-validated NDCG@10 on val
    {"objective": "lambdarank", "num_leaves": 15, "learning_rate": 0.05, "min_data_in_leaf": 50},
    {"objective": "lambdarank", "num_leaves": 4, "learning_rate": 0.02, "min_data_in_leaf": 200},
    {"objective": "rank_xendcg", "num_leaves": 15, "learning_rate": 0.05, "min_data_in_leaf": 50},
    {"objective": "rank_xendcg", "num_leaves": 4, "learning_rate": 0.02, "min_data_in_leaf": 200},
]


def pools_and_features(name: str, corpus, split: str, sources, builder, config: PoolConfig, cache_dir: Path):
    """Pools (for fills and ceilings) and the feature table of every ``split`` query of ``corpus``; cached."""
    qids, texts, truths = bl.benchmark_queries(corpus, split)
    check_not_in_training(qids, sources)  # the rule that keeps a playlist from voting for itself
    key = hashlib.sha256(json.dumps([asdict(config), FEATURES, qids]).encode()).hexdigest()[:10]
    path = cache_dir / f"features_{name}_{key}.parquet"
    fills_path = cache_dir / f"fills_{name}_{key}.json"
    if path.exists() and fills_path.exists():
        frame = pd.read_parquet(path)
        extra = json.loads(fills_path.read_text())
        return qids, texts, truths, frame, extra
    frames, extra = [], {"fill": {}, "proposed": {}}
    t0 = time.perf_counter()
    for i, (qid, text) in enumerate(zip(qids, texts)):
        pool = build_pool(text, sources, config)
        frame = builder.features(pool)
        frame.insert(0, "query", qid)
        frames.append(frame)
        catalogue = sources.catalogue
        extra["fill"][qid] = [catalogue.song_ids[r] for r in pool.classical_top]
        extra["proposed"][qid] = {s: np.flatnonzero(p).tolist() for s, p in pool.proposed.items()}
        if (i + 1) % 100 == 0:
            log.info("%s: %d/%d queries, %.0f ms/query", name, i + 1, len(qids),
                     (time.perf_counter() - t0) * 1000 / (i + 1))
    frame = pd.concat(frames, ignore_index=True)
    frame.to_parquet(path)
    fills_path.write_text(json.dumps(extra))
    return qids, texts, truths, frame, extra


def label(frame: pd.DataFrame, truths: dict) -> np.ndarray:
    return np.array([s in truths[q] for q, s in zip(frame["query"], frame["song_id"])], dtype=np.float64)


def without_generator(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows some classical source proposed, with n_sources / q_pool_size recounted without the generator."""
    classical = frame[["knn_proposed", "knn_cooc_proposed", "ridge_cooc_proposed"]].sum(axis=1) > 0
    out = frame[classical].copy()
    out["n_sources"] = out["n_sources"] - out["generator_proposed"]
    out["q_pool_size"] = out.groupby("query")["song_id"].transform("size").astype(np.float64)
    return out.reset_index(drop=True)


def restrict_pool(frame: pd.DataFrame, per_source: int) -> pd.DataFrame:
    """The pool of a smaller ``per_source`` from one built with a larger one: generator songs and songs a classical
    source ranked above ``per_source``, with the proposed flags, n_sources and q_pool_size recounted."""
    out = frame.copy()
    for source in ("knn", "knn_cooc", "ridge_cooc"):
        out[f"{source}_proposed"] = (out[f"{source}_rank"] < per_source).astype(np.float64)
    flags = out[["generator_proposed", "knn_proposed", "knn_cooc_proposed", "ridge_cooc_proposed"]]
    out = out[flags.sum(axis=1) > 0].copy()
    out["n_sources"] = flags.loc[out.index].sum(axis=1)
    out["q_pool_size"] = out.groupby("query")["song_id"].transform("size").astype(np.float64)
    return out.reset_index(drop=True)


def rankings_of(frame: pd.DataFrame, scores: np.ndarray, fills: dict, depth: int) -> dict[str, list[str]]:
    out = {}
    for qid, rows in frame.groupby("query", sort=False).indices.items():
        out[qid] = ranked_with_fill(list(frame["song_id"].to_numpy()[rows]), scores[rows], fills[qid], depth)
    return out


def fit_ltr(train, features, params: LTRParams, val=None) -> LTRRanker:
    """Fit on ``train`` = (frame, labels); with ``val`` = (frame, labels): early stopping on it."""
    model = LTRRanker(list(features), params)
    validation = None if val is None else (val[0], val[1], val[0]["query"])
    return model.fit(train[0], train[1], train[0]["query"], validation=validation)


def choose_params(train, features, val, fills, truths, depth) -> tuple[LTRParams, list[dict]]:
    tried = []
    for grid in PARAM_GRID:
        params = LTRParams(**grid)
        model = fit_ltr(train, features, params, val)
        scores = evaluate_rankings(rankings_of(val[0] if val else train[0], model.oof_scores, fills, depth), truths)
        tried.append({**grid, "n_rounds": model.n_rounds, "val_oof_ndcg@10": scores["ndcg@10"]})
        log.info("params %s: %d rounds, val NDCG@10 %.4f", grid, model.n_rounds, scores["ndcg@10"])
    best = max(tried, key=lambda t: t["val_oof_ndcg@10"])
    return LTRParams(**{k: best[k] for k in PARAM_GRID[0]}), tried


def metrics_row(rankings, truths, baseline_per_query=None) -> tuple[dict, dict]:
    scores = evaluate_rankings(rankings, truths)
    row = {m: scores[m] for m in METRICS}
    if baseline_per_query is not None:
        for m in ("ndcg@10", "recall@100", "r_precision"):
            b = paired_bootstrap(scores["per_query"][m], baseline_per_query[m], n=2000, seed=0)
            row[f"vs_ridge_cooc_{m}"] = {k: b[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value")}
    return row, scores["per_query"]


def latency(texts, sources, builder, config, model: LTRRanker, n: int) -> dict:
    """Per-query milliseconds of build_pool + features + predict + fill, one query at a time, models loaded."""
    stages = {"pool": [], "features": [], "rank": [], "total": []}
    for text in texts[:3]:  # warm-up
        model.predict(builder.features(build_pool(text, sources, config)))
    for text in texts[:n]:
        t0 = time.perf_counter()
        pool = build_pool(text, sources, config)
        t1 = time.perf_counter()
        frame = builder.features(pool)
        t2 = time.perf_counter()
        fill = [sources.catalogue.song_ids[r] for r in pool.classical_top]
        ranked_with_fill(pool.song_ids, model.predict(frame), fill, 100)
        t3 = time.perf_counter()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            stages[name].append(value * 1000)
    return {f"{name}_ms_p{p}": float(np.percentile(v, p)) for name, v in stages.items() for p in (50, 95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--preset", default="cpu-real", help="upstream settings (benchmarks/ltr_upstream.py)")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    parser.add_argument("--per-source", type=int, default=PoolConfig.per_source)
    parser.add_argument("--generator-songs", type=int, default=PoolConfig.generator_songs)
    parser.add_argument("--num-beams", type=int, default=PoolConfig.num_beams)
    parser.add_argument("--val-only", action="store_true", help="development: never touch the test split")
    parser.add_argument("--crossfit", type=int, default=0, help="K: train the ranker on cross-fitted train queries")
    parser.add_argument("--params", type=json.loads, default=None,
                        help='LTRParams chosen on val by an earlier run (skips the grid), e.g. \'{"objective": ...}\'')
    parser.add_argument("--ltr-per-source", type=int, default=0, help="rank a smaller pool than --per-source built")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "ltr.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.perf_counter()

    import torch

    up = build_upstream(args.data, args.cache, preset=args.preset)
    torch.set_num_threads(args.threads)
    cache_dir = _cache_dir(args.cache, args.data, args.preset)
    t0 = time.perf_counter()
    sources = CandidateSources.fit(up.corpus, up.generator)
    song_info = {s: (n, g) for s, n, g in zip(up.songs["song_id"], up.songs["song_name"], up.songs["singer"])}
    builder = FeatureBuilder(sources, up.corpus, song_info, up.song_vectors, up.ranker)
    fit_s = time.perf_counter() - t0
    config = PoolConfig(per_source=args.per_source, generator_songs=args.generator_songs, num_beams=args.num_beams)
    splits = ("val",) if args.val_only else ("val", "test")

    data = {}
    for split in splits:
        qids, texts, truths, frame, extra = pools_and_features(split, up.corpus, split, sources, builder, config,
                                                               cache_dir)
        data[split] = {"qids": qids, "texts": texts, "truths": truths, "frame": frame, "labels": label(frame, truths),
                       "fills": extra["fill"], "proposed": extra["proposed"]}
    depth = max(100, max(len(t) for split in data.values() for t in split["truths"].values()))

    # cross-fitting: train playlists as ranker queries, each with models that never saw its fold
    crossfit = None
    if args.crossfit:
        frames, truths_all = [], {}
        for k in range(args.crossfit):
            upk = build_upstream(args.data, args.cache, preset=args.preset, fold=(k, args.crossfit))
            torch.set_num_threads(args.threads)
            sources_k = CandidateSources.fit(upk.corpus, upk.generator)
            builder_k = FeatureBuilder(sources_k, upk.corpus, song_info, upk.song_vectors, upk.ranker)
            _, _, truths_k, frame_k, _ = pools_and_features(f"fold{k}of{args.crossfit}", upk.corpus, "val",
                                                            sources_k, builder_k, config, cache_dir)
            frames.append(frame_k)
            truths_all.update(truths_k)
        frame = pd.concat(frames, ignore_index=True)
        crossfit = {"frame": frame, "truths": truths_all, "labels": label(frame, truths_all)}

    # the pool's recall ceiling, per source and union
    ceilings = {}
    for split, d in data.items():
        shares = {s: [] for s in ("generator", "knn", "knn_cooc", "ridge_cooc", "union")}
        for qid, rows in d["frame"].groupby("query", sort=False).indices.items():
            truth = d["truths"][qid]
            hit = d["labels"][rows] > 0
            shares["union"].append(hit.sum() / len(truth))
            for source, idx in d["proposed"][qid].items():
                shares[source].append(hit[idx].sum() / len(truth))
        ceilings[split] = {k: float(np.mean(v)) for k, v in shares.items()}
        ceilings[split]["mean_pool_size"] = float(d["frame"].groupby("query").size().mean())
        log.info("%s recall ceiling: %s", split, ceilings[split])

    # the baselines, measured in this run on the same queries
    base_rows, base_pq = {}, {}
    for name, model in (("ridge_cooc", sources.ridge_cooc), ("knn_cooc", sources.knn_cooc),
                        ("ridge_cooc_exact", bl.kernel_ridge_cooccurrence().fit(up.corpus))):
        if name == "ridge_cooc_exact" and args.val_only:
            continue
        for split, d in data.items():
            if name == "ridge_cooc_exact" and split == "val":
                continue
            rankings = dict(zip(d["qids"], model.recommend_many(d["texts"], depth)))
            row, pq = metrics_row(rankings, d["truths"])
            base_rows[(name, split)], base_pq[(name, split)] = row, pq
    for (name, split), row in base_rows.items():
        if name != "ridge_cooc":
            b = paired_bootstrap(base_pq[(name, split)]["ndcg@10"], base_pq[("ridge_cooc", split)]["ndcg@10"], n=2000)
            row["vs_ridge_cooc_ndcg@10"] = {k: b[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value")}

    def pool(frame):
        return restrict_pool(frame, args.ltr_per_source) if args.ltr_per_source else frame

    variants = {
        "ltr": (pool, FEATURES),
        "ltr_no_generator": (lambda f: without_generator(pool(f)),
                             tuple(f for f in FEATURES if f not in GENERATOR_FEATURES)),
        "ltr_no_cross_encoder": (pool, tuple(f for f in FEATURES if f not in CROSS_ENCODER_FEATURES)),
        "ltr_no_classical": (pool, tuple(f for f in FEATURES if f not in CLASSICAL_FEATURES)),
    }
    val, test = data["val"], data.get("test")
    val_key = "val_early_stopping" if crossfit else "val_out_of_fold"
    rows, tuning, importances, models = {}, {}, {}, {}
    for name, (select, features) in variants.items():
        vframe = select(val["frame"])
        vpair = (vframe, label(vframe, val["truths"]))
        if crossfit:
            cframe = select(crossfit["frame"])
            train_pair, val_pair = (cframe, label(cframe, crossfit["truths"])), vpair
        else:
            train_pair, val_pair = vpair, None
        if name == "ltr" and args.params:
            params, tuning[name] = LTRParams(**args.params), "given (--params, chosen on val by an earlier run)"
        elif name == "ltr":
            params, tuning[name] = choose_params(train_pair, features, val_pair, val["fills"], val["truths"], depth)
        else:
            params = models["ltr"].params  # the full system's hyperparameters; rounds re-chosen
        model = fit_ltr(train_pair, features, params, val_pair)
        models[name] = model
        val_row, _ = metrics_row(rankings_of(vframe, model.oof_scores, val["fills"], depth), val["truths"],
                                 base_pq[("ridge_cooc", "val")])
        rows[name] = {val_key: val_row, "n_features": len(features), "n_rounds": model.n_rounds,
                      "params": asdict(params), "train_queries": int(train_pair[0]["query"].nunique())}
        if test is not None:
            tframe = select(test["frame"])
            rows[name]["test"], _ = metrics_row(rankings_of(tframe, model.predict(tframe), test["fills"], depth),
                                                test["truths"], base_pq[("ridge_cooc", "test")])
        importances[name] = model.feature_importance("gain")
        log.info("%s: %s NDCG@10 %.4f%s", name, val_key, val_row["ndcg@10"],
                 f", test NDCG@10 {rows[name]['test']['ndcg@10']:.4f}" if test is not None else "")
    models["ltr"].save(cache_dir / "ltr_model")
    if args.ltr_per_source:
        config = PoolConfig(per_source=args.ltr_per_source, generator_songs=args.generator_songs,
                            num_beams=args.num_beams)

    timing = latency((test or val)["texts"], sources, builder, config, models["ltr"], args.latency_queries)
    result = {
        "dataset": str(args.data),
        "protocol": ("docs/benchmark.md; upstream fitted on train; " + (
            f"LTR trained on train playlists cross-fitted over {args.crossfit} folds (each fold's features from "
            "upstream models fitted on the other folds), rounds and params chosen on val" if args.crossfit else
            "LTR trained on val (5-fold CV over val queries for rounds/params, val figures out-of-fold)")
            + "; test once"),
        "pool_config": asdict(config),
        "queries": {**{s: len(d["qids"]) for s, d in data.items()},
                    "crossfit_train": 0 if crossfit is None else int(crossfit["frame"]["query"].nunique())},
        "rows_per_split": {s: len(d["frame"]) for s, d in data.items()},
        "baselines": {f"{n}/{s}": r for (n, s), r in base_rows.items()},
        "ltr": rows,
        "recall_ceiling": ceilings,
        "tuning": tuning,
        "feature_importance_gain": importances,
        "latency": {**timing, "queries": args.latency_queries, "torch_threads": args.threads,
                    "what": "build_pool + features + LightGBM predict + fill, one query at a time"},
        "goal": GOAL,
        "upstream_seconds": up.seconds,
        "sources_fit_s": fit_s,
        "wall_s": time.perf_counter() - started,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print_summary(result, val_key if args.val_only else "test")
    if args.val_only:
        args.out = args.out.with_name("ltr_val.json")
    write_json(args.out.stem, result)
    return 0


def print_summary(result: dict, split: str) -> None:
    def line(name, row):
        ci = row.get("vs_ridge_cooc_ndcg@10")
        delta = f"  ΔNDCG@10 {ci['mean_diff']:+.4f} [{ci['ci_low']:+.4f}, {ci['ci_high']:+.4f}]" if ci else ""
        print(f"{name:<28}" + " ".join(f"{row[m]:.4f}" for m in METRICS) + delta)

    short = "test" if split == "test" else "val"
    print(f"{split:<28}R@10   NDCG@10 R@100  R-prec")
    for key, row in result["baselines"].items():
        if key.endswith(f"/{short}"):
            line(key.split("/")[0], row)
    for name, row in result["ltr"].items():
        line(name, row[split])
    print(f"recall ceiling ({short}):", {k: round(v, 4) for k, v in result["recall_ceiling"][short].items()})
    print("latency:", {k: round(v, 1) for k, v in result["latency"].items() if k.endswith(("p50", "p95"))})


if __name__ == "__main__":
    raise SystemExit(main())
