"""Stage `generator`, part 1: the tokenizer, the semantic-ID vocabulary and how user text is encoded.

* **Tokenizer** (:func:`build_tokenizer`, :func:`load_pretrained_tokenizer`). A byte-level BPE trained with the
  ``tokenizers`` library on playlist titles: NFKC + lowercase normalisation, every CJK character is its own
  pre-token (so "深夜emo伤感情歌" becomes 深|夜|emo|伤|感|情|歌 before BPE merges), English words split as in GPT-2.
  Byte-level BPE has all 256 bytes in its alphabet, so no text ever becomes ``<unk>``. Special tokens are trained
  first (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2; T5 starts decoding from the pad id), the post-processor
  appends ``</s>``, then ``<sep>`` and one token ``<id_l{level}_{k}>`` per level and code are added as special
  tokens.
* **User text** goes through :class:`TextEncoder`, never straight into the tokenizer. Added tokens are matched
  inside raw text by the tokenizer, so a title containing "<id_l1_5>" or "</s>" would smuggle a code or an end
  token into the model input. :func:`neutralise_reserved_tokens` inserts one space after the first character of
  every reserved-token string found in user text ("<id_l1_5>" -> "< id_l1_5>"): the text reads the same, but no
  added token can match any more, and it is then encoded as ordinary pieces.
* **Generated ids** are parsed straight through an id -> (level, code) map (:class:`SemanticIdVocab`), never
  through ``tokenizer.decode``: ``decode(..., skip_special_tokens=True)`` drops the ID tokens, which are special
  tokens.
"""
from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genrank_assets.ml.generator.model import TIGER

log = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SEP_TOKEN = "<sep>"

# CJK ideographs, kana, hangul, their extensions and compatibility blocks: each such character is one pre-token.
CJK_CHARACTER_PATTERN = (
    "[\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]"
)
ID_TOKEN_PATTERN = re.compile(r"^<id_l(\d+)_(\d+)>$")


def id_token(level: int, code: int) -> str:
    """Token string of code ``code`` at 1-based ``level``."""
    return f"<id_l{level}_{code}>"


def _check_levels(levels: Sequence[int]) -> list[int]:
    levels = [int(k) for k in levels]
    if not levels or any(k < 1 for k in levels):
        raise ValueError(f"levels must be a non-empty list of positive codebook sizes, got {levels!r}")
    return levels


def build_tokenizer(
    train_texts: Iterable[str],
    levels: Sequence[int],
    vocab_size: int = TIGER.vocab_size,
    *,
    min_frequency: int = 2,
    max_length: int = TIGER.max_input_length,
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


def make_tokenizer(base_model: str, train_texts: Iterable[str], levels: Sequence[int], *,
                   vocab_size: int = TIGER.vocab_size, max_length: int = TIGER.max_input_length):
    """The tokenizer for ``base_model``: "from_scratch" trains a BPE on ``train_texts``; otherwise the pretrained
    model's own tokenizer. Both with the semantic-ID tokens of ``levels``."""
    if base_model == "from_scratch":
        return build_tokenizer(train_texts, levels, vocab_size=vocab_size, max_length=max_length)
    return load_pretrained_tokenizer(base_model, levels, max_length=max_length)


def load_pretrained_tokenizer(name_or_path: str, levels: Sequence[int], *, max_length: int = TIGER.max_input_length):
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

    def __init__(self, tokenizer, max_length: int = TIGER.max_input_length):
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
