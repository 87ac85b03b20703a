"""Training loop for the TIGER generator: plain torch, AdamW + linear warmup/decay, resumable.

One epoch = one pass over ``train_examples`` in a seeded random order (the order of epoch ``e`` depends only on
(seed, e)); datasets with ``set_epoch`` (``TigerDataset`` in single mode) draw new targets each epoch.

Checkpoints (``checkpoint_dir/checkpoint.pt``, written atomically) hold model, optimizer, scheduler, grad scaler,
torch RNG states, the position (epoch, batch, step), history and the best weights so far, plus a fingerprint of
the configuration. Calling :func:`train_tiger` again with the same configuration and ``checkpoint_dir`` resumes
where the checkpoint stopped — mid-epoch included — and reproduces the uninterrupted run; a checkpoint with a
different fingerprint is ignored (and overwritten) rather than resumed. ``max_steps`` is a budget for the global
step and is not part of the fingerprint, so a run stopped by it can be continued with a larger budget.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from genrank_assets.ml.generator.tiger import collate_examples

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    history: list[dict]  # one dict per finished epoch: epoch, train_loss, val_loss, steps, samples_per_second
    best_epoch: int | None  # 0-based epoch whose weights the model holds at the end (None: no val / no epoch)
    best_val_loss: float | None
    steps: int  # global optimizer steps done (including those before a resume)
    samples: int  # training examples processed in this call
    samples_per_second: float  # in this call, training steps only
    seconds: float  # wall time of this call
    stop_reason: str  # "epochs" | "early_stopping" | "max_steps"
    resumed_from_step: int | None = None
    precision: str = "fp32"
    checkpoint_path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _TrainState:
    """Everything about the run's position that a checkpoint must restore."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_batches: int = 0
    epoch_samples: int = 0
    epoch_seconds: float = 0.0
    history: list = field(default_factory=list)
    best_val_loss: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stop_reason: str | None = None  # set once training is over


def train_tiger(
    model,
    tokenizer,
    train_examples: Sequence[dict],
    val_examples: Sequence[dict] | None,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    warmup_steps: int | None = None,
    warmup_ratio: float = 0.05,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    early_stopping_patience: int | None = 3,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    gradient_checkpointing: bool = False,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every_steps: int = 500,
    max_steps: int | None = None,
    log_every_steps: int = 50,
    log_fn: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model`` (a T5ForConditionalGeneration) on ``{"input_ids", "labels"}`` examples.

    ``warmup_steps`` wins over ``warmup_ratio`` (share of all steps). Validation runs after every epoch; the
    weights with the best validation loss are loaded into ``model`` at the end (without validation examples,
    the last weights stay). ``early_stopping_patience`` epochs without improvement stop training (None: never).
    ``precision`` "fp16"/"bf16" use autocast on CUDA only; on CPU they fall back to fp32 with a warning. T5 is
    prone to fp16 overflow; prefer bf16 on GPUs that have it.
    """
    _check_arguments(train_examples, epochs, batch_size, lr, warmup_ratio, precision, checkpoint_every_steps, max_steps)
    device = torch.device(device)
    precision = _resolve_precision(precision, device)
    say = _logger(log_fn)
    pad_id = tokenizer.pad_token_id
    has_val = bool(val_examples) and len(val_examples) > 0

    fingerprint = _config_fingerprint(
        model, tokenizer, train_examples, val_examples,
        {"epochs": epochs, "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps,
         "warmup_ratio": warmup_ratio, "weight_decay": weight_decay, "max_grad_norm": max_grad_norm,
         "patience": early_stopping_patience, "precision": precision, "seed": seed},
    )  # fmt: skip
    model.to(device)
    if gradient_checkpointing:
        model.activation_checkpointing_enable()  # transformers 5 name of gradient_checkpointing_enable
        model.config.use_cache = False
    optimizer = _make_optimizer(model, lr, weight_decay)
    batches_per_epoch = math.ceil(len(train_examples) / batch_size)
    total_steps = epochs * batches_per_epoch
    warmup = warmup_steps if warmup_steps is not None else round(warmup_ratio * total_steps)
    scheduler = _linear_warmup_schedule(optimizer, warmup, total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    state = _TrainState()
    best_weights: dict[str, torch.Tensor] | None = None
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    resumed_from = None
    loaded = _load_checkpoint(checkpoint_path, fingerprint, say) if checkpoint_path else None
    if loaded is not None:
        model.load_state_dict(loaded["model"])
        optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(loaded["scheduler"])
        scaler.load_state_dict(loaded["scaler"])
        _set_rng_state(loaded["rng"])
        state = _TrainState(**loaded["state"])
        if state.stop_reason == "max_steps":  # the budget may have grown since; the loop re-checks it
            state.stop_reason = None
        best_weights = loaded["best_weights"]
        resumed_from = state.step
        say(f"resumed from {checkpoint_path} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    else:
        torch.manual_seed(seed)  # dropout; data order and targets are seeded per epoch below

    def save_checkpoint(reason: str) -> None:
        if checkpoint_path is None:
            return
        _save_checkpoint(
            checkpoint_path,
            {
                "fingerprint": fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _get_rng_state(),
                "state": asdict(state),
                "best_weights": best_weights,
            },
        )
        log.debug("checkpoint (%s) at step %d", reason, state.step)

    say(
        f"training: {len(train_examples)} examples, {batches_per_epoch} batches/epoch x {epochs} epochs = "
        f"{total_steps} steps, warmup {warmup}, device {device}, precision {precision}"
    )
    started = time.perf_counter()
    samples_this_call, train_seconds = 0, 0.0
    while state.stop_reason is None and state.epoch < epochs:
        epoch = state.epoch
        if hasattr(train_examples, "set_epoch"):
            train_examples.set_epoch(epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(train_examples))
        model.train()
        while state.batch_in_epoch < batches_per_epoch:
            if max_steps is not None and state.step >= max_steps:
                state.stop_reason = "max_steps"
                break
            b = state.batch_in_epoch
            t0 = time.perf_counter()
            batch = collate_examples([train_examples[int(i)] for i in order[b * batch_size : (b + 1) * batch_size]], pad_id)
            loss = _train_step(model, batch, device, precision, optimizer, scheduler, scaler, max_grad_norm)
            seconds = time.perf_counter() - t0
            n = len(batch["input_ids"])
            state.step += 1
            state.batch_in_epoch += 1
            state.epoch_loss_sum += loss
            state.epoch_batches += 1
            state.epoch_samples += n
            state.epoch_seconds += seconds
            samples_this_call += n
            train_seconds += seconds
            if state.step % log_every_steps == 0:
                say(
                    f"epoch {epoch} step {state.step}/{total_steps} loss {loss:.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} {samples_this_call / max(train_seconds, 1e-9):.0f} samples/s"
                )
            if state.step % checkpoint_every_steps == 0 and state.batch_in_epoch < batches_per_epoch:
                save_checkpoint("every")
        if state.stop_reason == "max_steps":
            save_checkpoint("max_steps")
            break

        val_loss = evaluate_loss(model, val_examples, pad_id, batch_size * 2, device, precision) if has_val else None
        train_loss = state.epoch_loss_sum / max(state.epoch_batches, 1)
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "steps": state.step,
                "samples_per_second": state.epoch_samples / max(state.epoch_seconds, 1e-9),
            }
        )
        if val_loss is not None and (state.best_val_loss is None or val_loss < state.best_val_loss):
            state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        elif val_loss is not None:
            state.bad_epochs += 1
        say(
            f"epoch {epoch} done: train loss {train_loss:.4f}"
            + (f", val loss {val_loss:.4f} (best {state.best_val_loss:.4f} @ epoch {state.best_epoch})" if has_val else "")
        )
        state.epoch += 1
        state.batch_in_epoch = state.epoch_batches = state.epoch_samples = 0
        state.epoch_loss_sum = state.epoch_seconds = 0.0
        if early_stopping_patience is not None and state.bad_epochs >= early_stopping_patience:
            state.stop_reason = "early_stopping"
            say(f"early stopping: no val improvement for {state.bad_epochs} epochs")
        elif state.epoch >= epochs:
            state.stop_reason = "epochs"
        save_checkpoint("epoch")

    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    if gradient_checkpointing:
        model.activation_checkpointing_disable()
        model.config.use_cache = True
    result = TrainResult(
        history=list(state.history),
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val_loss,
        steps=state.step,
        samples=samples_this_call,
        samples_per_second=samples_this_call / train_seconds if train_seconds > 0 else 0.0,
        seconds=time.perf_counter() - started,
        stop_reason=state.stop_reason or "epochs",
        resumed_from_step=resumed_from,
        precision=precision,
        checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
    )
    say(
        f"training stopped ({result.stop_reason}) at step {result.steps}: "
        f"{result.samples_per_second:.0f} samples/s, {result.seconds:.1f}s"
    )
    return result


# ----------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _train_step(model, batch, device, precision, optimizer, scheduler, scaler, max_grad_norm) -> float:
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with _autocast(device, precision):
        loss = model(**batch).loss  # T5 shifts labels right (decoder start = pad) and ignores -100
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate_loss(model, examples, pad_id: int, batch_size: int, device="cpu", precision: str = "fp32") -> float:
    """Mean per-token cross-entropy over ``examples`` (targets of epoch 0 for datasets with ``set_epoch``)."""
    device = torch.device(device)
    if hasattr(examples, "set_epoch"):
        examples.set_epoch(0)
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = collate_examples([examples[i] for i in range(start, min(start + batch_size, len(examples)))], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with _autocast(device, precision):
            loss = model(**batch).loss
        n = int((batch["labels"] != -100).sum())
        total += float(loss) * n
        tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


def _make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    # Decay matrices only; norms (T5 layer-norm scales) and any biases are not decayed (nanoGPT convention).
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )


def _linear_warmup_schedule(optimizer, warmup_steps: int, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup_steps, max(total_steps, 1))


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------


def _save_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a run killed while writing leaves the previous checkpoint intact


def _load_checkpoint(path: Path, fingerprint: str, say) -> dict | None:
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("fingerprint") != fingerprint:
        say(f"ignoring checkpoint {path}: it belongs to another configuration (fingerprint differs)")
        return None
    return payload


def _get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _config_fingerprint(model, tokenizer, train_examples, val_examples, hyper: dict) -> str:
    architecture = {
        k: getattr(model.config, k, None)
        for k in ("model_type", "vocab_size", "d_model", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                  "d_kv", "dropout_rate", "feed_forward_proj", "tie_word_embeddings")
    }  # fmt: skip
    parts = {
        "architecture": architecture,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer_size": len(tokenizer),
        "train": _data_fingerprint(train_examples),
        "val": _data_fingerprint(val_examples) if val_examples else None,
        "hyper": hyper,
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


# ----------------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------------


def _check_arguments(train_examples, epochs, batch_size, lr, warmup_ratio, precision, every, max_steps) -> None:
    if train_examples is None or len(train_examples) == 0:
        raise ValueError("train_examples is empty")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if every < 1:
        raise ValueError(f"checkpoint_every_steps must be >= 1, got {every}")
    if max_steps is not None and max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "fp32" and device.type != "cuda":
        log.warning("precision %s needs CUDA; training in fp32 on %s", precision, device)
        return "fp32"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bf16; training in fp32")
        return "fp32"
    return precision


def _logger(log_fn: Callable[[str], None] | None) -> Callable[[str], None]:
    def say(line: str) -> None:
        log.info(line)
        if log_fn is not None:
            log_fn(line)

    return say
