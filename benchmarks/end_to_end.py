"""Materialise the whole graph on mpd7k with the real-data preset; report table, wall time and peak memory per asset.

Each asset runs as its own `dagster asset materialize` process (the real CLI, DAGSTER_HOME under the benchmark's
GENRANK_HOME), so wall time and peak RSS (os.wait4 rusage of that process alone) belong to that asset.

    python benchmarks/end_to_end.py [--home /tmp/genrank_mpd7k] [--preset genrank_assets/presets/cpu-real.yaml]
    python benchmarks/end_to_end.py --home /tmp/genrank_h50 --holdout-share 0.5   # -> end_to_end_holdout0.5.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MPD7K, warehouse_frames, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STEPS = [  # (selection, what) in dependency order
    ("raw_playlists", "ingest (4 tables)"),
    ("playlist_corpus", "corpus"),
    ("upstream_corpus", "LTR holdout carved from train"),
    ("song_vectors", "word2vec"),
    ("semantic_ids", "RQ-KMeans (+ metrics table)"),
    ("generator_dataset", "generator pairs"),
    ("tiger_model", "TIGER training + registry"),
    ("ranker_dataset", "ranker pairs (generator hard negatives)"),
    ("ranker_model", "ranker training + registry"),
    ("ltr_tables", "candidate pools + features (holdout, val, test)"),
    ("ltr_ranker", "LightGBM lambdarank on holdout + val"),
    ("evaluation_report", "evaluation + challenger registered"),
    ("champion", "promotion gate (champion re-evaluated)"),
]
# A multi-asset is selected whole through one of its keys; the others come with it.
MULTI = {"raw_playlists": "raw_playlists,raw_playlist_songs,raw_songs,ingest_rejects,ingested_batches",
         "semantic_ids": "semantic_ids,semantic_id_metrics", "ltr_tables": "candidate_pools,ranking_features"}


def in_process_preset(preset: Path, home: Path, holdout_share: float | None = None) -> Path:
    """The preset with the in-process executor: each step in the CLI's own process, so that process's rusage
    (wall time, CPU seconds, peak RSS) is the step's (steps run one per process here anyway). ``holdout_share``:
    upstream_corpus's ltr_holdout_share instead of the preset's."""
    import yaml

    config = yaml.safe_load(preset.read_text())
    config["execution"] = {"config": {"in_process": {}}}
    if holdout_share is not None:
        config["ops"].setdefault("upstream_corpus", {}).setdefault("config", {})["ltr_holdout_share"] = holdout_share
    out = home / f"{preset.stem}-in_process.yaml"
    out.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return out


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
    ap.add_argument("--data", default=str(MPD7K.resolve()))
    ap.add_argument("--preset", default=str(REPO / "genrank_assets" / "presets" / "cpu-real.yaml"))
    ap.add_argument("--from-step", default=None, help="skip the steps before this asset (reuse the warehouse)")
    ap.add_argument("--report-only", action="store_true", help="run nothing; report the saved timings and table")
    ap.add_argument("--holdout-share", type=float, default=None,
                    help="upstream_corpus.ltr_holdout_share (default: the preset's / the asset's); results go to "
                         "end_to_end_holdout<share>.json")
    ap.add_argument("--out", default=None,
                    help="results name (benchmarks/results/<out>.json) for a variant run, e.g. another preset")
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
    preset = in_process_preset(Path(args.preset), home, args.holdout_share)
    for selection, what in STEPS[start:]:
        print(f"== {selection}: {what}", flush=True)
        timings.append({**run_step(selection, preset, env), "what": what})
        saved.write_text(json.dumps(timings, indent=1))
        print(f"   {timings[-1]['wall_s']} s, peak {timings[-1]['peak_rss_mib']} MiB", flush=True)
    (report,) = warehouse_frames(home, "select * from genrank.evaluation_report")
    cols = ["method", "recall@10", "ndcg@10", "recall@100", "r_precision", "coverage@10", "latency_p50_ms",
            "latency_p95_ms"]
    print(report[cols].round(4).to_string(index=False))
    print(f"\n{'asset':<20} {'wall s':>8} {'peak MiB':>9} {'cpu s':>8}")
    for t in timings:
        print(f"{t['asset']:<20} {t['wall_s']:>8} {t['peak_rss_mib']:>9} {str(t['cpu_s'] if t['cpu_s'] is not None else '-'):>8}")
    ref = {"title_knn_ndcg@10": 0.1071, "title_knn_recall@100": 0.0670, "strongest_ndcg@10": 0.1252,
           "strongest_recall@100": 0.0776}
    by = report.set_index("method")
    served = served_method(home)
    ablation = latest_ablation(home)
    total_s = sum(t["wall_s"] for t in timings)
    peak = max(t["peak_rss_mib"] for t in timings)
    summary = {"served_method": served, "pipeline_wall_s": round(total_s, 1), "pipeline_peak_rss_mib": peak}
    if served in by.index:
        system = by.loc[served]
        summary.update({
            "system_ndcg@10": float(system["ndcg@10"]), "system_recall@100": float(system["recall@100"]),
            "system_r_precision": float(system["r_precision"]),
            "system_latency_p50_ms": float(system["latency_p50_ms"]),
            "system_latency_p95_ms": float(system["latency_p95_ms"]),
            "ratio_ndcg_vs_title_knn_reference": float(system["ndcg@10"]) / ref["title_knn_ndcg@10"]})
    goals = {"ndcg@10": 0.163, "recall@100": 0.101, "r_precision": 0.097, "latency_p50_ms": 100.0,
             "latency_p95_ms": 150.0, "pipeline_wall_s": 1200.0, "pipeline_peak_rss_mib": 6144.0}
    measured = {"ndcg@10": summary.get("system_ndcg@10"), "recall@100": summary.get("system_recall@100"),
                "r_precision": summary.get("system_r_precision"), "latency_p50_ms": summary.get("system_latency_p50_ms"),
                "latency_p95_ms": summary.get("system_latency_p95_ms"), "pipeline_wall_s": total_s,
                "pipeline_peak_rss_mib": peak}
    met = {k: None if measured[k] is None else (measured[k] >= g if k in ("ndcg@10", "recall@100", "r_precision")
                                                 else measured[k] <= g) for k, g in goals.items()}
    print(json.dumps({"summary": summary, "goals_met": met}, indent=2))
    name = args.out or ("end_to_end" if args.holdout_share is None else f"end_to_end_holdout{args.holdout_share:g}")
    write_json(name, {"preset": args.preset, "holdout_share": args.holdout_share, "home": str(home), "steps": timings,
                              "report": report.drop(columns=["evaluated_at"]).to_dict("records"),
                              "ablation": ablation, "goals": goals, "goals_met": met, "reference": ref,
                              "summary": summary})


def served_method(home: Path) -> str | None:
    """The method of the recommender the evaluation registered (its `genrank.method` tag)."""
    sys.path.insert(0, str(REPO))
    from genrank_assets.ml.serving import registry

    registry.connect(home)
    candidate = registry.challenger()
    return None if candidate is None else candidate.method


def latest_ablation(home: Path) -> list[dict]:
    """The newest evaluation report's ablation table (each variant's paired CI against ridge + co-occurrence)."""
    import pandas as pd

    found = sorted((home / "reports").glob("evaluation-*/ablation.csv"), key=lambda p: p.stat().st_mtime)
    return pd.read_csv(found[-1]).to_dict("records") if found else []


if __name__ == "__main__":
    main()
