"""(text, song, label) examples with hard negatives, the generator's proposals, and encoding them."""
from types import SimpleNamespace

import pandas as pd
import pytest

from genrank_assets.ml.ranking.cross_encoder.examples import build_ranker_examples, encode_frame, generator_proposals
from genrank_assets_tests.ml.ranking.cross_encoder.world import SONGS_PER_THEME, THEMES, tiny_ranker


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


def test_pool_negatives_come_from_the_playlists_own_pool(world):
    corpus, song_vectors = world["corpus"], world["song_vectors"]
    train = corpus[corpus.split == "train"]
    # each playlist's "pool": the first 6 songs of the next theme plus one of its own songs and an unknown id
    pool_of = {pid: [f"{THEMES[(i + 1) % len(THEMES)]}_{k}" for k in range(6)] + [songs[0], "not_a_song"]
               for i, (pid, songs) in enumerate(zip(train.playlist_id, train.song_ids))}
    examples = build_ranker_examples(corpus, song_vectors, split="train", max_positives_per_playlist=2,
                                     negatives_per_positive=2, random_negative_share=0.5, pool_of=pool_of, seed=1)
    own = corpus.set_index("playlist_id")["song_ids"].to_dict()
    for pid, group in examples.groupby("playlist_id"):
        negatives = group[group.label == 0]
        pooled = negatives[negatives.negative_kind == "pool"]
        assert len(pooled) == 2  # 4 negatives, half random, the rest from the one hard source
        assert set(pooled.song_id) <= set(pool_of[pid]) - set(own[pid])
    # a playlist without a pool has its hard share filled by random songs
    short = build_ranker_examples(corpus, song_vectors, split="train", max_positives_per_playlist=2,
                                  negatives_per_positive=2, pool_of={}, seed=1)
    assert set(short.negative_kind) == {"positive", "random"}
    assert (short.label == 0).sum() == 2 * (short.label == 1).sum()


def test_generator_proposals_for_every_title_in_chunks():
    calls = []

    def generate_candidates_batch(titles, n, num_beams):
        calls.append((list(titles), n, num_beams))
        return [[f"{t}-{k}" for k in range(n)] for t in titles]

    lines = []
    proposals = generator_proposals(SimpleNamespace(generate_candidates_batch=generate_candidates_batch),
                                    ["a", "b", "c"], 2, 4, chunk=2, log_fn=lines.append)
    assert proposals == {"a": ["a-0", "a-1"], "b": ["b-0", "b-1"], "c": ["c-0", "c-1"]}
    assert calls == [(["a", "b"], 2, 4), (["c"], 2, 4)] and lines == ["  2/3 titles", "  3/3 titles"]


def test_encoding_a_frame_checks_its_rows(world):
    song_vectors = world["song_vectors"]
    good = pd.DataFrame({"text": ["rock", "jazz"], "song_id": ["rock_0", "jazz_1"], "label": [1, 0]})
    pairs = encode_frame(tiny_ranker(world, use_song_text=False), good, song_vectors, None, "train_df")
    assert len(pairs) == 2 and pairs.labels.tolist() == [1.0, 0.0] and pairs.song_text_tokens is None
    with pytest.raises(ValueError, match="song_text_of"):
        encode_frame(tiny_ranker(world), good, song_vectors, None, "train_df")
    with pytest.raises(ValueError, match="without a vector"):
        encode_frame(tiny_ranker(world, use_song_text=False), good.assign(song_id=["nope", "rock_0"]), song_vectors,
                     None, "train_df")
    with pytest.raises(ValueError, match="only 0 and 1"):
        encode_frame(tiny_ranker(world, use_song_text=False), good.assign(label=[1, 2]), song_vectors, None, "x")
    with pytest.raises(ValueError, match="val_df has no rows"):
        encode_frame(tiny_ranker(world, use_song_text=False), good.iloc[:0], song_vectors, None, "val_df")
