"""Materialise the whole graph on mpd7k with the real-data preset; report table, wall time and peak memory per asset.

Each asset runs as its own `dagster asset materialize` process (the real CLI, DAGSTER_HOME under the benchmark's
GENRANK_HOME), so wall time and peak RSS (os.wait4 rusage of that process alone) belong to that asset. The steps
run in stages (`_common.stages`): the served upstream chain and each cross-fitting fold's chain side by side, so
the pipeline's wall time is the sum of the stages' walls, and its peak memory at most the sum of the peaks of the
chains of its widest stage (`pipeline_peak_rss_mib` adds each stage's chains' peaks; the largest stage counts).

    python -m benchmarks.end_to_end [--home /tmp/genrank_mpd7k] [--preset genrank_assets/presets/cpu-real.yaml]
    python -m benchmarks.end_to_end --home /tmp/genrank_h50 --holdout-share 0.5   # -> end_to_end_holdout0.5.json
    python -m benchmarks.end_to_end --quick   # the test preset on a 10% sample of mpd7k, home /tmp/genrank_quick/home
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks._common import (
    DEFAULT_HOME,
    MPD7K,
    PRESETS,
    QUICK_HOME,
    QUICK_PRESET,
    STEPS,
    add_output_args,
    argument_parser,
    home_env,
    in_process_preset,
    output_path,
    quick_data,
    require_mpd7k,
    run_stage,
    stages,
    warehouse_frames,
    write_json,
)


def main() -> None:
    ap = argument_parser(__doc__, "end_to_end")
    ap.add_argument("--home", default=None, help=f"default {DEFAULT_HOME} (--quick: {QUICK_HOME}, made afresh)")
    ap.add_argument("--data", default=None, help=f"default {MPD7K} (--quick: a seeded 10%% sample of it)")
    ap.add_argument("--preset", default=None, help="default genrank_assets/presets/cpu-real.yaml (--quick: test.yaml)")
    ap.add_argument("--from-step", default=None,
                    help="skip the steps listed before this asset in _common.STEPS (reuse the warehouse)")
    ap.add_argument("--report-only", action="store_true", help="run nothing; report the saved timings and table")
    ap.add_argument("--holdout-share", type=float, default=None,
                    help="upstream_corpus.ltr_holdout_share (default: the preset's / the asset's); results go to "
                         "end_to_end_holdout<share>.json")
    add_output_args(ap, "the test preset on a seeded 10%% sample of mpd7k (707 playlists)")
    args = ap.parse_args()
    fresh = args.quick and args.home is None and not (args.from_step or args.report_only)
    home = Path(args.home or (QUICK_HOME if args.quick else DEFAULT_HOME))
    data = Path(args.data) if args.data else quick_data() if args.quick else require_mpd7k()
    args.preset = args.preset or str(QUICK_PRESET if args.quick else PRESETS / "cpu-real.yaml")
    if fresh and home.exists():
        shutil.rmtree(home)  # the quick home is made afresh, so that generator, ranker and compare read this run
    env = home_env(home, data)
    names = [s for s, _ in STEPS]
    start = len(names) if args.report_only else names.index(args.from_step) if args.from_step else 0
    # Step timings persist beside the warehouse, so a run resumed with --from-step still reports every step.
    saved = home / "step_timings.json"
    previous = json.loads(saved.read_text()) if saved.exists() and start else {}
    timings = [t for t in previous.get("steps", []) if t["asset"] in names[:start]]
    stage_runs = previous.get("stages", []) if start else []
    preset = in_process_preset(Path(args.preset), home, args.holdout_share)
    for index, chains in enumerate(stages()):
        if all(step in names[:start] for chain in chains for step, _ in chain):
            continue
        ran, wall = run_stage(chains, preset, env, set(names[:start]), log_fn=lambda m: print(m, flush=True))
        timings += [{**t, "stage": index} for t in ran]
        peaks = [max([t["peak_rss_mib"] for t in ran if t["chain"] == c] or [0]) for c in range(len(chains))]
        stage_runs = [r for r in stage_runs if r["stage"] != index] + [
            {"stage": index, "wall_s": wall, "chains": len(chains), "peak_rss_mib_sum_of_chains": sum(peaks),
             "steps": [t["asset"] for t in ran]}]
        saved.write_text(json.dumps({"steps": timings, "stages": stage_runs}, indent=1))
        print(f"== stage {index}: {wall} s ({len(chains)} chain(s) side by side)", flush=True)
    (report,) = warehouse_frames(home, "select * from genrank.evaluation_report")
    cols = ["method", "recall@10", "ndcg@10", "recall@100", "r_precision", "coverage@10", "latency_p50_ms",
            "latency_p95_ms"]
    print(report[cols].round(4).to_string(index=False))
    print(f"\n{'asset':<28} {'wall s':>8} {'peak MiB':>9} {'cpu s':>8}")
    for t in timings:
        print(f"{t['asset']:<28} {t['wall_s']:>8} {t['peak_rss_mib']:>9} {str(t['cpu_s'] if t['cpu_s'] is not None else '-'):>8}")
    ref = {"title_knn_ndcg@10": 0.1071, "title_knn_recall@100": 0.0670, "strongest_ndcg@10": 0.1252,
           "strongest_recall@100": 0.0776}
    by = report.set_index("method")
    served = served_method(home)
    ablation = latest_ablation(home)
    total_s = sum(r["wall_s"] for r in stage_runs)
    peak = max(r["peak_rss_mib_sum_of_chains"] for r in stage_runs)
    summary = {"served_method": served, "pipeline_wall_s": round(total_s, 1), "pipeline_peak_rss_mib": peak,
               "sum_of_step_walls_s": round(sum(t["wall_s"] for t in timings), 1),
               "peak_rss_mib_one_step": max(t["peak_rss_mib"] for t in timings)}
    if served in by.index:
        system = by.loc[served]
        summary.update({
            "system_ndcg@10": float(system["ndcg@10"]), "system_recall@100": float(system["recall@100"]),
            "system_r_precision": float(system["r_precision"]),
            "system_latency_p50_ms": float(system["latency_p50_ms"]),
            "system_latency_p95_ms": float(system["latency_p95_ms"]),
            "ratio_ndcg_vs_title_knn_reference": float(system["ndcg@10"]) / ref["title_knn_ndcg@10"]})
    goals = {"ndcg@10": 0.163, "recall@100": 0.101, "r_precision": 0.097, "latency_p50_ms": 100.0,
             "latency_p95_ms": 150.0, "pipeline_wall_s": 1500.0, "pipeline_peak_rss_mib": 4096.0}
    measured = {"ndcg@10": summary.get("system_ndcg@10"), "recall@100": summary.get("system_recall@100"),
                "r_precision": summary.get("system_r_precision"), "latency_p50_ms": summary.get("system_latency_p50_ms"),
                "latency_p95_ms": summary.get("system_latency_p95_ms"), "pipeline_wall_s": total_s,
                "pipeline_peak_rss_mib": peak}
    met = {k: None if measured[k] is None else (measured[k] >= g if k in ("ndcg@10", "recall@100", "r_precision")
                                                 else measured[k] <= g) for k, g in goals.items()}
    print(json.dumps({"summary": summary, "goals_met": met}, indent=2))
    name = "end_to_end" if args.holdout_share is None else f"end_to_end_holdout{args.holdout_share:g}"
    write_json(output_path(args, name), {
        "preset": args.preset, "data": str(data), "quick": args.quick, "holdout_share": args.holdout_share,
        "home": str(home), "steps": timings, "stages": stage_runs, "report": report.drop(columns=["evaluated_at"]).to_dict("records"),
        "ablation": ablation, "cold": latest_report_file(home, "cold.json"), "goals": goals, "goals_met": met, "reference": ref, "summary": summary})


def served_method(home: Path) -> str | None:
    """The method of the recommender the evaluation registered (its `genrank.method` tag)."""
    from genrank_assets.ml.serving import registry

    registry.connect(home)
    candidate = registry.challenger()
    return None if candidate is None else candidate.method


def latest_report_file(home: Path, name: str) -> dict:
    """A JSON file of the newest evaluation report (``cold.json``: the cold part of the truth), {} without one."""
    found = sorted((home / "reports").glob(f"evaluation-*/{name}"), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else {}


def latest_ablation(home: Path) -> list[dict]:
    """The newest evaluation report's ablation table (each variant's paired CI against ridge + co-occurrence)."""
    import pandas as pd

    found = sorted((home / "reports").glob("evaluation-*/ablation.csv"), key=lambda p: p.stat().st_mtime)
    return pd.read_csv(found[-1]).to_dict("records") if found else []


if __name__ == "__main__":
    main()
