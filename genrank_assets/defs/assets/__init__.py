"""The assets, one module per stage. ``STAGES`` is the pipeline order, defined here once: each name is at once an
asset group, a module of this package, a folder of ``ml/`` and the job ``<stage>_job``."""

STAGES = ("data", "vectors", "semantic_ids", "catalogue", "generator", "ranking", "evaluation", "serving")


def in_stage_order(groups) -> list[str]:
    """Asset groups in pipeline order; groups that are no stage come after, by name."""
    groups = set(groups)
    return [g for g in STAGES if g in groups] + sorted(groups - set(STAGES))
