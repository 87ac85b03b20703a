"""Data-parallel training across processes (torch.distributed): the parts of ``ml/training.py``'s one loop that
differ when ``compute.processes > 1``.

* **Launch** — :func:`spawn` starts ``compute.processes`` workers (torch.multiprocessing, ``spawn`` start
  method: safe with CUDA and with the threads of a Dagster step), each joining a group through a rendezvous file
  in a private temporary folder (no TCP port to collide with). The model and the task's closures travel to the
  workers with cloudpickle in one payload, so the model that a task's closures call is the model the loop
  trains. Progress lines of rank 0 come back to the caller's ``say`` while the workers run; rank 0's result and
  kept weights come back in a file. Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` in the environment) nothing is
  spawned: :func:`joined` joins torchrun's group (``env://``) and every process trains its rank.
* **Backend** — gloo on CPU, nccl on CUDA with rank ``r`` of this node on ``cuda:r``.
* **Threads** — ``compute.threads`` (``0``: torch's setting in the caller) split among the node's processes, at
  least one each, so N processes do not oversubscribe the cores that one process would use.
* **A global batch** — :meth:`Group.shard`: the loop's batch of ``batch_size`` rows is cut into ``processes``
  contiguous parts (``np.array_split``: sizes differ by at most one row), rank ``r`` takes part ``r``. Each
  rank's mean loss is weighted by ``rows_r * processes / rows`` before DDP averages the gradients, so the
  update is the gradient of the whole batch's mean loss, as in one process, also when the batch does not split
  evenly. A rank left without rows (a last batch smaller than the group) runs one row of the batch with weight
  0: every rank must take part in each gradient all-reduce.

Validation, checkpoint writes and progress lines are rank 0's; the others wait for its result (a broadcast).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrank_assets.ml.compute import Compute

# How long a failed worker's siblings get to exit before they are killed (they are usually stuck in a
# collective that will never complete).
GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Group:
    """This process's place in the data-parallel group; ``LOCAL`` (world 1) makes every method a no-op, so the
    loop reads the same for one process and for many."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """What the task's ``batch_loss`` calls: the model, or its DDP wrapper (gradients all-reduced in
        backward; the wrapper also broadcasts rank 0's weights once, so every rank starts equal)."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's rows of a global batch and the weight of its mean loss (see the module docstring)."""
        if self.world == 1:
            return rows, 1.0
        part = np.array_split(rows, self.world)[self.rank]
        if len(part) == 0:
            return rows[:1], 0.0
        return part, len(part) * self.world / len(rows)

    def batch_loss(self, loss: float, rows: int, weight: float, batch_rows: int) -> float:
        """The whole batch's mean loss from each rank's mean over its ``rows`` (for logging and history)."""
        if self.world == 1:
            return loss
        total = torch.tensor([loss * rows if weight else 0.0], dtype=torch.float64)
        torch.distributed.all_reduce(total)
        return float(total) / batch_rows

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (the others pass anything, typically None, and wait for it)."""
        if self.world == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


LOCAL = Group()


def backend(compute: Compute) -> str:
    return "nccl" if compute.torch_device.type == "cuda" else "gloo"


def rank_compute(compute: Compute, local_rank: int, local_world: int) -> Compute:
    """The compute of one process of ``local_world`` on this node: its own GPU, its share of the threads."""
    threads = max(1, (compute.threads or torch.get_num_threads()) // local_world)
    device = f"cuda:{local_rank}" if compute.torch_device.type == "cuda" else compute.device
    return replace(compute, device=device, threads=threads)


def _check_processes(compute: Compute) -> None:
    if compute.torch_device.type == "cuda" and compute.processes > torch.cuda.device_count():
        raise ValueError(f"compute.processes={compute.processes} but this machine has {torch.cuda.device_count()} "
                         f"CUDA device(s): data-parallel training runs one process per GPU")


def launched_world() -> tuple[int, int, int, int] | None:
    """(rank, world size, local rank, local world size) when a launcher (torchrun) started this process as one
    of a group of more than one; else None."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    world = int(os.environ["WORLD_SIZE"])
    return (int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
            int(os.environ.get("LOCAL_WORLD_SIZE", world)))


@contextlib.contextmanager
def joined(compute: Compute) -> Iterator[tuple[Group, Compute]]:
    """This process's group and compute: ``LOCAL`` and ``compute`` itself without a launcher; under torchrun,
    its group (initialised here unless the script already did, and then also destroyed here)."""
    launched = launched_world()
    if launched is None:
        yield LOCAL, compute
        return
    rank, world, local_rank, local_world = launched
    if compute.processes != local_world:
        raise ValueError(f"compute.processes is {compute.processes} but the launcher started {local_world} "
                         f"processes on this node (LOCAL_WORLD_SIZE); set compute.processes to {local_world}")
    _check_processes(compute)
    mine = rank_compute(compute, local_rank, local_world)
    created = not torch.distributed.is_initialized()
    if created:
        _enter(mine, init_method="env://", rank=rank, world_size=world)
    else:  # the script set the group up itself
        _enter(mine)
    try:
        yield Group(rank, world), mine
    finally:
        if created:
            torch.distributed.destroy_process_group()


def spawn(target: Callable[..., Any], args: tuple, compute: Compute, say: Callable[[str], None]) -> Any:
    """``target(group, compute_of_the_rank, say_of_the_rank, *args)`` in ``compute.processes`` new processes;
    returns what rank 0's call returned (it must be what ``torch.load(weights_only=True)`` reads: containers of
    numbers, strings and tensors). A failed worker raises here, with its traceback, once the others are down."""
    import cloudpickle
    import torch.multiprocessing as mp

    _check_processes(compute)
    payload = cloudpickle.dumps((target, args, compute, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="genrank-ddp-") as tmp:
        result_path = Path(tmp) / "result.pt"
        lines = mp.get_context("spawn").SimpleQueue()
        workers = mp.start_processes(
            _worker, args=(payload, compute.processes, f"file://{tmp}/rendezvous", str(result_path), lines),
            nprocs=compute.processes, join=False, start_method="spawn",
        )
        try:
            while not workers.join(timeout=0.5, grace_period=GRACE_SECONDS):
                _drain(lines, say)
        except BaseException:
            for process in workers.processes:  # e.g. the caller interrupted: take the workers down with it
                if process.is_alive():
                    process.kill()
                    process.join()
            raise
        finally:
            _drain(lines, say)
        return torch.load(result_path, map_location="cpu", weights_only=True)


def _enter(mine: Compute, **init) -> None:
    """Set this process up as a rank on ``mine``: its threads, its GPU, and (given ``init``) the group."""
    mine.apply_threads()
    if mine.torch_device.type == "cuda":
        torch.cuda.set_device(mine.torch_device)  # nccl's collectives, the object ones too, run on this GPU
    if init:
        torch.distributed.init_process_group(backend(mine), **init)


def _drain(lines, say: Callable[[str], None]) -> None:
    while not lines.empty():
        say(lines.get())


def _worker(local_rank: int, payload: bytes, world: int, init_method: str, result_path: str, lines) -> None:
    import cloudpickle

    target, args, compute, caller_threads = cloudpickle.loads(payload)
    if compute.threads == 0:  # "leave torch's setting alone" means the caller's setting, split among the ranks
        compute = replace(compute, threads=caller_threads)
    mine = rank_compute(compute, local_rank, world)
    _enter(mine, init_method=init_method, rank=local_rank, world_size=world)
    try:
        group = Group(local_rank, world)
        result = target(group, mine, lines.put if group.main else quiet, *args)
        if group.main:
            torch.save(result, result_path)
        group.barrier()  # no rank tears the group down while another still uses it
    finally:
        torch.distributed.destroy_process_group()


def quiet(line: str) -> None:
    """The progress lines of ranks other than 0 go nowhere: rank 0 speaks for the group."""
