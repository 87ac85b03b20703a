"""Stage `generator`, part 2: the generator's settings and its model, a T5 encoder-decoder.

``TIGER`` holds the defaults of the generator's settings, used by the functions of this package and read by the
``tiger_model`` asset config (one place for each). :func:`build_model` makes a ``T5ForConditionalGeneration``
from a size preset, or from a pretrained checkpoint whose embeddings are resized to the tokenizer; its forward
pass is T5's own (labels shifted right from the pad id, -100 ignored by the loss).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

TARGET_MODES = ("single", "sequence")
PRIOR_MASSES = ("popularity", "songs")  # the beam prior's mass under a prefix: train popularity or song count

MODEL_PRESETS: dict[str, dict] = {
    # ~1.7M parameters with a 2k-piece vocabulary plus 512 ID tokens (docs/findings.md: 128 samples/s sequence targets,
    # 840 samples/s single-code targets on one CPU thread).
    "tiny": {"d_model": 128, "d_ff": 512, "num_layers": 3, "num_decoder_layers": 3, "num_heads": 4, "d_kv": 32},
    "small": {"d_model": 256, "d_ff": 1024, "num_layers": 4, "num_decoder_layers": 4, "num_heads": 4, "d_kv": 64},
    # The size of the original t5-small.
    "base": {"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8, "d_kv": 64},
}


@dataclass(frozen=True)
class TigerDefaults:
    """Defaults of the generator's settings (the asset config reads them; docs/findings.md for the choices)."""

    base_model: str = "from_scratch"  # or a local path / hub name of a pretrained T5
    preset: str = "tiny"  # MODEL_PRESETS key, for from_scratch
    vocab_size: int = 2000  # trained BPE pieces (the ID tokens come on top)
    target_mode: str = "single"  # single: one code per example (TIGER) | sequence: a playlist's codes (the seed's)
    max_codes: int = 20  # codes per target / per beam in sequence mode
    samples_per_playlist: int = 4  # single mode: examples (random codes) per playlist per epoch
    max_input_length: int = 64  # tokens of the text, eos included
    num_beams: int = 50
    # w of the popularity prior in beam search (ml/generator/decoding.py); 0 = off. 1.0 chosen on mpd7k val
    # (docs/findings.md, 2026-12-01): generator-alone NDCG@10 0.057 -> 0.077, its pool recall 0.040 -> 0.050.
    prior_weight: float = 1.0
    prior_mass: str = "popularity"  # PRIOR_MASSES


TIGER = TigerDefaults()


def build_model(
    tokenizer,
    base_model: str = TIGER.base_model,
    preset: str = TIGER.preset,
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
