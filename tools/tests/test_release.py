"""tools/release.py on a temporary copy of the packages' pyproject.toml and CHANGELOG.md files."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1]
ROOT = TOOLS.parent
_spec = importlib.util.spec_from_file_location("release", TOOLS / "release.py")
release = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release)

APP = "meshtryoshka-train"
LIBRARY = "slang-rasterizer"
DATE = "2027-01-15"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the repository's package metadata, version 0.1.0 everywhere."""
    for pyproject in (ROOT / "packages").glob("*/pyproject.toml"):
        target = tmp_path / "packages" / pyproject.parent.name
        target.mkdir(parents=True)
        shutil.copy(pyproject, target)
        shutil.copy(pyproject.parent / "CHANGELOG.md", target)
        text = (target / "pyproject.toml").read_text()
        (target / "pyproject.toml").write_text(
            release.VERSION_LINE.sub('version = "0.1.0"', text, count=1)
        )
    return tmp_path


def run(root: Path, *args: str) -> int:
    return release.main(["--root", str(root), *args])


def version_of(root: Path, package: str) -> str:
    return release.show(release.current_version(root / "packages" / package))


def changelog(root: Path, package: str) -> str:
    return (root / "packages" / package / "CHANGELOG.md").read_text()


def test_prepare_bumps_stamps_and_checks_the_tag(root, capsys):
    before = changelog(root, LIBRARY)
    entries = before.split("## Unreleased\n", 1)[1].split("\n## 0.1.0", 1)[0]
    assert run(root, "prepare", LIBRARY, "patch", "--date", DATE) == 0
    assert version_of(root, LIBRARY) == "0.1.1"
    after = changelog(root, LIBRARY)
    # the entries moved under the new heading; Unreleased is empty and stays on top
    assert f"## Unreleased\n\n## 0.1.1 - {DATE}\n{entries}\n## 0.1.0" in after
    out = capsys.readouterr().out
    assert f"tag {LIBRARY}-v0.1.1 matches" in out
    assert f"git tag {LIBRARY}-v0.1.1" in out
    assert run(root, "check-tag", f"{LIBRARY}-v0.1.1") == 0
    # a patch release stays inside the app's range: the app is untouched
    assert f"{LIBRARY}>=0.1,<0.2" in (root / "packages" / APP / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    ("request_", "expected"), [("minor", "0.2.0"), ("major", "1.0.0"), ("0.3.0", "0.3.0")]
)
def test_prepare_accepts_bumps_and_explicit_versions(root, request_, expected):
    assert run(root, "prepare", "meshtryoshka-data", request_, "--date", DATE) == 0
    assert version_of(root, "meshtryoshka-data") == expected
    assert f"## {expected} - {DATE}" in changelog(root, "meshtryoshka-data")


def test_library_minor_release_moves_the_app_range(root, capsys):
    assert run(root, "prepare", LIBRARY, "minor", "--date", DATE) == 0
    app_pyproject = (root / "packages" / APP / "pyproject.toml").read_text()
    assert f'"{LIBRARY}>=0.2,<0.3"' in app_pyproject
    assert "slang-marching-cubes>=0.1,<0.2" in app_pyproject  # the other libraries stay
    app_unreleased = changelog(root, APP).split("## Unreleased", 1)[1].split("\n## ", 1)[0]
    assert f"Requires `{LIBRARY}>=0.2,<0.3` (was `>=0.1,<0.2`)" in app_unreleased
    assert version_of(root, APP) == "0.1.0"  # the app's own release is a separate step
    assert f"release {APP} after this one" in capsys.readouterr().out


def test_runtime_minor_release_moves_both_kernel_packages_ranges(root, capsys):
    runtime = "slang-kernel-runtime"
    assert run(root, "prepare", runtime, "minor", "--date", DATE) == 0
    out = capsys.readouterr().out
    for kernels in ("slang-marching-cubes", "slang-rasterizer"):
        pyproject = (root / "packages" / kernels / "pyproject.toml").read_text()
        assert f'"{runtime}>=0.2,<0.3"' in pyproject
        unreleased = changelog(root, kernels).split("## Unreleased", 1)[1].split("\n## ", 1)[0]
        assert f"Requires `{runtime}>=0.2,<0.3` (was `>=0.1,<0.2`)" in unreleased
        assert version_of(root, kernels) == "0.1.0"
        assert f"packages/{kernels}: its range on {runtime} now admits 0.2.0" in out
    assert runtime not in (root / "packages" / APP / "pyproject.toml").read_text()


def test_app_entry_goes_under_one_changed_heading(root):
    app_changelog = root / "packages" / APP / "CHANGELOG.md"
    app_changelog.write_text("# Changelog\n\n## Unreleased\n\n## 0.1.0\n\n- first\n")
    assert run(root, "prepare", LIBRARY, "minor", "--date", DATE) == 0
    assert run(root, "prepare", "slang-marching-cubes", "minor", "--date", DATE) == 0
    text = app_changelog.read_text()
    assert text.count("### Changed") == 1
    assert re.search(
        r"## Unreleased\n\n### Changed\n- Requires `slang-marching-cubes>=0.2,<0.3`.*\n"
        r"- Requires `slang-rasterizer>=0.2,<0.3`.*\n\n## 0.1.0\n",
        text,
    ), text


def test_policy_range():
    assert release.policy_range((0, 4, 1)) == ">=0.4,<0.5"
    assert release.policy_range((2, 3, 0)) == ">=2.3,<3"


def test_tag_mismatch_is_refused(root, capsys):
    assert run(root, "check-tag", f"{LIBRARY}-v0.2.0") == 1
    error = capsys.readouterr().err
    assert f"releases 0.2.0 but packages/{LIBRARY}/pyproject.toml has version 0.1.0" in error


def test_tag_without_changelog_section_is_refused(root, capsys):
    pyproject = root / "packages" / LIBRARY / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.1.5"'))
    assert run(root, "check-tag", f"{LIBRARY}-v0.1.5") == 1
    assert "has no '## 0.1.5' section" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check-tag", "slang-rasterizer-0.1.0"], "tag: expected <package>-vX.Y.Z with <package>"),
        (["check-tag", "nope-v0.1.0"], "tag: expected <package>-vX.Y.Z"),
        (["check-tag", "slang-rasterizer-v0.1"], "tag: expected a version X.Y.Z"),
        (["prepare", "slang_rasterizer", "patch"], "package: expected one of meshtryoshka-data,"),
        (["prepare", LIBRARY, "next"], "version: expected X.Y.Z or one of major, minor, patch"),
        (["prepare", LIBRARY, "0.2"], "version: expected X.Y.Z or one of major, minor, patch"),
        (["prepare", LIBRARY, "0.1.0"], "version: expected a version above the current 0.1.0"),
        (["prepare", LIBRARY, "0.0.9"], "version: expected a version above the current 0.1.0"),
        (["prepare", LIBRARY, "patch", "--date", "15.01.2027"], "--date: expected YYYY-MM-DD"),
    ],
)
def test_bad_input_names_the_argument(root, capsys, args, message):
    assert run(root, *args) == 1
    assert message in capsys.readouterr().err
    assert version_of(root, LIBRARY) == "0.1.0"


def test_nothing_to_release_is_refused_and_nothing_written(root, capsys):
    path = root / "packages" / LIBRARY / "CHANGELOG.md"
    path.write_text("# Changelog\n\n## Unreleased\n\n## 0.1.0\n\n- first\n")
    assert run(root, "prepare", LIBRARY, "patch", "--date", DATE) == 1
    assert "no entries under '## Unreleased'" in capsys.readouterr().err
    assert version_of(root, LIBRARY) == "0.1.0"


def test_an_app_range_of_another_form_stops_before_writing(root, capsys):
    app = root / "packages" / APP / "pyproject.toml"
    app.write_text(app.read_text().replace(f'"{LIBRARY}>=0.1,<0.2"', f'"{LIBRARY}~=0.1.0"'))
    before = changelog(root, LIBRARY)
    assert run(root, "prepare", LIBRARY, "minor", "--date", DATE) == 1
    assert f'not of the form "{LIBRARY}>=X.Y,<X.Z"' in capsys.readouterr().err
    assert changelog(root, LIBRARY) == before
    assert version_of(root, LIBRARY) == "0.1.0"


def test_the_repository_itself_passes_its_current_tags():
    for pyproject in (ROOT / "packages").glob("*/pyproject.toml"):
        package = pyproject.parent.name
        version = version_of(ROOT, package)
        assert release.check_tag(ROOT, f"{package}-v{version}") == package
