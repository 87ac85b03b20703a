"""`make bench`: every live benchmark, one after the other, each in its own process
(``python -m benchmarks.<name>``); ``--quick`` (``make bench QUICK=1``) passes --quick to each.

The mpd7k benchmarks need ../shared/datasets/mpd7k; they are skipped with a message when it is absent.

    python -m benchmarks [--quick] [--only NAME ...] [--skip NAME ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks._common import MPD7K, REPO

ORDER = [  # (module, needs mpd7k); end_to_end leaves the home that generator, ranker, compare and named_singer read
    ("ingest", False),
    ("baselines", True),
    ("semantic_ids", True),
    ("cold_start", True),
    ("end_to_end", True),
    ("generator", True),
    ("ranker", True),
    ("compare", True),
    ("scaling", True),
    ("freshness", True),
    ("named_singer", True),  # reads the home end_to_end leaves
    ("ltr_memory", False),  # measures only with --warehouse (end_to_end leaves one); says so and exits 0 without
    ("serving_cost", True),
    ("gpu_check", False),
]
LIVE = [name for name, _ in ORDER]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    ap.add_argument("--only", nargs="+", choices=LIVE, default=None, help="run only these")
    ap.add_argument("--skip", nargs="+", choices=LIVE, default=[], help="leave these out")
    args = ap.parse_args(argv)
    failed, ran = [], []
    for name, needs_data in ORDER:
        if (args.only and name not in args.only) or name in args.skip:
            continue
        if needs_data and not MPD7K.is_dir():
            print(f"-- skip {name}: {MPD7K} not found")
            continue
        cmd = [sys.executable, "-m", f"benchmarks.{name}"] + (["--quick"] if args.quick else [])
        print(f"== {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd, cwd=REPO).returncode
        ran.append((name, time.perf_counter() - t0, code))
        if code != 0:
            failed.append(name)
    print("\n".join(f"{name:<14} {seconds:>7.0f} s  {'ok' if code == 0 else f'FAILED (exit {code})'}"
                    for name, seconds, code in ran))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
