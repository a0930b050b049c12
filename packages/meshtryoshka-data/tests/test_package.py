"""Packaging checks: the installed metadata and the public API agree."""

import sys
from pathlib import Path

import meshtryoshka_data

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_version_matches_pyproject():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert meshtryoshka_data.__version__ == project["version"]


def test_all_names_exist():
    missing = [name for name in meshtryoshka_data.__all__ if not hasattr(meshtryoshka_data, name)]
    assert missing == []


def test_colmap_extra_is_what_from_images_asks_for():
    from meshtryoshka_data.from_images import PYCOLMAP_REQUIREMENT

    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert extras["colmap"] == [PYCOLMAP_REQUIREMENT]
