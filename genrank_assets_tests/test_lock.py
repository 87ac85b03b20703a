"""constraints.txt is the lock every install goes through (`make install`: pip -c): it pins every distribution
that is installed, each pin satisfies pyproject's range, and what is installed is what the lock says."""
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip()).groups()
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _public(version: str) -> Version:
    return Version(Version(version).public)  # torch 2.13.0+cpu is the lock's torch 2.13.0


def test_every_direct_requirement_is_locked_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = _lock()
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is in pyproject.toml but not in constraints.txt: run `make lock`"
        assert req.specifier.contains(lock[name], prereleases=True), f"lock {name}=={lock[name]} is outside {req}"


def test_what_is_installed_is_what_the_lock_says():
    lock = _lock()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("genrank", None)  # the project itself, installed editable
    for tool in ("pip", "setuptools", "wheel"):  # the venv's own tools, which pip freeze leaves out
        installed.pop(tool, None)
    unlocked = sorted(set(installed) - set(lock))
    assert not unlocked, f"installed but not locked (add them to pyproject and run `make lock`): {unlocked}"
    moved = {n: (v, str(lock[n])) for n, v in installed.items() if _public(v) != lock[n]}
    assert not moved, f"installed versions differ from constraints.txt (installed, locked): {moved}"
