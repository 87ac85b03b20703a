"""The CLI answers user errors with one line and exit status 2, and never serves past the promotion gate."""
import subprocess
import sys
import time

import mlflow
import pytest

from genrank_assets.ml.serving import registry
from genrank_assets.tools import cli


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture()
def registered(genrank_home):
    """A real sqlite MLflow registry with two versions of genrank-recommender, champion = v1 (v2 refused)."""
    registry.connect(genrank_home, experiment="genrank")
    for _ in range(2):
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=_Echo(), registered_model_name=registry.RECOMMENDER_NAME)
    registry.set_alias(registry.RECOMMENDER_NAME, 1)
    return genrank_home


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_unknown_alias_is_an_error_not_the_latest_version(registered, capsys):
    rc, out, err = run_cli(capsys, "recommend", "gym", "--alias", "nosuch", "--home", str(registered))
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [
        "genrank recommend: genrank-recommender has no alias 'nosuch' (aliases: champion=v1); pass --version N "
        "to load a version the promotion gate has not promoted"]


def test_unknown_version_is_one_line(registered, capsys):
    rc, _, err = run_cli(capsys, "generate", "gym", "--version", "999", "--home", str(registered))
    assert rc == 2
    assert err.strip().splitlines() == ["genrank generate: no registered model 'genrank-tiger': run `make demo` or "
                                        "materialise the graph first"]
    rc, _, err = run_cli(capsys, "recommend", "gym", "--version", "999", "--home", str(registered))
    assert rc == 2 and err.strip() == "genrank recommend: genrank-recommender has no version 999 (registered: 1, 2)"


@pytest.mark.parametrize("text", ["", "   ", "\x01\x02\x7f"])
def test_empty_or_control_only_query_fails_before_any_model_load(genrank_home, capsys, text):
    start = time.monotonic()
    rc, _, err = run_cli(capsys, "recommend", text, "--home", str(genrank_home))
    assert rc == 2 and err.startswith("genrank recommend: query text is empty")
    assert time.monotonic() - start < 5  # no registry, no model was touched


def test_locked_warehouse_is_one_clear_line(genrank_home, capsys, monkeypatch):
    genrank_home.mkdir(parents=True)
    db = genrank_home / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(db)!r}); "
                               "c.execute('create schema genrank'); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        monkeypatch.setattr(cli, "WAREHOUSE_LOCK_WAIT_S", 0.5)
        rc, _, err = run_cli(capsys, "status", "--home", str(genrank_home))
        assert rc == 2
        assert "is locked by another process (a materialisation writing it?)" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    rc, out, _ = run_cli(capsys, "status", "--home", str(genrank_home))  # the lock is gone: it reads
    assert rc == 0 and "warehouse" in out
