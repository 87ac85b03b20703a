"""`make bench`: every benchmark, one after the other; each prints its table and writes benchmarks/results/*.json.

The mpd7k benchmarks need ../shared/datasets/mpd7k; they are skipped with a message when it is absent.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import MPD7K  # noqa: E402

ORDER = [  # (script, needs mpd7k)
    ("ingest.py", False),
    ("baselines.py", True),
    ("semantic_ids.py", True),
    ("tiger_generator.py", True),
    ("ranker_model.py", True),
    ("end_to_end.py", True),
    ("generator.py", True),
    ("ranker.py", True),
]


def main() -> int:
    failed = []
    for script, needs_data in ORDER:
        if not (HERE / script).exists():
            continue
        if needs_data and not MPD7K.is_dir():
            print(f"-- skip {script}: {MPD7K} not found")
            continue
        print(f"== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
