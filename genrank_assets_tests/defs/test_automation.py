"""New batches landing (sensor, idempotent ingest, bad batches), schedule, per-stage jobs and presets."""
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

import genrank_assets.paths as paths
from genrank_assets.definitions import all_asset_checks, all_assets, build_resources, defs
from genrank_assets.defs import automation
from genrank_assets.defs.assets import STAGES
from genrank_assets.defs.folds import FOLD_GROUP
from genrank_assets.defs.resources import GPU_TAGS, GenrankPaths
from genrank_assets.ml.data.batches import (
    BASE_BATCH_ID,
    SUCCESS_MARKER,
    ingest_with_batches,
    read_ledger,
    scan_incoming,
)
from genrank_assets.ml.data.ingest import IngestError

INFO_HEADER = "glid\tlistname\tnickname\ttag_list\tfeat\tcollect_type\tplay_count"


def write_seed(folder: Path, playlists: dict[str, tuple[str, list[str]]], songs: dict[str, str],
               extra_info: list[str] = (), extra_song_rows: list[str] = (), complete: bool = True) -> Path:
    """The three seed-format files: playlists = {id: (title, [song ids])}, songs = {id: name}."""
    folder.mkdir(parents=True, exist_ok=True)
    info = [INFO_HEADER] + [f"{pid}\t{title}\tnick\ttag\t0\t1\t5" for pid, (title, _) in playlists.items()]
    rows = [f"{pid}\t{sid}" for pid, (_, sids) in playlists.items() for sid in sids]
    (folder / "gen_playlist_info.csv").write_text("\n".join(info + list(extra_info)) + "\n", encoding="utf-8")
    (folder / "gen_playlist_song.csv.sort").write_text("\n".join(rows + list(extra_song_rows)) + "\n",
                                                       encoding="utf-8")
    (folder / "gen_song_info.csv").write_text(
        "".join(f"{sid}\t{name}\tsinger\n" for sid, name in songs.items()), encoding="utf-8"
    )
    if complete:
        (folder / SUCCESS_MARKER).write_text("")
    return folder


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    """Base data: two playlists, four songs, one planted bad row."""
    return write_seed(
        tmp_path / "data",
        {"p1": ("morning", ["s1", "s2", "s3"]), "p2": ("night", ["s3", "s4"])},
        {"s1": "one", "s2": "two", "s3": "three", "s4": "four"},
        extra_song_rows=["p1\ts1\textra"], complete=False,
    )


def batch_dir(data_dir: Path, batch_id: str) -> Path:
    return data_dir / "incoming" / batch_id


def materialize_ingest(home: Path, data: Path, batches: list[str] = (), raise_on_error: bool = True,
                       instance=None, tags=None):
    data_assets = [a for a in all_assets if set((a.group_names_by_key or {}).values()) == {"data"}]
    return dg.materialize(
        data_assets + all_asset_checks, resources=build_resources(home=str(home), data_dir=str(data)),
        run_config={"ops": {"raw_tables": {"config": {"batches": list(batches)}}}},
        selection=dg.AssetSelection.assets(*automation.INGEST_ASSETS), raise_on_error=raise_on_error, instance=instance,
        tags=tags,
    )


def warehouse_tables(home: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return {t: con.execute(f"select * from genrank.{t}").fetchdf()
                for t in ["raw_playlists", "raw_playlist_songs", "raw_songs", "ingest_rejects", "ingested_batches"]}
    finally:
        con.close()


def songs_of(tables: dict[str, pd.DataFrame], pid: str) -> list[str]:
    ps = tables["raw_playlist_songs"]
    return ps[ps.playlist_id == pid].sort_values("position").song_id.tolist()


# --- ingest of batches -----------------------------------------------------------------------------------------


def test_batch_is_added_once_and_updates_replayed_playlists(data_dir, genrank_home):
    write_seed(batch_dir(data_dir, "b1"), {"p3": ("gym", ["s5", "s1"])}, {"s5": "five"},
               extra_info=["p9\ttoo few"])
    materialize_ingest(genrank_home, data_dir)
    base = warehouse_tables(genrank_home)
    assert len(base["raw_playlists"]) == 2 and len(base["ingested_batches"]) == 0
    assert set(base["ingest_rejects"].batch_id) == {BASE_BATCH_ID}

    materialize_ingest(genrank_home, data_dir, ["b1"])
    once = warehouse_tables(genrank_home)
    assert once["raw_playlists"].playlist_id.tolist() == ["p1", "p2", "p3"]
    assert songs_of(once, "p3") == ["s5", "s1"] and "s5" in set(once["raw_songs"].song_id)
    ledger = once["ingested_batches"]
    assert ledger.batch_id.tolist() == ["b1"] and ledger.playlists.tolist() == [1]
    # The batch's bad row is quarantined with the batch's id; the base's keeps "base".
    rejects = once["ingest_rejects"]
    assert rejects[rejects.batch_id == "b1"].reason.tolist() == ["wrong_column_count"]
    assert (rejects[rejects.batch_id == BASE_BATCH_ID].reason == "wrong_column_count").sum() == 1

    # The same batch again: nothing added, the ledger keeps when it was first ingested.
    materialize_ingest(genrank_home, data_dir, ["b1"])
    twice = warehouse_tables(genrank_home)
    for name in ["raw_playlists", "raw_playlist_songs", "raw_songs", "ingest_rejects"]:
        assert len(twice[name]) == len(once[name]), name
    pd.testing.assert_frame_equal(twice["ingested_batches"], once["ingested_batches"])

    # A later batch re-sends p1 with a new title and songs: updated, not duplicated; a song's later row wins.
    write_seed(batch_dir(data_dir, "b2"), {"p1": ("morning v2", ["s4", "s6"])}, {"s6": "six", "s1": "one (live)"})
    materialize_ingest(genrank_home, data_dir, ["b2"])
    after = warehouse_tables(genrank_home)
    playlists = after["raw_playlists"].set_index("playlist_id")
    assert list(playlists.index) == ["p1", "p2", "p3"] and playlists.loc["p1", "title"] == "morning v2"
    assert songs_of(after, "p1") == ["s4", "s6"] and songs_of(after, "p3") == ["s5", "s1"]
    assert after["raw_songs"].set_index("song_id").loc["s1", "song_name"] == "one (live)"
    assert after["raw_songs"].song_id.is_unique and len(after["raw_songs"]) == 6
    ledger = after["ingested_batches"]
    assert ledger.batch_id.tolist() == ["b1", "b2"] and ledger.seq.tolist() == [1, 2]
    assert ledger.set_index("batch_id").loc["b2", "playlists_updated"] == 1


def test_batch_missing_a_file_fails_naming_it_and_is_not_recorded(data_dir, genrank_home):
    write_seed(batch_dir(data_dir, "b1"), {"p3": ("gym", ["s1"])}, {})
    materialize_ingest(genrank_home, data_dir, ["b1"])
    write_seed(batch_dir(data_dir, "b2"), {"p4": ("rain", ["s2"])}, {})
    (batch_dir(data_dir, "b2") / "gen_song_info.csv").unlink()
    result = materialize_ingest(genrank_home, data_dir, ["b2"], raise_on_error=False)
    assert not result.success
    message = result.failure_data_for_node("raw_tables").error.cause.message
    assert "'b2'" in message and "gen_song_info.csv" in message
    assert read_ledger(genrank_home / "warehouse.duckdb").batch_id.tolist() == ["b1"]
    assert "p4" not in set(warehouse_tables(genrank_home)["raw_playlists"].playlist_id)


def test_half_copied_batch_is_never_read(data_dir):
    write_seed(batch_dir(data_dir, "b1"), {"p3": ("gym", ["s1"])}, {}, complete=False)
    with pytest.raises(IngestError, match=f"'b1' is not complete: no {SUCCESS_MARKER}"):
        ingest_with_batches(data_dir, [], ["b1"])


def test_ingested_batch_folder_gone_is_a_clear_error(data_dir):
    write_seed(batch_dir(data_dir, "b1"), {"p3": ("gym", ["s1"])}, {})
    assert len(ingest_with_batches(data_dir, ["b1"], []).tables.playlists) == 3
    shutil.rmtree(batch_dir(data_dir, "b1"))
    with pytest.raises(IngestError, match="'b1' was ingested before but its folder"):
        ingest_with_batches(data_dir, ["b1"], [])


def test_batch_resending_the_base_changes_nothing(data_dir):
    for name in ["gen_playlist_info.csv", "gen_playlist_song.csv.sort", "gen_song_info.csv"]:
        batch_dir(data_dir, "same").mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / name, batch_dir(data_dir, "same") / name)
    (batch_dir(data_dir, "same") / SUCCESS_MARKER).write_text("")
    base_only = ingest_with_batches(data_dir, [], []).tables
    merged = ingest_with_batches(data_dir, [], ["same"]).tables
    for name in ["playlists", "playlist_songs", "songs"]:
        pd.testing.assert_frame_equal(getattr(merged, name), getattr(base_only, name))


def test_metadata_only_update_keeps_songs_and_bad_ids_are_refused(data_dir):
    write_seed(batch_dir(data_dir, "b1"), {"p2": ("night (renamed)", [])}, {})
    merged = ingest_with_batches(data_dir, [], ["b1"]).tables
    assert merged.playlists.set_index("playlist_id").loc["p2", "title"] == "night (renamed)"
    p2 = merged.playlist_songs[merged.playlist_songs.playlist_id == "p2"]
    assert p2.sort_values("position").song_id.tolist() == ["s3", "s4"]
    for bad in ["base", "../x", "", "a b"]:
        with pytest.raises(ValueError, match="batch id"):
            ingest_with_batches(data_dir, [], [bad])


# --- sensor ----------------------------------------------------------------------------------------------------


def evaluate_sensor(data: Path, cursor=None, instance=None):
    sensor = defs.resolve_sensor_def("new_batch_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"genrank_paths": GenrankPaths(data_dir=str(data))})
    return sensor.evaluate_tick(context)


def test_sensor_requests_each_complete_batch_once(data_dir):
    assert evaluate_sensor(data_dir).run_requests == []  # no incoming/ folder at all
    write_seed(batch_dir(data_dir, "b1"), {"p3": ("gym", ["s1"])}, {})
    write_seed(batch_dir(data_dir, "b2"), {"p4": ("rain", ["s2"])}, {}, complete=False)  # still copying
    (data_dir / "incoming" / "not a batch!").mkdir()
    with dg.instance_for_test() as instance:
        first = evaluate_sensor(data_dir, instance=instance)
        assert [r.run_key for r in first.run_requests] == ["b1"]
        request = first.run_requests[0]
        assert request.run_config["ops"]["raw_tables"]["config"]["batches"] == ["b1"]
        assert request.tags[automation.BATCH_TAG] == "b1"
        dg.validate_run_config(defs.resolve_job_def("new_batch_job"), request.run_config)
        assert json.loads(first.cursor) == ["b1"]

        again = evaluate_sensor(data_dir, cursor=first.cursor, instance=instance)
        assert again.run_requests == [] and "b2" in again.skip_message and again.cursor == first.cursor

        (batch_dir(data_dir, "b2") / SUCCESS_MARKER).write_text("")
        third = evaluate_sensor(data_dir, cursor=again.cursor, instance=instance)
        assert [r.run_key for r in third.run_requests] == ["b2"] and json.loads(third.cursor) == ["b1", "b2"]


def test_sensor_takes_one_batch_at_a_time(data_dir):
    for batch_id in ["b2", "b1"]:
        write_seed(batch_dir(data_dir, batch_id), {f"p-{batch_id}": ("x", ["s1"])}, {})
    with dg.instance_for_test() as instance:
        first = evaluate_sensor(data_dir, instance=instance)
        assert [r.run_key for r in first.run_requests] == ["b1"]  # oldest name first
        # While b1's run is queued or running, b2 waits: both would rewrite the tables and the ledger.
        run = instance.create_run_for_job(defs.resolve_job_def("new_batch_job"), tags=first.run_requests[0].tags,
                                          status=dg.DagsterRunStatus.STARTED)
        waiting = evaluate_sensor(data_dir, cursor=first.cursor, instance=instance)
        assert waiting.run_requests == [] and run.run_id in waiting.skip_message
        assert waiting.cursor == first.cursor
        instance.report_run_failed(run)
        after = evaluate_sensor(data_dir, cursor=waiting.cursor, instance=instance)
        assert [r.run_key for r in after.run_requests] == ["b2"]


def test_sensor_does_not_request_a_batch_that_already_ran(data_dir, genrank_home):
    write_seed(batch_dir(data_dir, "b1"), {"p3": ("gym", ["s1"])}, {})
    with dg.instance_for_test() as instance:
        request = evaluate_sensor(data_dir, instance=instance).run_requests[0]
        # The run the daemon would launch for this request (ingest only, to stay fast).
        materialize_ingest(genrank_home, data_dir, ["b1"], instance=instance,
                           tags={**request.tags, "dagster/run_key": request.run_key})
        # A reset cursor does not bring it back: the run for that batch exists.
        reset = evaluate_sensor(data_dir, cursor=None, instance=instance)
        assert reset.run_requests == [] and json.loads(reset.cursor) == ["b1"]


def test_sensor_uses_the_preset_and_rejects_a_bad_cursor(data_dir, monkeypatch):
    write_seed(batch_dir(data_dir, "b1"), {"p3": ("gym", ["s1"])}, {})
    monkeypatch.setenv(automation.PRESET_ENV, "test")
    request = evaluate_sensor(data_dir).run_requests[0]
    assert request.run_config["ops"]["song_vectors"]["config"]["vector_size"] == 16
    assert request.run_config["ops"]["raw_tables"]["config"]["batches"] == ["b1"]
    dg.validate_run_config(defs.resolve_job_def("new_batch_job"), request.run_config)
    monkeypatch.setenv(automation.PRESET_ENV, "no-such-preset")
    with pytest.raises(ValueError, match="no-such-preset"):
        evaluate_sensor(data_dir)
    monkeypatch.delenv(automation.PRESET_ENV)
    with pytest.raises(ValueError, match="JSON list of batch ids"):
        evaluate_sensor(data_dir, cursor="b1")


def test_scan_sorts_and_separates_folders(tmp_path):
    for name, complete in [("2024-06-02", True), ("2024-06-01", True), ("2024-06-03", False)]:
        write_seed(batch_dir(tmp_path, name), {}, {}, complete=complete)
    (tmp_path / "incoming" / ".tmp-copy").mkdir()
    (tmp_path / "incoming" / "base").mkdir()
    scan = scan_incoming(tmp_path / "incoming")
    assert scan.complete == ["2024-06-01", "2024-06-02"] and scan.incomplete == ["2024-06-03"]
    assert scan.invalid == ["base"]


# --- jobs, schedule, presets -----------------------------------------------------------------------------------


def test_jobs_and_schedule_load_in_definitions():
    groups = automation.group_names(all_assets)
    # only known stages, in pipeline order, then the cross-fitting folds' group
    assert groups == [g for g in (*STAGES, FOLD_GROUP) if g in groups] and FOLD_GROUP in groups
    assert {"data", "vectors", "semantic_ids", "generator", "ranking", "evaluation"} <= set(groups)
    all_keys = set(defs.resolve_all_asset_keys())
    for group in groups:
        job = defs.resolve_job_def(f"{group}_job")
        assert job.executor_def.name == "genrank"  # multiprocess by default: executors.py
        in_group = {k for a in all_assets for k, g in (a.group_names_by_key or {}).items() if g == group}
        assert set(job.asset_layer.executable_asset_keys) == in_group
    full_keys = all_keys - {dg.AssetKey(automation.REFRESH_ASSET)}  # the refresh's challenger is refresh_job's
    for name in ["retrain_all_job", "new_batch_job"]:
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == "genrank" and set(job.asset_layer.executable_asset_keys) == full_keys
        assert job.tags[automation.RUN_KIND_TAG] == "full"
    refresh = defs.resolve_job_def("refresh_job")
    assert refresh.tags[automation.RUN_KIND_TAG] == "refresh"
    assert set(refresh.asset_layer.executable_asset_keys) == {
        dg.AssetKey(k) for k in (*automation.INGEST_ASSETS, *automation.REFRESH_ASSETS)}
    assert not {"song_vectors", "semantic_ids", "tiger_model", "ranker_model", "ltr_ranker"} & {
        k.to_user_string() for k in refresh.asset_layer.executable_asset_keys}  # a refresh retrains no model

    schedule = defs.resolve_schedule_def("retrain_schedule")
    assert schedule.cron_schedule == automation.DEFAULT_RETRAIN_CRON and schedule.job_name == "retrain_all_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    sensor = defs.resolve_sensor_def("new_batch_sensor")
    assert {t.job_name for t in sensor.targets} == {"refresh_job", "new_batch_job"}
    assert sensor.minimum_interval_seconds == 30


def test_a_batch_runs_a_refresh_once_a_full_retrain_exists(monkeypatch):
    with dg.instance_for_test() as instance:
        assert automation.batch_job_name(instance) == "new_batch_job"  # nothing to extend yet
        for key in automation.FULL_RETRAIN_ASSETS:
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        assert automation.batch_job_name(instance) == "refresh_job"
        monkeypatch.setenv(automation.BATCH_RUN_ENV, "full")
        assert automation.batch_job_name(instance) == "new_batch_job"
        monkeypatch.setenv(automation.BATCH_RUN_ENV, "sometimes")
        with pytest.raises(ValueError, match="GENRANK_BATCH_RUN"):
            automation.batch_job_name(instance)
    # a refresh's run config keeps only its own ops (Dagster refuses config for ops outside the job)
    config = automation.batch_run_config("b1", automation.load_preset("demo"), job_name="refresh_job")
    assert set(config["ops"]) <= {automation.INGEST_OP, *automation.REFRESH_ASSETS}
    assert config["ops"][automation.INGEST_OP]["config"]["batches"] == ["b1"]


def test_schedule_cron_from_env(monkeypatch):
    job = defs.resolve_job_def("retrain_all_job")
    monkeypatch.setenv(automation.RETRAIN_CRON_ENV, "15 2 * * *")
    monkeypatch.setenv(automation.PRESET_ENV, "demo")
    schedule = automation.build_retrain_schedule(job)
    assert schedule.cron_schedule == "15 2 * * *" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    request = schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0]
    assert request.run_config == automation.load_preset("demo")
    with dg.instance_for_test() as instance:  # a run under way: this tick is skipped
        instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)
        busy = automation.build_retrain_schedule(job, {"retrain_all_job"})
        assert busy.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests == []
    monkeypatch.setenv(automation.RETRAIN_CRON_ENV, "every tuesday")
    with pytest.raises(ValueError, match="GENRANK_RETRAIN_CRON"):
        automation.build_retrain_schedule(job)


PRESETS = sorted(paths.PRESETS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_validates_against_the_graph(preset):
    config = yaml.safe_load(preset.read_text(encoding="utf-8")) or {}
    job = defs.resolve_implicit_global_asset_job_def()
    unknown = unknown_ops(config, job)
    assert not unknown, f"{preset.name}: unknown ops {unknown}"
    dg.validate_run_config(job, config)


def unknown_ops(config: dict, job) -> list[str]:
    """Dagster ignores unknown op keys, so a misspelt or renamed op would pass silently: every key must be an op."""
    return sorted(set(config.get("ops", {})) - {node.name for node in job.nodes})


def test_preset_check_catches_a_renamed_op():
    job = defs.resolve_implicit_global_asset_job_def()
    config = automation.load_preset("test")
    assert unknown_ops(config, job) == []
    renamed = {**config, "ops": {**config["ops"], "song_vector": config["ops"]["song_vectors"]}}
    assert unknown_ops(renamed, job) == ["song_vector"]
    dg.validate_run_config(job, renamed)  # what Dagster alone would let through


def test_preset_validation_catches_a_misspelt_field():
    job = defs.resolve_implicit_global_asset_job_def()
    with pytest.raises(dg.DagsterInvalidConfigError, match="vector_sise"):
        dg.validate_run_config(job, {"ops": {"song_vectors": {"config": {"vector_sise": 8}}}})


def test_gpu_tags_are_accepted_as_op_tags():
    @dg.asset(op_tags=GPU_TAGS)
    def gpu_asset() -> None:
        return None

    job = dg.Definitions(assets=[gpu_asset]).resolve_implicit_global_asset_job_def()
    tags = job.graph.node_named("gpu_asset").tags
    config = tags["dagster-k8s/config"]
    config = json.loads(config) if isinstance(config, str) else config
    assert config["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
