"""Asset checks as quality gates: a failing blocking check stops everything downstream; a warning does not."""
from pathlib import Path

import dagster as dg

from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets.defs.automation import load_preset
from genrank_assets_tests.builds import table_names

STAGES = {"data", "vectors"}
FAST_VECTORS = {"song_vectors": load_preset("test")["ops"]["song_vectors"]}


def materialize_data_and_vectors(home: Path, data: Path, ops: dict) -> dg.ExecuteInProcessResult:
    assets = [a for a in all_assets if set((a.group_names_by_key or {}).values()) & STAGES]
    return dg.materialize(
        assets + all_asset_checks, resources=build_resources(home=str(home), data_dir=str(data)),
        selection=dg.AssetSelection.groups(*STAGES), run_config={"ops": {**FAST_VECTORS, **ops}}, raise_on_error=False,
    )


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_failing_blocking_check_stops_downstream_assets(tiny_demo_dir, genrank_home):
    # No demo playlist has 1000 songs: the corpus is empty, which `playlist_corpus_valid` (blocking) refuses.
    result = materialize_data_and_vectors(
        genrank_home, tiny_demo_dir, {"playlist_corpus": {"config": {"min_songs": 1000, "max_songs": 2000}}})
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["playlist_corpus_valid"].passed is False
    assert checks["playlist_corpus_valid"].metadata["bounds"].value == "1000-2000"
    # The checked asset itself was written; nothing downstream of it ran.
    assert "playlist_corpus" in materialized(result) and "song_vectors" not in materialized(result)
    assert "song_vectors" not in table_names(genrank_home)
    # The run names the failed check.
    failures = result.get_step_failure_events()
    assert [e.step_key for e in failures] == ["playlist_corpus_playlist_corpus_valid"]
    error = failures[0].step_failure_data.error
    # (raised as dagster._core.errors.DagsterAssetCheckFailedError when raise_on_error; not in dagster's public API)
    assert error.cls_name == "DagsterAssetCheckFailedError" and "playlist_corpus_valid" in error.message


def test_failing_warning_check_lets_downstream_run(tiny_demo_dir, genrank_home):
    # Asking for exact 80/10/10 shares fails `playlist_corpus_split_proportions`, which only warns.
    ops = {"playlist_corpus": {"config": {"min_songs": 5}},
           "playlist_corpus_playlist_corpus_split_proportions": {"config": {"tolerance": 0.0, "min_playlists_for_check": 0}}}
    result = materialize_data_and_vectors(genrank_home, tiny_demo_dir, ops)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["playlist_corpus_split_proportions"].passed is False
    assert checks["playlist_corpus_split_proportions"].severity == dg.AssetCheckSeverity.WARN
    assert checks["playlist_corpus_valid"].passed
    assert "song_vectors" in materialized(result) and "song_vectors" in table_names(genrank_home)
