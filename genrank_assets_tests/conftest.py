import os

# No test may reach a model hub; everything is built locally from config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_demo_dir(tmp_path_factory) -> Path:
    """A small generated dataset in the seed format (with its planted malformed rows)."""
    from genrank_assets.ml.data.demo_data import generate_demo_data

    out = tmp_path_factory.mktemp("demo_data")
    generate_demo_data(out, n_playlists=400, n_songs=800, seed=7)
    return out


@pytest.fixture(scope="session")
def test_preset_build(tmp_path_factory, tiny_demo_dir):
    """The session's one materialisation of the whole graph with the test preset (builds.py). Read it through
    `built`; materialise again or move aliases only in `own_build`'s copy."""
    from genrank_assets_tests.builds import build_test_preset

    return build_test_preset(tmp_path_factory.mktemp("test_preset_build") / "home", tiny_demo_dir)


@pytest.fixture()
def built(test_preset_build, monkeypatch):
    """The shared test-preset build, GENRANK_HOME and MLflow pointed at it for this test. Read-only."""
    return test_preset_build.use(monkeypatch)


@pytest.fixture()
def own_build(test_preset_build, tmp_path, monkeypatch):
    """A copy of the shared build for this test alone (GENRANK_HOME and MLflow pointed at it): one to materialise
    into, move aliases in or register versions to."""
    from genrank_assets_tests.builds import copy_build

    return copy_build(test_preset_build, tmp_path / "home").use(monkeypatch)


@pytest.fixture()
def genrank_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "genrank_home"
    monkeypatch.setenv("GENRANK_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


# `make test SKIP_SERVICES=1` (GENRANK_SKIP_SERVICES=1) leaves out the tests that start services or a browser, for a
# quick local run; CI (.ci/run) runs everything.
SKIP_SERVICES_ENV = "GENRANK_SKIP_SERVICES"


def pytest_collection_modifyitems(config, items):
    if os.environ.get(SKIP_SERVICES_ENV, "") not in ("1", "true", "yes"):
        return
    skip = pytest.mark.skip(reason=f"{SKIP_SERVICES_ENV}=1: services and browser tests skipped "
                                   "(run them with `make test-services` / `make test-browser`, or unset it)")
    for item in items:
        if "services" in item.keywords or "browser" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, config):
    shots = getattr(config, "genrank_screenshots", None)  # set by test_browser_ui when it ran
    if shots:
        terminalreporter.write_line(f"browser screenshots: {shots}")
