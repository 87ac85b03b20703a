"""What a person sees in the two UIs, checked in a real headless Chromium (Debian's, through Playwright).

A copy of the session's test-preset build (`test_preset_build`, builds.py: a GENRANK_HOME whose dagster/ folder
holds the run) feeds both UIs: `make ui`'s command (`python -m genrank_assets.tools.serve_ui`) and `make mlflow-ui`'s
(`python -m genrank_assets.tools.serve_ui --mlflow`). Dagster: the global asset graph with every group expanded shows
every asset and group; `evaluation_report` shows the report (table and its three plots, loaded); a blocking
check's result; `semantic_ids` shows its code plots; the sensor and the schedule pages load. MLflow: the three
registered models with the `champion` alias, and the evaluation's metrics on their runs.

Screenshots go to GENRANK_SCREENSHOTS (default `.artifacts/browser/` in the repository; the path is printed at
the end of the session). Marked `browser`; skipped, saying how to run them, where /usr/bin/chromium is missing.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from genrank_assets import paths
from genrank_assets.definitions import defs
from genrank_assets.defs.assets import STAGES
from genrank_assets.defs.folds import FOLD_GROUP
from genrank_assets_tests.builds import copy_build
from genrank_assets_tests.processes import free_port, stop_group
from genrank_assets_tests.tools.test_serve_ui import wait_until_loaded

CHROMIUM = Path(os.environ.get("GENRANK_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(os.environ.get("GENRANK_SCREENSHOTS") or paths.REPO_DIR / ".artifacts" / "browser")
# Headless Chromium on a machine without network: no background connections, no sandbox as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOW_TO_RUN = ("needs Chromium at /usr/bin/chromium (Debian: `apt-get install chromium`; or set GENRANK_CHROMIUM) "
              "and the dev extra's playwright; then `make test-browser` (CI's .ci/run installs both)")
GROUPS = (*STAGES, FOLD_GROUP)  # every stage is an asset group the UI must show, and the folds' group
MODELS = ("genrank-tiger", "genrank-ranker", "genrank-recommender")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None, reason=HOW_TO_RUN),
]


# -- one materialisation, two servers, one browser ------------------------------------------------------------

@pytest.fixture(scope="module")
def ui_env(test_preset_build, tmp_path_factory, tiny_demo_dir, request) -> dict:
    """Environment of a copy of the test-preset build (the UIs' daemon may write to its home, so not the shared one)."""
    home = copy_build(test_preset_build, tmp_path_factory.mktemp("browser") / "home").home
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GENRANK_PRESET",
                                                            "GENRANK_RETRAIN_CRON", "GENRANK_VERBOSE")}
    env.update({"GENRANK_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "GENRANK_DATA_DIR": str(tiny_demo_dir),
                "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    SHOTS.mkdir(parents=True, exist_ok=True)
    request.config.genrank_screenshots = SHOTS  # conftest prints where they are at the end of the session
    return env


def _serve(env: dict, log: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "genrank_assets.tools.serve_ui", *extra, "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=paths.REPO_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, port


@pytest.fixture(scope="module")
def dagster_url(ui_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("dagster_ui") / "dagster_dev.log"
    proc, port = _serve(ui_env, log)
    try:
        wait_until_loaded(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def mlflow_url(ui_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("mlflow_ui") / "mlflow_ui.log"
    proc, port = _serve(ui_env, log, "--mlflow")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow ui exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow ui did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


VIEWPORT = {"width": 1600, "height": 1000}
# The asset graph draws only the nodes inside the viewport: tall enough for every stage's group expanded at once
# (1000 px cut off the data group's top once the catalogue stage came in; 1400 px the second cross-fitting fold).
GRAPH_VIEWPORT = {"width": 1600, "height": 2200}


def _page(browser, viewport: dict):
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture()
def page(browser):
    yield from _page(browser, VIEWPORT)


@pytest.fixture()
def graph_page(browser):
    yield from _page(browser, GRAPH_VIEWPORT)


def shot(page_or_element, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page_or_element.screenshot(path=str(path))
    return path


def dagster_page(page, url: str) -> None:
    """Open a Dagster UI page and dismiss the one-time community dialog if it comes up."""
    page.goto(url, wait_until="networkidle")
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=2000)
        skip.click()
    except Exception:  # noqa: BLE001 - the dialog shows once per instance, or not at all
        pass


# -- Dagster -------------------------------------------------------------------------------------------------

def label_is(label: str, key: str) -> bool:
    """A node label names the asset: its name, or the name shortened in the middle (``semantic_…_metrics``)."""
    if "…" not in label:
        return label == key
    head, tail = label.split("…", 1)
    return key.startswith(head) and key.endswith(tail) and len(key) > len(head) + len(tail)


def test_asset_graph_shows_every_asset_and_group(graph_page, dagster_url):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = graph_page
    dagster_page(page, f"{dagster_url}/asset-groups")
    page.get_by_text("Materialize all").first.wait_for()
    page.mouse.click(1100, GRAPH_VIEWPORT["height"] - 200, button="right")  # the graph's context menu
    page.get_by_role("menuitem", name="Expand all groups").click()
    # a node is labelled with its key's last part: the folds' copies (fold_0/song_vectors) share the served names
    keys = sorted(k.path[-1] for k in defs.resolve_all_asset_keys())
    nodes = page.locator("[class*='AssetNode_assetName']")
    try:  # on a timeout the assertions below name the nodes that were not drawn
        page.wait_for_function(
            f"() => document.querySelectorAll(\"[class*='AssetNode_assetName']\").length >= {len(keys)}")
    except PlaywrightTimeout:
        shot(page, "dagster-asset-graph-incomplete")
    # The UI fetches the nodes' statuses in batches after drawing them (slowly on loaded cores): wait until every
    # box has its colour (or 60 s; the assertion below then says which did not).
    try:
        page.wait_for_function(
            "() => { const b = [...document.querySelectorAll(\"[class*='AssetNode_minimalAssetNodeBox']\")];"
            f" return b.length >= {len(keys)} && b.every(e => (e.getAttribute('style') || '').includes('background-green')); }}",
            timeout=60_000)
    except PlaywrightTimeout:
        pass
    page.wait_for_timeout(500)
    shot(page, "dagster-asset-graph")
    labels = nodes.all_inner_texts()
    assert len(labels) == len(keys), labels
    unmatched = [k for k in set(keys) if sum(label_is(label, k) for label in labels) != keys.count(k)]
    assert not unmatched, (unmatched, labels)
    # Every node is drawn as materialised (green) after the build.
    boxes = page.locator("[class*='AssetNode_minimalAssetNodeBox']")
    styles = boxes.evaluate_all("els => els.map(e => e.getAttribute('style') || '')")
    assert len(styles) == len(keys) and all("background-green" in st for st in styles), styles
    text = page.inner_text("body")
    assert not [g for g in GROUPS if g not in text], text[:2000]


def test_evaluation_report_page_shows_the_table_and_its_plots(page, dagster_url):
    dagster_page(page, f"{dagster_url}/assets/evaluation_report")
    page.get_by_text("new_ndcg@10").first.wait_for()
    shot(page, "dagster-evaluation-report-asset")
    row = page.locator("tr", has=page.get_by_text("report", exact=True))
    row.get_by_text("Show Markdown").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("genrank evaluation report").wait_for()
    table_text = dialog.locator("table").first.inner_text()
    for method in ("popularity", "title_knn", "generate_and_rank_hybrid"):
        assert method in table_text
    images = dialog.locator("img")
    assert images.count() == 3
    page.wait_for_function("() => [...document.querySelectorAll('[role=dialog] img')].every(i => i.complete)")
    loaded = dialog.evaluate("d => [...d.querySelectorAll('img')].map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
    assert [alt for alt, _, _ in loaded] == ["NDCG@10", "recall@K", "latency"]
    assert all(w > 300 and h > 200 for _, w, h in loaded), loaded  # real pictures, not broken images
    shot(dialog, "dagster-evaluation-report-markdown")
    for i, alt in enumerate(("ndcg", "recall", "latency")):
        shot(images.nth(i), f"dagster-evaluation-report-plot-{alt}")


def test_semantic_ids_page_shows_its_code_plots(page, dagster_url):
    dagster_page(page, f"{dagster_url}/assets/semantic_ids")
    for key in ("code_usage", "songs_per_code"):
        page.locator("tr", has=page.get_by_text(key, exact=True)).get_by_text("Show Markdown").click()
        image = page.get_by_role("dialog").locator("img").first
        image.wait_for()
        page.wait_for_function("() => [...document.querySelectorAll('[role=dialog] img')].every(i => i.complete)")
        assert image.evaluate("i => i.naturalWidth") > 300
        shot(page.get_by_role("dialog"), f"dagster-semantic-ids-{key}")
        page.keyboard.press("Escape")
        page.get_by_role("dialog").wait_for(state="detached")


def test_a_blocking_check_result_is_shown(page, dagster_url):
    dagster_page(page, f"{dagster_url}/assets/raw_songs?view=checks")
    page.get_by_text("raw_songs_ids_valid").first.wait_for()
    page.get_by_text("Passed").first.wait_for()
    text = page.inner_text("body")
    assert "blocking" in text and "Passed" in text and "empty_ids" in text
    shot(page, "dagster-blocking-check")


def test_sensor_and_schedule_pages_load(page, dagster_url):
    dagster_page(page, f"{dagster_url}/locations/genrank/sensors/new_batch_sensor")
    page.get_by_text("new_batch_job").first.wait_for()
    assert "new_batch_sensor" in page.inner_text("body")
    shot(page, "dagster-sensor")
    dagster_page(page, f"{dagster_url}/locations/genrank/schedules/retrain_schedule")
    page.get_by_text("retrain_all_job").first.wait_for()
    text = page.inner_text("body")
    assert "retrain_schedule" in text and "0 3 * * 1" in text
    shot(page, "dagster-schedule")


# -- MLflow --------------------------------------------------------------------------------------------------

def mlflow_page(page, url: str, ready: str) -> None:
    """Open an MLflow UI page (it polls, so never network-idle), wait for ``ready``, close its promotions."""
    page.goto(url, wait_until="load")
    page.get_by_text(ready).first.wait_for()
    page.wait_for_timeout(1500)
    page.keyboard.press("Escape")  # the new-registry-UI dialog, when it shows
    assistant = page.get_by_role("button", name="Close")
    for i in range(assistant.count()):  # the assistant panel
        if assistant.nth(i).is_visible():
            assistant.nth(i).click(timeout=5000)
            break
    page.wait_for_timeout(300)


def test_mlflow_lists_the_three_models_with_their_champion(page, mlflow_url):
    mlflow_page(page, f"{mlflow_url}/#/models", "genrank-recommender")
    for name in MODELS:
        row = page.get_by_role("row").filter(has_text=name)
        assert "champion" in row.first.inner_text(), row.first.inner_text()
    shot(page, "mlflow-registered-models")
    mlflow_page(page, f"{mlflow_url}/#/models/genrank-recommender", "Version 1")
    assert "champion" in page.inner_text("body")
    shot(page, "mlflow-recommender-versions")


def test_mlflow_runs_carry_the_evaluation_metrics(page, mlflow_url, ui_env):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ui_env['GENRANK_HOME']}/mlflow.db",
                          registry_uri=f"sqlite:///{ui_env['GENRANK_HOME']}/mlflow.db")
    for name, metric in (("genrank-tiger", "eval.generate_and_rank_hybrid.ndcg_at_10"),
                         ("genrank-recommender", "generate_and_rank_hybrid.ndcg_at_10")):
        version = client.get_model_version_by_alias(name, "champion")
        run = client.get_run(version.run_id)
        value = run.data.metrics[metric]
        mlflow_page(page, f"{mlflow_url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}", metric)
        row = page.get_by_role("row").filter(has_text=metric).first
        assert repr(value)[:6] in row.inner_text(), (row.inner_text(), value)
        shot(page, f"mlflow-run-{name}")

