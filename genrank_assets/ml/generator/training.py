"""Stage `generator`, training: the TIGER model on the shared loop (``ml/training.py``).

What is TIGER's own: a batch is ``collate_examples`` of ``{"input_ids", "labels"}`` examples and its loss is T5's
per-token cross-entropy; validation is the mean per-token loss on the val examples (lower is better); datasets
with ``set_epoch`` (``TigerDataset`` in single mode) draw new targets each epoch; the checkpoint fingerprint
covers the architecture, the tokenizer size and both datasets. Everything else (optimizer, schedule,
checkpoints and resume, early stopping, precision, progress lines) is the shared loop's.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from genrank_assets.ml.compute import CPU, Compute
from genrank_assets.ml.generator.dataset import collate_examples
from genrank_assets.ml.training import VAL_LOSS, TrainConfig, TrainResult, TrainTask, shuffled, train

# The defaults of TIGER training; the tiger_model asset config reads them.
TIGER_TRAINING = TrainConfig(epochs=10, lr=1e-3, warmup_ratio=0.05, early_stopping_patience=3)


def train_tiger(
    model,
    tokenizer,
    train_examples: Sequence[dict],
    val_examples: Sequence[dict] | None,
    config: TrainConfig = TIGER_TRAINING,
    compute: Compute = CPU,
    *,
    gradient_checkpointing: bool = False,
    checkpoint_dir: str | Path | None = None,
    log_fn: Callable[[str], None] | None = None,
    name: str = "tiger_model",
) -> TrainResult:
    """Train ``model`` (a T5ForConditionalGeneration) on ``{"input_ids", "labels"}`` examples; the objective is
    the val loss. ``gradient_checkpointing`` trades compute for activation memory during training only. T5 is
    prone to fp16 overflow: prefer bf16 on GPUs that have it (``compute.precision: auto`` does)."""
    pad_id = tokenizer.pad_token_id
    device = compute.torch_device
    val = val_examples if val_examples is not None and len(val_examples) > 0 else None

    def batch_loss(net: torch.nn.Module, rows: np.ndarray) -> torch.Tensor:
        batch = collate_examples([train_examples[int(i)] for i in rows], pad_id)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        return net(**batch).loss  # T5 shifts labels right (decoder start = pad) and ignores -100

    def epoch_order(epoch: int) -> np.ndarray:
        if hasattr(train_examples, "set_epoch"):
            train_examples.set_epoch(epoch)
        return shuffled(len(train_examples), config.seed, epoch)

    def validate() -> dict[str, float]:
        return {"val_loss": evaluate_loss(model, val, pad_id, 2 * config.batch_size, compute)}

    task = TrainTask(
        name=name, n_examples=len(train_examples) if train_examples is not None else 0, batch_loss=batch_loss,
        validate=validate if val is not None else None, objective=VAL_LOSS, epoch_order=epoch_order,
        fingerprint=_fingerprint(model, tokenizer, train_examples, val),
    )
    if gradient_checkpointing:
        model.activation_checkpointing_enable()  # transformers 5 name of gradient_checkpointing_enable
        model.config.use_cache = False
    try:
        return train(model, task, config, compute, checkpoint_dir=checkpoint_dir, log_fn=log_fn)
    finally:
        if gradient_checkpointing:
            model.activation_checkpointing_disable()
            model.config.use_cache = True


@torch.no_grad()
def evaluate_loss(model, examples, pad_id: int, batch_size: int, compute: Compute = CPU) -> float:
    """Mean per-token cross-entropy over ``examples`` (targets of epoch 0 for datasets with ``set_epoch``)."""
    device = compute.torch_device
    if hasattr(examples, "set_epoch"):
        examples.set_epoch(0)
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = collate_examples([examples[i] for i in range(start, min(start + batch_size, len(examples)))], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with compute.autocast():
            loss = model(**batch).loss
        n = int((batch["labels"] != -100).sum())
        total += float(loss) * n
        tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


def _fingerprint(model, tokenizer, train_examples, val_examples) -> str:
    architecture = {
        k: getattr(model.config, k, None)
        for k in ("model_type", "vocab_size", "d_model", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                  "d_kv", "dropout_rate", "feed_forward_proj", "tie_word_embeddings")
    }  # fmt: skip
    parts = {
        "architecture": architecture,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer_size": len(tokenizer),
        "train": _data_fingerprint(train_examples) if train_examples else None,
        "val": _data_fingerprint(val_examples) if val_examples else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _data_fingerprint(examples) -> str:
    if hasattr(examples, "fingerprint"):
        return examples.fingerprint()
    h = hashlib.sha256()
    for e in examples:
        h.update(np.asarray(e["input_ids"], dtype=np.int64).tobytes())
        h.update(b"|")
        h.update(np.asarray(e["labels"], dtype=np.int64).tobytes())
        h.update(b"#")
    return h.hexdigest()[:16]
