"""The cross-encoder ranker in two sections (``--sections``; default both).

``registered`` — the registered cross-encoder on mpd7k: does reranking 100 candidates help, and what does it cost?
Reads the warehouse and MLflow registry an end-to-end run left under --home (``python -m benchmarks.end_to_end``).
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

``presets`` — the cross-encoder's cost by preset on this machine's CPU: scoring latency and training throughput.
Real text: test-split titles of mpd7k as queries, real "song name - singer" strings as candidates, a BPE tokenizer
of 2,000 pieces trained on train titles + song texts (as the TIGER tokenizer is). Song vectors are random (64-d):
their values do not change the cost. For each preset ("tiny", "small") and with/without song text:
- latency of ``score(title, 100 candidates)`` (one batched forward pass), p50/p95 over --presets-queries queries,
  model loaded; baseline measured in the same run: the same 100 candidates scored one forward pass each;
- training throughput of ``train_ranker`` (samples/s, batch 64, fp32) on --presets-train-rows (title, song) rows.

torch.set_num_threads(1) in ``registered`` (small models are fastest single-threaded on 2 cores,
docs/findings.md), --threads in ``presets``. Both sections go to one JSON (``sections.registered``,
``sections.presets``); a run of one section leaves the other's entry as it was.

    python -m benchmarks.ranker [--home /tmp/genrank_mpd7k] [--sections registered presets]
    python -m benchmarks.ranker --quick   # the quick end_to_end home, 50 val / test queries, fewer preset rows
"""
from __future__ import annotations

import json
import logging
import os
import time
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
    QUICK_RESULTS,
    RESULTS,
    add_output_args,
    argument_parser,
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

log = logging.getLogger("benchmarks.ranker")

N_CANDIDATES = 100
WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)
SOURCES = ("title_knn", "generator")
SONG_DIM = 64  # the presets section's random song vectors
SECTIONS = ("registered", "presets")
QUICK = {"latency_queries": 10, "max_queries": 50, "presets_queries": 20, "presets_baseline_queries": 8,
         "presets_train_rows": 512}


# ------------------------------------------------------------------------------------------------ data
def load_corpus(home: Path) -> pd.DataFrame:
    (corpus,) = warehouse_frames(home, CORPUS)
    corpus["song_ids"] = corpus["song_ids"].map(lambda ids: [str(s) for s in ids])
    return corpus


class Scorer:
    """Ranker logits of a query's candidates: the Recommender's own (same text cleaning, song text when the model
    reads it)."""

    def __init__(self, generator, ranker_py):
        from genrank_assets.ml.serving.recommender import Recommender

        self.recommender = Recommender(generator, ranker_py.ranker, ranker_py.song_vectors, ranker_py.song_info)
        self.clean = generator.encoder.clean
        self.ranker = ranker_py.ranker
        self.song_vectors = ranker_py.song_vectors
        self.song_info = ranker_py.song_info

    def song_texts(self, song_ids: list[str]) -> list[str] | None:
        from genrank_assets.ml.ranking.cross_encoder.model import song_text

        if not self.ranker.config.use_song_text:
            return None
        return [song_text(*self.song_info.get(s, ("", ""))) for s in song_ids]

    def logits(self, text: str, song_ids: list[str]) -> np.ndarray:
        return self.recommender.ranker_logits(text, [self.song_vectors.index_of(s) for s in song_ids])


class ScoredCandidates:
    """One split, one source: per query the candidates (source order), which have a vector, and their logits."""

    def __init__(self, qids, texts, candidates: list[list[str]], scorer: Scorer, popularity: dict[str, int]):
        from genrank_assets.ml.serving.recommender import ComponentScores

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
        from genrank_assets.ml.serving.recommender import rank_with_weights

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
    from genrank_assets.ml.evaluation.metrics import evaluate_rankings

    m = evaluate_rankings(rankings, truths, ks=(10, 100))
    return {"ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"], "recall@100": m["recall@100"],
            "per_query": m["per_query"]}


def choose_weight(val: ScoredCandidates, truths: dict) -> tuple[float, list[dict]]:
    """The recommender's weight tuning over WEIGHT_GRID (no classical part; ties: the smaller weight)."""
    from genrank_assets.ml.evaluation.procedure import tune_weights

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


def e2e_step_seconds(home: Path, path: Path) -> float | None:
    """Wall time of the ranker_model step in ``path`` (end_to_end's JSON), when that run used this home."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("home") != str(home):
        return None
    return next((s["wall_s"] for s in data.get("steps", []) if s["asset"] == "ranker_model"), None)


def registered_training(client: MlflowClient, home: Path, version: int, e2e_json: Path) -> dict:
    from genrank_assets.ml.serving import registry

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
        "e2e_step_wall_s": e2e_step_seconds(home, e2e_json),
    }


# ---------------------------------------------------------------------------------------- presets section
def load_text(data_dir: Path, n_songs: int, seed: int):
    import csv

    import pandas as pd

    from genrank_assets.ml.data.corpus import split_of

    info = pd.read_csv(
        data_dir / "gen_playlist_info.csv", sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False
    )
    info["split"] = [split_of(p) for p in info["glid"]]
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


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argument_parser(__doc__, "ranker")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--home", type=Path, default=None, help=f"registered: the home end_to_end left (default "
                    f"{DEFAULT_HOME}; --quick: {QUICK_HOME})")
    ap.add_argument("--latency-queries", type=int, default=100, help="registered: titles timed one by one")
    ap.add_argument("--max-queries", type=int, default=0,
                    help="registered: 0 = every val/test query (fewer: smoke runs)")
    ap.add_argument("--data", type=Path, default=MPD7K, help="presets: the mpd7k folder")
    ap.add_argument("--presets-queries", type=int, default=200, help="presets: titles timed per model")
    ap.add_argument("--presets-baseline-queries", type=int, default=30,
                    help="presets: titles timed one candidate per forward pass")
    ap.add_argument("--presets-train-rows", type=int, default=4096, help="presets: (title, song) training rows")
    ap.add_argument("--threads", type=int, default=1, help="presets: torch threads")
    add_output_args(ap, "the quick end_to_end home, 50 val / test queries; 20 preset queries, 512 training rows")
    args = parse_args(ap, QUICK)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("genrank_assets.ml.evaluation.metrics").setLevel(logging.ERROR)  # 100-song lists vs long truths
    import torch

    sections = {}
    if "registered" in args.sections:
        torch.set_num_threads(1)
        e2e_json = (QUICK_RESULTS if args.quick else RESULTS) / "end_to_end.json"
        sections["registered"] = registered_section(pipeline_home(args), args, e2e_json)
    if "presets" in args.sections:
        torch.set_num_threads(args.threads)
        sections["presets"] = presets_section(require_mpd7k(args.data), args)
    write_sections(output_path(args, "ranker"), {k: {**v, "quick": args.quick} for k, v in sections.items()})


def registered_section(home: Path, args, e2e_json: Path) -> dict:
    """Reranking quality and cost of the ranker registered in ``home`` (the module docstring)."""
    from mlflow import MlflowClient

    from genrank_assets import paths
    from genrank_assets.ml.baselines.classical import benchmark_queries, reference_title_knn
    from genrank_assets.ml.data.corpus import train_popularity
    from genrank_assets.ml.evaluation.metrics import paired_bootstrap
    from genrank_assets.ml.serving import registry

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
                         "run python -m benchmarks.end_to_end")
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
    training = registered_training(MlflowClient(), home, ranker_v, e2e_json)

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

    return {
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
    }


def presets_section(data: Path, args) -> dict:
    """Scoring latency and training throughput per cross-encoder preset (the module docstring)."""
    import pandas as pd

    from genrank_assets.ml.ranking.cross_encoder.model import CrossEncoderRanker
    from genrank_assets.ml.ranking.cross_encoder.training import RANKER_TRAINING, train_ranker
    from genrank_assets.ml.vectors.song_vectors import SongVectors

    rng = np.random.default_rng(0)

    train_titles, test_titles, song_ids, song_texts = load_text(data, 5000, seed=0)
    tokenizer = bpe_tokenizer(train_titles + song_texts)
    vectors = rng.normal(scale=0.3, size=(len(song_ids), SONG_DIM)).astype(np.float32)
    song_vectors = SongVectors(song_ids, np.ones(len(song_ids), dtype=np.int64), vectors)
    song_text_of = dict(zip(song_ids, song_texts))
    queries = [test_titles[i] for i in rng.permutation(len(test_titles))[: args.presets_queries]]
    rows_i = rng.integers(0, len(train_titles), size=args.presets_train_rows)
    train_df = pd.DataFrame(
        {
            "text": [train_titles[i] for i in rows_i],
            "song_id": [song_ids[j] for j in rng.integers(0, len(song_ids), size=args.presets_train_rows)],
            "label": rng.integers(0, 2, size=args.presets_train_rows),
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
                ranker, queries[: args.presets_baseline_queries], vectors, song_texts, np.random.default_rng(1), True
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

    return {
        "torch_threads": args.threads,
        "candidates": N_CANDIDATES,
        "queries": len(queries),
        "tokenizer_vocab": len(tokenizer),
        "train_rows": args.presets_train_rows,
        "batch_size": 64,
        "precision": "fp32",
        "results": results,
    }


if __name__ == "__main__":
    main()
