"""The optional `gpu` extra stays consistent with the default install it is added to."""
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _requirements(lines) -> dict[str, Requirement]:
    return {r.name: r for r in map(Requirement, lines)}


def test_gpu_extra_pins_what_the_default_install_pins():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    base, gpu = _requirements(project["dependencies"]), _requirements(project["optional-dependencies"]["gpu"])
    # The same torch as the default install: the extra must not move the version the code is tested with.
    assert str(gpu["torch"].specifier) == str(base["torch"].specifier)
    # faiss-gpu and faiss-cpu install the same `faiss` package: the GPU pin must be a version the CPU pin allows.
    (pin,) = gpu["faiss-gpu"].specifier
    assert pin.operator == "==" and base["faiss-cpu"].specifier.contains(pin.version), (pin, base["faiss-cpu"])
