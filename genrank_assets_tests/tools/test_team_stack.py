"""The team stack end to end (genrank_assets/tools/team_stack.py, `make team-stack`): PostgreSQL initialised in a
temporary folder, `mlflow server` on it, Dagster's daemon and UI with run and event storage in it. A run of
`retrain_all_job` is submitted with `dagster job launch` (queued; the daemon launches it, its steps in parallel
processes), its events are read back from PostgreSQL, and the champion is looked up and loaded through the MLflow
server's registry, its artifacts downloaded through the server. Then everything is stopped by PID."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest
import yaml

from genrank_assets import paths
from genrank_assets.ml.serving import registry
from genrank_assets.tools import team_stack
from genrank_assets_tests.builds import run_config
from genrank_assets_tests.processes import free_port

RUN_TIMEOUT_S = 600


def quick_config() -> dict:
    """The test preset, trained and evaluated briefly (both models still pass their blocking checks): the graph's
    shape, tables and checks as in the test-preset build, in a fraction of its time."""
    cfg = run_config()
    ops = cfg["ops"]
    ops["tiger_model"]["config"].update(epochs=2, samples_per_playlist=2, num_beams=8)
    ops["ranker_dataset"]["config"].update(generator_candidates=10, generator_beams=4)
    ops["ranker_model"]["config"].update(epochs=1)
    ops["evaluation_report"]["config"].update(max_queries=15, n_candidates=30, num_beams=8, latency_queries=1,
                                              classical_grid=[0.0, 4.0])
    ops["ltr_tables"]["config"].update(generator_songs=10, num_beams=4, per_source=10, rank_depth=30)
    return cfg


pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(shutil.which("initdb") is None and not Path(team_stack.PG_BIN_DIRS[0], "initdb").exists(),
                       reason="needs PostgreSQL 15 (Debian: apt-get install postgresql-15; CI's .ci/run installs it)"),
]


@pytest.fixture()
def stack(tmp_path, tiny_demo_dir, monkeypatch):
    # As root PostgreSQL runs as `postgres`, which cannot enter pytest's 0700 temporary folders: its data folder
    # is a folder of its own under /tmp.
    pgdata = Path(tempfile.mkdtemp(prefix="genrank-team-pg-"))
    for name in ("GENRANK_PRESET", "GENRANK_RETRAIN_CRON", "GENRANK_WAREHOUSE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENRANK_DATA_DIR", str(tiny_demo_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(team_stack.PGDATA_ENV, str(pgdata))  # chowned to `postgres` when run as root
    home = tmp_path / "home"
    s = team_stack.Stack.from_env(home, postgres=free_port(), mlflow=free_port(), dagster=free_port())
    try:
        yield s
    finally:
        team_stack.stop(s)
        shutil.rmtree(pgdata, ignore_errors=True)


def wait_for_run(dagster_home: Path, run_id: str) -> dg.DagsterRun:
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with dg.DagsterInstance.get() as instance:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run
            time.sleep(3)
    pytest.fail(f"run {run_id} did not finish in {RUN_TIMEOUT_S} s")


def test_team_stack_materialises_and_serves_the_champion(stack, tmp_path):
    pids = team_stack.start(stack)
    assert set(pids) == set(team_stack.PROCESSES) and all(team_stack._alive(p) for p in pids.values())
    assert all((stack.pids / f"{name}.pid").is_file() for name in team_stack.PROCESSES)
    with pytest.raises(team_stack.TeamStackError, match="already running"):
        team_stack.start(stack)

    config = tmp_path / "run_config.yaml"
    config.write_text(yaml.safe_dump(quick_config()))
    run_id = str(uuid.uuid4())  # `dagster job launch --run-id` takes a UUID only
    env = {**os.environ, **stack.env(),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
    launch = subprocess.run([str(Path(sys.executable).parent / "dagster"), "job", "launch", "-j", "retrain_all_job",
                             "-w", str(paths.REPO_DIR / "workspace.yaml"), "-c", str(config), "--run-id", run_id],
                            cwd=paths.REPO_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-3000:]
    old_home = os.environ.get("DAGSTER_HOME")
    try:
        run = wait_for_run(stack.dagster_home, run_id)
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            failures = [r.event_log_entry.dagster_event.message for r in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records]
            assert run.status == dg.DagsterRunStatus.SUCCESS, (failures, team_stack._log_tail(stack, "dagster-daemon"))
            # The daemon dequeued it: the run went through QUEUED, and its steps ran in processes of their own.
            queued = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED).records
            assert queued
            mats = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
            assert {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in mats} >= {
                "playlist_corpus", "tiger_model", "ranker_model", "evaluation_report", "champion"}
            starts = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
            assert len({r.event_log_entry.dagster_event.pid for r in starts}) == len(starts)
    finally:
        if old_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old_home

    # The champion, through the MLflow server's registry (PostgreSQL behind it), its files through the server.
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    champion = client.get_model_version_by_alias(registry.RECOMMENDER_NAME, "champion")
    assert champion.version == "1"
    run_info = client.get_run(champion.run_id).info
    assert run_info.artifact_uri.startswith("mlflow-artifacts:"), run_info.artifact_uri  # the server's store
    mlflow.set_tracking_uri(stack.mlflow_uri)
    mlflow.set_registry_uri(stack.mlflow_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{registry.RECOMMENDER_NAME}@champion")
        out = model.predict(pd.DataFrame({"text": ["gym running bgm"], "k": [5]}))
    finally:
        mlflow.set_tracking_uri("")
        mlflow.set_registry_uri("")
    assert out["rank"].tolist() == [1, 2, 3, 4, 5] and out.song_id.nunique() == 5
    assert any((stack.root / "mlartifacts").rglob("MLmodel"))

    # Stopped by PID: every process gone, its PID file removed.
    assert sorted(team_stack.stop(stack)) == sorted(team_stack.PROCESSES)
    assert not any(team_stack._alive(p) for p in pids.values())
    assert not list(stack.pids.glob("*.pid")) and team_stack.running(stack) == {}
