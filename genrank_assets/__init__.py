"""genrank: a Dagster code location (`definitions.py` over `defs/`), operator tools (`tools/`) and plain algorithms
(`ml/`).

`genrank_assets.code_location` is the code location's Definitions, resolved on first access so that `import
genrank_assets.ml...` (a notebook, a server) does not import Dagster; `dagster ... -m genrank_assets` finds it
through `__dir__`. (It is not called `defs`: that name is the `defs/` package.)
"""


def __getattr__(name: str):
    if name == "code_location":
        from genrank_assets.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "code_location"])
