"""The training loop both models use (TIGER generator, cross-encoder ranker): plain torch, resumable.

What a model brings is a :class:`TrainTask`: how a batch of training rows becomes a loss, how the validation
set is measured, which validation metric decides (:class:`Objective`: val loss to minimise for TIGER, val AUC to
maximise for the ranker), the data order of an epoch, and a fingerprint of the model and data. The loop does
the rest, one way for both:

* **Optimizer and schedule** — AdamW, weight decay on matrices only (nanoGPT convention: norms and biases are
  not decayed); linear warm-up over ``warmup_steps`` (or ``int(warmup_ratio * total steps)``), then
  (``schedule``) ``"linear"``: linear decay to 0 at ``epochs`` full epochs, or ``"constant"``: the peak rate until
  the end. ``epochs`` is a ceiling: early stopping and the budgets below usually end the run first, and with a
  large ceiling a linear decay barely decays before they do — ``"constant"`` says so instead of pretending to
  anneal (docs/findings.md measures both). The warm-up is a share of the ceiling's steps: with a large ceiling,
  give ``warmup_steps``.
* **Budgets** — ``max_steps``, a budget of global steps, and ``max_train_seconds``, a wall-time budget of the
  loop (training steps and validation, summed over the calls that resumed one run; ``None`` or ``0``: no cap).
  Both are checked before every step, stop the run (stop reasons ``max_steps``, ``time_cap``) and do not shorten
  the schedule, so a run stopped at step k and resumed equals an uninterrupted one. Where a time cap stops a run
  depends on the machine's speed: such a run is reproducible only given where it stopped (its ``steps``).
* **Precision** — the resolved :class:`~genrank_assets.ml.compute.Compute`: autocast for fp16/bf16, gradient
  scaling for fp16; gradients clipped to ``max_grad_norm``.
* **Validation and early stopping** — the untrained model is measured first (``TrainResult.initial_val``), then
  the model after every epoch. The weights with the best objective are kept and loaded at the end (without a
  validation set, or when no epoch gave a finite metric, the last weights stay). ``early_stopping_patience``
  epochs without improvement stop training; ``None`` or ``0`` never stops early. A run that a budget stops
  mid-epoch is validated where it stopped (a ``partial`` history record) and keeps those weights when they are
  the best.
* **Checkpoints** — ``checkpoint_dir/checkpoint.pt``, written atomically every ``checkpoint_every_steps`` steps
  and after every epoch: model, optimizer, scheduler, grad scaler, torch RNG states, the position (epoch, batch,
  step), history and best weights, plus a fingerprint of the task and the configuration. A later call with the
  same fingerprint continues where the checkpoint stopped — mid-epoch included — and reproduces the
  uninterrupted run bit for bit; a checkpoint with another fingerprint is ignored (and overwritten).
  ``max_steps``, ``max_train_seconds``, ``checkpoint_every_steps`` and ``log_every_steps`` are not part of the
  fingerprint. A run a budget stopped is continued by a later call only as far as its budgets allow: the time
  spent is in the checkpoint, so a call with the same cap trains no further (it returns the checkpoint's model,
  re-validated where it stopped) and a larger cap trains on for the difference; a run killed between two
  checkpoints redoes the steps since the last one, whose time then counts again. A finished run (``epochs``,
  ``early_stopping``) is returned as it is.
* **Progress** — plain-text lines, the same for both models, to ``log_fn`` (and this module's logger), e.g.
  ``tiger_model epoch 1/4 step 50/1148 (4%) loss 0.5424 lr 1.00e-03 312 samples/s eta 1m12s``: the loss is
  the mean over the steps since the previous line, samples/s counts training steps of this call only.
* **Data parallel** — with ``compute.processes > 1`` the same loop runs in that many processes
  (``ml/distributed.py``: spawned here, or torchrun's): DistributedDataParallel, each rank a disjoint part of
  every global batch of ``batch_size`` rows, the logged loss the whole batch's mean; validation, checkpoints and
  progress lines are rank 0's; the caller's model ends holding the kept weights, with the same
  :class:`TrainResult`. The fingerprint does not hold the number of processes: the global batch, the data
  order and the schedule — the optimisation — are the same, so a checkpoint of a 2-process run can be continued
  by 1 process (and back). Bit for bit only with the same number: the float reductions are grouped otherwise
  and each rank draws its own dropout (seed ``seed + rank``; rank 0's is a 1-process run's).

Also here: :func:`nonfinite_weights`, which the blocking checks on the model assets use.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from genrank_assets.ml import distributed
from genrank_assets.ml.compute import CPU, Compute

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
STOP_REASONS = ("epochs", "early_stopping", "max_steps", "time_cap")
BUDGET_STOPS = ("max_steps", "time_cap")  # stops a later call may continue from, when its budget allows
SCHEDULES = ("linear", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the loop. ``epochs``, ``lr``, ``warmup_ratio`` and ``early_stopping_patience`` have no
    default here: each model's training module holds its own (``TIGER_TRAINING``, ``RANKER_TRAINING``), and the
    asset configs read them from there."""

    epochs: int
    lr: float
    warmup_ratio: float
    early_stopping_patience: int | None  # None or 0: never stop early
    batch_size: int = 64
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    warmup_steps: int | None = None  # wins over warmup_ratio
    seed: int = 0
    checkpoint_every_steps: int = 500
    max_steps: int | None = None  # a budget of global steps; None or 0: no cap
    log_every_steps: int = 50
    max_train_seconds: float | None = None  # a wall-time budget of the loop, resumed calls summed; None or 0: none
    schedule: str = "linear"  # after warm-up: "linear" decay to 0 at `epochs`, or "constant"

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size,
                    "checkpoint_every_steps": self.checkpoint_every_steps, "log_every_steps": self.log_every_steps}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("early_stopping_patience", "warmup_steps", "max_steps", "max_train_seconds"):
            value = getattr(self, name)
            if value is not None and not value >= 0:  # NaN fails too
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    @classmethod
    def from_mapping(cls, values, defaults: TrainConfig) -> TrainConfig:
        """``defaults`` with the fields that ``values`` (a dict, e.g. an asset config's ``model_dump()``) holds."""
        names = {f.name for f in fields(cls)}
        return cls(**{**asdict(defaults), **{k: v for k, v in dict(values).items() if k in names}})

    @property
    def step_budget(self) -> int | None:
        return self.max_steps or None

    @property
    def time_budget(self) -> float | None:
        return self.max_train_seconds or None

    def fingerprint(self) -> dict:
        """What a checkpoint must match: everything but the budgets and the logging/checkpoint cadence."""
        skip = {"max_steps", "max_train_seconds", "checkpoint_every_steps", "log_every_steps"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass(frozen=True)
class Objective:
    """The validation metric that picks the weights to keep and drives early stopping."""

    metric: str  # a key of what TrainTask.validate returns
    mode: str  # "min" | "max"

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"Objective.mode must be 'min' or 'max', got {self.mode!r}")

    def better(self, value: float | None, best: float | None) -> bool:
        """A finite ``value`` that beats ``best`` (anything finite beats None); NaN never improves."""
        if value is None or not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best


VAL_LOSS = Objective("val_loss", "min")
VAL_AUC = Objective("val_auc", "max")


def shuffled(n: int, seed: int, epoch: int) -> np.ndarray:
    """The default data order of an epoch: depends only on (seed, epoch), so a resumed run sees the same."""
    return np.random.default_rng([seed, epoch]).permutation(n)


@dataclass
class TrainTask:
    """The model-specific parts of a training run."""

    name: str  # first word of every progress line (the asset's name)
    n_examples: int
    # (the module to call, training rows) -> mean loss of those rows (under autocast). The module is the model,
    # or its DistributedDataParallel wrapper: gradients are all-reduced only for a forward through the wrapper.
    batch_loss: Callable[[torch.nn.Module, np.ndarray], torch.Tensor]
    validate: Callable[[], dict[str, float]] | None  # metrics of the current weights on the val set (no_grad)
    objective: Objective
    fingerprint: str  # the model's architecture and the data: what a checkpoint must match besides the config
    epoch_order: Callable[[int], np.ndarray] | None = None  # epoch -> row order; None: shuffled(n, seed, epoch)


@dataclass
class TrainResult:
    # One record per finished epoch (1-based "epoch", "step", "partial", "train_loss", the val metrics,
    # "samples_per_second"), plus a "partial" one when a budget (max_steps, the time cap) stopped it mid-epoch.
    history: list[dict]
    objective: str  # the metric that chose the weights ("val_loss", "val_auc")
    best_epoch: int | None  # 1-based epoch whose weights the model holds at the end (None: the last weights)
    best_value: float | None  # that epoch's objective
    best_val: dict | None  # that epoch's val metrics
    initial_val: dict | None  # the untrained model's val metrics
    steps: int  # global optimizer steps done, including those before a resume
    total_steps: int  # epochs x steps per epoch: the schedule's length
    samples: int  # training rows processed in this call
    samples_per_second: float  # in this call, training steps only
    train_seconds: float  # this call's training steps (validation excluded)
    seconds: float  # wall time of this call
    stop_reason: str  # one of STOP_REASONS
    resumed_from_step: int | None
    device: str
    precision: str
    fingerprint: str
    checkpoint_path: str | None = None
    processes: int = 1  # data-parallel processes that trained

    @property
    def epochs(self) -> list[dict]:
        """The history without the partial record."""
        return [h for h in self.history if not h["partial"]]

    def summary(self) -> dict[str, float | int | str]:
        """Flat figures for asset metadata and MLflow: the run's length and speed, ``best_val_*`` (the kept
        weights' val metrics) and ``untrained_val_*`` (before training), which the model checks read."""
        out: dict[str, float | int | str] = {
            "epochs_run": len(self.epochs), "steps": self.steps, "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch or 0, "resumed_from_step": self.resumed_from_step or 0,
            "train_seconds": round(self.seconds, 1), "train_samples_per_second": round(self.samples_per_second, 1),
            "device": self.device, "precision": self.precision, "processes": self.processes,
        }
        out.update({f"best_{k}": float(v) for k, v in (self.best_val or {}).items()})
        out.update({f"untrained_{k}": float(v) for k, v in (self.initial_val or {}).items()})
        return out

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _State:
    """Everything about the run's position that a checkpoint must restore."""

    epoch: int = 0  # finished epochs
    batch_in_epoch: int = 0
    step: int = 0
    epoch_loss_sum: float = 0.0  # sum over the epoch's batches of loss x rows
    epoch_samples: int = 0
    epoch_seconds: float = 0.0
    history: list = field(default_factory=list)
    initial_val: dict | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    best_val: dict | None = None
    bad_epochs: int = 0
    stop_reason: str | None = None  # set once training is over
    elapsed_seconds: float = 0.0  # the loop's wall time up to the checkpoint, over every call of this run


def train(
    model: torch.nn.Module,
    task: TrainTask,
    config: TrainConfig,
    compute: Compute = CPU,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    log_fn: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TrainResult:
    """Train ``model`` on ``task`` (see the module docstring); the model ends on ``compute``'s device, in eval
    mode, holding the kept weights. ``clock`` (seconds) is what the time cap reads; tests give a fake one."""
    if task.n_examples < 1:
        raise ValueError(f"{task.name}: the training set is empty")
    say = _logger(log_fn)
    started = time.perf_counter()
    if compute.processes > 1 and distributed.launched_world() is None:
        values, weights = distributed.spawn(_train_rank, (model, task, config, checkpoint_dir, clock), compute,
                                            say)
        model.load_state_dict(weights)
        model.to(compute.torch_device).eval()
        # The caller's wall time (worker start-up included) and device, as a 1-process run reports them.
        result = TrainResult(**{**values, "seconds": time.perf_counter() - started, "device": compute.device})
    else:
        with distributed.joined(compute) as (group, mine):
            result = _train(group, mine, say if group.main else distributed.quiet, model, task, config,
                            checkpoint_dir, clock)
        result.seconds = time.perf_counter() - started
    say(
        f"{task.name} stopped ({result.stop_reason}) at step {result.steps}/{result.total_steps}: "
        f"{result.samples_per_second:.0f} samples/s, {result.seconds:.1f}s"
    )
    return result


def _train(group: distributed.Group, compute: Compute, say, model, task: TrainTask, config: TrainConfig,
           checkpoint_dir, clock: Callable[[], float] = time.perf_counter) -> TrainResult:
    """The loop, in this process, as rank ``group.rank`` of ``group.world``."""
    run = _Run(model, task, config, compute, checkpoint_dir, say, group, clock)
    run.start()
    while run.state.stop_reason is None and run.state.epoch < config.epochs:
        run.train_epoch()
        if run.state.stop_reason in BUDGET_STOPS:
            run.save(run.state.stop_reason)
            break
        run.end_epoch()
    return run.finish()


def _train_rank(group: distributed.Group, compute: Compute, say, model, task, config, checkpoint_dir,
                clock=time.perf_counter):
    """One spawned worker's run; rank 0 hands the result and the kept weights back to the caller."""
    result = _train(group, compute, say, model, task, config, checkpoint_dir, clock)
    return result.to_dict(), {k: v.detach().to("cpu") for k, v in model.state_dict().items()}


class _Run:
    """One call of :func:`train`: the optimizer, schedule, checkpoint and position, and the steps between."""

    def __init__(self, model, task: TrainTask, config: TrainConfig, compute: Compute, checkpoint_dir, say,
                 group: distributed.Group = distributed.LOCAL, clock: Callable[[], float] = time.perf_counter):
        self.model, self.task, self.config, self.compute, self.say = model, task, config, compute, say
        self.group, self.clock = group, clock
        self.started = clock()  # this call's start; state.elapsed_seconds holds the earlier calls' time
        self.fingerprint = _fingerprint(task.fingerprint, config, compute.precision)
        # Dropout, each rank its own stream; a resumed run restores the checkpoint's RNG states instead.
        torch.manual_seed(config.seed + group.rank)
        model.to(compute.torch_device)
        self.net = group.wrap(model, compute.torch_device)  # what batch_loss calls
        self.optimizer = make_optimizer(model, config.lr, config.weight_decay)
        self.steps_per_epoch = math.ceil(task.n_examples / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup = config.warmup_steps if config.warmup_steps is not None else int(
            config.warmup_ratio * self.total_steps)
        self.scheduler = warmup_schedule(self.optimizer, self.warmup, self.total_steps, config.schedule)
        self.scaler = compute.grad_scaler()
        self.state = _State()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        self.resumed_from: int | None = None
        self.samples = 0  # this call
        self.train_seconds = 0.0
        self.window_loss, self.window_n = 0.0, 0  # since the last progress line

    # ---- start and end ---------------------------------------------------------------------------------

    def start(self) -> None:
        loaded = self.load()
        if loaded is not None:
            self.model.load_state_dict(loaded["model"])
            self.optimizer.load_state_dict(loaded["optimizer"])
            self.scheduler.load_state_dict(loaded["scheduler"])
            self.scaler.load_state_dict(loaded["scaler"])
            # One state per rank; a run with more processes than the checkpoint's keeps its new ranks' seeds.
            rng = loaded["rng"] if isinstance(loaded["rng"], list) else [loaded["rng"]]  # older: one dict
            if self.group.rank < len(rng):
                _set_rng_state(rng[self.group.rank])
            self.state = _State(**loaded["state"])
            if self.state.stop_reason in BUDGET_STOPS:  # the budget may have grown since; the loop re-checks it
                self.state.stop_reason = None
            self.started = self.clock()  # the time before the checkpoint is in state.elapsed_seconds
            self.best_weights = loaded["best_weights"]
            self.resumed_from = self.state.step
            self.say(f"{self.task.name} resumed from {self.path} at step {self.state.step} "
                     f"(epoch {self.state.epoch + 1}, batch {self.state.batch_in_epoch})")
        cfg = self.config
        self.say(
            f"{self.task.name} training: {self.task.n_examples} examples, {self.steps_per_epoch} steps/epoch x "
            f"{cfg.epochs} epochs = {self.total_steps} steps (a ceiling), warmup {self.warmup}, {cfg.schedule} "
            f"schedule, " + (f"time cap {format_duration(cfg.time_budget)}, " if cfg.time_budget else "")
            + f"{self.compute.device} {self.compute.precision}"
            + (f", {self.group.world} data-parallel processes" if self.group.world > 1 else "")
        )
        if self.task.validate is not None and self.state.initial_val is None and self.state.step == 0:
            self.state.initial_val = self.group.from_main(self.validate() if self.group.main else None)
            self.say(f"{self.task.name} untrained: {_metrics_text(self.state.initial_val)}")

    def finish(self) -> TrainResult:
        state, objective = self.state, self.task.objective
        history = list(state.history)
        best_epoch, best_value, best_val, keep_current = state.best_epoch, state.best_value, state.best_val, False
        if state.stop_reason in BUDGET_STOPS and state.batch_in_epoch > 0:  # stopped mid-epoch: where it stands
            record = self.epoch_record(partial=True)
            history.append(record)
            self.say(self.epoch_line(record))
            value = record.get(objective.metric)
            if self.best_weights is None or objective.better(value, best_value):
                keep_current = True
                if objective.better(value, best_value):
                    best_epoch, best_value, best_val = record["epoch"], value, _val_part(record)
        if self.best_weights is not None and not keep_current:
            self.model.load_state_dict(self.best_weights)
        self.model.eval()
        return TrainResult(
            history=history, objective=objective.metric, best_epoch=best_epoch, best_value=best_value,
            best_val=best_val, initial_val=state.initial_val, steps=state.step, total_steps=self.total_steps,
            samples=self.samples, samples_per_second=self.samples / self.train_seconds if self.train_seconds else 0.0,
            train_seconds=self.train_seconds, seconds=0.0, stop_reason=state.stop_reason or "epochs",
            resumed_from_step=self.resumed_from, device=self.compute.device, precision=self.compute.precision,
            fingerprint=self.fingerprint, checkpoint_path=str(self.path) if self.path else None,
            processes=self.group.world,
        )  # train() sets seconds: the wall time of the whole call

    # ---- an epoch ---------------------------------------------------------------------------------------

    def train_epoch(self) -> None:
        state, cfg = self.state, self.config
        order = (self.task.epoch_order(state.epoch) if self.task.epoch_order is not None
                 else shuffled(self.task.n_examples, cfg.seed, state.epoch))
        self.model.train()
        while state.batch_in_epoch < self.steps_per_epoch:
            if cfg.step_budget is not None and state.step >= cfg.step_budget:
                state.stop_reason = "max_steps"
                return
            if self.out_of_time():
                state.stop_reason = "time_cap"
                self.say(f"{self.task.name} time cap: {format_duration(self.elapsed())} of "
                         f"{format_duration(cfg.time_budget)} spent, stopping at step {state.step}")
                return
            b = state.batch_in_epoch
            rows = np.asarray(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            t0 = time.perf_counter()
            loss = self.step(rows)
            seconds = time.perf_counter() - t0
            state.step += 1
            state.batch_in_epoch += 1
            state.epoch_loss_sum += loss * len(rows)
            state.epoch_samples += len(rows)
            state.epoch_seconds += seconds
            self.samples += len(rows)
            self.train_seconds += seconds
            self.window_loss += loss * len(rows)
            self.window_n += len(rows)
            if state.step % cfg.log_every_steps == 0:
                self.say(self.progress_line())
            if state.step % cfg.checkpoint_every_steps == 0 and state.batch_in_epoch < self.steps_per_epoch:
                self.save("every")

    def elapsed(self) -> float:
        """The loop's wall time over every call of this run (validation included)."""
        return self.state.elapsed_seconds + self.clock() - self.started

    def out_of_time(self) -> bool:
        """Whether the time cap is spent; rank 0's clock decides, so every rank stops at the same step."""
        budget = self.config.time_budget
        if budget is None:
            return False
        return bool(self.group.from_main(self.elapsed() >= budget if self.group.main else None))

    def step(self, rows: np.ndarray) -> float:
        """One optimizer step on a global batch; its mean loss."""
        part, weight = self.group.shard(rows)
        with self.compute.autocast():
            loss = self.task.batch_loss(self.net, part)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss if weight == 1.0 else loss * weight).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return self.group.batch_loss(float(loss.detach()), len(part), weight, len(rows))

    def end_epoch(self) -> None:
        state, objective, patience = self.state, self.task.objective, self.config.early_stopping_patience
        record = self.epoch_record(partial=False)
        state.history.append(record)
        value = record.get(objective.metric)
        if objective.better(value, state.best_value):
            state.best_value, state.best_epoch, state.best_val = value, record["epoch"], _val_part(record)
            state.bad_epochs = 0
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        elif self.task.validate is not None:
            state.bad_epochs += 1
        self.say(self.epoch_line(record))
        state.epoch += 1
        state.batch_in_epoch = state.epoch_samples = 0
        state.epoch_loss_sum = state.epoch_seconds = 0.0
        if patience and state.bad_epochs >= patience:
            state.stop_reason = "early_stopping"
            self.say(f"{self.task.name} early stopping: no {objective.metric} improvement for {state.bad_epochs} "
                     f"epochs")
        elif state.epoch >= self.config.epochs:
            state.stop_reason = "epochs"
        self.save("epoch")

    def validate(self) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), self.compute.autocast():
            metrics = {k: float(v) for k, v in self.task.validate().items()}
        self.model.train(was_training)
        return metrics

    def epoch_record(self, partial: bool) -> dict:
        """Rank 0 measures (validation, speed); every rank gets its record, so all decide the same."""
        if not self.group.main:
            return self.group.from_main(None)
        state = self.state
        record = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "partial": partial,
            "train_loss": state.epoch_loss_sum / state.epoch_samples if state.epoch_samples else float("nan"),
        }
        if self.task.validate is not None:
            record.update(self.validate())
        record["samples_per_second"] = state.epoch_samples / state.epoch_seconds if state.epoch_seconds else 0.0
        return self.group.from_main(record)

    # ---- progress lines and checkpoints -----------------------------------------------------------------

    def progress_line(self) -> str:
        state, name = self.state, self.task.name
        end = min(self.total_steps, self.config.step_budget or self.total_steps)
        steps_this_call = state.step - (self.resumed_from or 0)
        eta = (end - state.step) * self.train_seconds / max(steps_this_call, 1)
        if self.config.time_budget:
            eta = min(eta, max(self.config.time_budget - self.elapsed(), 0.0))
        line = (
            f"{name} epoch {state.epoch + 1}/{self.config.epochs} step {state.step}/{self.total_steps} "
            f"({100 * state.step // self.total_steps}%) loss {self.window_loss / max(self.window_n, 1):.4f} "
            f"lr {self.scheduler.get_last_lr()[0]:.2e} {self.samples / max(self.train_seconds, 1e-9):.0f} samples/s "
            f"eta {format_duration(eta)}"
        )
        self.window_loss, self.window_n = 0.0, 0
        return line

    def epoch_line(self, record: dict) -> str:
        state, objective = self.state, self.task.objective
        what = f"stopped mid-epoch ({state.stop_reason})" if record["partial"] else "done"
        line = (f"{self.task.name} epoch {record['epoch']}/{self.config.epochs} {what} at step "
                f"{record['step']}/{self.total_steps}: train_loss {record['train_loss']:.4f}")
        val = _val_part(record)
        if val:
            line += f" {_metrics_text(val)}"
            if state.best_epoch is not None:
                line += f" (best {objective.metric} {state.best_value:.4f} at epoch {state.best_epoch})"
        return line

    def load(self) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        payload = torch.load(self.path, map_location="cpu", weights_only=True)
        if payload.get("fingerprint") != self.fingerprint:
            self.say(f"{self.task.name} ignoring checkpoint {self.path}: it belongs to another configuration or "
                     f"data (fingerprint differs)")
            return None
        return payload

    def save(self, reason: str) -> None:
        """Rank 0 writes (every rank's RNG state included); the others wait until it is on disk."""
        if self.path is None:
            return
        rng = self.group.gather(_get_rng_state())
        self.state.elapsed_seconds, self.started = self.elapsed(), self.clock()
        if not self.group.main:
            self.group.barrier()
            return
        _save_checkpoint(self.path, {
            "fingerprint": self.fingerprint,
            "model": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "state": asdict(self.state),
            "best_weights": self.best_weights,
        })
        log.debug("%s: checkpoint (%s) at step %d", self.task.name, reason, self.state.step)
        self.group.barrier()


def _val_part(record: dict) -> dict:
    return {k: v for k, v in record.items() if k.startswith("val_")}


def _metrics_text(metrics: dict) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def format_duration(seconds: float) -> str:
    """45 -> '45s', 72 -> '1m12s', 7380 -> '2h03m'."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _logger(log_fn: Callable[[str], None] | None) -> Callable[[str], None]:
    def say(line: str) -> None:
        log.info(line)
        if log_fn is not None:
            log_fn(line)

    return say


# ---------------------------------------------------------------------------------------------------------
# Optimizer and schedule
# ---------------------------------------------------------------------------------------------------------


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; decay on matrices (linear weights, embeddings) only, not on norms and biases (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )


def warmup_schedule(optimizer, warmup_steps: int, total_steps: int, schedule: str = "linear"):
    """Linear warm-up over ``warmup_steps``, then ``schedule``: "linear" decay to 0 at ``total_steps``, or
    "constant" (the peak rate)."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup_steps, max(total_steps, 1))


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


def _fingerprint(task_fingerprint: str, config: TrainConfig, precision: str) -> str:
    parts = {"task": task_fingerprint, "config": config.fingerprint(), "precision": precision}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a run killed while writing leaves the previous checkpoint intact


def _get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------
# Checks on a trained model
# ---------------------------------------------------------------------------------------------------------


def nonfinite_weights(directory: str | os.PathLike) -> tuple[int, list[str]]:
    """(tensors read, names of those holding NaN or inf) over every ``*.safetensors`` file below ``directory``."""
    from safetensors import safe_open

    files = sorted(Path(directory).rglob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights below {directory}")
    n, bad = 0, []
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                n += 1
                tensor = f.get_tensor(key)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    bad.append(f"{path.relative_to(directory)}:{key}")
    return n, bad


def judge_training(model_dir: str | os.PathLike, figures: dict, min_auc: float | None = None) -> tuple[bool, dict]:
    """The gate a trained model must pass: weights all finite; the kept weights' val loss below the untrained
    model's; with ``min_auc``, their val AUC above it. ``figures`` holds ``TrainResult.summary()``'s
    ``best_val_*`` and ``untrained_val_*``. Returns (passed, metadata with the figures and why it failed)."""
    n_tensors, bad = nonfinite_weights(model_dir)
    reasons = [f"{len(bad)} weight tensors hold NaN/inf, e.g. {bad[:3]}"] if bad else []
    before, after = _number(figures.get("untrained_val_loss")), _number(figures.get("best_val_loss"))
    meta: dict = {"weight_tensors": n_tensors, "nonfinite_tensors": len(bad), "untrained_val_loss": before,
                  "val_loss": after}
    if math.isnan(before) or math.isnan(after):
        reasons.append("no validation measurement (empty val split?): the model cannot be judged")
    elif not after < before:
        reasons.append(f"val loss {after:.4f} is not below the untrained model's {before:.4f}")
    if min_auc is not None:
        auc = _number(figures.get("best_val_auc"))
        meta.update({"val_auc": auc, "untrained_val_auc": _number(figures.get("untrained_val_auc")),
                     "min_val_auc": float(min_auc)})
        if not auc > min_auc:  # False for NaN
            reasons.append(f"val AUC {auc:.4f} is not above {min_auc}")
    meta["failed_because"] = "; ".join(reasons) if reasons else "-"
    return not reasons, meta


def _number(value) -> float:
    return float("nan") if value is None else float(value)
