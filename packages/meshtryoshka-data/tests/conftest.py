"""Shared fixtures: one synthetic scene per format, written once, copied for tests that break it."""

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for ``data_helpers``

from meshtryoshka_data import write_blender_scene, write_colmap_scene  # noqa: E402


@pytest.fixture(scope="session")
def blender_truth(tmp_path_factory):
    path = tmp_path_factory.mktemp("blender") / "sphere"
    return write_blender_scene(path, n_train=4, n_val=1, n_test=2, size=24, seed=0)


@pytest.fixture(scope="session")
def colmap_truth(tmp_path_factory):
    path = tmp_path_factory.mktemp("colmap") / "sphere"
    return write_colmap_scene(path, n_images=10, size=(32, 24), seed=1)


@pytest.fixture
def blender_copy(blender_truth, tmp_path):
    """A private copy of the Blender scene (path) that a test may damage."""
    return shutil.copytree(blender_truth.path, tmp_path / "blender")


@pytest.fixture
def colmap_copy(colmap_truth, tmp_path):
    """A private copy of the COLMAP scene (path) that a test may damage."""
    return shutil.copytree(colmap_truth.path, tmp_path / "colmap")
