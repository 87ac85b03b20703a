"""Shared helpers of the benchmark scripts: machine description, peak memory, output paths and JSON, warehouse
reads, the one-process-per-asset step runner (end_to_end, scaling, compare) and the seeded samples of mpd7k.

Kept light to import (no torch, pandas or Dagster at module level), so that ``python -m benchmarks.<name> --help``
answers at once.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
QUICK_RESULTS = HERE / ".cache" / "quick"  # git-ignored: a --quick run never overwrites the committed figures
MPD7K = REPO.parent / "shared" / "datasets" / "mpd7k"
PRESETS = REPO / "genrank_assets" / "presets"
# The LTR rows a val-only benchmark may read: the holdout's and val's, never test's.
NOT_TEST_FEATURES = "select * from genrank.ranking_features where split <> 'test'"


def _folds() -> int:
    from genrank_assets.defs.folds import crossfit_folds

    return crossfit_folds()


def _fold_feature_queries() -> list[str]:
    from genrank_assets.defs.folds import fold_key
    from genrank_assets.defs.io_managers import table_name

    return [f"select * from genrank.{table_name(fold_key(k, 'ranking_features'))}" for k in range(_folds())]


FOLD_FEATURE_QUERIES = _fold_feature_queries()  # each fold's own rows (the ranker's training rows with val's)
CORPUS = "select * from genrank.playlist_corpus"
# --quick: a seeded 10% sample of mpd7k (707 playlists) through the `test` preset, one home shared by end_to_end,
# generator, ranker and compare (make bench QUICK=1 runs them in that order).
QUICK_ROOT = Path("/tmp/genrank_quick")
QUICK_HOME = QUICK_ROOT / "home"
QUICK_SCALE = 0.1
QUICK_PRESET = PRESETS / "test.yaml"
DEFAULT_HOME = Path("/tmp/genrank_mpd7k")  # the home end_to_end leaves and generator / ranker / compare read


# ----------------------------------------------------------------------------------------------- machine
def machine(**extra) -> dict:
    try:
        import torch

        torch_version = torch.__version__
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        torch_version, cuda = None, None
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(), "ram_gib": round(mem_gib, 1), "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0], "torch": torch_version, "gpu": cuda, **extra,
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(xs) -> float:
    return float(statistics.median(xs))


# ------------------------------------------------------------------------------------------------ output
def argument_parser(doc: str | None, name: str) -> argparse.ArgumentParser:
    """The parser of ``python -m benchmarks.<name>``, its module docstring as the description."""
    return argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_output_args(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """--quick (a size that finishes in minutes on 2 cores) and --out (the JSON path)."""
    parser.add_argument("--quick", action="store_true", help=f"{quick_help}; the JSON goes to "
                        f"{QUICK_RESULTS.relative_to(REPO)}/ unless --out is given")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"the JSON to write (default {RESULTS.relative_to(REPO)}/<name>.json)")


def parse_args(parser: argparse.ArgumentParser, quick: dict | None = None, argv: list[str] | None = None):
    """The parsed arguments; with --quick, ``quick``'s sizes wherever the command line left the default."""
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in (quick or {}).items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


def output_path(args: argparse.Namespace, name: str) -> Path:
    """Where a run writes ``name``'s JSON: --out, else the quick cache for --quick, else benchmarks/results/."""
    if args.out is not None:
        return Path(args.out)
    return (QUICK_RESULTS if args.quick else RESULTS) / f"{name}.json"


def write_json(out: Path, payload: dict) -> Path:
    """``payload`` with the benchmark's name, the machine and the date, to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": out.stem, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    print(f"wrote {out}")
    return out


def write_sections(out: Path, sections: dict[str, dict]) -> Path:
    """A script with several sections keeps one JSON: each section run replaces its own entry (with its own
    machine and date) and leaves the others as they were."""
    out = Path(out)
    previous = json.loads(out.read_text()).get("sections", {}) if out.exists() else {}
    stamp = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    merged = {**previous, **{name: {**stamp, **payload} for name, payload in sections.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": out.stem, "sections": merged}, indent=2, ensure_ascii=False, default=str))
    print(f"wrote {out} (sections {', '.join(sections)})")
    return out


def require_mpd7k(data: Path = MPD7K) -> Path:
    if not Path(data).is_dir():
        raise SystemExit(f"{data} not found: this benchmark reads mpd7k (docs/benchmark.md)")
    return Path(data)


# --------------------------------------------------------------------------------------------- warehouse
def warehouse_frames(home: Path, *queries: str) -> list:
    """The frame of each SQL query, from a materialised GENRANK_HOME's DuckDB warehouse opened read-only."""
    import duckdb

    con = duckdb.connect(str(Path(home) / "warehouse.duckdb"), read_only=True)
    try:
        return [con.execute(query).fetchdf() for query in queries]
    finally:
        con.close()


def pipeline_home(args: argparse.Namespace) -> Path:
    """--home, else the home ``end_to_end`` leaves (its quick one with --quick); it must hold a warehouse."""
    home = Path(args.home or (QUICK_HOME if args.quick else DEFAULT_HOME))
    if not (home / "warehouse.duckdb").exists():
        raise SystemExit(f"{home} holds no materialised warehouse: run python -m benchmarks.end_to_end"
                         f"{' --quick' if args.quick else ''} first")
    return home


# ----------------------------------------------------------------------------------------- step runner
def _fold_chain(fold: int) -> list[tuple[str, str]]:
    """Fold ``fold``'s steps (defs/crossfit.py), in dependency order; its cross-encoder's only when the LTR ranker
    learns from it (defs/folds.ltr_cross_encoder)."""
    from genrank_assets.defs.folds import ltr_cross_encoder

    f = f"fold_{fold}"
    cross_encoder = [(f"{f}/ranker_dataset", f"fold {fold}: ranker pairs"),
                     (f"{f}/ranker_model", f"fold {fold}: ranker training")] if ltr_cross_encoder() else []
    return [(f"{f}/upstream_corpus", f"fold {fold}: its train playlists held out"),
            (f"{f}/song_vectors", f"fold {fold}: word2vec"),
            (f"{f}/semantic_ids", f"fold {fold}: RQ-KMeans"),
            (f"{f}/generator_dataset", f"fold {fold}: generator pairs"),
            (f"{f}/tiger_model", f"fold {fold}: TIGER training"),
            *cross_encoder,
            (f"{f}/song_catalogue", f"fold {fold}: catalogue (cold-start songs placed)"),
            (f"{f}/ranking_features", f"fold {fold}: pools + features of its own playlists")]


def stages() -> list[list[list[tuple[str, str]]]]:
    """The full retrain as stages run one after another; a stage's chains run side by side (a process each, its
    steps one after another): the served upstream chain beside every cross-fitting fold's (defs/folds.py)."""
    served = [("song_vectors", "word2vec"),
              ("semantic_ids", "RQ-KMeans (+ metrics table)"),
              ("generator_dataset", "generator pairs"),
              ("tiger_model", "TIGER training + registry"),
              ("ranker_dataset", "ranker pairs (generator hard negatives)"),
              ("ranker_model", "ranker training + registry"),
              ("song_catalogue", "catalogue (cold-start songs placed)"),
              ("ltr_tables", "candidate pools + features (val, test; the holdout if any)")]
    return [[[("raw_playlists", "ingest (4 tables)")]], [[("playlist_corpus", "corpus")]],
            [[("upstream_corpus", "what the upstream models fit on")]],
            # the folds first: in STEPS order (one after another) everything ltr_ranker reads ends with ltr_tables
            [*(_fold_chain(k) for k in range(_folds())), served],
            [[("ltr_ranker", "LightGBM lambdarank on every train playlist's cross-fitted rows + val")]],
            [[("evaluation_report", "evaluation + challenger registered")]],
            [[("champion", "promotion gate (champion re-evaluated)")]]]


STEPS = [step for stage in stages() for chain in stage for step in chain]  # (selection, what), one after another
# A multi-asset is selected whole through one of its keys; the others come with it.
MULTI = {"raw_playlists": "raw_playlists,raw_playlist_songs,raw_songs,ingest_rejects,ingested_batches",
         "semantic_ids": "semantic_ids,semantic_id_metrics", "ltr_tables": "candidate_pools,ranking_features",
         **{f"fold_{k}/semantic_ids": f"fold_{k}/semantic_ids,fold_{k}/semantic_id_metrics"
            for k in range(_folds())}}
OP_STEP = {"raw_tables": "raw_playlists"}  # run-config op name -> its step, where they differ


def load_preset(preset: Path) -> dict:
    import yaml

    return yaml.safe_load(Path(preset).read_text())


def in_process_preset(preset: Path | dict, home: Path, holdout_share: float | None = None,
                      name: str | None = None) -> Path:
    """The preset (a path, or a run config already loaded) with the in-process executor: each step in the CLI's
    own process, so that process's rusage (wall time, CPU seconds, peak RSS) is the step's (steps run one per
    process here anyway). ``holdout_share``: upstream_corpus's ltr_holdout_share instead of the preset's."""
    import yaml

    config = load_preset(preset) if isinstance(preset, (str, Path)) else json.loads(json.dumps(preset))
    config["execution"] = {"config": {"in_process": {}}}
    if holdout_share is not None:
        config["ops"].setdefault("upstream_corpus", {}).setdefault("config", {})["ltr_holdout_share"] = holdout_share
    stem = name or (Path(preset).stem if isinstance(preset, (str, Path)) else "run_config")
    out = Path(home) / f"{stem}-in_process.yaml"
    out.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return out


def home_env(home: Path, data: Path) -> dict:
    """The environment of a step process: the home, its Dagster instance, the data folder, nothing downloaded."""
    home = Path(home)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GENRANK_HOME": str(home), "GENRANK_DATA_DIR": str(data),
           "DAGSTER_HOME": str(home / "dagster"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_step(selection: str, preset: Path, env: dict) -> dict:
    """``dagster asset materialize`` of one step in its own process; wall, CPU seconds and peak RSS (os.wait4)."""
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "genrank_assets.definitions",
           "--select", MULTI.get(selection, selection), "-c", str(preset)]
    t0 = time.perf_counter()
    with open(Path(env["GENRANK_HOME"]) / f"{selection.replace('/', '__')}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{selection} failed (exit {code}); see {env['GENRANK_HOME']}/{selection.replace('/', '__')}.log")
    return {"asset": selection, "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 0),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def run_stage(chains: list[list[tuple[str, str]]], preset: Path, env: dict, done: set[str],
              log_fn=print) -> tuple[list[dict], float]:
    """The chains of one stage side by side (a thread each, each step its own process, ``run_step``), skipping
    the steps in ``done``; (the timing of each step run, with its chain, the stage's wall seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    def chain_run(index: int, chain: list[tuple[str, str]]) -> list[dict]:
        out = []
        for selection, what in chain:
            if selection in done:
                continue
            log_fn(f"== {selection}: {what}")
            out.append({**run_step(selection, preset, env), "what": what, "chain": index})
            log_fn(f"   {selection}: {out[-1]['wall_s']} s, peak {out[-1]['peak_rss_mib']} MiB")
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, len(chains))) as pool:
        results = list(pool.map(chain_run, range(len(chains)), chains))
    return [t for chain in results for t in chain], round(time.perf_counter() - t0, 1)


# ------------------------------------------------------------------------------------------ mpd7k samples
FILES = ("gen_playlist_info.csv", "gen_playlist_song.csv.sort", "gen_song_info.csv")


def read_source(src: Path) -> tuple[bytes, list[tuple[bytes, bytes]], list[tuple[bytes, list[bytes]]],
                                    list[tuple[bytes, bytes]]]:
    """(info header, [(playlist id, info line)], [(playlist id, [song lines])] in file order, [(song id, line)])."""
    info_lines = (src / FILES[0]).read_bytes().split(b"\n")
    header, info = info_lines[0], [(ln.split(b"\t", 1)[0], ln) for ln in info_lines[1:] if ln]
    groups: list[tuple[bytes, list[bytes]]] = []
    for ln in (src / FILES[1]).read_bytes().split(b"\n"):
        if not ln:
            continue
        pid = ln.split(b"\t", 1)[0]
        if groups and groups[-1][0] == pid:
            groups[-1][1].append(ln)
        else:
            groups.append((pid, [ln]))
    songs = [(ln.split(b"\t", 1)[0], ln) for ln in (src / FILES[2]).read_bytes().split(b"\n") if ln]
    return header, info, groups, songs


def _relabel(line: bytes, suffix: bytes, fields: int) -> bytes:
    """The line with its first ``fields`` tab-separated fields suffixed (ids of a copy)."""
    parts = line.split(b"\t")
    for i in range(min(fields, len(parts))):
        parts[i] += suffix
    return b"\t".join(parts)


def scaled_mpd7k(scale: float, out: Path, src: Path = MPD7K, seed: int = 0) -> dict:
    """Write the data set of scale factor ``scale`` of mpd7k to ``out``; its manifest. s <= 1: a seeded sample of
    round(s x 7,071) playlists, their rows and the songs they hold (ids, titles and so the crc32 split unchanged);
    s > 1: floor(s) copies (copy c > 0 has playlist and song ids suffixed ``x<c>``) plus a seeded sample of the
    remaining fraction as one more copy."""
    import numpy as np

    out = Path(out)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("scale") == scale and manifest.get("seed") == seed and manifest.get("source") == str(src):
            return manifest
    header, info, groups, songs = read_source(src)
    rng = np.random.default_rng(seed)
    n_src = len(info)
    copies = int(math.floor(scale)) if scale >= 1 else 0
    rest = scale - copies
    # (copy index, chosen playlist ids); copy 0 keeps the original ids
    plan: list[tuple[int, set[bytes] | None]] = [(c, None) for c in range(copies)]
    if rest > 1e-9:
        k = int(round(rest * n_src))
        chosen = rng.choice(n_src, size=k, replace=False)
        plan.append((copies, {info[i][0] for i in chosen}))
    out.mkdir(parents=True, exist_ok=True)
    n_playlists = n_rows = n_songs = 0
    with open(out / FILES[0], "wb") as f_info, open(out / FILES[1], "wb") as f_ps, open(out / FILES[2], "wb") as f_s:
        f_info.write(header + b"\n")
        for c, keep in plan:
            suffix = b"" if c == 0 else b"x" + str(c).encode()
            used: set[bytes] | None = None if keep is None else set()
            for pid, line in info:
                if keep is None or pid in keep:
                    f_info.write(_relabel(line, suffix, 1) + b"\n")
                    n_playlists += 1
            for pid, lines in groups:
                if keep is None or pid in keep:
                    for ln in lines:
                        f_ps.write(_relabel(ln, suffix, 2) + b"\n")
                        if used is not None:
                            used.add(ln.split(b"\t")[1])
                    n_rows += len(lines)
            for sid, line in songs:  # a whole copy keeps the whole catalogue, a sample the songs it holds
                if used is None or sid in used:
                    f_s.write(_relabel(line, suffix, 1) + b"\n")
                    n_songs += 1
    manifest = {"scale": scale, "seed": seed, "source": str(src), "path": str(out), "playlists": n_playlists,
                "playlist_song_rows": n_rows, "songs": n_songs,
                "how": "seeded sample of mpd7k's playlists" if scale <= 1 else
                       f"{copies} relabelled copies of mpd7k" + (" + a seeded sample" if rest > 1e-9 else "")}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def quick_data() -> Path:
    """The --quick data folder: a seeded 10% sample of mpd7k (written once under QUICK_ROOT)."""
    return Path(scaled_mpd7k(QUICK_SCALE, QUICK_ROOT / f"data-s{QUICK_SCALE:g}", src=require_mpd7k())["path"])
