"""Prepare a release of one package, and check a release tag against its package.

    python tools/release.py prepare PACKAGE VERSION [--date YYYY-MM-DD]
    python tools/release.py check-tag TAG

`prepare` sets `version` in packages/PACKAGE/pyproject.toml (VERSION is X.Y.Z, or major,
minor or patch to bump the current version), turns the entries under `## Unreleased` in
packages/PACKAGE/CHANGELOG.md into a `## X.Y.Z - DATE` section below a new, empty
`## Unreleased`, and, for every package whose range on PACKAGE does not admit the new version
(meshtryoshka-train on a library, a kernel package on slang-kernel-runtime), moves that range
and notes it in that package's CHANGELOG. It then checks the tag it prints and prints the git
commands that finish the release. Nothing is committed or tagged.

`check-tag` (the release workflow's first step) exits 1 unless TAG is `<package>-vX.Y.Z`
for a package whose pyproject.toml has version X.Y.Z and whose CHANGELOG has its section.

The policy behind both is docs/releasing.md. Standard library only, so the release
workflow can run it before installing anything.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUMPS = ("major", "minor", "patch")
VERSION = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
# the `version = "..."` line of pyproject.toml's [project] table (the first table that has one)
VERSION_LINE = re.compile(r'^version = "([^"]*)"$', re.M)
UNRELEASED = "## Unreleased"

Version = tuple[int, int, int]


class ReleaseError(Exception):
    """A bad argument or a repository state that does not allow the release; the message says
    which argument or file, what was expected and what was found."""


def show(version: Version) -> str:
    return ".".join(map(str, version))


def parse_version(text: str, argument: str) -> Version:
    match = VERSION.fullmatch(text)
    if match is None:
        raise ReleaseError(
            f"{argument}: expected a version X.Y.Z (three numbers without leading zeros), "
            f"got {text!r}"
        )
    major, minor, patch = map(int, match.groups())
    return major, minor, patch


def package_names(root: Path) -> list[str]:
    return sorted(p.parent.name for p in (root / "packages").glob("*/pyproject.toml"))


def check_package(root: Path, package: str, argument: str = "package") -> Path:
    names = package_names(root)
    if package not in names:
        raise ReleaseError(f"{argument}: expected one of {', '.join(names)}, got {package!r}")
    return root / "packages" / package


def current_version(folder: Path) -> Version:
    pyproject = folder / "pyproject.toml"
    match = VERSION_LINE.search(pyproject.read_text())
    if match is None:
        raise ReleaseError(f'{pyproject}: no `version = "X.Y.Z"` line')
    return parse_version(match.group(1), f"{pyproject} version")


def next_version(current: Version, request: str) -> Version:
    major, minor, patch = current
    if request == "major":
        return major + 1, 0, 0
    if request == "minor":
        return major, minor + 1, 0
    if request == "patch":
        return major, minor, patch + 1
    if not VERSION.fullmatch(request):
        raise ReleaseError(f"version: expected X.Y.Z or one of {', '.join(BUMPS)}, got {request!r}")
    wanted = parse_version(request, "version")
    if wanted <= current:
        raise ReleaseError(
            f"version: expected a version above the current {show(current)}, got {request}"
        )
    return wanted


def unreleased_section(changelog: Path, text: str) -> tuple[int, int]:
    """(start, end) offsets of the body under `## Unreleased`, up to the next `## ` heading."""
    headings = [m.start() for m in re.finditer(rf"^{UNRELEASED}[ \t]*$", text, re.M)]
    if len(headings) != 1:
        raise ReleaseError(
            f"{changelog}: expected one '{UNRELEASED}' heading, found {len(headings)}"
        )
    start = text.index("\n", headings[0]) + 1
    following = re.search(r"^## ", text[start:], re.M)
    return start, start + following.start() if following else len(text)


def stamped_changelog(changelog: Path, version: Version, date: str) -> str:
    """`## Unreleased` + entries -> `## Unreleased` (empty) + `## X.Y.Z - DATE` + entries."""
    text = changelog.read_text()
    if re.search(rf"^## {re.escape(show(version))}\b", text, re.M):
        raise ReleaseError(f"{changelog}: already has a section for {show(version)}")
    start, end = unreleased_section(changelog, text)
    if not re.search(r"^\s*[-*] \S", text[start:end], re.M):
        raise ReleaseError(
            f"{changelog}: no entries under '{UNRELEASED}'; write down what changed first"
        )
    return text[:start] + f"\n## {show(version)} - {date}\n" + text[start:]


def with_changed_entry(changelog: Path, entry: str) -> str:
    """The CHANGELOG with `- entry` first under `### Changed` of `## Unreleased`; the
    subsection is made (before Deprecated/Removed/Fixed/Security, as Keep a Changelog orders
    them) when there is none."""
    text = changelog.read_text()
    start, end = unreleased_section(changelog, text)
    body = text[start:end]
    changed = re.search(r"^### Changed[ \t]*\n", body, re.M)
    if changed:
        at = start + changed.end()
        return text[:at] + f"- {entry}\n" + text[at:]
    later = re.search(r"^### (Deprecated|Removed|Fixed|Security)", body, re.M)
    if later:
        at, prefix = start + later.start(), ""
    else:  # at the end of the section, after its last line
        kept = body.rstrip("\n")
        at, prefix = start + len(kept), "\n\n" if kept.strip() else "\n"
    return text[:at] + f"{prefix}### Changed\n- {entry}\n\n" + text[at:].lstrip("\n")


def policy_range(version: Version) -> str:
    """A dependent's range on a release: the same minor for 0.x, the same major after."""
    major, minor, _ = version
    if major == 0:
        return f">=0.{minor},<0.{minor + 1}"
    return f">={major}.{minor},<{major + 1}"


def padded(text: str) -> Version:
    major, minor, patch = ([int(part) for part in text.split(".")] + [0, 0])[:3]
    return major, minor, patch


def moved_ranges(root: Path, package: str, version: Version) -> dict[Path, str]:
    """New texts of the pyproject.toml and CHANGELOG.md of every package whose range on
    `package` does not admit `version` (the app on a library, a kernel package on the kernel
    runtime); empty when every range admits it or nothing depends on `package`."""
    changes: dict[Path, str] = {}
    for dependent in package_names(root):
        folder = root / "packages" / dependent
        pyproject = folder / "pyproject.toml"
        text = pyproject.read_text()
        match = re.search(rf'"{re.escape(package)}\s*(>=[0-9.]+,\s*<[0-9.]+)\s*"', text)
        if dependent == package or (match is None and f'"{package}' not in text):
            continue
        if match is None:
            raise ReleaseError(
                f"{pyproject}: the requirement on {package} is not of the form "
                f'"{package}>=X.Y,<X.Z"; move it by hand (docs/releasing.md)'
            )
        old = match.group(1).replace(" ", "")
        low, high = (padded(part.lstrip("<>=")) for part in old.split(","))
        if low <= version < high:
            continue
        new = policy_range(version)
        entry = f"Requires `{package}{new}` (was `{old}`), for {package} {show(version)}."
        changes[pyproject] = text[: match.start(1)] + new + text[match.end(1) :]
        changes[folder / "CHANGELOG.md"] = with_changed_entry(folder / "CHANGELOG.md", entry)
    return changes


def check_tag(root: Path, tag: str) -> str:
    """The package that `tag` releases; ReleaseError unless the tag, version and CHANGELOG agree."""
    names = package_names(root)
    match = re.fullmatch(r"(?P<package>[a-z0-9-]+)-v(?P<version>.*)", tag)
    if match is None or match.group("package") not in names:
        raise ReleaseError(
            f"tag: expected <package>-vX.Y.Z with <package> one of {', '.join(names)}, got {tag!r}"
        )
    package = match.group("package")
    version = parse_version(match.group("version"), "tag")
    folder = root / "packages" / package
    declared = current_version(folder)
    if declared != version:
        raise ReleaseError(
            f"tag: {tag} releases {show(version)} but packages/{package}/pyproject.toml has "
            f"version {show(declared)}"
        )
    changelog = folder / "CHANGELOG.md"
    if not re.search(rf"^## {re.escape(show(version))}\b", changelog.read_text(), re.M):
        raise ReleaseError(f"tag: {changelog} has no '## {show(version)}' section")
    return package


def prepare(root: Path, package: str, request: str, date: str) -> list[str]:
    """Bump, stamp and move the dependents' ranges; returns the lines to print. Every check
    runs before the first file is written."""
    folder = check_package(root, package)
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise ReleaseError(f"--date: expected YYYY-MM-DD, got {date!r}") from None
    current = current_version(folder)
    version = next_version(current, request)
    pyproject = folder / "pyproject.toml"
    text = pyproject.read_text()
    line = VERSION_LINE.search(text)
    changes = {
        pyproject: f'{text[: line.start()]}version = "{show(version)}"{text[line.end() :]}',
        folder / "CHANGELOG.md": stamped_changelog(folder / "CHANGELOG.md", version, date),
    }
    moved = moved_ranges(root, package, version)
    for path, new_text in {**changes, **moved}.items():
        path.write_text(new_text)
    tag = f"{package}-v{show(version)}"
    check_tag(root, tag)
    done = [
        f"packages/{package}/pyproject.toml: version {show(current)} -> {show(version)}",
        f"packages/{package}/CHANGELOG.md: '## {show(version)} - {date}'",
    ]
    for path in moved:
        if path.name == "pyproject.toml":
            dependent = path.parent.name
            done.append(
                f"packages/{dependent}: its range on {package} now admits {show(version)} "
                f"(pyproject.toml, CHANGELOG.md); release {dependent} after this one "
                "(docs/releasing.md)"
            )
    return done + [
        f"tag {tag} matches the version and the CHANGELOG; to finish:",
        f'  git commit -am "{package} {show(version)}" && git tag {tag} '
        f"&& git push origin HEAD {tag}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="release.py", description=__doc__.split("\n\n")[0].strip()
    )
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare", help="bump, stamp and check one package")
    prepare_parser.add_argument("package", help="e.g. slang-rasterizer")
    prepare_parser.add_argument("version", help="X.Y.Z, or major, minor or patch")
    prepare_parser.add_argument(
        "--date", default=datetime.date.today().isoformat(), help="release date, YYYY-MM-DD"
    )
    tag_parser = commands.add_parser("check-tag", help="check a <package>-vX.Y.Z tag")
    tag_parser.add_argument("tag")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            lines = prepare(args.root, args.package, args.version, args.date)
        else:
            package = check_tag(args.root, args.tag)
            lines = [f"tag {args.tag} matches packages/{package} (version and CHANGELOG)"]
    except ReleaseError as error:
        print(f"release.py: error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
