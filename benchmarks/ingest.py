"""Ingest + corpus throughput and peak memory on mpd7k and on a generated 200k-playlist set.

Each measurement runs in a fresh subprocess (so peak RSS belongs to that run alone), three times; medians.
    python -m benchmarks.ingest [--playlists 200000] [--repeats 3] [--quick]
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import MPD7K, add_output_args, argument_parser, median, output_path, parse_args, write_json

CHILD = r"""
import json, resource, sys, time
from genrank_assets.ml.data.ingest import read_seed_folder
from genrank_assets.ml.data.corpus import build_corpus
t0 = time.perf_counter()
raw = read_seed_folder(sys.argv[1])
t1 = time.perf_counter()
res = build_corpus(raw.playlists, raw.playlist_songs, raw.songs, min_songs=1, max_songs=10**9)
t2 = time.perf_counter()
print(json.dumps({"read_s": t1 - t0, "corpus_s": t2 - t1, "rows": len(raw.playlist_songs),
                  "playlists": len(raw.playlists), "songs": len(raw.songs), "rejects": len(raw.rejects),
                  "kept": len(res.corpus), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
QUICK = {"playlists": 5_000, "songs": 10_000, "repeats": 1}


def measure(folder: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    total = [r["read_s"] + r["corpus_s"] for r in runs]
    first = runs[0]
    return {
        "folder": str(folder), "rows": first["rows"], "playlists": first["playlists"], "songs": first["songs"],
        "rejects": first["rejects"], "kept_playlists": first["kept"],
        "read_s_median": median([r["read_s"] for r in runs]), "corpus_s_median": median([r["corpus_s"] for r in runs]),
        "total_s_median": median(total), "rows_per_s": first["rows"] / median(total),
        "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs), "runs": runs,
    }


def main() -> None:
    ap = argument_parser(__doc__, "ingest")
    ap.add_argument("--playlists", type=int, default=200_000)
    ap.add_argument("--songs", type=int, default=400_000)
    ap.add_argument("--repeats", type=int, default=3)
    add_output_args(ap, f"one run each, a generated set of {QUICK['playlists']:,} playlists")
    args = parse_args(ap, QUICK)
    from genrank_assets.ml.data.demo_data import generate_demo_data

    results = {}
    if MPD7K.is_dir():
        results["mpd7k"] = measure(MPD7K, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_demo_data(tmp, n_playlists=args.playlists, n_songs=args.songs, seed=0)
        gen_s = time.perf_counter() - t0
        results[f"generated_{args.playlists}"] = {**measure(Path(tmp), args.repeats), "generate_s": gen_s}
    print(f"{'dataset':<20} {'rows':>10} {'playlists':>10} {'rejects':>8} {'read s':>8} {'corpus s':>9} {'rows/s':>11} {'peak MiB':>9}")
    for name, r in results.items():
        print(f"{name:<20} {r['rows']:>10,} {r['playlists']:>10,} {r['rejects']:>8,} {r['read_s_median']:>8.2f} "
              f"{r['corpus_s_median']:>9.2f} {r['rows_per_s']:>11,.0f} {r['peak_rss_mib_max']:>9.0f}")
    write_json(output_path(args, "ingest"), {
        "results": results, "repeats": args.repeats, "quick": args.quick,
        "note": "medians of fresh-process runs; corpus built with min_songs=1 (all playlists)"})


if __name__ == "__main__":
    main()
