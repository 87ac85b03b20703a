"""Per-query serving cost of the classical sources (issue 24 §5): the old dense rows against the evidence path.

Each classical source used to build dense score rows over every train song per query (catalogue-length arrays),
so a query's cost grew with the catalogue. The serving path now scores only the query's evidence
(``classical.EvidenceScores``: the songs its neighbour playlists and the co-occurrence walk vote for, plus the
popularity head for the tie-break / popularity fill), with the same top k. This script times, per query, on
mpd7k (1x) and on a 3x catalogue:

* ``knn``: the tuned title-kNN (docs/benchmark.md; all train playlists as neighbours, so its evidence is
  nearly the whole catalogue and the new path keeps its dense row: no gain expected);
* ``ridge``: the bounded kernel ridge (300 neighbours), top 100;
* ``walk_knn`` / ``walk_ridge``: the two-hop co-occurrence walk alone, from the base's row computed beforehand;
* ``knn_cooc`` / ``ridge_cooc``: base + walk, top 100 (``recommend``);
* ``pool``: the classical part of ``candidates.build_pool`` (``PoolConfig(sources=CLASSICAL_SOURCES)``, no
  generator, top 1000 ranks per source). Old: the dense rows the pool used to build (title similarities, ridge
  and kNN rows, both dense walks, top 1000 each, the scores and ranks of the pool's songs), reimplemented here
  from the unchanged dense ``score_matrix`` code (``_dense_pool``); new: ``build_pool`` itself.

Old and new run back to back on each query (same noise), wall milliseconds by time.perf_counter; p50 and p95
per source and scale, and the ratio 3x / 1x of the p50 (target <= 1.3 for the new path). Every timed pair is
also checked for the same top k. The 3x catalogue is ``_common.scaled_mpd7k(3)``, as benchmarks/scaling.py
makes it: three copies of mpd7k, copy c > 0 with playlist and song ids suffixed ``x<c>`` (titles kept), so the
train playlists, the songs and the playlist-song pairs triple while each title's neighbours and each song's
popularity are those of 1x repeated three times. Assert-free: figures printed and written to
benchmarks/results/serving_cost.json.

    python -m benchmarks.serving_cost [--queries 200] [--scales 1 3]
    python -m benchmarks.serving_cost --quick   # 40 queries
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks._common import (
    MPD7K,
    add_output_args,
    argument_parser,
    output_path,
    parse_args,
    read_source,
    require_mpd7k,
    scaled_mpd7k,
    write_json,
)

ROOT = Path("/tmp/genrank_serving_cost")
QUICK = {"queries": 40}
TOP = 100  # recommend's k for the single sources (the pool's per_source)
TARGET_RATIO = 1.3
SOURCES = ("knn", "ridge", "walk_knn", "walk_ridge", "knn_cooc", "ridge_cooc", "pool")


def load_corpus(data: Path):
    """The corpus DataFrame of a data set in the input format (titles, songs, crc32 split), as scaling's probe."""
    import pandas as pd

    from genrank_assets.ml.data.corpus import split_of

    _, info, groups, _ = read_source(data)
    titles = {pid: ln.split(b"\t")[1].decode("utf-8", "replace") for pid, ln in info}
    ids = [pid.decode() for pid, _ in groups]
    return pd.DataFrame({"playlist_id": ids, "title": [titles.get(pid, "") for pid, _ in groups],
                         "song_ids": [[ln.split(b"\t")[1].decode() for ln in lines] for _, lines in groups],
                         "split": [split_of(i) for i in ids]})


def _dense_walk(model, base_row):
    """The old dense walk of ``model`` (``CoOccurrenceRecommender._score_matrix``) from a given base row."""
    from genrank_assets.ml.baselines.classical import CoOccurrenceRecommender, Recommender

    class Given(Recommender):
        def _score_matrix(self, texts):
            return base_row[None, :].copy()

    given = Given()
    given.catalogue = model.catalogue
    walk = CoOccurrenceRecommender(given, n_seeds=model.n_seeds, walk_weight=model.walk_weight,
                                   seed_popularity_power=model.seed_popularity_power,
                                   target_popularity_power=model.target_popularity_power)
    walk.catalogue = model.catalogue
    return walk.score_matrix(["(given)"])[0]


def _dense_pool(text, sources, config):
    """The classical part of the old build_pool: dense rows, top ``rank_depth`` each, the pool's scores/ranks."""
    import numpy as np

    from genrank_assets.ml.baselines.classical import top_k_indices

    catalogue = sources.catalogue
    similarities = sources.ridge_cooc.base.title_similarities([text])
    ridge_base = sources.ridge_cooc.base.scores_from_similarities(similarities)[0]
    knn_base = sources.knn_cooc.base.score_matrix([text])[0]
    dense = {"knn": knn_base, "knn_cooc": _dense_walk(sources.knn_cooc, knn_base),
             "ridge_cooc": _dense_walk(sources.ridge_cooc, ridge_base)}
    orders = {s: top_k_indices(row, min(config.rank_depth, len(row))) for s, row in dense.items()}
    pool = np.unique(np.concatenate([o[: config.per_source] for o in orders.values()]))
    n = len(catalogue)
    for source, row in dense.items():
        position = np.full(n + 1, np.nan)
        position[orders[source]] = np.arange(len(orders[source]), dtype=np.float64)
        _ = position[pool], row[pool]
    _ = knn_base[pool], ridge_base[pool]
    return {s: o[: config.per_source] for s, o in orders.items()}


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return 1000 * (time.perf_counter() - t0), out


def measure_scale(data: Path, n_queries: int) -> dict:
    import numpy as np

    from genrank_assets.ml.baselines.classical import top_k_indices
    from genrank_assets.ml.ranking.ltr.candidates import CLASSICAL_SOURCES, CandidateSources, PoolConfig, build_pool

    corpus = load_corpus(data)
    t0 = time.perf_counter()
    sources = CandidateSources.fit(corpus)
    fit_s = time.perf_counter() - t0
    knn_cooc, ridge_cooc = sources.knn_cooc, sources.ridge_cooc
    knn, ridge = knn_cooc.base, ridge_cooc.base
    catalogue = sources.catalogue
    texts = [t for t, s in zip(corpus["title"], corpus["split"]) if s == "val" and t.strip()][:n_queries]
    config = PoolConfig(sources=CLASSICAL_SOURCES)

    def old_new(text):
        """source -> (old callable, new callable), each returning the top ``TOP`` catalogue rows."""
        knn_row, knn_ev = knn.score_matrix([text])[0], knn.evidence(text)
        ridge_row, ridge_ev = ridge.score_matrix([text])[0], ridge.evidence(text)
        return {
            "knn": (lambda: top_k_indices(knn.score_matrix([text])[0], TOP), lambda: knn.evidence(text).top_k(TOP)),
            "ridge": (lambda: top_k_indices(ridge.score_matrix([text])[0], TOP),
                      lambda: ridge.evidence(text).top_k(TOP)),
            "walk_knn": (lambda: top_k_indices(_dense_walk(knn_cooc, knn_row), TOP),
                         lambda: knn_cooc.walk_from(knn_ev).top_k(TOP)),
            "walk_ridge": (lambda: top_k_indices(_dense_walk(ridge_cooc, ridge_row), TOP),
                           lambda: ridge_cooc.walk_from(ridge_ev).top_k(TOP)),
            "knn_cooc": (lambda: top_k_indices(knn_cooc.score_matrix([text])[0], TOP),
                         lambda: knn_cooc.evidence(text).top_k(TOP)),
            "ridge_cooc": (lambda: top_k_indices(ridge_cooc.score_matrix([text])[0], TOP),
                           lambda: ridge_cooc.evidence(text).top_k(TOP)),
            "pool": (lambda: _dense_pool(text, sources, config), lambda: build_pool(text, sources, config)),
        }

    times = {s: {"old": [], "new": []} for s in SOURCES}
    mismatches = {s: 0 for s in SOURCES}
    for i, text in enumerate([texts[0], *texts]):  # the first query once more, untimed: warm-up
        for source, (old, new) in old_new(text).items():
            old_ms, old_top = _timed(old)
            new_ms, new_top = _timed(new)
            if source == "pool":
                pool = new_top
                new_top = {s: np.array([catalogue.index[song] for song, p, r in
                                        zip(pool.song_ids, pool.proposed[s], pool.ranks[s]) if p])[
                    np.argsort([r for p, r in zip(pool.proposed[s], pool.ranks[s]) if p])] for s in CLASSICAL_SOURCES}
                same = all(np.array_equal(old_top[s], new_top[s]) for s in CLASSICAL_SOURCES)
            else:
                same = np.array_equal(old_top, new_top)
            if i > 0:
                times[source]["old"].append(old_ms)
                times[source]["new"].append(new_ms)
                mismatches[source] += int(not same)
    knn_sims = knn.tfidf.transform(texts[:20]) @ knn.title_vectors.T
    row = {"data": str(data), "train_playlists": int(catalogue.playlists.shape[0]), "catalogue_songs": len(catalogue),
           "catalogue_pairs": int(catalogue.playlists.nnz), "fit_s": round(fit_s, 1), "queries": len(texts),
           # the tuned kNN's neighbours: the share of train titles with a nonzero similarity to a query
           "tuned_knn_neighbour_share": round(float(knn_sims.nnz) / (knn_sims.shape[0] * knn_sims.shape[1]), 3),
           "sources": {}}
    for source in SOURCES:
        entry = {}
        for path in ("old", "new"):
            ms = np.array(times[source][path])
            entry[path] = {"p50_ms": round(float(np.percentile(ms, 50)), 3),
                           "p95_ms": round(float(np.percentile(ms, 95)), 3)}
        entry["speedup_p50"] = round(entry["old"]["p50_ms"] / entry["new"]["p50_ms"], 2)
        entry["top_k_mismatches"] = mismatches[source]
        row["sources"][source] = entry
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argument_parser(__doc__, "serving_cost")
    ap.add_argument("--queries", type=int, default=200, help="val titles timed per scale")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0], help="scale factors of mpd7k")
    add_output_args(ap, "40 queries")
    args = parse_args(ap, QUICK, argv)
    require_mpd7k()
    rows = []
    for scale in args.scales:
        data = MPD7K if scale == 1.0 else Path(scaled_mpd7k(scale, ROOT / "data" / f"s{scale:g}")["path"])
        load0 = os.getloadavg()[0]
        row = {"scale": scale, **measure_scale(data, args.queries)}
        row["load1_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]  # 2 shared cores: noise
        print(f"== scale {scale:g}: {row['train_playlists']} train playlists, {row['catalogue_songs']} songs, "
              f"{row['catalogue_pairs']} pairs, tuned-kNN neighbour share {row['tuned_knn_neighbour_share']}")
        for source, entry in row["sources"].items():
            print(f"   {source:<11} old p50 {entry['old']['p50_ms']:>8.2f} p95 {entry['old']['p95_ms']:>8.2f}   "
                  f"new p50 {entry['new']['p50_ms']:>8.2f} p95 {entry['new']['p95_ms']:>8.2f} ms   "
                  f"x{entry['speedup_p50']:<6} mismatches {entry['top_k_mismatches']}", flush=True)
        rows.append(row)
    ratios = {}
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        for source in SOURCES:
            ratios[source] = {path: round(hi["sources"][source][path]["p50_ms"] / lo["sources"][source][path]["p50_ms"], 2)
                              for path in ("old", "new")}
        print(f"p50 ratio {hi['scale']:g}x / {lo['scale']:g}x (target <= {TARGET_RATIO} for the new path):")
        for source, r in ratios.items():
            print(f"   {source:<11} old {r['old']:>5}   new {r['new']:>5}")
    write_json(output_path(args, "serving_cost"), {
        "top": TOP, "target_ratio_new_p50": TARGET_RATIO, "scales": rows,
        "p50_ratio_last_over_first": ratios,
        "note": "wall ms per query (time.perf_counter), old dense rows and new evidence path back to back on each "
                "query; on a shared 2-core machine, so compare old and new of one run, not across runs"})


if __name__ == "__main__":
    main()
