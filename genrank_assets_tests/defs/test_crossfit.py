"""The cross-fitting folds' graph (defs/crossfit.py): each fold's features come from that fold's own models, the
cross-encoder's steps exist only when the LTR ranker learns from it, and the code-location settings that shape the
graph refuse bad values with one clear message."""
import os
import subprocess
import sys

import dagster as dg
import pytest

from genrank_assets.defs.crossfit import fold_assets
from genrank_assets.defs.folds import CROSS_ENCODER_ENV, FOLDS_ENV, crossfit_folds, ltr_cross_encoder


def _graph(assets) -> dict[dg.AssetKey, set[dg.AssetKey]]:
    """Asset key -> its upstream keys."""
    out = {}
    for asset in assets:
        for key in asset.keys:
            out[key] = set(asset.asset_deps[key])
    return out


@pytest.mark.parametrize("cross_encoder", [False, True])
def test_each_folds_features_come_from_its_own_models(cross_encoder):
    graph = _graph(fold_assets(2, cross_encoder=cross_encoder))
    for k in range(2):
        features = graph[dg.AssetKey([f"fold_{k}", "ranking_features"])]
        own = {dg.AssetKey([f"fold_{k}", n]) for n in ("upstream_corpus", "tiger_model", "song_catalogue")}
        assert own <= features
        # never a served model (it saw the fold's playlists) nor another fold's
        assert {key for key in features if key.path[0] != f"fold_{k}"} == {dg.AssetKey("raw_songs")}
        cross_encoders = {dg.AssetKey([f"fold_{k}", "ranker_dataset"]), dg.AssetKey([f"fold_{k}", "ranker_model"])}
        assert (cross_encoders <= set(graph)) is cross_encoder
        assert (dg.AssetKey([f"fold_{k}", "ranker_model"]) in features) is cross_encoder


@pytest.mark.parametrize(("env", "value"), [({}, False), ({CROSS_ENCODER_ENV: "1"}, True),
                                            ({CROSS_ENCODER_ENV: "false"}, False)])
def test_the_cross_encoder_setting(monkeypatch, env, value):
    monkeypatch.delenv(CROSS_ENCODER_ENV, raising=False)
    for name, raw in env.items():
        monkeypatch.setenv(name, raw)
    assert ltr_cross_encoder() is value


@pytest.mark.parametrize(("name", "raw", "fn"), [(CROSS_ENCODER_ENV, "yes please", ltr_cross_encoder),
                                                 (FOLDS_ENV, "1", crossfit_folds), (FOLDS_ENV, "two", crossfit_folds)])
def test_bad_settings_name_the_variable(monkeypatch, name, raw, fn):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=name):
        fn()


def test_the_code_location_with_the_cross_encoder_scores_with_it():
    """GENRANK_LTR_CROSS_ENCODER=1 reshapes the loaded definitions: ltr_tables and every fold's features read a
    cross-encoder, the fold's own; by default neither waits for one."""
    probe = ("import dagster as dg; from genrank_assets.definitions import defs; g = defs.resolve_asset_graph(); "
             "p = lambda *k: sorted(x.to_user_string() for x in g.get(dg.AssetKey(list(k))).parent_keys "
             "if x.path[-1] == 'ranker_model'); print(p('ranking_features'), p('fold_1', 'ranking_features'))")
    for raw, expected in (("1", "['ranker_model'] ['fold_1/ranker_model']"), ("0", "[] []")):
        env = {**os.environ, CROSS_ENCODER_ENV: raw, FOLDS_ENV: "2", "HF_HUB_OFFLINE": "1"}
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == expected
