"""Materialise the whole graph on mpd7k with the real-data preset; report table, wall time and peak memory per asset.

Each asset runs as its own `dagster asset materialize` process (the real CLI, DAGSTER_HOME under the benchmark's
GENRANK_HOME), so wall time and peak RSS (os.wait4 rusage of that process alone) belong to that asset.

    python benchmarks/end_to_end.py [--home /tmp/genrank_mpd7k] [--preset genrank_assets/presets/cpu-real.yaml]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MPD7K, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STEPS = [  # (selection, what) in dependency order
    ("raw_playlists", "ingest (4 tables)"),
    ("playlist_corpus", "corpus"),
    ("song_vectors", "word2vec"),
    ("semantic_ids", "RQ-KMeans (+ metrics table)"),
    ("generator_dataset", "generator pairs"),
    ("tiger_model", "TIGER training + registry"),
    ("ranker_dataset", "ranker pairs (generator hard negatives)"),
    ("ranker_model", "ranker training + registry"),
    ("evaluation_report", "evaluation + challenger registered"),
    ("champion", "promotion gate (champion re-evaluated)"),
]
# A multi-asset is selected whole through one of its keys; the others come with it.
MULTI = {"raw_playlists": "raw_playlists,raw_playlist_songs,raw_songs,ingest_rejects,ingested_batches",
         "semantic_ids": "semantic_ids,semantic_id_metrics"}


def run_step(selection: str, preset: Path, env: dict) -> dict:
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "genrank_assets.definitions",
           "--select", MULTI.get(selection, selection), "-c", str(preset)]
    t0 = time.perf_counter()
    with open(Path(env["GENRANK_HOME"]) / f"{selection}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{selection} failed (exit {code}); see {env['GENRANK_HOME']}/{selection}.log")
    return {"asset": selection, "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 0),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default="/tmp/genrank_mpd7k")
    ap.add_argument("--data", default=str(MPD7K))
    ap.add_argument("--preset", default=str(REPO / "genrank_assets" / "presets" / "cpu-real.yaml"))
    ap.add_argument("--from-step", default=None, help="skip the steps before this asset (reuse the warehouse)")
    ap.add_argument("--report-only", action="store_true", help="run nothing; report the saved timings and table")
    args = ap.parse_args()
    home = Path(args.home)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GENRANK_HOME": str(home), "GENRANK_DATA_DIR": args.data,
           "DAGSTER_HOME": str(home / "dagster"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    names = [s for s, _ in STEPS]
    start = len(names) if args.report_only else names.index(args.from_step) if args.from_step else 0
    # Step timings persist beside the warehouse, so a run resumed with --from-step still reports every step.
    saved = home / "step_timings.json"
    timings = [t for t in (json.loads(saved.read_text()) if saved.exists() and start else [])
               if t["asset"] in names[:start]]
    for selection, what in STEPS[start:]:
        print(f"== {selection}: {what}", flush=True)
        timings.append({**run_step(selection, Path(args.preset), env), "what": what})
        saved.write_text(json.dumps(timings, indent=1))
        print(f"   {timings[-1]['wall_s']} s, peak {timings[-1]['peak_rss_mib']} MiB", flush=True)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    report = con.execute("select * from genrank.evaluation_report").fetchdf()
    con.close()
    cols = ["method", "recall@10", "ndcg@10", "recall@100", "r_precision", "coverage@10", "latency_p50_ms",
            "latency_p95_ms"]
    print(report[cols].round(4).to_string(index=False))
    print(f"\n{'asset':<20} {'wall s':>8} {'peak MiB':>9} {'cpu s':>8}")
    for t in timings:
        print(f"{t['asset']:<20} {t['wall_s']:>8} {t['peak_rss_mib']:>9} {str(t['cpu_s'] if t['cpu_s'] is not None else '-'):>8}")
    ref = {"title_knn_ndcg@10": 0.1071, "title_knn_recall@100": 0.0670, "strongest_ndcg@10": 0.1252,
           "strongest_recall@100": 0.0776}
    by = report.set_index("method")
    system = by.loc["generate_and_rank_hybrid"] if "generate_and_rank_hybrid" in by.index else None
    summary = {}
    if system is not None:
        summary = {"system_ndcg@10": float(system["ndcg@10"]), "system_recall@100": float(system["recall@100"]),
                   "ratio_ndcg_vs_title_knn_reference": float(system["ndcg@10"]) / ref["title_knn_ndcg@10"],
                   "ratio_recall100_vs_title_knn_reference": float(system["recall@100"]) / ref["title_knn_recall@100"],
                   "system_latency_p50_ms": float(system["latency_p50_ms"])}
        print(json.dumps(summary, indent=2))
    write_json("end_to_end", {"preset": args.preset, "home": str(home), "steps": timings,
                              "report": report.drop(columns=["evaluated_at"]).to_dict("records"),
                              "targets": {"ndcg@10_ratio_vs_title_knn": 1.3, "recall@100_ratio_vs_title_knn": 1.3,
                                          "recommend_p50_ms": 100}, "reference": ref, "summary": summary})


if __name__ == "__main__":
    main()
