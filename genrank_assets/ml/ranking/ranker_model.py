"""Stage R: the hybrid cross-encoder ranker.

A (text, song) pair is scored by one T5 encoder in which the two meet:

    song word2vec vector ──Linear──► P "song positions" ┐
                                                         ├─► T5 encoder ─► masked mean pool ─► MLP ─► logit
    "title </s> song name - singer </s>" ──embeddings──► ┘

The song positions come first, so the relative positions between them and the title tokens do not depend on the
title's length (T5 has only relative position biases). Padding sits at the end and is excluded from attention
and from the pooled mean, so a score does not depend on how much a batch was padded.

Contents, top to bottom: config and presets, the model (forward pass), scoring, dataset building
(``build_ranker_examples``), training (``train_ranker``, checkpoint/resume), ``save_ranker`` / ``load_ranker``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
import os
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from genrank_assets.ml.vectors.song_vectors import SongVectors

log = logging.getLogger(__name__)

NEGATIVE_KINDS = ("positive", "random", "generator", "same_cluster")

# T5 encoder sizes for models trained from scratch. "tiny" is for tests and CPU demos.
PRESETS: dict[str, dict] = {
    "tiny": {"d_model": 64, "d_kv": 16, "num_heads": 4, "d_ff": 128, "num_layers": 2},
    "small": {"d_model": 128, "d_kv": 32, "num_heads": 4, "d_ff": 512, "num_layers": 3},
    "base": {"d_model": 256, "d_kv": 32, "num_heads": 8, "d_ff": 1024, "num_layers": 4},
}


@dataclass
class RankerConfig:
    """Everything about the ranker that is not the encoder's own T5Config."""

    song_dim: int
    song_positions: int = 1  # how many encoder input positions the song vector is projected into
    use_song_text: bool = True  # append "song name - singer" after the title
    max_title_tokens: int = 32
    max_song_text_tokens: int = 32
    head_hidden: int = 0  # width of the MLP head; 0 = the encoder's d_model
    head_dropout: float = 0.1
    # Width of the bilinear interaction <A·title, B·song vector> added to the head's logit; 0 = none.
    interaction_dim: int = 32
    # Scale each song vector to unit RMS per component (word2vec norms grow with song frequency, not relevance).
    normalize_song_vectors: bool = True

    def __post_init__(self) -> None:
        if int(self.song_dim) <= 0:
            raise ValueError(f"RankerConfig.song_dim must be positive, got {self.song_dim}")
        if int(self.song_positions) <= 0:
            raise ValueError(f"RankerConfig.song_positions must be positive, got {self.song_positions}")
        if int(self.max_title_tokens) <= 0 or int(self.max_song_text_tokens) <= 0:
            raise ValueError("RankerConfig.max_title_tokens and max_song_text_tokens must be positive")
        if int(self.interaction_dim) < 0:
            raise ValueError(f"RankerConfig.interaction_dim must be >= 0, got {self.interaction_dim}")
        if not 0.0 <= float(self.head_dropout) < 1.0:
            raise ValueError(f"RankerConfig.head_dropout must be in [0, 1), got {self.head_dropout}")


# ---------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------


class CrossEncoderRanker(nn.Module):
    """T5 encoder over [song positions; title tokens; song-text tokens] -> one relevance logit."""

    def __init__(self, encoder, tokenizer, config: RankerConfig):
        super().__init__()
        from transformers import T5EncoderModel

        if not isinstance(encoder, T5EncoderModel):
            raise TypeError(f"encoder must be a transformers T5EncoderModel, got {type(encoder).__name__}")
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("tokenizer must define pad_token_id and eos_token_id")
        if len(tokenizer) > encoder.config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the encoder's vocab_size is {encoder.config.vocab_size}"
            )
        self.config = config
        self.tokenizer = tokenizer
        self.encoder = encoder
        hidden = encoder.config.d_model
        head_hidden = config.head_hidden or hidden
        # One linear map produces all song positions at once: (dim) -> (positions * hidden) -> (positions, hidden).
        self.song_projection = nn.Linear(config.song_dim, config.song_positions * hidden)
        self.head_dense = nn.Linear(hidden, head_hidden)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.head_out = nn.Linear(head_hidden, 1)
        # A direct path from the song vector to the logit. Through the encoder alone the song is one input
        # position among the title's tokens, and on small data the head learned nothing from it for epochs
        # (val AUC 0.50 after 6 epochs on the test data); with this term the same run reaches 0.67-0.73.
        if config.interaction_dim:
            self.title_map = nn.Linear(hidden, config.interaction_dim)
            self.song_map = nn.Linear(config.song_dim, config.interaction_dim)
        # Token embeddings start with std 1 (T5 init); give the song positions a comparable scale for unit-RMS input.
        nn.init.normal_(self.song_projection.weight, std=config.song_dim**-0.5)
        nn.init.zeros_(self.song_projection.bias)

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.d_model)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, song_vectors: torch.Tensor
    ) -> torch.Tensor:
        """input_ids, attention_mask: (B, T) right-padded tokens; song_vectors: (B, song_dim) -> logits (B,)."""
        batch = input_ids.shape[0]
        positions = self.config.song_positions
        if self.config.normalize_song_vectors:
            song_vectors = F.normalize(song_vectors, dim=-1) * math.sqrt(song_vectors.shape[-1])
        token_embeds = self.encoder.get_input_embeddings()(input_ids)  # (B, T, H)
        song_embeds = self.song_projection(song_vectors.to(token_embeds.dtype))  # (B, P*H)
        song_embeds = song_embeds.view(batch, positions, self.hidden_size)  # (B, P, H)
        inputs_embeds = torch.cat([song_embeds, token_embeds], dim=1)  # (B, P+T, H): song first
        song_mask = attention_mask.new_ones(batch, positions)
        mask = torch.cat([song_mask, attention_mask], dim=1)  # (B, P+T)
        hidden = self.encoder(inputs_embeds=inputs_embeds, attention_mask=mask).last_hidden_state
        pooled = masked_mean(hidden, mask)  # (B, H), padding excluded
        x = F.gelu(self.head_dense(pooled))
        x = self.head_dropout(x)
        logit = self.head_out(x).squeeze(-1)  # (B,)
        if self.config.interaction_dim:
            # The encoder's reading of the text (song positions excluded), against the raw song vector.
            text = masked_mean(hidden[:, positions:], attention_mask)  # (B, H)
            logit = logit + (self.title_map(text) * self.song_map(song_vectors.to(text.dtype))).sum(-1)
        return logit

    # ---- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_encoder(cls, encoder, tokenizer, song_dim: int, **config_kwargs) -> CrossEncoderRanker:
        """Start from a trained T5: a T5ForConditionalGeneration / T5Model (its encoder half is used), a
        T5EncoderModel, or the T5Stack returned by ``get_encoder()``. Weights are copied: the ranker never shares
        a parameter with the model it came from."""
        return cls(copy_t5_encoder(encoder), tokenizer, RankerConfig(song_dim=song_dim, **config_kwargs))

    @classmethod
    def from_config(
        cls,
        tokenizer,
        preset: str | Mapping = "tiny",
        song_dim: int = 64,
        *,
        seed: int = 0,
        dropout_rate: float = 0.1,
        **config_kwargs,
    ) -> CrossEncoderRanker:
        """A randomly initialised T5 encoder of a named preset (``PRESETS``) or a dict of T5Config fields."""
        from transformers import T5Config, T5EncoderModel

        if isinstance(preset, str):
            if preset not in PRESETS:
                raise ValueError(f"preset must be one of {sorted(PRESETS)} or a dict, got {preset!r}")
            sizes = dict(PRESETS[preset])
        else:
            sizes = dict(preset)
        t5_config = T5Config(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            dropout_rate=dropout_rate,
            is_encoder_decoder=False,
            use_cache=False,
            **sizes,
        )
        with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
            torch.manual_seed(seed)
            encoder = T5EncoderModel(t5_config)
            ranker = cls(encoder, tokenizer, RankerConfig(song_dim=song_dim, **config_kwargs))
        return ranker

    @classmethod
    def from_pretrained_base(
        cls, name_or_path: str | os.PathLike, song_dim: int, tokenizer=None, **config_kwargs
    ) -> CrossEncoderRanker:
        """A pretrained T5 checkpoint (local path or hub name; the hub needs network) as the encoder."""
        from transformers import AutoTokenizer, T5EncoderModel

        encoder = T5EncoderModel.from_pretrained(str(name_or_path))
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        return cls(encoder, tokenizer, RankerConfig(song_dim=song_dim, **config_kwargs))

    # ---- tokenisation ---------------------------------------------------------------------------------

    def token_ids(self, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """Token ids of each text, truncated to ``max_tokens - 1``, closed by </s>."""
        if len(texts) == 0:
            return []
        encoded = self.tokenizer([str(t) for t in texts], add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        return [list(ids[: max_tokens - 1]) + [eos] for ids in encoded]

    def pad(
        self, sequences: Sequence[Sequence[int]], pad_to: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token lists into (input_ids, attention_mask) int64 tensors."""
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        length = int(lengths.max())
        if pad_to is not None:
            if pad_to < length:
                raise ValueError(f"pad_to={pad_to} is shorter than the longest sequence ({length})")
            length = pad_to
        mask = np.arange(length)[None, :] < lengths[:, None]  # (n, length), True on real tokens
        ids = np.full((len(sequences), length), self.tokenizer.pad_token_id, dtype=np.int64)
        ids[mask] = np.fromiter(
            itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum())
        )
        return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))

    def encode_pairs(
        self, texts: Sequence[str], song_texts: Sequence[str] | None, pad_to: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) for pairs; each distinct text is tokenised once."""
        song_texts = self._check_song_texts(song_texts, len(texts))
        unique_texts = list(dict.fromkeys(texts))
        text_tokens = dict(zip(unique_texts, self.token_ids(unique_texts, self.config.max_title_tokens)))
        sequences = [text_tokens[t] for t in texts]
        if song_texts is not None:
            song_tokens = self.token_ids(song_texts, self.config.max_song_text_tokens)
            sequences = [t + s for t, s in zip(sequences, song_tokens)]
        return self.pad(sequences, pad_to)

    def _check_song_texts(self, song_texts: Sequence[str] | None, n: int) -> Sequence[str] | None:
        if not self.config.use_song_text:
            return None  # the model was built without song text: ignore it, as in training
        if song_texts is None:
            raise ValueError("song_texts is required: this ranker was built with use_song_text=True")
        if len(song_texts) != n:
            raise ValueError(f"song_texts has {len(song_texts)} entries for {n} candidates")
        return song_texts

    def _check_vectors(self, vectors, name: str) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.config.song_dim:
            raise ValueError(f"{name} must have shape (n, {self.config.song_dim}), got {vectors.shape}")
        return vectors

    # ---- scoring --------------------------------------------------------------------------------------

    @torch.inference_mode()
    def score(
        self, text: str, song_vectors: np.ndarray, song_texts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Relevance logits (n,) of n candidate songs for one text, in one batched forward pass.

        The title is tokenised once and broadcast to every candidate; each candidate adds its vector (and its
        "name - singer" text when the model uses song text)."""
        vectors = self._check_vectors(song_vectors, "song_vectors")
        n = len(vectors)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        song_texts = self._check_song_texts(song_texts, n)
        title = self.token_ids([text], self.config.max_title_tokens)[0]
        if song_texts is None:
            input_ids = torch.as_tensor(title, dtype=torch.long).unsqueeze(0).expand(n, -1)
            attention_mask = torch.ones_like(input_ids)
        else:
            song_tokens = self.token_ids(song_texts, self.config.max_song_text_tokens)
            input_ids, attention_mask = self.pad([title + s for s in song_tokens])
        was_training = self.training
        self.eval()
        device = self.device
        logits = self(input_ids.to(device), attention_mask.to(device), torch.from_numpy(vectors).to(device))
        self.train(was_training)
        return logits.float().cpu().numpy()

    @torch.inference_mode()
    def score_pairs(
        self,
        texts: Sequence[str],
        song_vectors: np.ndarray,
        song_texts: Sequence[str] | None = None,
        batch_size: int = 256,
    ) -> np.ndarray:
        """Relevance logits (n,) of n (text, song) pairs, ``batch_size`` pairs per forward pass."""
        vectors = self._check_vectors(song_vectors, "song_vectors")
        if len(texts) != len(vectors):
            raise ValueError(f"texts has {len(texts)} entries but song_vectors has {len(vectors)} rows")
        song_texts = self._check_song_texts(song_texts, len(texts))
        pairs = EncodedPairs.build(
            self, texts, vectors, np.arange(len(texts)), song_texts, np.zeros(len(texts))
        )
        return predict_logits(self, pairs, batch_size)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where mask == 1; padded positions contribute nothing."""
    keep = mask.unsqueeze(-1).bool()
    total = hidden.masked_fill(~keep, 0.0).sum(dim=1)
    count = keep.sum(dim=1).clamp(min=1).to(hidden.dtype)
    return total / count


def copy_t5_encoder(model):
    """A fresh T5EncoderModel holding a copy of ``model``'s encoder weights (no parameter is shared)."""
    from transformers import T5EncoderModel, T5ForConditionalGeneration, T5Model
    from transformers.models.t5.modeling_t5 import T5Stack

    if isinstance(model, T5EncoderModel):
        state = model.state_dict()
    elif isinstance(model, (T5ForConditionalGeneration, T5Model)):
        state = {k: v for k, v in model.state_dict().items() if k.startswith(("shared.", "encoder."))}
    elif isinstance(model, T5Stack):
        if model.is_decoder:
            raise ValueError("copy_t5_encoder: got a decoder T5Stack; pass the model or model.get_encoder()")
        state = {f"encoder.{k}": v for k, v in model.state_dict().items()}
        state["shared.weight"] = model.embed_tokens.weight
    else:
        raise TypeError(
            "encoder must be a T5ForConditionalGeneration, T5Model, T5EncoderModel or T5Stack, "
            f"got {type(model).__name__}"
        )
    config = copy.deepcopy(model.config)
    config.is_decoder = False
    config.is_encoder_decoder = False
    config.use_cache = False
    encoder = T5EncoderModel(config)
    missing, unexpected = encoder.load_state_dict(state, strict=False)  # copies the tensors
    missing = [k for k in missing if k != "encoder.embed_tokens.weight"]  # tied to shared.weight
    if missing or unexpected:
        raise ValueError(f"copy_t5_encoder: missing weights {missing[:5]}, unexpected {unexpected[:5]}")
    encoder.tie_weights()
    return encoder.float()


# ---------------------------------------------------------------------------------------------------------
# Encoded pairs: tokenised once, batched on demand (training, evaluation, score_pairs)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class EncodedPairs:
    """Pairs kept compact: token lists per distinct text / song text, plus per-pair indices."""

    text_tokens: list[list[int]]
    text_index: np.ndarray  # (n,) into text_tokens
    song_text_tokens: list[list[int]] | None
    song_text_index: np.ndarray | None  # (n,) into song_text_tokens
    vector_table: np.ndarray  # (m, dim) float32
    vector_index: np.ndarray  # (n,) into vector_table
    labels: np.ndarray  # (n,) float32

    def __len__(self) -> int:
        return len(self.text_index)

    @classmethod
    def build(cls, ranker, texts, vector_table, vector_index, song_texts, labels) -> EncodedPairs:
        unique_texts, text_index = _factorize(texts)
        text_tokens = ranker.token_ids(unique_texts, ranker.config.max_title_tokens)
        song_text_tokens = song_text_index = None
        if song_texts is not None:
            unique_song_texts, song_text_index = _factorize(song_texts)
            song_text_tokens = ranker.token_ids(unique_song_texts, ranker.config.max_song_text_tokens)
        return cls(
            text_tokens=text_tokens,
            text_index=text_index,
            song_text_tokens=song_text_tokens,
            song_text_index=song_text_index,
            vector_table=np.ascontiguousarray(vector_table, dtype=np.float32),
            vector_index=np.asarray(vector_index, dtype=np.int64),
            labels=np.asarray(labels, dtype=np.float32),
        )

    def batch(self, ranker, rows: np.ndarray, device) -> tuple[torch.Tensor, ...]:
        sequences = [self.text_tokens[i] for i in self.text_index[rows]]
        if self.song_text_tokens is not None:
            sequences = [t + self.song_text_tokens[s] for t, s in zip(sequences, self.song_text_index[rows])]
        input_ids, attention_mask = ranker.pad(sequences)
        vectors = torch.from_numpy(self.vector_table[self.vector_index[rows]])
        labels = torch.from_numpy(self.labels[rows])
        return input_ids.to(device), attention_mask.to(device), vectors.to(device), labels.to(device)


def _factorize(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(list(values), dtype=object), sort=False)
    return [str(u) for u in uniques], codes.astype(np.int64)


@torch.inference_mode()
def predict_logits(
    ranker: CrossEncoderRanker, pairs: EncodedPairs, batch_size: int, autocast=None
) -> np.ndarray:
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    was_training = ranker.training
    ranker.eval()
    device = ranker.device
    out = np.zeros(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), batch_size):
        rows = np.arange(start, min(start + batch_size, len(pairs)))
        input_ids, attention_mask, vectors, _ = pairs.batch(ranker, rows, device)
        with autocast if autocast is not None else _null_context():
            logits = ranker(input_ids, attention_mask, vectors)
        out[rows] = logits.float().cpu().numpy()
    ranker.train(was_training)
    return out


class _null_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------------------
# Dataset building
# ---------------------------------------------------------------------------------------------------------

_CORPUS_COLUMNS = ("playlist_id", "title", "song_ids", "split")


def build_ranker_examples(
    corpus_df: pd.DataFrame,
    song_vectors: SongVectors,
    *,
    split: str | Sequence[str] = "train",
    max_positives_per_playlist: int = 20,
    negatives_per_positive: int = 4,
    random_negative_share: float = 0.5,
    popularity_weighted: bool = True,
    hard_negative_fn: Callable[[str], Sequence[str]] | None = None,
    cluster_of: Callable[[str], object] | Mapping[str, object] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """(text, song, label) examples from playlists: the title is the text.

    Positives: distinct songs of the playlist that have a vector, at most ``max_positives_per_playlist``
    (seeded sample). Negatives: ``negatives_per_positive`` per positive, never a song of that playlist, never
    repeated within a playlist. ``random_negative_share`` of them are drawn from the whole catalogue (by
    popularity when ``popularity_weighted``, else uniformly); the rest are hard negatives, split evenly between
    the sources given: "generator" (uniform among ``hard_negative_fn(title)``'s proposals) and "same_cluster"
    (a song of the same level-1 cluster as a positive, ``cluster_of(song_id)``). A hard source that runs short
    is filled by the other, then by random songs. Each playlist draws from its own RNG (seed, crc32 of its id),
    so the result is deterministic and a playlist's examples do not depend on the others.
    """
    _check_corpus(corpus_df)
    if max_positives_per_playlist <= 0:
        raise ValueError(f"max_positives_per_playlist must be positive, got {max_positives_per_playlist}")
    if negatives_per_positive < 0:
        raise ValueError(f"negatives_per_positive must be >= 0, got {negatives_per_positive}")
    if not 0.0 <= random_negative_share <= 1.0:
        raise ValueError(f"random_negative_share must be in [0, 1], got {random_negative_share}")
    if len(song_vectors) == 0:
        raise ValueError("song_vectors is empty")
    splits = {split} if isinstance(split, str) else set(split)
    selected = corpus_df[corpus_df["split"].isin(splits)]

    random_sampler = _CatalogueSampler(song_vectors, popularity_weighted)
    clusters = _ClusterIndex(song_vectors, cluster_of) if cluster_of is not None else None
    proposals_of_title: dict[str, list[int]] = {}
    columns: dict[str, list] = {
        c: [] for c in ("playlist_id", "split", "text", "song_id", "label", "negative_kind")
    }
    counts = {"playlists": 0, "skipped_empty_title": 0, "skipped_no_vectors": 0, "short_negatives": 0}

    for pid, title, songs, split_name in zip(
        selected["playlist_id"], selected["title"], selected["song_ids"], selected["split"]
    ):
        pid = str(pid)
        text = "" if title is None or (isinstance(title, float) and math.isnan(title)) else str(title).strip()
        if not text:
            counts["skipped_empty_title"] += 1
            continue
        own_songs = [str(s) for s in songs] if songs is not None else []
        own_indices = {i for i in map(song_vectors.index_of, own_songs) if i is not None}
        candidates = list(dict.fromkeys(i for i in map(song_vectors.index_of, own_songs) if i is not None))
        if not candidates:
            counts["skipped_no_vectors"] += 1
            continue
        rng = np.random.default_rng([seed, zlib.crc32(pid.encode("utf-8"))])
        positives = candidates
        if len(candidates) > max_positives_per_playlist:
            chosen = rng.choice(len(candidates), size=max_positives_per_playlist, replace=False)
            positives = [candidates[i] for i in np.sort(chosen)]

        n_negatives = len(positives) * negatives_per_positive
        n_random = round(n_negatives * random_negative_share)
        hard_sources = []
        if hard_negative_fn is not None:
            hard_sources.append("generator")
        if clusters is not None:
            hard_sources.append("same_cluster")
        if not hard_sources:
            n_random = n_negatives
        quota = _split_evenly(n_negatives - n_random, len(hard_sources))

        taken = set(own_indices)  # never a song of the playlist, never the same negative twice
        negatives: list[tuple[int, str]] = []
        shortfall = 0
        for source, wanted in zip(hard_sources, quota):
            wanted += shortfall
            if source == "generator":
                if text not in proposals_of_title:
                    proposed = (song_vectors.index_of(str(s)) for s in hard_negative_fn(text))
                    proposals_of_title[text] = list(dict.fromkeys(i for i in proposed if i is not None))
                picked = _sample_unused(proposals_of_title[text], wanted, taken, rng)
            else:
                picked = clusters.sample(positives, wanted, taken, rng)
            negatives += [(i, source) for i in picked]
            shortfall = wanted - len(picked)
        n_random += shortfall
        picked = random_sampler.sample(n_random, taken, rng)
        negatives += [(i, "random") for i in picked]
        counts["short_negatives"] += n_random - len(picked)

        rows = [(i, 1, "positive") for i in positives] + [(i, 0, kind) for i, kind in negatives]
        for index, label, kind in rows:
            columns["playlist_id"].append(pid)
            columns["split"].append(str(split_name))
            columns["text"].append(text)
            columns["song_id"].append(song_vectors.song_ids[index])
            columns["label"].append(label)
            columns["negative_kind"].append(kind)
        counts["playlists"] += 1

    examples = pd.DataFrame(columns)
    examples["label"] = examples["label"].astype(np.int64)
    log.info(
        "ranker examples (%s): %d rows from %d playlists (%s); skipped %d empty titles, %d without vectors; "
        "%d negatives short (catalogue too small)",
        ",".join(sorted(splits)),
        len(examples),
        counts["playlists"],
        ", ".join(f"{k}={v}" for k, v in examples["negative_kind"].value_counts().items()),
        counts["skipped_empty_title"],
        counts["skipped_no_vectors"],
        counts["short_negatives"],
    )
    return examples


def _check_corpus(corpus_df: pd.DataFrame) -> None:
    if not isinstance(corpus_df, pd.DataFrame):
        raise TypeError(f"corpus_df must be a pandas DataFrame, got {type(corpus_df).__name__}")
    missing = [c for c in _CORPUS_COLUMNS if c not in corpus_df.columns]
    if missing:
        raise ValueError(f"corpus_df is missing column(s) {missing}; it has {list(corpus_df.columns)}")


def _split_evenly(total: int, parts: int) -> list[int]:
    """total split into `parts` integers that differ by at most one, the larger ones first."""
    if parts == 0:
        return []
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _sample_unused(pool: Sequence[int], wanted: int, taken: set[int], rng: np.random.Generator) -> list[int]:
    """Up to `wanted` distinct items of `pool` not in `taken`, uniformly; adds them to `taken`."""
    if wanted <= 0:
        return []
    free = [i for i in pool if i not in taken]
    if len(free) > wanted:
        free = [free[j] for j in np.sort(rng.choice(len(free), size=wanted, replace=False))]
    taken.update(free)
    return free


class _CatalogueSampler:
    """Draws songs from the whole catalogue, uniformly or proportionally to their train counts."""

    def __init__(self, song_vectors: SongVectors, popularity_weighted: bool):
        self.n = len(song_vectors)
        self.cumulative = None
        if popularity_weighted:
            weights = np.maximum(song_vectors.counts.astype(np.float64), 0.0)
            if weights.sum() <= 0:
                raise ValueError("popularity_weighted=True but song_vectors.counts are all zero")
            self.cumulative = np.cumsum(weights) / weights.sum()

    def draw(self, k: int, rng: np.random.Generator) -> np.ndarray:
        if self.cumulative is None:
            return rng.integers(0, self.n, size=k)
        return np.minimum(np.searchsorted(self.cumulative, rng.random(k), side="right"), self.n - 1)

    def sample(
        self, wanted: int, taken: set[int], rng: np.random.Generator, max_rounds: int = 30
    ) -> list[int]:
        picked: list[int] = []
        for _ in range(max_rounds):
            if len(picked) >= wanted:
                break
            for i in self.draw(2 * (wanted - len(picked)) + 8, rng).tolist():
                if i not in taken:
                    taken.add(i)
                    picked.append(i)
                    if len(picked) == wanted:
                        break
        return picked


class _ClusterIndex:
    """Level-1 cluster of every song with a vector, and the members of each cluster."""

    def __init__(self, song_vectors: SongVectors, cluster_of):
        lookup = cluster_of.get if isinstance(cluster_of, Mapping) else cluster_of
        self.cluster = [lookup(s) for s in song_vectors.song_ids]
        members: dict[object, list[int]] = {}
        for index, code in enumerate(self.cluster):
            if code is not None:
                members.setdefault(_hashable(code), []).append(index)
        self.members = {code: np.asarray(ix, dtype=np.int64) for code, ix in members.items()}

    def sample(
        self, positives: Sequence[int], wanted: int, taken: set[int], rng, attempts: int = 8
    ) -> list[int]:
        """For the k-th negative, a song from the cluster of positive k (cycling), not in `taken`."""
        picked: list[int] = []
        for k in range(wanted * 2):  # two passes over the positives before giving up
            if len(picked) == wanted:
                break
            code = self.cluster[positives[k % len(positives)]]
            pool = self.members.get(_hashable(code)) if code is not None else None
            if pool is None:
                continue
            for i in pool[rng.integers(0, len(pool), size=attempts)].tolist():
                if i not in taken:
                    taken.add(i)
                    picked.append(i)
                    break
        return picked


def _hashable(code):
    return code.item() if isinstance(code, np.generic) else code


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RankerTrainResult:
    # one entry per evaluated epoch, plus a "partial" one when max_steps stopped the run mid-epoch
    history: list[dict]
    best_epoch: int | None  # 1-based epoch whose weights the ranker holds after training
    best_val_auc: float
    global_step: int
    total_steps: int  # epochs * steps per epoch (the LR schedule's length)
    resumed_from_step: int | None
    stopped_early: bool
    train_seconds: float  # this call's optimisation time (evaluation excluded)
    train_samples_per_second: float
    fingerprint: str
    extra: dict = field(default_factory=dict)


CHECKPOINT_FILE = "ranker_checkpoint.pt"


def train_ranker(
    ranker: CrossEncoderRanker,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame | None,
    song_vectors: SongVectors,
    song_text_of: Mapping[str, str] | None = None,
    *,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 3e-4,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.01,
    early_stopping_patience: int = 2,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every_steps: int = 500,
    max_steps: int | None = None,
    log_fn: Callable[[dict], None] | None = None,
    log_every_steps: int = 50,
    eval_batch_size: int | None = None,
    grad_clip: float = 1.0,
) -> RankerTrainResult:
    """Train with BCE on (text, song, label) rows; validate on val ROC-AUC after every epoch.

    AdamW (decay on matrices only) with linear warmup/decay over ``epochs`` full epochs; ``max_steps`` only stops
    early (a budget), it does not shorten the schedule, so a run stopped at step k and resumed equals an
    uninterrupted one. The ranker ends holding the weights of its best validated epoch. With ``checkpoint_dir``,
    model, optimizer, scheduler, RNG and step are saved every ``checkpoint_every_steps`` steps and at each epoch
    end, and a later call with the same configuration and data (same fingerprint) continues from there.
    ``precision``: "fp32", "bf16" (autocast) or "fp16" (autocast + gradient scaling, CUDA only).
    """
    _check_train_args(
        epochs, batch_size, lr, warmup_ratio, early_stopping_patience, checkpoint_every_steps, max_steps
    )
    device = resolve_device(device)
    autocast, scaler = _precision_context(precision, device)
    train_pairs = _encode_frame(ranker, train_df, song_vectors, song_text_of, "train_df")
    val_pairs = None
    if val_df is not None and len(val_df) > 0:
        val_pairs = _encode_frame(ranker, val_df, song_vectors, song_text_of, "val_df")
    eval_batch_size = eval_batch_size or 2 * batch_size

    steps_per_epoch = math.ceil(len(train_pairs) / batch_size)
    total_steps = epochs * steps_per_epoch
    fingerprint = _fingerprint(
        ranker,
        train_pairs,
        val_pairs,
        {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "warmup_ratio": warmup_ratio,
            "weight_decay": weight_decay,
            "early_stopping_patience": early_stopping_patience,
            "precision": precision,
            "seed": seed,
            "grad_clip": grad_clip,
        },
    )

    torch.manual_seed(seed)
    ranker.to(device)
    optimizer = _make_optimizer(ranker, lr, weight_decay)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)
    state = _TrainState()
    resumed_from_step = None
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if (
        checkpoint_path is not None
        and checkpoint_path.exists()
        and _restore_checkpoint(
            checkpoint_path, fingerprint, ranker, optimizer, scheduler, scaler, state, device
        )
    ):
        resumed_from_step = state.step
        log.info("ranker: resumed from %s at step %d (epoch %d)", checkpoint_path, state.step, state.epoch)

    def save() -> None:
        if checkpoint_path is not None:
            _save_checkpoint(checkpoint_path, fingerprint, ranker, optimizer, scheduler, scaler, state)

    def report(record: dict) -> None:
        if log_fn is not None:
            log_fn(dict(record))

    log.info(
        "ranker training: %d train pairs, %d val pairs, %d steps/epoch, %d epochs, device %s, %s",
        len(train_pairs),
        len(val_pairs) if val_pairs else 0,
        steps_per_epoch,
        epochs,
        device,
        precision,
    )
    train_seconds, samples_seen = 0.0, 0
    interrupted = False
    while not state.finished and state.epoch < epochs:
        # The epoch's order depends only on (seed, epoch): a resumed run skips the batches it already did.
        order = torch.randperm(
            len(train_pairs), generator=torch.Generator().manual_seed(seed * 1_000_003 + state.epoch)
        )
        ranker.train()
        first_batch = state.step - state.epoch * steps_per_epoch
        running_loss, running_n, t_log = 0.0, 0, time.perf_counter()
        for b in range(first_batch, steps_per_epoch):
            if max_steps is not None and state.step >= max_steps:
                interrupted = True
                break
            rows = order[b * batch_size : (b + 1) * batch_size].numpy()
            t0 = time.perf_counter()
            loss = _train_step(
                ranker, train_pairs, rows, optimizer, scheduler, scaler, autocast, device, grad_clip
            )
            train_seconds += time.perf_counter() - t0
            samples_seen += len(rows)
            state.step += 1
            state.epoch_loss_sum += loss * len(rows)
            state.epoch_loss_n += len(rows)
            running_loss += loss * len(rows)
            running_n += len(rows)
            if state.step % log_every_steps == 0:
                elapsed = time.perf_counter() - t_log
                record = {
                    "event": "step",
                    "step": state.step,
                    "total_steps": total_steps,
                    "epoch": state.epoch + 1,
                    "loss": running_loss / running_n,
                    "lr": scheduler.get_last_lr()[0],
                    "samples_per_second": running_n / max(elapsed, 1e-9),
                }
                log.info(
                    "ranker step %d/%d epoch %d loss %.4f lr %.2e %.0f samples/s",
                    state.step,
                    total_steps,
                    state.epoch + 1,
                    record["loss"],
                    record["lr"],
                    record["samples_per_second"],
                )
                report(record)
                running_loss, running_n, t_log = 0.0, 0, time.perf_counter()
            if checkpoint_path is not None and state.step % checkpoint_every_steps == 0:
                save()
        if interrupted:
            break

        # End of a full epoch: validate, keep the best weights, decide on early stopping.
        metrics = _epoch_record(ranker, state, val_pairs, eval_batch_size, autocast, partial=False)
        state.history.append(metrics)
        state.epoch += 1
        state.epoch_loss_sum, state.epoch_loss_n = 0.0, 0
        auc = metrics["val_auc"]
        if val_pairs is None or (not math.isnan(auc) and auc > state.best_auc) or state.best_state is None:
            state.best_auc = auc if not math.isnan(auc) else state.best_auc
            state.best_epoch = state.epoch
            state.best_state = _cpu_state(ranker)
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
            if state.bad_epochs >= early_stopping_patience:
                state.stopped_early = True
                state.finished = True
        if state.epoch >= epochs:
            state.finished = True
        _log_epoch(metrics)
        report(dict(event="epoch", **metrics))
        save()

    history = list(state.history)
    best_state, best_epoch, best_auc = state.best_state, state.best_epoch, state.best_auc
    if interrupted:
        save()  # the checkpoint holds the state at the stop, without the partial evaluation below
        if state.step > state.epoch * steps_per_epoch:  # stopped mid-epoch: report where it stands
            metrics = _epoch_record(ranker, state, val_pairs, eval_batch_size, autocast, partial=True)
            history.append(metrics)
            _log_epoch(metrics)
            report(dict(event="partial", **metrics))
            auc = metrics["val_auc"]
            if best_state is None or (not math.isnan(auc) and auc > best_auc):
                best_state, best_epoch, best_auc = None, metrics["epoch"], auc  # keep the current weights
    if best_state is not None:
        ranker.load_state_dict(best_state)
    ranker.eval()
    return RankerTrainResult(
        history=history,
        best_epoch=best_epoch,
        best_val_auc=float(best_auc) if best_auc != -math.inf else float("nan"),
        global_step=state.step,
        total_steps=total_steps,
        resumed_from_step=resumed_from_step,
        stopped_early=state.stopped_early,
        train_seconds=train_seconds,
        train_samples_per_second=samples_seen / train_seconds if train_seconds > 0 else float("nan"),
        fingerprint=fingerprint,
        extra={
            "steps_per_epoch": steps_per_epoch,
            "train_pairs": len(train_pairs),
            "val_pairs": len(val_pairs) if val_pairs else 0,
            "device": str(device),
            "precision": precision,
        },
    )


@dataclass
class _TrainState:
    step: int = 0
    epoch: int = 0  # completed epochs
    history: list = field(default_factory=list)
    best_auc: float = -math.inf
    best_epoch: int | None = None
    best_state: dict | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    finished: bool = False
    epoch_loss_sum: float = 0.0
    epoch_loss_n: int = 0


def _train_step(ranker, pairs, rows, optimizer, scheduler, scaler, autocast, device, grad_clip) -> float:
    input_ids, attention_mask, vectors, labels = pairs.batch(ranker, rows, device)
    with autocast:
        logits = ranker(input_ids, attention_mask, vectors)
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(ranker.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ranker.parameters(), grad_clip)
        optimizer.step()
    scheduler.step()
    return float(loss.detach())


def _epoch_record(ranker, state: _TrainState, val_pairs, eval_batch_size, autocast, partial: bool) -> dict:
    record = {
        "epoch": state.epoch + 1,
        "step": state.step,
        "partial": partial,
        "train_loss": state.epoch_loss_sum / state.epoch_loss_n if state.epoch_loss_n else float("nan"),
    }
    record.update(
        evaluate_ranker(ranker, val_pairs, eval_batch_size, autocast)
        if val_pairs is not None
        else {
            k: float("nan")
            for k in ("val_loss", "val_auc", "val_f1", "val_precision", "val_recall", "val_accuracy")
        }
    )
    return record


def evaluate_ranker(ranker, pairs: EncodedPairs, batch_size: int = 256, autocast=None) -> dict:
    """BCE loss, ROC-AUC, and F1 / precision / recall / accuracy at probability 0.5 (sklearn.metrics)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    logits = predict_logits(ranker, pairs, batch_size, autocast)
    labels = pairs.labels
    loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(labels)))
    predicted = (logits > 0).astype(np.int64)  # sigmoid(logit) > 0.5
    truth = labels.astype(np.int64)
    both_classes = len(np.unique(truth)) == 2
    return {
        "val_loss": loss,
        "val_auc": float(roc_auc_score(truth, logits)) if both_classes else float("nan"),
        "val_f1": float(f1_score(truth, predicted, zero_division=0)),
        "val_precision": float(precision_score(truth, predicted, zero_division=0)),
        "val_recall": float(recall_score(truth, predicted, zero_division=0)),
        "val_accuracy": float(accuracy_score(truth, predicted)),
    }


def _log_epoch(m: dict) -> None:
    log.info(
        "ranker epoch %d%s (step %d): train loss %.4f, val loss %.4f, AUC %.4f, F1 %.3f, P %.3f, R %.3f, acc %.3f",
        m["epoch"],
        " (partial)" if m["partial"] else "",
        m["step"],
        m["train_loss"],
        m["val_loss"],
        m["val_auc"],
        m["val_f1"],
        m["val_precision"],
        m["val_recall"],
        m["val_accuracy"],
    )


def _check_train_args(
    epochs, batch_size, lr, warmup_ratio, patience, checkpoint_every_steps, max_steps
) -> None:
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    if patience <= 0:
        raise ValueError(f"early_stopping_patience must be positive, got {patience}")
    if checkpoint_every_steps <= 0:
        raise ValueError(f"checkpoint_every_steps must be positive, got {checkpoint_every_steps}")
    if max_steps is not None and max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 or None, got {max_steps}")


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available")
    return device


def _precision_context(precision: str, device: torch.device):
    if precision == "fp32":
        return _null_context(), None
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), None
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
        return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")
    raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")


def _make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices (linear weights, embeddings) only, nanoGPT-style."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def _encode_frame(
    ranker, df: pd.DataFrame, song_vectors: SongVectors, song_text_of, name: str
) -> EncodedPairs:
    missing = [c for c in ("text", "song_id", "label") if c not in df.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}")
    if len(df) == 0:
        raise ValueError(f"{name} has no rows")
    labels = pd.to_numeric(df["label"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"{name}.label must hold only 0 and 1")
    song_ids = df["song_id"].astype(str).tolist()
    vector_index = np.fromiter(
        (-1 if (i := song_vectors.index_of(s)) is None else i for s in song_ids),
        dtype=np.int64,
        count=len(song_ids),
    )
    unknown = vector_index < 0
    if unknown.any():
        examples = [song_ids[i] for i in np.flatnonzero(unknown)[:5]]
        raise ValueError(
            f"{name}: {int(unknown.sum())} rows have a song_id without a vector, e.g. {examples}"
        )
    song_texts = None
    if ranker.config.use_song_text:
        if song_text_of is None:
            raise ValueError("song_text_of is required: this ranker was built with use_song_text=True")
        song_texts = [str(song_text_of.get(s, "")) for s in song_ids]
        n_missing = sum(1 for s in set(song_ids) if s not in song_text_of)
        if n_missing:
            log.warning(
                "%s: %d songs have no text in song_text_of; they get an empty song text", name, n_missing
            )
    texts = df["text"].astype(str).tolist()
    return EncodedPairs.build(ranker, texts, song_vectors.vectors, vector_index, song_texts, labels)


def _fingerprint(ranker, train_pairs: EncodedPairs, val_pairs: EncodedPairs | None, args: dict) -> str:
    """Hash of what a checkpoint must match to be resumed: model config, training args, data and vectors."""
    t5 = ranker.encoder.config
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {
                "ranker": asdict(ranker.config),
                "encoder": {
                    k: getattr(t5, k, None)
                    for k in (
                        "vocab_size",
                        "d_model",
                        "d_kv",
                        "d_ff",
                        "num_layers",
                        "num_heads",
                        "relative_attention_num_buckets",
                        "feed_forward_proj",
                        "dropout_rate",
                    )
                },
                "args": args,
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    for pairs in (train_pairs, val_pairs):
        if pairs is None:
            digest.update(b"none")
            continue
        digest.update(json.dumps([pairs.text_tokens, pairs.song_text_tokens]).encode())
        for array in (pairs.text_index, pairs.song_text_index, pairs.vector_index, pairs.labels):
            digest.update(b"none" if array is None else np.ascontiguousarray(array).tobytes())
    digest.update(train_pairs.vector_table.tobytes())
    return digest.hexdigest()[:16]


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_checkpoint(
    path: Path, fingerprint, ranker, optimizer, scheduler, scaler, state: _TrainState
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "fingerprint": fingerprint,
        "model": _cpu_state(ranker),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "state": {k: v for k, v in asdict(state).items() if k != "best_state"},
        "best_state": state.best_state,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint
    log.info("ranker: checkpoint at step %d -> %s", state.step, path)


def _restore_checkpoint(path: Path, fingerprint, ranker, optimizer, scheduler, scaler, state, device) -> bool:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("fingerprint") != fingerprint:
        log.warning("ranker: checkpoint %s belongs to another configuration or data; starting fresh", path)
        return False
    ranker.load_state_dict(payload["model"])
    ranker.to(device)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    torch.set_rng_state(payload["rng_cpu"])
    if payload["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng_cuda"])
    for key, value in payload["state"].items():
        setattr(state, key, value)
    state.best_state = payload["best_state"]
    return True


# ---------------------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------------------

RANKER_FORMAT = "genrank-cross-encoder-ranker"
RANKER_FORMAT_VERSION = 1


def save_ranker(ranker: CrossEncoderRanker, directory: str | os.PathLike) -> Path:
    """Write everything needed to restore the ranker: encoder/ (save_pretrained), tokenizer/,
    ranker_heads.safetensors (song projection + head) and ranker_config.json."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ranker.encoder.save_pretrained(directory / "encoder")
    ranker.tokenizer.save_pretrained(directory / "tokenizer")
    heads = {
        k: v.detach().cpu().contiguous()
        for k, v in ranker.state_dict().items()
        if not k.startswith("encoder.")
    }
    save_file(heads, str(directory / "ranker_heads.safetensors"))
    config = {"format": RANKER_FORMAT, "version": RANKER_FORMAT_VERSION, "ranker": asdict(ranker.config)}
    (directory / "ranker_config.json").write_text(json.dumps(config, indent=2))
    return directory


def load_ranker(directory: str | os.PathLike, device: str = "cpu") -> CrossEncoderRanker:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, T5EncoderModel

    directory = Path(directory)
    for part in ("ranker_config.json", "encoder", "tokenizer", "ranker_heads.safetensors"):
        if not (directory / part).exists():
            raise FileNotFoundError(
                f"load_ranker: {directory / part} is missing (not a saved ranker directory?)"
            )
    config = json.loads((directory / "ranker_config.json").read_text())
    if config.get("format") != RANKER_FORMAT or config.get("version") != RANKER_FORMAT_VERSION:
        raise ValueError(
            f"load_ranker: {directory} holds format {config.get('format')!r} v{config.get('version')}"
        )
    encoder = T5EncoderModel.from_pretrained(str(directory / "encoder"))
    tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"))
    # Rankers saved before these options existed had neither: load them as they were trained.
    saved = {"interaction_dim": 0, "normalize_song_vectors": False, **config["ranker"]}
    ranker = CrossEncoderRanker(encoder, tokenizer, RankerConfig(**saved))
    missing, unexpected = ranker.load_state_dict(
        load_file(str(directory / "ranker_heads.safetensors")), strict=False
    )
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise ValueError(f"load_ranker: heads file has missing {missing} / unexpected {unexpected} weights")
    return ranker.to(resolve_device(device)).eval()
