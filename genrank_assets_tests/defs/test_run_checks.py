"""Bad configuration is found when the run starts, naming its key, before any step ran or any model was logged."""
from pathlib import Path

import dagster as dg
import pytest
import torch
import yaml

from genrank_assets import paths
from genrank_assets.definitions import all_asset_checks, all_assets, build_resources
from genrank_assets.defs.run_checks import config_errors

PRESETS = sorted(paths.PRESETS_DIR.glob("*.yaml"))


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


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="this machine has a second CUDA device")
def test_an_assets_own_missing_cuda_device_fails_the_run_at_once_naming_its_key(tiny_demo_dir, genrank_home):
    # The compute resource is fine (auto); only tiger_model asks for a device this machine lacks.
    result = _run(genrank_home, tiny_demo_dir, {"ops": {"tiger_model": {"config": {"device": "cuda:1"}}}})
    assert not result.success
    assert "ops.tiger_model.config.device='cuda:1' but" in _failure_text(result)
    assert not result.get_asset_materialization_events()  # not even the ingest ran
    assert not (genrank_home / "mlflow.db").exists()


@pytest.mark.parametrize("op, values, expected", [
    ("semantic_ids", {"device": "gpu"}, "ops.semantic_ids.config.device: Value error, device must be 'cpu', 'cuda'"),
    ("tiger_model", {"precision": "fp8"}, "ops.tiger_model.config.precision: Value error, precision must be auto"),
    # An asset's own fp16 on an asset's own CPU device is refused, not quietly run in fp32.
    ("tiger_model", {"device": "cpu", "precision": "fp16"}, "ops.tiger_model.config.precision='fp16' needs a CUDA"),
])
def test_an_assets_own_device_and_precision_are_checked(op, values, expected):
    errors = config_errors({"ops": {op: {"config": values}}})
    assert len(errors) == 1 and expected in errors[0], errors


def test_an_asset_on_cpu_passes_under_a_cuda_resource_it_does_not_use():
    # A GPU machine's run config (resource cuda + fp16) with RQ-KMeans and the ranker's beam search moved to CPU:
    # the assets' own checks resolve to cpu / fp32 without asking this machine for CUDA.
    run_config = {"resources": {"compute": {"config": {"device": "cuda", "precision": "fp16"}}},
                  "ops": {"semantic_ids": {"config": {"device": "cpu"}}, "ranker_dataset": {"config": {"device": "cpu"}}}}
    assert config_errors(run_config) == []


def test_an_assets_own_device_is_asked_of_this_machine_only_when_its_steps_run_here():
    missing = {"ops": {"tiger_model": {"config": {"device": f"cuda:{torch.cuda.device_count() + 1}"}}}}
    assert len(config_errors(missing)) == 1
    assert len(config_errors({**missing, "execution": {"config": {"multiprocess": {}}}})) == 1
    # Dask workers may be other machines: the step resolves its device where it runs; the format is still checked.
    dask = {"execution": {"config": {"dask": {"cluster": {"existing": {"address": "tcp://127.0.0.1:8786"}}}}}}
    assert config_errors({**missing, **dask}) == []
    assert len(config_errors({"ops": {"tiger_model": {"config": {"device": "gpu"}}}, **dask})) == 1
