"""`genrank materialize` (what `make demo` runs): one line per asset on the terminal, every Dagster event in the
log file, the run recorded in DAGSTER_HOME like any other; `-v` brings the full log back."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genrank_assets import paths
from genrank_assets.tools import demo_run


def _run(tmp_path: Path, data: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "GENRANK_VERBOSE")}
    env.update({"GENRANK_HOME": str(tmp_path / "home"), "GENRANK_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1",
                **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "genrank_assets.tools.cli", "materialize", *args], cwd=paths.REPO_DIR, env=env,
                          capture_output=True, text=True, timeout=600)


def test_one_line_per_asset_and_the_full_log_in_a_file(tmp_path, tiny_demo_dir):
    proc = _run(tmp_path, tiny_demo_dir, "-c", "test", "--select", "*song_vectors")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    log_line = next(line for line in lines if line.startswith("full log: "))
    log = Path(log_line.removeprefix("full log: "))
    assert log.is_relative_to(tmp_path / "home" / "logs")
    by_asset = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(by_asset) == {"raw_playlists", "raw_playlist_songs", "raw_songs", "playlist_corpus", "upstream_corpus",
                            "song_vectors"}
    assert "400 rows" in by_asset["raw_playlists"]
    assert by_asset["song_vectors"].split()[-1].endswith("s")  # the step's seconds
    assert "x 16" in by_asset["song_vectors"]  # songs x dim
    assert "checks passed" in lines[-1] and "failed" not in lines[-1]
    # Quiet terminal, complete file: the DEBUG events are in the log, not on the terminal.
    assert "LOADED_INPUT" not in proc.stdout and "DEBUG" not in proc.stdout
    text = log.read_text()
    assert "LOADED_INPUT" in text and "RUN_SUCCESS" in text and "it/s]" not in text  # plain lines, no bars
    # The run went to the instance under GENRANK_HOME/dagster (so the UI shows it).
    assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()
    assert any((tmp_path / "home" / "dagster").rglob("*.db"))


def test_verbose_streams_the_full_log(tmp_path, tiny_demo_dir):
    proc = _run(tmp_path, tiny_demo_dir, "-c", "test", "--select", "*playlist_corpus", env_extra={"GENRANK_VERBOSE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "STEP_SUCCESS" in proc.stdout and "  raw_songs" in proc.stdout


def test_a_failing_run_says_so_and_names_the_log(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    proc = _run(tmp_path, empty, "-c", "test", "--select", "*playlist_corpus")
    assert proc.returncode != 0
    assert "materialisation failed" in proc.stderr and "full log" in proc.stdout
    assert "step raw_tables failed" in proc.stdout  # the step's error, one line


def test_unknown_preset_is_one_line():
    with pytest.raises(SystemExit, match="unknown preset 'nope'"):
        demo_run.preset_path("nope")
    assert demo_run.preset_path("demo").name == "demo.yaml"


def test_asset_summaries_name_the_figure_a_person_looks_at():
    assert demo_run.asset_summary("raw_songs", {"dagster/row_count": 6000}) == "6,000 rows"
    assert demo_run.asset_summary("ranker_model", {"best_val_auc": 0.69, "best_val_loss": 0.52, "epochs_run": 2}) \
        == "val AUC 0.690 val loss 0.520 2 epochs"
    assert demo_run.asset_summary("champion", {"promoted": True, "champion_version": 3}) == "promoted: champion is v3"
    assert demo_run.asset_summary("evaluation_report", {"new_ndcg@10": 0.5945, "title_knn.ndcg@10": 0.5761}) \
        == "NDCG@10 0.5945 served system, title_knn 0.5761"
