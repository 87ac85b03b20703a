"""Materialise the asset graph quietly: one line per asset, full Dagster logs in a file.

``python -m genrank_assets.tools.demo_run -c genrank_assets/presets/demo.yaml`` (what `make demo` runs, also
``genrank materialize``) starts ``dagster asset materialize`` against the instance in ``DAGSTER_HOME`` (so the run
is in the UI like any other), sends everything it prints — every Dagster event at DEBUG — to a log file whose
path is printed first, and follows the run in the instance's event log. It prints:

* one line per asset as its step succeeds: name, rows or its main figure, the step's seconds
  (the assets of one multi-asset step share its line's time);
* every few seconds the latest progress line of a long step (``tiger_model epoch 2/6 step 50/864 (5%) ... eta``);
* a failed check or step, with its message, and the path of the full log;
* at the end the evaluation table when ``evaluation_report`` was built.

``-v`` (or ``GENRANK_VERBOSE=1``) also streams the full log to the terminal. The exit status is dagster's.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import genrank_assets.paths as paths
from genrank_assets.ml.training import format_duration

PROGRESS = re.compile(r"\bepoch \d+/\d+ step \d+/\d+\b|\b\d+/\d+ .*\beta\b")  # the shared progress-line format
PROGRESS_EVERY_S = 15.0
POLL_S = 0.5
TABLE_COLUMNS = ["method", "ndcg@10", "recall@10", "recall@100", "r_precision", "latency_p50_ms"]
# The log file holds plain lines: no library progress bars (model shards, weights, artifact downloads) unless
# the environment asks for them.
PLAIN_LOGS = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
              "TQDM_DISABLE": "1"}


def verbose_from_env() -> bool:
    return os.environ.get("GENRANK_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


def preset_path(preset: str) -> Path:
    """A preset file stem (``demo``) or a path to a YAML file."""
    try:
        return paths.preset_file(preset)
    except ValueError as e:
        raise SystemExit(f"genrank materialize: {e}") from None


def dagster_home() -> Path:
    """DAGSTER_HOME (default GENRANK_HOME/dagster), with the repository's instance settings on first use."""
    home = Path(os.environ.get("DAGSTER_HOME") or paths.genrank_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(paths.DAGSTER_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


# -- what one line says about an asset ----------------------------------------------------------------------

def _num(meta: dict, key: str):
    value = meta.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def asset_summary(asset: str, meta: dict) -> str:
    """Rows, or the figure a person looks at first, from an asset's materialisation metadata."""
    rows = _num(meta, "dagster/row_count")
    if asset in ("tiger_model", "ranker_model"):
        parts = []
        for key, label in (("best_val_auc", "val AUC"), ("best_val_loss", "val loss")):
            if _num(meta, key) is not None:
                parts.append(f"{label} {_num(meta, key):.3f}")
        if _num(meta, "untrained_val_loss") is not None and asset == "tiger_model":
            parts.append(f"(untrained {_num(meta, 'untrained_val_loss'):.3f})")
        if meta.get("epochs_run") is not None:
            parts.append(f"{meta['epochs_run']} epochs")
        return " ".join(parts) or "model logged"
    if asset == "evaluation_report" and _num(meta, "new_ndcg@10") is not None:
        ref = _num(meta, "title_knn.ndcg@10")
        return (f"NDCG@10 {_num(meta, 'new_ndcg@10'):.4f} served system"
                + (f", title_knn {ref:.4f}" if ref is not None else ""))
    if asset == "champion":
        if str(meta.get("promoted")).lower() == "true":
            return f"promoted: champion is v{meta.get('champion_version', '?')}"
        return f"champion kept (v{meta.get('champion_version', '?')})"
    if asset == "semantic_ids" and _num(meta, "distinct_codes") is not None:
        return f"{int(rows or 0):,} songs, {int(_num(meta, 'distinct_codes')):,} distinct codes"
    if asset == "song_vectors" and meta.get("dim") is not None:
        return f"{int(rows or 0):,} songs x {meta['dim']}"
    if asset == "ingest_rejects" and rows is not None:
        return f"{int(rows):,} rows quarantined"
    return f"{int(rows):,} rows" if rows is not None else ""


# -- following a run in the event log -----------------------------------------------------------------------

@dataclass
class RunFollower:
    """Reads a run's events from the instance and prints the quiet view of them."""

    out: object = sys.stdout
    progress: bool = True
    step_assets: dict[str, list[tuple[str, dict]]] = field(default_factory=dict)
    last_progress: dict[str, float] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    checks_passed: int = 0
    assets_done: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def handle(self, entry) -> None:
        from dagster import DagsterEventType

        event = entry.dagster_event
        if event is None:  # a context.log message
            message = entry.user_message or ""
            if self.progress and entry.step_key and PROGRESS.search(message):
                now = time.monotonic()
                if now - self.last_progress.get(entry.step_key, 0.0) >= PROGRESS_EVERY_S:
                    self.last_progress[entry.step_key] = now
                    self.say(f"    {message.strip()}")
            return
        kind = event.event_type
        if kind == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            meta = {k: v.value for k, v in mat.metadata.items()}
            self.step_assets.setdefault(entry.step_key, []).append((mat.asset_key.to_user_string(), meta))
        elif kind == DagsterEventType.STEP_SUCCESS:
            seconds = event.event_specific_data.duration_ms / 1000
            for i, (asset, meta) in enumerate(self.step_assets.pop(entry.step_key, [])):
                shown = _seconds(seconds) if i == 0 else ""
                self.say(f"  {asset:<20} {asset_summary(asset, meta):<46} {shown:>6}")
                self.assets_done.append(asset)
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            if check.passed:
                self.checks_passed += 1
            else:
                blocking = "blocking" if getattr(check, "blocking", False) else check.severity.value.lower()
                meta = {k: v.value for k, v in check.metadata.items()}
                why = meta.get("failed_because") or ", ".join(f"{k}={v}" for k, v in list(meta.items())[:4])
                line = f"check {check.check_name} on {check.asset_key.to_user_string()} failed ({blocking}): {why}"
                self.failed_checks.append(line)
                self.say(f"  ! {line}")
        elif kind == DagsterEventType.STEP_FAILURE:
            error = event.event_specific_data.error
            message = (error.message if error else "").strip().splitlines()
            line = f"step {entry.step_key} failed: {message[-1] if message else 'see the log'}"
            self.failures.append(line)
            self.say(f"  ✗ {line}")


def _seconds(s: float) -> str:
    return f"{s:.1f}s" if s < 60 else format_duration(s)


def _new_run(instance, known: set[str], since: datetime):
    from dagster import RunsFilter

    for run in instance.get_runs(RunsFilter(created_after=since), limit=10):
        if run.run_id not in known:
            return run
    return None


def follow(instance, proc: subprocess.Popen, known: set[str], since: datetime, follower: RunFollower) -> str | None:
    """Print the run's events until the materialise process ends; returns the run id (None if none started)."""
    run_id, cursor = None, None
    while True:
        alive = proc.poll() is None
        if run_id is None:
            run = _new_run(instance, known, since)
            run_id = run.run_id if run else None
        if run_id is not None:
            while True:
                conn = instance.get_records_for_run(run_id, cursor=cursor, limit=500)
                for record in conn.records:
                    follower.handle(record.event_log_entry)
                cursor = conn.cursor
                if not conn.has_more:
                    break
        if not alive:
            return run_id
        time.sleep(POLL_S)


def _pump(stream, log_file, echo: bool) -> None:
    for chunk in iter(lambda: stream.readline(), b""):
        log_file.write(chunk)
        log_file.flush()
        if echo:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()


def evaluation_table(home: Path | None = None) -> str | None:
    """The warehouse's evaluation_report as a short text table (None when it was not built)."""
    import duckdb

    db = paths.warehouse_path(home)
    if not db.exists():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        df = con.execute("select * from genrank.evaluation_report").fetchdf()
    except duckdb.CatalogException:
        return None
    finally:
        con.close()
    cols = [c for c in TABLE_COLUMNS if c in df.columns]
    return df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genrank materialize", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--preset", default="demo", help="preset name in genrank_assets/presets/ or a YAML path "
                                                              "(default: demo)")
    parser.add_argument("--select", default="*", help="asset selection (default: '*', the whole graph)")
    parser.add_argument("--log", type=Path, default=None,
                        help="where the full Dagster log goes (default: GENRANK_HOME/logs/materialize-<time>.log)")
    parser.add_argument("-v", "--verbose", action="store_true", default=verbose_from_env(),
                        help="also print the full log (same as GENRANK_VERBOSE=1)")
    args = parser.parse_args(argv)

    preset = preset_path(args.preset)
    instance_home = dagster_home()
    log_path = args.log or paths.genrank_home() / "logs" / f"materialize-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    command = [dagster, "asset", "materialize", "-m", "genrank_assets.definitions", "--select", args.select,
               "-c", str(preset)]

    from dagster import DagsterInstance

    began = time.monotonic()
    print(f"materialising {args.select!r} with {preset.name} (Dagster instance {instance_home})", flush=True)
    print(f"full log: {log_path}", flush=True)
    with DagsterInstance.get() as instance, open(log_path, "ab") as log_file:
        known = {r.run_id for r in instance.get_runs(limit=50)}
        since = datetime.now(timezone.utc) - timedelta(seconds=5)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**PLAIN_LOGS, **os.environ, "DAGSTER_HOME": str(instance_home)})
        pump = threading.Thread(target=_pump, args=(proc.stdout, log_file, args.verbose), daemon=True)
        pump.start()
        follower = RunFollower(progress=not args.verbose)
        try:
            run_id = follow(instance, proc, known, since, follower)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            print(f"interrupted; full log: {log_path}", file=sys.stderr)
            return 130
        pump.join(timeout=10)
    rc = proc.returncode
    took = format_duration(time.monotonic() - began)
    checks = f"{follower.checks_passed} checks passed" + (
        f", {len(follower.failed_checks)} failed" if follower.failed_checks else "")
    if rc == 0:
        print(f"{len(follower.assets_done)} assets in {took}, {checks} (run {run_id or '?'})", flush=True)
        if "evaluation_report" in follower.assets_done:
            table = evaluation_table()
            if table:
                print("\nevaluation on the held-out test split (docs/benchmark.md protocol):")
                print(table, flush=True)
    else:
        print(f"materialisation failed (exit {rc}) after {took}, {checks}; the full log is {log_path}",
              file=sys.stderr, flush=True)
        if not follower.failures and not args.verbose:  # failed before any step (config, import): show the end
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            print("\n".join(tail), file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
