"""Semantic-ID quality metrics (ml/semantic_ids/metrics.py) on planted blobs."""
import numpy as np
import pytest

from genrank_assets.ml.semantic_ids.metrics import semantic_id_metrics, semantic_id_tables


def test_metrics_are_sane_on_blobs(blobs, blob_model):
    X, _, _ = blobs
    m = semantic_id_metrics(X, blob_model.codes_, blob_model, sample_size=200, seed=0)
    assert m["n_songs"] == len(X) and m["n_columns"] == 3
    assert m["levels"][0]["used_codes"] == 4 and m["levels"][0]["entropy_norm"] == pytest.approx(1.0, abs=1e-6)
    assert m["levels"][0]["max_cluster_size"] == 100 and m["used_l1_l2_prefixes"] == 16
    assert 0 < m["unique_code_coverage"] <= 1
    assert m["distinct_codes"] == len(np.unique(blob_model.codes_, axis=0))
    assert m["max_songs_per_code"] == (m["largest_collisions"][0]["songs"] if m["largest_collisions"] else 1)
    for collision in m["largest_collisions"]:
        rows = blob_model.codes_[collision["song_indices"]]
        assert (rows == collision["code"]).all()
    assert 0 < m["relative_reconstruction_error"]["mean"] < 0.2  # noise of norm ~0.2 around unit centres
    quality = m["level1_cluster_quality"]
    assert quality["silhouette"] > 0.6 and quality["davies_bouldin"] < 0.5 and quality["calinski_harabasz"] > 100
    agreement = m["neighbour_agreement"]
    assert agreement["level_1"] == pytest.approx(1.0)  # blobs are far apart: every neighbour shares level 1
    assert agreement["level_1_by_chance"] == pytest.approx(0.25)
    assert 0 <= agreement["level_1_2"] <= 1
    tables = semantic_id_tables(m)
    assert list(tables["levels"]["level"]) == [1, 2, 3] and len(tables["summary"]) == 1
