"""The generator's model: T5 size presets, seeded weights."""
import pytest
import torch

from genrank_assets.ml.generator.model import TIGER, build_model


def test_build_model_presets(tokenizer):
    model = build_model(tokenizer, preset="tiny", seed=1)
    n = sum(p.numel() for p in model.parameters())
    assert 1.0e6 < n < 2.0e6
    assert model.config.decoder_start_token_id == 0 and model.config.eos_token_id == 1
    again = build_model(tokenizer, preset="tiny", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    with pytest.raises(ValueError, match="preset"):
        build_model(tokenizer, preset="huge")


def test_defaults_are_the_asset_configs():
    from genrank_assets.defs.assets.generator import TigerModelConfig
    from genrank_assets.ml.device_defaults import CUDA_DEFAULTS
    from genrank_assets.ml.generator.training import TIGER_TRAINING

    config = TigerModelConfig()
    for name, value in vars(TIGER).items():
        if name != "num_beams":
            assert getattr(config, name) == value, name
    for name in ("batch_size", "lr", "warmup_ratio", "weight_decay", "early_stopping_patience", "seed"):
        assert getattr(config, name) == getattr(TIGER_TRAINING, name), name
    # Device-dependent: None in the config ("auto"); on CUDA they are the package defaults.
    assert (config.epochs, config.num_beams) == (None, None)
    assert (CUDA_DEFAULTS.tiger_model.epochs, CUDA_DEFAULTS.tiger_model.num_beams) == (TIGER_TRAINING.epochs,
                                                                                       TIGER.num_beams)
