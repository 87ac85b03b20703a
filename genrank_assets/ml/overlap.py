"""Two independent parts of one query's work at the same time, on the second core.

Serving one query is a few independent pieces: the generator's beam search beside the classical scores (the
candidate pool), the generator's teacher-forced log-probabilities beside the cross-encoder (the features). Torch
and numpy release the GIL in their kernels, so running one piece in a side thread while the calling thread runs
the other puts the second core to work. Results do not depend on the timing: each piece reads its own inputs and
writes its own outputs, and the caller combines them in a fixed order. One side thread serves every caller (a
query's pieces are never nested), so N concurrent callers share it in turn.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
DISABLE_ENV = "GENRANK_NO_OVERLAP"  # =1: run every piece in the calling thread (single-core machines, profiling)

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


class _Done(Future):
    """A future whose value is computed already (the overlap is off)."""

    def __init__(self, fn: Callable[..., T], *args) -> None:
        super().__init__()
        try:
            self.set_result(fn(*args))
        except BaseException as err:  # re-raised by result(), as a side thread's error would be
            self.set_exception(err)


def _torch_threads() -> int | None:
    """The calling thread's torch intra-op thread count (None when torch is not loaded)."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def _with_threads(threads: int | None, fn: Callable[..., T], *args) -> T:
    # OpenMP's thread count is per thread: a new thread starts from the default (every core), not the caller's
    # setting, and a float sum split over another number of threads can differ in its last bits. The side thread
    # uses the caller's count, so a piece gives the same numbers wherever it runs.
    if threads is not None:
        sys.modules["torch"].set_num_threads(threads)
    return fn(*args)


def beside(fn: Callable[..., T], *args) -> Future:
    """Start ``fn(*args)`` in the side thread (with the caller's torch thread count); ``.result()`` gives its
    value (or raises its error)."""
    if os.environ.get(DISABLE_ENV, "") in ("1", "true", "yes") or (os.cpu_count() or 1) < 2:
        return _Done(fn, *args)
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genrank-overlap")
    return _executor.submit(_with_threads, _torch_threads(), fn, *args)
