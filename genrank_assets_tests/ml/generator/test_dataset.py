"""generator_dataset: (title -> semantic-ID tokens) pairs from train and val playlists only; the seq2seq
examples (TigerDataset) made from them."""
import pandas as pd
import pytest

from genrank_assets.ml.generator.dataset import (
    TigerDataset,
    build_generator_dataset,
    code_tokens,
    examples_from_pairs,
    make_training_examples,
    parse_target,
    query_text,
)
from genrank_assets.ml.generator.tokenizer import SemanticIdVocab
from genrank_assets_tests.ml.generator.world import playlists


def corpus_of(rows) -> pd.DataFrame:
    """rows: (playlist_id, split, title, tags, [song ids])."""
    return pd.DataFrame(rows, columns=["playlist_id", "split", "title", "tags", "song_ids"])


# Songs s0..s29, each its own code (i // 10, i % 10, 0), except s5 which shares s4's code.
CODE_OF = {f"s{i}": (i // 10, i % 10, 0) for i in range(30)}
CODE_OF["s5"] = CODE_OF["s4"]
POPULARITY = {f"s{i}": i for i in range(30)}  # s29 the most popular

CORPUS = corpus_of([
    ("p_train", "train", "night drive", "chill,night", [f"s{i}" for i in range(6)]),
    ("p_val", "val", "gym", "", ["s10", "s11", "unknown"]),
    ("p_test", "test", "secret test title", "", ["s20", "s21"]),
    ("p_blank", "train", "   ", "tag", ["s1"]),
    ("p_uncoded", "train", "nothing known", "", ["x1", "x2"]),
    ("p_long", "train", "long one", "", [f"s{i}" for i in range(10, 30)]),
])


def test_test_playlists_never_reach_the_dataset():
    df, stats = build_generator_dataset(CORPUS, CODE_OF, POPULARITY)
    assert "p_test" not in set(df.playlist_id) and "secret test title" not in set(df.text)
    assert set(df.split) == {"train", "val"}
    assert stats["playlists_in"] == 5 and stats["no_text"] == 1 and stats["no_coded_songs"] == 1
    assert stats["songs_without_code"] == 1 + 2  # "unknown" in p_val, x1 and x2
    assert stats["pairs"] == len(df) == 3 and stats["pairs_train"] == 2 and stats["pairs_val"] == 1
    # Even when asked for, only the named splits are read.
    only_train, _ = build_generator_dataset(CORPUS, CODE_OF, POPULARITY, splits=("train",))
    assert set(only_train.split) == {"train"}


def test_targets_parse_back_to_the_songs_codes_in_order():
    df, _ = build_generator_dataset(CORPUS, CODE_OF, POPULARITY)
    row = df.set_index("playlist_id").loc["p_train"]
    assert row.text == "night drive" and row.window == 0
    # s4 and s5 share one code: kept once, first occurrence.
    expected = [CODE_OF[f"s{i}"] for i in range(5)]
    assert parse_target(row.target) == expected and row.n_codes == 5
    assert row.target.split()[:3] == ["<id_l1_0>", "<id_l2_0>", "<id_l3_0>"]
    assert all(parse_target(t) and len(parse_target(t)) == n for t, n in zip(df.target, df.n_codes))


def test_popularity_order_and_tags_in_the_text():
    df, _ = build_generator_dataset(CORPUS, CODE_OF, POPULARITY, song_order="popularity", include_tags=True)
    row = df.set_index("playlist_id").loc["p_train"]
    assert row.text == "night drive chill night"
    assert parse_target(row.target)[0] == CODE_OF["s5"]  # the most popular of p_train's songs first
    with pytest.raises(ValueError, match="song_order"):
        build_generator_dataset(CORPUS, CODE_OF, POPULARITY, song_order="random")


def test_max_songs_per_target_and_windows():
    long_codes = [CODE_OF[f"s{i}"] for i in range(10, 30)]

    def long_rows(**kw):
        df, _ = build_generator_dataset(CORPUS, CODE_OF, POPULARITY, **kw)
        return df[df.playlist_id == "p_long"].sort_values("window")

    one = long_rows(max_songs_per_target=8)
    assert len(one) == 1 and parse_target(one.target.iloc[0]) == long_codes[:8]
    # Consecutive windows in playlist order first (8 + 8 + 4) ...
    three = long_rows(max_songs_per_target=8, windows_per_playlist=3)
    assert [parse_target(t) for t in three.target] == [long_codes[:8], long_codes[8:16], long_codes[16:]]
    assert three.window.tolist() == [0, 1, 2] and three.n_codes.tolist() == [8, 8, 4]
    # ... then seeded random samples, each in playlist order; the same seed gives the same samples.
    five = long_rows(max_songs_per_target=8, windows_per_playlist=5, seed=3)
    extra = [parse_target(t) for t in five.target.iloc[3:]]
    assert len(extra) == 2 and all(len(w) == 8 and w == sorted(w, key=long_codes.index) for w in extra)
    pd.testing.assert_frame_equal(five, long_rows(max_songs_per_target=8, windows_per_playlist=5, seed=3))
    # A short playlist gives a single window however many are asked for.
    short, _ = build_generator_dataset(CORPUS, CODE_OF, POPULARITY, max_songs_per_target=8, windows_per_playlist=5)
    assert (short.playlist_id == "p_train").sum() == 1
    for bad in [{"max_songs_per_target": 0}, {"windows_per_playlist": 0}]:
        with pytest.raises(ValueError, match=">= 1"):
            build_generator_dataset(CORPUS, CODE_OF, POPULARITY, **bad)


def test_tokens_and_query_text_helpers():
    assert code_tokens((45, 67, 123)) == "<id_l1_45> <id_l2_67> <id_l3_123>"
    assert parse_target(code_tokens((1, 2)) + " " + code_tokens((3, 4, 5, 6))) == [(1, 2), (3, 4, 5, 6)]
    assert parse_target("") == []
    with pytest.raises(ValueError, match="not a semantic-ID token"):
        parse_target("<id_l1_1> hello")
    with pytest.raises(ValueError, match="out of level order"):
        parse_target("<id_l1_1> <id_l3_2>")
    assert query_text(" gym ", "a,b", include_tags=False) == "gym"
    assert query_text("gym", None, include_tags=True) == "gym"
    assert query_text("", "a,b", include_tags=True) == "a b"


# ---- seq2seq examples ------------------------------------------------------------------------------------


def test_training_examples_both_modes(tokenizer, code_table):
    texts, songs = playlists(code_table)
    texts, songs = texts + ["  ", "unknown songs"], songs + [songs[0], ["nope", "nada"]]
    vocab = SemanticIdVocab(tokenizer)

    seq = make_training_examples(texts, songs, code_table, tokenizer, mode="sequence", max_codes=3)
    assert len(seq) == 20  # blank title and playlist without coded songs dropped
    first_codes = list(dict.fromkeys(tuple(code_table.codes[code_table.row_of(s)]) for s in songs[0]))
    expected = [t for c in first_codes[:3] for t in vocab.code_token_ids(c)] + [vocab.eos_id]
    assert seq[0]["labels"] == expected

    single = make_training_examples(texts, songs, code_table, tokenizer, mode="single", samples_per_playlist=2, seed=3)
    assert len(single) == 40
    def draw(ds):
        return [tuple(ds[i]["labels"]) for i in range(len(ds))]

    single.set_epoch(0)
    epoch0 = draw(single)
    again = make_training_examples(texts, songs, code_table, tokenizer, mode="single", samples_per_playlist=2, seed=3)
    assert draw(again) == epoch0  # deterministic given the seed
    single.set_epoch(1)
    assert draw(single) != epoch0  # a new random code per playlist each epoch
    playlist_codes = {tuple(vocab.code_token_ids(c)) for c in first_codes}
    assert tuple(epoch0[0][:-1]) in playlist_codes and epoch0[0][-1] == vocab.eos_id
    if len(first_codes) > 1:
        assert epoch0[0] != epoch0[1]  # the two samples of a playlist draw different codes
    with pytest.raises(ValueError, match="mode"):
        TigerDataset(["x"], [code_table.codes[:1]], tokenizer, mode="pairs")


def test_examples_from_generator_dataset_rows(tokenizer):
    pairs = pd.DataFrame({"text": ["gym running bgm", "深夜 抒情"],
                          "target": [code_tokens((1, 2, 3)) + " " + code_tokens((4, 5, 0)), code_tokens((7, 7, 1))]})
    vocab = SemanticIdVocab(tokenizer)
    seq = examples_from_pairs(pairs, tokenizer, mode="sequence", max_codes=5)
    assert len(seq) == 2 and seq[0]["labels"] == vocab.code_token_ids((1, 2, 3)) + vocab.code_token_ids((4, 5, 0)) + [1]
    single = examples_from_pairs(pairs, tokenizer, mode="single", samples_per_playlist=3, seed=4)
    assert isinstance(single, TigerDataset) and len(single) == 6 and single.samples_per_playlist == 3
    assert examples_from_pairs(pairs.iloc[:0], tokenizer) is None


SONGS = pd.DataFrame({
    "song_id": ["s29", "s28", "s4", "s5", "s27", "x1", "s3"],
    "song_name": ["Top Hit", "Second", "Four", "Five", "  ", "Uncoded", "Three"],
    "singer": ["Ann", "Bob", "Ann", "Ann", "Bob", "Ann", ""],
})


def test_index_pairs_teach_song_names_and_singers_their_codes():
    df, stats = build_generator_dataset(CORPUS, CODE_OF, POPULARITY, songs=SONGS, index_songs=3, index_singers=1,
                                        max_codes_per_singer=2)
    index = df[df["source"] != "playlist"]
    assert (index["split"] == "train").all() and stats["pairs_song"] == 3 and stats["pairs_singer"] == 1
    songs = index[index["source"] == "song"]
    # the 3 most popular coded songs with a name (s27's name is blank; x1 has no code), each -> its own code
    assert songs["text"].tolist() == ["Top Hit - Ann", "Second - Bob", "Five - Ann"]
    assert songs["target"].tolist() == [code_tokens(CODE_OF[s]) for s in ("s29", "s28", "s5")]
    singer = index[index["source"] == "singer"].iloc[0]
    # Ann has the most coded songs (s29, s4, s5); her 2 most popular: s29, s5
    assert singer["text"] == "Ann" and parse_target(singer["target"]) == [CODE_OF["s29"], CODE_OF["s5"]]
    assert (df[df["source"] == "playlist"]["playlist_id"].str.startswith("p_")).all()
    only_val, _ = build_generator_dataset(CORPUS, CODE_OF, POPULARITY, splits=("val",), songs=SONGS, index_songs=3)
    assert (only_val["source"] == "playlist").all()  # index rows are train rows
    default, _ = build_generator_dataset(CORPUS, CODE_OF, POPULARITY)
    assert (default["source"] == "playlist").all()  # off by default
    with pytest.raises(ValueError, match="song catalogue"):
        build_generator_dataset(CORPUS, CODE_OF, POPULARITY, index_songs=2)


def test_index_pairs_give_index_samples_examples_each(tokenizer):
    pairs = pd.DataFrame({
        "text": ["gym running bgm", "深夜 抒情", "Top Hit - Ann", "Ann"],
        "target": [code_tokens((1, 2, 3)) + " " + code_tokens((4, 5, 0)), code_tokens((7, 7, 1)),
                   code_tokens((2, 2, 2)), code_tokens((2, 2, 2)) + " " + code_tokens((3, 3, 3))],
        "source": ["playlist", "playlist", "song", "singer"],
    })
    ds = examples_from_pairs(pairs, tokenizer, mode="single", samples_per_playlist=3, index_samples=1, seed=0)
    assert len(ds) == 3 * 2 + 2
    vocab = SemanticIdVocab(tokenizer)
    assert ds[6]["labels"] == vocab.code_token_ids((2, 2, 2)) + [vocab.eos_id]  # the song row's only example
    assert ds[7]["labels"][:3] in (vocab.code_token_ids((2, 2, 2)), vocab.code_token_ids((3, 3, 3)))
    assert ds[0]["input_ids"] == ds[2]["input_ids"] != ds[3]["input_ids"]  # rows laid out one after another
    with pytest.raises(IndexError):
        ds[len(ds)]
    twice = examples_from_pairs(pairs, tokenizer, mode="single", samples_per_playlist=3, index_samples=2, seed=0)
    assert len(twice) == 3 * 2 + 4 and twice.fingerprint() != ds.fingerprint()
    # without index rows the layout (and fingerprint) is the one of before
    plain = examples_from_pairs(pairs.iloc[:2], tokenizer, mode="single", samples_per_playlist=3, seed=0)
    assert plain.fingerprint() == examples_from_pairs(pairs.iloc[:2].drop(columns="source"), tokenizer,
                                                      mode="single", samples_per_playlist=3, seed=0).fingerprint()
