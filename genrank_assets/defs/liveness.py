"""Runs whose process died (`kill -9`, out-of-memory) stay STARTED in Dagster's storage for ever, and automation
that waits for in-flight runs would wait for ever too. This module finds such runs and marks them failed.

Dagster's own run monitoring (enabled in the dagster.yaml that `make dagster-home` writes) cannot: the default
run launcher has no worker health check, and runs started by `dagster asset materialize` have no launcher at all.
So the check here is the process itself: a run is dead when no process that emitted its events is alive, where
"alive" means a process with that pid exists, is not a zombie and started before the run did (a reused pid is a
different process).

This holds only when every run's process lives on this machine, which is the case for Dagster's default SQLite
storage under a local DAGSTER_HOME (SQLite cannot be shared between machines). With shared run storage
(PostgreSQL, the "team stack"), a pid says nothing about another machine's processes: the check does nothing
there and Dagster's run monitoring with a launcher that supports health checks (k8s, docker) takes over.
"""
from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

# Statuses of a run whose process should exist. QUEUED / NOT_STARTED runs have no process yet; STARTING ones
# are covered by run monitoring's start timeout.
LIVE_STATUSES = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("/proc/stat has no btime")


def process_alive_since(pid: int, since: float) -> bool:
    """A live, non-zombie process with this pid that started at or before `since` (a UNIX timestamp)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): existence is all we know
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):
        return False  # killed, waiting to be reaped
    started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started <= since + 1.0  # clock-tick rounding


def run_processes(instance: dg.DagsterInstance, run_id: str) -> tuple[set[int], float | None]:
    """Pids of the run's process and its step processes, and when the run started (its first such event)."""
    pids, first = set(), None
    of_type = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_START}
    for entry in instance.all_logs(run_id, of_type=of_type):
        first = entry.timestamp if first is None else min(first, entry.timestamp)
        if entry.dagster_event is not None and entry.dagster_event.pid:
            pids.add(int(entry.dagster_event.pid))
    return pids, first


def fail_dead_runs(instance: dg.DagsterInstance | None, run_ids: list[str] | None = None) -> list[str]:
    """Mark failed every STARTED/CANCELING run (of `run_ids`, or all) whose processes are gone; their ids."""
    if instance is None or not isinstance(instance.run_storage, SqliteRunStorage):
        return []
    filters = dg.RunsFilter(statuses=list(LIVE_STATUSES), run_ids=run_ids) if run_ids else \
        dg.RunsFilter(statuses=list(LIVE_STATUSES))
    dead = []
    for record in instance.get_run_records(filters=filters):
        run = record.dagster_run
        pids, started = run_processes(instance, run.run_id)
        if not pids or started is None or any(process_alive_since(p, started) for p in pids):
            continue
        instance.report_run_failed(
            run, f"genrank: the process(es) of this run ({sorted(pids)}) are gone (killed or out of memory); "
                 "marked failed so that automation can go on. Re-execute it from the UI to retry.")
        dead.append(run.run_id)
    return dead
