"""Upstream selections: the multi-assets (ingest, semantic IDs) can be subset, so `--select '*X'` works."""
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from genrank_assets import paths
from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets_tests import BAD_ROWS
from genrank_assets_tests.builds import table_names


def test_cli_upstream_selection_of_semantic_ids(tiny_demo_dir, genrank_home, tmp_path):
    """The most common CLI use: `dagster asset materialize --select '*semantic_ids'` materialises only what
    semantic_ids needs; the other outputs of the two multi-assets are left alone."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {"GENRANK_HOME": str(genrank_home), "GENRANK_DATA_DIR": str(tiny_demo_dir),
           "DAGSTER_HOME": str(dagster_home), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "genrank_assets",
         "--select", "*semantic_ids", "-c", str(paths.preset_file("test"))],
        env=env, capture_output=True, text=True, timeout=600, cwd=paths.REPO_DIR,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not selected in this run, left as they are: ['ingested_batches', 'ingest_rejects']" in proc.stderr
    tables = table_names(genrank_home)
    assert {"raw_playlists", "raw_playlist_songs", "raw_songs", "playlist_corpus", "song_vectors",
            "semantic_ids"} <= tables
    assert not tables & {"ingest_rejects", "ingested_batches", "semantic_id_metrics", "generator_dataset"}


def test_adding_a_batch_needs_the_ledger_in_the_selection(genrank_home, tmp_path):
    """A subset run that would add a batch without recording it in the ledger is refused, naming the fix."""
    data = tmp_path / "data"
    shutil.copytree(BAD_ROWS, data)
    batch = data / "incoming" / "b1"
    shutil.copytree(BAD_ROWS, batch)
    (batch / "_SUCCESS").write_text("")
    with pytest.raises(dg.DagsterInvalidConfigError, match="ingested_batches.*is not selected"):
        dg.materialize(
            [a for a in all_assets if "data" in set((a.group_names_by_key or {}).values())] + all_asset_checks,
            resources=build_resources(home=str(genrank_home), data_dir=str(data)),
            run_config={"ops": {"raw_tables": {"config": {"batches": ["b1"]}}}},
            selection=dg.AssetSelection.assets("raw_playlists", "raw_songs", "raw_playlist_songs"),
        )
    assert not (genrank_home / "warehouse.duckdb").exists() or "raw_playlists" not in table_names(genrank_home)
