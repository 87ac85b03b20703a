"""Device-dependent defaults: CPU-sized unless the asset's device is CUDA; an explicit value always wins; the
presets pin theirs, so their runs (and the test-preset build's figures) do not depend on the machine."""
from dataclasses import fields

import pytest
import yaml

from genrank_assets import paths
from genrank_assets.defs.assets.generator import TigerModelConfig
from genrank_assets.defs.assets.ranking import RankerDatasetConfig, RankerModelConfig
from genrank_assets.defs.resources import fill_device_defaults
from genrank_assets.ml.device_defaults import CPU_DEFAULTS, CUDA_DEFAULTS, DeviceDefaults, for_device

CONFIGS = {"tiger_model": TigerModelConfig, "ranker_dataset": RankerDatasetConfig, "ranker_model": RankerModelConfig}


def test_cpu_unless_cuda():
    assert for_device("cpu") is CPU_DEFAULTS
    assert for_device("cuda") is CUDA_DEFAULTS and for_device("cuda:1") is CUDA_DEFAULTS
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        for_device("auto")  # only a resolved device: "auto" is the compute resource's to resolve


def test_cpu_defaults_are_the_cheap_ones():
    # What costs most on 2 cores: song text in the ranker, ranker epochs, beams.
    cpu, cuda = CPU_DEFAULTS, CUDA_DEFAULTS
    assert cuda.ranker_model.use_song_text and not cpu.ranker_model.use_song_text
    assert cpu.ranker_model.epochs < cuda.ranker_model.epochs
    assert cpu.tiger_model.num_beams < cuda.tiger_model.num_beams
    assert cpu.ranker_dataset.generator_beams < cuda.ranker_dataset.generator_beams


@pytest.mark.parametrize("op", sorted(CONFIGS))
def test_unset_fields_get_the_devices_default_and_explicit_values_win(op):
    names = [f.name for f in fields(getattr(CPU_DEFAULTS, op))]
    config = CONFIGS[op]()
    assert all(getattr(config, n) is None for n in names)  # "auto" until the asset knows its device
    for defaults in (CPU_DEFAULTS, CUDA_DEFAULTS):
        filled, auto = fill_device_defaults(config, getattr(defaults, op))
        assert auto == {n: getattr(getattr(defaults, op), n) for n in names}
        assert all(getattr(filled, n) == v for n, v in auto.items())
    explicit = {names[0]: 1 if names[0] != "use_song_text" else True}
    filled, auto = fill_device_defaults(CONFIGS[op](**explicit), getattr(CPU_DEFAULTS, op))
    assert getattr(filled, names[0]) == explicit[names[0]] and names[0] not in auto


def test_every_device_default_is_a_field_of_its_assets_config():
    for f in fields(DeviceDefaults):
        names = {g.name for g in fields(getattr(CPU_DEFAULTS, f.name))}
        assert names <= set(CONFIGS[f.name].model_fields), (f.name, names)


@pytest.mark.parametrize("preset", ["test", "demo", "cpu-real"])
def test_cpu_presets_pin_every_device_default(preset):
    # So a preset's run is the same on a CPU and a CUDA machine, and the test-preset build's figures stay what they were.
    ops = yaml.safe_load(paths.preset_file(preset).read_text())["ops"]
    for op in CONFIGS:
        missing = {f.name for f in fields(getattr(CPU_DEFAULTS, op))} - set(ops.get(op, {}).get("config", {}))
        assert not missing, f"{preset}.yaml ops.{op}.config leaves {missing} to the device"


def test_the_gpu_preset_gets_the_cuda_defaults_it_had():
    # gpu-seed runs on CUDA, whose defaults are the package's: what it leaves unset resolves as before.
    preset = yaml.safe_load(paths.preset_file("gpu-seed").read_text())
    assert preset["resources"]["compute"]["config"]["device"] == "cuda"
    assert "ranker_dataset" not in preset["ops"]
    assert (CUDA_DEFAULTS.ranker_dataset.generator_candidates, CUDA_DEFAULTS.ranker_dataset.generator_beams) == (50, 10)


def test_on_cpu_tiger_epochs_are_a_ceiling_with_a_time_cap():
    # A small catalogue trains until early stopping; mpd7k's size stops at the cap (~ its 8 epochs on 2 cores).
    cpu, cuda = CPU_DEFAULTS.tiger_model, CUDA_DEFAULTS.tiger_model
    assert cpu.epochs >= 40 and 0 < cpu.max_train_seconds <= 190
    assert cuda.max_train_seconds is None  # no cap on CUDA unless the run config sets one


@pytest.mark.parametrize("config_class", [TigerModelConfig, RankerModelConfig])
def test_the_time_cap_flows_into_the_training_loop_and_is_checked(config_class):
    import pydantic

    train_config = config_class(epochs=3, batch_size=32, max_train_seconds=90, schedule="constant").train_config()
    assert (train_config.max_train_seconds, train_config.schedule) == (90, "constant")
    assert config_class(epochs=3, batch_size=32, max_train_seconds=0).train_config().time_budget is None  # 0: no cap
    with pytest.raises(pydantic.ValidationError, match="max_train_seconds must be >= 0"):
        config_class(max_train_seconds=-5)
    with pytest.raises(pydantic.ValidationError, match="schedule must be one of"):
        config_class(schedule="cosine")
