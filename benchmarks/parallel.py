"""The whole asset graph in one process vs Dagster's multiprocess executor (genrank_assets/defs/executors.py).

For each engine: a fresh GENRANK_HOME and DAGSTER_HOME, `dagster asset materialize --select '*'` with the preset
and `execution: {config: {<engine>: {}}}`, timed from outside; then, from the instance's step stats, every step's
seconds, their sum (what one process must spend one after another), and the graph's critical path (the longest
chain of dependent steps, each at its measured time: no executor can finish the graph sooner). The multiprocess
run can only gain where steps do not depend on each other; how much of the graph that is shows as the gap
between the sum and the critical path.

    .venv/bin/python benchmarks/parallel.py                  # test preset, tiny generated data (~5 min on 2 cores)
    .venv/bin/python benchmarks/parallel.py --preset demo    # demo preset on the embedded demo data's size

Writes benchmarks/results/parallel.json (or parallel_<preset>.json for another preset).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _common import write_json  # noqa: E402

ENGINES = ("in_process", "multiprocess")
DATA_SIZES = {"test": {"n_playlists": 400, "n_songs": 800, "seed": 7},  # the tests' tiny_demo_dir
              "demo": {}}  # generate_demo_data's defaults: the embedded demo data's size


def step_table(dagster_home: Path) -> tuple[dict[str, dict], float]:
    """Per step: start, end, seconds, upstream steps; and the run's own wall seconds, from the instance."""
    import dagster as dg
    from dagster._core.execution.api import create_execution_plan

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with dg.DagsterInstance.get() as instance:
        (record,) = instance.get_run_records(limit=1)
        run = record.dagster_run
        stats = {s.step_key: s for s in instance.get_run_step_stats(run.run_id)}
        run_seconds = record.end_time - record.start_time
    from genrank_assets.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    plan = create_execution_plan(job, run_config=run.run_config)
    table = {}
    for key, s in stats.items():
        step = plan.get_step_by_key(key)
        table[key] = {"start": s.start_time, "end": s.end_time, "seconds": round(s.end_time - s.start_time, 3),
                      "status": str(s.status.value), "upstream": sorted(step.get_execution_dependency_keys())}
    return table, run_seconds


def critical_path(table: dict[str, dict]) -> tuple[float, list[str]]:
    """The longest chain of dependent steps (each at its own measured seconds)."""
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(key: str) -> tuple[float, list[str]]:
        if key not in best:
            ups = [longest(u) for u in table[key]["upstream"] if u in table]
            seconds, chain = max(ups, default=(0.0, []))
            best[key] = (seconds + table[key]["seconds"], [*chain, key])
        return best[key]

    return max((longest(k) for k in table), default=(0.0, []))


def overlap_seconds(table: dict[str, dict]) -> float:
    """Seconds during which at least two steps ran at once."""
    events = sorted([(s["start"], 1) for s in table.values()] + [(s["end"], -1) for s in table.values()])
    running, last, total = 0, None, 0.0
    for t, delta in events:
        if running >= 2 and last is not None:
            total += t - last
        running += delta
        last = t
    return total


def run_engine(engine: str, preset: dict, data: Path, root: Path) -> dict:
    home = root / engine
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "genrank_assets" / "dagster.yaml", dagster_home / "dagster.yaml")
    config = root / f"{engine}.yaml"
    config.write_text(yaml.safe_dump({**preset, "execution": {"config": {engine: {}}}}))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GENRANK_WAREHOUSE")}
    env.update({"GENRANK_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "GENRANK_DATA_DIR": str(data),
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    dagster = Path(sys.executable).parent / "dagster"
    t0 = time.perf_counter()
    proc = subprocess.run([str(dagster), "asset", "materialize", "-m", "genrank_assets.definitions", "--select", "*",
                           "-c", str(config)], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} run failed:\n{proc.stderr[-3000:]}")
    table, run_seconds = step_table(dagster_home)
    path_s, path = critical_path(table)
    return {"wall_s": round(wall, 1), "run_s": round(run_seconds, 1),
            "sum_of_steps_s": round(sum(s["seconds"] for s in table.values()), 1),
            "critical_path_s": round(path_s, 1), "critical_path": path,
            "overlap_s": round(overlap_seconds(table), 1), "steps": len(table),
            "step_seconds": {k: s["seconds"] for k, s in table.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="test", choices=sorted(DATA_SIZES))
    args = parser.parse_args(argv)
    from genrank_assets.ml.data.demo_data import generate_demo_data

    preset = yaml.safe_load((REPO / "genrank_assets" / "presets" / f"{args.preset}.yaml").read_text())
    results = {}
    with tempfile.TemporaryDirectory(prefix="genrank-parallel-") as tmp:
        root = Path(tmp)
        data = root / "data"
        generate_demo_data(data, **DATA_SIZES[args.preset])
        for engine in ENGINES:
            print(f"== {engine}", flush=True)
            results[engine] = run_engine(engine, preset, data, root)
            r = results[engine]
            print(f"   wall {r['wall_s']} s (run {r['run_s']} s), steps {r['steps']} summing to "
                  f"{r['sum_of_steps_s']} s, critical path {r['critical_path_s']} s, overlap {r['overlap_s']} s",
                  flush=True)
    ip, mp = results["in_process"], results["multiprocess"]
    summary = {"speedup_wall": round(ip["wall_s"] / mp["wall_s"], 3),
               "in_process_sum_over_critical_path": round(ip["sum_of_steps_s"] / ip["critical_path_s"], 3)}
    print(f"multiprocess / in-process wall: {mp['wall_s']} / {ip['wall_s']} s (x{summary['speedup_wall']}); "
          f"the graph allows at most x{summary['in_process_sum_over_critical_path']} "
          "(sum of steps / critical path, in-process step times)")
    write_json("parallel" if args.preset == "test" else f"parallel_{args.preset}",
               {"preset": args.preset, "data": DATA_SIZES[args.preset] or "generate_demo_data defaults",
                "engines": results, "summary": summary})


if __name__ == "__main__":
    main()
