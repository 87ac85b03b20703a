"""Queries that name the catalogue (issue 23 §6): "songs like <singer>" against the served learning-to-rank system.

Reads the warehouse and MLflow registry a full build left under --home (``python -m benchmarks.end_to_end``); its
champion must be the learning-to-rank recommender, built with the mention source and features
(``ml/ranking/ltr/mentions.py``). Two systems answer every query, both through ``LTRRecommender``:

* ``mention``: the champion as served;
* ``no_mention``: the same sources and features, the mention source left out of the pool and a ranker trained
  like the champion's (its LightGBM settings, the home's training rows: the folds', the holdout's, val's) without the
  mention features (``variants(...)["ltr_no_mention"]``): the system as it was before names were recognised.

Named-singer queries: the ``TOP_SINGERS`` most played singers of the train playlists (playlist-song pairs), each
in every template of ``TEMPLATES`` (English, Chinese and the bare name). Per template and system: the mean share
of the top ``K`` sung by the named singer, the mean share sung by it or one of its ``TOP_COOCCURRING``
co-occurring singers (the share of its train playlists that hold the other singer, ``CatalogueMentions``), and
how many singers get none of their own songs. Goal: the second share >= ``GOAL_SHARE`` for every template.

Ordinary titles: the protocol's test queries (docs/benchmark.md), NDCG@10 of both systems and a paired bootstrap
(1,000 resamples, seed 0) of mention − no_mention. Goal: not lower, i.e. the CI's upper end >= 0. The evaluation
report's ablation row ``ltr_no_mention`` measures the same difference on the test feature table.

    python -m benchmarks.named_singer [--home /tmp/genrank_mpd7k] [--singers 30] [--test-queries 0]
    python -m benchmarks.named_singer --quick   # the quick end_to_end home, 10 singers, 100 test queries

Writes benchmarks/results/named_singer.json (or --out).
"""
from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from benchmarks._common import (
    CORPUS,
    FOLD_FEATURE_QUERIES,
    NOT_TEST_FEATURES,
    add_output_args,
    argument_parser,
    output_path,
    parse_args,
    pipeline_home,
    warehouse_frames,
    write_json,
)

TEMPLATES = ("songs like {singer}", "{singer} style songs", "类似{singer}的歌曲", "{singer}的歌", "{singer}")
TOP_SINGERS = 30
TOP_COOCCURRING = 5  # the co-occurring singers whose songs count beside the named singer's
K = 10
GOAL_SHARE = 0.8
QUICK = {"singers": 10, "test_queries": 100}
SYSTEMS = ("mention", "no_mention")


def most_played_singers(corpus, mentions, song_info, n: int) -> list[tuple[str, str]]:
    """(singer key, name as the song info spells it most) of the ``n`` singers with the most train
    playlist-song pairs, ties by key."""
    plays: Counter = Counter()
    for songs in corpus.loc[corpus["split"] == "train", "song_ids"]:
        plays.update(g for s in dict.fromkeys(map(str, songs)) if (g := mentions.singer_of(s)))
    spellings: Counter = Counter((mentions.singer_of(s), singer) for s, (_, singer) in song_info.items())
    name = {}
    for (key, singer), _ in sorted(spellings.items(), key=lambda kv: (-kv[1], kv[0])):
        name.setdefault(key, singer)
    top = sorted(plays, key=lambda g: (-plays[g], g))[:n]
    return [(g, name.get(g, g)) for g in top]


def singer_shares(rec, singers: list[tuple[str, str]], k: int = K) -> dict[str, dict]:
    """Per template: the mean share of ``rec``'s top ``k`` by the named singer and by it or its top co-occurring
    singers, the singers with none of their own songs there, and the queries."""
    mentions = rec.sources.mentions
    out = {}
    for template in TEMPLATES:
        texts = [template.format(singer=name) for _, name in singers]
        answers = rec.recommend_many(texts, k)
        own, near, rows = [], [], []
        for (key, name), text, recs in zip(singers, texts, answers):
            close = {key, *(g for g, _ in mentions.cooccurring(key)[:TOP_COOCCURRING])}
            by = [mentions.singer_of(r.song_id) for r in recs]
            own.append(sum(g == key for g in by) / k)
            near.append(sum(g in close for g in by) / k)
            rows.append({"singer": name, "query": text, "own": own[-1], "own_or_cooccurring": near[-1]})
        out[template] = {"own": sum(own) / len(own), "own_or_cooccurring": sum(near) / len(near),
                         "singers_with_none_own": sum(v == 0 for v in own), "queries": rows}
    return out


def without_mention(rec, features):
    """``rec`` without the mention source: its pool less ``mention``, a ranker trained on ``features``' training
    rows (``training_rows``) without the mention features and candidates, with ``rec``'s ranker settings."""
    from genrank_assets.ml.ranking.ltr.tables import fit_ranker, training_rows, variant_rows, variants
    from genrank_assets.ml.serving.ltr_recommender import LTRRecommender

    name = "ltr_no_mention"
    ltr = fit_ranker(variant_rows(name, training_rows(features)), variants(rec.ltr.feature_names)[name],
                     rec.ltr.params)
    ltr.pool_config = {**rec.ltr.pool_config, "sources": [s for s in rec.pool_config.sources if s != "mention"]}
    return LTRRecommender(rec.sources, rec.builder, ltr, rec.song_info)


def ordinary_titles(systems: dict, corpus, max_queries: int = 0) -> dict:
    """NDCG@10 of each system on the protocol's test queries and the paired bootstrap of mention − no_mention."""
    from genrank_assets.ml.evaluation.metrics import ndcg_at_k, paired_bootstrap
    from genrank_assets.ml.evaluation.procedure import Queries

    queries = Queries.of_split(corpus, "test", max_queries)
    per_query = {}
    for name, rec in systems.items():
        answers = rec.recommend_many(queries.texts, K)
        per_query[name] = [ndcg_at_k([r.song_id for r in recs], queries.truths[q], K)
                           for q, recs in zip(queries.qids, answers)]
    diff = paired_bootstrap(per_query["mention"], per_query["no_mention"], n=1000, seed=0)
    return {"queries": len(queries), **{f"{n}.ndcg@10": sum(v) / len(v) for n, v in per_query.items()},
            "mention_minus_no_mention": diff, "not_lower": diff["ci_high"] >= 0}


def measure(rec, corpus, features, singers: int = TOP_SINGERS, test_queries: int = 0) -> dict:
    """The benchmark's figures for the learning-to-rank recommender ``rec`` (module docstring)."""
    from genrank_assets.ml.ranking.ltr.features import MENTION_FEATURES
    from genrank_assets.ml.serving.ltr_recommender import LTRRecommender

    if not isinstance(rec, LTRRecommender):
        raise SystemExit(f"the champion is a {type(rec).__name__}, not the learning-to-rank recommender")
    missing = [f for f in MENTION_FEATURES if f not in rec.ltr.feature_names or f not in features.columns]
    if missing:
        raise SystemExit(f"the champion's ranker or ranking_features lacks the mention features {missing}: rebuild "
                         "the home with this code (python -m benchmarks.end_to_end)")
    t0 = time.perf_counter()
    systems = {"mention": rec, "no_mention": without_mention(rec, features)}
    fit_s = time.perf_counter() - t0
    named = most_played_singers(corpus, rec.sources.mentions, rec.song_info, singers)
    shares = {name: singer_shares(system, named) for name, system in systems.items()}
    ordinary = ordinary_titles(systems, corpus, test_queries)
    summary = {t: {n: round(shares[n][t]["own_or_cooccurring"], 4) for n in SYSTEMS} for t in TEMPLATES}
    return {
        "summary_own_or_cooccurring": summary,
        "summary_own": {t: {n: round(shares[n][t]["own"], 4) for n in SYSTEMS} for t in TEMPLATES},
        "targets_met": {"share_own_or_cooccurring": all(v["mention"] >= GOAL_SHARE for v in summary.values()),
                        "ordinary_ndcg_not_lower": ordinary["not_lower"]},
        "ordinary_titles": ordinary, "shares": shares, "singers": [name for _, name in named],
        "k": K, "top_cooccurring": TOP_COOCCURRING, "goal_share": GOAL_SHARE, "no_mention_fit_s": round(fit_s, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argument_parser(__doc__, "named_singer")
    ap.add_argument("--home", type=Path, default=None, help="the GENRANK_HOME of a full build (default: the home "
                    "end_to_end leaves, its quick one with --quick)")
    ap.add_argument("--singers", type=int, default=TOP_SINGERS, help="the most played singers to name")
    ap.add_argument("--test-queries", type=int, default=0, help="ordinary test titles (0: every one)")
    add_output_args(ap, "the quick end_to_end home, 10 singers, 100 test queries")
    args = parse_args(ap, QUICK, argv)
    home = pipeline_home(args)
    from genrank_assets.ml.serving import registry

    os.environ["HF_HUB_OFFLINE"] = "1"
    registry.connect(home)
    from genrank_assets.ml.ranking.ltr.tables import with_fold_rows

    corpus, features, *folds = warehouse_frames(home, CORPUS, NOT_TEST_FEATURES, *FOLD_FEATURE_QUERIES)
    features = with_fold_rows(features, folds)  # the rows the champion's ranker learnt from
    payload = measure(registry.load_recommender(), corpus, features, args.singers, args.test_queries)
    print({k: payload[k] for k in ("summary_own_or_cooccurring", "targets_met")}, flush=True)
    write_json(output_path(args, "named_singer"), {"home": str(home), **payload})


if __name__ == "__main__":
    main()
