"""Group `catalogue` in real Dagster runs on the test-preset build: a refresh per landed batch (refresh_job's
selection) extends the catalogue without changing a code, registers a `run_kind=refresh` challenger that the
gate judges, and a batch with nothing new changes nothing."""
import dagster as dg
import mlflow

from genrank_assets.defs import automation
from genrank_assets.ml.catalogue.catalogue import from_frame
from genrank_assets.ml.serving import registry
from genrank_assets.ml.serving.recommender import CLASSICAL_METHODS
from genrank_assets_tests.builds import materialize, metadata, model_versions, run_config, tables
from genrank_assets_tests.defs.test_automation import write_seed

REFRESH = dg.AssetSelection.assets(*automation.INGEST_ASSETS, *automation.REFRESH_ASSETS)


def land(data, batch_id, playlists, songs):
    """A batch folder: playlists {id: (title, [song ids])}, songs {id: (name, singer)}."""
    folder = write_seed(data / "incoming" / batch_id, playlists, {s: n for s, (n, _) in songs.items()})
    (folder / "gen_song_info.csv").write_text("".join(f"{s}\t{n}\t{g}\n" for s, (n, g) in songs.items()),
                                              encoding="utf-8")


def refresh(build, batch_id):
    config = automation.batch_run_config(batch_id, run_config(), job_name="refresh_job")
    with dg.DagsterInstance.from_config(str(build.home / "dagster")) as instance:
        return materialize(build.home, build.data, config, selection=REFRESH, instance=instance)


def test_refresh_places_new_songs_under_codes_and_the_gate_judges_it(own_build, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(own_build.data, data)
    build = own_build.__class__(own_build.home, data, own_build.result, own_build.first_champions,
                                own_build.first_report)
    (before_frame, raw_songs) = tables(build.home, "song_catalogue", "raw_songs")
    before = from_frame(before_frame)
    known, singers = raw_songs["song_id"].tolist()[:200], raw_songs["singer"].tolist()
    # 40 new playlists of known songs and new songs by known singers (three per playlist, so word2vec learns
    # some), plus one new song no playlist holds and one whose singer nobody knows
    new_songs = {f"ns{i}_{j}": (f"fresh {i} {j}", singers[i % 50]) for i in range(40) for j in range(3)}
    new_songs.update({"unplayed": ("never played", singers[0]), "stranger": ("who", "Unknown Singer X")})
    land(data, "b1", {f"new{i}": (f"new mix {i}", known[i:i + 8] + [f"ns{i}_{j}" for j in range(3)])
                      for i in range(40)}, new_songs)
    versions = model_versions(registry.RECOMMENDER_NAME)
    champion_before = registry.alias_version(registry.RECOMMENDER_NAME)

    result = refresh(build, "b1")
    assert result.success
    (after_frame,) = tables(build.home, "song_catalogue")
    after = from_frame(after_frame)
    cat = metadata(result, "song_catalogue")
    assert cat["run_kind"] == "refresh" and cat["codes_changed"] == 0
    assert all(after.code_of()[s] == c for s, c in before.code_of().items())  # no existing code moved
    assert set(new_songs) <= set(after.song_ids)  # every new song has a code
    cold = dict(zip(after.song_ids, after.cold_start))
    assert cold["unplayed"] and cold["stranger"]
    assert cat["new_learned_vectors"] > 0
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["existing_codes_unchanged"]

    # registered as a refresh; the gate decided on it; the old champion still serves with its own code table
    ref = metadata(result, "catalogue_refresh")
    assert ref["registered"] and model_versions(registry.RECOMMENDER_NAME) == versions + 1
    version = registry.version_of(ref["recommender_uri"])
    tags = mlflow.MlflowClient().get_model_version(registry.RECOMMENDER_NAME, str(version)).tags
    assert tags["genrank.run_kind"] == "refresh"
    gate = metadata(result, "champion")
    assert registry.gate_decision(version) == gate["promoted"]
    if not gate["promoted"]:  # worse than the champion on the same test queries: refused, champion serving
        assert registry.alias_version(registry.RECOMMENDER_NAME) == champion_before
    old = registry.load_recommender(version=champion_before)
    refreshed = registry.load_recommender(version=version)
    if tags["genrank.method"] in CLASSICAL_METHODS:  # `auto` served a classical system: refitted on the grown train
        assert "ns0_0" not in old.model.catalogue.index and "ns0_0" in refreshed.model.catalogue.index
        assert "unplayed" not in refreshed.model.catalogue.index  # a cold-start song: no train history to rank by
    else:
        assert old.generator.code_table.row_of("ns0_0") is None
        assert refreshed.generator.code_table.row_of("ns0_0") is not None
    assert old.recommend("new mix 3", 5) and refreshed.recommend("new mix 3", 5)

    # a batch that only repeats a known playlist: nothing registered, no code, no alias moves
    playlists, rows = tables(build.home, "raw_playlists", "raw_playlist_songs")
    pid = playlists["playlist_id"].iloc[0]
    again = rows[rows["playlist_id"] == pid].sort_values("position")["song_id"].tolist()
    land(data, "b2", {pid: (playlists["title"].iloc[0], again)}, {})
    champion_now = registry.alias_version(registry.RECOMMENDER_NAME)
    result = refresh(build, "b2")
    assert result.success
    assert metadata(result, "song_catalogue")["new_songs"] == 0
    assert not metadata(result, "catalogue_refresh")["registered"]
    assert model_versions(registry.RECOMMENDER_NAME) == versions + 1
    assert registry.alias_version(registry.RECOMMENDER_NAME) == champion_now
    (again_frame,) = tables(build.home, "song_catalogue")
    assert from_frame(again_frame).code_of() == after.code_of()
