"""The `data` assets: ingest and corpus materialised into a real warehouse, a missing file failing the run, the
input folder chosen per run; in the test-preset build, the train playlists upstream_corpus holds out."""
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets.defs.automation import INGEST_ASSETS
from genrank_assets.ml.baselines.classical import benchmark_queries
from genrank_assets.ml.data.corpus import split_of
from genrank_assets.ml.data.ingest import IngestError, read_seed_folder
from genrank_assets_tests import BAD_ROWS
from genrank_assets_tests.builds import metadata, tables


def _materialize_ingest(home: Path, data: Path, run_config=None):
    data_assets = [a for a in all_assets if a.group_names_by_key and set(a.group_names_by_key.values()) == {"data"}]
    return dg.materialize(
        data_assets + all_asset_checks, resources=build_resources(home=str(home), data_dir=str(data)),
        run_config=run_config or {}, selection=dg.AssetSelection.groups("data"),
    )


def test_materialize_ingest_and_corpus_on_demo_data(tiny_demo_dir, genrank_home):
    result = _materialize_ingest(genrank_home, tiny_demo_dir)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    raw = read_seed_folder(tiny_demo_dir)
    con = duckdb.connect(str(genrank_home / "warehouse.duckdb"), read_only=True)
    counts = {t: con.execute(f"select count(*) from genrank.{t}").fetchone()[0]
              for t in ["raw_playlists", "raw_playlist_songs", "raw_songs", "ingest_rejects", "playlist_corpus"]}
    assert counts["raw_playlists"] == len(raw.playlists)
    assert counts["raw_playlist_songs"] == len(raw.playlist_songs)
    assert counts["ingest_rejects"] == len(raw.rejects) > 0  # the demo data plants malformed rows
    assert set(raw.rejects.reason) >= {"wrong_column_count", "empty_id", "undecodable_bytes", "orphan_song_row",
                                       "duplicate_info_row"}
    corpus = con.execute("select playlist_id, split, len(song_ids) as n from genrank.playlist_corpus").fetchdf()
    con.close()
    assert (corpus.n >= 10).all() and (corpus.n <= 300).all()
    assert (corpus.split == corpus.playlist_id.map(split_of)).all()
    mat = result.asset_materializations_for_node("playlist_corpus")[0]
    assert mat.metadata["kept"].value == len(corpus)


def test_materialize_fails_naming_missing_file(tmp_path, genrank_home):
    shutil.copytree(BAD_ROWS, tmp_path / "d")
    (tmp_path / "d" / "gen_playlist_song.csv.sort").unlink()
    with pytest.raises(IngestError, match="gen_playlist_song.csv.sort"):
        _materialize_ingest(genrank_home, tmp_path / "d")


def test_data_dir_is_selectable_per_run(tiny_demo_dir, genrank_home):
    # The resource default points nowhere useful; run config chooses the folder.
    result = dg.materialize(
        [a for a in all_assets if "data" in set((a.group_names_by_key or {}).values())],
        resources=build_resources(home=str(genrank_home), data_dir=str(genrank_home / "nowhere")),
        selection=dg.AssetSelection.assets(*INGEST_ASSETS),
        run_config={"resources": {"genrank_paths": {"config": {"data_dir": str(BAD_ROWS)}}}},
    )
    assert result.output_for_node("raw_tables", "raw_playlists").playlist_id.tolist() == ["1", "0012", "12"]


def test_the_served_upstream_models_see_every_train_playlist_and_the_ranker_learns_from_the_folds(built):
    """By default (ltr_holdout_share 0) upstream_corpus holds nothing out: word2vec, TIGER and the cross-encoder
    fit on every train playlist, the served features are val's and test's, and the LTR ranker's holdout rows are
    the cross-fitting folds' (test_ranking.py checks that no fold model saw the playlists it scores)."""
    corpus, generator_rows, features, original = tables(
        built.home, "upstream_corpus", "generator_dataset", "ranking_features", "playlist_corpus")
    assert corpus["split"].tolist() == original["split"].tolist()
    train = set(original.loc[original["split"] == "train", "playlist_id"])
    assert metadata(built.result, "song_vectors")["train_playlists"] == len(train)
    assert set(generator_rows.loc[generator_rows["split"] == "train", "playlist_id"]) <= train
    by_split = features.groupby("split")["playlist_id"].nunique().to_dict()
    assert set(by_split) == {"val", "test"}
    ltr = metadata(built.result, "ltr_ranker")
    titled_train = benchmark_queries(original, split="train")[0]  # the train playlists that are queries
    assert ltr["val_queries"] == by_split["val"] and ltr["holdout_queries"] == len(titled_train)
