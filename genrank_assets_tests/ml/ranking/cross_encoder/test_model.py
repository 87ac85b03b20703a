"""The cross-encoder ranker's model: padding-invariant pooling, batched scoring, construction, save/load."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genrank_assets.ml.ranking.cross_encoder.model import (
    RANKER_DEFAULTS,
    CrossEncoderRanker,
    build_ranker,
    load_ranker,
    save_ranker,
)
from genrank_assets_tests.ml.ranking.cross_encoder.world import SONG_DIM, tiny_ranker


def test_pooling_ignores_padding(world):
    ranker = tiny_ranker(world, song_positions=2)
    texts = ["best rock night", "jazz"]
    song_texts = ["track1 - artist2", "track3 - artist4 track5"]
    vectors = torch.from_numpy(world["song_vectors"].vectors[:2])
    with torch.no_grad():
        ids, mask = ranker.encode_pairs(texts, song_texts)
        longer_ids, longer_mask = ranker.encode_pairs(texts, song_texts, pad_to=ids.shape[1] + 9)
        assert longer_mask.sum() == mask.sum() and longer_ids.shape[1] > ids.shape[1]
        short = ranker(ids, mask, vectors)
        long = ranker(longer_ids, longer_mask, vectors)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)


def test_song_vector_changes_score(world):
    ranker = tiny_ranker(world, use_song_text=False)
    vectors = world["song_vectors"].vectors
    same = ranker.score("best rock night", vectors[[0, 0]])
    assert same[0] == pytest.approx(same[1], abs=1e-6)
    different = ranker.score("best rock night", vectors[[0, 100]])
    assert abs(different[0] - different[1]) > 1e-4


def test_batched_scoring_equals_one_by_one(world):
    ranker = tiny_ranker(world)
    vectors = world["song_vectors"].vectors[:12]
    song_texts = [
        world["song_text_of"][s] + (" track1" * (i % 4))
        for i, s in enumerate(world["song_vectors"].song_ids[:12])
    ]  # different lengths -> padding in the batch
    batched = ranker.score("my jazz vibes", vectors, song_texts)
    single = np.array(
        [ranker.score("my jazz vibes", vectors[i : i + 1], song_texts[i : i + 1])[0] for i in range(12)]
    )
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=1e-5)
    assert batched.std() > 0  # the candidates really get different scores

    texts = ["my jazz vibes", "rock", "unseen words here"] * 4
    pairs = ranker.score_pairs(texts, vectors, song_texts, batch_size=5)
    one_by_one = np.array(
        [ranker.score(t, vectors[i : i + 1], song_texts[i : i + 1])[0] for i, t in enumerate(texts)]
    )
    np.testing.assert_allclose(pairs, one_by_one, atol=1e-5, rtol=1e-5)


def test_bad_input_is_a_clear_error(world):
    ranker = tiny_ranker(world)
    vectors = world["song_vectors"].vectors[:3]
    with pytest.raises(ValueError, match="song_texts"):
        ranker.score("rock", vectors)  # built with use_song_text=True
    with pytest.raises(ValueError, match="song_vectors"):
        ranker.score("rock", vectors[:, :5], ["a", "b", "c"])
    with pytest.raises(ValueError, match="preset"):
        CrossEncoderRanker.from_config(world["tokenizer"], "huge", SONG_DIM)


def test_save_then_load_gives_identical_scores(world, tmp_path):
    ranker = tiny_ranker(world, song_positions=2, head_hidden=32)
    with torch.no_grad():  # move the heads away from their init so that a missed restore would show
        ranker.head_out.bias.fill_(0.37)
    vectors = world["song_vectors"].vectors[:20]
    song_texts = [world["song_text_of"][s] for s in world["song_vectors"].song_ids[:20]]
    before = ranker.score("new salsa mix", vectors, song_texts)
    save_ranker(ranker, tmp_path / "ranker")
    loaded = load_ranker(tmp_path / "ranker")
    assert loaded.config == ranker.config
    np.testing.assert_allclose(
        loaded.score("new salsa mix", vectors, song_texts), before, atol=1e-6, rtol=1e-6
    )
    with pytest.raises(FileNotFoundError, match="ranker_config.json"):
        load_ranker(tmp_path)


def test_from_encoder_copies_weights_of_a_generator(world, tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = world["tokenizer"]
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        num_heads=4,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    generator = T5ForConditionalGeneration(config).eval()
    ids = torch.tensor([[5, 6, 7, 1]])
    with torch.no_grad():
        expected = generator.get_encoder()(input_ids=ids).last_hidden_state
    for source in (generator, generator.get_encoder()):
        ranker = CrossEncoderRanker.from_encoder(source, tokenizer, SONG_DIM).eval()
        with torch.no_grad():
            got = ranker.encoder(input_ids=ids).last_hidden_state
        torch.testing.assert_close(got, expected)
        generator_params = {p.data_ptr() for p in generator.parameters()}
        assert not generator_params & {p.data_ptr() for p in ranker.parameters()}

    # a pretrained base model from a local directory
    generator.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    base = CrossEncoderRanker.from_pretrained_base(tmp_path / "base", SONG_DIM).eval()
    with torch.no_grad():
        torch.testing.assert_close(base.encoder(input_ids=ids).last_hidden_state, expected)


def test_build_ranker_from_each_starting_point(world, tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = world["tokenizer"]
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=1,
                      num_decoder_layers=1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    generator = SimpleNamespace(model=T5ForConditionalGeneration(config), tokenizer=tokenizer)
    from_tiger = build_ranker("tiger", SONG_DIM, generator=generator, interaction_dim=0)
    assert from_tiger.hidden_size == 32 and from_tiger.config.interaction_dim == 0
    torch.testing.assert_close(from_tiger.encoder.shared.weight, generator.model.shared.weight)
    scratch = build_ranker("scratch", SONG_DIM, generator=generator, preset="tiny", seed=2)
    assert scratch.hidden_size == 64 and scratch.tokenizer is tokenizer
    generator.model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    assert build_ranker("base_model", SONG_DIM, base_model=str(tmp_path / "base")).hidden_size == 32
    with pytest.raises(ValueError, match="init_from"):
        build_ranker("random", SONG_DIM, generator=generator)
    with pytest.raises(ValueError, match="base_model"):
        build_ranker("base_model", SONG_DIM)
    with pytest.raises(ValueError, match="generator"):
        build_ranker("tiger", SONG_DIM)


def test_defaults_are_the_asset_configs():
    from genrank_assets.defs.assets.ranking import RankerModelConfig
    from genrank_assets.ml.device_defaults import CUDA_DEFAULTS
    from genrank_assets.ml.ranking.cross_encoder.training import RANKER_TRAINING

    config = RankerModelConfig()
    for name in ("song_positions", "max_title_tokens", "max_song_text_tokens", "interaction_dim"):
        assert getattr(config, name) == RANKER_DEFAULTS[name], name
    for name in ("lr", "warmup_ratio", "weight_decay", "early_stopping_patience", "seed"):
        assert getattr(config, name) == getattr(RANKER_TRAINING, name), name
    # Device-dependent: None in the config ("auto"); on CUDA they are the package defaults.
    cuda = CUDA_DEFAULTS.ranker_model
    assert (config.use_song_text, config.epochs, config.batch_size) == (None, None, None)
    assert (cuda.use_song_text, cuda.epochs, cuda.batch_size) == (
        RANKER_DEFAULTS["use_song_text"], RANKER_TRAINING.epochs, RANKER_TRAINING.batch_size)
    assert (RANKER_TRAINING.epochs, RANKER_TRAINING.lr) == (4, 1e-3)  # the asset config's values won


def test_the_head_of_a_ranker_from_a_trained_encoder_depends_on_its_seed_alone(world):
    """The head (song projection, dense, out, interaction maps) is new: its init must come from the seed, not
    from whatever the process drew before (a fresh step process, a dask worker and the in-process run each had a
    different RNG state there, and so three different trained rankers). The caller's RNG is left as it was."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = world["tokenizer"]
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, num_heads=2, d_ff=64, num_layers=1,
                      num_decoder_layers=1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    generator = SimpleNamespace(model=T5ForConditionalGeneration(config).eval(), tokenizer=tokenizer)

    def head_after(prior_seed: int, seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(prior_seed)
        torch.rand(17)  # the process drew something before, as earlier steps do
        before = torch.random.get_rng_state()
        ranker = build_ranker("tiger", SONG_DIM, generator=generator, seed=seed, interaction_dim=8)
        assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is untouched
        return {k: v for k, v in ranker.state_dict().items() if not k.startswith("encoder.")}

    first, second = head_after(1, seed=0), head_after(2, seed=0)
    assert set(first) >= {"song_projection.weight", "head_dense.weight", "head_out.weight", "title_map.weight"}
    for name, value in first.items():
        assert torch.equal(value, second[name]), name
    other = head_after(1, seed=5)
    assert not torch.equal(other["head_dense.weight"], first["head_dense.weight"])
