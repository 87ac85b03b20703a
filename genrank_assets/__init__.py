"""genrank: a Dagster code location (`definitions.py`) over plain algorithms (`ml/`).

`genrank_assets.defs` is the code location's Definitions, resolved on first access so that `import
genrank_assets.ml...` (the CLI, a notebook) does not import Dagster; `dagster ... -m genrank_assets` finds it
through `__dir__`.
"""


def __getattr__(name: str):
    if name == "defs":
        from genrank_assets.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
