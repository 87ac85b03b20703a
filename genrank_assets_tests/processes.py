"""Servers and workers the tests start: a free port, a process in a session of its own, stopping its group."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], env: dict[str, str], log: Path | None = None, **kwargs) -> subprocess.Popen:
    """``argv`` with default signal handling (background shells here ignore SIGTERM), in its own session (so
    `stop_group` reaches everything it starts); its output into ``log``, or stdout discarded and stderr piped."""
    argv = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_DFL); "
            "os.execv(sys.argv[1], sys.argv[1:])", *argv]
    if log is None:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, **kwargs)
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone


def wait_group_gone(pgid: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """True once no process of the group is left (a server's children stop a moment after it). ``proc``, the
    group's leader when it is a child of this process, is reaped meanwhile: a zombie still counts as in the group."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None:
            proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``proc``, then SIGKILL for what is left of it after a minute."""
    if not wait_group_gone(proc.pid, timeout=0, proc=proc):
        signal_group(proc.pid, signal.SIGTERM)
        if not wait_group_gone(proc.pid, timeout=60, proc=proc):
            signal_group(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=30)


@contextlib.contextmanager
def duckdb_holder(db: Path, sql: str = "") -> Iterator[subprocess.Popen]:
    """Another process holding a read-write connection to the DuckDB file ``db`` (after running ``sql`` on it) while
    the block runs; its command line carries the marker ``genrank-reader-marker``."""
    script = (f"import duckdb, time; c = duckdb.connect({str(db)!r}); c.execute({sql!r}) if {sql!r} else None; "
              "print('ready', flush=True); time.sleep(60)  # genrank-reader-marker")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.kill()
        holder.wait()
