"""Retraining automation: a sensor for newly landed playlist batches, a retraining schedule, per-stage jobs.

- `new_batch_sensor` watches GENRANK_DATA_DIR/incoming/ and requests one run per complete batch (a folder holding
  `_SUCCESS`), with `run_key` = the batch id: `refresh_job` (ingest, then refresh the catalogue and its challenger;
  docs/operating.md#keeping-the-catalogue-fresh), or `new_batch_job` (ingest and retrain everything downstream)
  before the first full retrain or with GENRANK_BATCH_RUN=full.
- `retrain_schedule` runs `retrain_all_job` on a cron (weekly by default; env GENRANK_RETRAIN_CRON).
- `<group>_job` per asset group, for partial reruns from the UI, and `retrain_all_job` for everything.

Runs started here use the run config of the preset named by env GENRANK_PRESET (a file stem in presets/ or a
path to a YAML file), so automated retrains train with the same settings as a manual `-c presets/...` run.

`build_automation(assets)` builds them from the assets `definitions.py` passes in, so the jobs follow the
groups actually loaded; this module imports no asset module and no definitions.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import dagster as dg
import yaml

import genrank_assets.paths as paths
from genrank_assets.defs.assets import in_stage_order
from genrank_assets.defs.executors import genrank_executor
from genrank_assets.defs.liveness import fail_dead_runs
from genrank_assets.defs.resources import GenrankPaths
from genrank_assets.ml.data.batches import incoming_dir, scan_incoming

# Display order of the per-stage jobs; groups not listed here follow in name order.

RETRAIN_CRON_ENV = "GENRANK_RETRAIN_CRON"
DEFAULT_RETRAIN_CRON = "0 3 * * 1"  # Mondays 03:00
RETRAIN_TIMEZONE_ENV = "GENRANK_RETRAIN_TIMEZONE"
PRESET_ENV = "GENRANK_PRESET"

BATCH_TAG = "genrank/batch_id"
TRIGGER_TAG = "genrank/trigger"
INGEST_OP = "raw_tables"  # the ingest multi-asset; its config names the batches to add
INGEST_ASSETS = ("raw_playlists", "raw_playlist_songs", "raw_songs", "ingest_rejects", "ingested_batches")
SENSOR_INTERVAL_SECONDS = 30
RUN_KIND_TAG = "genrank/run_kind"  # full | refresh, on every run of the jobs below
REFRESH_ASSET = "catalogue_refresh"  # the refresh's challenger; a full retrain's is evaluation_report
REFRESH_ASSETS = ("playlist_corpus", "upstream_corpus", "song_catalogue", REFRESH_ASSET, "champion")
BATCH_RUN_ENV = "GENRANK_BATCH_RUN"  # what a landed batch runs: refresh (default) or full
# A refresh extends the last full retrain's catalogue and models: without them a batch runs the full retrain.
FULL_RETRAIN_ASSETS = ("song_catalogue", "ltr_ranker", "evaluation_report")
IMPLICIT_ASSET_JOB = "__ASSET_JOB"  # the job of materialisations started from the UI's asset graph


# --- run config ------------------------------------------------------------------------------------------------


def load_preset(name_or_path: str) -> dict:
    """Run config of a preset: a file stem in presets/ (`demo`, `cpu-real`, ...) or a path to a YAML file."""
    path = paths.preset_file(name_or_path)
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(config, dict):
        raise ValueError(f"preset {path} must be a YAML mapping (ops:, resources:, ...)")  # noqa: TRY004
    return config


def preset_run_config() -> dict:
    """The run config of the preset named by GENRANK_PRESET; {} when it is unset (asset defaults)."""
    name = os.environ.get(PRESET_ENV, "").strip()
    return load_preset(name) if name else {}


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def batch_run_config(batch_id: str, base: dict | None = None, job_name: str = "new_batch_job") -> dict:
    """`base` (default: the GENRANK_PRESET run config) with the ingest told to add `batch_id`; for `refresh_job`
    only the config of its own ops (a preset also configures the models a refresh does not train, and Dagster
    refuses config for ops outside the job)."""
    base = preset_run_config() if base is None else base
    if job_name == "refresh_job":
        base = {**base, "ops": {k: v for k, v in (base.get("ops") or {}).items() if k in (INGEST_OP, *REFRESH_ASSETS)}}
    return _deep_merge(base, {"ops": {INGEST_OP: {"config": {"batches": [batch_id]}}}})


# --- jobs ------------------------------------------------------------------------------------------------------


def group_names(assets) -> list[str]:
    """Groups of the loaded assets, in stage order."""
    return in_stage_order(g for a in assets for g in (a.group_names_by_key or {}).values())


def build_jobs(assets) -> dict[str, dg.UnresolvedAssetJobDefinition]:
    """`<group>_job` per group present, `retrain_all_job`, and `new_batch_job` (ingest and all downstream)."""
    jobs = {}
    for group in group_names(assets):
        jobs[f"{group}_job"] = dg.define_asset_job(
            f"{group}_job", selection=dg.AssetSelection.groups(group), executor_def=genrank_executor,
            description=f"Materialise the `{group}` group only (its inputs are read from the warehouse).",
        )
    refresh_only = dg.AssetSelection.assets(REFRESH_ASSET)
    jobs["retrain_all_job"] = dg.define_asset_job(
        "retrain_all_job", selection=dg.AssetSelection.all() - refresh_only, executor_def=genrank_executor,
        tags={RUN_KIND_TAG: "full"},
        description="Retrain the whole graph from the ingested data; the evaluation gate decides promotion.",
    )
    jobs["new_batch_job"] = dg.define_asset_job(
        "new_batch_job", selection=dg.AssetSelection.assets(*INGEST_ASSETS).downstream() - refresh_only,
        executor_def=genrank_executor, tags={RUN_KIND_TAG: "full"},
        description="Add the batches named in ops.raw_tables.config.batches, then retrain everything downstream.",
    )
    jobs["refresh_job"] = dg.define_asset_job(
        "refresh_job", selection=dg.AssetSelection.assets(*INGEST_ASSETS, *REFRESH_ASSETS),
        executor_def=genrank_executor, tags={RUN_KIND_TAG: "refresh"},
        description="Add the batches named in ops.raw_tables.config.batches and refresh the catalogue: new songs "
                    "get vectors and codes, the classical sources refit; TIGER, the cross-encoder and LightGBM "
                    "are not retrained. The gate decides promotion.",
    )
    return jobs


# --- sensor ----------------------------------------------------------------------------------------------------


def _parse_cursor(cursor: str | None) -> set[str]:
    if not cursor:
        return set()
    try:
        requested = json.loads(cursor)
    except json.JSONDecodeError as err:
        raise ValueError(f"new_batch_sensor cursor must be a JSON list of batch ids, got {cursor!r}") from err
    if not isinstance(requested, list) or not all(isinstance(b, str) for b in requested):
        raise ValueError(f"new_batch_sensor cursor must be a JSON list of batch ids, got {cursor!r}")
    return set(requested)


def _instance_or_none(context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext):
    try:
        return context.instance
    except dg.DagsterInvariantViolationError:  # evaluated without an instance (plain unit tests)
        return None


def _already_launched(instance, batch_id: str) -> bool:
    """A run for this batch exists (any status). The daemon dedups run keys too, but only for this sensor's
    own ticks; checking here also holds when the cursor is reset or the sensor is evaluated elsewhere."""
    if instance is None:
        return False
    return bool(instance.get_run_records(filters=dg.RunsFilter(tags={BATCH_TAG: batch_id}), limit=1))


IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def warehouse_runs_in_progress(instance, job_names: set[str], log=None) -> list[str]:
    """Ids of queued or running runs of these jobs. The ingest reads the ledger and rewrites the tables, so two
    runs at once could each drop the other's batch: automation starts nothing while one is under way. A run
    whose process died is marked failed first (`liveness.fail_dead_runs`), so it blocks nothing."""
    if instance is None:
        return []
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=IN_PROGRESS))
    ours = [r.dagster_run.run_id for r in records if r.dagster_run.job_name in job_names]
    dead = fail_dead_runs(instance, ours) if ours else []
    if dead and log is not None:
        log(f"marked run(s) {dead} failed: their processes are gone (killed or out of memory)")
    return [r for r in ours if r not in dead]


def batch_job_name(instance) -> str:
    """The job a landed batch runs: `refresh_job`, unless GENRANK_BATCH_RUN=full asks for the full retrain or
    no full retrain has produced the catalogue and models a refresh extends (then `new_batch_job`)."""
    wanted = os.environ.get(BATCH_RUN_ENV, "").strip() or "refresh"
    if wanted not in ("refresh", "full"):
        raise ValueError(f"{BATCH_RUN_ENV} must be refresh or full, got {wanted!r}")
    if wanted == "full" or instance is None:  # no instance to ask: the full retrain always applies
        return "new_batch_job"
    have = all(instance.get_latest_materialization_event(dg.AssetKey(a)) is not None for a in FULL_RETRAIN_ASSETS)
    return "refresh_job" if have else "new_batch_job"


def build_new_batch_sensor(jobs: list, warehouse_jobs: set[str]) -> dg.SensorDefinition:
    """One run per complete batch, one batch at a time (oldest name first), never while `warehouse_jobs` run:
    a refresh (`refresh_job`) or, before the first full retrain or with GENRANK_BATCH_RUN=full, `new_batch_job`."""

    @dg.sensor(
        name="new_batch_sensor", jobs=jobs, minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        # Running by default: landing a batch and writing its _SUCCESS marker is already the operator's
        # deliberate act, and with no complete batch the sensor only lists a folder every 30 s.
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="One ingest-and-retrain run per complete batch (folder with _SUCCESS) under "
                    "GENRANK_DATA_DIR/incoming/; run_key = batch id.",
    )
    def new_batch_sensor(context: dg.SensorEvaluationContext, genrank_paths: GenrankPaths):
        incoming = incoming_dir(genrank_paths.data_path)
        scan = scan_incoming(incoming)
        if scan.invalid:
            context.log.warning(f"ignoring folders in {incoming} that cannot be batch ids: {scan.invalid}")
        requested = _parse_cursor(context.cursor)
        instance = _instance_or_none(context)
        waiting = f"; waiting for _SUCCESS in {scan.incomplete}" if scan.incomplete else ""
        for batch_id in scan.complete:
            if batch_id in requested:
                continue
            busy = warehouse_runs_in_progress(instance, warehouse_jobs, log=context.log.warning)
            if busy:
                return dg.SensorResult(
                    skip_reason=dg.SkipReason(f"batch {batch_id!r} waits for run(s) {busy} to finish"),
                    cursor=json.dumps(sorted(requested)),
                )
            requested.add(batch_id)
            if _already_launched(instance, batch_id):
                context.log.info(f"batch {batch_id!r} already has a run; not requesting it again")
                continue
            job_name = batch_job_name(instance)
            request = dg.RunRequest(
                run_key=batch_id, run_config=batch_run_config(batch_id, job_name=job_name), job_name=job_name,
                tags={BATCH_TAG: batch_id, TRIGGER_TAG: "new_batch_sensor"},
            )
            context.log.info(f"batch {batch_id!r} -> {job_name}")
            return dg.SensorResult(run_requests=[request], cursor=json.dumps(sorted(requested)))
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no new complete batch in {incoming}{waiting}"),
                               cursor=json.dumps(sorted(requested)))

    return new_batch_sensor


# --- schedule --------------------------------------------------------------------------------------------------


def retrain_cron() -> str:
    return os.environ.get(RETRAIN_CRON_ENV, "").strip() or DEFAULT_RETRAIN_CRON


def build_retrain_schedule(job, warehouse_jobs: set[str] = frozenset()) -> dg.ScheduleDefinition:
    """Retrain everything on a cron; a tick that finds a warehouse run under way is skipped (that run retrains)."""
    cron = retrain_cron()
    try:
        @dg.schedule(
            name="retrain_schedule", job=job, cron_schedule=cron,
            execution_timezone=os.environ.get(RETRAIN_TIMEZONE_ENV, "").strip() or "UTC",
            # On when GENRANK_RETRAIN_CRON is set (asking for a cadence is asking for retrains); otherwise
            # stopped: a full retrain costs hours of GPU, so the default weekly one is switched on in the UI.
            default_status=(dg.DefaultScheduleStatus.RUNNING if os.environ.get(RETRAIN_CRON_ENV, "").strip()
                            else dg.DefaultScheduleStatus.STOPPED),
            description="Retrain the whole graph from everything ingested so far (GENRANK_RETRAIN_CRON).",
        )
        def retrain_schedule(context: dg.ScheduleEvaluationContext):
            busy = warehouse_runs_in_progress(_instance_or_none(context), warehouse_jobs, log=context.log.warning)
            if busy:
                return dg.SkipReason(f"run(s) {busy} still under way; the next tick retrains")
            return dg.RunRequest(run_config=preset_run_config(), tags={TRIGGER_TAG: "retrain_schedule",
                                                                        RUN_KIND_TAG: "full"})
    except dg.DagsterInvalidDefinitionError as err:
        raise ValueError(f"{RETRAIN_CRON_ENV}={cron!r} is not a valid cron schedule: {err}") from err
    return retrain_schedule


# --- what definitions.py consumes ------------------------------------------------------------------------------


@dataclass
class Automation:
    jobs: list
    schedules: list
    sensors: list


def build_automation(assets) -> Automation:
    jobs = build_jobs(assets)
    # Every job here writes the warehouse, and so does a materialisation started from the asset graph.
    warehouse_jobs = {*jobs, IMPLICIT_ASSET_JOB}
    return Automation(
        jobs=list(jobs.values()),
        schedules=[build_retrain_schedule(jobs["retrain_all_job"], warehouse_jobs)],
        sensors=[build_new_batch_sensor([jobs["refresh_job"], jobs["new_batch_job"]], warehouse_jobs)],
    )
