"""Stage G2: the TIGER generator — text in, semantic-ID codes out, codes -> candidate songs.

Pieces, in the order data flows through them:

1. **Tokenizer** (:func:`build_tokenizer`, :func:`load_pretrained_tokenizer`). A byte-level BPE trained with the
   ``tokenizers`` library on playlist titles: NFKC + lowercase normalisation, every CJK character is its own
   pre-token (so "深夜emo伤感情歌" becomes 深|夜|emo|伤|感|情|歌 before BPE merges), English words split as in GPT-2.
   Byte-level BPE has all 256 bytes in its alphabet, so no text ever becomes ``<unk>``. Special tokens are trained
   first (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2; T5 starts decoding from the pad id), the post-processor
   appends ``</s>``, then ``<sep>`` and one token ``<id_l{level}_{k}>`` per level and code are added as special
   tokens.
2. **User text** goes through :class:`TextEncoder`, never straight into the tokenizer. Added tokens are matched
   inside raw text by the tokenizer, so a title containing "<id_l1_5>" or "</s>" would smuggle a code or an end
   token into the model input. :func:`neutralise_reserved_tokens` inserts one space after the first character of
   every reserved-token string found in user text ("<id_l1_5>" -> "< id_l1_5>"): the text reads the same, but no
   added token can match any more, and it is then encoded as ordinary pieces.
3. **Targets** (:class:`TigerDataset`): "sequence" mode — a playlist's distinct codes in playlist order, up to
   ``max_codes``, as one token sequence ``<id_l1_a> <id_l2_b> <id_l3_c> <id_l1_..> ... </s>`` (the level-1 token
   starts a new code, so no separator is needed; ``<sep>`` stays reserved in the vocabulary); "single" mode
   (TIGER style) — one code per example, a seeded random code of the playlist each time the playlist is sampled.
4. **Model** (:func:`build_model`): a ``T5ForConditionalGeneration`` built from a size preset, or a pretrained
   checkpoint whose embeddings are resized to the tokenizer.
5. **Constrained decoding** (:class:`CodeTrie`, :class:`TrieConstraint`): beam search through HF ``generate``;
   a :class:`TrieConstraint` is a ``prefix_allowed_tokens_fn``, and :class:`TrieLogitsProcessor` applies the same
   rules to all beams in one masking op (what the generator uses: HF masks beam by beam, slowly). Only prefixes
   of codes that exist can be extended, so every emitted code maps to real songs (invalid-code rate 0).
6. **Generator** (:class:`TigerGenerator`): codes ranked over the beams -> the songs of each code (most popular
   first) -> the first ``n`` distinct songs. :func:`save_tiger` / :func:`load_tiger` round-trip it to a directory.

Generated ids are parsed straight through an id -> (level, code) map (:class:`SemanticIdVocab`), never through
``tokenizer.decode``: ``decode(..., skip_special_tokens=True)`` drops the ID tokens, which are special tokens.
"""
from __future__ import annotations

import json
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

log = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SEP_TOKEN = "<sep>"
TARGET_MODES = ("single", "sequence")

# CJK ideographs, kana, hangul, their extensions and compatibility blocks: each such character is one pre-token.
CJK_CHARACTER_PATTERN = (
    "[\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]"
)
ID_TOKEN_PATTERN = re.compile(r"^<id_l(\d+)_(\d+)>$")

MODEL_PRESETS: dict[str, dict] = {
    # ~1.7M parameters with a 2k-piece vocabulary plus 512 ID tokens (docs/findings.md: 128 samples/s sequence targets,
    # 840 samples/s single-code targets on one CPU thread).
    "tiny": {"d_model": 128, "d_ff": 512, "num_layers": 3, "num_decoder_layers": 3, "num_heads": 4, "d_kv": 32},
    "small": {"d_model": 256, "d_ff": 1024, "num_layers": 4, "num_decoder_layers": 4, "num_heads": 4, "d_kv": 64},
    # The size of the original t5-small.
    "base": {"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8, "d_kv": 64},
}

SAVE_FORMAT_VERSION = 1
# Beam scores below this are HF beam search's filler beams (initialised at -1e9), not real hypotheses.
PLACEHOLDER_SCORE = -1e6


def id_token(level: int, code: int) -> str:
    """Token string of code ``code`` at 1-based ``level``."""
    return f"<id_l{level}_{code}>"


def _check_levels(levels: Sequence[int]) -> list[int]:
    levels = [int(k) for k in levels]
    if not levels or any(k < 1 for k in levels):
        raise ValueError(f"levels must be a non-empty list of positive codebook sizes, got {levels!r}")
    return levels


# ----------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------


def build_tokenizer(
    train_texts: Iterable[str],
    levels: Sequence[int],
    vocab_size: int = 2000,
    *,
    min_frequency: int = 2,
    max_length: int = 64,
    max_train_texts: int | None = None,
    seed: int = 0,
):
    """Train a byte-level BPE on ``train_texts`` and add the semantic-ID tokens of ``levels``.

    ``vocab_size`` counts the trained pieces (specials and the 256 byte symbols included); the ``<sep>`` and ID
    tokens come on top. ``max_train_texts`` trains on a seeded random sample of that many texts (BPE training
    itself is deterministic). Returns a ``transformers.PreTrainedTokenizerFast`` with ``model_max_length`` set.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    levels = _check_levels(levels)
    texts = [t for t in train_texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError("train_texts: no non-empty text to train the tokenizer on")
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 byte symbols + specials), got {vocab_size}")
    if max_train_texts is not None and len(texts) > max_train_texts:
        texts = random.Random(seed).sample(texts, max_train_texts)

    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CJK_CHARACTER_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD_TOKEN, EOS_TOKEN, UNK_TOKEN],  # trained first: pad=0, eos=1, unk=2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    eos_id = tok.token_to_id(EOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}", pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}", special_tokens=[(EOS_TOKEN, eos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=max_length,
    )
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    log.info("trained BPE tokenizer: %d pieces from %d texts", tok.get_vocab_size(), len(texts))
    return add_semantic_id_tokens(tokenizer, levels)


def load_pretrained_tokenizer(name_or_path: str, levels: Sequence[int], *, max_length: int = 64):
    """Load a tokenizer with ``AutoTokenizer.from_pretrained`` (local path or hub name) and add the ID tokens.

    The tokenizer must have a pad and an eos token (T5 tokenizers do).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {name_or_path!r} needs a pad and an eos token")
    tokenizer.model_max_length = max_length
    return add_semantic_id_tokens(tokenizer, levels)


def add_semantic_id_tokens(tokenizer, levels: Sequence[int]):
    """Add ``<sep>`` and ``<id_l{l}_{k}>`` for every level and code as special tokens (in place; returned).

    Tokens already present are kept (adding the same levels twice is a no-op).
    """
    levels = _check_levels(levels)
    existing = SemanticIdVocab.levels_in(tokenizer)
    if existing and existing != levels:
        raise ValueError(f"tokenizer already holds ID tokens for levels {existing}, asked to add {levels}")
    new_tokens = [SEP_TOKEN] + [id_token(l, k) for l, size in enumerate(levels, start=1) for k in range(size)]
    tokenizer.add_special_tokens({"extra_special_tokens": new_tokens}, replace_extra_special_tokens=False)
    return tokenizer


def neutralise_reserved_tokens(text: str, reserved_pattern: re.Pattern | None) -> str:
    """Break every reserved-token string in user ``text`` by a space after its first character.

    "<id_l1_5>" -> "< id_l1_5>", "</s>" -> "< /s>". No added token can match the result, so the text is encoded
    as ordinary pieces.
    """
    if reserved_pattern is None:
        return text
    return reserved_pattern.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text)


def reserved_token_pattern(tokenizer) -> re.Pattern | None:
    """A regex matching any added token of ``tokenizer`` (longest first), or None when it has none."""
    tokens = sorted((t for t in tokenizer.get_added_vocab() if len(t) >= 2), key=len, reverse=True)
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in tokens))


class TextEncoder:
    """Encodes user text for the model: reserved-token strings neutralised, truncated to ``max_length``."""

    def __init__(self, tokenizer, max_length: int = 64):
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self._pattern = reserved_token_pattern(tokenizer)
        # Cheap pre-check: only texts holding a first character of some reserved token need the regex.
        self._first_chars = {t[0] for t in tokenizer.get_added_vocab() if len(t) >= 2}

    def clean(self, text: str) -> str:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if any(c in text for c in self._first_chars):
            return neutralise_reserved_tokens(text, self._pattern)
        return text

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids (ending in eos) of each text, unpadded."""
        cleaned = [self.clean(t) for t in texts]
        return self.tokenizer(cleaned, truncation=True, max_length=self.max_length)["input_ids"]

    def encode_batch(self, texts: Sequence[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Padded ``input_ids`` and ``attention_mask`` tensors for a batch of texts."""
        return pad_inputs(self.encode_ids(texts), self.tokenizer.pad_token_id, device)


def pad_inputs(sequences: Sequence[Sequence[int]], pad_id: int, device="cpu") -> dict[str, torch.Tensor]:
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        attention_mask[i, : len(s)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


@dataclass
class ParsedCodes:
    """Codes read from a generated id sequence."""

    codes: list[tuple[int, ...]]  # complete codes, in generation order
    partial: tuple[int, ...]  # an unfinished code at the end (only non-empty mid-generation or when malformed)
    n_malformed: int  # non-ID tokens before eos, levels out of order, an unfinished code at the end
    finished: bool  # an eos (or pad after the start) was reached


class SemanticIdVocab:
    """Token ids of the semantic-ID tokens of a tokenizer, and the reverse id -> (level, code) map."""

    def __init__(self, tokenizer):
        self.levels = self.levels_in(tokenizer)
        if not self.levels:
            raise ValueError("tokenizer has no <id_l{level}_{code}> tokens: call add_semantic_id_tokens first")
        self.pad_id = int(tokenizer.pad_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.sep_id = tokenizer.convert_tokens_to_ids(SEP_TOKEN)
        # level_token_ids[l][k] = id of <id_l{l+1}_{k}>
        self.level_token_ids = [
            np.asarray(tokenizer.convert_tokens_to_ids([id_token(l, k) for k in range(size)]), dtype=np.int64)
            for l, size in enumerate(self.levels, start=1)
        ]
        self.id_to_level_code: dict[int, tuple[int, int]] = {
            int(tid): (l, k) for l, ids in enumerate(self.level_token_ids) for k, tid in enumerate(ids)
        }

    @staticmethod
    def levels_in(tokenizer) -> list[int]:
        """Codebook sizes found among the tokenizer's ID tokens ([] if none); they must be contiguous."""
        found: dict[int, set[int]] = {}
        for token in tokenizer.get_added_vocab():
            m = ID_TOKEN_PATTERN.match(token)
            if m:
                found.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        levels = []
        for level in range(1, len(found) + 1):
            codes = found.get(level)
            if not codes or codes != set(range(len(codes))):
                raise ValueError(f"tokenizer ID tokens are not contiguous at level {level}")
            levels.append(len(codes))
        return levels

    @property
    def depth(self) -> int:
        return len(self.levels)

    def code_token_ids(self, code: Sequence[int]) -> list[int]:
        if len(code) != self.depth:
            raise ValueError(f"code {tuple(code)} has {len(code)} levels, the vocabulary {self.depth}")
        return [int(self.level_token_ids[l][int(k)]) for l, k in enumerate(code)]

    def code_tokens_text(self, code: Sequence[int]) -> str:
        return " ".join(id_token(l, int(k)) for l, k in enumerate(code, start=1))

    def parse(self, ids: Sequence[int]) -> ParsedCodes:
        """Walk generated ids (decoder start already removed) up to eos/pad."""
        codes: list[tuple[int, ...]] = []
        partial: list[int] = []
        malformed = 0
        finished = False
        for tid in ids:
            tid = int(tid)
            if tid == self.eos_id or tid == self.pad_id:
                finished = True
                break
            level_code = self.id_to_level_code.get(tid)
            if level_code is None or level_code[0] != len(partial):
                malformed += 1
                # A stray level-1 token still starts a fresh code; anything else resets.
                partial = [level_code[1]] if level_code is not None and level_code[0] == 0 else []
            else:
                partial.append(level_code[1])
            if len(partial) == self.depth:
                codes.append(tuple(partial))
                partial = []
        if finished and partial:
            malformed += 1
        return ParsedCodes(codes, tuple(partial), malformed, finished)


# ----------------------------------------------------------------------------------------------------------
# Training targets
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
        mode: str = "single",
        max_codes: int = 20,
        samples_per_playlist: int = 1,
        max_input_length: int = 64,
        seed: int = 0,
    ):
        if mode not in TARGET_MODES:
            raise ValueError(f"mode must be one of {TARGET_MODES}, got {mode!r}")
        if len(texts) != len(playlist_codes):
            raise ValueError(f"texts ({len(texts)}) and playlist_codes ({len(playlist_codes)}) differ in length")
        if max_codes < 1 or samples_per_playlist < 1:
            raise ValueError("max_codes and samples_per_playlist must be >= 1")
        self.vocab = SemanticIdVocab(tokenizer)
        self.mode = mode
        self.max_codes = int(max_codes)
        self.samples_per_playlist = int(samples_per_playlist) if mode == "single" else 1
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
        return len(self.codes) * self.samples_per_playlist

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        playlist, slot = divmod(int(i), self.samples_per_playlist)
        if self._sequence_targets is not None:
            labels = self._sequence_targets[playlist]
        else:
            codes = self.codes[playlist]
            order = np.random.default_rng([self.seed, self.epoch, playlist]).permutation(len(codes))
            labels = single_target_ids(self.vocab, codes[order[slot % len(codes)]])
        return {"input_ids": self.input_ids[playlist], "labels": labels}

    def fingerprint(self) -> str:
        """A short hash of everything that decides the examples (for checkpoint compatibility)."""
        import hashlib

        h = hashlib.sha256()
        h.update(json.dumps([self.mode, self.max_codes, self.samples_per_playlist, self.seed]).encode())
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
    mode: str = "single",
    max_codes: int = 20,
    samples_per_playlist: int = 1,
    max_input_length: int = 64,
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


def collate_examples(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad inputs with ``pad_id`` and labels with -100 (ignored by the loss)."""
    batch = pad_inputs([e["input_ids"] for e in examples], pad_id)
    width = max(len(e["labels"]) for e in examples)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, : len(e["labels"])] = torch.as_tensor(e["labels"], dtype=torch.long)
    batch["labels"] = labels
    return batch


# ----------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------


def build_model(
    tokenizer,
    base_model: str = "from_scratch",
    preset: str = "tiny",
    *,
    dropout: float = 0.1,
    seed: int = 0,
):
    """A ``T5ForConditionalGeneration`` sized to ``tokenizer``.

    ``base_model="from_scratch"`` builds a T5Config from ``preset`` (tiny|small|base) with weights seeded by
    ``seed``; otherwise ``base_model`` is a local path or hub name loaded with ``from_pretrained`` and its token
    embeddings are resized to the tokenizer (new rows for the ID tokens).
    """
    from transformers import T5Config, T5ForConditionalGeneration

    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad_id is None or eos_id is None:
        raise ValueError("tokenizer needs a pad and an eos token")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if base_model == "from_scratch":
            if preset not in MODEL_PRESETS:
                raise ValueError(f"preset must be one of {sorted(MODEL_PRESETS)}, got {preset!r}")
            config = T5Config(
                vocab_size=len(tokenizer),
                dropout_rate=dropout,
                feed_forward_proj="relu",
                pad_token_id=pad_id,
                eos_token_id=eos_id,
                decoder_start_token_id=pad_id,  # T5 convention: decoding starts from the pad id
                tie_word_embeddings=True,
                **MODEL_PRESETS[preset],
            )
            model = T5ForConditionalGeneration(config)
        else:
            model = T5ForConditionalGeneration.from_pretrained(base_model)
            model.resize_token_embeddings(len(tokenizer))
            if model.config.pad_token_id != pad_id or model.config.decoder_start_token_id != pad_id:
                log.warning(
                    "pretrained %s: pad/decoder start ids %s/%s differ from the tokenizer's pad %s; using the tokenizer's",
                    base_model, model.config.pad_token_id, model.config.decoder_start_token_id, pad_id,
                )
            model.config.pad_token_id = pad_id
            model.config.eos_token_id = eos_id
            model.config.decoder_start_token_id = pad_id
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.decoder_start_token_id = pad_id, eos_id, pad_id
    n_params = sum(p.numel() for p in model.parameters())
    log.info("T5 generator (%s/%s): %.2fM parameters, vocab %d", base_model, preset, n_params / 1e6, len(tokenizer))
    return model


# ----------------------------------------------------------------------------------------------------------
# Prefix trie and constrained decoding
# ----------------------------------------------------------------------------------------------------------


class CodeTrie:
    """Prefix trie over the distinct codes that exist (rows of an int array (n, L))."""

    def __init__(self, codes: np.ndarray):
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"codes must be a non-empty 2-D array (n, levels), got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
            raise ValueError("codes must be non-negative integers")
        unique = np.unique(codes.astype(np.int64), axis=0)
        self.depth = int(codes.shape[1])
        self._children: dict[tuple[int, ...], list[int]] = {}
        self._size: dict[tuple[int, ...], int] = Counter()  # number of codes under each prefix
        rows = [tuple(int(v) for v in row) for row in unique]
        for row in rows:
            for d in range(self.depth + 1):
                self._size[row[:d]] += 1
        for row in rows:  # rows are sorted, so children lists come out sorted
            for d in range(self.depth):
                prefix = row[:d]
                kids = self._children.setdefault(prefix, [])
                if not kids or kids[-1] != row[d]:
                    kids.append(row[d])
        self._codes = frozenset(rows)

    def __len__(self) -> int:
        return len(self._codes)

    def __contains__(self, code) -> bool:
        return tuple(int(v) for v in code) in self._codes

    def children(self, prefix: Sequence[int]) -> list[int]:
        """Codes allowed after ``prefix`` at the next level ([] for an unknown or full prefix)."""
        return self._children.get(tuple(prefix), [])

    def subtree_size(self, prefix: Sequence[int]) -> int:
        return self._size.get(tuple(prefix), 0)


class TrieConstraint:
    """``prefix_allowed_tokens_fn`` for HF ``generate``: only codes of the trie, then eos.

    single mode: exactly one code (L ID tokens), then ``</s>``.
    sequence mode: after a full code, start another code or end with ``</s>``; codes already emitted in this
    sequence are blocked (a prefix is closed once every code below it has been emitted); at most
    ``max_codes`` codes. When blocking leaves nothing, ``</s>``. Finished beams (after ``</s>``/pad) get pad.
    """

    def __init__(self, trie: CodeTrie, vocab: SemanticIdVocab, *, mode: str = "single", max_codes: int = 20):
        if mode not in TARGET_MODES:
            raise ValueError(f"mode must be one of {TARGET_MODES}, got {mode!r}")
        if trie.depth != vocab.depth:
            raise ValueError(f"trie has {trie.depth} levels, the vocabulary {vocab.depth}")
        if max_codes < 1:
            raise ValueError(f"max_codes must be >= 1, got {max_codes}")
        self.trie, self.vocab, self.mode, self.max_codes = trie, vocab, mode, int(max_codes)
        self._allowed_cache: dict[tuple[int, ...], list[int]] = {}

    def max_new_tokens(self) -> int:
        codes = 1 if self.mode == "single" else self.max_codes
        return codes * self.vocab.depth + 1

    def _allowed_tokens(self, prefix: tuple[int, ...]) -> list[int]:
        """Token ids of the trie children of ``prefix`` (cached, no blocking)."""
        cached = self._allowed_cache.get(prefix)
        if cached is None:
            level_ids = self.vocab.level_token_ids[len(prefix)]
            cached = [int(level_ids[k]) for k in self.trie.children(prefix)]
            self._allowed_cache[prefix] = cached
        return cached

    def __call__(self, batch_id: int, sent: torch.Tensor) -> list[int]:
        return self.allowed_with_key(sent)[0]

    def allowed_with_key(self, sent: torch.Tensor) -> tuple[list[int], object]:
        """Allowed next tokens after ``sent`` (decoder start first), and a hashable key naming that set when it
        recurs (``"pad"``, ``"eos"``, a trie prefix), or None when it was built for this sequence alone."""
        parsed = self.vocab.parse(sent.tolist()[1:])  # position 0 is the decoder start (pad)
        if parsed.finished or parsed.n_malformed:
            return [self.vocab.pad_id], "pad"
        emitted, prefix = parsed.codes, parsed.partial
        at_code_boundary = not prefix
        if at_code_boundary and emitted and (self.mode == "single" or len(emitted) >= self.max_codes):
            return [self.vocab.eos_id], "eos"
        allowed = self._allowed_tokens(prefix)
        if self.mode == "sequence" and emitted:
            allowed = self._block_emitted(prefix, emitted, allowed)
            if not prefix:
                allowed = allowed + [self.vocab.eos_id]
            return (allowed, None) if allowed else ([self.vocab.eos_id], "eos")
        return (allowed, prefix) if allowed else ([self.vocab.eos_id], "eos")

    def _block_emitted(self, prefix, emitted, allowed: list[int]) -> list[int]:
        depth = len(prefix) + 1
        used = Counter(code[:depth] for code in emitted if code[: len(prefix)] == prefix)
        if not used:
            return allowed
        children = self.trie.children(prefix)
        return [
            tid
            for tid, k in zip(allowed, children)
            if used.get(prefix + (k,), 0) < self.trie.subtree_size(prefix + (k,))
        ]


class TrieLogitsProcessor(LogitsProcessor):
    """The rules of a :class:`TrieConstraint` applied to all beams at once (a ``LogitsProcessor``).

    Same result as ``generate(prefix_allowed_tokens_fn=constraint)``, but HF's ``PrefixConstrainedLogitsProcessor``
    writes the mask one beam at a time (~50 µs a beam, a third of a 100-beam query on CPU). Here the allowed ids of
    each recurring set (a trie prefix, "pad", "eos") are cached as a tensor and the mask is set in one indexing op.
    Keep one instance per constraint so the cache lives across queries.
    """

    def __init__(self, constraint: TrieConstraint):
        self.constraint = constraint
        self._ids: dict[object, torch.Tensor] = {}

    def _allowed_ids(self, sent: torch.Tensor) -> torch.Tensor:
        allowed, key = self.constraint.allowed_with_key(sent)
        ids = self._ids.get(key) if key is not None else None
        if ids is None:
            ids = torch.as_tensor(allowed, dtype=torch.long)
            if key is not None:
                self._ids[key] = ids
        return ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        per_beam = [self._allowed_ids(sent) for sent in input_ids]
        rows = torch.repeat_interleave(torch.arange(len(per_beam)), torch.tensor([len(ids) for ids in per_beam]))
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        allowed[rows, torch.cat(per_beam)] = True
        return scores.masked_fill(~allowed.to(scores.device), -math.inf)


# ----------------------------------------------------------------------------------------------------------
# Code table and generator
# ----------------------------------------------------------------------------------------------------------


@dataclass
class CodeTable:
    """Each song's code and its popularity (train occurrence count); row i is ``song_ids[i]``."""

    song_ids: list[str]
    codes: np.ndarray  # int64 (n_songs, L)
    popularity: np.ndarray  # (n_songs,) train counts

    def __post_init__(self) -> None:
        self.song_ids = [str(s) for s in self.song_ids]
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.popularity = np.asarray(self.popularity, dtype=np.float64)
        n = len(self.song_ids)
        if n == 0:
            raise ValueError("code table: song_ids is empty")
        if self.codes.ndim != 2 or len(self.codes) != n:
            raise ValueError(f"code table: codes must have shape ({n}, levels), got {self.codes.shape}")
        if self.popularity.shape != (n,):
            raise ValueError(f"code table: popularity must have shape ({n},), got {self.popularity.shape}")
        if len(set(self.song_ids)) != n:
            raise ValueError("code table: song_ids has duplicates")
        self._row = {s: i for i, s in enumerate(self.song_ids)}
        # Songs of each code, most popular first (ties: table order).
        order = np.lexsort((np.arange(n), -self.popularity))
        self.songs_by_code: dict[tuple[int, ...], list[int]] = {}
        for i in order:
            self.songs_by_code.setdefault(tuple(int(v) for v in self.codes[i]), []).append(int(i))

    def __len__(self) -> int:
        return len(self.song_ids)

    def row_of(self, song_id: str) -> int | None:
        return self._row.get(song_id)


class CandidateList(list):
    """``list[str]`` of candidate song ids, plus how they were found.

    ``shortfall`` = n requested - songs found (> 0 when the beams' codes held fewer than n songs; nothing is
    padded in: filling up, e.g. with popular songs, is the caller's choice). ``codes`` lists the codes used,
    in order, with their scores.
    """

    def __init__(self, song_ids: Iterable[str], n_requested: int, codes: list[tuple[tuple[int, ...], float]]):
        super().__init__(song_ids)
        self.n_requested = int(n_requested)
        self.codes = codes

    @property
    def shortfall(self) -> int:
        return max(0, self.n_requested - len(self))


@dataclass
class _CodeStats:
    best_score: float
    best_beam: int
    position: int
    n_beams: int = 1


class TigerGenerator:
    """Text -> semantic-ID codes (trie-constrained beam search) -> candidate songs.

    ``target_mode`` and ``max_codes`` must match how the model was trained. Counters ``codes_generated`` and
    ``invalid_codes`` accumulate over calls (``invalid_code_rate``); with the trie (``constrained=True``, the
    default) the invalid count stays 0.
    """

    def __init__(
        self,
        model,
        tokenizer,
        code_table: CodeTable,
        *,
        target_mode: str = "single",
        max_codes: int = 20,
        max_input_length: int = 64,
        num_beams: int = 50,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.code_table = code_table
        self.vocab = SemanticIdVocab(tokenizer)
        if code_table.codes.shape[1] != self.vocab.depth:
            raise ValueError(
                f"code table has {code_table.codes.shape[1]} levels, the tokenizer {self.vocab.depth}"
            )
        too_big = code_table.codes >= np.asarray(self.vocab.levels)[None, :]
        if too_big.any():
            raise ValueError(f"code table holds codes outside the tokenizer's levels {self.vocab.levels}")
        self.trie = CodeTrie(code_table.codes)
        self.max_codes = int(max_codes)
        self.constraint = TrieConstraint(self.trie, self.vocab, mode=target_mode, max_codes=max_codes)
        self._processors = {self.max_codes: TrieLogitsProcessor(self.constraint)}  # by max_codes, caches inside
        self.encoder = TextEncoder(tokenizer, max_input_length)
        self.target_mode = target_mode
        self.num_beams = int(num_beams)
        self.codes_generated = 0
        self.invalid_codes = 0

    @property
    def config(self) -> dict:
        return {
            "target_mode": self.target_mode,
            "max_codes": self.max_codes,
            "max_input_length": self.encoder.max_length,
            "num_beams": self.num_beams,
            "levels": self.vocab.levels,
        }

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def invalid_code_rate(self) -> float:
        return self.invalid_codes / self.codes_generated if self.codes_generated else 0.0

    def reset_counters(self) -> None:
        self.codes_generated = self.invalid_codes = 0

    # -- codes ---------------------------------------------------------------------------------------------

    def generate_codes(
        self, text: str, num_beams: int | None = None, max_codes: int | None = None, constrained: bool = True
    ) -> list[tuple[tuple[int, ...], float]]:
        """Codes for ``text``, best first, each with the log-score of the best beam that holds it.

        Order: best beam score, then the number of beams that hold the code, then position in that beam.
        Invalid codes (only possible with ``constrained=False``) are counted and left out. ``max_codes`` caps
        the codes per beam in sequence mode (default: the generator's); single mode emits one code per beam.
        """
        return self.generate_codes_batch([text], num_beams, max_codes, constrained=constrained)[0]

    def generate_codes_batch(
        self,
        texts: Sequence[str],
        num_beams: int | None = None,
        max_codes: int | None = None,
        *,
        constrained: bool = True,
        batch_size: int = 16,
    ) -> list[list[tuple[tuple[int, ...], float]]]:
        """:meth:`generate_codes` for many texts, ``batch_size`` texts per ``generate`` call."""
        texts = [self._check_text(t, i) for i, t in enumerate(texts)]
        num_beams = int(num_beams or self.num_beams)
        if num_beams < 1 or batch_size < 1:
            raise ValueError("num_beams and batch_size must be >= 1")
        processor = self._processor(max_codes)
        results = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            sequences, scores = self._beam_search(chunk, num_beams, processor, constrained)
            for b in range(len(chunk)):
                rows = range(b * num_beams, (b + 1) * num_beams)
                results.append(self._rank_codes([sequences[r] for r in rows], [scores[r] for r in rows]))
        return results

    def _processor(self, max_codes: int | None) -> TrieLogitsProcessor:
        if self.target_mode == "single" or max_codes is None:
            max_codes = self.max_codes
        if max_codes not in self._processors:
            constraint = TrieConstraint(self.trie, self.vocab, mode=self.target_mode, max_codes=max_codes)
            self._processors[max_codes] = TrieLogitsProcessor(constraint)
        return self._processors[max_codes]

    @torch.no_grad()
    def _beam_search(self, texts, num_beams, processor: TrieLogitsProcessor, constrained: bool):
        inputs = self.encoder.encode_batch(texts, self.device)
        # Equivalent to prefix_allowed_tokens_fn=processor.constraint, with the mask set in one go per step.
        processors = LogitsProcessorList([processor] if constrained else [])
        out = self.model.generate(
            **inputs,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            max_new_tokens=processor.constraint.max_new_tokens(),
            do_sample=False,
            early_stopping=True,
            logits_processor=processors,
            output_scores=True,
            return_dict_in_generate=True,
        )
        return out.sequences[:, 1:].tolist(), out.sequences_scores.tolist()

    def _rank_codes(self, sequences: list[list[int]], scores: list[float]) -> list[tuple[tuple[int, ...], float]]:
        beam_order = sorted(range(len(sequences)), key=lambda i: -scores[i])
        stats: dict[tuple[int, ...], _CodeStats] = {}
        for rank, beam in enumerate(beam_order):
            score = scores[beam]
            if not math.isfinite(score) or score < PLACEHOLDER_SCORE:
                # When the trie allows fewer continuations than there are beams, HF beam search fills the rest
                # with copies scored about -1e9 / length; they are not hypotheses.
                continue
            parsed = self.vocab.parse(sequences[beam])
            valid = [c for c in parsed.codes if c in self.trie]
            self.codes_generated += len(parsed.codes) + parsed.n_malformed
            self.invalid_codes += len(parsed.codes) - len(valid) + parsed.n_malformed
            for position, code in enumerate(dict.fromkeys(valid)):
                if code in stats:
                    stats[code].n_beams += 1
                else:
                    stats[code] = _CodeStats(score, rank, position)
        ordered = sorted(stats.items(), key=lambda kv: (kv[1].best_beam, -kv[1].n_beams, kv[1].position))
        return [(code, s.best_score) for code, s in ordered]

    # -- candidates ----------------------------------------------------------------------------------------

    def candidates_from_codes(self, codes: list[tuple[tuple[int, ...], float]], n: int) -> CandidateList:
        """The songs of each code in order (most popular first within a code), first ``n`` distinct."""
        songs: list[str] = []
        seen: set[int] = set()
        for code, _ in codes:
            for row in self.code_table.songs_by_code.get(code, ()):
                if row not in seen:
                    seen.add(row)
                    songs.append(self.code_table.song_ids[row])
                    if len(songs) == n:
                        return CandidateList(songs, n, codes)
        return CandidateList(songs, n, codes)

    def generate_candidates(
        self, text: str, n: int = 100, num_beams: int | None = None, max_codes: int | None = None
    ) -> CandidateList:
        """Up to ``n`` distinct song ids for ``text`` (see :class:`CandidateList` for ``shortfall``)."""
        return self.generate_candidates_batch([text], n, num_beams, max_codes)[0]

    def generate_candidates_batch(
        self,
        texts: Sequence[str],
        n: int = 100,
        num_beams: int | None = None,
        max_codes: int | None = None,
        *,
        batch_size: int = 16,
    ) -> list[CandidateList]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        all_codes = self.generate_codes_batch(texts, num_beams, max_codes, batch_size=batch_size)
        return [self.candidates_from_codes(codes, n) for codes in all_codes]

    @staticmethod
    def _check_text(text, index: int) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text[{index}] must be a non-empty string, got {text!r}")
        return text


# ----------------------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------------------


def save_tiger(generator: TigerGenerator, directory: str | Path) -> Path:
    """Write everything :func:`load_tiger` needs: ``model/`` (save_pretrained), ``tokenizer/``,
    ``code_table.npz`` (song ids, codes, popularity) and ``tiger_config.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator.model.save_pretrained(directory / "model")
    generator.tokenizer.save_pretrained(directory / "tokenizer")
    table = generator.code_table
    np.savez(
        directory / "code_table.npz",
        song_ids=np.asarray(table.song_ids, dtype=str),
        codes=table.codes,
        popularity=table.popularity,
    )
    config = {"format_version": SAVE_FORMAT_VERSION, "n_songs": len(table), **generator.config}
    (directory / "tiger_config.json").write_text(json.dumps(config, indent=2))
    return directory


def load_tiger(directory: str | Path, device: str | torch.device = "cpu") -> TigerGenerator:
    """Restore a generator written by :func:`save_tiger`."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    directory = Path(directory)
    config_path = directory / "tiger_config.json"
    if not config_path.exists():
        raise ValueError(f"{directory} is not a saved TIGER generator (no tiger_config.json)")
    config = json.loads(config_path.read_text())
    if config.get("format_version") != SAVE_FORMAT_VERSION:
        raise ValueError(f"{config_path}: unsupported format_version {config.get('format_version')!r}")
    tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
    model = T5ForConditionalGeneration.from_pretrained(directory / "model").to(device)
    with np.load(directory / "code_table.npz", allow_pickle=False) as data:
        table = CodeTable(data["song_ids"].tolist(), data["codes"], data["popularity"])
    return TigerGenerator(
        model,
        tokenizer,
        table,
        target_mode=config["target_mode"],
        max_codes=config["max_codes"],
        max_input_length=config["max_input_length"],
        num_beams=config["num_beams"],
    )
