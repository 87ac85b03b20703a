"""Stage `generator`, data: (text, target) pairs, and the seq2seq examples the model trains on.

* :func:`build_generator_dataset` — the ``generator_dataset`` table: a playlist title -> its songs'
  semantic-ID tokens (strings, as stored in the warehouse).
* **Targets** (:class:`TigerDataset`): "sequence" mode — a playlist's distinct codes in playlist order, up to
  ``max_codes``, as one token sequence ``<id_l1_a> <id_l2_b> <id_l3_c> <id_l1_..> ... </s>`` (the level-1 token
  starts a new code, so no separator is needed; ``<sep>`` stays reserved in the vocabulary); "single" mode
  (TIGER style) — one code per example, a seeded random code of the playlist each time the playlist is sampled.
  :func:`collate_examples` pads a batch (labels with -100, which the loss ignores).
* **Index pairs** (DSI-style, optional): texts that teach the model words titles rarely hold — "song name - singer"
  -> the song's code (``index_songs``) and singer -> the codes of the singer's songs (``index_singers``), from the
  song catalogue, for songs that have a code (train songs). They are train rows with ``source`` "song" / "singer"
  (playlists: "playlist") and give ``index_samples`` examples per epoch each.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from genrank_assets.ml.data.corpus import as_song_lists
from genrank_assets.ml.generator.model import TARGET_MODES, TIGER
from genrank_assets.ml.generator.tiger import CodeTable
from genrank_assets.ml.generator.tokenizer import SemanticIdVocab, TextEncoder, id_token, pad_inputs

log = logging.getLogger(__name__)


def code_tokens(code) -> str:
    """(45, 67, 123) -> '<id_l1_45> <id_l2_67> <id_l3_123>'."""
    return " ".join(id_token(level, int(k)) for level, k in enumerate(code, start=1))


def parse_target(target: str) -> list[tuple[int, ...]]:
    """Inverse of the target string: the list of codes, in order."""
    codes, current = [], []
    for tok in target.split():
        if not (tok.startswith("<id_l") and tok.endswith(">")):
            raise ValueError(f"not a semantic-ID token: {tok!r}")
        level, k = tok[5:-1].split("_")
        level = int(level)
        if level == 1 and current:
            codes.append(tuple(current))
            current = []
        if level != len(current) + 1:
            raise ValueError(f"token {tok!r} out of level order in target {target[:80]!r}")
        current.append(int(k))
    if current:
        codes.append(tuple(current))
    return codes


def query_text(title: str, tags: str, include_tags: bool) -> str:
    title = str(title).strip()
    tags = str(tags or "").strip()
    if include_tags and tags:
        return f"{title} {tags.replace(',', ' ')}".strip()
    return title


SONG_ORDERS = ("playlist", "popularity")  # a target's codes in playlist order, or most popular song first
SOURCES = ("playlist", "song", "singer")  # where a pair comes from (the ``source`` column)


@dataclass(frozen=True)
class GeneratorDatasetDefaults:
    """Defaults of `build_generator_dataset`, which the `generator_dataset` asset config reads."""

    song_order: str = "playlist"  # playlist | popularity
    max_songs_per_target: int = 20  # the seed used ~127 on GPU
    windows_per_playlist: int = 1  # >1: long playlists yield several targets (augmentation)
    include_tags: bool = False
    index_songs: int = 0  # DSI index pairs "name - singer" -> code for the most popular coded songs; 0 = none
    index_singers: int = 0  # singer -> codes of their songs, for the singers with most coded songs; 0 = none
    max_codes_per_singer: int = 20  # a singer's target: the codes of their most popular songs
    index_samples: int = 1  # training examples per index pair per epoch (playlists: samples_per_playlist)
    seed: int = 0


GENERATOR_DATASET = GeneratorDatasetDefaults()


def build_generator_dataset(
    corpus: pd.DataFrame,
    code_of: dict[str, tuple[int, ...]],
    popularity: dict[str, int],
    *,
    splits: tuple[str, ...] = ("train", "val"),
    song_order: str = GENERATOR_DATASET.song_order,
    max_songs_per_target: int = GENERATOR_DATASET.max_songs_per_target,
    windows_per_playlist: int = GENERATOR_DATASET.windows_per_playlist,
    include_tags: bool = GENERATOR_DATASET.include_tags,
    songs: pd.DataFrame | None = None,
    index_songs: int = GENERATOR_DATASET.index_songs,
    index_singers: int = GENERATOR_DATASET.index_singers,
    max_codes_per_singer: int = GENERATOR_DATASET.max_codes_per_singer,
    seed: int = GENERATOR_DATASET.seed,
) -> tuple[pd.DataFrame, dict]:
    """Rows (playlist_id, split, text, target, n_codes, window, source).

    Only playlists of ``splits`` are used (test never reaches training). A playlist's songs without a code are
    skipped; repeated codes (songs sharing a concept cluster) are kept once, first occurrence. With
    ``windows_per_playlist > 1`` a long playlist yields several targets: consecutive windows of
    ``max_songs_per_target`` codes (playlist order) or, once the windows run out, seeded random samples.
    With ``songs`` (song_id, song_name, singer) and ``index_songs`` / ``index_singers`` > 0, index pairs are
    appended as "train" rows (:func:`index_pairs`; only when "train" is in ``splits``).
    """
    if song_order not in SONG_ORDERS:
        raise ValueError(f"song_order must be one of {SONG_ORDERS}, got {song_order!r}")
    if max_songs_per_target < 1 or windows_per_playlist < 1:
        raise ValueError("max_songs_per_target and windows_per_playlist must be >= 1")
    if min(index_songs, index_singers) < 0 or max_codes_per_singer < 1:
        raise ValueError("index_songs and index_singers must be >= 0, max_codes_per_singer >= 1")
    if (index_songs or index_singers) and songs is None:
        raise ValueError("index_songs / index_singers need the song catalogue (songs=)")
    rng = np.random.default_rng(seed)
    rows = []
    stats = {"playlists_in": 0, "no_text": 0, "no_coded_songs": 0, "songs_without_code": 0}
    part = corpus[corpus["split"].isin(splits)]
    for pid, title, tags, split, playlist_songs in zip(
        part["playlist_id"], part["title"], part["tags"], part["split"], as_song_lists(part["song_ids"])
    ):
        stats["playlists_in"] += 1
        text = query_text(title, tags, include_tags)
        if not text:
            stats["no_text"] += 1
            continue
        if song_order == "popularity":
            playlist_songs = sorted(dict.fromkeys(playlist_songs), key=lambda s: -popularity.get(s, 0))
        codes, seen = [], set()
        for s in playlist_songs:
            c = code_of.get(s)
            if c is None:
                stats["songs_without_code"] += 1
                continue
            if c not in seen:
                seen.add(c)
                codes.append(c)
        if not codes:
            stats["no_coded_songs"] += 1
            continue
        for w, window in enumerate(_windows(codes, max_songs_per_target, windows_per_playlist, rng)):
            rows.append((pid, split, text, " ".join(code_tokens(c) for c in window), len(window), w, "playlist"))
    if "train" in splits and (index_songs or index_singers):
        rows.extend(index_pairs(songs, code_of, popularity, index_songs=index_songs, index_singers=index_singers,
                                max_codes_per_singer=max_codes_per_singer))
    df = pd.DataFrame(rows, columns=["playlist_id", "split", "text", "target", "n_codes", "window", "source"])
    stats["pairs"] = len(df)
    stats.update({f"pairs_{s}": int((df["split"] == s).sum()) for s in splits})
    stats.update({f"pairs_{s}": int((df["source"] == s).sum()) for s in SOURCES[1:]})
    return df, stats


def index_pairs(
    songs: pd.DataFrame,
    code_of: dict[str, tuple[int, ...]],
    popularity: dict[str, int],
    *,
    index_songs: int = GENERATOR_DATASET.index_songs,
    index_singers: int = GENERATOR_DATASET.index_singers,
    max_codes_per_singer: int = GENERATOR_DATASET.max_codes_per_singer,
) -> list[tuple]:
    """DSI-style index rows (playlist_id, "train", text, target, n_codes, 0, source) from the song catalogue.

    Songs: the ``index_songs`` most popular songs that have a code (ties: song id) -> "name - singer" (or the name
    alone when the singer is blank) -> that song's code; id ``song:<song_id>``. Singers: the ``index_singers``
    singers with the most coded songs (ties: their summed popularity, then name) -> the distinct codes of their
    ``max_codes_per_singer`` most popular songs; id ``singer:<name>``. Deterministic; blank names are skipped.
    """
    missing = {"song_id", "song_name", "singer"} - set(songs.columns)
    if missing:
        raise ValueError(f"songs lacks columns {sorted(missing)}")
    catalogue = songs.drop_duplicates("song_id")
    coded = [(str(sid), str(name).strip(), str(singer).strip())
             for sid, name, singer in zip(catalogue["song_id"], catalogue["song_name"], catalogue["singer"])
             if str(sid) in code_of]
    coded.sort(key=lambda r: (-popularity.get(r[0], 0), r[0]))
    rows = []
    for sid, name, singer in [r for r in coded if r[1]][:index_songs]:
        text = f"{name} - {singer}" if singer else name
        rows.append((f"song:{sid}", "train", text, code_tokens(code_of[sid]), 1, 0, "song"))
    by_singer: dict[str, list[str]] = {}
    for sid, _, singer in coded:  # most popular first
        if singer:
            by_singer.setdefault(singer, []).append(sid)
    ranked = sorted(by_singer, key=lambda g: (-len(by_singer[g]), -sum(popularity.get(s, 0) for s in by_singer[g]), g))
    for singer in ranked[:index_singers]:
        codes = list(dict.fromkeys(code_of[s] for s in by_singer[singer][:max_codes_per_singer]))
        rows.append((f"singer:{singer}", "train", singer, " ".join(code_tokens(c) for c in codes), len(codes), 0,
                     "singer"))
    return rows


def _windows(codes: list, size: int, n: int, rng: np.random.Generator) -> list[list]:
    out = [codes[i : i + size] for i in range(0, len(codes), size)][:n]
    # Short playlists give one window; long ones give up to n, topped up with random ordered samples.
    while len(out) < n and len(codes) > size:
        idx = np.sort(rng.choice(len(codes), size=size, replace=False))
        out.append([codes[i] for i in idx])
    return out


# ----------------------------------------------------------------------------------------------------------
# Seq2seq examples
# ----------------------------------------------------------------------------------------------------------


def sequence_target_ids(vocab: SemanticIdVocab, codes: np.ndarray, max_codes: int) -> list[int]:
    """Token ids of a playlist's distinct codes in order (at most ``max_codes``), then eos."""
    ids: list[int] = []
    for code in distinct_codes(codes)[:max_codes]:
        ids.extend(vocab.code_token_ids(code))
    return ids + [vocab.eos_id]


def single_target_ids(vocab: SemanticIdVocab, code: Sequence[int]) -> list[int]:
    """Token ids of one code, then eos."""
    return vocab.code_token_ids(code) + [vocab.eos_id]


def distinct_codes(codes: np.ndarray) -> list[tuple[int, ...]]:
    """Rows of ``codes`` as tuples, first occurrence kept, order preserved."""
    return list(dict.fromkeys(tuple(int(v) for v in row) for row in np.asarray(codes)))


class TigerDataset(torch.utils.data.Dataset):
    """(text, playlist codes) pairs as seq2seq examples, deterministic given ``seed`` and the epoch.

    ``mode="sequence"``: one example per playlist, target = its distinct codes (≤ ``max_codes``) in order.
    ``mode="single"``: ``samples_per_playlist`` examples per playlist per epoch, each a different random code of
    the playlist (without replacement while the playlist has unused codes); call :meth:`set_epoch` to draw new
    codes. Example ``i`` of epoch ``e`` only depends on (seed, e, i), so a resumed run sees the same data.
    """

    def __init__(
        self,
        texts: Sequence[str],
        playlist_codes: Sequence[np.ndarray],
        tokenizer,
        *,
        mode: str = TIGER.target_mode,
        max_codes: int = TIGER.max_codes,
        samples_per_playlist: int = TIGER.samples_per_playlist,
        max_input_length: int = TIGER.max_input_length,
        seed: int = 0,
        samples: Sequence[int] | None = None,
    ):
        if mode not in TARGET_MODES:
            raise ValueError(f"mode must be one of {TARGET_MODES}, got {mode!r}")
        if len(texts) != len(playlist_codes):
            raise ValueError(f"texts ({len(texts)}) and playlist_codes ({len(playlist_codes)}) differ in length")
        if max_codes < 1 or samples_per_playlist < 1:
            raise ValueError("max_codes and samples_per_playlist must be >= 1")
        if samples is not None and (len(samples) != len(texts) or min(samples, default=1) < 1):
            raise ValueError(f"samples must hold one count >= 1 per text ({len(texts)})")
        self.vocab = SemanticIdVocab(tokenizer)
        self.mode = mode
        self.max_codes = int(max_codes)
        self.samples_per_playlist = int(samples_per_playlist) if mode == "single" else 1
        # examples per row per epoch (single mode); the rows' examples are laid out one after another
        per_row = np.full(len(texts), self.samples_per_playlist, dtype=np.int64)
        if samples is not None and mode == "single":
            per_row = np.asarray(samples, dtype=np.int64)
        self._uniform = samples is None or mode != "single"
        self._starts = np.concatenate([[0], np.cumsum(per_row)])
        self.seed = int(seed)
        self.epoch = 0
        self.codes: list[np.ndarray] = []
        for i, codes in enumerate(playlist_codes):
            codes = np.asarray(codes, dtype=np.int64).reshape(-1, self.vocab.depth)
            if len(codes) == 0:
                raise ValueError(f"playlist_codes[{i}] is empty: drop playlists without coded songs first")
            for level, size in enumerate(self.vocab.levels):
                if codes[:, level].min() < 0 or codes[:, level].max() >= size:
                    raise ValueError(f"playlist_codes[{i}] has a level-{level + 1} code outside [0, {size})")
            # Single mode draws among distinct codes so repeated songs do not weigh more.
            self.codes.append(np.asarray(distinct_codes(codes), dtype=np.int64))
        self.input_ids = TextEncoder(tokenizer, max_input_length).encode_ids(list(texts))
        self._sequence_targets = (
            [sequence_target_ids(self.vocab, c, self.max_codes) for c in self.codes] if mode == "sequence" else None
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        if self._uniform:
            playlist, slot = divmod(int(i), self.samples_per_playlist)
        else:
            if not 0 <= int(i) < len(self):
                raise IndexError(i)
            playlist = int(np.searchsorted(self._starts, int(i), side="right")) - 1
            slot = int(i) - int(self._starts[playlist])
        if self._sequence_targets is not None:
            labels = self._sequence_targets[playlist]
        else:
            codes = self.codes[playlist]
            order = np.random.default_rng([self.seed, self.epoch, playlist]).permutation(len(codes))
            labels = single_target_ids(self.vocab, codes[order[slot % len(codes)]])
        return {"input_ids": self.input_ids[playlist], "labels": labels}

    def fingerprint(self) -> str:
        """A short hash of everything that decides the examples (for checkpoint compatibility)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.mode, self.max_codes, self.samples_per_playlist, self.seed]).encode())
        if not self._uniform:
            h.update(np.diff(self._starts).tobytes())
        for ids, codes in zip(self.input_ids, self.codes):
            h.update(np.asarray(ids, dtype=np.int64).tobytes())
            h.update(codes.tobytes())
        return h.hexdigest()[:16]


def make_training_examples(
    texts: Sequence[str],
    playlist_song_ids: Sequence[Sequence[str]],
    code_table: CodeTable,
    tokenizer,
    *,
    mode: str = TIGER.target_mode,
    max_codes: int = TIGER.max_codes,
    samples_per_playlist: int = TIGER.samples_per_playlist,
    max_input_length: int = TIGER.max_input_length,
    seed: int = 0,
) -> TigerDataset:
    """Map each playlist's songs to codes (songs without a code are skipped; playlists left with no code or an
    empty text are dropped, counted in the log) and wrap them in a :class:`TigerDataset`."""
    if len(texts) != len(playlist_song_ids):
        raise ValueError(f"texts ({len(texts)}) and playlist_song_ids ({len(playlist_song_ids)}) differ in length")
    kept_texts, kept_codes = [], []
    for text, songs in zip(texts, playlist_song_ids):
        rows = [code_table.row_of(s) for s in songs]
        rows = [r for r in rows if r is not None]
        if not rows or not isinstance(text, str) or not text.strip():
            continue
        kept_texts.append(text)
        kept_codes.append(code_table.codes[rows])
    log.info("training examples: kept %d of %d playlists (mode=%s)", len(kept_texts), len(texts), mode)
    return TigerDataset(
        kept_texts,
        kept_codes,
        tokenizer,
        mode=mode,
        max_codes=max_codes,
        samples_per_playlist=samples_per_playlist,
        max_input_length=max_input_length,
        seed=seed,
    )


def examples_from_pairs(pairs: pd.DataFrame, tokenizer, *, seed: int = 0,
                        index_samples: int = GENERATOR_DATASET.index_samples, **settings) -> TigerDataset | None:
    """A :class:`TigerDataset` of ``generator_dataset`` rows (``text``, ``target``), or None when there are none;
    ``settings`` are TigerDataset's (mode, max_codes, samples_per_playlist, max_input_length). Index rows
    (``source`` other than "playlist") give ``index_samples`` examples per epoch in single mode."""
    if len(pairs) == 0:
        return None
    if index_samples < 1:
        raise ValueError(f"index_samples must be >= 1, got {index_samples}")
    codes = [np.asarray(parse_target(t), dtype=np.int64) for t in pairs["target"]]
    samples = None
    if "source" in pairs.columns and (pairs["source"] != "playlist").any():
        per_playlist = settings.get("samples_per_playlist", TIGER.samples_per_playlist)
        samples = np.where(pairs["source"].to_numpy() == "playlist", per_playlist, index_samples).tolist()
    return TigerDataset(pairs["text"].tolist(), codes, tokenizer, seed=seed, samples=samples, **settings)


def collate_examples(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad inputs with ``pad_id`` and labels with -100 (ignored by the loss)."""
    batch = pad_inputs([e["input_ids"] for e in examples], pad_id)
    width = max(len(e["labels"]) for e in examples)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, : len(e["labels"])] = torch.as_tensor(e["labels"], dtype=torch.long)
    batch["labels"] = labels
    return batch
