"""Shared helpers for benchmark scripts: machine description, peak memory, JSON output."""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# The LTR rows a val-only benchmark may read: the holdout's and val's, never test's.
NOT_TEST_FEATURES = "select * from genrank.ranking_features where split <> 'test'"
CORPUS = "select * from genrank.playlist_corpus"
MPD7K = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mpd7k"


def machine() -> dict:
    try:
        import torch

        torch_version = torch.__version__
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        torch_version, cuda = None, None
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(), "ram_gib": round(mem_gib, 1), "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0], "torch": torch_version, "gpu": cuda,
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_measured(argv: list[str]) -> dict:
    """Run a command in a fresh process; wall seconds and its peak RSS (from /usr/bin/time-like rusage)."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{proc.stderr[-2000:]}")
    return {"seconds": wall, "peak_rss_mib_children_max": peak, "stdout": proc.stdout}


def warehouse_frames(home: Path, *queries: str) -> list:
    """The frame of each SQL query, from a materialised GENRANK_HOME's DuckDB warehouse opened read-only."""
    import duckdb

    con = duckdb.connect(str(Path(home) / "warehouse.duckdb"), read_only=True)
    try:
        return [con.execute(query).fetchdf() for query in queries]
    finally:
        con.close()


def median(xs) -> float:
    return float(statistics.median(xs))


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    print(f"wrote {out}")
    return out
