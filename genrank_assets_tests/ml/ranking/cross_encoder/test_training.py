"""Ranker training on the shared loop: it separates planted pairs, keeps the best-AUC weights, resumes."""
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from genrank_assets.ml.ranking.cross_encoder.examples import build_ranker_examples, encode_frame
from genrank_assets.ml.ranking.cross_encoder.training import (
    RANKER_TRAINING,
    VAL_METRICS,
    evaluate_ranker,
    list_bounds,
    listwise_softmax_loss,
    train_ranker,
)
from genrank_assets_tests.ml.ranking.cross_encoder.world import tiny_ranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def val_scores(ranker, val_df, song_vectors):
    return ranker.score_pairs(list(val_df.text), song_vectors.vectors[[song_vectors.index_of(s) for s in val_df.song_id]])


def planted_examples(world) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val) examples of the planted world, two uniform random negatives per positive."""
    return tuple(build_ranker_examples(world["corpus"], world["song_vectors"], split=split, negatives_per_positive=2,
                                       popularity_weighted=False, seed=0) for split in ("train", "val"))


def test_training_separates_planted_positives_from_negatives(world):
    song_vectors = world["song_vectors"]
    train_df, val_df = planted_examples(world)
    ranker = tiny_ranker(world, use_song_text=False)
    before = val_scores(ranker, val_df, song_vectors)
    lines = []
    config = replace(RANKER_TRAINING, epochs=4, batch_size=32, lr=2e-3, warmup_ratio=0.1, early_stopping_patience=3,
                     seed=0, log_every_steps=20)
    result = train_ranker(ranker, train_df, val_df, song_vectors, None, config, log_fn=lines.append)

    assert roc_auc_score(val_df.label, before) < 0.7  # untrained: no separation
    assert result.initial_val["val_auc"] == pytest.approx(roc_auc_score(val_df.label, before), abs=1e-6)
    assert result.objective == "val_auc" and result.best_value > 0.85, result.history
    assert result.best_val["val_loss"] < result.initial_val["val_loss"]
    for key in ("train_loss", *VAL_METRICS):
        assert np.isfinite(result.history[-1][key])
    # Plain-text progress lines (never dict reprs), in the shared loop's format.
    assert all(isinstance(line, str) and line.startswith("ranker_model ") for line in lines)
    assert any(re.fullmatch(r"ranker_model epoch \d/4 step \d+/\d+ \(\d+%\) loss \d\.\d{4} lr \S+ \d+ samples/s eta \S+",
                            line) for line in lines), lines
    assert any(re.match(r"ranker_model epoch 1/4 done at step \d+/\d+: train_loss \S+ val_loss \S+ val_auc ", line)
               for line in lines), lines
    # The ranker holds the best epoch's weights.
    after = val_scores(ranker, val_df, song_vectors)
    assert roc_auc_score(val_df.label, after) == pytest.approx(result.best_value, abs=1e-6)
    pairs = encode_frame(ranker, val_df, song_vectors, None, "val_df")
    assert evaluate_ranker(ranker, pairs)["val_auc"] == pytest.approx(result.best_value, abs=1e-6)


def test_resume_from_checkpoint_continues_at_saved_step(world, tmp_path):
    corpus, song_vectors = world["corpus"], world["song_vectors"]
    train_df = build_ranker_examples(corpus[corpus.playlist_id.str.startswith(("pl0_", "pl1_"))], song_vectors,
                                     split="train", negatives_per_positive=1, seed=0)
    val_df = build_ranker_examples(corpus, song_vectors, split="val", negatives_per_positive=1, seed=0)
    assert len(train_df) == 216
    config = replace(RANKER_TRAINING, epochs=2, batch_size=72, lr=1e-3, seed=3)  # 3 steps/epoch
    texts = world["song_text_of"]

    def run(config, checkpoint_dir=None):
        ranker = tiny_ranker(world)
        return ranker, train_ranker(ranker, train_df, val_df, song_vectors, texts, config,
                                    checkpoint_dir=checkpoint_dir)

    straight_ranker, straight = run(config)
    assert straight.steps == 6 and straight.resumed_from_step is None

    ckpt = tmp_path / "ckpt"
    _, first = run(replace(config, checkpoint_every_steps=2, max_steps=4), ckpt)
    assert first.steps == 4 and first.history[-1]["partial"] and first.history[-1]["epoch"] == 2
    resumed_ranker, resumed = run(replace(config, checkpoint_every_steps=2), ckpt)
    assert resumed.resumed_from_step == 4 and resumed.steps == 6
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for ours, theirs in zip(resumed.history, straight.history):  # bit for bit at every epoch end
        assert ours["val_loss"] == theirs["val_loss"] and ours["train_loss"] == theirs["train_loss"]
    for (name, a), (_, b) in zip(straight_ranker.state_dict().items(), resumed_ranker.state_dict().items()):
        assert torch.equal(a, b), name
    # A finished run is not trained again: the same call returns the stored result and best weights.
    _, again = run(config, ckpt)
    assert again.resumed_from_step == 6 and again.steps == 6 and again.history == resumed.history

    # A different configuration does not resume from that checkpoint.
    _, other = run(replace(config, lr=5e-4, max_steps=1), ckpt)
    assert other.resumed_from_step is None and other.steps == 1


def test_train_rejects_unknown_songs_and_missing_song_text(world):
    song_vectors = world["song_vectors"]
    config = replace(RANKER_TRAINING, epochs=1)
    good = pd.DataFrame({"text": ["rock"], "song_id": ["rock_0"], "label": [1]})
    with pytest.raises(ValueError, match="song_text_of"):
        train_ranker(tiny_ranker(world), good, None, song_vectors, None, config)
    bad = pd.DataFrame({"text": ["rock"], "song_id": ["nope"], "label": [1]})
    with pytest.raises(ValueError, match="without a vector"):
        train_ranker(tiny_ranker(world, use_song_text=False), bad, None, song_vectors, None, config)


def test_listwise_loss_is_the_softmax_cross_entropy_of_each_list():
    logits = torch.tensor([2.0, 0.0, -1.0, 0.5, 0.5])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    owner = torch.tensor([0, 0, 0, 1, 1])
    first = -(0.5 * torch.log_softmax(logits[:3], 0)[0] + 0.5 * torch.log_softmax(logits[:3], 0)[2])
    second = -torch.log_softmax(logits[3:], 0)[1]
    assert float(listwise_softmax_loss(logits, labels, owner, 2)) == pytest.approx(float((first + second) / 2), abs=1e-6)
    # shifting a list's logits changes nothing (the softmax is per list), and stays finite for large logits
    shifted = logits + torch.tensor([1000.0, 1000.0, 1000.0, -7.0, -7.0])
    assert float(listwise_softmax_loss(shifted, labels, owner, 2)) == pytest.approx(float((first + second) / 2),
                                                                                    abs=1e-4)


def test_listwise_training_separates_planted_positives_and_checks_its_lists(world):
    song_vectors = world["song_vectors"]
    train_df, val_df = planted_examples(world)
    bounds = list_bounds(train_df)
    assert len(bounds) - 1 == train_df.playlist_id.nunique() and bounds[-1] == len(train_df)
    ranker = tiny_ranker(world, use_song_text=False)
    lines = []
    config = replace(RANKER_TRAINING, epochs=4, batch_size=64, lr=2e-3, warmup_ratio=0.1, early_stopping_patience=3,
                     seed=0, log_every_steps=1000)
    result = train_ranker(ranker, train_df, val_df, song_vectors, None, config, log_fn=lines.append, loss="listwise")
    assert result.best_value > 0.85, result.history
    assert result.best_val["val_loss"] < result.initial_val["val_loss"]  # val loss is the listwise loss
    pairs = encode_frame(ranker, val_df, song_vectors, None, "val_df")
    assert evaluate_ranker(ranker, pairs, lists=list_bounds(val_df))["val_loss"] == pytest.approx(
        result.best_val["val_loss"], abs=1e-5)
    # a batch is whole lists, as many as hold batch_size rows on average: the steps count lists, not rows
    n_lists = len(bounds) - 1
    per_batch = round(64 * n_lists / len(train_df))
    assert per_batch > 1 and f"ranker_model: listwise, {per_batch} lists a batch (~64 rows)" in lines
    assert any(f"step {-(-n_lists // per_batch)}/" in line and "epoch 1/4 done" in line for line in lines), lines
    with pytest.raises(ValueError, match="contiguous"):
        list_bounds(train_df.sample(frac=1.0, random_state=0))
    with pytest.raises(ValueError, match="no positive"):
        list_bounds(train_df[train_df.label == 0])
    with pytest.raises(ValueError, match="loss must be one of"):
        train_ranker(ranker, train_df, val_df, song_vectors, None, config, loss="pairwise")
