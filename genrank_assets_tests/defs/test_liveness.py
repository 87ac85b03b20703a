"""A run killed with SIGKILL must not block automation: the sensor marks it failed and the next batch goes on."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import yaml

from genrank_assets import paths
from genrank_assets.definitions import defs
from genrank_assets.defs.liveness import fail_dead_runs, process_alive_since
from genrank_assets.defs.resources import GenrankPaths


def test_process_alive_since():
    assert process_alive_since(os.getpid(), time.time())
    # This process started before now, but not before an instant in the past before it existed.
    assert not process_alive_since(os.getpid(), 0.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive_since(dead.pid, time.time())


def _wait_for_started_run(instance: dg.DagsterInstance, proc: subprocess.Popen, timeout: float = 120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the materialisation ended before it could be killed"
        records = instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        if records and instance.all_logs(records[0].dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START):
            return records[0].dagster_run
        time.sleep(0.5)
    raise AssertionError("no STARTED run appeared")


def test_killed_run_is_marked_failed_and_the_next_batch_proceeds(tiny_demo_dir, tmp_path):
    home, dagster_home, data = tmp_path / "home", tmp_path / "dagster_home", tmp_path / "data"
    dagster_home.mkdir()
    shutil.copy(paths.DAGSTER_YAML, dagster_home / "dagster.yaml")
    shutil.copytree(tiny_demo_dir, data)
    # word2vec with very many epochs: a step that is surely still running when it is killed.
    config = tmp_path / "slow.yaml"
    config.write_text(yaml.safe_dump({"ops": {"song_vectors": {"config": {"epochs": 100000}}}}))
    env = {"GENRANK_HOME": str(home), "GENRANK_DATA_DIR": str(data), "DAGSTER_HOME": str(dagster_home),
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "genrank_assets",
         "--select", "*song_vectors", "-c", str(config)],
        env=env, cwd=paths.REPO_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        run = _wait_for_started_run(instance, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, as the OOM killer or kill -9 would
        proc.wait()
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # what used to stay for ever

    batch = data / "incoming" / "b1"
    batch.mkdir(parents=True)
    for f in tiny_demo_dir.iterdir():
        shutil.copy(f, batch / f.name)
    (batch / "_SUCCESS").write_text("")
    sensor = defs.resolve_sensor_def("new_batch_sensor")
    context = dg.build_sensor_context(instance=instance, resources={"genrank_paths": GenrankPaths(data_dir=str(data))})
    result = sensor.evaluate_tick(context)
    assert [r.run_key for r in result.run_requests] == ["b1"], result.skip_message
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert fail_dead_runs(instance) == []  # nothing left to mark
