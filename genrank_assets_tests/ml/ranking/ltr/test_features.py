"""The feature builder: one function for training and serving, no self-votes, generator evidence for every
candidate."""
import numpy as np
import pandas as pd
import pytest
import torch

from genrank_assets.ml.data.corpus import HOLDOUT, upstream_corpus
from genrank_assets.ml.generator.tokenizer import TextEncoder
from genrank_assets.ml.ranking.ltr.candidates import (
    CandidateSources,
    PoolConfig,
    build_pool,
    build_pools,
    check_not_in_training,
)
from genrank_assets.ml.ranking.ltr.features import (
    FEATURE_GROUPS,
    FEATURES,
    MENTION_FEATURES,
    FeatureBuilder,
    char_bigrams,
    code_log_probs,
    text_tokens,
)
from genrank_assets.ml.ranking.ltr.mentions import CatalogueMentions
from genrank_assets_tests.ml.ltr_world import song_info, tiny_world

CONFIG = PoolConfig(generator_songs=12, num_beams=6, per_source=8, rank_depth=20)


@pytest.fixture(scope="module")
def world(one_torch_thread):
    return tiny_world()


def builder_for(world, corpus):
    sources = CandidateSources.fit(corpus, world["generator"], ridge_neighbours=20).with_mentions(
        CatalogueMentions().fit(corpus, song_info()))
    return FeatureBuilder(sources, corpus, song_info(), world["vectors"], world["ranker"], centroid_top=5)


def test_features_are_identical_in_a_batch_and_for_one_query(world):
    builder = builder_for(world, world["corpus"])
    texts = ["best rock", "深夜 歌", "party mix", "jazz"]
    batch = builder.features_many(build_pools(texts, builder.sources, CONFIG), query_ids=["a", "b", "c", "d"])
    assert list(batch.columns) == ["query", "song_id", *FEATURES]
    assert set(FEATURES) == {f for group in FEATURE_GROUPS.values() for f in group} and len(set(FEATURES)) == len(
        FEATURES)
    for qid, text in zip("abcd", texts):
        one = builder.features(build_pool(text, builder.sources, CONFIG))  # what serving computes
        part = batch[batch["query"] == qid].drop(columns="query").reset_index(drop=True)
        pd.testing.assert_frame_equal(part, one, check_exact=True)
    # a fresh builder from the same inputs gives the same numbers
    again = builder_for(world, world["corpus"]).features(build_pool(texts[1], builder.sources, CONFIG))
    pd.testing.assert_frame_equal(again, builder.features(build_pool(texts[1], builder.sources, CONFIG)),
                                  check_exact=True)


def test_generator_evidence_for_every_candidate_with_a_code(world):
    builder = builder_for(world, world["corpus"])
    pool = build_pool("best rock", builder.sources, CONFIG)
    frame = builder.features(pool)
    has_code = np.array([world["generator"].code_table.row_of(s) is not None for s in pool.song_ids])
    outside_beams = has_code & ~pool.proposed["generator"]
    assert outside_beams.any()  # classical candidates the beams did not reach still get log P(code | text)
    for name in ("gen_logp_l1", "gen_logp_l12", "gen_logp_code", "gen_logp_code_eos", "ce_logit", "w2v_centroid_cos"):
        assert np.isfinite(frame.loc[has_code, name]).all(), name
    assert (frame["gen_logp_l1"] >= frame["gen_logp_l12"]).all()  # cumulative log-probabilities only fall
    assert (frame["gen_logp_l12"] >= frame["gen_logp_code"]).all()
    reference = frame["ridge_cooc_rank"] < 100  # gaps are taken against ridge + co-occurrence's top 100
    assert frame.loc[reference & has_code, "gen_logp_gap"].max() == 0.0
    assert frame.loc[reference, "ce_gap"].max() == 0.0


def test_code_log_probs_are_the_models_teacher_forced_likelihood(world):
    generator = world["generator"]
    codes = generator.code_table.codes[:5]
    logp = code_log_probs(generator, "best rock", codes)
    inputs = TextEncoder(generator.tokenizer).encode_batch(["best rock"] * 5)
    labels = torch.tensor([generator.vocab.code_token_ids(c) + [generator.vocab.eos_id] for c in codes])
    with torch.no_grad():
        logits = generator.model(**inputs, labels=labels).logits
    expected = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1).sum(-1).numpy()
    np.testing.assert_allclose(logp[:, -1], expected, rtol=1e-5)


def test_a_planted_playlist_cannot_vote_for_itself(world):
    """A val playlist with its own title and songs found nowhere else: building features for its title gives the
    same numbers whether or not it is in the corpus, and none of its own songs reach its pool."""
    corpus = world["corpus"]
    planted = pd.DataFrame([{"playlist_id": "planted", "title": "zebra quartz", "tags": "",
                             "song_ids": ["own_1", "own_2", "rock_0"], "split": "val"}])
    with_it = builder_for(world, pd.concat([corpus, planted], ignore_index=True))
    without = builder_for(world, corpus)
    pool = build_pool("zebra quartz", with_it.sources, CONFIG)
    assert not {"own_1", "own_2"} & set(pool.song_ids)
    pd.testing.assert_frame_equal(with_it.features(pool), without.features(build_pool("zebra quartz",
                                  without.sources, CONFIG)), check_exact=True)
    check_not_in_training(["planted"], with_it.sources)  # a val playlist is a fair training query
    # the same playlist as a TRAIN playlist would vote for itself: refused, and visibly so in its features
    leaked_corpus = pd.concat([corpus, planted.assign(split="train")], ignore_index=True)
    leaky = builder_for(world, leaked_corpus)
    with pytest.raises(ValueError, match="vote for themselves"):
        check_not_in_training(["planted", "val_0_10"], leaky.sources)
    frame = leaky.features(build_pool("zebra quartz", leaky.sources, CONFIG)).set_index("song_id")
    assert {"own_1", "own_2"} <= set(frame.index) and frame.loc["own_1", "same_title_share"] == 1.0


def test_text_match_reads_english_and_chinese():
    assert text_tokens("Best ROCK!! 深夜emo") == {"best", "rock", "深", "夜", "emo"}
    assert char_bigrams("深夜 歌") == {"深夜", "夜歌"} and char_bigrams("a") == {"a"} and char_bigrams("!!") == set()


def test_builder_without_neural_models_gives_nan_not_zero(world):
    corpus = world["corpus"]
    sources = CandidateSources.fit(corpus, None, ridge_neighbours=20)
    frame = FeatureBuilder(sources, corpus, song_info()).features(build_pool("rock", sources, CONFIG))
    mention = [f for f in MENTION_FEATURES if f != "mention_proposed"]  # without CatalogueMentions: unknown
    for name in ("gen_logp_code", "ce_logit", "w2v_centroid_cos", "generator_rank", "generator_score", *mention):
        assert frame[name].isna().all(), name
    assert frame["log_popularity_share"].notna().all() and (frame["generator_proposed"] == 0).all()
    assert (frame["mention_proposed"] == 0).all()


def test_an_ltr_holdout_playlist_is_a_fair_training_query_only_with_the_holdouts_sources(world):
    """The LTR ranker's train-split queries (the holdout) get features from sources fitted on upstream_corpus, which
    relabels them: the check accepts them there and refuses them against sources fitted on every train playlist."""
    corpus = world["corpus"]
    held_corpus = upstream_corpus(corpus, share=0.3, seed=0)
    held = held_corpus.loc[held_corpus["split"] == HOLDOUT, "playlist_id"].tolist()
    assert held and set(corpus.set_index("playlist_id").loc[held, "split"]) == {"train"}
    check_not_in_training(held, builder_for(world, held_corpus).sources)
    with pytest.raises(ValueError, match="vote for themselves"):
        check_not_in_training(held[:1], builder_for(world, corpus).sources)
    # and its features do not see it: the same numbers as a corpus without that playlist at all
    qid = held[0]
    title = corpus.set_index("playlist_id").loc[qid, "title"]
    fair = builder_for(world, held_corpus)
    absent = builder_for(world, held_corpus[held_corpus["playlist_id"] != qid])
    pd.testing.assert_frame_equal(fair.features(build_pool(title, fair.sources, CONFIG)),
                                  absent.features(build_pool(title, absent.sources, CONFIG)), check_exact=True)


def test_count_features_keep_their_scale_when_the_corpus_and_the_code_table_grow(world):
    """A refresh serves the same LightGBM model over a grown corpus and code table: a corpus with every train
    playlist twice, and a code table with every code's songs twice, give the same shares and relative sizes."""
    from genrank_assets.ml.generator.tiger import CodeTable

    corpus, generator = world["corpus"], world["generator"]
    train = corpus[corpus["split"] == "train"]
    doubled = pd.concat([corpus, train.assign(playlist_id=train["playlist_id"] + "_again")], ignore_index=True)
    table = generator.code_table
    twin_ids = [f"{s}_twin" for s in table.song_ids]
    grown = generator.with_code_table(CodeTable(table.song_ids + twin_ids, np.concatenate([table.codes, table.codes]),
                                                np.concatenate([table.popularity, table.popularity * 0])))
    text = "best rock"
    base = builder_for(world, corpus)
    big = FeatureBuilder(CandidateSources.fit(doubled, grown, ridge_neighbours=20), doubled, song_info(),
                         world["vectors"], world["ranker"], centroid_top=5)
    a = base.features(build_pool(text, base.sources, CONFIG)).set_index("song_id")
    b = big.features(build_pool(text, big.sources, CONFIG)).set_index("song_id")
    both = a.index.intersection(b.index)
    assert len(both) >= 5
    for name in ("same_title_count_share", "q_same_title_share", "gen_code_size_rel"):
        np.testing.assert_allclose(a.loc[both, name], b.loc[both, name], err_msg=name)
    # log((1 + 2c) / 2n) against log((1 + c) / n): equal but for the +1
    np.testing.assert_allclose(a.loc[both, "log_popularity_share"], b.loc[both, "log_popularity_share"], atol=0.5)
    assert (b.loc[both, "gen_code_size_rel"] > 0).all()


def test_mention_features_say_which_candidates_the_query_names():
    """Singer 3 (theme 深夜) and singer 4 (古风) share two extra train playlists: "songs like singer 3" names singer 3,
    and singer 4 co-occurs with it in 2 of its 12 playlists."""
    from genrank_assets_tests.ml.ltr_world import make_corpus

    corpus = make_corpus()
    mixed = [{"playlist_id": f"mixed_{i}", "title": "night and old", "tags": "", "split": "train",
              "song_ids": ["深夜_0", "深夜_1", "古风_0", "古风_1"]} for i in range(2)]
    corpus = pd.concat([corpus, pd.DataFrame(mixed)], ignore_index=True)
    sources = CandidateSources.fit(corpus, None, ridge_neighbours=20).with_mentions(
        CatalogueMentions().fit(corpus, song_info()))
    builder = FeatureBuilder(sources, corpus, song_info())
    config = PoolConfig(per_source=5, rank_depth=10, mention_songs=30)
    frame = builder.features(build_pool("songs like singer 3", sources, config)).set_index("song_id")
    theme = frame.index.str.split("_").str[0]
    assert (frame.loc[theme == "深夜", "mention_singer_match"] == 1.0).all()
    assert (frame.loc[theme != "深夜", "mention_singer_match"] == 0.0).all()  # not named: 0, not missing
    assert frame.loc[theme == "古风", "mention_cooc_singer"].to_numpy() == pytest.approx(2 / 12)
    assert (frame.loc[~theme.isin(["深夜", "古风"]), "mention_cooc_singer"] == 0.0).all()
    assert (frame["mention_song_match"] == 0.0).all() and (frame["q_mentions"] == 1.0).all()
    assert frame["q_mention_coverage"].iloc[0] == pytest.approx(len("singer3") / len("songslikesinger3"))
    assert frame.loc[theme == "古风", "mention_proposed"].all()  # the co-occurring singer's songs come too
    assert FEATURE_GROUPS["mention"] == MENTION_FEATURES
    # a song name: "rock song 4" names the song rock_4 (and no singer)
    song = builder.features(build_pool("rock song 4 vibes", sources, config)).set_index("song_id")
    assert song.loc["rock_4", "mention_song_match"] == 1.0 and song.loc["rock_4", "mention_rank"] == 0.0
    assert (song.drop(index="rock_4")["mention_song_match"] == 0.0).all()
    assert (song["mention_singer_match"] == 0.0).all() and (song["q_mentions"] == 1.0).all()
