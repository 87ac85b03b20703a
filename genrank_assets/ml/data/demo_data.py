"""A deterministic synthetic dataset in the seed's three-file format (docs/input-format.md), with planted structure.

What is planted, so that a working recommender can recover it and a broken one cannot:

- ``THEMES``: ~40 moods, scenes and genres, each with Chinese and English title words and a tag.
- Songs belong to one or two themes (mostly their artist's theme) and have a Zipf-like popularity inside
  their main theme. ``song_catalog(n_songs, seed)`` recomputes every song's id, name, singer and themes.
- Playlists have one or two themes; ~85% of their songs are drawn from those themes (popularity-weighted), the
  rest from the whole catalogue. Titles mix theme words (Chinese, English or both) with noise words and emoji;
  a few titles are vague ("我的歌单"). ``playlist_plan(n_playlists, seed)`` recomputes ids, themes and lengths.
- Ids are opaque strings; a few playlist ids are another playlist's id with leading zeros ("0012" vs "12").

About ``malformed_rate`` of each file's rows are *added* malformed rows covering every reject reason of the
ingest (``MALFORMED_KINDS``); they never replace or disturb a well-formed row, so the well-formed data is the
same whatever the rate. Every random step draws from its own ``SeedSequence(seed, spawn_key=(stream,))``, so
the catalogue, the playlist plan and each file's content are reproducible independently of one another.

Output is streamed: playlists are generated and written in chunks, so 200k playlists need only per-playlist
and per-song arrays in memory, never per-row Python objects for the whole file.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from genrank_assets.ml.data.demo_words import (
    CLASSICAL_FORMS,
    CLASSICAL_KEYS,
    EMOJI,
    EN_BAND_ADJ,
    EN_BAND_NOUN,
    EN_FIRST,
    EN_NOISE,
    EN_SUFFIX,
    EN_WORDS,
    JA_FAMILY,
    JA_SYLLABLES,
    KO_SURNAMES,
    KO_SYLLABLES,
    LANGUAGE_TAG,
    LATIN_CODAS,
    LATIN_ONSETS,
    LATIN_VOWELS,
    NICK_EN,
    NICK_ZH_HEAD,
    NICK_ZH_TAIL,
    PREFIX_NOISE,
    THEME_NAMES,
    THEMES,
    VAGUE_TITLES,
    ZH_BAND_SUFFIX,
    ZH_GIVEN,
    ZH_NOISE,
    ZH_SUFFIX,
    ZH_SURNAMES,
    ZH_WORDS,
)

log = logging.getLogger(__name__)

PLAYLIST_SONG_FILE = "gen_playlist_song.csv.sort"
PLAYLIST_INFO_FILE = "gen_playlist_info.csv"
SONG_INFO_FILE = "gen_song_info.csv"
FILES = (PLAYLIST_SONG_FILE, PLAYLIST_INFO_FILE, SONG_INFO_FILE)
PLAYLIST_INFO_HEADER = ("glid", "listname", "nickname", "tag_list", "feat", "collect_type", "play_count")

# Reject reasons, spelled as genrank_assets.ml.data.ingest.REASONS spells them.
WRONG_COLUMN_COUNT = "wrong_column_count"
EMPTY_ID = "empty_id"
UNDECODABLE_BYTES = "undecodable_bytes"
NON_NUMERIC_FIELD = "non_numeric_field"
ORPHAN_SONG_ROW = "orphan_song_row"  # a playlist-song row whose playlist has no info row
DUPLICATE_INFO_ROW = "duplicate_info_row"  # a second info row for an id already seen

# Which malformed rows each file gets. They are spread evenly over the kinds of a file.
MALFORMED_KINDS: dict[str, tuple[str, ...]] = {
    PLAYLIST_SONG_FILE: (WRONG_COLUMN_COUNT, EMPTY_ID, ORPHAN_SONG_ROW),
    PLAYLIST_INFO_FILE: (WRONG_COLUMN_COUNT, EMPTY_ID, UNDECODABLE_BYTES, NON_NUMERIC_FIELD, DUPLICATE_INFO_ROW),
    SONG_INFO_FILE: (WRONG_COLUMN_COUNT, EMPTY_ID, UNDECODABLE_BYTES, DUPLICATE_INFO_ROW),
}

# ---------------------------------------------------------------------------------------------------------
# Generation knobs (why: shapes that look like the real data and keep the planted signal strong)
# ---------------------------------------------------------------------------------------------------------

NOISE_SONG_SHARE = 0.15  # share of a playlist's songs drawn from the whole catalogue, not its themes
SECOND_THEME_PLAYLIST_SHARE = 0.35  # playlists with two themes
SECOND_THEME_ROW_SHARE = 0.4  # rows of a two-theme playlist drawn from its second theme
SECOND_THEME_SONG_SHARE = 0.3  # songs tied to a second theme
SONG_OFF_ARTIST_THEME_SHARE = 0.15  # songs whose main theme is not their artist's theme
SONGS_PER_ARTIST = 8
THEME_ZIPF = 0.9  # popularity exponent of a song's rank inside its main theme
SECONDARY_WEIGHT = 0.5  # a song weighs half as much in its second theme
REPEAT_PLAYLIST_SHARE = 0.02  # playlists that repeat one song (the format allows repeats)
EXTRA_COLUMN_SONG_SHARE = 0.03  # well-formed song rows with an extra trailing column (allowed by the format)
LEADING_ZERO_EVERY = 300  # one playlist in this many gets another playlist's id with leading zeros
CHUNK_PLAYLISTS = 4096

MAX_PLAYLISTS = 50_000_000  # ids are decimal bijections below 10**10: index * multiplier fits in int64
MAX_MALFORMED_RATE = 0.5

# Independent random streams: SeedSequence(seed, spawn_key=(stream,)).
_STREAM_CATALOG, _STREAM_PLAN, _STREAM_INFO, _STREAM_ROWS, _STREAM_MALFORMED_PLAN = 0, 1, 2, 3, 4
_STREAM_BAD_INFO, _STREAM_BAD_ROWS, _STREAM_BAD_SONGS, _STREAM_IDS, _STREAM_SONG_INFO = 5, 6, 7, 8, 9


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def _pick(seq: Sequence, u: float):
    """The element of ``seq`` chosen by a uniform draw ``u`` in [0, 1)."""
    return seq[min(int(u * len(seq)), len(seq) - 1)]


# ---------------------------------------------------------------------------------------------------------
# Ids: bijections of an index, so ids are unique without a set, and malformed rows get fresh ids by index
# ---------------------------------------------------------------------------------------------------------

# URL-safe base64 digits: 8 of them spell 47 bits with the first digit below 32, so every id has the same
# length and starts with a letter (never "-").
_BASE64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)
_SONG_ID_BITS = 47
_SONG_ID_WIDTH = 8


@dataclass(frozen=True)
class _IdParams:
    song_mul: int
    song_add: int
    playlist_mul: int
    playlist_add: int


def _id_params(seed: int) -> _IdParams:
    rng = _rng(seed, _STREAM_IDS)
    song_mul = int(rng.integers(1 << 40, 1 << 46)) | 1  # odd: a bijection modulo 2**47
    song_add = int(rng.integers(0, 1 << 46))
    playlist_mul = int(rng.integers(10**6, 10**8))
    while math.gcd(playlist_mul, 10) != 1:  # coprime to 10: a bijection modulo 10**digits
        playlist_mul += 1
    playlist_add = int(rng.integers(0, 10**8))
    return _IdParams(song_mul, song_add, playlist_mul, playlist_add)


def _song_id_strings(index: np.ndarray, params: _IdParams) -> np.ndarray:
    """Opaque 8-character song ids (object array of str), unique per index below 2**47."""
    x = index.astype(np.uint64) * np.uint64(params.song_mul) + np.uint64(params.song_add)  # wraps mod 2**64
    x &= np.uint64((1 << _SONG_ID_BITS) - 1)
    digits = np.empty((len(x), _SONG_ID_WIDTH), dtype=np.uint8)
    for pos in range(_SONG_ID_WIDTH - 1, -1, -1):
        digits[:, pos] = _BASE64[(x & np.uint64(63)).astype(np.intp)]
        x >>= np.uint64(6)
    return np.char.decode(digits.view(f"S{_SONG_ID_WIDTH}").ravel(), "ascii").astype(object)


def _playlist_digits(n_playlists: int) -> int:
    """Id width: room for 100x more ids than playlists, so malformed rows can take fresh ids."""
    return max(7, len(str(n_playlists)) + 2)


def _playlist_id_strings(index: np.ndarray, params: _IdParams, digits: int) -> np.ndarray:
    """Decimal playlist ids without leading zeros (object array of str), unique per index below 10**digits."""
    modulus = 10**digits
    x = (index.astype(np.int64) * (params.playlist_mul % modulus) + params.playlist_add) % modulus
    return x.astype(str).astype(object)


# ---------------------------------------------------------------------------------------------------------
# Song catalogue
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SongCatalog:
    """Row i is song i. Themes index ``THEMES``; ``secondary_theme`` is -1 for a one-theme song."""

    song_ids: np.ndarray  # object array of str
    names: list[str]
    singers: list[str]
    primary_theme: np.ndarray  # int16
    secondary_theme: np.ndarray  # int16, -1 = none
    popularity: np.ndarray  # float64 sampling weight inside the main theme (Zipf over the theme's ranks)

    def __len__(self) -> int:
        return len(self.song_ids)


def _zh_person(u: np.ndarray) -> str:
    given = _pick(ZH_GIVEN, u[2]) + (_pick(ZH_GIVEN, u[3]) if u[4] < 0.6 else "")
    return _pick(ZH_SURNAMES, u[1]) + given


def _latin_word(u: np.ndarray) -> str:
    """A made-up Latin-script name of 2-3 syllables from 8 uniforms, e.g. "Kaimor"."""
    n_syllables = 2 + (u[0] < 0.3)
    word = "".join(_pick(LATIN_ONSETS, u[1 + 2 * k]) + _pick(LATIN_VOWELS, u[2 + 2 * k]) for k in range(n_syllables))
    return (word + _pick(LATIN_CODAS, u[7])).title()


def _artist_name(lang: str, u: np.ndarray) -> str:
    """A generated artist name in the style of a theme's language; u holds 16 uniforms."""
    if lang == "mix":
        lang = "zh" if u[7] < 0.5 else "en"
    if lang in ("zh", "yue"):
        if u[0] < 0.75:
            return _zh_person(u)
        return _pick(ZH_WORDS, u[1]) + (_pick(ZH_WORDS, u[5]) if u[6] < 0.5 else "") + _pick(ZH_BAND_SUFFIX, u[2])
    if lang == "ko":
        if u[0] < 0.5:
            return f"{_pick(KO_SURNAMES, u[1])} {_pick(KO_SYLLABLES, u[2]).title()}{_pick(KO_SYLLABLES, u[3])}"
        return "".join(chr(65 + int(v * 26) % 26) for v in u[3:3 + 2 + int(u[4] * 3)])  # a group acronym
    if lang == "ja":
        if u[0] < 0.7:
            given = "".join(_pick(JA_SYLLABLES, v) for v in u[1:3 + (u[8] < 0.4)]).title()
            return f"{given} {_pick(JA_FAMILY, u[5])}"
        return f"{_pick(EN_BAND_ADJ, u[1])} {_pick(EN_BAND_NOUN, u[2])}"
    if u[0] < 0.6:
        return f"{_pick(EN_FIRST, u[1])} {_latin_word(u[8:16])}"
    if u[0] < 0.8:
        return f"The {_pick(EN_BAND_ADJ, u[1])} {_pick(EN_BAND_NOUN, u[2])}"
    return f"{_latin_word(u[8:16])} {_pick(EN_BAND_NOUN, u[2])}"


def _song_name(theme: dict, u: np.ndarray) -> str:
    """A generated song title; some carry a word of the song's theme. u holds 10 uniforms."""
    zh_share = {"zh": 0.8, "yue": 0.9, "mix": 0.5, "en": 0.15, "ja": 0.0, "ko": 0.0}[theme["lang"]]
    chinese = u[0] < zh_share
    if theme["name"] == "classical" or (theme["name"] == "piano" and u[9] < 0.5):
        return f"{_pick(CLASSICAL_FORMS, u[1])} No. {1 + int(u[2] * 12)} in {_pick(CLASSICAL_KEYS, u[3])}"
    # A theme word never stands alone as a name: it is always followed by another word.
    with_theme_word = u[8] < 0.15
    pattern = 0.3 + 0.7 * u[4] if with_theme_word else u[4]
    if chinese:
        head = _pick(theme["zh"], u[1]) if with_theme_word else _pick(ZH_WORDS, u[1])
        if pattern < 0.3:
            return head
        if pattern < 0.65:
            return head + _pick(ZH_WORDS, u[2])
        if pattern < 0.85:
            return head + "的" + _pick(ZH_WORDS, u[2])
        return head + _pick(ZH_SUFFIX, u[3])
    head = _pick(theme["en"], u[1]).title() if with_theme_word else _pick(EN_WORDS, u[1])
    if pattern < 0.3:
        name = head
    elif pattern < 0.65:
        name = f"{head} {_pick(EN_WORDS, u[2])}"
    elif pattern < 0.8:
        name = f"The {head}"
    else:
        name = f"{head} of {_pick(EN_WORDS, u[2])}"
    if u[5] < 0.08:
        name += _pick(EN_SUFFIX, u[6])
    return name


def song_catalog(n_songs: int, seed: int = 0) -> SongCatalog:
    """The songs of ``generate_demo_data(..., n_songs, seed)``: ids, names, singers, themes and popularity."""
    _check_int("n_songs", n_songs, minimum=len(THEMES))
    _check_int("seed", seed, minimum=0)
    rng = _rng(seed, _STREAM_CATALOG)
    n_themes = len(THEMES)

    # Artists: the first n_themes artists cover every theme, so every theme owns at least one song.
    n_artists = max(n_themes, n_songs // SONGS_PER_ARTIST)
    artist_theme = np.concatenate(
        [np.arange(n_themes), rng.integers(0, n_themes, n_artists - n_themes)]
    ).astype(np.int16)
    artist_u = rng.random((n_artists, 16))
    artist_names = [_artist_name(THEMES[t]["lang"], artist_u[i]) for i, t in enumerate(artist_theme)]

    song_artist = np.concatenate([np.arange(n_themes), rng.integers(0, n_artists, n_songs - n_themes)])
    primary = artist_theme[song_artist].copy()
    off_theme = rng.random(n_songs) < SONG_OFF_ARTIST_THEME_SHARE
    off_theme[:n_themes] = False
    primary[off_theme] = rng.integers(0, n_themes, int(off_theme.sum()))
    has_second = rng.random(n_songs) < SECOND_THEME_SONG_SHARE
    secondary = ((primary + rng.integers(1, n_themes, n_songs)) % n_themes).astype(np.int16)
    secondary[~has_second] = -1

    # Popularity: Zipf over a random rank inside the song's main theme.
    order = np.lexsort((rng.random(n_songs), primary))
    sorted_theme = primary[order]
    rank = np.empty(n_songs, dtype=np.int64)
    rank[order] = np.arange(n_songs) - np.searchsorted(sorted_theme, sorted_theme, side="left")
    popularity = (rank + 1.0) ** -THEME_ZIPF

    name_u = rng.random((n_songs, 10))
    names = [_song_name(THEMES[t], name_u[i]) for i, t in enumerate(primary)]
    singers = [artist_names[a] for a in song_artist]
    song_ids = _song_id_strings(np.arange(n_songs), _id_params(seed))
    return SongCatalog(song_ids, names, singers, primary, secondary, popularity)


def song_themes(n_songs: int, seed: int = 0) -> dict[str, list[str]]:
    """Theme names of every song id of ``generate_demo_data(..., n_songs, seed)`` (main theme first)."""
    cat = song_catalog(n_songs, seed)
    return {
        sid: [THEME_NAMES[p]] + ([THEME_NAMES[s]] if s >= 0 else [])
        for sid, p, s in zip(cat.song_ids, cat.primary_theme.tolist(), cat.secondary_theme.tolist())
    }


class _ThemeSampler:
    """Vectorised popularity-weighted draws of a song from a theme, or from the whole catalogue.

    All themes' cumulative weights live in one sorted array, theme t's normalised cumsum shifted by t, so
    one ``searchsorted`` of ``t + u`` draws from theme t for every row at once.
    """

    def __init__(self, cat: SongCatalog):
        n = len(cat)
        has_second = cat.secondary_theme >= 0
        themes = np.concatenate([cat.primary_theme, cat.secondary_theme[has_second]]).astype(np.int64)
        songs = np.concatenate([np.arange(n), np.flatnonzero(has_second)])
        weights = np.concatenate([cat.popularity, SECONDARY_WEIGHT * cat.popularity[has_second]])
        order = np.lexsort((songs, themes))
        themes, self.members, weights = themes[order], songs[order], weights[order]
        starts = np.searchsorted(themes, np.arange(len(THEMES)), side="left")
        ends = np.searchsorted(themes, np.arange(len(THEMES)), side="right")
        cum = np.empty(len(weights))
        for t, (a, b) in enumerate(zip(starts, ends)):
            c = np.cumsum(weights[a:b])
            cum[a:b] = t + c / c[-1]
            cum[b - 1] = t + 1.0  # exact end, so no float gap leaks into the next theme
        self.shifted_cum = cum
        glob = np.cumsum(cat.popularity)
        self.global_cum = glob / glob[-1]
        self.global_cum[-1] = 1.0

    def in_theme(self, theme: np.ndarray, u: np.ndarray) -> np.ndarray:
        # Shrink u slightly so that t + u stays below t + 1 after float rounding.
        q = theme.astype(np.float64) + u * (1.0 - 1e-9)
        pos = np.searchsorted(self.shifted_cum, q, side="right")
        return self.members[np.minimum(pos, len(self.members) - 1)]

    def any(self, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.global_cum, u, side="right")
        return np.minimum(pos, len(self.global_cum) - 1)


# ---------------------------------------------------------------------------------------------------------
# Playlist plan
# ---------------------------------------------------------------------------------------------------------


class _FreshPlaylistIds:
    """Ids for malformed rows, from indices past the well-formed playlists: never equal to a real id."""

    def __init__(self, n_playlists: int, params: _IdParams):
        self.next_index = n_playlists
        self.params = params
        self.digits = _playlist_digits(n_playlists)

    def __call__(self) -> str:
        if self.next_index >= 10**self.digits:
            raise ValueError("malformed_rate is too high for the playlist id space; lower it")
        self.next_index += 1
        return str(_playlist_id_strings(np.array([self.next_index - 1]), self.params, self.digits)[0])


@dataclass(frozen=True)
class PlaylistPlan:
    """Playlist i in info-file order: its id, its one or two themes and its planned length."""

    playlist_ids: np.ndarray  # object array of str
    themes: np.ndarray  # int16 (n, 2); column 1 is -1 for a one-theme playlist
    lengths: np.ndarray  # int32, songs drawn before de-duplication (the written length is at most this)

    def __len__(self) -> int:
        return len(self.playlist_ids)


def _leading_zero_ids(ids: np.ndarray, rng: np.random.Generator) -> int:
    """Give a few playlists another playlist's id with leading zeros ("0012" next to "12"); returns how many."""
    n = len(ids)
    n_padded = min(n // 2, max(2, n // LEADING_ZERO_EVERY))
    if n_padded == 0:
        return 0
    chosen = rng.choice(n, size=2 * n_padded, replace=False)
    targets, sources = chosen[:n_padded], chosen[n_padded:]
    zeros = rng.integers(1, 4, n_padded)
    for t, s, z in zip(targets.tolist(), sources.tolist(), zeros.tolist()):
        ids[t] = "0" * z + ids[s]
    return n_padded


def playlist_plan(n_playlists: int, seed: int = 0) -> PlaylistPlan:
    """Ids, themes and lengths of the playlists of ``generate_demo_data(..., n_playlists, seed=seed)``."""
    _check_int("n_playlists", n_playlists, minimum=1, maximum=MAX_PLAYLISTS)
    _check_int("seed", seed, minimum=0)
    rng = _rng(seed, _STREAM_PLAN)
    n_themes = len(THEMES)
    # Themes are not equally common: a mild Zipf over a random order of themes.
    theme_weight = (rng.permutation(n_themes) + 1.0) ** -0.6
    first = rng.choice(n_themes, size=n_playlists, p=theme_weight / theme_weight.sum())
    second = (first + rng.integers(1, n_themes, n_playlists)) % n_themes
    second[rng.random(n_playlists) >= SECOND_THEME_PLAYLIST_SHARE] = -1
    themes = np.stack([first, second], axis=1).astype(np.int16)

    # Lengths: mostly 10-80 (log-normal around 35), ~5% short (1-9), ~3% long (81-400).
    kind = rng.random(n_playlists)
    lengths = np.clip(np.rint(rng.lognormal(np.log(35.0), 0.45, n_playlists)), 10, 80)
    lengths = np.where(kind < 0.05, rng.integers(1, 10, n_playlists), lengths)
    lengths = np.where(kind > 0.97, rng.integers(81, 401, n_playlists), lengths).astype(np.int32)

    digits = _playlist_digits(n_playlists)
    ids = _playlist_id_strings(np.arange(n_playlists), _id_params(seed), digits)
    _leading_zero_ids(ids, rng)
    return PlaylistPlan(ids, themes, lengths)


def playlist_themes(n_playlists: int, seed: int = 0) -> dict[str, list[str]]:
    """Theme names of every well-formed playlist id of ``generate_demo_data(..., n_playlists, seed=seed)``."""
    plan = playlist_plan(n_playlists, seed)
    return {
        pid: [THEME_NAMES[t] for t in row if t >= 0] for pid, row in zip(plan.playlist_ids, plan.themes.tolist())
    }


# ---------------------------------------------------------------------------------------------------------
# Playlist info text
# ---------------------------------------------------------------------------------------------------------

_INFO_UNIFORMS = 26


def _theme_word(theme: dict, english: bool, u_word: float, u_case: float) -> str:
    if not english:
        return _pick(theme["zh"], u_word)
    word = _pick(theme["en"], u_word)
    return word.title() if u_case < 0.35 else word.upper() if u_case < 0.45 else word


def _playlist_title(themes: Sequence[int], u: np.ndarray) -> str:
    """A title mixing the playlist's theme words with noise words and emoji; u holds _INFO_UNIFORMS uniforms."""
    if u[0] < 0.04:
        return _pick(VAGUE_TITLES, u[1])
    style = "zh" if u[1] < 0.45 else "en" if u[1] < 0.75 else "mix"
    used = [themes[0]] + ([themes[1]] if themes[1] >= 0 and u[2] < 0.7 else [])
    if u[3] < 0.5:
        used = used[::-1]
    parts: list[tuple[str, bool]] = []  # (text, english)
    for k, t in enumerate(used):
        english = style == "en" or (style == "mix" and u[4 + k] < 0.5)
        parts.append((_theme_word(THEMES[t], english, u[6 + k], u[8]), english))
    if style == "mix" and len(parts) == 1 and u[9] < 0.6:  # mixed titles often say the theme twice
        english = not parts[0][1]
        parts.append((_theme_word(THEMES[used[0]], english, u[10], u[8]), english))
    if u[11] < 0.35:
        english = style == "en" or (style == "mix" and u[12] < 0.5)
        noise = _pick(EN_NOISE if english else ZH_NOISE, u[13])
        parts = [(noise, english)] + parts if noise in PREFIX_NOISE else parts + [(noise, english)]
    title = ""
    for text, english in parts:
        if title:
            if english and title[-1].isascii():
                title += " "  # English after English always needs a space
            elif (english or title[-1].isascii()) and u[14] < 0.5:
                title += " "  # a Chinese/English boundary sometimes has one
        title += text
    if u[15] < 0.12:
        emoji = _pick(EMOJI, u[16])
        title = f"{emoji}{title}" if u[17] < 0.3 else f"{title}{emoji}"
    return title


def _playlist_tags(themes: Sequence[int], style_u: float, u: np.ndarray) -> str:
    if u[18] < 0.25:
        return ""
    tags = [THEMES[t]["tag"] for t in themes if t >= 0]
    if u[19] < 0.4:
        lang = THEMES[themes[0]]["lang"]
        if lang == "mix":
            lang = "zh" if style_u < 0.5 else "en"
        lang_tag = LANGUAGE_TAG[lang]
        if lang_tag not in tags:
            tags.append(lang_tag)
    return ",".join(tags)


def _nickname(u: np.ndarray) -> str:
    if u[20] < 0.08:
        return ""
    if u[21] < 0.6:
        return _pick(NICK_ZH_HEAD, u[22]) + _pick(NICK_ZH_TAIL, u[23])
    return f"{_pick(NICK_EN, u[22])}_{int(u[23] * 1000)}"


def _info_fields(themes: Sequence[int], u: np.ndarray, play_count: int) -> list[str]:
    """listname .. play_count of one playlist (everything but glid)."""
    feat = "1" if u[24] < 0.2 else "0"
    collect_type = str(int(u[25] * 3))
    return [_playlist_title(themes, u), _nickname(u), _playlist_tags(themes, u[1], u), feat, collect_type,
            str(play_count)]


# ---------------------------------------------------------------------------------------------------------
# Malformed rows: where they go (planned up front as small arrays) and what they say (drawn while writing)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Insertions:
    """Malformed rows to write after row ``after[i]`` of a file's well-formed rows, sorted by ``after``."""

    after: np.ndarray  # int64 row position (playlist index / sorted song position)
    kind: np.ndarray  # int index into MALFORMED_KINDS[file]
    arg: np.ndarray  # int64: the duplicated row for DUPLICATE_INFO_ROW, else -1

    def slice(self, start: int, stop: int) -> tuple[int, int]:
        return int(np.searchsorted(self.after, start, "left")), int(np.searchsorted(self.after, stop, "left"))


def _malformed_count(n_rows: int, rate: float, n_kinds: int) -> int:
    """Malformed rows of one kind: rate * rows spread over the kinds, at least one of each when rate > 0."""
    if rate <= 0:
        return 0
    return max(1, round(rate * n_rows / n_kinds))


def _plan_insertions(
    rng: np.random.Generator, file: str, n_rows: int, counts: dict[str, int], duplicate_lag: int = 40
) -> _Insertions:
    """Random positions among ``n_rows`` rows for ``counts[kind]`` insertions of each malformed kind of ``file``.

    A duplicate comes after its original row (at most ``duplicate_lag`` rows later).
    """
    afters, kinds, args = [], [], []
    for k, kind in enumerate(MALFORMED_KINDS[file]):
        count = counts.get(kind, 0)
        if kind == DUPLICATE_INFO_ROW:
            count = min(count, n_rows)
            original = np.sort(rng.choice(n_rows, size=count, replace=False))
            after = np.minimum(original + rng.integers(0, duplicate_lag, count), n_rows - 1)
            arg = original
        else:
            after, arg = rng.integers(0, n_rows, count), np.full(count, -1)
        afters.append(after)
        kinds.append(np.full(count, k))
        args.append(arg)
    after, kind, arg = (np.concatenate(x).astype(np.int64) for x in (afters, kinds, args))
    order = np.lexsort((arg, kind, after))
    return _Insertions(after[order], kind[order], arg[order])


def _break_utf8(text: str, u: float) -> bytes:
    """``text`` as UTF-8 with invalid bytes inside: a stray 0xFF, or a Chinese character cut short."""
    raw = text.encode("utf-8")
    cut = len(raw) // 2
    if u < 0.5:
        return raw[:cut] + b"\xff\xfe" + raw[cut:]
    return raw[:cut] + "夜".encode()[:2] + b"x" + raw[cut:]


class _Sink:
    """Buffers text lines and writes them as UTF-8; raw byte lines (malformed on purpose) go through as is."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.buf: list[str] = []
        self.lines = 0

    def text(self, block: str, n_lines: int) -> None:
        self.buf.append(block)
        self.lines += n_lines

    def raw(self, line: bytes) -> None:
        self.flush()
        self.fh.write(line)
        self.lines += 1

    def flush(self) -> None:
        if self.buf:
            self.fh.write("".join(self.buf).encode("utf-8"))
            self.buf.clear()


@contextlib.contextmanager
def _open_output(path: Path, compress: bool):
    """A binary file; with compress, gzip with mtime 0 and no file name so the bytes are reproducible."""
    with open(path, "wb") as raw:
        if not compress:
            yield raw
            return
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            yield gz


# ---------------------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------------------


def _write_playlist_info(fh: BinaryIO, plan: PlaylistPlan, seed: int, ins: _Insertions, fresh_playlist_id,
                         counts: dict[str, int], advance=lambda n: None) -> int:
    """Header, one row per planned playlist (plan order), malformed rows after their planned rows."""
    rng = _rng(seed, _STREAM_INFO)
    bad = _rng(seed, _STREAM_BAD_INFO)
    kinds = MALFORMED_KINDS[PLAYLIST_INFO_FILE]
    sink = _Sink(fh)
    sink.text("\t".join(PLAYLIST_INFO_HEADER) + "\n", 1)
    pending_duplicates: dict[int, list[str]] = {}  # original row -> its fields, until its duplicate is written
    wanted_duplicates = set(ins.arg[ins.arg >= 0].tolist())
    n = len(plan)
    for start in range(0, n, CHUNK_PLAYLISTS):
        stop = min(n, start + CHUNK_PLAYLISTS)
        u = rng.random((stop - start, _INFO_UNIFORMS))
        play_counts = np.rint(rng.lognormal(7.0, 2.0, stop - start)).astype(np.int64)
        themes = plan.themes[start:stop].tolist()
        a, b = ins.slice(start, stop)
        cursor = start
        for j in list(range(a, b)) + [None]:
            until = stop if j is None else int(ins.after[j]) + 1
            lines = []
            for i in range(cursor, until):
                k = i - start
                fields = [plan.playlist_ids[i]] + _info_fields(themes[k], u[k], int(play_counts[k]))
                if i in wanted_duplicates:
                    pending_duplicates[i] = fields
                lines.append("\t".join(fields) + "\n")
            sink.text("".join(lines), len(lines))
            cursor = max(cursor, until)
            if j is None:
                break
            kind = kinds[int(ins.kind[j])]
            if kind == DUPLICATE_INFO_ROW:
                fields = pending_duplicates.pop(int(ins.arg[j]))
                line = "\t".join([fields[0], fields[1] + _pick([" 2", " (副本)", " copy", "·新"], bad.random())]
                                 + fields[2:]) + "\n"
                sink.text(line, 1)
            else:
                t = int(bad.integers(0, len(THEMES)))
                fields = [fresh_playlist_id()] + _info_fields([t, -1], bad.random(_INFO_UNIFORMS),
                                                              int(bad.integers(0, 10**5)))
                sink.raw(_malformed_info_line(kind, fields, bad))
            counts[kind] += 1
        advance(stop - start)
    sink.flush()
    return sink.lines


def _malformed_info_line(kind: str, fields: list[str], bad: np.random.Generator) -> bytes:
    glid, title, nickname, tags, feat, collect_type, play_count = fields
    if kind == WRONG_COLUMN_COUNT:
        if bad.random() < 0.5:  # truncated row
            cols = fields[: int(bad.integers(2, 6))]
        else:  # a TAB inside the title splits it into an extra column
            cut = len(title) // 2 + 1
            cols = [glid, f"{title[:cut]}\t{title[cut:]}", nickname, tags, feat, collect_type, play_count]
        return ("\t".join(cols) + "\n").encode("utf-8")
    if kind == EMPTY_ID:
        return ("\t".join(["", title, nickname, tags, feat, collect_type, play_count]) + "\n").encode("utf-8")
    if kind == UNDECODABLE_BYTES:
        head = f"{glid}\t".encode()
        tail = "\t".join(["", nickname, tags, feat, collect_type, play_count]).encode("utf-8") + b"\n"
        return head + _break_utf8(title, bad.random()) + tail
    if kind == NON_NUMERIC_FIELD:
        count = _pick(["12k", "n/a", "1,024", "很多", "3.5万"], bad.random())
        return ("\t".join([glid, title, nickname, tags, feat, collect_type, count]) + "\n").encode("utf-8")
    raise AssertionError(kind)


def _sample_playlist_rows(rng: np.random.Generator, sampler: _ThemeSampler, n_songs: int, themes: np.ndarray,
                          lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (playlist position in chunk, song index) of a chunk, grouped by playlist, in playlist order."""
    n = len(lengths)
    group = np.repeat(np.arange(n), lengths)
    t = group.size
    second = themes[group, 1].astype(np.int64)
    use_second = (second >= 0) & (rng.random(t) < SECOND_THEME_ROW_SHARE)
    row_theme = np.where(use_second, second, themes[group, 0])
    song = np.where(
        rng.random(t) < NOISE_SONG_SHARE, sampler.any(rng.random(t)), sampler.in_theme(row_theme, rng.random(t))
    )
    # Draws are with replacement; keep each song's first occurrence so popular songs do not pile up.
    _, first = np.unique(group.astype(np.int64) * n_songs + song, return_index=True)
    keep = np.sort(first)
    group, song = group[keep], song[keep]
    # A few playlists repeat one of their songs at the end (the format allows repeats).
    sizes = np.bincount(group, minlength=n)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    repeat = np.flatnonzero(rng.random(n) < REPEAT_PLAYLIST_SHARE)
    picked = starts[repeat] + (rng.random(len(repeat)) * sizes[repeat]).astype(np.int64)
    group = np.concatenate([group, repeat])
    song = np.concatenate([song, song[picked]])
    order = np.argsort(group, kind="stable")
    return group[order], song[order]


def _write_playlist_songs(fh: BinaryIO, plan: PlaylistPlan, cat: SongCatalog, seed: int, rate: float,
                          fresh_playlist_id, counts: dict[str, int], advance=lambda n: None) -> tuple[int, int]:
    """Rows grouped by playlist, playlists in byte order of their ids (like `sort`); returns (rows, lines).

    The number of well-formed rows is only known once a chunk is sampled, so malformed rows are planned per
    chunk: enough to keep each kind at ``rate * rows so far / kinds`` (orphan playlists have 1-3 rows each).
    """
    rng = _rng(seed, _STREAM_ROWS)
    bad = _rng(seed, _STREAM_BAD_ROWS)
    kinds = MALFORMED_KINDS[PLAYLIST_SONG_FILE]
    sampler = _ThemeSampler(cat)
    order = np.argsort(plan.playlist_ids.astype(str), kind="stable")
    sink = _Sink(fh)
    good_rows = 0
    for start in range(0, len(order), CHUNK_PLAYLISTS):
        stop = min(len(order), start + CHUNK_PLAYLISTS)
        idx = order[start:stop]
        group, song = _sample_playlist_rows(rng, sampler, len(cat), plan.themes[idx], plan.lengths[idx])
        pids = plan.playlist_ids[idx]
        lines = [f"{p}\t{s}\n" for p, s in zip(pids[group].tolist(), cat.song_ids[song].tolist())]
        good_rows += len(lines)
        want = {}
        for kind in kinds:
            due = round(rate * good_rows / len(kinds)) - counts[kind]
            if rate > 0 and stop == len(order) and counts[kind] == 0:
                due = max(due, 1)  # every kind at least once
            want[kind] = max(0, -(-due // 2) if kind == ORPHAN_SONG_ROW else due)
        ins = _plan_insertions(bad, PLAYLIST_SONG_FILE, stop - start, want)
        group_end = np.searchsorted(group, np.arange(stop - start), side="right")
        cursor = 0
        for after, k in zip(ins.after.tolist(), ins.kind.tolist()):
            end = int(group_end[after])
            sink.text("".join(lines[cursor:end]), end - cursor)
            cursor = end
            kind, pid = kinds[k], pids[after]
            if kind == ORPHAN_SONG_ROW:
                size = int(bad.integers(1, 4))
                orphan_pid = fresh_playlist_id()
                block = "".join(f"{orphan_pid}\t{s}\n" for s in cat.song_ids[bad.integers(0, len(cat), size)])
                sink.text(block, size)
                counts[kind] += size
                continue
            s1, s2 = cat.song_ids[bad.integers(0, len(cat), 2)]
            if kind == WRONG_COLUMN_COUNT:
                line = f"{pid} {s1}\n" if bad.random() < 0.5 else f"{pid}\t{s1}\t{s2}\n"
            else:  # EMPTY_ID
                line = f"\t{s1}\n" if bad.random() < 0.5 else f"{pid}\t\n"
            sink.text(line, 1)
            counts[kind] += 1
        sink.text("".join(lines[cursor:]), len(lines) - cursor)
        sink.flush()
        advance(stop - start)
    return good_rows, sink.lines


def _write_song_info(fh: BinaryIO, cat: SongCatalog, seed: int, ins: _Insertions, fresh_ids: np.ndarray,
                     counts: dict[str, int]) -> int:
    """One row per song in byte order of ids; a few well-formed rows carry an extra trailing column."""
    rng = _rng(seed, _STREAM_SONG_INFO)
    bad = _rng(seed, _STREAM_BAD_SONGS)
    kinds = MALFORMED_KINDS[SONG_INFO_FILE]
    order = np.argsort(cat.song_ids.astype(str), kind="stable")
    extra = rng.random(len(cat)) < EXTRA_COLUMN_SONG_SHARE
    extra_text = rng.integers(1990, 2025, len(cat))
    sink = _Sink(fh)
    next_fresh = 0

    def row(i: int) -> str:
        tail = f"\t{extra_text[i]}" if extra[i] else ""
        return f"{cat.song_ids[i]}\t{cat.names[i]}\t{cat.singers[i]}{tail}\n"

    cursor = 0
    for j in range(len(ins.after)):
        until = int(ins.after[j]) + 1
        if until > cursor:
            sink.text("".join(row(int(i)) for i in order[cursor:until]), until - cursor)
            cursor = until
        kind = kinds[int(ins.kind[j])]
        if kind == DUPLICATE_INFO_ROW:
            i = int(order[int(ins.arg[j])])
            sink.text(f"{cat.song_ids[i]}\t{cat.names[i]} (Live)\t{cat.singers[i]}\n", 1)
        else:
            donor = int(bad.integers(0, len(cat)))
            sid, name, singer = fresh_ids[next_fresh], cat.names[donor], cat.singers[donor]
            next_fresh += 1
            if kind == WRONG_COLUMN_COUNT:
                sink.text(f"{sid}\t{name}\n" if bad.random() < 0.5 else f"{sid} {name} {singer}\n", 1)
            elif kind == EMPTY_ID:
                sink.text(f"\t{name}\t{singer}\n", 1)
            else:  # UNDECODABLE_BYTES
                sink.raw(f"{sid}\t".encode() + _break_utf8(name, bad.random())
                         + f"\t{singer}\n".encode())
        counts[kind] += 1
    sink.text("".join(row(int(i)) for i in order[cursor:]), len(order) - cursor)
    sink.flush()
    return sink.lines


# ---------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        hi = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be at least {minimum}{hi}, got {value}")


def generate_demo_data(
    out_dir: str | Path,
    n_playlists: int = 3000,
    n_songs: int = 6000,
    seed: int = 0,
    malformed_rate: float = 0.02,
    compress: bool = False,
    progress: bool | None = False,
) -> dict:
    """Write the three seed-format files into ``out_dir`` (``.gz`` appended with ``compress``); return stats.

    ``progress``: a tqdm bar on stderr while the playlist files are written — True always, False never (the
    default: a library call, e.g. from a test or an asset, prints nothing), None when stderr is a terminal (what
    ``genrank demo-data`` passes). Same arguments give byte-identical files. Stats: ``playlists``, ``songs``, ``playlist_song_rows`` (the
    well-formed counts), ``lines`` per file (header included), ``malformed[file][reason]``, ``malformed_rows``,
    ``leading_zero_ids``, ``files`` (paths written) and ``seconds``.
    """
    _check_int("n_playlists", n_playlists, minimum=1, maximum=MAX_PLAYLISTS)
    _check_int("n_songs", n_songs, minimum=len(THEMES))
    _check_int("seed", seed, minimum=0)
    if isinstance(malformed_rate, bool) or not isinstance(malformed_rate, (int, float)) or not (
        0.0 <= malformed_rate <= MAX_MALFORMED_RATE
    ):
        raise ValueError(f"malformed_rate must be a number in [0, {MAX_MALFORMED_RATE}], got {malformed_rate!r}")
    if not isinstance(compress, bool):
        raise ValueError(f"compress must be a bool, got {compress!r}")
    began = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    paths = {name: out / f"{name}{suffix}" for name in FILES}
    for name in FILES:
        other = out / (name if compress else f"{name}.gz")
        if other.exists():
            log.warning("%s also exists; readers may pick it instead of %s", other, paths[name])

    cat = song_catalog(n_songs, seed)
    plan = playlist_plan(n_playlists, seed)
    params = _id_params(seed)

    # Malformed rows: positions first (small arrays), fresh ids from indices past the well-formed ones.
    prng = _rng(seed, _STREAM_MALFORMED_PLAN)
    info_ins, song_ins = (
        _plan_insertions(prng, name, n, {k: _malformed_count(n, malformed_rate, len(MALFORMED_KINDS[name]))
                                         for k in MALFORMED_KINDS[name]})
        for name, n in ((PLAYLIST_INFO_FILE, n_playlists), (SONG_INFO_FILE, n_songs))
    )
    fresh_song_ids = _song_id_strings(np.arange(n_songs, n_songs + len(song_ins.after)), params)
    fresh_playlist_id = _FreshPlaylistIds(n_playlists, params)

    malformed = {name: {kind: 0 for kind in MALFORMED_KINDS[name]} for name in FILES}
    lines = {}
    # The playlist files are the long part (the song file is one vectorised pass): a bar over their playlists.
    with _progress_bar(progress, 2 * n_playlists) as bar:
        with _open_output(paths[PLAYLIST_INFO_FILE], compress) as fh:
            bar.set_description(PLAYLIST_INFO_FILE)
            lines[PLAYLIST_INFO_FILE] = _write_playlist_info(
                fh, plan, seed, info_ins, fresh_playlist_id, malformed[PLAYLIST_INFO_FILE], bar.update)
        with _open_output(paths[PLAYLIST_SONG_FILE], compress) as fh:
            bar.set_description(PLAYLIST_SONG_FILE)
            good_rows, lines[PLAYLIST_SONG_FILE] = _write_playlist_songs(
                fh, plan, cat, seed, float(malformed_rate), fresh_playlist_id, malformed[PLAYLIST_SONG_FILE],
                bar.update)
    with _open_output(paths[SONG_INFO_FILE], compress) as fh:
        lines[SONG_INFO_FILE] = _write_song_info(fh, cat, seed, song_ins, fresh_song_ids, malformed[SONG_INFO_FILE])

    stats = {
        "playlists": n_playlists,
        "songs": n_songs,
        "playlist_song_rows": good_rows,
        "lines": lines,
        "malformed": malformed,
        "malformed_rows": sum(sum(v.values()) for v in malformed.values()),
        "leading_zero_ids": int(sum(1 for p in plan.playlist_ids if p.startswith("0") and p != "0")),
        "files": {name: str(p) for name, p in paths.items()},
        "seconds": round(time.perf_counter() - began, 3),
    }
    log.info(
        "demo data in %s: %d playlists, %d songs, %d playlist-song rows, %d malformed rows (%.1f s)",
        out, n_playlists, n_songs, good_rows, stats["malformed_rows"], stats["seconds"],
    )
    return stats


def _progress_bar(progress: bool | None, total: int):
    """A tqdm bar on stderr over ``total`` playlists. ``progress``: True always, False never, None only when
    stderr is a terminal (tqdm's ``disable=None``), so logs and pipes get the one summary line and no bar."""
    from tqdm import tqdm

    return tqdm(total=total, unit="playlists", unit_scale=True, leave=False, disable=None if progress is None
                else not progress, mininterval=0.5, dynamic_ncols=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``genrank demo-data``: write a synthetic seed-format dataset and print its stats as JSON."""
    parser = argparse.ArgumentParser(prog="genrank demo-data", description=main.__doc__)
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--playlists", type=int, default=3000, help="number of playlists (default 3000)")
    parser.add_argument("--songs", type=int, default=6000, help="number of songs (default 6000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--malformed-rate", type=float, default=0.02,
                        help="share of deliberately malformed rows per file (default 0.02)")
    parser.add_argument("--gzip", action="store_true", help="write gzip-compressed files with .gz appended")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        stats = generate_demo_data(args.out, n_playlists=args.playlists, n_songs=args.songs, seed=args.seed,
                                   malformed_rate=args.malformed_rate, compress=args.gzip, progress=None)
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps(stats, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
