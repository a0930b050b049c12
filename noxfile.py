"""Development sessions for the Meshtryoshka monorepo.

    nox                      lint + every package's tests + integration tests (CPU)
    nox -s tests             every package's tests, each in its own fresh venv
    nox -s "tests(slang-rasterizer)"   one package
    nox -s demo              train on the bundled demo scene
    nox -s compat            the slangtorch x CUDA compatibility matrix
    nox -- -m cuda           forward arguments to pytest (here: only the GPU tests)

Which torch gets installed into the venvs is chosen by ``MESHTRYOSHKA_TORCH``:
- unset: ``torch==2.13.0`` (on the CPU-only development and CI machines this resolves to a
  local CPU wheel; nothing pulls the multi-gigabyte CUDA packages);
- a pip requirement, optionally with pip options, e.g.
  ``MESHTRYOSHKA_TORCH="torch==2.11.0 --index-url https://download.pytorch.org/whl/cu130"``;
- ``system``: install no torch; the venvs see the interpreter's site-packages, so the torch
  (and CUDA) you already have is used.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

nox.needs_version = ">=2024.3.2"
nox.options.sessions = ["lint", "tests", "integration"]
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).parent
PACKAGES = ["slang-marching-cubes", "slang-rasterizer", "meshtryoshka-data", "meshtryoshka-train"]
TORCH = os.environ.get("MESHTRYOSHKA_TORCH", "torch==2.13.0").strip()
SYSTEM_TORCH = TORCH == "system"
VENV_PARAMS = ["--system-site-packages"] if SYSTEM_TORCH else []


def package_dir(name: str) -> Path:
    return ROOT / "packages" / name


def local_requirements(
    name: str, extras: str = "test", sibling_extras: dict[str, str] | None = None
) -> list[str]:
    """pip arguments installing package `name` (with `extras`) and the local packages it needs.

    Sibling packages are not on a package index during development, so each one that `name`
    depends on is installed from its folder (with its `sibling_extras`, if any); everything
    else comes from the index.
    """
    project = tomllib.loads((package_dir(name) / "pyproject.toml").read_text())["project"]
    names = {canonicalize_name(Requirement(r).name) for r in project.get("dependencies", [])}
    needed = [sibling for sibling in PACKAGES if sibling in names]
    sibling_extras = sibling_extras or {}
    siblings = [
        f"{package_dir(s)}[{sibling_extras[s]}]" if s in sibling_extras else str(package_dir(s))
        for s in needed
    ]
    return [*siblings, f"{package_dir(name)}[{extras}]"]


#: extras a package's `tests` session installs besides `test`: meshtryoshka-data's `colmap`
#: (pycolmap), so that the from-images tests run instead of skipping
TEST_EXTRAS = {"meshtryoshka-data": "test,colmap"}


def install_torch(session: nox.Session) -> None:
    if SYSTEM_TORCH:
        session.log("MESHTRYOSHKA_TORCH=system: using the interpreter's own torch")
        return
    session.install(*shlex.split(TORCH))


def pytest(session: nox.Session, *paths: str) -> None:
    session.run("pytest", *paths, *session.posargs, env={"PYTHONHASHSEED": "0"})


@nox.session(venv_params=VENV_PARAMS)
@nox.parametrize("package", [nox.param(p, id=p) for p in PACKAGES])
def tests(session: nox.Session, package: str) -> None:
    """One package's tests, in a fresh venv holding only that package and what it declares.

    The package is installed non-editable, so a file missing from the wheel (a .slang kernel,
    a shipped experiment) or an undeclared dependency fails here.
    """
    install_torch(session)
    session.install(*local_requirements(package, extras=TEST_EXTRAS.get(package, "test")))
    pytest(session, str(package_dir(package) / "tests"))


@nox.session(venv_params=VENV_PARAMS)
def integration(session: nox.Session) -> None:
    """End-to-end tests over all four packages (tests-integration/), on the CPU."""
    install_torch(session)
    # the viewer extra and selenium for the browser test (which also needs Debian's chromium);
    # pycolmap (the colmap extra) and Mitsuba 3 for the photos -> poses -> training test
    session.install(
        *local_requirements(
            "meshtryoshka-train",
            extras="test,viewer",
            sibling_extras={"meshtryoshka-data": "colmap"},
        ),
        "pytest>=7.4",
        "selenium>=4.10",
        "mitsuba==3.9.1",
    )
    pytest(session, str(ROOT / "tests-integration"))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository; vendored copies agree."""
    session.install("ruff>=0.6")
    session.run("python", str(ROOT / "tools" / "check_vendored.py"))
    session.run("ruff", "check", str(ROOT))
    session.run("ruff", "format", "--check", str(ROOT))


@nox.session(venv_params=VENV_PARAMS, default=False)
def demo(session: nox.Session) -> None:
    """Train on the bundled demo scene (the README's main command), then print the test PSNR
    and write the mesh; outputs in ./workspace/demo/demo (replaced at each run). Arguments
    after ``--`` are overrides, e.g. ``nox -s demo -- train.steps=200``."""
    install_torch(session)
    session.install(*local_requirements("meshtryoshka-train", extras="test"))
    session.run("meshtryoshka-train", "--experiment", "demo", "--overwrite", *session.posargs)


# The kernel compatibility matrix (tools/compat.py does the work; docs/compat.md is the result).
# On any machine, for every pair: that slangtorch's slangc turns every kernel entry module into
# CUDA source, and that CUDA's NVRTC (PyPI wheel) compiles it for sm_80 and sm_90. Per slangtorch,
# its own extension build (the fallback loader) against this torch, up to its ninja file. On a
# CUDA machine, the pairs whose CUDA matches torch's also run the kernel packages' `cuda` tests.
# Each wheel is fetched once into .nox/compat-cache and unpacked there (never pip-installed), so
# the whole matrix shares ONE venv: torch and the two kernel packages.
COMPAT_SLANGTORCH = ["1.3.7", "1.3.11", "1.3.22"]
COMPAT_CUDA = ["12.4", "12.6", "12.8", "13.0"]


@nox.session(venv_params=VENV_PARAMS, default=False)
def compat(session: nox.Session) -> None:
    """slangtorch x CUDA compatibility of the Slang kernels; writes docs/compat.md.

    Arguments after `--` go to tools/compat.py, e.g. `nox -s compat -- --slangtorch 1.3.22
    --cuda 13.0` (one pair), `-- --gpu no` (skip the GPU tests), `-- --wheels DIR` (offline).
    """
    install_torch(session)
    session.install(
        str(package_dir("slang-marching-cubes")),
        str(package_dir("slang-rasterizer")),
        "pytest>=7.4",
    )
    session.run(
        "python",
        str(ROOT / "tools" / "compat.py"),
        "--slangtorch",
        ",".join(COMPAT_SLANGTORCH),
        "--cuda",
        ",".join(COMPAT_CUDA),
        "--cache",
        str(ROOT / ".nox" / "compat-cache"),
        "--output",
        str(ROOT / "docs" / "compat.md"),
        *session.posargs,
    )
