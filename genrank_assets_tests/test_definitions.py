"""The whole graph of definitions.py, built once with the test preset (the session's `built`): every table of the
warehouse is filled, and every model artifact lives under GENRANK_HOME."""
import mlflow

from genrank_assets_tests.builds import tables

TABLES = ["raw_playlists", "raw_playlist_songs", "raw_songs", "ingest_rejects", "playlist_corpus", "upstream_corpus",
          "song_vectors", "semantic_ids", "semantic_id_metrics", "generator_dataset", "ranker_dataset",
          "candidate_pools", "ranking_features", "evaluation_report"]


def test_every_table_is_filled(built):
    counts = {name: len(frame) for name, frame in zip(TABLES, tables(built.home, *TABLES))}
    assert all(n > 0 for n in counts.values()), counts


def test_model_artifacts_live_under_genrank_home(built):
    # Not in an ./mlruns of whatever directory the run started in.
    for node in ("tiger_model", "ranker_model", "evaluation_report"):
        run_id = built.result.asset_materializations_for_node(node)[0].metadata["mlflow_run_id"].value
        assert mlflow.get_run(run_id).info.artifact_uri.startswith(built.home.as_uri()), node
