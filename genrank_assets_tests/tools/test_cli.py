"""The CLI answers user errors with one line and exit status 2, and never serves past the promotion gate; on the
test-preset build, `genrank recommend`, `demo`, `similar` and `codes` answer."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.recommender import CLASSICAL_METHODS
from genrank_assets.tools import cli
from genrank_assets_tests.builds import metadata, tables
from genrank_assets_tests.ml.serving.fakes import log_echo
from genrank_assets_tests.processes import duckdb_holder


@pytest.fixture()
def registered(genrank_home):
    """A real sqlite MLflow registry with two versions of genrank-recommender, champion = v1 (v2 refused)."""
    registry.connect(genrank_home, experiment="genrank")
    for _ in range(2):
        with mlflow.start_run():
            log_echo(registry.RECOMMENDER_NAME)
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
    with duckdb_holder(db, "create schema genrank"):
        monkeypatch.setattr(cli, "WAREHOUSE_LOCK_WAIT_S", 0.5)
        rc, _, err = run_cli(capsys, "status", "--home", str(genrank_home))
        assert rc == 2
        assert "is locked by another process (a materialisation writing it?)" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    rc, out, _ = run_cli(capsys, "status", "--home", str(genrank_home))  # the lock is gone: it reads
    assert rc == 0 and "warehouse" in out


# -- the installed `genrank` command on the test-preset build --------------------------------------------------

def genrank_on(home: Path, scratch: Path):
    """Run the installed `genrank` command on GENRANK_HOME ``home`` (HOME: ``scratch``, so nothing lands in it)."""
    env = {"GENRANK_HOME": str(home), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "HOME": str(scratch),
           # a checkout beside the installed one (a git worktree) runs its own package when it says so
           **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {})}
    genrank = str(Path(sys.executable).parent / "genrank")

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([genrank, *args], env=env, capture_output=True, text=True, timeout=300, **kwargs)
    return run


def test_recommend_prints_ranked_songs(built, tmp_path):
    genrank = genrank_on(built.home, tmp_path)
    out = genrank("recommend", "适合深夜听的抒情歌曲", "-k", "5")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 5 and lines[0].startswith("1. ") and "(ID: " in lines[0]
    assert out.stderr.strip().splitlines()[-1].startswith("latency: model load ")  # stdout: the answer only
    js = genrank("recommend", "适合深夜听的抒情歌曲", "-k", "5", "--json")
    assert js.returncode == 0, js.stderr[-2000:]
    results = json.loads(js.stdout)["results"]  # the explained order is the recommended one
    assert [f"{r['rank']}. {r['name']} - {r['singer']} (ID: {r['song_id']})" for r in results] == lines
    served = metadata(built.result, "evaluation_report")["served_method"]
    if served in CLASSICAL_METHODS:  # a classical system is the one source of its songs; no score parts
        assert all([s["name"] for s in r["sources"]] == [served] and r["components"] is None for r in results)
    else:
        parts = {"score", "bias", "top"} if served == "ltr" else {"ranker_logit", "log_popularity", "final"}
        assert all(r["sources"] and parts <= set(r["components"]) for r in results), results
    demo = genrank("demo", "-k", "3", input="gym running bgm\n\nquit\n")
    assert demo.returncode == 0 and demo.stdout.count("(ID: ") == 3, demo.stdout + demo.stderr[-2000:]
    empty = genrank("recommend", "  ", "-k", "5")
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_similar_and_codes(built, tmp_path):
    genrank = genrank_on(built.home, tmp_path)
    (vectors,) = tables(built.home, "song_vectors")
    song = vectors.sort_values("count", ascending=False, kind="stable").song_id.iloc[0]
    similar = genrank("similar", song, "-k", "3")
    assert similar.returncode == 0 and similar.stdout.count("cos=") == 3, similar.stderr[-2000:]
    code = genrank("codes", "song", song)
    assert code.returncode == 0 and "-> code (" in code.stdout, code.stderr[-2000:]
    unknown = genrank("codes", "song", "no-such-song")
    assert unknown.returncode == 1 and "no semantic ID" in unknown.stderr
