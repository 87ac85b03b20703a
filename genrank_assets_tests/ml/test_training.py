"""The shared training loop (ml/training.py) on a toy model: resume, checkpoints, early stopping, progress lines,
and the gate the model checks apply."""
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from genrank_assets.ml.compute import CPU
from genrank_assets.ml.training import (
    VAL_AUC,
    VAL_LOSS,
    Objective,
    TrainConfig,
    TrainTask,
    format_duration,
    judge_training,
    nonfinite_weights,
    train,
    warmup_schedule,
)

N, DIM = 40, 4
CONFIG = TrainConfig(epochs=3, lr=5e-2, warmup_ratio=0.2, early_stopping_patience=None, batch_size=8, seed=3)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, DIM)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32) + 0.1 * rng.normal(size=N)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def toy_model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # Dropout draws from torch's RNG every step: a resume that lost the RNG state would not reproduce.
        return torch.nn.Sequential(torch.nn.Linear(DIM, 16), torch.nn.Dropout(0.3), torch.nn.ReLU(),
                                   torch.nn.Linear(16, 1))


def toy_task(model, data=None, *, validate=True, scripted=None, objective=VAL_LOSS, fingerprint="toy-v1"):
    """MSE regression; ``scripted``: val metrics to report call by call instead of measuring."""
    x, y = data if data is not None else toy_data()
    calls = []

    def batch_loss(net, rows):
        rows = torch.as_tensor(rows)
        return torch.nn.functional.mse_loss(net(x[rows]).squeeze(-1), y[rows])

    def measure():
        calls.append({k: v.clone() for k, v in model.state_dict().items()})  # the weights each call saw
        if scripted is not None:
            return {objective.metric: scripted[len(calls) - 1]}
        return {"val_loss": float(torch.nn.functional.mse_loss(model(x).squeeze(-1), y))}

    task = TrainTask(name="toy", n_examples=N, batch_loss=batch_loss, validate=measure if validate else None,
                     objective=objective, fingerprint=fingerprint)
    return task, calls


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- resume and checkpoints -------------------------------------------------------------------------------


def test_resume_mid_epoch_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path):
    model = toy_model()
    straight = train(model, toy_task(model)[0], CONFIG)
    assert straight.steps == straight.total_steps == 15 and straight.resumed_from_step is None
    straight_weights = weights(model)

    killed_model = toy_model()
    killed = train(killed_model, toy_task(killed_model)[0], replace(CONFIG, max_steps=7, checkpoint_every_steps=3),
                   checkpoint_dir=tmp_path)
    assert killed.stop_reason == "max_steps" and killed.steps == 7 and (tmp_path / "checkpoint.pt").exists()
    assert killed.history[-1]["partial"] and killed.history[-1]["epoch"] == 2  # validated where it stopped

    resumed_model = toy_model()
    resumed = train(resumed_model, toy_task(resumed_model)[0], replace(CONFIG, checkpoint_every_steps=3),
                    checkpoint_dir=tmp_path)
    assert resumed.resumed_from_step == 7 and resumed.steps == 15 and resumed.samples == N * 3 - 7 * 8
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3] and not any(h["partial"] for h in resumed.history)
    for a, b in zip(straight.history, resumed.history):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert same_weights(straight_weights, weights(resumed_model))
    assert resumed.initial_val == straight.initial_val  # recorded before training, kept in the checkpoint

    # A finished run is not trained again: the same call gives back the stored result and the kept weights.
    again_model = toy_model()
    again = train(again_model, toy_task(again_model)[0], CONFIG, checkpoint_dir=tmp_path)
    assert again.resumed_from_step == 15 and again.samples == 0 and again.history == resumed.history
    assert same_weights(straight_weights, weights(again_model))


@pytest.mark.parametrize("change", ["config", "data"])
def test_a_checkpoint_of_another_fingerprint_is_ignored(tmp_path, change):
    model = toy_model()
    train(model, toy_task(model)[0], CONFIG, checkpoint_dir=tmp_path)
    lines = []
    other_model = toy_model()
    if change == "config":
        result = train(other_model, toy_task(other_model)[0], replace(CONFIG, lr=1e-2, max_steps=2),
                       checkpoint_dir=tmp_path, log_fn=lines.append)
    else:
        task = toy_task(other_model, toy_data(seed=1), fingerprint="toy-v2")[0]
        result = train(other_model, task, replace(CONFIG, max_steps=2), checkpoint_dir=tmp_path, log_fn=lines.append)
    assert result.resumed_from_step is None and result.steps == 2
    assert any(line.startswith("toy ignoring checkpoint") for line in lines)


def test_the_budget_is_not_part_of_the_fingerprint(tmp_path):
    model = toy_model()
    first = train(model, toy_task(model)[0], replace(CONFIG, max_steps=4), checkpoint_dir=tmp_path)
    assert first.steps == 4
    model = toy_model()
    more = train(model, toy_task(model)[0], replace(CONFIG, max_steps=9, log_every_steps=2), checkpoint_dir=tmp_path)
    assert more.resumed_from_step == 4 and more.steps == 9


# ---- the time cap (a fake clock: one training step is one second, so nothing here is timed) --------------------


class StepClock:
    """What the loop reads as the time: advanced one second by every training step (batch_loss)."""

    def __init__(self, start: float = 0.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def timed_task(model, clock, **kwargs):
    task, calls = toy_task(model, **kwargs)
    inner = task.batch_loss

    def batch_loss(net, rows):
        clock.now += 1.0
        return inner(net, rows)

    return replace(task, batch_loss=batch_loss), calls


def test_the_time_cap_stops_training_between_steps():
    model, clock = toy_model(), StepClock()
    lines = []
    task, _ = timed_task(model, clock)
    result = train(model, task, replace(CONFIG, max_train_seconds=7), clock=clock, log_fn=lines.append)
    # 7 "seconds" are spent after step 7: the check before step 8 stops it, mid-epoch 2, validated where it stands
    assert result.stop_reason == "time_cap" and result.steps == 7 and result.total_steps == 15
    assert [h["epoch"] for h in result.epochs] == [1] and result.history[-1]["partial"]
    assert any(re.fullmatch(r"toy time cap: 7s of 7s spent, stopping at step 7", line) for line in lines)
    assert any(line.startswith("toy epoch 2/3 stopped mid-epoch (time_cap) at step 7/15") for line in lines)
    assert result.summary()["stop_reason"] == "time_cap" and result.summary()["epochs_run"] == 1


def test_validation_time_counts_against_the_cap():
    model, clock = toy_model(), StepClock()
    task, _ = timed_task(model, clock)
    measure = task.validate

    def slow_validate():
        clock.now += 10.0
        return measure()

    # 10 s untrained validation + 5 steps + 10 s after epoch 1 = 25 s: the cap of 20 stops it before step 6
    result = train(model, replace(task, validate=slow_validate), replace(CONFIG, max_train_seconds=20), clock=clock)
    assert result.stop_reason == "time_cap" and result.steps == 5 and len(result.history) == 1


@pytest.mark.parametrize("cap", [None, 0])
def test_no_time_cap_with_none_or_zero(cap):
    model, clock = toy_model(), StepClock()
    result = train(model, timed_task(model, clock)[0], replace(CONFIG, max_train_seconds=cap), clock=clock)
    assert result.stop_reason == "epochs" and result.steps == 15


def test_a_time_capped_run_resumes_only_as_far_as_its_cap_allows(tmp_path):
    model = toy_model()
    straight = train(model, toy_task(model)[0], CONFIG)
    straight_weights = weights(model)

    capped_model, clock = toy_model(), StepClock()
    config = replace(CONFIG, max_train_seconds=7, checkpoint_every_steps=3)
    capped = train(capped_model, timed_task(capped_model, clock)[0], config, checkpoint_dir=tmp_path, clock=clock)
    assert capped.stop_reason == "time_cap" and capped.steps == 7

    # The same cap (a re-materialisation of the asset): the time spent is in the checkpoint, so no step is redone or
    # added; another process's clock starts elsewhere, which does not matter.
    again_model, clock = toy_model(), StepClock(start=1000.0)
    again = train(again_model, timed_task(again_model, clock)[0], config, checkpoint_dir=tmp_path, clock=clock)
    assert again.resumed_from_step == 7 and again.steps == 7 and again.samples == 0 and again.stop_reason == "time_cap"

    # A larger cap trains on from step 7 and ends where the uninterrupted run ended, bit for bit.
    more_model, clock = toy_model(), StepClock(start=50.0)
    more = train(more_model, timed_task(more_model, clock)[0], replace(config, max_train_seconds=100),
                 checkpoint_dir=tmp_path, clock=clock)
    assert more.resumed_from_step == 7 and more.steps == 15 and more.stop_reason == "epochs"
    assert [h["val_loss"] for h in more.history] == [h["val_loss"] for h in straight.history]
    assert same_weights(straight_weights, weights(more_model))


# ---- validation, early stopping and the kept weights --------------------------------------------------------


def test_early_stopping_keeps_the_best_epochs_weights():
    model = toy_model()
    # untrained, then epochs 1..: improves until epoch 2, then two epochs without improvement
    task, calls = toy_task(model, scripted=[9.0, 0.5, 0.4, 0.45, 0.6, 0.1], objective=VAL_LOSS)
    result = train(model, task, replace(CONFIG, epochs=5, early_stopping_patience=2))
    assert result.stop_reason == "early_stopping" and len(result.history) == 4
    assert result.best_epoch == 2 and result.best_value == 0.4 and result.best_val == {"val_loss": 0.4}
    assert result.initial_val == {"val_loss": 9.0}
    assert same_weights(weights(model), calls[2])  # the weights validated after epoch 2


def test_auc_is_maximised_and_nan_never_counts_as_better():
    model = toy_model()
    task, calls = toy_task(model, scripted=[0.5, 0.6, float("nan"), 0.7, 0.65], objective=VAL_AUC)
    result = train(model, task, replace(CONFIG, epochs=4, early_stopping_patience=3))
    assert result.stop_reason == "epochs" and result.best_epoch == 3 and result.best_value == 0.7
    assert same_weights(weights(model), calls[3])


def test_with_a_large_epoch_ceiling_early_stopping_decides():
    model = toy_model()
    # best at epoch 3, then 2 epochs without improvement: stops after epoch 5 of a 200-epoch ceiling
    task, calls = toy_task(model, scripted=[9.0, 0.9, 0.7, 0.5, 0.6, 0.55, 0.1])
    result = train(model, task, replace(CONFIG, epochs=200, early_stopping_patience=2))
    assert result.stop_reason == "early_stopping" and len(result.epochs) == 5 and result.steps == 25
    assert result.total_steps == 1000 and result.best_epoch == 3 and same_weights(weights(model), calls[3])


@pytest.mark.parametrize("schedule, after", [("linear", [0.5, 0.0]), ("constant", [1.0, 1.0])])
def test_the_schedule_after_warmup(schedule, after):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_schedule(optimizer, warmup_steps=2, total_steps=10, schedule=schedule)
    rates = []
    for _ in range(10):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:3] == [0.0, 0.5, 1.0]  # warm-up
    assert [rates[6], scheduler.get_last_lr()[0]] == pytest.approx(after)  # mid-way and at the ceiling's end


@pytest.mark.parametrize("patience", [None, 0])
def test_patience_none_or_zero_never_stops_early(patience):
    model = toy_model()
    task, calls = toy_task(model, scripted=[1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    result = train(model, task, replace(CONFIG, epochs=5, early_stopping_patience=patience))
    assert result.stop_reason == "epochs" and len(result.history) == 5
    assert result.best_epoch == 1 and same_weights(weights(model), calls[1])


def test_without_validation_the_last_weights_stay():
    model = toy_model()
    task, _ = toy_task(model, validate=False)
    result = train(model, task, CONFIG)
    assert result.best_epoch is None and result.best_val is None and result.initial_val is None
    assert [set(h) for h in result.history] == [{"epoch", "step", "partial", "train_loss", "samples_per_second"}] * 3
    ref = toy_model()
    train(ref, toy_task(ref, validate=False)[0], CONFIG)
    assert same_weights(weights(model), weights(ref))


def test_a_partial_epoch_keeps_its_weights_only_when_better():
    model = toy_model()  # epoch 1 (5 steps) scores 0.5, the partial stop at step 7 scores worse: epoch 1 is kept
    task, calls = toy_task(model, scripted=[1.0, 0.5, 0.8])
    result = train(model, task, replace(CONFIG, max_steps=7))
    assert result.history[-1]["partial"] and result.best_epoch == 1 and same_weights(weights(model), calls[1])
    model = toy_model()  # ... and here the partial epoch is the best: its (current) weights stay
    task, calls = toy_task(model, scripted=[1.0, 0.5, 0.3])
    result = train(model, task, replace(CONFIG, max_steps=7))
    assert result.best_epoch == 2 and result.best_value == 0.3 and same_weights(weights(model), calls[2])


def test_the_loss_goes_down_on_the_toy_task():
    model = toy_model()
    result = train(model, toy_task(model)[0], replace(CONFIG, epochs=6))
    assert result.best_value < 0.5 * result.initial_val["val_loss"]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


# ---- progress lines ------------------------------------------------------------------------------------------

NUMBER = r"\d+\.\d{4}"


def test_progress_lines_are_plain_text_in_one_format():
    lines = []
    model = toy_model()
    train(model, toy_task(model)[0], replace(CONFIG, log_every_steps=2, max_steps=11), log_fn=lines.append)
    assert all(isinstance(line, str) for line in lines) and all(line.startswith("toy ") for line in lines)
    step_lines = [line for line in lines if " loss " in line and "samples/s" in line]
    assert len(step_lines) == 5  # steps 2, 4, 6, 8, 10
    pattern = rf"toy epoch \d/3 step (\d+)/15 \((\d+)%\) loss {NUMBER} lr \d\.\d\de-\d\d \d+ samples/s eta \d+s"
    for line, step in zip(step_lines, (2, 4, 6, 8, 10)):
        m = re.fullmatch(pattern, line)
        assert m, line
        assert int(m.group(1)) == step and int(m.group(2)) == 100 * step // 15
    assert re.fullmatch(rf"toy untrained: val_loss {NUMBER}", lines[1]), lines[1]
    epoch_line = next(line for line in lines if "done" in line)
    assert re.fullmatch(rf"toy epoch 1/3 done at step 5/15: train_loss {NUMBER} val_loss {NUMBER} "
                        rf"\(best val_loss {NUMBER} at epoch 1\)", epoch_line), epoch_line
    assert any(re.fullmatch(r"toy epoch 3/3 stopped mid-epoch \(max_steps\) at step 11/15: .*", line) for line in lines)
    assert re.fullmatch(r"toy stopped \(max_steps\) at step 11/15: \d+ samples/s, \d+\.\ds", lines[-1]), lines[-1]


def test_format_duration():
    assert [format_duration(s) for s in (0, 45, 72, 3599, 7380)] == ["0s", "45s", "1m12s", "59m59s", "2h03m"]


# ---- arguments ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("warmup_ratio", 1.0),
                                          ("early_stopping_patience", -1), ("max_steps", -1),
                                          ("checkpoint_every_steps", 0), ("max_grad_norm", 0.0),
                                          ("max_train_seconds", -1.0), ("max_train_seconds", float("nan")),
                                          ("schedule", "cosine")])
def test_bad_training_arguments_are_a_clear_error(field, value):
    with pytest.raises(ValueError, match=field):
        replace(CONFIG, **{field: value})


def test_an_empty_training_set_is_a_clear_error():
    model = toy_model()
    task, _ = toy_task(model)
    with pytest.raises(ValueError, match="training set is empty"):
        train(model, replace(task, n_examples=0), CONFIG)
    with pytest.raises(ValueError, match="mode"):
        Objective("val_loss", "lowest")


def test_config_from_an_asset_config_keeps_unknown_fields_out():
    config = TrainConfig.from_mapping({"epochs": 7, "lr": 0.1, "max_steps": 0, "preset": "tiny"}, CONFIG)
    assert config == replace(CONFIG, epochs=7, lr=0.1, max_steps=0) and config.step_budget is None
    assert "max_steps" not in config.fingerprint() and config.fingerprint()["epochs"] == 7
    assert "max_train_seconds" not in config.fingerprint() and config.fingerprint()["schedule"] == "linear"


def test_training_runs_on_the_compute_it_is_given():
    model = toy_model()
    result = train(model, toy_task(model)[0], replace(CONFIG, max_steps=1), CPU)
    assert (result.device, result.precision) == ("cpu", "fp32")


# ---- the gate of the model checks ------------------------------------------------------------------------------


def test_nonfinite_weights_and_the_training_gate(tmp_path):
    save_file({"w": torch.ones(3, 3), "step": torch.tensor([4])}, str(tmp_path / "a.safetensors"))
    (tmp_path / "sub").mkdir()
    save_file({"b": torch.zeros(2)}, str(tmp_path / "sub" / "heads.safetensors"))
    assert nonfinite_weights(tmp_path) == (3, [])
    good = {"untrained_val_loss": 0.69, "best_val_loss": 0.5, "best_val_auc": 0.8, "untrained_val_auc": 0.5}
    passed, meta = judge_training(tmp_path, good, min_auc=0.5)
    assert passed and meta["val_loss"] == 0.5 and meta["failed_because"] == "-"

    for figures, reason in [({**good, "best_val_loss": 0.7}, "not below"), ({**good, "best_val_auc": 0.5}, "AUC"),
                            ({"untrained_val_loss": 0.69}, "no validation"), ({**good, "best_val_auc": math.nan}, "AUC")]:
        passed, meta = judge_training(tmp_path, figures, min_auc=0.5)
        assert not passed and reason in meta["failed_because"], (figures, meta)
    assert judge_training(tmp_path, {**good, "best_val_auc": 0.4})[0]  # AUC only judged when asked for

    save_file({"w": torch.tensor([1.0, float("nan")])}, str(tmp_path / "sub" / "bad.safetensors"))
    n, bad = nonfinite_weights(tmp_path)
    assert n == 4 and bad == ["sub/bad.safetensors:w"]
    passed, meta = judge_training(tmp_path, good)
    assert not passed and meta["nonfinite_tensors"] == 1 and "NaN" in meta["failed_because"]
    with pytest.raises(FileNotFoundError, match="safetensors"):
        nonfinite_weights(tmp_path / "nothing_here")
