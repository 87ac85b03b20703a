"""TIGER training on the shared loop: it learns, resumes bit for bit, keeps the best-val-loss weights."""
import re
from dataclasses import replace

import pytest
import torch

from genrank_assets.ml.compute import Compute
from genrank_assets.ml.generator.dataset import make_training_examples
from genrank_assets.ml.generator.model import build_model
from genrank_assets.ml.generator.training import TIGER_TRAINING, evaluate_loss, train_tiger
from genrank_assets_tests.ml.generator.world import playlists


def test_tiny_model_overfits_one_batch(tokenizer, code_table):
    texts, songs = playlists(code_table, n_playlists=8)
    batch = make_training_examples(texts, songs, code_table, tokenizer, mode="sequence", max_codes=3)
    model = build_model(tokenizer, preset="tiny", seed=0, dropout=0.0)
    lines = []
    config = replace(TIGER_TRAINING, epochs=40, batch_size=8, lr=3e-3, warmup_steps=0, log_every_steps=10, seed=0)
    result = train_tiger(model, tokenizer, batch, None, config, log_fn=lines.append)
    losses = [h["train_loss"] for h in result.history]
    assert result.steps == 40 and result.stop_reason == "epochs"
    assert losses[-1] < 0.3 * losses[0]
    progress = [line for line in lines if re.fullmatch(r"tiger_model epoch \d+/40 step \d+/40 \(\d+%\) loss \d\.\d{4} "
                                                       r"lr \S+ \d+ samples/s eta \S+", line)]
    assert len(progress) == 4 and result.samples_per_second > 0


def _run(tokenizer, train, val, **changes):
    model = build_model(tokenizer, preset="tiny", seed=0)
    config = replace(TIGER_TRAINING, epochs=3, batch_size=4, lr=2e-3, warmup_ratio=0.2, seed=7,
                     early_stopping_patience=None)
    checkpoint_dir = changes.pop("checkpoint_dir", None)
    return model, train_tiger(model, tokenizer, train, val, replace(config, **changes), checkpoint_dir=checkpoint_dir)


def test_resume_from_checkpoint_matches_uninterrupted_run(tokenizer, code_table, tmp_path):
    texts, songs = playlists(code_table, n_playlists=18)
    train = make_training_examples(texts, songs, code_table, tokenizer, mode="single", samples_per_playlist=1, seed=1)
    val = make_training_examples(*playlists(code_table, 6, seed=9), code_table, tokenizer, mode="single",
                                 samples_per_playlist=1, seed=2)

    full_model, full = _run(tokenizer, train, val)
    assert full.steps == 15 and len(full.history) == 3 and full.resumed_from_step is None
    # The best-val-loss weights are the ones kept, and they beat the untrained model measured before training.
    assert full.objective == "val_loss" and full.best_value == min(h["val_loss"] for h in full.history)
    assert full.best_value < full.initial_val["val_loss"]
    assert evaluate_loss(full_model, val, tokenizer.pad_token_id, 8) == pytest.approx(full.best_value, abs=1e-6)

    ckpt = tmp_path / "ckpt"
    _, killed = _run(tokenizer, train, val, checkpoint_dir=ckpt, checkpoint_every_steps=3, max_steps=7)
    assert killed.stop_reason == "max_steps" and killed.steps == 7 and (ckpt / "checkpoint.pt").exists()
    resumed_model, resumed = _run(tokenizer, train, val, checkpoint_dir=ckpt, checkpoint_every_steps=3)
    assert resumed.resumed_from_step == 7 and resumed.steps == 15 and resumed.samples == 4 + 4 + 2 + 18
    for a, b in zip(full.history, resumed.history):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert resumed.best_epoch == full.best_epoch
    for (name, a), (_, b) in zip(full_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name

    # Another configuration does not pick up the stale checkpoint.
    _, other = _run(tokenizer, train, val, checkpoint_dir=ckpt, max_steps=2, weight_decay=0.5)
    assert other.resumed_from_step is None and other.steps == 2


def test_train_arguments_are_checked(tokenizer, code_table):
    texts, songs = playlists(code_table, n_playlists=4)
    train = make_training_examples(texts, songs, code_table, tokenizer, mode="single", samples_per_playlist=1)
    model = build_model(tokenizer, preset="tiny")
    config = replace(TIGER_TRAINING, epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="training set is empty"):
        train_tiger(model, tokenizer, [], None, config)
    # Mixed precision needs CUDA: asked for on CPU it is an error, not a silent fp32 run.
    with pytest.raises(ValueError, match="precision"):
        train_tiger(model, tokenizer, train, None, config, Compute("cpu", "bf16"))
    result = train_tiger(model, tokenizer, train, None, config, Compute("cpu", "fp32"))
    assert (result.device, result.precision, result.steps) == ("cpu", "fp32", 2)


def test_gradient_checkpointing_gives_the_same_training(tokenizer, code_table):
    texts, songs = playlists(code_table, n_playlists=8)
    train = make_training_examples(texts, songs, code_table, tokenizer, mode="sequence", max_codes=3)
    losses = []
    for checkpointing in (False, True):
        model = build_model(tokenizer, preset="tiny", seed=0)
        result = train_tiger(model, tokenizer, train, None, replace(TIGER_TRAINING, epochs=3, batch_size=4),
                             gradient_checkpointing=checkpointing)
        losses.append([h["train_loss"] for h in result.history])
        assert model.config.use_cache  # restored for generation
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
