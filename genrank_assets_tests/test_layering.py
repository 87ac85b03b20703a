"""The layering holds: the import-linter contracts of pyproject.toml are kept, and no module import cycle exists.

Contracts (`[tool.importlinter]` in pyproject.toml): `genrank_assets.ml` imports neither Dagster nor any module of
the code location (assets, definitions, resources, automation, io_managers, cli, ...); asset modules do not import
each other; sibling modules and packages import each other acyclically at every depth. On top of that a grimp
check finds any cycle between two modules (also one through a package's `__init__`, which `acyclic_siblings`
does not look at). Both read the source statically, so function-local imports count as well; imports under
`if TYPE_CHECKING:` (annotations only, never run) do not.

The same checks run on a copy of the package with a breach planted, to show that they do fail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "genrank_assets"
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package under `root` with the contracts of `root/pyproject.toml`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT_IMPORTS, "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def module_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Each direct import a -> b for which b also leads back to a, with the chain that closes the loop."""
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append((importer, *back))
    return cycles


def test_import_contracts_are_kept():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, f"an import contract is broken (see pyproject.toml [tool.importlinter]):\n{proc.stdout}"
    assert "0 broken" in proc.stdout and "KEPT" in proc.stdout


def package_graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, cache_dir=None, exclude_type_checking_imports=True)


def test_no_import_cycle_between_modules():
    graph = package_graph()
    assert len(graph.modules) > 20  # the real package was read
    assert module_cycles(graph) == []


# --- the checks bite: a planted breach fails them ---------------------------------------------------------------


BREACHES = {
    # (file to append to, line appended, text the report must contain)
    "ml imports dagster": ("ml/vectors/song_vectors.py", "import dagster  # noqa", "dagster"),
    "ml imports an asset module": ("ml/data/corpus.py", "from genrank_assets.defs.assets import vectors  # noqa",
                                   "genrank_assets.defs.assets"),
    "ml imports resources (function-local)": (
        "ml/generator/dataset.py", "def _f():\n    from genrank_assets.defs.resources import GPU_TAGS  # noqa\n",
        "genrank_assets.defs.resources"),
    "an asset module imports another": ("defs/assets/vectors.py", "from genrank_assets.defs.assets import data  # noqa",
                                        "genrank_assets.defs.assets.vectors"),
    "ml imports a tool": ("ml/data/corpus.py", "from genrank_assets.tools import cli  # noqa",
                          "genrank_assets.tools.cli"),
    "the code location imports a tool": ("defs/resources.py", "from genrank_assets.tools import graph  # noqa",
                                         "genrank_assets.tools.graph"),
    "a cycle between sibling packages": ("ml/data/corpus.py", "import genrank_assets.ml.generator.dataset  # noqa",
                                         "No cycles are allowed in genrank_assets.ml."),
}


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layering")
    shutil.copytree(REPO / PACKAGE, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize("breach", list(BREACHES))
def test_a_planted_breach_breaks_a_contract(package_copy, breach):
    relative, line, expected = BREACHES[breach]
    target = package_copy / PACKAGE / relative
    original = target.read_text(encoding="utf-8")
    target.write_text(original + "\n" + line + "\n", encoding="utf-8")
    try:
        proc = lint_imports(package_copy)
    finally:
        target.write_text(original, encoding="utf-8")
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout
    assert expected in proc.stdout, proc.stdout


def test_a_cycle_through_a_package_init_is_found(package_copy):
    """`acyclic_siblings` compares siblings only; a module importing its own package's `__init__`, which imports
    it, is the grimp check's to find."""
    init = package_copy / PACKAGE / "ml" / "data" / "__init__.py"
    corpus = package_copy / PACKAGE / "ml" / "data" / "corpus.py"
    originals = {f: f.read_text(encoding="utf-8") for f in (init, corpus)}
    init.write_text(originals[init] + "\nfrom genrank_assets.ml.data import corpus  # noqa\n", encoding="utf-8")
    corpus.write_text(originals[corpus] + "\nimport genrank_assets.ml.data as _package  # noqa\n", encoding="utf-8")
    # In a fresh interpreter whose working directory (first on sys.path) is the copy.
    script = ("from genrank_assets_tests.test_layering import module_cycles, package_graph; "
              "print(module_cycles(package_graph()))")
    try:
        proc = subprocess.run([sys.executable, "-c", script], cwd=package_copy, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    finally:
        for f, text in originals.items():
            f.write_text(text, encoding="utf-8")
    assert proc.returncode == 0, proc.stderr
    assert "('genrank_assets.ml.data', 'genrank_assets.ml.data.corpus', 'genrank_assets.ml.data')" in proc.stdout
