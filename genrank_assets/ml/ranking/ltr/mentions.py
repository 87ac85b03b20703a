"""Stage `ranking`: the catalogue's singers and songs a query names ("songs like Kanye West", "类似周杰伦的歌曲").

``CatalogueMentions().fit(corpus, song_info)`` learns, from the song info (song id -> (name, singer): every song
of the song file, cold ones too) and the corpus' TRAIN playlists, which names a query can mention; ``find(text)``
returns the query's ``Mentions``: the singers it names with a match score, the songs it names, and the singers
that co-occur most with the named ones in train playlists. The ``mention`` candidate source
(``candidates.build_pool``) and the ``mention`` features (``features.py``) read them.

Names and queries are compared as ``match_key`` text (``normalize_title``, diacritics dropped: "Beyoncé" is
"beyonce"). An *alias* is a text that names a singer or songs:

* a singer's full name: Latin (non-CJK) names of at least ``min_singer_chars`` characters (spaces not counted),
  names with CJK characters of at least ``min_cjk_singer_chars`` (most Chinese names have 2 or 3), of singers
  with at least ``min_singer_plays`` train playlist-song pairs (titles that equal a rarely played singer's name
  are words: "zen", "golden");
* a partial name: a word of at least ``partial_min_chars`` of the most played singer name holding it, when at
  least ``partial_min_nameness`` of the song names and train titles with the word hold that whole name ("kanye":
  most say "kanye west"; "ocean": few say "frank ocean"); its score is ``partial_score``;
* a song name specific enough to mean its songs: ``min_song_chars`` Latin characters and ``min_song_words``
  words, or ``min_cjk_song_chars`` CJK characters; used by at most ``max_song_singers`` singers and not a
  singer's full name;
* title evidence: an alias that ``min_title_uses`` or more train titles contain is kept only when at least
  ``min_title_precision`` of those playlists hold its singer's songs (or its songs): playlists that use "love"
  as a word hold no song of the band Love, playlists titled "eminem" hold Eminem.

A text long enough to be a name that names nothing (a song name of several singers, a rarely played singer, an
alias the titles refused) stays in the automaton as a *blocker*: no shorter name inside it is found ("falling in"
is not read inside "falling in love").

Exact matching is one Aho–Corasick automaton (pyahocorasick) over the aliases and blockers. One that starts or
ends with a Latin letter or digit must meet a word boundary there ("sia" is not found in "asian"); CJK text has no
word boundaries, so a CJK name is found anywhere ("类似周杰伦的中国风歌曲"). Of overlapping matches the longest
wins, then the leftmost. Fuzzy matching (rapidfuzz) then compares each run of Latin words outside the full names
and song names found, at least ``fuzzy_min_chars`` long and not made only of common words (words of
``min_title_uses`` or more song names and titles: typos are rare strings), with the full names of singers with
``fuzzy_min_plays`` or more, by optimal-string-alignment similarity (1 - edits / length, a transposition one edit)
of at least ``fuzzy_min_similarity``: "kanye wset", "eminen". CJK names are matched exactly only (a CJK typo is
mostly a homophone, which edit distance does not model). The thresholds are measured on mpd7k's titles in
docs/findings.md.

Co-occurrence: the strength of singer B for a singer A is the share of A's train playlists that also hold B
(at least ``min_cooc_playlists`` shared playlists); each singer keeps its ``cooc_singers`` strongest. Everything
is deterministic: ties go to the more played singer, then to the name.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields

import ahocorasick
import numpy as np
import pandas as pd
import scipy.sparse as sp
from rapidfuzz import process
from rapidfuzz.distance import OSA

from genrank_assets.ml.baselines.classical import normalize_title, train_playlists
from genrank_assets.ml.data.corpus import train_popularity

# CJK ideographs, kana, bopomofo, Hangul: scripts whose words are not separated by spaces
CJK = re.compile(r"[\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_DIACRITICS = re.compile(r"[\u0300-\u036f]")
_COOC_CHUNK = 2048  # singers whose co-occurrence row is computed at once (bounds the memory of the product)


def match_key(text: str) -> str:
    """The form names and queries are matched in: ``normalize_title`` with combining diacritics dropped."""
    decomposed = unicodedata.normalize("NFD", normalize_title(str(text)))
    return unicodedata.normalize("NFC", _DIACRITICS.sub("", decomposed))


def _is_word(ch: str) -> bool:
    """A character that continues a word: a letter or digit outside CJK (CJK text has no word boundaries)."""
    return ch.isalnum() and not CJK.match(ch)


def _bounded(text: str, start: int, end: int) -> bool:
    """``text[start:end]`` meets a word boundary at each of its edges that is a word character."""
    if _is_word(text[start]) and start > 0 and _is_word(text[start - 1]):
        return False
    return not (_is_word(text[end - 1]) and end < len(text) and _is_word(text[end]))


def _chars(text: str) -> int:
    return len(text.replace(" ", ""))


@dataclass(frozen=True)
class MentionParams:
    """What counts as a mention (the module docstring; the thresholds are measured in docs/findings.md)."""

    min_singer_chars: int = 3  # Latin singer names, spaces not counted ("U2" is not matched, "Sia" is)
    min_cjk_singer_chars: int = 2  # singer names with CJK characters ("王菲")
    min_song_chars: int = 8  # Latin song names, spaces not counted ("Shape of You")
    min_song_words: int = 2  # Latin song names ("Closing Time"; not "Depressed", "Starbucks")
    min_cjk_song_chars: int = 3  # song names with CJK characters ("七里香"; not "晴天", a common word)
    max_song_singers: int = 1  # a song name more singers use is generic
    min_singer_plays: int = 20  # train playlist-song pairs of a singer before its name is a mention
    partial_min_chars: int = 5  # a word of a singer's name that can name the singer alone ...
    partial_min_nameness: float = 0.5  # ... when this share of the song names and titles with the word hold the name
    partial_score: float = 0.8  # the match score of a partial name (a full name scores 1)
    min_title_uses: int = 3  # titles that must use an alias (or a word) before the titles judge it
    min_title_precision: float = 0.1  # share of those playlists that must hold the alias' singer or songs
    fuzzy_min_chars: int = 5  # query text this short is never matched fuzzily
    fuzzy_min_similarity: float = 0.8  # optimal-string-alignment similarity of a fuzzy singer match
    fuzzy_min_plays: int = 100  # train playlist-song pairs of a singer a fuzzy match can name
    cooc_singers: int = 10  # co-occurring singers kept per singer
    min_cooc_playlists: int = 2  # shared train playlists below which two singers do not co-occur

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"MentionParams.{f.name} must be a number, got {value!r}")
            if f.type == "float" and not 0.0 < value <= 1.0:
                raise ValueError(f"MentionParams.{f.name} must be in (0, 1], got {value!r}")
            if f.type == "int" and (int(value) != value or value < 1):
                raise ValueError(f"MentionParams.{f.name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Mentions:
    """What one query names: singer keys (``match_key`` of the singer) and song ids with their match scores (1:
    exact full name; ``partial_score``: a partial name; the similarity of a fuzzy match), best first; the singers
    co-occurring with them (strength: the named singer's score × the co-occurrence strength; named singers left
    out), strongest first; and the share of the query's characters (spaces not counted) inside a mention."""

    singers: dict[str, float] = field(default_factory=dict)
    songs: dict[str, float] = field(default_factory=dict)
    cooccurring: dict[str, float] = field(default_factory=dict)
    coverage: float = 0.0

    def __len__(self) -> int:
        return len(self.singers) + len(self.songs)


@dataclass
class _Alias:
    singer: str | None = None  # the singer key the text names
    singer_score: float = 0.0
    songs: tuple[str, ...] = ()  # the songs the text names


class CatalogueMentions:
    """The catalogue's names as a query can mention them (the module docstring): ``fit``, then ``find``."""

    def __init__(self, params: MentionParams = MentionParams()):
        if not isinstance(params, MentionParams):
            raise ValueError(f"params must be a MentionParams, got {type(params).__name__}")
        self.params = params
        self._automaton = None

    @property
    def fitted(self) -> bool:
        return self._automaton is not None

    # -- fit ------------------------------------------------------------------------------------------------
    def fit(self, corpus: pd.DataFrame, song_info: Mapping[str, tuple[str, str]]) -> CatalogueMentions:
        """Fit on ``song_info`` (song id -> (name, singer)) and the TRAIN playlists of ``corpus``."""
        info = _checked_info(song_info)
        train = train_playlists(corpus)
        self._popularity = train_popularity(train)
        singer_keys = {singer: match_key(singer) for singer in {singer for _, singer in info.values()}}
        self._singer_of = {song: singer_keys[singer] for song, (_, singer) in info.items() if singer_keys[singer]}
        name_of = {song: match_key(name) for song, (name, _) in info.items()}
        by_singer: dict[str, list[str]] = {}
        for song, singer in self._singer_of.items():
            by_singer.setdefault(singer, []).append(song)
        self._songs_of = {g: sorted(songs, key=lambda s: (-self._popularity.get(s, 0), s))
                          for g, songs in sorted(by_singer.items())}
        self._plays = {g: sum(self._popularity.get(s, 0) for s in songs) for g, songs in self._songs_of.items()}
        playlists = [frozenset(map(str, songs)) for songs in train["song_ids"]]
        titles = [match_key(t) for t in train["title"].astype(str)]
        self._cooccurring = self._fit_cooccurrence(playlists)
        texts = [*name_of.values(), *titles]
        aliases = self._title_evidence(self._candidate_aliases(name_of, texts), titles, playlists)
        self._aliases = aliases
        self._automaton = _automaton(aliases)
        # words the song names and titles use: real strings, never typos
        words = Counter(w for t in texts for w in set(t.split()))
        self._common_words = frozenset(w for w, n in words.items() if n >= self.params.min_title_uses)
        # fuzzy targets: well-played singers whose full name is an alias, by length, most played first
        self._by_length: dict[int, list[str]] = {}
        for text, alias in sorted(aliases.items(), key=lambda kv: (-self._plays.get(kv[0], 0), kv[0])):
            if (alias.singer == text and self._plays[text] >= self.params.fuzzy_min_plays
                    and len(text) >= self.params.fuzzy_min_chars and not CJK.search(text)):
                self._by_length.setdefault(len(text), []).append(text)
        return self

    def _candidate_aliases(self, name_of: Mapping[str, str], texts: Sequence[str]) -> dict[str, _Alias]:
        """Every text long enough to be a name: an alias when it names a singer or songs, else a blocker (an
        alias naming nothing, so that no shorter name inside it is found: "falling in" is not in "falling in love",
        a song name of many singers). ``name_of``: song id -> its name's ``match_key``; ``texts``: the song names
        and train titles that judge partial names."""
        p = self.params
        aliases: dict[str, _Alias] = {}
        for singer in self._songs_of:
            if _chars(singer) >= (p.min_cjk_singer_chars if CJK.search(singer) else p.min_singer_chars):
                aliases[singer] = _Alias(singer, 1.0) if self._plays[singer] >= p.min_singer_plays else _Alias()
        aliases.update(self._partial_names(aliases, texts))
        by_name: dict[str, list[str]] = {}
        for song, name in name_of.items():
            if name and song in self._singer_of:
                by_name.setdefault(name, []).append(song)
        for name, songs in sorted(by_name.items()):
            cjk = bool(CJK.search(name))
            if _chars(name) < (p.min_cjk_song_chars if cjk else p.min_song_chars) or (
                    not cjk and len(name.split()) < p.min_song_words):
                continue
            alias = aliases.setdefault(name, _Alias())
            if alias.singer != name and len({self._singer_of[s] for s in songs}) <= p.max_song_singers:
                alias.songs = tuple(sorted(songs))
        return aliases

    def _partial_names(self, aliases: Mapping[str, _Alias], texts: Sequence[str]) -> dict[str, _Alias]:
        """word -> alias of the singer it names alone: a word of the most played name holding it, when at least
        ``partial_min_nameness`` of the ``texts`` with the word hold that whole name ("kanye": most texts with it
        say "kanye west"; "ocean": few say "frank ocean")."""
        p = self.params
        best: dict[str, str] = {}
        for singer, alias in aliases.items():
            for word in set(singer.split()) if alias.singer == singer and " " in singer else ():
                if len(word) >= p.partial_min_chars and not CJK.search(word) and word not in aliases:
                    other = best.get(word)
                    if other is None or (-self._plays[singer], singer) < (-self._plays[other], other):
                        best[word] = singer
        if not best:
            return {}
        with_word = Counter(w for text in texts for w in set(text.split()) if w in best)
        names = _automaton({singer: _Alias() for singer in set(best.values())})
        with_name = Counter(name for text in texts for name in {t for _, _, t in _spans(text, names)})
        return {word: _Alias(singer, p.partial_score) for word, singer in sorted(best.items())
                if with_name[singer] >= p.partial_min_nameness * with_word[word] > 0}

    def _title_evidence(self, aliases: dict[str, _Alias], titles: Sequence[str], playlists: Sequence[frozenset]
                        ) -> dict[str, _Alias]:
        """``aliases`` with those that enough train titles use without holding their singer or songs made blockers."""
        automaton = _automaton(aliases)
        uses: Counter = Counter()
        hits: Counter = Counter()
        for title, songs in zip(titles, playlists):
            singers = None
            for _, _, text in _spans(title, automaton):
                alias = aliases[text]
                if alias.singer is None and not alias.songs:
                    continue  # a blocker
                if singers is None:
                    singers = {self._singer_of[s] for s in songs if s in self._singer_of}
                uses[text] += 1
                hits[text] += bool((alias.singer is not None and alias.singer in singers)
                                   or songs.intersection(alias.songs))
        p = self.params
        return {text: alias if uses[text] < p.min_title_uses or hits[text] >= p.min_title_precision * uses[text]
                else _Alias() for text, alias in aliases.items()}

    def _fit_cooccurrence(self, playlists: Sequence[frozenset]) -> dict[str, list[tuple[str, float]]]:
        singers = list(self._songs_of)
        index = {g: i for i, g in enumerate(singers)}
        rows, cols = [], []
        for row, songs in enumerate(playlists):
            present = {index[g] for s in songs if (g := self._singer_of.get(s)) is not None}
            rows.extend([row] * len(present))
            cols.extend(sorted(present))
        holds = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                              shape=(len(playlists), len(singers)))
        held_by = holds.T.tocsr()  # (singers, playlists)
        counts = np.asarray(holds.sum(axis=0)).ravel()
        plays = np.array([self._plays[g] for g in singers], dtype=np.float64)
        out: dict[str, list[tuple[str, float]]] = {}
        p = self.params
        for lo in range(0, len(singers), _COOC_CHUNK):
            shared = (held_by[lo:lo + _COOC_CHUNK] @ holds).tocsr()  # (chunk, singers) shared playlists
            for i in range(shared.shape[0]):
                a = lo + i
                cols_i = shared.indices[shared.indptr[i]:shared.indptr[i + 1]]
                both = shared.data[shared.indptr[i]:shared.indptr[i + 1]]
                keep = (cols_i != a) & (both >= p.min_cooc_playlists)
                if not keep.any():
                    continue
                cols_i, strength = cols_i[keep], both[keep] / counts[a]
                order = np.lexsort((cols_i, -plays[cols_i], -strength))[: p.cooc_singers]
                out[singers[a]] = [(singers[j], float(strength[k])) for k, j in zip(order, cols_i[order])]
        return out

    # -- find -----------------------------------------------------------------------------------------------
    def find(self, text: str) -> Mentions:
        """The singers and songs ``text`` names, and the singers co-occurring with them (``Mentions``)."""
        if not self.fitted:
            raise ValueError("CatalogueMentions is not fitted: call fit(corpus, song_info) first")
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        key = match_key(text)
        covered = np.zeros(len(key), dtype=bool)  # inside a mention
        firm = np.zeros(len(key), dtype=bool)  # inside a full name or a song name: no fuzzy match there
        singers: dict[str, float] = {}
        songs: dict[str, float] = {}
        for start, end, name in _spans(key, self._automaton):
            alias = self._aliases[name]
            covered[start:end] |= alias.singer is not None or bool(alias.songs)  # a blocker names nothing
            firm[start:end] |= alias.singer == name or bool(alias.songs)  # a partial name can be part of a typo
            if alias.singer is not None:
                singers[alias.singer] = max(singers.get(alias.singer, 0.0), alias.singer_score)
            songs.update((s, 1.0) for s in alias.songs)
        for start, end, singer, score in self._fuzzy(key, firm):  # "kanye wset": better than the partial "kanye"
            covered[start:end] = True
            singers[singer] = max(singers.get(singer, 0.0), score)
        singers = dict(sorted(singers.items(), key=lambda kv: (-kv[1], -self._plays.get(kv[0], 0), kv[0])))
        songs = dict(sorted(songs.items(), key=lambda kv: (-kv[1], -self._popularity.get(kv[0], 0), kv[0])))
        cooccurring: dict[str, float] = {}
        for singer, score in singers.items():
            for other, strength in self._cooccurring.get(singer, ()):
                if other not in singers:
                    cooccurring[other] = max(cooccurring.get(other, 0.0), score * strength)
        cooccurring = dict(sorted(cooccurring.items(), key=lambda kv: (-kv[1], -self._plays.get(kv[0], 0), kv[0])))
        visible = np.array([c != " " for c in key], dtype=bool)
        coverage = float((covered & visible).sum() / visible.sum()) if visible.any() else 0.0
        return Mentions(singers, songs, cooccurring, coverage)

    def _fuzzy(self, key: str, firm: np.ndarray) -> Iterator[tuple[int, int, str, float]]:
        """(start, end, singer, similarity) of runs of Latin words outside ``firm`` that are a typo of a
        singer's full name; the longest run first, runs never overlapping."""
        p = self.params
        latin = CJK.sub(" ", key)  # same length: CJK characters end a run of words
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", latin) if not firm[m.start():m.end()].any()]
        if not words or not self._by_length:
            return
        longest = max(self._by_length)
        runs = []
        for i in range(len(words)):
            for j in range(i, len(words)):
                if j > i and key[words[j - 1][1]:words[j][0]].strip():
                    break  # not adjacent: something other than spaces between them
                start, end = words[i][0], words[j][1]
                if end - start > longest + 2:
                    break
                runs.append((start, end))
        taken = np.zeros(len(key), dtype=bool)
        for start, end in sorted(runs, key=lambda r: (r[0] - r[1], r[0])):
            gram = key[start:end]
            if (len(gram) < p.fuzzy_min_chars or taken[start:end].any()
                    or all(w in self._common_words for w in gram.split())):
                continue
            slack = int(len(gram) * (1 / p.fuzzy_min_similarity - 1)) + 1  # the most a match's length can differ
            best = None
            for length in range(len(gram) - slack, len(gram) + slack + 1):
                found = process.extractOne(gram, self._by_length.get(length, ()), scorer=OSA.normalized_similarity,
                                           score_cutoff=p.fuzzy_min_similarity)
                if found is not None and (best is None or found[1] > best[1]):
                    best = found
            if best is not None:
                taken[start:end] = True
                yield start, end, best[0], float(best[1])

    # -- read -----------------------------------------------------------------------------------------------
    def singer_of(self, song_id: str) -> str:
        """The singer key of a song ("" when the song info has no singer for it)."""
        return self._singer_of.get(str(song_id), "")

    def songs_of(self, singer: str) -> list[str]:
        """A singer's songs (by ``match_key``), most played in train first, songs without train history last."""
        return list(self._songs_of.get(match_key(singer), ()))

    def cooccurring(self, singer: str) -> list[tuple[str, float]]:
        """The singers co-occurring most with ``singer`` (by ``match_key``) and their strengths, strongest first."""
        return list(self._cooccurring.get(match_key(singer), ()))

    def songs_for(self, mentions: Mentions, n: int) -> list[tuple[str, float]]:
        """Up to ``n`` (song, score) for a query that names ``mentions``, best first: the named songs, then the named
        singers' songs (most played first, the singers in turn, best match first), then the co-occurring singers'
        songs likewise (strongest first, score its strength). The named part keeps at least half of ``n`` when
        the co-occurring singers have songs enough; either part's unused room goes to the other."""
        if isinstance(n, bool) or int(n) < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        named = _distinct([*mentions.songs.items(),
                           *_in_turn([(s, w) for s in self._songs_of.get(g, ())] for g, w in mentions.singers.items())],
                          n)
        seen = {s for s, _ in named}
        related = _distinct((x for x in _in_turn([(s, w) for s in self._songs_of.get(g, ())]
                                                 for g, w in mentions.cooccurring.items()) if x[0] not in seen), n)
        keep = max(n // 2, n - len(related))
        out = named[:keep]
        return out + related[: n - len(out)]


def _checked_info(song_info: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    if not isinstance(song_info, Mapping) or not song_info:
        raise ValueError("song_info must be a non-empty mapping song id -> (name, singer)")
    out = {}
    for song, value in sorted(song_info.items(), key=lambda kv: str(kv[0])):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"song_info[{song!r}] must be (name, singer), got {value!r}")
        out[str(song)] = (str(value[0]), str(value[1]))
    return out


def _automaton(aliases: Mapping[str, _Alias]):
    automaton = ahocorasick.Automaton()
    for text in aliases:
        automaton.add_word(text, text)
    if len(automaton):
        automaton.make_automaton()
    return automaton


def _spans(text: str, automaton) -> list[tuple[int, int, str]]:
    """(start, end, alias) of the aliases found in ``text`` at word boundaries, overlapping ones resolved: the
    longest first, then the leftmost; in text order."""
    if not len(automaton) or not text:
        return []
    found = []
    for last, alias in automaton.iter(text):
        start = last - len(alias) + 1
        if _bounded(text, start, last + 1):
            found.append((start, last + 1, alias))
    taken = np.zeros(len(text), dtype=bool)
    spans = []
    for start, end, alias in sorted(found, key=lambda s: (s[0] - s[1], s[0])):
        if not taken[start:end].any():
            taken[start:end] = True
            spans.append((start, end, alias))
    return sorted(spans)


def _in_turn(lists: Iterable[Sequence]) -> Iterator:
    """The first item of each list, then the second of each, and so on."""
    lists = [lst for lst in lists if lst]
    for depth in range(max((len(lst) for lst in lists), default=0)):
        for lst in lists:
            if depth < len(lst):
                yield lst[depth]


def _distinct(pairs: Iterable[tuple[str, float]], n: int) -> list[tuple[str, float]]:
    """The first ``n`` pairs with distinct songs (the first score of a song is kept)."""
    out, seen = [], set()
    for song, score in pairs:
        if song not in seen:
            seen.add(song)
            out.append((song, score))
            if len(out) == n:
                break
    return out


__all__ = ["CJK", "CatalogueMentions", "MentionParams", "Mentions", "match_key"]
