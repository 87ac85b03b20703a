"""Freshness: a base plus three landed batches, each refreshed (refresh_job), against one full retrain on the same data.

The train playlists of the data (the crc32 split, docs/benchmark.md) are cut into 4 slices by id; the base folder
holds the first slice and every val / test playlist (the queries stay fixed), and the song file lists only the
songs the base playlists hold; batch k brings slice k+1 and the songs first seen in it. Home `refresh`: a full
retrain on the base, then one refresh per batch. Home `full`: one full retrain on base + all three batches. Both
served recommenders are then evaluated on the same test queries (paired bootstrap).

    python -m benchmarks.freshness            # mpd7k with the cpu-real preset (~45 min on 2 cores)
    python -m benchmarks.freshness --quick    # the test preset on a 10% sample of mpd7k (a few minutes)
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import dagster as dg

from benchmarks._common import (
    FILES,
    MPD7K,
    PRESETS,
    QUICK_PRESET,
    QUICK_ROOT,
    add_output_args,
    argument_parser,
    load_preset,
    machine,
    output_path,
    quick_data,
    read_source,
    require_mpd7k,
    write_json,
)

BATCHES = ("b1", "b2", "b3")


def write_replay(src: Path, out: Path) -> dict:
    """The base folder and incoming/b1..b3 under ``out`` (see the module docstring); what each holds."""
    from genrank_assets.ml.data.batches import SUCCESS_MARKER
    from genrank_assets.ml.data.corpus import split_of

    header, info, groups, songs = read_source(src)
    song_line = dict(songs)
    train = sorted(p.decode() for p, _ in info if split_of(p.decode()) == "train")
    cut = [train[len(train) * k // 4: len(train) * (k + 1) // 4] for k in range(4)]
    slice_of = {p: k for k, part in enumerate(cut) for p in part}
    rows = {p: lines for p, lines in groups}
    seen: set[bytes] = set()
    manifest = {}
    for k, name in enumerate(("base", *BATCHES)):
        folder = out if k == 0 else out / "incoming" / name
        folder.mkdir(parents=True, exist_ok=True)
        pids = [p for p, _ in info if slice_of.get(p.decode(), 0) == k]
        keep = set(pids)
        lines = [ln for p in pids for ln in rows.get(p, [])]
        new_songs = [s for s in dict.fromkeys(ln.split(b"\t")[1] for ln in lines) if s not in seen]
        seen.update(new_songs)
        (folder / FILES[0]).write_bytes(b"\n".join([header, *(ln for p, ln in info if p in keep)]) + b"\n")
        (folder / FILES[1]).write_bytes(b"\n".join(lines) + b"\n")
        (folder / FILES[2]).write_bytes(b"\n".join(song_line[s] for s in new_songs if s in song_line) + b"\n")
        if k:
            (folder / SUCCESS_MARKER).write_text("")
        manifest[name] = {"playlists": len(pids), "rows": len(lines), "new_songs": len(new_songs)}
    return manifest


def materialize(home: Path, data: Path, config: dict, selection) -> tuple[dg.ExecuteInProcessResult, float]:
    from genrank_assets.definitions import all_asset_checks, all_assets, build_resources

    (home / "dagster").mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        t0 = time.perf_counter()
        result = dg.materialize(all_assets + all_asset_checks, selection=selection, run_config=config,
                                resources=build_resources(home=str(home), data_dir=str(data), warehouse="duckdb"),
                                instance=instance)
        return result, time.perf_counter() - t0


def meta(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()
            if isinstance(v.value, (int, float, str, bool))}


def served(home: Path, uri: str):
    from genrank_assets.ml.serving import registry

    registry.connect(home)
    return registry.load_python_model(uri).recommender


def main() -> None:
    import os

    import numpy as np

    from benchmarks._common import warehouse_frames
    from genrank_assets.defs import automation
    from genrank_assets.ml.catalogue.catalogue import from_frame as catalogue_from_frame
    from genrank_assets.ml.evaluation.cold import cold_metrics, cold_truths
    from genrank_assets.ml.evaluation.metrics import bootstrap_mean_ci, evaluate_rankings, paired_bootstrap
    from genrank_assets.ml.evaluation.procedure import CANDIDATES, Queries

    ap = argument_parser(__doc__, "freshness")
    ap.add_argument("--root", default=None, help="working folder (default /tmp/genrank_freshness[_quick])")
    add_output_args(ap, "the test preset on a 10%% sample of mpd7k")
    args = ap.parse_args()
    src = quick_data() if args.quick else require_mpd7k(MPD7K)
    root = Path(args.root or (QUICK_ROOT / "freshness" if args.quick else "/tmp/genrank_freshness"))
    shutil.rmtree(root, ignore_errors=True)
    preset = load_preset(QUICK_PRESET if args.quick else PRESETS / "cpu-real.yaml")
    os.environ["HF_HUB_OFFLINE"] = "1"
    data = root / "data"
    replay = write_replay(src, data)
    print("replay:", replay, flush=True)
    full_selection = dg.AssetSelection.all() - dg.AssetSelection.assets(automation.REFRESH_ASSET)
    refresh_selection = dg.AssetSelection.assets(*automation.INGEST_ASSETS, *automation.REFRESH_ASSETS)

    # the refresh chain: full retrain on the base, then one refresh per batch
    home = root / "refresh"
    os.environ["GENRANK_HOME"] = str(home)
    result, base_s = materialize(home, data, preset, full_selection)
    print(f"full retrain on the base: {base_s:.0f} s", flush=True)
    rows = []
    for batch in BATCHES:
        (before,) = warehouse_frames(home, "select song_id from genrank.song_catalogue")
        result, seconds = materialize(home, data, automation.batch_run_config(batch, preset, "refresh_job"),
                                      refresh_selection)
        cat, ref = meta(result, "song_catalogue"), meta(result, "catalogue_refresh")
        (frame, songs) = warehouse_frames(home, "select * from genrank.song_catalogue",
                                          "select song_id, singer from genrank.raw_songs")
        catalogue = catalogue_from_frame(frame)
        known_singers = set(songs[songs["song_id"].isin(set(before["song_id"]))]["singer"])
        new = songs[~songs["song_id"].isin(set(before["song_id"]))]
        with_singer = new[new["singer"].isin(known_singers)]
        # recommendable: in the catalogue with a code the generator's trie holds (every catalogue row has one)
        coded = {s for s in catalogue.song_ids}
        share = float(with_singer["song_id"].isin(coded).mean()) if len(with_singer) else float("nan")
        rows.append({"batch": batch, "refresh_s": round(seconds, 1), "new_songs": int(len(new)),
                     "new_songs_known_singer": int(len(with_singer)), "recommendable_known_singer": share,
                     **{k: cat[k] for k in ("new_learned_vectors", "new_cold_start_vectors", "cold_songs_warmed",
                                            "codes_changed", "cold_start_songs")},
                     **{k: ref.get(k) for k in ("ndcg@10", "recall@100", "cold_recall@100", "cold_share",
                                                "recommender_uri", "registered")},
                     "promoted": meta(result, "champion").get("promoted")})
        print(rows[-1], flush=True)
    refreshed_uri = rows[-1]["recommender_uri"]

    # the full retrain on the same data
    full_home = root / "full"
    os.environ["GENRANK_HOME"] = str(full_home)
    config = automation._deep_merge(preset, {"ops": {automation.INGEST_OP: {"config": {"batches": list(BATCHES)}}}})
    result, full_s = materialize(full_home, data, config, full_selection)
    full_uri = meta(result, "evaluation_report")["recommender_uri"]
    print(f"full retrain on base + batches: {full_s:.0f} s", flush=True)

    (corpus,) = warehouse_frames(full_home, "select * from genrank.playlist_corpus")
    queries = Queries.of_split(corpus, "test")
    rankings = {}
    for name, h, uri in (("refresh", home, refreshed_uri), ("full", full_home, full_uri)):
        rec = served(h, uri)
        rankings[name] = {q: [x.song_id for x in recs]
                          for q, recs in zip(queries.qids, rec.recommend_many(queries.texts, CANDIDATES))}
    per = {n: evaluate_rankings(r, queries.truths, ks=(10, 100)) for n, r in rankings.items()}
    ndcg = {n: float(p["ndcg@10"]) for n, p in per.items()}
    diff = paired_bootstrap(per["refresh"]["per_query"]["ndcg@10"], per["full"]["per_query"]["ndcg@10"])
    cold = cold_truths(queries.truths, corpus)
    cold_refresh = cold_metrics(rankings["refresh"], cold)
    cold_full = cold_metrics(rankings["full"], cold)
    cold_ci = bootstrap_mean_ci(cold_refresh["per_query"]["cold_recall@100"]) if cold else {}
    refresh_mean = float(np.median([r["refresh_s"] for r in rows]))
    summary = {
        "refresh_over_full_time": refresh_mean / full_s, "ndcg_refresh_over_full": ndcg["refresh"] / ndcg["full"],
        "new_songs_recommendable": float(np.nanmean([r["recommendable_known_singer"] for r in rows])),
        "cold_recall_at_100": cold_refresh["cold_recall@100"],
    }
    targets = {"refresh_over_full_time": summary["refresh_over_full_time"] <= 0.2,
               "ndcg_refresh_over_full": summary["ndcg_refresh_over_full"] >= 0.95,
               "new_songs_recommendable": summary["new_songs_recommendable"] >= 0.95,
               "cold_recall_at_100": bool(cold_ci) and cold_ci["ci_low"] > 0}
    payload = {**summary, "targets_met": targets, "batches": rows, "replay": replay,
               "full_retrain_base_s": round(base_s, 1), "full_retrain_all_s": round(full_s, 1),
               "refresh_median_s": refresh_mean, "ndcg@10": ndcg, "ndcg_refresh_minus_full": diff,
               "cold_recall@100_ci": cold_ci, "cold_recall@100_full": cold_full["cold_recall@100"],
               "cold_ndcg@10": {"refresh": cold_refresh.get("cold_ndcg@10"), "full": cold_full.get("cold_ndcg@10")},
               "cold_queries": len(cold), "test_queries": len(queries),
               "preset": "test" if args.quick else "cpu-real", "data": str(src), "machine": machine()}
    print({k: payload[k] for k in (*summary, "targets_met")}, flush=True)
    write_json(output_path(args, "freshness"), payload)


if __name__ == "__main__":
    main()
