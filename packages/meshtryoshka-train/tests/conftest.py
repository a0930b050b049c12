"""Tiny synthetic scenes and reduced configurations for CPU tests of the training app."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshtryoshka_data import write_blender_scene, write_colmap_scene


@pytest.fixture(scope="session")
def blender_root(tmp_path_factory) -> Path:
    """A folder holding the NeRF-synthetic-format scene ``toy``: a sphere, 24x24 px, 8/1/2."""
    root = tmp_path_factory.mktemp("blender")
    write_blender_scene(root / "toy", n_train=8, n_val=1, n_test=2, size=24, seed=0)
    return root


@pytest.fixture(scope="session")
def colmap_root(tmp_path_factory) -> Path:
    """A folder holding the COLMAP scene ``toy``: 10 images of 32x24 px with sparse points."""
    root = tmp_path_factory.mktemp("colmap")
    write_colmap_scene(root / "toy", n_images=10, size=(32, 24), seed=0, downscales=(2,))
    return root


def _reduced(root: Path, steps: int = 2, unbounded: bool = False) -> list[str]:
    """Overrides that shrink any shipped experiment to a CPU test run of `steps` steps."""
    overrides = [
        f"dataset.root={root}",
        "dataset.scene=toy",
        "dataset.downscale=1",
        "model.resolution={0=12}",
        "model.train_ssaa=1",
        "model.eval_ssaa=1",
        "model.backend=reference",
        "optim.batch_size=2",
        f"train.steps={steps}",
        "train.log_interval=1",
        "train.device=cpu",
    ]
    if unbounded:
        overrides += [
            "model.resolution={0=8}",
            "model.arm_resolution={0=4}",
            "model.init_points=64",
        ]
    return overrides


@pytest.fixture
def reduced():
    """``reduced(root, steps=2, unbounded=False)``: the overrides of a tiny CPU run."""
    return _reduced
