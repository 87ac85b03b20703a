"""The Dagster UI starts (`python -m genrank_assets.tools.serve_ui`), shows the whole asset graph with groups and
dependencies, the sensor and the schedule, and stops when its process group is sent SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from genrank_assets import paths
from genrank_assets.definitions import defs
from genrank_assets_tests.processes import free_port, stop_group, wait_group_gone

START_TIMEOUT_S = 120

WORKSPACE_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
ASSETS_QUERY = "{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }"
REPOSITORIES_QUERY = """{ repositoriesOrError { __typename ... on RepositoryConnection { nodes {
  name sensors { name minIntervalSeconds } schedules { name cronSchedule } jobs { name } } } } }"""


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read().decode("utf-8"))
    assert not body.get("errors"), body["errors"]
    return body["data"]


def wait_until_loaded(port: int, proc: subprocess.Popen, log: Path) -> None:
    """Poll until the webserver answers and the code location has loaded (or failed to)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            entries = graphql(port, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            entries = []
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e["locationOrLoadError"] for e in entries
                      if e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, errors
            return
        time.sleep(1)
    pytest.fail(f"the UI did not load within {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture()
def ui(tmp_path):
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"), "GENRANK_HOME": str(tmp_path / "home"),
           "GENRANK_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("GENRANK_RETRAIN_CRON", "GENRANK_PRESET"):
        env.pop(name, None)
    log = tmp_path / "dagster_dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "genrank_assets.tools.serve_ui", "--host", "127.0.0.1", "--port", str(port)],
            cwd=paths.REPO_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_until_loaded(port, proc, log)
        yield port, proc
    finally:
        stop_group(proc)  # whatever the test did, leave nothing running


def test_ui_shows_the_asset_graph_sensor_and_schedule(ui):
    port, proc = ui
    nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(port, ASSETS_QUERY)["assetNodes"]}
    graph = defs.resolve_asset_graph()
    for key in defs.resolve_all_asset_keys():
        node = nodes.get(tuple(key.path))
        assert node is not None, f"{key.to_user_string()} missing from the UI"
        assert node["groupName"] == graph.get(key).group_name
        assert {tuple(d["path"]) for d in node["dependencyKeys"]} == {tuple(p.path) for p in graph.get(key).parent_keys}

    repositories = graphql(port, REPOSITORIES_QUERY)["repositoriesOrError"]["nodes"]
    sensors = {s["name"]: s for r in repositories for s in r["sensors"]}
    schedules = {s["name"]: s for r in repositories for s in r["schedules"]}
    jobs = {j["name"] for r in repositories for j in r["jobs"]}
    assert sensors["new_batch_sensor"]["minIntervalSeconds"] == 30
    assert schedules["retrain_schedule"]["cronSchedule"] == "0 3 * * 1"
    assert {"retrain_all_job", "new_batch_job", "data_job", "ranking_job"} <= jobs

    # Stopping: SIGTERM to the process group ends dagster dev and everything it started.
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)  # raises TimeoutExpired if it keeps running
    assert wait_group_gone(proc.pid, timeout=30), "processes of dagster dev still running after SIGTERM"
