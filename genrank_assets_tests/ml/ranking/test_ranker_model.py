"""The hybrid cross-encoder ranker: model invariants, dataset building, training, resume, save/load."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import pytest
import torch

from genrank_assets.ml.ranking.ranker_model import (
    CrossEncoderRanker,
    build_ranker_examples,
    load_ranker,
    save_ranker,
    train_ranker,
)
from genrank_assets.ml.vectors.song_vectors import SongVectors

THEMES = ["rock", "jazz", "metal", "pop", "blues", "folk", "salsa", "opera"]
FILLERS = ["best", "night", "mix", "songs", "my", "the", "vibes", "playlist", "favorite", "new"]
SONGS_PER_THEME = 16
SONG_DIM = 16


def make_tokenizer(texts):
    """A word-level tokenizer over `texts`: pad=0, eos=1, unk=2, wrapped for transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=128
    )
    assert (fast.pad_token_id, fast.eos_token_id, fast.unk_token_id) == (0, 1, 2)
    return fast


@pytest.fixture(scope="module")
def world():
    """8 themes; songs whose vectors cluster by theme; playlists titled with their theme's word."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(len(THEMES), SONG_DIM)).astype(np.float32)
    song_ids, vectors, theme_of = [], [], {}
    for t, theme in enumerate(THEMES):
        for k in range(SONGS_PER_THEME):
            sid = f"{theme}_{k}"
            song_ids.append(sid)
            vectors.append(centers[t] + 0.3 * rng.normal(size=SONG_DIM).astype(np.float32))
            theme_of[sid] = t
    song_vectors = SongVectors(song_ids, rng.integers(1, 50, size=len(song_ids)), np.stack(vectors))
    song_text_of = {
        sid: f"track{int(rng.integers(0, 20))} - artist{int(rng.integers(0, 20))}" for sid in song_ids
    }
    rows = []
    for t, theme in enumerate(THEMES):
        for p in range(12):
            title = f"{rng.choice(FILLERS)} {theme} {rng.choice(FILLERS)}"
            songs = list(rng.choice([f"{theme}_{k}" for k in range(SONGS_PER_THEME)], size=6, replace=False))
            rows.append(
                {
                    "playlist_id": f"pl{t}_{p}",
                    "title": title,
                    "tags": "",
                    "song_ids": songs,
                    "split": "val" if p >= 9 else "train",
                }
            )
    corpus = pd.DataFrame(rows)
    texts = list(corpus["title"]) + list(song_text_of.values()) + ["unseen words here"]
    return {
        "corpus": corpus,
        "song_vectors": song_vectors,
        "song_text_of": song_text_of,
        "theme_of": theme_of,
        "tokenizer": make_tokenizer(texts),
    }


def tiny_ranker(world, **kwargs):
    return CrossEncoderRanker.from_config(world["tokenizer"], "tiny", SONG_DIM, seed=1, **kwargs).eval()


# ---- model invariants ------------------------------------------------------------------------------------


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


# ---- dataset building ------------------------------------------------------------------------------------


def test_build_ranker_examples_negatives_ratios_and_determinism(world):
    corpus, song_vectors = world["corpus"], world["song_vectors"]
    corpus = pd.concat(
        [
            corpus,
            pd.DataFrame(
                [
                    {
                        "playlist_id": "empty_title",
                        "title": "  ",
                        "tags": "",
                        "song_ids": ["rock_1"],
                        "split": "train",
                    },
                    {
                        "playlist_id": "no_vectors",
                        "title": "rock",
                        "tags": "",
                        "song_ids": ["unknown_song"],
                        "split": "train",
                    },
                ]
            ),
        ],
        ignore_index=True,
    )
    theme_of = world["theme_of"]

    def propose(title):  # "generator" proposals: songs of the title's theme and of the next theme
        t = next(i for i, theme in enumerate(THEMES) if theme in title.split())
        return [f"{THEMES[j % 8]}_{k}" for j in (t, t + 1) for k in range(SONGS_PER_THEME)] + ["not_a_song"]

    kwargs = {
        "split": "train",
        "max_positives_per_playlist": 4,
        "negatives_per_positive": 3,
        "random_negative_share": 1 / 3,
        "hard_negative_fn": propose,
        "cluster_of": theme_of,
        "seed": 5,
    }
    examples = build_ranker_examples(corpus, song_vectors, **kwargs)

    assert set(examples.columns) == {"playlist_id", "split", "text", "song_id", "label", "negative_kind"}
    assert set(examples["split"]) == {"train"}
    assert not {"empty_title", "no_vectors"} & set(examples["playlist_id"])
    own = corpus.set_index("playlist_id")["song_ids"].to_dict()
    for pid, group in examples.groupby("playlist_id"):
        positives = group[group.label == 1]
        negatives = group[group.label == 0]
        assert (positives.negative_kind == "positive").all() and (negatives.negative_kind != "positive").all()
        assert len(positives) == 4  # 6 songs, capped at 4
        assert set(positives.song_id) <= set(own[pid])
        assert not set(negatives.song_id) & set(own[pid])  # never a song of the playlist
        assert negatives.song_id.is_unique
        kinds = negatives.negative_kind.value_counts().to_dict()
        assert kinds == {"random": 4, "generator": 4, "same_cluster": 4}  # 12 = 4 x 3, a third each
        playlist_theme = theme_of[positives.song_id.iloc[0]]
        assert all(
            theme_of[s] == playlist_theme
            for s in negatives[negatives.negative_kind == "same_cluster"].song_id
        )

    again = build_ranker_examples(corpus, song_vectors, **kwargs)
    pd.testing.assert_frame_equal(examples, again)
    reseeded = build_ranker_examples(corpus, song_vectors, **{**kwargs, "seed": 6})
    assert not examples["song_id"].equals(reseeded["song_id"])

    # without hard sources every negative is random; a shortage of proposals is filled by random songs
    plain = build_ranker_examples(corpus, song_vectors, split="val", negatives_per_positive=2, seed=0)
    assert set(plain.negative_kind) == {"positive", "random"}
    assert (plain.label == 0).sum() == 2 * (plain.label == 1).sum()
    few = build_ranker_examples(
        corpus,
        song_vectors,
        split="val",
        negatives_per_positive=2,
        random_negative_share=0.0,
        hard_negative_fn=lambda title: ["rock_0", "jazz_0"],
    )
    assert (few.label == 0).sum() == 2 * (few.label == 1).sum()
    assert set(few.negative_kind) == {"positive", "random", "generator"}

    with pytest.raises(ValueError, match="song_ids"):
        build_ranker_examples(corpus.drop(columns=["song_ids"]), song_vectors)
    with pytest.raises(ValueError, match="random_negative_share"):
        build_ranker_examples(corpus, song_vectors, random_negative_share=1.5)


# ---- training --------------------------------------------------------------------------------------------


def test_training_separates_planted_positives_from_negatives(world):
    torch.set_num_threads(1)
    corpus, song_vectors = world["corpus"], world["song_vectors"]
    train_df = build_ranker_examples(
        corpus, song_vectors, split="train", negatives_per_positive=2, popularity_weighted=False, seed=0
    )
    val_df = build_ranker_examples(
        corpus, song_vectors, split="val", negatives_per_positive=2, popularity_weighted=False, seed=0
    )
    ranker = tiny_ranker(world, use_song_text=False)
    before = ranker.score_pairs(
        list(val_df.text), song_vectors.vectors[[song_vectors.index_of(s) for s in val_df.song_id]]
    )
    records = []
    result = train_ranker(
        ranker,
        train_df,
        val_df,
        song_vectors,
        None,
        epochs=4,
        batch_size=32,
        lr=2e-3,
        warmup_ratio=0.1,
        early_stopping_patience=3,
        seed=0,
        log_fn=records.append,
        log_every_steps=20,
    )
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(val_df.label, before) < 0.7  # untrained: no separation
    assert len(result.history) >= 1 and result.best_val_auc > 0.85, result.history
    for key in ("train_loss", "val_loss", "val_auc", "val_f1", "val_precision", "val_recall", "val_accuracy"):
        assert np.isfinite(result.history[-1][key])
    assert any(r["event"] == "step" for r in records) and any(r["event"] == "epoch" for r in records)
    # the ranker holds the best epoch's weights
    after = ranker.score_pairs(
        list(val_df.text), song_vectors.vectors[[song_vectors.index_of(s) for s in val_df.song_id]]
    )
    assert roc_auc_score(val_df.label, after) == pytest.approx(result.best_val_auc, abs=1e-6)


def test_resume_from_checkpoint_continues_at_saved_step(world, tmp_path):
    torch.set_num_threads(1)
    corpus, song_vectors = world["corpus"], world["song_vectors"]
    train_df = build_ranker_examples(
        corpus[corpus.playlist_id.str.startswith(("pl0_", "pl1_"))],
        song_vectors,
        split="train",
        negatives_per_positive=1,
        seed=0,
    )
    val_df = build_ranker_examples(corpus, song_vectors, split="val", negatives_per_positive=1, seed=0)
    assert len(train_df) == 216
    args = {
        "epochs": 2,
        "batch_size": 72,
        "lr": 1e-3,
        "seed": 3,
        "song_text_of": world["song_text_of"],
    }  # 3 steps/epoch

    straight = train_ranker(tiny_ranker(world), train_df, val_df, song_vectors, **args)
    assert straight.global_step == 6 and straight.resumed_from_step is None

    ckpt = tmp_path / "ckpt"
    first = train_ranker(
        tiny_ranker(world),
        train_df,
        val_df,
        song_vectors,
        **args,
        checkpoint_dir=ckpt,
        checkpoint_every_steps=2,
        max_steps=4,
    )
    assert first.global_step == 4 and first.history[-1]["partial"]
    resumed = train_ranker(
        tiny_ranker(world),
        train_df,
        val_df,
        song_vectors,
        **args,
        checkpoint_dir=ckpt,
        checkpoint_every_steps=2,
    )
    assert resumed.resumed_from_step == 4 and resumed.global_step == 6
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for ours, theirs in zip(resumed.history, straight.history):  # same weights at every epoch end
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-5)
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-5)
    # a finished run is not trained again: the same call returns the stored result and best weights
    again = train_ranker(tiny_ranker(world), train_df, val_df, song_vectors, **args, checkpoint_dir=ckpt)
    assert again.resumed_from_step == 6 and again.global_step == 6 and again.history == resumed.history

    # a different configuration does not resume from that checkpoint
    other = train_ranker(
        tiny_ranker(world),
        train_df,
        val_df,
        song_vectors,
        **{**args, "lr": 5e-4},
        checkpoint_dir=ckpt,
        max_steps=1,
    )
    assert other.resumed_from_step is None and other.global_step == 1


def test_train_rejects_unknown_songs_and_missing_song_text(world):
    song_vectors = world["song_vectors"]
    good = pd.DataFrame({"text": ["rock"], "song_id": ["rock_0"], "label": [1]})
    with pytest.raises(ValueError, match="song_text_of"):
        train_ranker(tiny_ranker(world), good, None, song_vectors, None, epochs=1)
    bad = pd.DataFrame({"text": ["rock"], "song_id": ["nope"], "label": [1]})
    with pytest.raises(ValueError, match="without a vector"):
        train_ranker(tiny_ranker(world, use_song_text=False), bad, None, song_vectors, epochs=1)
