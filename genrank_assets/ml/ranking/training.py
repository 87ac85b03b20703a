"""Stage `ranking`, training: the cross-encoder on the shared loop (``ml/training.py``), and its evaluation.

What is the ranker's own: the examples tables are encoded once (``encode_frame``); a batch's loss is binary
cross-entropy of the logits against the 0/1 labels; validation is BCE loss, ROC-AUC and F1 / precision / recall
/ accuracy at probability 0.5, and the val AUC (higher is better) picks the weights; the checkpoint fingerprint
covers the ranker and encoder config, the encoded pairs and the song vectors. Everything else (optimizer,
schedule, checkpoints and resume, early stopping, precision, progress lines) is the shared loop's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from genrank_assets.ml.compute import CPU, Compute
from genrank_assets.ml.ranking.examples import EncodedPairs, encode_frame
from genrank_assets.ml.ranking.model import CrossEncoderRanker
from genrank_assets.ml.training import VAL_AUC, TrainConfig, TrainResult, TrainTask, train
from genrank_assets.ml.vectors.song_vectors import SongVectors

# The defaults of ranker training; the ranker_model asset config reads them.
RANKER_TRAINING = TrainConfig(epochs=4, lr=1e-3, warmup_ratio=0.06, early_stopping_patience=2)

VAL_METRICS = ("val_loss", "val_auc", "val_f1", "val_precision", "val_recall", "val_accuracy")


def train_ranker(
    ranker: CrossEncoderRanker,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame | None,
    song_vectors: SongVectors,
    song_text_of: Mapping[str, str] | None = None,
    config: TrainConfig = RANKER_TRAINING,
    compute: Compute = CPU,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    log_fn: Callable[[str], None] | None = None,
    name: str = "ranker_model",
) -> TrainResult:
    """Train with BCE on (text, song_id, label) rows; the ranker ends holding the weights of its best val AUC.

    ``song_text_of`` (song id -> "name - singer") is required when the ranker reads song text."""
    train_pairs = encode_frame(ranker, train_df, song_vectors, song_text_of, "train_df")
    val_pairs = None
    if val_df is not None and len(val_df) > 0:
        val_pairs = encode_frame(ranker, val_df, song_vectors, song_text_of, "val_df")
    device = compute.torch_device

    def batch_loss(net: torch.nn.Module, rows: np.ndarray) -> torch.Tensor:
        input_ids, attention_mask, vectors, labels = train_pairs.batch(ranker, rows, device)
        return F.binary_cross_entropy_with_logits(net(input_ids, attention_mask, vectors).float(), labels)

    def epoch_order(epoch: int) -> np.ndarray:
        # The ranker's own seeded order (kept from before the shared loop, so trained rankers reproduce).
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        return torch.randperm(len(train_pairs), generator=generator).numpy()

    def validate() -> dict[str, float]:
        return evaluate_ranker(ranker, val_pairs, 2 * config.batch_size, compute)

    task = TrainTask(
        name=name, n_examples=len(train_pairs), batch_loss=batch_loss, objective=VAL_AUC,
        validate=validate if val_pairs is not None else None, epoch_order=epoch_order,
        fingerprint=_fingerprint(ranker, train_pairs, val_pairs),
    )
    return train(ranker, task, config, compute, checkpoint_dir=checkpoint_dir, log_fn=log_fn)


def evaluate_ranker(ranker: CrossEncoderRanker, pairs: EncodedPairs, batch_size: int = 256,
                    compute: Compute = CPU) -> dict[str, float]:
    """BCE loss, ROC-AUC (NaN with one class only), and F1 / precision / recall / accuracy at probability 0.5."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    with compute.autocast():
        logits = ranker.predict(pairs, batch_size)
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


def _fingerprint(ranker: CrossEncoderRanker, train_pairs: EncodedPairs, val_pairs: EncodedPairs | None) -> str:
    """Hash of the model config and the data a checkpoint must match (the loop adds the training config)."""
    t5 = ranker.encoder.config
    encoder = {k: getattr(t5, k, None) for k in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                                                 "relative_attention_num_buckets", "feed_forward_proj",
                                                 "dropout_rate")}
    digest = hashlib.sha256()
    digest.update(json.dumps({"ranker": asdict(ranker.config), "encoder": encoder}, sort_keys=True,
                             default=str).encode())
    for pairs in (train_pairs, val_pairs):
        if pairs is None:
            digest.update(b"none")
            continue
        digest.update(json.dumps([pairs.text_tokens, pairs.song_text_tokens]).encode())
        for array in (pairs.text_index, pairs.song_text_index, pairs.vector_index, pairs.labels):
            digest.update(b"none" if array is None else np.ascontiguousarray(array).tobytes())
    digest.update(train_pairs.vector_table.tobytes())
    return digest.hexdigest()[:16]
