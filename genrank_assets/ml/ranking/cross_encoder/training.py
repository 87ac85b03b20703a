"""Stage `ranking`, training: the cross-encoder on the shared loop (``ml/training.py``), and its evaluation.

What is the ranker's own: the examples tables are encoded once (``encode_frame``); a batch's loss is binary
cross-entropy of the logits against the 0/1 labels (``loss="bce"``, pointwise), or with ``loss="listwise"`` the
softmax cross-entropy of each playlist's list (its rows: positives and their negatives), the target spread evenly
over its positives (ListNet's top-one form), a batch then being whole lists, as many as hold ``batch_size`` rows on
average (at least one), so one ``batch_size`` means about the same step for both losses; validation is the loss
trained on, ROC-AUC and F1 / precision / recall / accuracy at probability 0.5, and the val AUC (higher is better) picks the weights; the checkpoint fingerprint
covers the ranker and encoder config, the encoded pairs and the song vectors. Everything else (optimizer,
schedule, checkpoints and resume, early stopping, precision, progress lines) is the shared loop's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from genrank_assets.ml.compute import CPU, Compute
from genrank_assets.ml.ranking.cross_encoder.examples import EncodedPairs, encode_frame
from genrank_assets.ml.ranking.cross_encoder.model import CrossEncoderRanker
from genrank_assets.ml.training import VAL_AUC, TrainConfig, TrainResult, TrainTask, train
from genrank_assets.ml.vectors.song_vectors import SongVectors

# The defaults of ranker training; the ranker_model asset config reads them.
RANKER_TRAINING = TrainConfig(epochs=4, lr=1e-3, warmup_ratio=0.06, early_stopping_patience=2)
LOSSES = ("bce", "listwise")

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
    loss: str = "bce",
) -> TrainResult:
    """Train on (text, song_id, label) rows (``loss``: module docstring; "listwise" groups the rows by their
    ``playlist_id``, each playlist's rows contiguous); the ranker ends holding the weights of its best val AUC.

    ``song_text_of`` (song id -> "name - singer") is required when the ranker reads song text."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    train_pairs = encode_frame(ranker, train_df, song_vectors, song_text_of, "train_df")
    val_pairs = None
    if val_df is not None and len(val_df) > 0:
        val_pairs = encode_frame(ranker, val_df, song_vectors, song_text_of, "val_df")
    device = compute.torch_device

    def bce_loss(net: torch.nn.Module, rows: np.ndarray) -> torch.Tensor:
        input_ids, attention_mask, vectors, labels = train_pairs.batch(ranker, rows, device)
        return F.binary_cross_entropy_with_logits(net(input_ids, attention_mask, vectors).float(), labels)

    lists = list_bounds(train_df) if loss == "listwise" else None

    def listwise_loss(net: torch.nn.Module, list_ids: np.ndarray) -> torch.Tensor:
        rows = np.concatenate([np.arange(lists[i], lists[i + 1]) for i in list_ids])
        input_ids, attention_mask, vectors, labels = train_pairs.batch(ranker, rows, device)
        logits = net(input_ids, attention_mask, vectors).float()
        return listwise_softmax_loss(logits, labels, list_owner(np.diff(lists)[list_ids]).to(device), len(list_ids))

    n_examples = len(train_pairs) if lists is None else len(lists) - 1
    rows_per_batch = config.batch_size
    if lists is not None:
        config = replace(config, batch_size=max(1, round(config.batch_size * n_examples / len(train_pairs))))
        if log_fn is not None:
            log_fn(f"{name}: listwise, {config.batch_size} lists a batch (~{rows_per_batch} rows)")

    def epoch_order(epoch: int) -> np.ndarray:
        # The ranker's own seeded order (kept from before the shared loop, so trained rankers reproduce).
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        return torch.randperm(n_examples, generator=generator).numpy()

    val_lists = list_bounds(val_df) if lists is not None and val_pairs is not None else None

    def validate() -> dict[str, float]:
        return evaluate_ranker(ranker, val_pairs, 2 * rows_per_batch, compute, lists=val_lists)

    task = TrainTask(
        name=name, n_examples=n_examples, batch_loss=bce_loss if lists is None else listwise_loss, objective=VAL_AUC,
        validate=validate if val_pairs is not None else None, epoch_order=epoch_order,
        fingerprint=_fingerprint(ranker, train_pairs, val_pairs) + ("" if lists is None else "-listwise"),
    )
    return train(ranker, task, config, compute, checkpoint_dir=checkpoint_dir, log_fn=log_fn)


def list_bounds(examples: pd.DataFrame) -> np.ndarray:
    """Start row of each playlist's list in ``examples`` and the end: (n_lists + 1,); a list must be one run of
    rows and hold a positive (a list without one has no target)."""
    ids = examples["playlist_id"].astype(str).to_numpy()
    if len(ids) == 0:
        raise ValueError("no examples to make lists of")
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1])
    if len(set(ids[starts].tolist())) != len(starts):
        raise ValueError("a playlist's examples must be contiguous for the listwise loss")
    bounds = np.concatenate([starts, [len(ids)]])
    positives = np.add.reduceat(examples["label"].to_numpy(dtype=np.float64), starts)
    if (positives <= 0).any():
        raise ValueError(f"{int((positives <= 0).sum())} playlists have no positive example: no listwise target")
    return bounds


def list_owner(sizes: np.ndarray) -> torch.Tensor:
    """The list of each row, for lists of ``sizes`` rows laid one after the other (``listwise_softmax_loss``)."""
    return torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes))


def listwise_softmax_loss(logits: torch.Tensor, labels: torch.Tensor, owner: torch.Tensor, n_lists: int
                          ) -> torch.Tensor:
    """Mean over lists of the cross-entropy between softmax(logits) within a list (``owner``: each row's list)
    and the labels spread evenly over the list's positives."""
    top = torch.full((n_lists,), float("-inf"), device=logits.device).scatter_reduce(0, owner, logits, "amax")
    exp = torch.exp(logits - top[owner])
    log_norm = torch.log(torch.zeros(n_lists, device=logits.device).index_add(0, owner, exp)) + top
    log_p = logits - log_norm[owner]
    n_pos = torch.zeros(n_lists, device=logits.device).index_add(0, owner, labels)
    target = labels / n_pos[owner]
    return -(torch.zeros(n_lists, device=logits.device).index_add(0, owner, target * log_p)).mean()


def evaluate_ranker(ranker: CrossEncoderRanker, pairs: EncodedPairs, batch_size: int = 256,
                    compute: Compute = CPU, lists: np.ndarray | None = None) -> dict[str, float]:
    """The loss trained on (BCE; with ``lists``, ``list_bounds`` of the pairs, the listwise loss: a listwise
    model's logits are shift-free, so BCE would not say whether it learned), ROC-AUC (NaN with one class only),
    and F1 / precision / recall / accuracy at probability 0.5."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    with compute.autocast():
        logits = ranker.predict(pairs, batch_size)
    labels = pairs.labels
    if lists is None:
        loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(labels)))
    else:
        loss = float(listwise_softmax_loss(torch.from_numpy(logits).float(), torch.from_numpy(labels),
                                           list_owner(np.diff(lists)), len(lists) - 1))
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
