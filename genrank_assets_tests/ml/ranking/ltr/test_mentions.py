"""The names a query mentions: exact matches in Latin (word boundaries) and CJK (none) text, fuzzy typos, common
words that name nothing, the singers co-occurring with a named one, and the songs the mention source proposes."""
import pandas as pd
import pytest

from genrank_assets.ml.ranking.ltr.mentions import CatalogueMentions, MentionParams, Mentions, match_key

# small counts: the defaults ask for more train plays than this world has
PARAMS = MentionParams(min_singer_plays=3, fuzzy_min_plays=3)

SONGS = {
    "Kanye West": ["Gold Digger", "Stronger", "Power", "Heartless", "Runaway", "Flashing Lights", "Kanye Cold Demo"],
    "Drake": ["Hotline Bling", "Started From", "Passionfruit"],
    "Rihanna": ["Umbrella Ella", "Diamonds Bright", "Work Work"],
    "Chills": ["Pink Frost", "Submarine Bells"],
    "Eminem": ["Lose Yourself", "Stan", "Without Me"],
    "Sia": ["Chandelier", "Elastic Heart"],
    "Love": ["Alone Again Or", "Seven And Seven Is"],
    "周杰伦": ["七里香", "晴天", "稻香"],
    "林俊杰": ["江南", "修炼爱情"],
    "Other Band": ["Falling In Love"],
    "Another Act": ["Falling In Love"],
    "Mid Band": ["Falling In"],
}


def song_info() -> dict[str, tuple[str, str]]:
    return {f"{singer[:2]}{k}": (name, singer) for singer, names in SONGS.items() for k, name in enumerate(names)}


def ids(singer: str, *ks: int) -> list[str]:
    return [f"{singer[:2]}{k}" for k in ks]


def make_corpus() -> pd.DataFrame:
    """Kanye West with Drake (6 playlists), with Rihanna and Chills (3, 2 of them with Chills); titles that name
    Kanye West or Eminem hold them; three titles use "love" and hold no song of the band Love; Kanye's 7th song is
    in no playlist (cold)."""
    rows = [("rap", ids("Kanye West", 0, 1, 2, 3) + ids("Drake", 0, 1, 2))] * 6
    rows += [("party", ids("Kanye West", 0, 1) + ids("Rihanna", 0, 1, 2) + ids("Chills", 0, 1))] * 2
    rows += [("party", ids("Kanye West", 0, 1) + ids("Rihanna", 0, 1, 2))]
    rows += [("kanye west", ids("Kanye West", 0, 1, 2, 3, 4, 5))] * 2
    rows += [("eminem", ids("Eminem", 0, 1, 2))] * 3
    rows += [(t, ids("Rihanna", 0) + ids("Sia", 0, 1)) for t in ("love songs", "love", "in love")]
    rows += [("the band", ids("Love", 0, 1))] * 2
    rows += [(t, ids("Sia", 0, 1) + ids("Chills", 0)) for t in ("chill", "chill vibes", "chill mix")]
    rows += [("华语", ids("周杰伦", 0, 1, 2) + ids("林俊杰", 0, 1))] * 3
    rows += [("classics", ids("Other Band", 0) + ids("Another Act", 0) + ids("Mid Band", 0))]
    return pd.DataFrame([{"playlist_id": f"p{i}", "title": title, "tags": "", "song_ids": songs, "split": "train"}
                         for i, (title, songs) in enumerate(rows)])


@pytest.fixture(scope="module")
def mentions():
    return CatalogueMentions(PARAMS).fit(make_corpus(), song_info())


def test_exact_latin_names_at_word_boundaries(mentions):
    found = mentions.find("Songs like Kanye West!")
    assert found.singers == {"kanye west": 1.0} and found.songs == {}
    assert found.coverage == pytest.approx(len("kanyewest") / len("songslikekanyewest"))
    assert mentions.find("kanye west").coverage == 1.0  # a bare name
    assert mentions.find("sia songs").singers == {"sia": 1.0}
    assert mentions.find("asian music").singers == {}  # "sia" is inside a word there
    assert mentions.find("类似Kanye West的歌曲").singers == {"kanye west": 1.0}  # CJK around a Latin name
    assert match_key("Beyoncé – Halo") == "beyonce halo"


def test_exact_cjk_names_without_word_boundaries(mentions):
    assert mentions.find("类似周杰伦的中国风歌曲").singers == {"周杰伦": 1.0}
    assert mentions.find("周杰伦的歌").singers == {"周杰伦": 1.0}
    found = mentions.find("想听七里香和林俊杰")
    assert found.singers == {"林俊杰": 1.0} and found.songs == {"周杰0": 1.0}
    assert mentions.find("晴天的歌").songs == {}  # a two-character song name is a common word


def test_fuzzy_typos_of_singer_names_but_never_of_common_words(mentions):
    found = mentions.find("songs like kanye wset")
    assert found.singers == {"kanye west": pytest.approx(0.9)}  # one transposition in ten characters
    assert mentions.find("eminen style").singers == {"eminem": pytest.approx(5 / 6)}
    assert mentions.find("chill").singers == {}  # "chill" is one edit from "chills", but titles use it as a word
    assert mentions.find("totally unrelated words").singers == {}


def test_partial_names_and_titles_that_use_a_name_as_a_word(mentions):
    assert mentions.find("songs like kanye").singers == {"kanye west": PARAMS.partial_score}
    # three titles use "love" and none holds the band Love: the name is a word there; "eminem" titles hold Eminem
    assert mentions.find("love songs").singers == {}
    assert mentions.find("eminem").singers == {"eminem": 1.0}


def test_song_names_specific_enough_and_no_shorter_name_inside_a_longer_one(mentions):
    assert mentions.find("gold digger remix").songs == {"Ka0": 1.0}
    assert mentions.find("stronger").songs == {}  # one word: a word more often than a song
    assert mentions.find("falling in").songs == {"Mi0": 1.0}
    # "Falling In Love" is two singers' song: it names neither, and "falling in" inside it names nothing either
    assert len(mentions.find("falling in love")) == 0


def test_singers_that_co_occur_with_a_named_one(mentions):
    # Kanye West is in 11 playlists: 6 with Drake, 3 with Rihanna, 2 with Chills
    assert mentions.cooccurring("Kanye West") == [("drake", pytest.approx(6 / 11)), ("rihanna", pytest.approx(3 / 11)),
                                                  ("chills", pytest.approx(2 / 11))]
    found = mentions.find("songs like kanye west")
    assert list(found.cooccurring) == ["drake", "rihanna", "chills"]
    assert found.cooccurring["drake"] == pytest.approx(6 / 11)
    weak = mentions.find("songs like kanye")  # a partial name: co-occurrence scaled by its score
    assert weak.cooccurring["drake"] == pytest.approx(PARAMS.partial_score * 6 / 11)
    assert "kanye west" not in mentions.find("drake and kanye west").cooccurring  # named singers are left out


def test_songs_for_a_query_named_first_then_co_occurring(mentions):
    found = mentions.find("kanye west")
    proposed = mentions.songs_for(found, 10)
    # half for the named singer (most played first), the rest for the co-occurring singers in turn
    assert [s for s, _ in proposed] == ids("Kanye West", 0, 1, 2, 3, 4) + ["Dr0", "Ri0", "Ch0", "Dr1", "Ri1"]
    assert [w for _, w in proposed[:5]] == [1.0] * 5
    assert proposed[5][1] == pytest.approx(6 / 11)
    everything = [s for s, _ in mentions.songs_for(found, 30)]
    assert "Ka6" in everything  # the song without train history, after the named singer's played songs
    assert everything.index("Ka6") == 6 and len(everything) == len(set(everything)) == 7 + 8
    # the named song, the named singer's songs, then those of the singer co-occurring with Drake (Kanye West)
    assert [s for s, _ in mentions.songs_for(mentions.find("gold digger by drake"), 4)] == ["Ka0", "Dr0", "Ka1", "Ka2"]
    assert mentions.songs_for(Mentions(), 5) == []


def test_fit_is_deterministic_whatever_the_order_of_the_song_info():
    info = song_info()
    shuffled = dict(reversed(list(info.items())))
    a = CatalogueMentions(PARAMS).fit(make_corpus(), info)
    b = CatalogueMentions(PARAMS).fit(make_corpus().iloc[::-1].reset_index(drop=True), shuffled)
    for text in ("songs like kanye wset", "想听七里香和林俊杰", "kanye west"):
        assert a.find(text) == b.find(text)
        assert a.songs_for(a.find(text), 12) == b.songs_for(b.find(text), 12)
    assert a.songs_of("Kanye West") == b.songs_of("kanye west")


def test_bad_input_is_refused_with_a_clear_error(mentions):
    with pytest.raises(ValueError, match="not fitted"):
        CatalogueMentions().find("kanye west")
    with pytest.raises(ValueError, match="non-empty mapping"):
        CatalogueMentions().fit(make_corpus(), {})
    with pytest.raises(ValueError, match=r"\(name, singer\)"):
        CatalogueMentions().fit(make_corpus(), {"x": "only a name"})
    with pytest.raises(ValueError, match="split == 'train'"):
        CatalogueMentions().fit(make_corpus().assign(split="val"), song_info())
    with pytest.raises(ValueError, match="string"):
        mentions.find(None)
    with pytest.raises(ValueError, match="positive integer"):
        mentions.songs_for(Mentions(), 0)
    with pytest.raises(ValueError, match="MentionParams"):
        CatalogueMentions(params={"min_singer_chars": 3})
    for bad in ({"min_singer_chars": 0}, {"partial_score": 0.0}, {"fuzzy_min_similarity": 1.5},
                {"cooc_singers": True}, {"min_song_words": 1.5}):
        with pytest.raises(ValueError, match="MentionParams"):
            MentionParams(**bad)
