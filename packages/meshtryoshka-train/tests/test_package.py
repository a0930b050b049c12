"""Packaging checks: the installed metadata and the public API agree."""

import sys
from pathlib import Path

import meshtryoshka_train

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_version_matches_pyproject():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert meshtryoshka_train.__version__ == project["version"]


def test_all_names_exist():
    missing = [name for name in meshtryoshka_train.__all__ if not hasattr(meshtryoshka_train, name)]
    assert missing == []


def test_every_module_s_all_names_exist():
    import importlib

    for name in (
        "run",
        "trainer",
        "export",
        "camera_path",
        "viewer",
        "rendering",
        "evaluate",
        "checkpoint",
        "saved_run",
        "cli",
        "cli.errors",
        "cli.train",
        "cli.doctor",
    ):
        module = importlib.import_module(f"meshtryoshka_train.{name}")
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert missing == [], name
