"""Stage `ranking`: the hybrid cross-encoder ranker — the model, its forward pass, scoring, save/load.

A (text, song) pair is scored by one T5 encoder in which the two meet:

    song word2vec vector ──Linear──► P "song positions" ┐
                                                         ├─► T5 encoder ─► masked mean pool ─► MLP ─► logit
    "title </s> song name - singer </s>" ──embeddings──► ┘

The song positions come first, so the relative positions between them and the title tokens do not depend on the
title's length (T5 has only relative position biases). Padding sits at the end and is excluded from attention
and from the pooled mean, so a score does not depend on how much a batch was padded.

Beside this module: ``examples.py`` builds the (text, song, label) examples and tokenises them once
(``EncodedPairs``); ``training.py`` trains the ranker on the shared loop ``ml/training.py``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrank_assets.ml.ranking.cross_encoder.examples import EncodedPairs

# T5 encoder sizes for models trained from scratch. "tiny" is for tests and CPU demos.
PRESETS: dict[str, dict] = {
    "tiny": {"d_model": 64, "d_kv": 16, "num_heads": 4, "d_ff": 128, "num_layers": 2},
    "small": {"d_model": 128, "d_kv": 32, "num_heads": 4, "d_ff": 512, "num_layers": 3},
    "base": {"d_model": 256, "d_kv": 32, "num_heads": 8, "d_ff": 1024, "num_layers": 4},
}


def song_text(name: str, singer: str) -> str:
    """The text the ranker reads for a song; training, the ranker pyfunc and the recommender all use this."""
    return f"{name} - {singer}"


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


# Defaults of the ranker's settings (song_dim has none); the ranker_model asset config reads them.
RANKER_DEFAULTS = {f.name: f.default for f in fields(RankerConfig) if f.default is not MISSING}


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
    def from_encoder(cls, encoder, tokenizer, song_dim: int, *, seed: int = 0, **config_kwargs) -> CrossEncoderRanker:
        """Start from a trained T5: a T5ForConditionalGeneration / T5Model (its encoder half is used), a
        T5EncoderModel, or the T5Stack returned by ``get_encoder()``. Weights are copied: the ranker never shares
        a parameter with the model it came from. The new head is initialised from ``seed``."""
        return _seeded(seed, lambda: cls(copy_t5_encoder(encoder), tokenizer,
                                         RankerConfig(song_dim=song_dim, **config_kwargs)))

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
        cls, name_or_path: str | os.PathLike, song_dim: int, tokenizer=None, *, seed: int = 0, **config_kwargs
    ) -> CrossEncoderRanker:
        """A pretrained T5 checkpoint (local path or hub name; the hub needs network) as the encoder; the new
        head is initialised from ``seed``."""
        from transformers import AutoTokenizer, T5EncoderModel

        encoder = T5EncoderModel.from_pretrained(str(name_or_path))
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        return _seeded(seed, lambda: cls(encoder, tokenizer, RankerConfig(song_dim=song_dim, **config_kwargs)))

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
        return self.predict(pairs, batch_size)

    @torch.inference_mode()
    def predict(self, pairs: EncodedPairs, batch_size: int = 256) -> np.ndarray:
        """Logits (n,) of encoded pairs, ``batch_size`` pairs per forward pass (under the caller's autocast)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        was_training = self.training
        self.eval()
        device = self.device
        out = np.zeros(len(pairs), dtype=np.float32)
        for start in range(0, len(pairs), batch_size):
            rows = np.arange(start, min(start + batch_size, len(pairs)))
            input_ids, attention_mask, vectors, _ = pairs.batch(self, rows, device)
            out[rows] = self(input_ids, attention_mask, vectors).float().cpu().numpy()
        self.train(was_training)
        return out


INIT_FROM = ("tiger", "base_model", "scratch")


def build_ranker(init_from: str, song_dim: int, *, generator=None, base_model: str = "", preset: str = "tiny",
                 seed: int = 0, **config_kwargs) -> CrossEncoderRanker:
    """The ranker before training. ``tiger``: the trained generator's encoder (copied) and tokenizer;
    ``base_model``: a pretrained T5 (local path or hub name); ``scratch``: a fresh encoder of ``preset`` with the
    generator's tokenizer. ``generator`` is a ``TigerGenerator`` (needed for tiger and scratch)."""
    if init_from not in INIT_FROM:
        raise ValueError(f"init_from must be one of {INIT_FROM}, got {init_from!r}")
    if init_from == "base_model":
        if not base_model:
            raise ValueError("init_from=base_model needs base_model (a local path or hub name)")
        return CrossEncoderRanker.from_pretrained_base(base_model, song_dim, seed=seed, **config_kwargs)
    if generator is None:
        raise ValueError(f"init_from={init_from} needs the trained generator")
    if init_from == "tiger":
        return CrossEncoderRanker.from_encoder(generator.model, generator.tokenizer, song_dim, seed=seed,
                                               **config_kwargs)
    return CrossEncoderRanker.from_config(generator.tokenizer, preset, song_dim, seed=seed, **config_kwargs)


def _seeded(seed: int, make):
    """``make()`` with torch's RNG seeded by ``seed`` and the caller's RNG state restored afterwards: a new
    layer's init depends on the seed alone, not on what the process drew before (in one process after the other
    steps, a fresh step process and a long-lived dask worker gave three different heads)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


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
    return ranker.to(torch.device(device)).eval()
