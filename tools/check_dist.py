"""Check the built sdists and wheels before they go to a package index (run by `nox -s build`).

    python tools/check_dist.py DIST PACKAGE [PACKAGE ...]

DIST/<package>/ must hold one sdist and one wheel of the version in the package's
pyproject.toml. For each artifact:

- contents: the wheel holds exactly the package's source files (the files of src/<module>/
  that git tracks or would track: every `.slang` kernel, experiment, demo-scene file and
  `py.typed`; no tests, no caches) plus its metadata and LICENSE; the sdist holds those files,
  LICENSE, README.md, CHANGELOG.md and pyproject.toml, and besides them only tests/,
  benchmarks/ and scripts/; only meshtryoshka-train holds the demo scene;
- metadata: the license expression MIT with its LICENSE file, Requires-Python, keywords,
  classifiers that PyPI knows (checked against `trove-classifiers` when it is installed),
  project URLs under REPO_URL, and a Markdown long description without relative links
  (PyPI shows the README without the repository around it, so they would be dead);
- size: at most SIZE_BUDGET_KIB; a table of every artifact's size is printed.

Prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import email.parser
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# The one place the repository's address is written for tooling; the project.urls of every
# pyproject.toml must start with it.
REPO_URL = "https://github.com/meshtryoshka/meshtryoshka"
APP = "meshtryoshka-train"
# Files each package must ship, on top of "every source file" (the failures users would see).
KEY_FILES = {
    "slang-kernel-runtime": ["py.typed", "module.py"],
    "slang-marching-cubes": ["py.typed", "slang/marching_cubes.slang"],
    "slang-rasterizer": ["py.typed", "slang/rasterizer.slang"],
    "meshtryoshka-data": ["py.typed"],
    "meshtryoshka-train": [
        "py.typed",
        "experiments/demo.toml",
        "demo_scene/transforms_train.json",
        "demo_scene/train/r_0.png",
    ],
}
# Largest sdist or wheel allowed, KiB. The app carries the demo scene (about 0.7 MiB of PNGs).
SIZE_BUDGET_KIB = {
    "slang-kernel-runtime": 128,
    "slang-marching-cubes": 256,
    "slang-rasterizer": 256,
    "meshtryoshka-data": 128,
    "meshtryoshka-train": 1024,
}
# What an sdist may hold beyond the package's source files and its top-level documents.
SDIST_EXTRA_FOLDERS = ("tests/", "benchmarks/", "scripts/")
SDIST_TOP_FILES = ("PKG-INFO", "pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE")
# Markdown links and images `[text](target)`, reference definitions `[x]: target`, HTML src/href.
LINK_TARGETS = [
    re.compile(r"\]\(\s*<?([^)\s>]+)"),
    re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M),
    re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.I),
]
ABSOLUTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)", re.I)  # https:, mailto:, ...


def project(package: str) -> dict:
    return tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]


def module_name(package: str) -> str:
    return package.replace("-", "_")


def source_files(package: str) -> set[str]:
    """Paths under src/<module>/ that should ship, relative to src/ (e.g. `pkg/slang/a.slang`)."""
    src = ROOT / "packages" / package / "src"
    module = src / module_name(package)
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "."],
            cwd=module,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = [module / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but caches
        paths = [p for p in module.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return {p.relative_to(src).as_posix() for p in paths if p.exists()}


def relative_links(markdown: str) -> list[str]:
    """Link and image targets in `markdown` that are not absolute URLs (code is skipped)."""
    text = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.S | re.M)  # fenced code blocks
    text = re.sub(r"(`+).*?\1", "", text, flags=re.S)  # code spans
    found = []
    for pattern in LINK_TARGETS:
        found += [t for t in pattern.findall(text) if not ABSOLUTE.match(t)]
    return found


def known_classifiers() -> set[str] | None:
    try:
        from trove_classifiers import classifiers
    except ImportError:
        return None
    return set(classifiers)


def check_metadata(name: str, text: str, classifiers: set[str] | None) -> list[str]:
    message = email.parser.Parser().parsestr(text)
    problems = []
    if message.get("License-Expression") != "MIT":
        problems.append(f"{name}: License-Expression is {message.get('License-Expression')!r}")
    if "LICENSE" not in message.get_all("License-File", []):
        problems.append(f"{name}: no License-File: LICENSE")
    for field in ("Requires-Python", "Keywords", "Summary"):
        if not message.get(field):
            problems.append(f"{name}: no {field}")
    declared = message.get_all("Classifier", [])
    if not declared:
        problems.append(f"{name}: no classifiers")
    if classifiers is not None:
        problems += [f"{name}: unknown classifier {c!r}" for c in declared if c not in classifiers]
    urls = message.get_all("Project-URL", [])
    if not urls:
        problems.append(f"{name}: no project URLs")
    for entry in urls:
        label, _, url = entry.partition(",")
        if not url.strip().startswith(REPO_URL):
            problems.append(f"{name}: project URL {label} is {url.strip()!r}, not under {REPO_URL}")
    if message.get("Description-Content-Type", "").split(";")[0] != "text/markdown":
        problems.append(f"{name}: long description is not text/markdown")
    for target in relative_links(message.get_payload()):
        problems.append(f"{name}: relative link {target!r} in the long description")
    return problems


def check_contents(package: str, kind: str, names: list[str], expected: set[str]) -> list[str]:
    """`names`: the archive's files; `expected`: the source files, relative to src/."""
    name = f"{package} {kind}"
    stem = f"{module_name(package)}-{project(package)['version']}"
    problems = []
    if kind == "wheel":
        info = f"{stem}.dist-info/"
        shipped = {n for n in names if not n.startswith(info)}
        if f"{info}licenses/LICENSE" not in names:
            problems.append(f"{name}: no {info}licenses/LICENSE")
    else:
        inner = {n.removeprefix(f"{stem}/") for n in names}
        problems += [f"{name}: no {top}" for top in SDIST_TOP_FILES if top not in inner]
        shipped = {n.removeprefix("src/") for n in inner if n.startswith("src/")}
        others = sorted(n for n in inner if not n.startswith("src/") and n not in SDIST_TOP_FILES)
        problems += [
            f"{name}: unexpected file {n}"
            for n in others
            if not n.startswith(SDIST_EXTRA_FOLDERS) and n != ".gitignore"
        ]
        if package != APP:
            problems += [f"{name}: demo scene file {n}" for n in others if "demo_scene" in n]
    key_files = {f"{module_name(package)}/{key}" for key in KEY_FILES[package]}
    problems += [f"{name}: missing {n}" for n in sorted((expected | key_files) - shipped)]
    problems += [f"{name}: unexpected file {n}" for n in sorted(shipped - expected)]
    return problems


def check_package(dist: Path, package: str, classifiers: set[str] | None) -> tuple[list, list]:
    """(problems, size rows) of one package's two artifacts in dist/<package>/."""
    version = project(package)["version"]
    stem = f"{module_name(package)}-{version}"
    wheel = dist / package / f"{stem}-py3-none-any.whl"
    sdist = dist / package / f"{stem}.tar.gz"
    problems, rows = [], []
    expected = source_files(package)
    for kind, path in (("wheel", wheel), ("sdist", sdist)):
        if not path.is_file():
            problems.append(f"{package}: no {kind} {path.relative_to(dist)}")
            continue
        if kind == "wheel":
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                metadata = archive.read(f"{stem}.dist-info/METADATA").decode()
        else:
            with tarfile.open(path) as archive:
                names = [member.name for member in archive.getmembers() if member.isfile()]
                metadata = archive.extractfile(f"{stem}/PKG-INFO").read().decode()
        problems += check_contents(package, kind, names, expected)
        problems += check_metadata(f"{package} {kind}", metadata, classifiers)
        size = path.stat().st_size
        budget = SIZE_BUDGET_KIB[package] * 1024
        if size > budget:
            problems.append(
                f"{path.name}: {size / 1024:.0f} KiB, over its budget of {budget // 1024} KiB"
            )
        rows.append((path.name, size, len(names), budget))
    return problems, rows


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    dist, packages = Path(argv[0]), argv[1:]
    classifiers = known_classifiers()
    if classifiers is None:
        print("trove-classifiers is not installed: classifiers are not checked")
    problems, rows = [], []
    for package in packages:
        found, sizes = check_package(dist, package, classifiers)
        problems += found
        rows += sizes
    width = max((len(row[0]) for row in rows), default=8)
    print(f"{'artifact':<{width}}  {'size':>9}  {'files':>5}  budget")
    for name, size, count, budget in rows:
        print(f"{name:<{width}}  {size / 1024:>5.0f} KiB  {count:>5}  {budget // 1024} KiB")
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) in the built artifacts")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
