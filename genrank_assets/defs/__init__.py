"""The Dagster code location: assets by stage (`assets/`), their resources, IO managers, executors, automation and
run checks. `genrank_assets.definitions` assembles them into the one Definitions object."""
