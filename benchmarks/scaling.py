"""Measured scaling: the whole graph (cpu-real preset) on generated data at scale factors s of mpd7k.

For each s the generator writes a dataset in the input format (docs/input-format.md) to a folder under /tmp:

* s <= 1: a seeded sample of round(s x 7,071) of mpd7k's playlists, their rows, and the songs they hold (the real
  data subsampled: ids, titles and the crc32 split of each kept playlist are unchanged);
* s > 1: floor(s) copies of mpd7k (copy c > 0 has playlist ids `<id>x<c>` and song ids `<id>x<c>`, so songs scale
  alike; titles, names and singers kept) plus a seeded sample of the remaining fraction as one more copy.

The graph then runs once per size with the one-process-per-asset step runner of benchmarks/_common.py (as
end_to_end: each asset its own `dagster asset materialize` process with the in-process executor; wall, CPU
seconds and peak RSS from os.wait4) into a fresh GENRANK_HOME per size, and the per-asset and total growth
exponents are fitted (numpy polyfit of log value vs log playlists; CPU seconds, wall seconds, peak RSS). Results:
benchmarks/results/scaling.json and scaling.png.

    python -m benchmarks.scaling      # 0.1x and 0.3x, the 1x point from results/end_to_end.json when present
    python -m benchmarks.scaling --sizes 3 10          # adds to the sizes already in scaling.json
    python -m benchmarks.scaling --fit-only            # refit and replot scaling.json's sizes
    python -m benchmarks.scaling --generate-only --sizes 10   # only write the data set
    python -m benchmarks.scaling --quick  # 0.05x and 0.1x with the test preset, into benchmarks/.cache/quick/
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (
    MPD7K,
    PRESETS,
    QUICK_PRESET,
    QUICK_RESULTS,
    QUICK_ROOT,
    REPO,
    RESULTS,
    STEPS,
    argument_parser,
    home_env,
    in_process_preset,
    machine,
    read_source,
    require_mpd7k,
    run_step,
    scaled_mpd7k,
)

ROOT = Path("/tmp/genrank_scaling")
TARGET_TIME_RATIO = 11.0  # 10x the playlists -> at most 11x the total time
TARGET_PEAK_RSS_MIB = 6144.0  # at 70k playlists (10x)
DEFAULT_SIZES = (0.1, 0.3)
QUICK_SIZES = (0.05, 0.1)


# ------------------------------------------------------------------------------------------------- data
def source_counts(src: Path = MPD7K) -> dict:
    _, info, groups, songs = read_source(src)
    return {"playlists": len(info), "playlist_song_rows": sum(len(g) for _, g in groups), "songs": len(songs)}


# --------------------------------------------------------------------------------------------- running
def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def warehouse_counts(home: Path) -> dict:
    """Row counts of the main tables of a finished run (what each step worked on)."""
    import duckdb

    counts = {}
    try:
        con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
        for table in ("raw_playlists", "raw_playlist_songs", "raw_songs", "song_vectors", "semantic_ids",
                      "generator_dataset", "ranker_dataset", "candidate_pools", "ranking_features"):
            try:
                counts[table] = int(con.execute(f"select count(*) from genrank.{table}").fetchone()[0])
            except duckdb.Error:
                pass
        try:  # the song occurrences word2vec trains on (songs below min_count are dropped from the sentences)
            counts["song_vectors_occurrences"] = int(con.execute(
                "select sum(count) from genrank.song_vectors").fetchone()[0])
        except (duckdb.Error, TypeError):
            pass
        try:
            counts["corpus_splits"] = dict(con.execute(
                "select split, count(*) from genrank.playlist_corpus group by split").fetchall())
        except duckdb.Error:
            pass
        con.close()
    except Exception as exc:  # noqa: BLE001 - counts are extra information only
        counts["error"] = repr(exc)
    return counts


def run_size(scale: float, preset: Path, root: Path, seed: int) -> dict:
    manifest = scaled_mpd7k(scale, root / "data" / f"s{scale:g}", seed=seed)
    home = root / f"home-s{scale:g}"
    if home.exists():
        shutil.rmtree(home)  # a fresh GENRANK_HOME per size
    env = home_env(home, manifest["path"])
    step_preset = in_process_preset(preset, home)
    started, steps = _uptime(), []
    print(f"== scale {scale:g}: {manifest['playlists']} playlists, {manifest['songs']} songs -> {home}\n   {started}",
          flush=True)
    for selection, what in STEPS:
        load0 = os.getloadavg()[0]
        step = {**run_step(selection, step_preset, env), "what": what}
        step["load1_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        steps.append(step)
        (home / "step_timings.json").write_text(json.dumps(steps, indent=1))
        print(f"   {selection:<20} wall {step['wall_s']:>7} s  cpu {step['cpu_s']:>7} s  peak {step['peak_rss_mib']:>6} "
              f"MiB  load {step['load1_before_after']}", flush=True)
    return {**_size_entry(manifest["playlists"], steps), "scale": scale, "data": manifest,
            "source": "generated (seeded sample of mpd7k)" if scale <= 1 else "generated (relabelled copies of mpd7k)",
            "home": str(home), "uptime_start": started, "uptime_end": _uptime(), "tables": warehouse_counts(home)}


_STEP_DONE = re.compile(r'Finished execution of step "[^"]+" in ([0-9.hms]+)\.')


def _seconds(text: str) -> float:
    """Dagster's format_duration back to seconds: 533ms, 2.1s, 4m52s, 1h4m."""
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    total = 0.0
    for value, unit in re.findall(r"([0-9.]+)([hms])", text):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def add_in_step_seconds(entry: dict) -> None:
    """Each step's seconds inside Dagster's step(s) (its STEP_SUCCESS durations, from the step's log in the
    run's GENRANK_HOME): the step's work without the process start, definitions load and run bookkeeping."""
    home = Path(entry.get("home") or "")
    for step in entry["steps"]:
        log = home / f"{step['asset']}.log"
        if "in_step_wall_s" in step or not log.exists():
            continue
        step["in_step_wall_s"] = round(sum(_seconds(m) for m in _STEP_DONE.findall(log.read_text(errors="replace"))), 1)


def measure_startup(root: Path) -> dict:
    """CPU and wall seconds of a step process that does no step: `dagster asset list` loads the same code location
    (imports, Definitions) as each `dagster asset materialize` step does. Subtracted from each step's CPU seconds
    for the net exponents (the run's own bookkeeping, ~1 s, stays in)."""
    home = root / "home-startup"
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GENRANK_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "list", "-m", "genrank_assets.definitions"]
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return {"cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "wall_s": round(time.perf_counter() - t0, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 0), "load1_before": round(load0, 2), "how": " ".join(cmd[1:])}


def _size_entry(playlists: int, steps: list[dict]) -> dict:
    cpu = [s.get("cpu_s") for s in steps]
    return {"playlists": playlists, "total_wall_s": round(sum(s["wall_s"] for s in steps), 1),
            "total_cpu_s": round(sum(cpu), 1) if all(c is not None for c in cpu) else None,
            "peak_rss_mib": max(s["peak_rss_mib"] for s in steps), "steps": steps}


def reuse_1x(path: Path) -> dict:
    """The 1x point from an end_to_end.json (or the step_timings.json of a run in progress): mpd7k itself."""
    payload = json.loads(path.read_text())
    steps = payload if isinstance(payload, list) else payload["steps"]
    names = [s for s, _ in STEPS]
    missing = [n for n in names if n not in {s["asset"] for s in steps}]
    counts = source_counts()
    home = payload.get("home") if isinstance(payload, dict) else str(path.parent)
    return {**_size_entry(counts["playlists"], steps), "scale": 1.0, "home": home,
            "data": {**counts, "path": str(MPD7K), "how": "mpd7k itself"},
            "source": f"mpd7k itself (real data, not generated), from {path}", "missing_steps": missing,
            "date": payload.get("date") if isinstance(payload, dict) else None}


# ------------------------------------------------------------------------------------- classical probe
def _probe_one(data: Path, n_queries: int) -> dict:
    """In this process: the classical sources of the candidate pool (tuned kNN, kNN + co-occurrence, bounded
    kernel ridge + co-occurrence; ml/ranking/ltr/candidates.py, no generator) fitted on the data set's train
    playlists, then ``build_pool`` for the first ``n_queries`` val titles: the per-query work that ltr_tables and
    evaluation_report repeat for every val / test query."""
    import pandas as pd

    from genrank_assets.ml.data.corpus import split_of
    from genrank_assets.ml.ranking.ltr.candidates import CLASSICAL_SOURCES, CandidateSources, PoolConfig, build_pool

    header, info, groups, _ = read_source(data)
    titles = {pid: ln.split(b"\t")[1].decode("utf-8", "replace") for pid, ln in info}
    ids = [pid.decode() for pid, _ in groups]
    corpus = pd.DataFrame({"playlist_id": ids, "title": [titles.get(pid, "") for pid, _ in groups],
                           "song_ids": [[ln.split(b"\t")[1].decode() for ln in lines] for _, lines in groups],
                           "split": [split_of(i) for i in ids]})
    del groups, info
    t0 = time.process_time()
    sources = CandidateSources.fit(corpus)
    fit_cpu = time.process_time() - t0
    texts = [t for t, sp_ in zip(corpus["title"], corpus["split"]) if sp_ == "val" and t.strip()][:n_queries]
    config = PoolConfig(sources=CLASSICAL_SOURCES)
    build_pool(texts[0], sources, config)  # warm
    t0 = time.process_time()
    for text in texts:
        build_pool(text, sources, config)
    per_query = (time.process_time() - t0) / len(texts)
    return {"train_playlists": int((corpus["split"] == "train").sum()), "catalogue_songs": len(sources.catalogue),
            "catalogue_pairs": int(sources.catalogue.playlists.nnz), "fit_cpu_s": round(fit_cpu, 2),
            "queries": len(texts), "per_query_cpu_ms": round(1000 * per_query, 2),
            "val_test_queries": int(corpus["split"].isin(["val", "test"]).sum())}


def probe_classical(scales: list[float], root: Path, seed: int, n_queries: int) -> list[dict]:
    """``_probe_one`` per scale, each in its own process (its wall, CPU and peak RSS from os.wait4)."""
    out = []
    for scale in scales:
        data = scaled_mpd7k(scale, root / "data" / f"s{scale:g}", seed=seed)
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--probe-one", data["path"], "--probe-queries",
               str(n_queries)]
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"probe at scale {scale} failed")
        row = {"scale": scale, "playlists": data["playlists"], **json.loads(stdout.strip().splitlines()[-1]),
               "process_wall_s": round(time.perf_counter() - t0, 1),
               "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
               "process_peak_rss_mib": round(usage.ru_maxrss / 1024, 0),
               "load1_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)]}
        # all val + test queries of the data set at this per-query cost: a product of two measurements
        row["classical_cpu_s_all_val_test_queries"] = round(row["per_query_cpu_ms"] * row["val_test_queries"] / 1000, 1)
        print(json.dumps(row), flush=True)
        out.append(row)
    if len(out) >= 2:
        n = [r["playlists"] for r in out]
        for r in out:
            r["per_query_exponent"] = _slope(n, [x["per_query_cpu_ms"] for x in out])
            r["fit_exponent"] = _slope(n, [x["fit_cpu_s"] for x in out])
            r["rss_exponent"] = _slope(n, [x["process_peak_rss_mib"] for x in out])
    return out


# ----------------------------------------------------------------------------------------------- fits
def _slope(xs, ys) -> float | None:
    pts = [(x, y) for x, y in zip(xs, ys) if x and y is not None and y > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return round(float(np.polyfit(lx, ly, 1)[0]), 3)


def _net(step: dict, startup_cpu: float) -> float | None:
    return None if step.get("cpu_s") is None else max(step["cpu_s"] - startup_cpu, 0.1)


def fit(sizes: list[dict], startup_cpu: float = 0.0) -> dict:
    """Log-log slopes per asset and for the totals: over all sizes, and between the two largest (the local
    exponent, least diluted by the fixed start-up cost of each step)."""
    sizes = sorted(sizes, key=lambda s: s["playlists"])
    n = [s["playlists"] for s in sizes]
    last2 = slice(len(sizes) - 2, len(sizes))
    out = {"assets": {}, "playlists": n}
    for name, _ in STEPS:
        rows = [{t["asset"]: t for t in s["steps"]}.get(name) for s in sizes]
        if any(r is None for r in rows):
            continue
        rows = [{**r, "net_cpu_s": _net(r, startup_cpu)} for r in rows]
        entry = {}
        for key, label in (("cpu_s", "cpu"), ("net_cpu_s", "net_cpu"), ("wall_s", "wall"),
                           ("in_step_wall_s", "in_step_wall"), ("peak_rss_mib", "rss")):
            ys = [r.get(key) for r in rows]
            entry[f"{label}_exponent"] = _slope(n, ys)
            entry[f"{label}_exponent_last_two"] = _slope(n[last2], ys[last2]) if len(n) > 2 else None
        out["assets"][name] = entry
    totals = [dict(s) for s in sizes]
    for t in totals:
        net = [_net(x, startup_cpu) for x in t["steps"]]
        t["total_net_cpu_s"] = None if None in net else sum(net)
    out["startup_cpu_s"] = startup_cpu
    for key, label in (("total_cpu_s", "cpu"), ("total_net_cpu_s", "net_cpu"), ("total_wall_s", "wall"),
                       ("peak_rss_mib", "rss")):
        ys = [s.get(key) for s in totals]
        out[f"total_{label}_exponent"] = _slope(n, ys)
        out[f"total_{label}_exponent_last_two"] = _slope(n[last2], ys[last2]) if len(n) > 2 else None
    return out


def project(sizes: list[dict], fits: dict, factors=(3.0, 10.0)) -> dict:
    """PROJECTION (not a measurement): each asset's CPU seconds and peak RSS at factor x the largest size's
    playlists, from its fitted exponents (the larger of the all-sizes and last-two slopes, the cautious one):
    CPU = start-up + net CPU x factor ** net-CPU exponent; RSS = RSS x factor ** max(RSS exponent, 0)."""
    top = max(sizes, key=lambda s: s["playlists"])
    by = {t["asset"]: t for t in top["steps"]}
    out = {"kind": "projection from the fitted exponents, NOT a measurement", "from_playlists": top["playlists"]}
    for f in factors:
        cpu, rss, per = 0.0, 0.0, {}
        for name, e in fits["assets"].items():
            if by[name].get("cpu_s") is None:
                continue
            k_cpu = max(x for x in (e["net_cpu_exponent"], e["net_cpu_exponent_last_two"]) if x is not None)
            k_rss = max(x for x in (e["rss_exponent"], e["rss_exponent_last_two"]) if x is not None)
            startup = fits["startup_cpu_s"]
            c = startup + _net(by[name], startup) * f ** k_cpu  # the start-up does not grow, the work does
            r = by[name]["peak_rss_mib"] * f ** max(k_rss, 0.0)
            per[name] = {"cpu_s": round(c, 1), "peak_rss_mib": round(r, 0)}
            cpu, rss = cpu + c, max(rss, r)
        base = sum(by[n]["cpu_s"] for n in per)  # the same steps, measured at the largest size
        out[f"x{f:g}"] = {"playlists": int(round(top["playlists"] * f)), "total_cpu_s": round(cpu, 1),
                          "time_ratio": round(cpu / base, 2), "peak_rss_mib": round(rss, 0), "steps": per,
                          "steps_left_out": [n for n, _ in STEPS if n not in per]}
    x10 = out.get("x10")
    if x10:
        out["targets"] = {"time_ratio_at_10x<=11": x10["time_ratio"] <= TARGET_TIME_RATIO,
                          "peak_rss_mib_at_10x<=6144": x10["peak_rss_mib"] <= TARGET_PEAK_RSS_MIB}
    return out


def plot(sizes: list[dict], fits: dict, path: Path) -> Path:
    from genrank_assets.ml.plots import _plt, _save

    plt = _plt()
    sizes = sorted(sizes, key=lambda s: s["playlists"])
    n = np.array([s["playlists"] for s in sizes], dtype=float)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 5.5))
    for i, name in enumerate(fits["assets"]):
        color = plt.cm.tab20(i % 20)
        ys = [{t["asset"]: t for t in s["steps"]}[name].get("cpu_s") for s in sizes]
        if all(y for y in ys):
            e = fits["assets"][name]
            ax_t.plot(n, ys, marker="o", lw=1, color=color,
                      label=f"{name} ({e['cpu_exponent']}; net {e['net_cpu_exponent']})")
        rs = [{t["asset"]: t for t in s["steps"]}[name]["peak_rss_mib"] for s in sizes]
        ax_m.plot(n, rs, marker="o", lw=1, color=color, label=name)
    total = [s.get("total_cpu_s") for s in sizes]
    if all(total):
        ax_t.plot(n, total, marker="s", lw=2.5, color="black",
                  label=f"total CPU ({fits['total_cpu_exponent']}; net {fits['total_net_cpu_exponent']})")
        ax_t.plot(n, total[0] * n / n[0], ls="--", color="grey", label="linear from the smallest")
    ax_t.plot(n, [s["total_wall_s"] for s in sizes], marker="s", lw=1.5, ls=":", color="black",
              label=f"total wall ({fits['total_wall_exponent']})")
    ax_m.axhline(TARGET_PEAK_RSS_MIB, color="red", ls="--", label="6 GiB target")
    for ax, ylabel, title in ((ax_t, "CPU seconds (step process)",
                               "CPU s per asset (exponent; net of the step process start-up)"),
                              (ax_m, "peak RSS (MiB)", "Peak RSS per asset")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("playlists" + ("  (1x: mpd7k itself, the others generated)"
                                     if any(str(s.get("source", "")).startswith("mpd7k") for s in sizes) else ""))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def previous_probe(out: Path) -> list | None:
    return json.loads(out.read_text()).get("classical_probe") if out.exists() else None


def write(sizes: list[dict], out: Path, startup: dict | None = None, preset: Path | None = None,
          quick: bool = False) -> dict:
    sizes = sorted(sizes, key=lambda s: s["playlists"])
    for entry in sizes:
        add_in_step_seconds(entry)
        if "song_vectors_occurrences" not in entry.get("tables", {}) and entry.get("home") and \
                not entry.get("missing_steps") and \
                (Path(entry["home"]) / "warehouse.duckdb").exists():
            entry["tables"] = {**entry.get("tables", {}), **warehouse_counts(Path(entry["home"]))}
    fits = fit(sizes, startup["cpu_s"] if startup else 0.0) if len(sizes) >= 2 else {}
    preset_name = Path(preset).relative_to(REPO) if preset and Path(preset).is_relative_to(REPO) else preset
    payload = {"benchmark": out.stem, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "preset": f"{preset_name or 'genrank_assets/presets/cpu-real.yaml'} (in-process executor, one "
                         "process per step)", "quick": quick,
               "targets": {"time_ratio_10x": TARGET_TIME_RATIO, "peak_rss_mib_at_10x": TARGET_PEAK_RSS_MIB},
               "step_process_startup": startup, "sizes": sizes, "fits": fits,
               "classical_probe": previous_probe(out),
               "projection": project(sizes, fits) if fits else None}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    if fits:
        plot(sizes, fits, out.with_suffix(".png"))
    print(f"wrote {out}")
    return payload


def main() -> None:
    ap = argument_parser(__doc__, "scaling")
    ap.add_argument("--sizes", type=float, nargs="*", default=None,
                    help=f"scale factors of mpd7k (e.g. 0.1 0.3 1 3 10; default {' '.join(map(str, DEFAULT_SIZES))} "
                         "and the 1x point from results/end_to_end.json when it is there)")
    ap.add_argument("--reuse-1x", type=Path, default=None,
                    help="take the 1x point from this end_to_end.json (or a run's step_timings.json)")
    ap.add_argument("--root", type=Path, default=None, help=f"data sets and GENRANK_HOMEs go here (not the repo; "
                    f"default {ROOT}, --quick: {QUICK_ROOT / 'scaling'})")
    ap.add_argument("--preset", type=Path, default=None,
                    help="default genrank_assets/presets/cpu-real.yaml (--quick: test.yaml)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help=f"sizes {' '.join(map(str, QUICK_SIZES))} with the test preset, measured afresh; the JSON "
                         f"and plot go to {QUICK_RESULTS.relative_to(REPO)}/ unless --out is given")
    ap.add_argument("--out", type=Path, default=None, help="the JSON (and plot beside it) to read and extend "
                    f"(default {(RESULTS / 'scaling.json').relative_to(REPO)})")
    ap.add_argument("--fresh", action="store_true", help="forget the sizes already in --out")
    ap.add_argument("--fit-only", action="store_true", help="run nothing; refit and replot --out")
    ap.add_argument("--generate-only", action="store_true", help="only write the data sets of --sizes")
    ap.add_argument("--probe", type=float, nargs="*", default=None,
                    help="only the classical-pool probe at these scale factors (per-query cost; into --out)")
    ap.add_argument("--probe-queries", type=int, default=30)
    ap.add_argument("--probe-one", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_one:
        print(json.dumps(_probe_one(args.probe_one, args.probe_queries)))
        return
    require_mpd7k()
    args.out = args.out or (QUICK_RESULTS if args.quick else RESULTS) / "scaling.json"
    args.root = args.root or (QUICK_ROOT / "scaling" if args.quick else ROOT)
    args.preset = args.preset or (QUICK_PRESET if args.quick else PRESETS / "cpu-real.yaml")
    if args.probe is not None:
        payload = json.loads(args.out.read_text()) if args.out.exists() else {"sizes": []}
        payload["classical_probe"] = probe_classical(args.probe, args.root, args.seed, args.probe_queries)
        args.out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
        print(f"wrote {args.out}")
        return
    if args.sizes is None and not args.fit_only:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
        if not args.quick and args.reuse_1x is None and (RESULTS / "end_to_end.json").exists():
            args.reuse_1x = RESULTS / "end_to_end.json"
    args.sizes = args.sizes or []
    if args.generate_only:
        for s in args.sizes:
            print(json.dumps(scaled_mpd7k(s, args.root / "data" / f"s{s:g}", seed=args.seed)))
        return
    fresh = args.fresh or args.quick
    previous = {} if fresh or not args.out.exists() else json.loads(args.out.read_text())
    sizes = previous.get("sizes", [])
    startup = previous.get("step_process_startup") or measure_startup(args.root)
    keep = lambda new: [s for s in sizes if s["playlists"] != new["playlists"]] + [new]  # noqa: E731
    if args.reuse_1x:
        sizes = keep(reuse_1x(args.reuse_1x))
    if not args.fit_only:
        for s in args.sizes:
            sizes = keep(run_size(s, args.preset, args.root, args.seed))
            write(sizes, args.out, startup, args.preset, args.quick)  # after every size: a long run keeps its sizes
    payload = write(sizes, args.out, startup, args.preset, args.quick)
    if payload["fits"]:
        print(json.dumps({k: payload["fits"][k] for k in payload["fits"] if k.startswith("total")}, indent=1))
        print(json.dumps(payload["projection"], indent=1)[:3000])


if __name__ == "__main__":
    main()
