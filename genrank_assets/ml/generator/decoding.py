"""Stage `generator`, part 3: trie-constrained decoding, so that every generated code exists.

Beam search runs through HF ``generate``; a :class:`TrieConstraint` is a ``prefix_allowed_tokens_fn``, and
:class:`TrieLogitsProcessor` applies the same rules to all beams in one masking op (what the generator uses: HF
masks beam by beam, slowly). Only prefixes of codes that exist can be extended, so every emitted code maps to
real songs (invalid-code rate 0).

A **popularity prior** can steer the search (:class:`TrieLogitsProcessor` with ``prior_weight`` > 0): the step that
extends prefix ``p`` by ``k`` gains ``w * (log(1 + m(p + k)) - log(1 + m(p)))``, where ``m`` is the mass under a
prefix (:meth:`CodeTrie.mass`: songs, or their train popularity, below it). The gains telescope, so a beam's
score is ``log P(prefix | text) + w * log(1 + m(prefix))`` up to a constant at every step: beams are pruned and
codes ranked by the model's probability times a popularity prior (docs/findings.md: the model does not learn it).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from genrank_assets.ml.generator.model import TARGET_MODES, TIGER
from genrank_assets.ml.generator.tokenizer import SemanticIdVocab


class CodeTrie:
    """Prefix trie over the distinct codes that exist (rows of an int array (n, L)).

    ``weights`` (one per row, >= 0; default 1: each row a song) give :meth:`mass`, the summed weight of the rows
    under a prefix, which the popularity prior reads.
    """

    def __init__(self, codes: np.ndarray, weights: np.ndarray | None = None):
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"codes must be a non-empty 2-D array (n, levels), got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
            raise ValueError("codes must be non-negative integers")
        weights = np.ones(len(codes)) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(codes),) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f"weights must be {len(codes)} finite non-negative numbers, got shape {weights.shape}")
        unique, inverse = np.unique(codes.astype(np.int64), axis=0, return_inverse=True)
        per_code = np.bincount(inverse.ravel(), weights=weights, minlength=len(unique))
        self._mass: dict[tuple[int, ...], float] = {}
        self.depth = int(codes.shape[1])
        self._children: dict[tuple[int, ...], list[int]] = {}
        self._size: dict[tuple[int, ...], int] = Counter()  # number of codes under each prefix
        rows = [tuple(int(v) for v in row) for row in unique]
        for row, w in zip(rows, per_code.tolist()):
            for d in range(self.depth + 1):
                self._size[row[:d]] += 1
                self._mass[row[:d]] = self._mass.get(row[:d], 0.0) + w
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

    def mass(self, prefix: Sequence[int]) -> float:
        """Summed weight of the rows whose code starts with ``prefix`` (0 for an unknown prefix)."""
        return self._mass.get(tuple(prefix), 0.0)


class TrieConstraint:
    """``prefix_allowed_tokens_fn`` for HF ``generate``: only codes of the trie, then eos.

    single mode: exactly one code (L ID tokens), then ``</s>``.
    sequence mode: after a full code, start another code or end with ``</s>``; codes already emitted in this
    sequence are blocked (a prefix is closed once every code below it has been emitted); at most
    ``max_codes`` codes. When blocking leaves nothing, ``</s>``. Finished beams (after ``</s>``/pad) get pad.
    """

    def __init__(self, trie: CodeTrie, vocab: SemanticIdVocab, *, mode: str = TIGER.target_mode,
                 max_codes: int = TIGER.max_codes):
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

    ``prior_weight`` w > 0 adds the popularity prior (module docstring) to the allowed ID tokens:
    ``w * (log(1 + mass(prefix + k)) - log(1 + mass(prefix)))``, with the mass of the constraint's trie.
    """

    def __init__(self, constraint: TrieConstraint, prior_weight: float = 0.0):
        prior_weight = float(prior_weight)
        if not math.isfinite(prior_weight) or prior_weight < 0:
            raise ValueError(f"prior_weight must be a finite number >= 0, got {prior_weight!r}")
        self.constraint = constraint
        self.prior_weight = prior_weight
        self._ids: dict[object, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def _allowed_ids(self, sent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        allowed, key = self.constraint.allowed_with_key(sent)
        entry = self._ids.get(key) if key is not None else None
        if entry is None:
            ids = torch.as_tensor(allowed, dtype=torch.long)
            entry = (ids, self._prior(sent, allowed, key) if self.prior_weight else None)
            if key is not None:
                self._ids[key] = entry
        return entry

    def _prior(self, sent: torch.Tensor, allowed: list[int], key) -> torch.Tensor:
        """The prior's gain of each allowed token (0 for eos / pad)."""
        if key in ("pad", "eos"):
            return torch.zeros(len(allowed))
        vocab, trie = self.constraint.vocab, self.constraint.trie
        prefix = key if key is not None else tuple(vocab.parse(sent.tolist()[1:]).partial)
        base = math.log1p(trie.mass(prefix))
        gains = []
        for tid in allowed:
            code = vocab.id_to_level_code.get(int(tid))
            gains.append(0.0 if code is None else math.log1p(trie.mass((*prefix, code[1]))) - base)
        return self.prior_weight * torch.tensor(gains, dtype=torch.float32)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        per_beam = [self._allowed_ids(sent) for sent in input_ids]
        ids = [e[0] for e in per_beam]
        rows = torch.repeat_interleave(torch.arange(len(ids)), torch.tensor([len(i) for i in ids]))
        cols = torch.cat(ids)
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        allowed[rows, cols] = True
        out = scores.masked_fill(~allowed.to(scores.device), -math.inf)
        if self.prior_weight:
            gain = torch.zeros(scores.shape, dtype=scores.dtype)
            gain[rows, cols] = torch.cat([e[1] for e in per_beam]).to(scores.dtype)
            out = out + gain.to(scores.device)
        return out
