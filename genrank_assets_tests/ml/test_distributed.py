"""Data-parallel training (ml/distributed.py through ml/training.py's one loop): 2 CPU processes (gloo) with the
same global batch reach a 1-process run's losses and weights, resume bit for bit, hand their checkpoint to a
1-process run, and fail loudly.

Tolerance: the 2-process update is the same arithmetic grouped differently (each rank's mean over its rows,
then the gradient all-reduce) so float32 sums round differently, ~1e-7 relative per step; over 15-21 AdamW steps
that stays far below 1e-4, the bound used here (measured: 1.2e-7 on the weights of the toy model). Dropout is
off where two process counts are compared: each rank draws its own dropout stream, so masks cannot match.
"""
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from genrank_assets.ml.compute import Compute, resolve_compute
from genrank_assets.ml.distributed import Group
from genrank_assets.ml.training import VAL_AUC, VAL_LOSS, TrainConfig, TrainTask, train

TOLERANCE = 1e-4
TWO = Compute("cpu", "fp32", threads=2, processes=2)  # one thread per rank on the 2-core machine
ONE = Compute("cpu", "fp32", threads=1)
# 43 rows in batches of 7: the batches split 4 + 3 rows, and the last one (1 row) leaves rank 1 without rows.
N = 43
CONFIG = TrainConfig(epochs=3, lr=5e-2, warmup_ratio=0.2, early_stopping_patience=None, batch_size=7, seed=3,
                     log_every_steps=5)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy(dropout=0.0):
    """A small MLP regression with its task; the task's closures hold the model, as the real ones do."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(dropout), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 1))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(N, 4)).astype(np.float32))
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.from_numpy(rng.normal(size=N).astype(np.float32))

    def batch_loss(net, rows):
        rows = torch.as_tensor(rows)
        return torch.nn.functional.mse_loss(net(x[rows]).squeeze(-1), y[rows])

    def validate():
        return {"val_loss": float(torch.nn.functional.mse_loss(model(x).squeeze(-1), y))}

    return model, TrainTask("toy", N, batch_loss, validate, VAL_LOSS, f"toy-dropout{dropout}")


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_close_runs(a, b, wa, wb):
    assert (a.steps, a.total_steps, a.samples, a.stop_reason) == (b.steps, b.total_steps, b.samples, b.stop_reason)
    assert [h["epoch"] for h in a.history] == [h["epoch"] for h in b.history]
    for ha, hb in zip(a.history, b.history):
        for key in ("train_loss", *(k for k in ha if k.startswith("val_"))):
            assert hb[key] == pytest.approx(ha[key], rel=TOLERANCE, abs=TOLERANCE), (key, ha, hb)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=TOLERANCE, atol=TOLERANCE)


# ---- the shard of a global batch (no processes) -------------------------------------------------------------


def test_each_rank_gets_a_disjoint_part_and_the_weights_rebuild_the_batch_mean():
    rows = np.arange(7)
    parts = [Group(r, 2).shard(rows) for r in range(2)]
    assert [list(p) for p, _ in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [w for _, w in parts] == [8 / 7, 6 / 7]  # rows_r * world / rows: DDP's average then weights by rows
    (p0, w0), (p1, w1) = [Group(r, 2).shard(np.array([5])) for r in range(2)]
    assert list(p0) == [5] and w0 == 2.0 and list(p1) == [5] and w1 == 0.0  # the rank without rows counts 0


# ---- 2 CPU processes ------------------------------------------------------------------------------------------


@pytest.mark.services
def test_two_processes_reach_the_one_process_loss_and_continue_its_checkpoints(tmp_path):
    model, task = toy()
    single = train(model, task, CONFIG, ONE)
    single_weights = weights(model)

    lines = []
    model, task = toy()
    double = train(model, task, CONFIG, TWO, log_fn=lines.append)
    assert double.processes == 2 and single.processes == 1 and double.device == "cpu"
    assert_close_runs(single, double, single_weights, weights(model))
    assert not model.training  # the caller's model: the kept weights, in eval mode, as after a 1-process run
    # Rank 0's lines reach the caller, once each: progress at steps 5, 10, 15, 20, one line per epoch.
    assert sum(" loss " in line and "samples/s" in line for line in lines) == 4
    assert sum(" done at step " in line for line in lines) == 3 and lines[-1].startswith("toy stopped (epochs)")

    # The number of processes is not part of the fingerprint: 1 process continues a 2-process checkpoint.
    model, task = toy()
    stopped = train(model, task, replace(CONFIG, max_steps=9, checkpoint_every_steps=4), TWO,
                    checkpoint_dir=tmp_path)
    assert stopped.stop_reason == "max_steps" and stopped.steps == 9 and stopped.history[-1]["partial"]
    model, task = toy()
    continued = train(model, task, CONFIG, ONE, checkpoint_dir=tmp_path)
    assert continued.resumed_from_step == 9 and continued.fingerprint == single.fingerprint
    assert continued.samples == 3 * N - (7 * 6 + 1 + 2 * 7)  # epoch 2's steps 8-9 were done by the 2 processes
    assert_close_runs(single, replace(continued, samples=single.samples), single_weights, weights(model))


@pytest.mark.services
def test_a_two_process_run_stopped_and_resumed_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    model, task = toy(dropout=0.3)  # dropout: resume must restore every rank's RNG stream
    straight = train(model, task, CONFIG, TWO)
    straight_weights = weights(model)

    model, task = toy(dropout=0.3)
    stopped = train(model, task, replace(CONFIG, max_steps=10, checkpoint_every_steps=3), TWO,
                    checkpoint_dir=tmp_path)
    assert stopped.stop_reason == "max_steps" and stopped.steps == 10
    model, task = toy(dropout=0.3)
    resumed = train(model, task, replace(CONFIG, checkpoint_every_steps=3), TWO, checkpoint_dir=tmp_path)
    assert resumed.resumed_from_step == 10 and resumed.steps == straight.steps == 21
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]
    resumed_weights = weights(model)
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)


TORCHRUN_SCRIPT = """
    import os, sys, torch
    from genrank_assets.ml.training import train
    from genrank_assets_tests.ml.test_distributed import CONFIG, TWO, toy, weights

    torch.set_num_threads(1)
    model, task = toy()
    result = train(model, task, CONFIG, TWO)
    torch.save({"result": result.to_dict(), "weights": weights(model)}, f"{sys.argv[1]}/rank{os.environ['RANK']}.pt")
"""


@pytest.mark.services
def test_under_torchrun_every_process_trains_its_rank_of_the_group(tmp_path):
    script = tmp_path / "train_toy.py"
    script.write_text(textwrap.dedent(TORCHRUN_SCRIPT))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path)], cwd=root, env=env, timeout=120, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # Both callers hold the same kept weights and result: every rank decides on rank 0's measurements.
    assert all(torch.equal(ranks[0]["weights"][k], ranks[1]["weights"][k]) for k in ranks[0]["weights"])
    assert ranks[0]["result"]["history"] == ranks[1]["result"]["history"]
    model, task = toy()
    single = train(model, task, CONFIG, ONE)
    launched = replace(single, **{k: ranks[0]["result"][k] for k in ("history", "steps", "samples", "stop_reason")})
    assert ranks[0]["result"]["processes"] == 2
    assert_close_runs(single, launched, weights(model), ranks[0]["weights"])


@pytest.mark.services
def test_a_failing_worker_is_an_error_in_the_caller():
    model, task = toy()

    def batch_loss(net, rows):
        raise ValueError("planted failure in batch_loss")

    with pytest.raises(Exception, match="planted failure in batch_loss"):
        train(model, replace(task, batch_loss=batch_loss), CONFIG, TWO)


@pytest.mark.services
def test_tiny_tiger_on_two_processes_matches_one():
    from genrank_assets.ml.generator.dataset import make_training_examples
    from genrank_assets.ml.generator.model import build_model
    from genrank_assets.ml.generator.training import TIGER_TRAINING, train_tiger
    from genrank_assets_tests.ml.ltr_world import make_corpus, song_vectors, tiny_generator

    corpus, vectors = make_corpus(), song_vectors()
    generator = tiny_generator(corpus, vectors)
    tokenizer, codes = generator.tokenizer, generator.code_table

    def examples(split, seed):
        part = corpus[corpus.split == split]
        return make_training_examples(list(part.title), list(part.song_ids), codes, tokenizer, mode="single",
                                      samples_per_playlist=1, seed=seed)

    train_examples, val_examples = examples("train", 1), examples("val", 2)
    config = replace(TIGER_TRAINING, epochs=2, batch_size=16, lr=2e-3, warmup_ratio=0.1, seed=5)
    runs = []
    for compute in (ONE, TWO):
        model = build_model(tokenizer, preset="tiny", seed=0, dropout=0.0)
        result = train_tiger(model, tokenizer, train_examples, val_examples, config, compute)
        runs.append((result, weights(model)))
    (one, w1), (two, w2) = runs
    assert two.processes == 2 and two.best_value < two.initial_val["val_loss"]
    assert_close_runs(one, two, w1, w2)


@pytest.mark.services
def test_tiny_ranker_on_two_processes_matches_one():
    from genrank_assets.ml.ranking.cross_encoder.examples import build_ranker_examples
    from genrank_assets.ml.ranking.cross_encoder.model import CrossEncoderRanker
    from genrank_assets.ml.ranking.cross_encoder.training import RANKER_TRAINING, train_ranker
    from genrank_assets_tests.ml.ltr_world import SONG_DIM, make_corpus, song_vectors, tiny_generator

    corpus, vectors = make_corpus(), song_vectors()
    generator = tiny_generator(corpus, vectors)
    train_df, val_df = (build_ranker_examples(corpus, vectors, split=split, negatives_per_positive=1, seed=0)
                        for split in ("train", "val"))
    config = replace(RANKER_TRAINING, epochs=2, batch_size=40, lr=2e-3, seed=5)
    runs = []
    for compute in (ONE, TWO):
        ranker = CrossEncoderRanker.from_config(generator.tokenizer, "tiny", SONG_DIM, seed=0, use_song_text=False,
                                                dropout_rate=0.0, head_dropout=0.0)
        result = train_ranker(ranker, train_df, val_df, vectors, None, config, compute)
        runs.append((result, weights(ranker)))
    (one, w1), (two, w2) = runs
    assert two.processes == 2 and two.objective == VAL_AUC.metric
    assert_close_runs(one, two, w1, w2)


# ---- bad values -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [0, -1])
def test_processes_below_one_is_a_clear_error(processes):
    with pytest.raises(ValueError, match="processes must be >= 1"):
        Compute("cpu", "fp32", processes=processes)
    with pytest.raises(ValueError, match="compute.processes"):
        resolve_compute("cpu", "fp32", 1, processes)


def test_under_a_launcher_processes_must_match_its_processes_per_node(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    model, task = toy()
    for compute in (ONE, replace(TWO, processes=3)):
        with pytest.raises(ValueError, match="compute.processes is .*LOCAL_WORLD_SIZE"):
            train(model, task, CONFIG, compute)
