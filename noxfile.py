"""Development sessions for the Meshtryoshka monorepo.

    nox                      lint + every package's tests + integration tests + build (CPU)
    nox -s tests             every package's tests, each in its own fresh venv
    nox -s "tests(slang-rasterizer)"   one package
    nox -s build             build, check and smoke-test every package's sdist and wheel
    nox -s "build(slang-rasterizer)"   one package
    nox -s min_versions      the CPU tests with the oldest dependencies the ranges allow
    nox -s release -- slang-rasterizer minor    prepare a release (docs/releasing.md)
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
import shutil
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
nox.options.sessions = ["lint", "tools", "tests", "integration", "build"]
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).parent
# Dependencies first: the kernel runtime, the two kernel packages, the data package, the app.
PACKAGES = [
    "slang-kernel-runtime",
    "slang-marching-cubes",
    "slang-rasterizer",
    "meshtryoshka-data",
    "meshtryoshka-train",
]
TORCH = os.environ.get("MESHTRYOSHKA_TORCH", "torch==2.13.0").strip()
SYSTEM_TORCH = TORCH == "system"
VENV_PARAMS = ["--system-site-packages"] if SYSTEM_TORCH else []


def package_dir(name: str) -> Path:
    return ROOT / "packages" / name


def project(name: str) -> dict:
    return tomllib.loads((package_dir(name) / "pyproject.toml").read_text())["project"]


def local_dependencies(name: str) -> list[str]:
    """The sibling packages that package `name` needs, directly or through another sibling
    (e.g. the app -> slang-rasterizer -> slang-kernel-runtime), dependencies first."""
    names = {canonicalize_name(Requirement(r).name) for r in project(name).get("dependencies", [])}
    needed = set()
    for sibling in PACKAGES:
        if sibling in names:
            needed.update([sibling, *local_dependencies(sibling)])
    return [sibling for sibling in PACKAGES if sibling in needed]


def local_requirements(
    name: str, extras: str = "test", sibling_extras: dict[str, str] | None = None
) -> list[str]:
    """pip arguments installing package `name` (with `extras`) and the local packages it needs.

    Sibling packages are not on a package index during development, so each one that `name`
    needs (also through another sibling) is installed from its folder (with its
    `sibling_extras`, if any); everything else comes from the index.
    """
    sibling_extras = sibling_extras or {}
    siblings = [
        f"{package_dir(s)}[{sibling_extras[s]}]" if s in sibling_extras else str(package_dir(s))
        for s in local_dependencies(name)
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
    """End-to-end tests over all the packages (tests-integration/), on the CPU."""
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
def tools(session: nox.Session) -> None:
    """Tests of the repository's own tools (tools/tests/: the release script)."""
    session.install("pytest>=7.4")
    pytest(session, str(ROOT / "tools" / "tests"))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository; vendored copies agree;
    no import cycle in the kernel packages and the app."""
    session.install("ruff>=0.6")
    session.run("python", str(ROOT / "tools" / "check_vendored.py"))
    # no package's modules import each other in a cycle
    session.run("python", str(ROOT / "tools" / "check_imports.py"), *PACKAGES)
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


# Release artifacts. Each package is built into dist/<package>/ (what the release workflow
# publishes) and tried as a user would: a fresh venv with only torch, the artifact and what it
# declares. tools/check_dist.py lists what is checked in the artifacts themselves.
DIST = ROOT / "dist"
ARTIFACT_KINDS = {"wheel": "*-py3-none-any.whl", "sdist": "*.tar.gz"}


def artifact(package: str, kind: str) -> Path:
    (found,) = (DIST / package).glob(ARTIFACT_KINDS[kind])
    return found


def smoke_test(session: nox.Session, package: str, kind: str) -> None:
    """Install `package`'s `kind` artifact into a fresh venv and run tools/smoke_test.py there.

    The venv gets torch first (MESHTRYOSHKA_TORCH), then the artifact with the sibling packages
    it needs as the same kind of artifact, and the `examples` extra when the package declares
    one (what its README example needs beyond the package). The venv is deleted after a pass.
    """
    venv = Path(session.create_tmp()).resolve() / f"smoke-{package}-{kind}"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    # --no-compile: no .pyc files for all of torch up front (halves the install time)
    pip_install = [python, "-m", "pip", "install", "--quiet", "--no-compile"]
    session.run(*pip_install, *shlex.split(TORCH), external=True)
    extras = "[examples]" if "examples" in project(package).get("optional-dependencies", {}) else ""
    requirements = [
        f"{name}{extras if name == package else ''} @ {artifact(name, kind).as_uri()}"
        for name in [*local_dependencies(package), package]
    ]
    session.run(*pip_install, *requirements, external=True)
    session.run(python, "-m", "pip", "check", external=True)
    with session.chdir(session.create_tmp()):
        session.run(python, str(ROOT / "tools" / "smoke_test.py"), package, external=True)
    shutil.rmtree(venv)


@nox.session
@nox.parametrize("package", [nox.param(p, id=p) for p in PACKAGES])
def build(session: nox.Session, package: str) -> None:
    """Build, check and smoke-test one package's sdist and wheel.

    `python -m build` writes dist/<package>/ (the wheel is built from the sdist, so the sdist
    is complete enough to build it); `twine check --strict` and tools/check_dist.py check the
    metadata, the contents (kernels, experiments, demo scene, py.typed, LICENSE) and the sizes;
    then the wheel and, separately, the sdist are installed into fresh venvs and smoke-tested
    from outside the source tree (`smoke_test` above). The sibling packages it needs are built
    too (and checked in their own sessions).
    """
    if SYSTEM_TORCH:
        session.skip("MESHTRYOSHKA_TORCH=system: the smoke venvs must hold only a torch to install")
    session.install("build>=1.2", "twine>=6.1", "trove-classifiers")
    for name in [*local_dependencies(package), package]:
        shutil.rmtree(DIST / name, ignore_errors=True)
        session.run("python", "-m", "build", "--outdir", str(DIST / name), str(package_dir(name)))
    session.run("twine", "check", "--strict", str(DIST / package / "*"))
    session.run("python", str(ROOT / "tools" / "check_dist.py"), str(DIST), package)
    for kind in ARTIFACT_KINDS:
        smoke_test(session, package, kind)


# The oldest versions the declared ranges allow. torch stays the one MESHTRYOSHKA_TORCH names
# (an older torch from PyPI is a CUDA build of several GB); its lower bound is checked on the
# GPU machine, see docs/releasing.md.
NOT_PINNED = {"torch", *PACKAGES}


def lower_bounds(session: nox.Session) -> dict[str, str]:
    """`name==X` constraint lines from every `>=X` in the packages' dependencies and `test` extras.

    A dependency declared by several packages must have one lower bound everywhere.
    """
    pins: dict[str, tuple[str, str]] = {}  # name -> (constraint line, declaring package)
    for package in PACKAGES:
        declared = project(package)
        for line in declared["dependencies"] + declared["optional-dependencies"].get("test", []):
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            if name in NOT_PINNED or not floors:
                continue
            marker = f"; {requirement.marker}" if requirement.marker else ""
            pin = f"{name}=={floors[0]}{marker}"
            if name in pins and pins[name][0] != pin:
                session.error(f"{pins[name][1]} wants {pins[name][0]} but {package} wants {pin}")
            pins[name] = (pin, package)
    return {name: pin for name, (pin, _) in sorted(pins.items())}


@nox.session(venv_params=VENV_PARAMS, default=False)
def min_versions(session: nox.Session) -> None:
    """Every package's CPU tests with the oldest numpy, pillow, click, slangtorch, pytest (and
    tomli, on Python 3.10) that the pyproject.toml ranges allow.

    The constraints file is generated from the ranges (`lower_bounds`), written to
    .nox/min_versions/tmp/constraints-min.txt and printed; the packages install non-editable
    in one venv. Arguments after `--` go to pytest.
    """
    pins = lower_bounds(session)
    constraints = Path(session.create_tmp()).resolve() / "constraints-min.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in pins.values()))
    session.log("constraints-min.txt:\n" + constraints.read_text())
    install_torch(session)
    session.install("-c", str(constraints), *[f"{package_dir(p)}[test]" for p in PACKAGES])
    session.run(
        "python", "-m", "pip", "list", "--format=freeze", "--exclude-editable", silent=False
    )
    pytest(session, *[str(package_dir(p) / "tests") for p in PACKAGES])


@nox.session(python=False, default=False)
def release(session: nox.Session) -> None:
    """Prepare a release of one package: `nox -s release -- PACKAGE VERSION` runs
    `python tools/release.py prepare PACKAGE VERSION` (VERSION: X.Y.Z, major, minor or patch);
    docs/releasing.md has the whole process."""
    session.run(sys.executable, str(ROOT / "tools" / "release.py"), "prepare", *session.posargs)


# The kernel compatibility matrix (tools/compat.py does the work; docs/compat.md is the result).
# On any machine, for every pair: that slangtorch's slangc turns every kernel entry module into
# CUDA source, and that CUDA's NVRTC (PyPI wheel) compiles it for sm_80 and sm_90. Per slangtorch,
# its own extension build (the fallback loader) against this torch, up to its ninja file. On a
# CUDA machine, the pairs whose CUDA matches torch's also run the kernel packages' `cuda` tests.
# Each wheel is fetched once into .nox/compat-cache and unpacked there (never pip-installed), so
# the whole matrix shares ONE venv: torch, the kernel runtime and the two kernel packages.
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
        str(package_dir("slang-kernel-runtime")),
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
