"""ComputeResource: device, precision and threads resolved once, by the rules of ml/compute.py."""
import os

import pytest
import torch

from genrank_assets.defs.resources import ComputeResource
from genrank_assets.ml.compute import CPU, Compute, check_device, resolve_compute

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")


@no_cuda
def test_auto_on_a_cpu_machine_is_cpu_fp32_with_half_the_cores():
    compute = ComputeResource().resolve()
    assert compute == Compute("cpu", "fp32", max(1, min(4, (os.cpu_count() or 1) // 2)))
    assert ComputeResource().resolved_device() == "cpu"
    assert ComputeResource(precision="fp32", threads=3).resolve() == Compute("cpu", "fp32", 3)


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1", " CUDA "])
def test_explicit_cuda_without_cuda_is_a_clear_error(device):
    with pytest.raises(ValueError, match=r"compute\.device=.*CUDA is not available"):
        ComputeResource(device=device).resolve()


@pytest.mark.parametrize("precision", ["fp16", "bf16", "BF16"])
def test_mixed_precision_on_cpu_is_a_clear_error(precision):
    with pytest.raises(ValueError, match=r"compute\.precision=.*needs a CUDA device"):
        ComputeResource(device="cpu", precision=precision).resolve()
    with pytest.raises(ValueError, match="precision"):
        Compute("cpu", precision.lower())  # the same rule for a Compute built by hand


def test_unknown_settings_are_a_clear_error():
    with pytest.raises(ValueError, match=r"compute\.device must be 'cpu', 'cuda' or 'cuda:N'"):
        ComputeResource(device="tpu").resolve()
    with pytest.raises(ValueError, match=r"compute\.precision must be auto, fp32, fp16 or bf16"):
        ComputeResource(device="cpu", precision="fp8").resolve()
    with pytest.raises(ValueError, match=r"compute\.threads"):
        ComputeResource(device="cpu", threads=-1).resolve()
    with pytest.raises(ValueError, match="device"):
        check_device("cuda:x")


def test_threads_are_applied_to_torch():
    previous = torch.get_num_threads()
    try:
        ComputeResource(device="cpu", threads=1).apply_threads()
        assert torch.get_num_threads() == 1
        Compute("cpu", "fp32", threads=0).apply_threads()  # 0: leave torch's setting alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_fp32_has_no_autocast_and_no_gradient_scaling():
    assert resolve_compute("cpu", "fp32", 2) == Compute("cpu", "fp32", 2) and CPU == Compute("cpu", "fp32", 0)
    with CPU.autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert not CPU.grad_scaler().is_enabled()


def test_an_assets_own_device_wins_over_the_resources():
    # Resource cuda + fp16 (a GPU machine's settings): an asset with `device: cpu` runs on CPU in fp32, with the CPU
    # thread rule, and the resource's CUDA device is not asked for (this works on a machine without CUDA).
    cpu_threads = max(1, min(4, (os.cpu_count() or 1) // 2))
    gpu_resource = ComputeResource(device="cuda", precision="fp16", processes=2)
    assert gpu_resource.resolve("cpu", where="ops.semantic_ids.config") == Compute("cpu", "fp32", cpu_threads, 2)
    assert ComputeResource(device="cpu").resolve("", "") == ComputeResource(device="cpu").resolve()
    # An asset's explicit precision is its own, and its errors name its key.
    with pytest.raises(ValueError, match=r"ops\.ranker_model\.config\.precision='bf16' needs a CUDA device"):
        gpu_resource.resolve("cpu", "bf16", where="ops.ranker_model.config")


@no_cuda
def test_an_assets_own_cuda_device_is_checked_and_named():
    with pytest.raises(ValueError, match=r"ops\.tiger_model\.config\.device='cuda:1' but CUDA is not available"):
        ComputeResource(device="cpu").resolve("cuda:1", where="ops.tiger_model.config")
    with pytest.raises(ValueError, match=r"^compute\.device='cuda'"):  # the resource's own value: its own name
        ComputeResource(device="cuda").resolve("", "fp32", where="ops.tiger_model.config")


def test_for_asset_reads_the_config_and_names_the_op():
    from genrank_assets.defs.assets.generator import TigerModelConfig
    from genrank_assets.defs.assets.semantic_ids import SemanticIdsConfig

    resource = ComputeResource(device="cpu")
    assert resource.for_asset("semantic_ids", SemanticIdsConfig(device="cpu")).device == "cpu"
    assert resource.for_asset("semantic_ids", SemanticIdsConfig()) == resource.resolve()  # empty: the resource's
    with pytest.raises(ValueError, match=r"ops\.tiger_model\.config\.precision="):
        resource.for_asset("tiger_model", TigerModelConfig(precision="fp16"))
