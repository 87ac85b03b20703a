"""Retraining automation: sensor for newly landed playlist batches, schedule, per-stage jobs (issue 7)."""
JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
