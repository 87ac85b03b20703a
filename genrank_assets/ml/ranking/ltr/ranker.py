"""Stage `ranking`, last step of the learning-to-rank stage: a LightGBM ``lambdarank`` model over the features.

:class:`LTRRanker` takes a feature table (one row per (query, candidate), rows of a query contiguous), binary
labels (the candidate is in the query's playlist) and the query of each row. ``fit`` chooses the number of
boosting rounds by K-fold cross-validation over *queries* (early stopping on each held-out fold's NDCG@k, the
rounds averaged), then refits on all queries with that many rounds; ``oof_scores`` are the folds' held-out
predictions, each fold's at the best round of the other folds' curves (never one picked on its own labels): an
honest estimate on the training queries themselves. ``predict`` scores rows, ``rank`` orders a
query's candidates, ``save`` / ``load`` round-trip it to a directory (LightGBM's text model + a JSON header).

Which queries to train on is the caller's choice, and it decides leakage: features must come from models that
never saw the query's playlist (``candidates.check_not_in_training``). The pipeline trains on the LTR holdout and val
(``tables.TRAINING_SPLITS``); docs/findings.md records a ranker trained on train playlists cross-fitted over folds.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

LTR_FORMAT = "genrank-ltr-lambdarank"
LTR_FORMAT_VERSION = 1
OOF_FILE = "oof_scores.npy"  # out-of-fold scores of the training rows, in ``oof_frame`` order


@dataclass(frozen=True)
class LTRParams:
    """LightGBM settings of the ranker (lambdarank, NDCG@``eval_at``), small-data defaults. ``objective`` may
    also be LightGBM's other listwise objective, "rank_xendcg"."""

    objective: str = "lambdarank"
    num_leaves: int = 15
    learning_rate: float = 0.05
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    eval_at: int = 10
    folds: int = 5
    seed: int = 0
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.objective not in ("lambdarank", "rank_xendcg"):
            raise ValueError(f"LTRParams.objective must be 'lambdarank' or 'rank_xendcg', got {self.objective!r}")
        if self.folds < 2:
            raise ValueError(f"LTRParams.folds must be >= 2, got {self.folds}")
        for name in ("num_leaves", "max_rounds", "early_stopping_rounds", "eval_at", "min_data_in_leaf"):
            if getattr(self, name) < 1:
                raise ValueError(f"LTRParams.{name} must be >= 1, got {getattr(self, name)}")

    def lightgbm(self) -> dict:
        return {
            "objective": self.objective, "metric": "ndcg", "eval_at": [self.eval_at], "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate, "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction, "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq, "lambda_l2": self.lambda_l2, "seed": self.seed,
            "deterministic": True, "force_row_wise": True, "num_threads": self.num_threads, "verbosity": -1,
        }


def query_folds(queries: Sequence, folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each row, by its query (crc32 of the query id and seed): a query's rows share one fold."""
    keys = pd.unique(pd.Series(list(queries), dtype=object))
    fold_of = {q: zlib.crc32(f"{seed}:{q}".encode()) % folds for q in keys}
    return np.array([fold_of[q] for q in queries], dtype=np.int64)


def _rounds_from_other_folds(curves: Sequence[np.ndarray], k: int, trained: int) -> int:
    """Rounds for fold ``k``'s out-of-fold scores: the best round of the other folds' mean held-out curve (their
    common length, at most the ``trained`` rounds fold ``k``'s model has); fold ``k``'s own best with one fold."""
    others = [c for j, c in enumerate(curves) if j != k] or [curves[k]]
    length = max(1, min(trained, *(len(c) for c in others)))
    return int(np.argmax(np.mean([c[:length] for c in others], axis=0))) + 1


def _group_sizes(queries: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal query ids; each query must be one contiguous run."""
    change = np.flatnonzero(queries[1:] != queries[:-1]) + 1
    starts = np.concatenate([[0], change])
    if len(set(queries[starts].tolist())) != len(starts):
        raise ValueError("rows of a query must be contiguous (sort the table by query)")
    return np.diff(np.concatenate([starts, [len(queries)]]))


def feature_matrix(frame: pd.DataFrame, names: Sequence[str], order: np.ndarray | None = None,
                   columns: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The ``names`` columns of ``frame`` as one float32 matrix (as the features table is read,
    io_managers.batched_read, and as LightGBM bins them: half the memory of float64), its rows those at the
    positions ``order`` (None: all, in table order); ``columns``: values over every row of ``frame`` used instead
    of those columns. Filled a column at a time, so the matrix is the only copy of the rows (indexing
    ``frame[names].to_numpy()`` would hold two)."""
    missing = [c for c in names if c not in frame.columns and c not in (columns or {})]
    if missing:
        raise ValueError(f"feature table is missing columns {missing[:5]}")
    out = np.empty((len(frame) if order is None else len(order), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        values = (columns or {}).get(name)
        values = frame[name].to_numpy() if values is None else np.asarray(values)
        out[:, j] = values if order is None else values[order]
    return out


@dataclass
class LTRRanker:
    """A fitted lambdarank model and what it was fitted on."""

    feature_names: list[str]
    params: LTRParams = field(default_factory=LTRParams)
    booster: object = None
    n_rounds: int = 0
    cv: dict = field(default_factory=dict)
    oof_scores: np.ndarray | None = None
    # The PoolConfig fields of the pools it was trained on: serving must build pools the same way.
    pool_config: dict = field(default_factory=dict)

    def _matrix(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(frame, np.ndarray):  # the feature columns already, in feature_names order
            if frame.ndim != 2 or frame.shape[1] != len(self.feature_names):
                raise ValueError(f"a feature matrix needs {len(self.feature_names)} columns, got shape {frame.shape}")
            return frame.astype(np.float32, copy=False)
        return feature_matrix(frame, self.feature_names)

    def _arrays(self, frame, labels, queries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(feature matrix, labels, query ids) of a fit, checked to be non-empty and of one length."""
        X, y, q = self._matrix(frame), np.asarray(labels, dtype=np.float64), np.asarray(list(queries), dtype=object)
        if len(X) != len(y) or len(X) != len(q) or len(X) == 0:
            raise ValueError(f"features ({len(X)}), labels ({len(y)}) and queries ({len(q)}) must be non-empty and "
                             "of one length")
        return X, y, q

    def fit(self, frame: pd.DataFrame, labels: Sequence[float], queries: Sequence,
            validation: tuple[pd.DataFrame, Sequence[float], Sequence] | None = None) -> LTRRanker:
        """Without ``validation``: cross-validate the number of rounds over query folds, then refit on every query.
        With ``validation`` = (frame, labels, queries) of other queries: early stopping on them, and the model of
        the best round is kept (``oof_scores`` are then the validation queries' scores)."""
        import lightgbm as lgb

        if validation is not None:
            return self._fit_validated(frame, labels, queries, validation)
        X, y, q = self._arrays(frame, labels, queries)
        _group_sizes(q)
        fold = query_folds(q, self.params.folds, self.params.seed)
        params = self.params.lightgbm()
        best, curves, boosters, held_of = [], [], [], []
        for k in range(self.params.folds):
            train, held = fold != k, fold == k
            if not held.any() or not train.any():
                continue
            # Each fold bins its own rows: the copies X[train] / X[held] are the Datasets' only references, so they
            # go as soon as LightGBM has binned them. (One Dataset of every row with the folds as its subsets, as
            # lightgbm.cv does, bins once, but from every row: on mpd7k that moved the folds' early stopping and
            # the rounds from 152 to 90. A lightgbm.Sequence over the rows samples them for the bins with the
            # Dataset parameters only, not the seed: other bins too.)
            dtrain = lgb.Dataset(X[train], y[train], group=_group_sizes(q[train]), feature_name=self.feature_names)
            dheld = lgb.Dataset(X[held], y[held], group=_group_sizes(q[held]), reference=dtrain)
            record: dict = {}
            booster = lgb.train(params, dtrain, self.params.max_rounds, valid_sets=[dheld], valid_names=["held"],
                                callbacks=[lgb.early_stopping(self.params.early_stopping_rounds, verbose=False),
                                           lgb.record_evaluation(record)])
            best.append(int(booster.best_iteration or self.params.max_rounds))
            curves.append(np.asarray(record["held"][f"ndcg@{self.params.eval_at}"]))
            # the model only: the fold's binned rows are freed here, not kept until the last fold
            booster.free_dataset()
            del dtrain, dheld
            boosters.append(booster)
            held_of.append(held)
        if not best:
            raise ValueError("no fold has both training and held-out queries (too few queries)")
        self.n_rounds = max(1, int(round(float(np.mean(best)))))
        length = min(len(c) for c in curves)
        oof, oof_rounds = np.zeros(len(X)), []
        for k, (booster, held) in enumerate(zip(boosters, held_of)):
            # A fold's own best round was picked on its own labels, so scoring it there would flatter the estimate
            # (by ~0.003 NDCG@10 on mpd7k val): its rounds come from the OTHER folds' mean curve instead.
            rounds = _rounds_from_other_folds(curves, k, booster.current_iteration())
            oof_rounds.append(rounds)
            oof[held] = booster.predict(X[held], num_iteration=rounds)
        self.cv = {"best_rounds": best, "n_rounds": self.n_rounds, "oof_rounds": oof_rounds,
                   "mean_ndcg_curve": np.mean([c[:length] for c in curves], axis=0).tolist()}
        self.oof_scores = oof
        dall = lgb.Dataset(X, y, group=_group_sizes(q), feature_name=self.feature_names, params=params).construct()
        del frame, X  # binned now: a matrix handed over (fit_ranker's) is freed before the refit trains
        self.booster = lgb.train(params, dall, self.n_rounds)
        return self

    def fit_rounds(self, frame, labels: Sequence[float], queries: Sequence, rounds: int) -> LTRRanker:
        """One fit of ``rounds`` rounds on every row (rounds chosen elsewhere, e.g. by another model's CV on the
        same rows); no out-of-fold scores."""
        import lightgbm as lgb

        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        X, y, q = self._arrays(frame, labels, queries)
        params = self.params.lightgbm()
        data = lgb.Dataset(X, y, group=_group_sizes(q), feature_name=self.feature_names, params=params).construct()
        del frame, X  # binned now: a matrix handed over (fit_ranker's) is freed before the training
        self.booster = lgb.train(params, data, rounds)
        self.n_rounds, self.cv, self.oof_scores = rounds, {"n_rounds": rounds, "rounds_from": "given"}, None
        return self

    def _fit_validated(self, frame, labels, queries, validation) -> LTRRanker:
        import lightgbm as lgb

        X, y, q = self._arrays(frame, labels, queries)
        vX, vy, vq = self._arrays(*validation)
        if set(q.tolist()) & set(vq.tolist()):
            raise ValueError("validation queries must not be training queries")
        dtrain = lgb.Dataset(X, y, group=_group_sizes(q), feature_name=self.feature_names, free_raw_data=False)
        dval = lgb.Dataset(vX, vy, group=_group_sizes(vq), reference=dtrain)
        record: dict = {}
        self.booster = lgb.train(self.params.lightgbm(), dtrain, self.params.max_rounds, valid_sets=[dval],
                                 valid_names=["validation"],
                                 callbacks=[lgb.early_stopping(self.params.early_stopping_rounds, verbose=False),
                                            lgb.record_evaluation(record)])
        self.n_rounds = int(self.booster.best_iteration or self.params.max_rounds)
        self.booster = self.booster if self.n_rounds == self.booster.current_iteration() else \
            lgb.Booster(model_str=self.booster.model_to_string(num_iteration=self.n_rounds))
        self.cv = {"n_rounds": self.n_rounds, "validation_ndcg_curve": record["validation"][f"ndcg@{self.params.eval_at}"]}
        self.oof_scores = self.predict(validation[0])
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.booster is None:
            raise ValueError("LTRRanker is not fitted: call fit or load")
        return np.asarray(self.booster.predict(self._matrix(frame), num_threads=self.params.num_threads),
                          dtype=np.float64)

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """Per row, each feature's additive part of the score (LightGBM's SHAP values, ``pred_contrib``):
        shape (rows, features + 1), the last column the bias; a row's parts sum to its ``predict`` score."""
        if self.booster is None:
            raise ValueError("LTRRanker is not fitted: call fit or load")
        return np.asarray(self.booster.predict(self._matrix(frame), pred_contrib=True,
                                               num_threads=self.params.num_threads), dtype=np.float64)

    def rank(self, frame: pd.DataFrame) -> list[str]:
        """One query's candidates (column ``song_id``) best first; equal scores keep the table's order."""
        scores = self.predict(frame)
        return [frame["song_id"].iloc[i] for i in np.argsort(-scores, kind="stable")]

    def feature_importance(self, kind: str = "gain") -> dict[str, float]:
        """Importance of each feature ("gain" or "split"), largest first."""
        if self.booster is None:
            raise ValueError("LTRRanker is not fitted")
        values = self.booster.feature_importance(importance_type=kind)
        pairs = sorted(zip(self.feature_names, values.tolist()), key=lambda kv: -kv[1])
        return {name: float(value) for name, value in pairs}

    def save(self, directory: str | Path) -> Path:
        if self.booster is None:
            raise ValueError("LTRRanker is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "model.txt"))
        header = {"format": LTR_FORMAT, "version": LTR_FORMAT_VERSION, "feature_names": self.feature_names,
                  "params": asdict(self.params), "n_rounds": self.n_rounds, "cv": self.cv,
                  "pool_config": self.pool_config}
        (directory / "ltr.json").write_text(json.dumps(header, indent=2))
        if self.oof_scores is not None:  # the honest figure on its training queries (val), for the evaluation
            np.save(directory / OOF_FILE, np.asarray(self.oof_scores, dtype=np.float64), allow_pickle=False)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LTRRanker:
        import lightgbm as lgb

        directory = Path(directory)
        header_path = directory / "ltr.json"
        if not header_path.exists():
            raise FileNotFoundError(f"{directory} is not a saved LTR ranker (no ltr.json)")
        header = json.loads(header_path.read_text())
        if header.get("format") != LTR_FORMAT or header.get("version") != LTR_FORMAT_VERSION:
            raise ValueError(f"{header_path}: format {header.get('format')!r} v{header.get('version')}")
        booster = lgb.Booster(model_file=str(directory / "model.txt"))
        oof = np.load(directory / OOF_FILE, allow_pickle=False) if (directory / OOF_FILE).exists() else None
        return cls(header["feature_names"], LTRParams(**header["params"]), booster, header["n_rounds"], header["cv"],
                   oof_scores=oof, pool_config=dict(header.get("pool_config") or {}))


def ranked_with_fill(song_ids: Sequence[str], scores: np.ndarray, fill: Sequence[str], depth: int) -> list[str]:
    """The pool's songs by score (best first; equal scores keep pool order), then ``fill`` (e.g. a classical
    ranking) without the pool's songs, up to ``depth`` songs."""
    ranked = [song_ids[i] for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]
    seen = set(ranked)
    for song in fill:
        if len(ranked) >= depth:
            break
        if song not in seen:
            seen.add(song)
            ranked.append(song)
    return ranked[:depth]


__all__ = ["LTRParams", "LTRRanker", "feature_matrix", "query_folds", "ranked_with_fill"]
