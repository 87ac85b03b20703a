"""Bad configuration is found when the run starts, naming its key, before any step ran or any model was logged."""
from pathlib import Path

import dagster as dg
import pytest
import torch
import yaml

from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets.run_checks import config_errors

PRESETS = sorted((Path(__file__).resolve().parents[1] / "genrank_assets" / "presets").glob("*.yaml"))


def _run(home: Path, data: Path, run_config: dict):
    return dg.materialize(all_assets + all_asset_checks, resources=build_resources(home=str(home), data_dir=str(data)),
                          run_config=run_config, raise_on_error=False)


def _failure_text(result) -> str:
    """Every error message the run's events carry (the run fails while its resources are set up)."""
    return "\n".join(e.event_specific_data.error.to_string() for e in result.all_events
                      if getattr(e.event_specific_data, "error", None) is not None)


@pytest.mark.parametrize("op, values, expected", [
    ("ranker_model", {"batch_size": 0}, "ops.ranker_model.config: Value error, batch_size must be >= 1, got 0"),
    ("semantic_ids", {"levels": [0]}, "ops.semantic_ids.config: Value error, levels must be a non-empty sequence"),
    ("song_vectors", {"epochs": 0}, "ops.song_vectors.config.epochs: Input should be greater than or equal to 1"),
])
def test_a_bad_value_fails_the_run_before_its_first_step(tiny_demo_dir, genrank_home, op, values, expected):
    result = _run(genrank_home, tiny_demo_dir, {"ops": {op: {"config": values}}})
    assert not result.success
    assert expected in _failure_text(result)
    assert not result.get_asset_materialization_events()  # not even the ingest ran
    assert not (genrank_home / "mlflow.db").exists()  # no model was trained, logged or registered


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_cuda_device_fails_the_run_at_once(tiny_demo_dir, genrank_home):
    result = _run(genrank_home, tiny_demo_dir, {"resources": {"compute": {"config": {"device": "cuda"}}}})
    assert not result.success
    assert "compute.device='cuda' but CUDA is not available" in _failure_text(result)
    assert not result.get_asset_materialization_events()


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_passes_the_checks(preset):
    assert config_errors(yaml.safe_load(preset.read_text())) == []


@pytest.mark.parametrize("op, values, expected", [
    ("ltr_tables", {"per_source": 0}, "PoolConfig.per_source must be a positive integer"),
    ("ltr_tables", {"sources": ["radio"]}, "PoolConfig.sources must be a non-empty subset"),
    ("ltr_ranker", {"folds": 1}, "LTRParams.folds must be >= 2"),
    ("ltr_ranker", {"objective": "regression"}, "LTRParams.objective must be"),
])
def test_learning_to_rank_configs_reuse_the_ml_checks(op, values, expected):
    errors = config_errors({"ops": {op: {"config": values}}})
    assert len(errors) == 1 and errors[0].startswith(f"ops.{op}.config") and expected in errors[0], errors
