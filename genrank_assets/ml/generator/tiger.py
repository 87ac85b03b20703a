"""Stage `generator`: the TIGER generator — text in, semantic-ID codes out, codes -> candidate songs.

The package, in the order data flows through it:

* ``tokenizer.py`` — the BPE tokenizer with the ID tokens, :class:`~.tokenizer.TextEncoder` for user text,
  :class:`~.tokenizer.SemanticIdVocab` (id <-> (level, code));
* ``dataset.py`` — (title, codes) pairs and the seq2seq examples (:class:`~.dataset.TigerDataset`);
* ``model.py`` — the settings' defaults (``TIGER``) and the T5 model (:func:`~.model.build_model`);
* ``training.py`` — :func:`~.training.train_tiger` on the shared loop ``ml/training.py``;
* ``decoding.py`` — the code trie and the constraint that keeps beam search on codes that exist;
* this module — :class:`TigerGenerator`: codes ranked over the beams -> the songs of each code (most popular
  first) -> the first ``n`` distinct songs; :func:`save_tiger` / :func:`load_tiger` round-trip it to a directory.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessorList

from genrank_assets.ml.generator.decoding import CodeTrie, TrieConstraint, TrieLogitsProcessor
from genrank_assets.ml.generator.model import PRIOR_MASSES, TIGER
from genrank_assets.ml.generator.tokenizer import SemanticIdVocab, TextEncoder

SAVE_FORMAT_VERSION = 1
# Beam scores below this are HF beam search's filler beams (initialised at -1e9), not real hypotheses.
PLACEHOLDER_SCORE = -1e6


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

    ``target_mode`` and ``max_codes`` must match how the model was trained. ``prior_weight`` > 0 adds the
    popularity prior to beam search (``decoding.py``: a beam scores log P(prefix | text) + w log(1 + mass), the
    mass under a prefix being its songs' train popularity, ``prior_mass="popularity"``, or their number,
    ``"songs"``); beam scores and code order then include it. Counters ``codes_generated`` and
    ``invalid_codes`` accumulate over calls (``invalid_code_rate``); with the trie (``constrained=True``, the
    default) the invalid count stays 0.
    """

    def __init__(
        self,
        model,
        tokenizer,
        code_table: CodeTable,
        *,
        target_mode: str = TIGER.target_mode,
        max_codes: int = TIGER.max_codes,
        max_input_length: int = TIGER.max_input_length,
        num_beams: int = TIGER.num_beams,
        prior_weight: float = TIGER.prior_weight,
        prior_mass: str = TIGER.prior_mass,
    ):
        if prior_mass not in PRIOR_MASSES:
            raise ValueError(f"prior_mass must be one of {PRIOR_MASSES}, got {prior_mass!r}")
        prior_weight = float(prior_weight)
        if not math.isfinite(prior_weight) or prior_weight < 0:
            raise ValueError(f"prior_weight must be a finite number >= 0, got {prior_weight!r}")
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
        self.trie = CodeTrie(code_table.codes, code_table.popularity if prior_mass == "popularity" else None)
        self.max_codes = int(max_codes)
        self.prior_weight = prior_weight
        self.prior_mass = prior_mass
        self.constraint = TrieConstraint(self.trie, self.vocab, mode=target_mode, max_codes=max_codes)
        # by (max_codes, prior_weight); each caches its allowed ids inside
        self._processors = {(self.max_codes, prior_weight): TrieLogitsProcessor(self.constraint, prior_weight)}
        self.encoder = TextEncoder(tokenizer, max_input_length)
        self.target_mode = target_mode
        self.num_beams = int(num_beams)
        self.codes_generated = 0
        self.invalid_codes = 0

    def with_code_table(self, code_table: CodeTable) -> TigerGenerator:
        """The same model and settings over another code table (e.g. the catalogue's, with new songs placed under
        codes by the quantizer): the trie follows the table, so a new song is reachable with no retraining."""
        c = self.config
        return TigerGenerator(self.model, self.tokenizer, code_table, target_mode=c["target_mode"],
                              max_codes=c["max_codes"], max_input_length=c["max_input_length"],
                              num_beams=c["num_beams"], prior_weight=c["prior_weight"], prior_mass=c["prior_mass"])

    @property
    def config(self) -> dict:
        return {
            "target_mode": self.target_mode,
            "max_codes": self.max_codes,
            "max_input_length": self.encoder.max_length,
            "num_beams": self.num_beams,
            "prior_weight": self.prior_weight,
            "prior_mass": self.prior_mass,
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
        self, text: str, num_beams: int | None = None, max_codes: int | None = None, constrained: bool = True,
        prior_weight: float | None = None,
    ) -> list[tuple[tuple[int, ...], float]]:
        """Codes for ``text``, best first, each with the log-score of the best beam that holds it.

        Order: best beam score, then the number of beams that hold the code, then position in that beam.
        Invalid codes (only possible with ``constrained=False``) are counted and left out. ``max_codes`` caps
        the codes per beam in sequence mode (default: the generator's); single mode emits one code per beam.
        ``prior_weight`` overrides the generator's (the prior needs the trie: ignored with ``constrained=False``).
        """
        return self.generate_codes_batch([text], num_beams, max_codes, constrained=constrained,
                                         prior_weight=prior_weight)[0]

    def generate_codes_batch(
        self,
        texts: Sequence[str],
        num_beams: int | None = None,
        max_codes: int | None = None,
        *,
        constrained: bool = True,
        batch_size: int = 16,
        prior_weight: float | None = None,
    ) -> list[list[tuple[tuple[int, ...], float]]]:
        """:meth:`generate_codes` for many texts, ``batch_size`` texts per ``generate`` call."""
        texts = [self._check_text(t, i) for i, t in enumerate(texts)]
        num_beams = int(num_beams or self.num_beams)
        if num_beams < 1 or batch_size < 1:
            raise ValueError("num_beams and batch_size must be >= 1")
        processor = self._processor(max_codes, self.prior_weight if prior_weight is None else prior_weight)
        results = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            sequences, scores = self._beam_search(chunk, num_beams, processor, constrained)
            for b in range(len(chunk)):
                rows = range(b * num_beams, (b + 1) * num_beams)
                results.append(self._rank_codes([sequences[r] for r in rows], [scores[r] for r in rows]))
        return results

    def _processor(self, max_codes: int | None, prior_weight: float) -> TrieLogitsProcessor:
        if self.target_mode == "single" or max_codes is None:
            max_codes = self.max_codes
        key = (max_codes, float(prior_weight))
        if key not in self._processors:
            same = next((p for (m, _), p in self._processors.items() if m == max_codes), None)
            constraint = same.constraint if same is not None else TrieConstraint(
                self.trie, self.vocab, mode=self.target_mode, max_codes=max_codes)
            self._processors[key] = TrieLogitsProcessor(constraint, prior_weight)
        return self._processors[key]

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
        prior_weight=config.get("prior_weight", TIGER.prior_weight),  # generators saved before the prior: default
        prior_mass=config.get("prior_mass", TIGER.prior_mass),
    )
