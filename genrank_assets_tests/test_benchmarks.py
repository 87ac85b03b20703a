"""The benchmarks package: every module imports as ``benchmarks.<name>``, nothing in it edits ``sys.path``, every
import it makes (function-local ones too) resolves, the live set is what ``make bench`` runs, each live script
answers ``--help``, and a ``--quick`` run writes outside the committed results. No benchmark is run."""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(BENCH)]))
SOURCES = sorted(BENCH.rglob("*.py")) + sorted(BENCH.rglob("*.sh"))


def live() -> list[str]:
    from benchmarks.__main__ import LIVE

    return LIVE


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_as_part_of_the_package(name):
    module = importlib.import_module(f"benchmarks.{name}")
    assert Path(module.__file__).resolve().parent == BENCH


def test_no_sys_path_edits():
    offenders = [str(p.relative_to(REPO)) for p in SOURCES
                 if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()]
    assert offenders == []


def _imports(path: Path):
    """(line, module, names) of every absolute import in ``path``, at any depth (function-local ones too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            yield node.lineno, node.module, [alias.name for alias in node.names]


def _top_level_names(path: Path) -> set[str]:
    """Names a module binds at its top level (defs, classes, assignments, imports, also inside top-level if/try)."""
    names: set[str] = set()
    body = list(ast.parse(path.read_text(), str(path)).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            body.extend(node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
                        + [n for h in getattr(node, "handlers", []) for n in h.body])
    return names


def _spec(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a missing parent package, or a parent that is a plain module
        return None


def test_every_import_resolves():
    """A module moved elsewhere in genrank_assets shows here, not halfway through a long benchmark run. Read from
    the sources (nothing imported): every module is found, and every name taken from a genrank_assets or
    benchmarks module is bound at its top level or is a submodule."""
    broken = []
    for path in sorted(BENCH.glob("*.py")):
        for line, module, names in _imports(path):
            where = f"{path.relative_to(REPO)}:{line}"
            spec = _spec(module)
            if spec is None:
                broken.append(f"{where}: no module {module}")
                continue
            if module.split(".")[0] not in ("genrank_assets", "benchmarks") or not spec.origin:
                continue
            bound = _top_level_names(Path(spec.origin))
            for name in names:
                if name not in bound and _spec(f"{module}.{name}") is None:
                    broken.append(f"{where}: {module} has no {name}")
    assert broken == []


def test_live_set_is_every_script_and_runs_in_order():
    scripts = {name for name in MODULES if not name.startswith("_")}
    assert set(live()) == scripts
    order = live()
    # end_to_end leaves the home that generator, ranker, compare and named_singer read
    assert all(order.index("end_to_end") < order.index(name)
               for name in ("generator", "ranker", "compare", "named_singer"))


def test_each_live_script_answers_help():
    """``python -m benchmarks.<name> --help`` from the repository root, all started at once (cheap: the scripts
    import their heavy dependencies only after parsing)."""
    names = ["benchmarks", *(f"benchmarks.{name}" for name in live())]
    procs = {name: subprocess.Popen([sys.executable, "-m", name, "--help"], cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name in names}
    failed = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0 or f"usage: python -m {name}" not in out:
            failed[name] = (proc.returncode, err[-500:])
        elif name != "benchmarks" and "--quick" not in out:
            failed[name] = (proc.returncode, "no --quick option")
    assert failed == {}


def test_quick_runs_write_outside_the_committed_results():
    from benchmarks._common import QUICK_RESULTS, RESULTS, output_path

    quick = output_path(argparse.Namespace(out=None, quick=True), "ingest")
    assert quick == QUICK_RESULTS / "ingest.json" and RESULTS not in quick.parents
    assert output_path(argparse.Namespace(out=None, quick=False), "ingest") == RESULTS / "ingest.json"
    assert output_path(argparse.Namespace(out=Path("/tmp/x.json"), quick=True), "ingest") == Path("/tmp/x.json")
    if shutil.which("git") and (REPO / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", str(quick)], cwd=REPO)
        assert ignored.returncode == 0, f"{quick} is not git-ignored"


def test_quick_sizes_leave_what_the_command_line_gave():
    from benchmarks._common import add_output_args, argument_parser, parse_args

    parser = argument_parser(None, "x")
    parser.add_argument("--queries", type=int, default=700)
    parser.add_argument("--repeats", type=int, default=3)
    add_output_args(parser, "small")
    quick = {"queries": 50, "repeats": 1}
    assert vars(parse_args(parser, quick, ["--quick"])) | {"out": None} == {"queries": 50, "repeats": 1,
                                                                              "quick": True, "out": None}
    assert parse_args(parser, quick, ["--quick", "--queries", "20"]).queries == 20
    assert parse_args(parser, quick, []).queries == 700
