"""The registered cross-encoder ranker on mpd7k: does reranking 100 candidates help, and what does it cost?

Reads the warehouse and MLflow registry an end-to-end run left under --home (benchmarks/end_to_end.py).

For each test title (docs/benchmark.md protocol) and each candidate source:
- title-kNN: the reference title-kNN's top 100 (fitted in this run on the train playlists),
- generator: the registered generator's top 100 (``generate_candidates(n=100)``, its own beam width; no
  popularity fill, so a list can hold fewer than 100 songs),
NDCG@10 and Recall@10 are measured before reranking (source order) and after reranking by
- the ranker's logit alone, and
- logit + w * log1p(train popularity), w chosen on the val split (best val NDCG@10 over a grid, per source) —
  the recommender's own final score and weight tuning (``final_scores`` / ``tune_weights``),
and, as a reference without the ranker, by train popularity alone.
Candidates without a song vector cannot be scored: they keep their source order, after the scored ones. Equal
scores go to the more popular song.

Also: ``ranker.score(text, vectors of 100 songs)`` latency p50/p95 over --latency-queries test titles (after 3
warm-up calls), and the registered ranker's training time and best val AUC (MLflow run; the training seconds
come from the Dagster materialization's metadata, which is where the ranker asset records them).

torch.set_num_threads(1) throughout: small models are fastest single-threaded on 2 cores (docs/findings.md).

    .venv/bin/python benchmarks/ranker.py [--home /tmp/genrank_mpd7k]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPUS, RESULTS, peak_rss_mib, warehouse_frames, write_json  # noqa: E402

from genrank_assets import paths  # noqa: E402
from genrank_assets.ml.baselines.classical import benchmark_queries, reference_title_knn  # noqa: E402
from genrank_assets.ml.data.corpus import train_popularity  # noqa: E402
from genrank_assets.ml.evaluation.metrics import evaluate_rankings, paired_bootstrap  # noqa: E402
from genrank_assets.ml.evaluation.procedure import tune_weights  # noqa: E402
from genrank_assets.ml.ranking.cross_encoder.model import song_text  # noqa: E402
from genrank_assets.ml.serving import registry  # noqa: E402
from genrank_assets.ml.serving.recommender import ComponentScores, Recommender, rank_with_weights  # noqa: E402

log = logging.getLogger("benchmarks.ranker")

N_CANDIDATES = 100
WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)
SOURCES = ("title_knn", "generator")


# ------------------------------------------------------------------------------------------------ data
def load_corpus(home: Path) -> pd.DataFrame:
    (corpus,) = warehouse_frames(home, CORPUS)
    corpus["song_ids"] = corpus["song_ids"].map(lambda ids: [str(s) for s in ids])
    return corpus


class Scorer:
    """Ranker logits of a query's candidates: the Recommender's own (same text cleaning, song text when the model
    reads it)."""

    def __init__(self, generator, ranker_py):
        self.recommender = Recommender(generator, ranker_py.ranker, ranker_py.song_vectors, ranker_py.song_info)
        self.clean = generator.encoder.clean
        self.ranker = ranker_py.ranker
        self.song_vectors = ranker_py.song_vectors
        self.song_info = ranker_py.song_info

    def song_texts(self, song_ids: list[str]) -> list[str] | None:
        if not self.ranker.config.use_song_text:
            return None
        return [song_text(*self.song_info.get(s, ("", ""))) for s in song_ids]

    def logits(self, text: str, song_ids: list[str]) -> np.ndarray:
        return self.recommender.ranker_logits(text, [self.song_vectors.index_of(s) for s in song_ids])


class ScoredCandidates:
    """One split, one source: per query the candidates (source order), which have a vector, and their logits."""

    def __init__(self, qids, texts, candidates: list[list[str]], scorer: Scorer, popularity: dict[str, int]):
        self.qids = list(qids)
        self.candidates = [list(c) for c in candidates]
        self.scored, self.unscored, self.logits, self.log_pop = [], [], [], []
        for text, cands in zip(texts, self.candidates):
            scored = [s for s in cands if scorer.song_vectors.index_of(s) is not None]
            self.scored.append(scored)
            self.unscored.append([s for s in cands if scorer.song_vectors.index_of(s) is None])
            self.logits.append(scorer.logits(text, scored) if scored else np.zeros(0))
            self.log_pop.append(np.log1p(np.array([popularity.get(s, 0) for s in scored], dtype=np.float64)))
        # The recommender's score components; candidates without a vector follow in source order.
        self.components = ComponentScores(self.scored, self.logits, self.log_pop,
                                          [np.zeros(len(s)) for s in self.scored], tail=self.unscored)

    def source_order(self) -> dict[str, list[str]]:
        return dict(zip(self.qids, self.candidates))

    def reranked(self, popularity_weight: float | None) -> dict[str, list[str]]:
        """Scored candidates by the final score, logit + w * log1p(popularity) (ties: more popular first), then
        the unscored ones in source order. ``popularity_weight=None``: logits alone (w = 0)."""
        return dict(zip(self.qids, rank_with_weights(self.components, popularity_weight or 0.0, 0.0, None)))

    def by_popularity(self) -> dict[str, list[str]]:
        """Reference without the ranker: scored candidates by train popularity (ties: source order), then the
        unscored ones (the limit of a large popularity weight)."""
        return {q: [scored[i] for i in np.lexsort((np.arange(len(lp)), -lp))] + unscored
                for q, scored, unscored, lp in zip(self.qids, self.scored, self.unscored, self.log_pop)}

    def stats(self) -> dict:
        counts = np.array([len(c) for c in self.candidates])
        unscored = np.array([len(u) for u in self.unscored])
        return {"mean_candidates": float(counts.mean()), "share_lists_short": float((counts < N_CANDIDATES).mean()),
                "mean_without_vector": float(unscored.mean()),
                "share_candidates_without_vector": float(unscored.sum() / max(1, counts.sum()))}


def metrics_of(rankings: dict, truths: dict) -> dict:
    m = evaluate_rankings(rankings, truths, ks=(10, 100))
    return {"ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"], "recall@100": m["recall@100"],
            "per_query": m["per_query"]}


def choose_weight(val: ScoredCandidates, truths: dict) -> tuple[float, list[dict]]:
    """The recommender's weight tuning over WEIGHT_GRID (no classical part; ties: the smaller weight)."""
    weight, _, trials = tune_weights(val.components, val.qids, truths, WEIGHT_GRID, [0.0])
    return weight, [{k: t[k] for k in ("popularity_weight", "val_ndcg@10")} for t in trials]


# ------------------------------------------------------------------------------------------------ latency
def scoring_latency(scorer: Scorer, knn, texts: list[str]) -> dict:
    """ranker.score for exactly 100 songs per title: the first 100 title-kNN songs that have a vector."""
    inputs = []
    for text, ranked in zip(texts, knn.recommend_many(texts, 4 * N_CANDIDATES)):
        songs = [s for s in ranked if scorer.song_vectors.index_of(s) is not None][:N_CANDIDATES]
        if len(songs) == N_CANDIDATES:
            rows = [scorer.song_vectors.index_of(s) for s in songs]
            inputs.append((scorer.clean(text), scorer.song_vectors.vectors[rows], scorer.song_texts(songs)))
    for args in inputs[:3]:  # warm-up
        scorer.ranker.score(*args)
    ms = []
    for args in inputs:
        t0 = time.perf_counter()
        scorer.ranker.score(*args)
        ms.append((time.perf_counter() - t0) * 1000)
    return {"queries": len(ms), "candidates": N_CANDIDATES, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "use_song_text": bool(scorer.ranker.config.use_song_text)}


# ------------------------------------------------------------------------------------------------ training
def dagster_train_seconds(home: Path, run_id: str) -> dict:
    """The ranker_model materialization whose metadata names this MLflow run: its train_seconds."""
    dagster_home = home / "dagster"
    if not (dagster_home / "storage").is_dir():
        return {"train_seconds": None, "note": f"no Dagster instance under {dagster_home}"}
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        records = dg.DagsterInstance.get().fetch_materializations(dg.AssetKey("ranker_model"), limit=50).records
    except Exception as err:  # a benchmark figure, not worth failing the whole run for
        return {"train_seconds": None, "note": f"Dagster instance unreadable: {err!r}"}
    for record in records:
        meta = record.asset_materialization.metadata
        if "mlflow_run_id" in meta and meta["mlflow_run_id"].value == run_id:
            return {"train_seconds": meta["train_seconds"].value, "dagster_run_id": record.run_id,
                    "train_pairs": meta["train_pairs"].value if "train_pairs" in meta else None,
                    "val_pairs": meta["val_pairs"].value if "val_pairs" in meta else None}
    return {"train_seconds": None, "note": "no ranker_model materialization names this MLflow run"}


def e2e_step_seconds(home: Path) -> float | None:
    """Wall time of the ranker_model step in results/end_to_end.json, when that run used this home."""
    path = RESULTS / "end_to_end.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("home") != str(home):
        return None
    return next((s["wall_s"] for s in data.get("steps", []) if s["asset"] == "ranker_model"), None)


def registered_training(client: MlflowClient, home: Path, version: int) -> dict:
    run_id = client.get_model_version(registry.RANKER_NAME, str(version)).run_id
    run = client.get_run(run_id)
    history = {k: [m.value for m in client.get_metric_history(run_id, k)] for k in ("val_auc", "train_loss", "val_loss")}
    params = run.data.params
    return {
        "version": version, "run_id": run_id,
        "best_val_auc": run.data.metrics.get("best_val_auc"),
        "val_auc_by_epoch": history["val_auc"], "train_loss_by_epoch": history["train_loss"],
        "val_loss_by_epoch": history["val_loss"],
        "params": {k: params.get(k) for k in ("init_from", "epochs", "batch_size", "lr", "use_song_text",
                                              "interaction_dim", "train_pairs", "device", "precision", "tiger_model")},
        **dagster_train_seconds(home, run_id),
        "e2e_step_wall_s": e2e_step_seconds(home),
    }


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default="/tmp/genrank_mpd7k")
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--max-queries", type=int, default=0, help="0: every val/test query (a smaller number: smoke runs)")
    ap.add_argument("--name", default="ranker", help="results/<name>.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("genrank_assets.ml.evaluation.metrics").setLevel(logging.ERROR)  # 100-song lists vs long truths
    torch.set_num_threads(1)
    home = Path(args.home)

    corpus = load_corpus(home)
    splits = {}
    for split in ("val", "test"):
        qids, texts, truths = benchmark_queries(corpus, split)
        if args.max_queries:
            qids, texts = qids[: args.max_queries], texts[: args.max_queries]
            truths = {q: truths[q] for q in qids}
        splits[split] = (qids, texts, truths)

    registry.connect(home)
    tiger_v, ranker_v = registry.alias_version(registry.TIGER_NAME), registry.alias_version(registry.RANKER_NAME)
    if tiger_v is None or ranker_v is None:
        raise SystemExit(f"genrank-tiger / genrank-ranker need a @champion in {paths.mlflow_tracking_uri(home)}: "
                         "run end_to_end.py")
    generator = registry.load_python_model(f"models:/{registry.TIGER_NAME}@{registry.CHAMPION}").generator
    ranker_py = registry.load_python_model(f"models:/{registry.RANKER_NAME}@{registry.CHAMPION}")
    ranker_py.ranker.eval()
    scorer = Scorer(generator, ranker_py)
    knn = reference_title_knn("char_wb").fit(corpus)
    popularity = train_popularity(corpus)  # train playlists per song

    scored: dict[tuple[str, str], ScoredCandidates] = {}
    seconds: dict[str, float] = {}
    for split, (qids, texts, _truths) in splits.items():
        sources = {"title_knn": knn.recommend_many(texts, N_CANDIDATES),
                   "generator": [list(c) for c in generator.generate_candidates_batch(texts, n=N_CANDIDATES)]}
        for source, cands in sources.items():
            t0 = time.perf_counter()
            scored[split, source] = ScoredCandidates(qids, texts, cands, scorer, popularity)
            seconds[f"{split}/{source}"] = time.perf_counter() - t0
            log.info("%s %s: %d queries scored in %.1fs", split, source, len(qids), seconds[f"{split}/{source}"])

    results = {}
    vq, tq = splits["val"][2], splits["test"][2]
    for source in SOURCES:
        weight, trials = choose_weight(scored["val", source], vq)
        test = scored["test", source]
        variants = {"source_order": metrics_of(test.source_order(), tq),
                    "ranker_logit": metrics_of(test.reranked(None), tq),
                    "logit_plus_popularity": metrics_of(test.reranked(weight), tq),
                    "popularity_only": metrics_of(test.by_popularity(), tq)}
        before = variants["source_order"]["per_query"]
        results[source] = {
            "candidates": test.stats(),
            "popularity_weight": weight, "weight_at_grid_edge": weight == max(WEIGHT_GRID),
            "weight_trials_val": trials,
            "test": {name: {k: v for k, v in m.items() if k != "per_query"} for name, m in variants.items()},
            "bootstrap_ndcg@10_vs_source_order": {
                name: paired_bootstrap(m["per_query"]["ndcg@10"], before["ndcg@10"], n=1000, seed=0)
                for name, m in variants.items() if name != "source_order"},
        }
        results[source]["_per_query"] = {name: m["per_query"]["ndcg@10"] for name, m in variants.items()}
    # The reranked generator list against the plain title-kNN list, query by query.
    knn_plain = results["title_knn"]["_per_query"]["source_order"]
    cross = {name: paired_bootstrap(v, knn_plain, n=1000, seed=0)
             for name, v in results["generator"].pop("_per_query").items()}
    results["title_knn"].pop("_per_query")

    latency = scoring_latency(scorer, knn, splits["test"][1][: args.latency_queries])
    training = registered_training(MlflowClient(), home, ranker_v)

    # -- table ----------------------------------------------------------------------------------------------
    n_test = len(splits["test"][0])
    print(f"\nReranking on {n_test} test queries (w chosen on {len(splits['val'][0])} val queries; candidates "
          "without a vector keep their source order at the end)")
    print(f"{'source':<10} {'order':<28} {'NDCG@10':>8} {'R@10':>7} {'ΔNDCG@10 [95% CI]':>28}")
    for source in SOURCES:
        for name, m in results[source]["test"].items():
            b = results[source]["bootstrap_ndcg@10_vs_source_order"].get(name)
            ci = f"{b['mean_diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]" if b else ""
            label = {"source_order": "source order", "ranker_logit": "ranker logit",
                     "logit_plus_popularity": f"logit + {results[source]['popularity_weight']} log1p(pop)",
                     "popularity_only": "popularity only (no ranker)"}[name]
            print(f"{source:<10} {label:<28} {m['ndcg@10']:>8.4f} {m['recall@10']:>7.4f} {ci:>28}")
        c = results[source]["candidates"]
        print(f"{'':<10} candidates: {c['mean_candidates']:.1f} per query, {c['mean_without_vector']:.1f} without a "
              f"vector; Recall@100 of the set {results[source]['test']['source_order']['recall@100']:.4f}")
    print(f"\nranker.score, {latency['candidates']} candidates, {latency['queries']} test titles: "
          f"p50 {latency['p50_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms")
    ts = training.get("train_seconds")
    print(f"genrank-ranker v{ranker_v}: best val AUC {training['best_val_auc']:.4f}, training "
          f"{'n/a' if ts is None else f'{ts:.0f} s'} (e2e step wall {training['e2e_step_wall_s']} s), "
          f"{training['params']['epochs']} epochs, {training['params']['train_pairs']} train pairs")

    write_json(args.name, {
        "home": str(home),
        "threads": 1,
        "threads_note": "torch.set_num_threads(1) throughout: small models are fastest single-threaded on 2 cores "
                        "(docs/findings.md).",
        "models": {"tiger": f"models:/{registry.TIGER_NAME}/{tiger_v}", "ranker": f"models:/{registry.RANKER_NAME}/{ranker_v}"},
        "protocol": "docs/benchmark.md test split (queries = titles as stored, truth = distinct songs); the popularity "
                    "weight is chosen per source on the val split by NDCG@10 over the grid "
                    f"{list(WEIGHT_GRID)} (ties: smaller weight), then applied once to test",
        "candidates_setup": "title_knn: reference title-kNN (char 2-4, 50 neighbours) top 100, fitted on the train "
                            "playlists in this run; generator: registered generator's generate_candidates(n=100) at "
                            f"its own beam width ({generator.num_beams}), no popularity fill. Candidates without a "
                            "song vector cannot be scored and keep their source order after the scored ones; equal "
                            "scores rank the more popular song first. Popularity = train playlists holding the song.",
        "n_queries": {"val": len(splits["val"][0]), "test": n_test},
        "results": results,
        "bootstrap_ndcg@10_generator_variants_vs_title_knn_source_order": cross,
        "scoring_seconds": seconds,
        "scoring_latency": {**latency, "setup": "ranker.score(clean title, vectors of the first 100 title-kNN songs "
                                                "that have a vector) one title at a time after 3 warm-ups, CPU"},
        "training": training,
        "peak_rss_mib": peak_rss_mib(),
    })


if __name__ == "__main__":
    main()
