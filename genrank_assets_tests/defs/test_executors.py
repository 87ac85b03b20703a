"""The executors of genrank_assets/defs/executors.py on the whole test-preset graph, each against the session's
in-process build of the same config (`test_preset_build`, builds.py): Dagster's multiprocess executor, the
default of `dagster asset materialize` (steps in parallel processes, the DuckDB file shared through the IO
manager's lock wait), and dagster-dask on a dask.distributed cluster of real worker processes on 127.0.0.1
(the Parquet warehouse, no file any one process holds). Every warehouse table must come out equal, row for row,
apart from the measured columns (MEASURED); both runs must have run their steps where they claim to."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

import genrank_assets.paths as paths
from genrank_assets.definitions import defs
from genrank_assets.defs.executors import TRAINING_LIMITS, genrank_executor, multiprocess_config
from genrank_assets_tests.builds import run_config
from genrank_assets_tests.processes import free_port, start, stop_group

# Measured, so different in every run (latencies, the evaluation's peak RSS and its timestamp); everything else
# a step writes is a function of its inputs and seeds, and must be equal to the last bit whichever process ran it.
MEASURED = ("latency", "ms_per_query", "peak_rss", "evaluated_at")


def comparable_tables(catalog: Path) -> dict[str, pd.DataFrame]:
    """Every table (or view) of schema genrank, without measured columns, in a stable row order."""
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        names = [r[0] for r in con.execute("select table_name from information_schema.tables "
                                           "where table_schema = 'genrank' order by table_name").fetchall()]
        out = {}
        for name in names:
            frame = con.execute(f'select * from genrank."{name}"').fetchdf()
            frame = frame[[c for c in frame.columns if not any(m in c for m in MEASURED)]]
            out[name] = frame
        return out
    finally:
        con.close()


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    """Every table equal, exactly: every random step is seeded from config (the cross-encoder's head too, in
    ml/ranking/cross_encoder/model.py), so a step in a process of its own or in a dask worker that ran none of the
    steps before it trains what the in-process run trains."""
    assert sorted(got) == sorted(want)
    differ = []
    for name, frame in want.items():
        try:
            pd.testing.assert_frame_equal(got[name], frame, obj=name)
        except AssertionError as err:
            differ.append(f"{name}: {' '.join(str(err).split())[:300]}")
    assert not differ, differ


@pytest.fixture(scope="module")
def reference(test_preset_build) -> dict[str, pd.DataFrame]:
    """The tables of the session's in-process run (dg.materialize: one process, the DuckDB file)."""
    out = comparable_tables(paths.warehouse_path(test_preset_build.home))
    assert len(out) >= 14 and all(len(t) for n, t in out.items() if n != "ingested_batches")
    return out


def run_env(home: Path, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "GENRANK_PRESET", "GENRANK_RETRAIN_CRON", "GENRANK_WAREHOUSE")}
    env.update({"GENRANK_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "GENRANK_DATA_DIR": str(data),
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", **extra})
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text(paths.DAGSTER_YAML.read_text())
    return env


def materialize_cli(home: Path, env: dict[str, str], execution: dict | None = None) -> None:
    """`dagster asset materialize --select '*'` with the test preset, and this execution config (None: the
    default)."""
    config = home / "run_config.yaml"
    config.write_text(yaml.safe_dump({**run_config(), **({"execution": {"config": execution}} if execution else {})}))
    proc = subprocess.run([str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
                           "genrank_assets.definitions", "--select", "*", "-c", str(config)],
                          cwd=paths.REPO_DIR, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@contextlib.contextmanager
def latest_run(dagster_home: Path):
    """The Dagster instance under ``dagster_home`` and the id of its latest run."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (record,) = instance.get_run_records(limit=1)
        yield instance, record.dagster_run.run_id


def step_processes(dagster_home: Path) -> tuple[dict[str, int], dict[str, tuple[float, float]], int]:
    """The run's steps -> pid of the process that ran each, and (start, end); and the run's own pid."""
    with latest_run(dagster_home) as (instance, run_id):
        starts = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
        pids = {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in starts}
        spans = {s.step_key: (s.start_time, s.end_time) for s in instance.get_run_step_stats(run_id)}
        (run_start,) = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START).records
        return pids, spans, run_start.event_log_entry.dagster_event.pid


def test_executor_config_defaults_and_choices():
    """Multiprocess by default, forked from a server that imported the code location, one trainer at a time on a
    machine with a GPU (trainers side by side on CPU only)."""
    config = multiprocess_config({}, gpu=True)
    assert config["start_method"] == {"forkserver": {"preload_modules": ["genrank_assets.definitions"]}}
    assert config["tag_concurrency_limits"] == TRAINING_LIMITS == [{"key": "dagster-k8s/config", "limit": 1}]
    assert not multiprocess_config({}, gpu=False).get("tag_concurrency_limits")
    given = multiprocess_config({"tag_concurrency_limits": [{"key": "x", "limit": 2}], "max_concurrent": 1}, gpu=True)
    assert given["tag_concurrency_limits"] == [{"key": "x", "limit": 2}] and given["max_concurrent"] == 1
    job = defs.resolve_job_def("retrain_all_job")
    assert job.executor_def is genrank_executor
    for engine in ({"multiprocess": {"max_concurrent": 2}}, {"in_process": {}},
                   {"dask": {"cluster": {"existing": {"address": "tcp://127.0.0.1:8786"}}}}):
        dg.validate_run_config(job, {"execution": {"config": engine}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="celery"):
        dg.validate_run_config(job, {"execution": {"config": {"celery": {}}}})


def in_flight(dagster_home: Path) -> dict[str, tuple[int, int]]:
    """Each step's (launch, end) as positions in the run's event log: from the executor's STEP_WORKER_STARTING
    ("Launching subprocess", emitted in the run's process as it hands the step to a process of its own) to the
    step's STEP_SUCCESS."""
    with latest_run(dagster_home) as (instance, run_id):
        launched = {r.event_log_entry.step_key: r.storage_id for r in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTING, limit=10_000).records}
        ended = {r.event_log_entry.step_key: r.storage_id for r in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_SUCCESS, limit=10_000).records}
        return {k: (launched[k], ended[k]) for k in ended}


def test_dagster_cli_runs_every_step_in_a_process_of_its_own_and_equals_in_process(reference, tmp_path,
                                                                                 tiny_demo_dir):
    """The real `dagster` CLI materialises the whole graph with the test preset; its default executor is the
    multiprocess one."""
    home = tmp_path / "home"
    env = run_env(home, tiny_demo_dir)
    materialize_cli(home, env)
    pids, spans, run_pid = step_processes(home / "dagster")
    assert len(set(pids.values())) == len(pids) and run_pid not in pids.values()  # a process per step
    # Independent steps were in flight at the same time: the four checks of the ingest's tables, for one, are
    # launched (up to max_concurrent, one per core, at once) before the first of them has finished. Judged by
    # the event log's order, not by wall-clock overlap of 0.1 s checks, which a loaded machine can serialise.
    flight = in_flight(home / "dagster")
    checks = [k for k in spans if k.startswith(("raw_", "ingest_rejects_")) and k != "raw_tables"]
    assert len(checks) == 4 and set(checks) <= set(flight)
    overlapping = [(a, b) for a in checks for b in checks if a < b
                   and flight[a][0] < flight[b][1] and flight[b][0] < flight[a][1]]
    assert overlapping, {k: flight[k] for k in checks}
    assert_same_tables(comparable_tables(paths.warehouse_path(home)), reference)


@pytest.mark.services
def test_dask_cluster_run_equals_in_process(reference, tmp_path, tiny_demo_dir):
    """A dask scheduler and two worker processes on 127.0.0.1, the Parquet warehouse: every step runs in a
    worker (not the run's process), and the tables equal the in-process run's DuckDB ones."""
    from dask.distributed import Client

    home = tmp_path / "home"
    env = run_env(home, tiny_demo_dir, GENRANK_WAREHOUSE="parquet")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    scheduler = start([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], env,
                       tmp_path / "scheduler.log")
    workers = start([dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                      "--host", "127.0.0.1", "--memory-limit", "0"], env, tmp_path / "workers.log")
    try:
        deadline = time.monotonic() + 120
        with Client(address, timeout=120) as client:
            while len(client.scheduler_info()["workers"]) < 2:
                assert scheduler.poll() is None and workers.poll() is None, (tmp_path / "workers.log").read_text()
                assert time.monotonic() < deadline, "dask workers did not register"
                time.sleep(1)
            worker_pids = set(client.run(os.getpid).values())
        materialize_cli(home, env, {"dask": {"cluster": {"existing": {"address": address}}}})
    finally:
        stop_group(workers)
        stop_group(scheduler)
    assert not paths.warehouse_path(home).with_suffix(".duckdb.wal").exists()
    assert (home / "warehouse" / "genrank" / "song_vectors.parquet").is_file()
    pids, _, run_pid = step_processes(home / "dagster")
    assert len(worker_pids) == 2 and run_pid not in worker_pids
    assert set(pids.values()) <= worker_pids and len(pids) >= 20, (pids, worker_pids)
    assert_same_tables(comparable_tables(paths.warehouse_path(home)), reference)
