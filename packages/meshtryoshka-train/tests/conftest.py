"""Tiny synthetic scenes and reduced configurations for CPU tests of the training app."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
        "model.min_voxel_pixels=0",  # tiny images: follow the test's resolution schedule
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


def free_port() -> int:
    """A TCP port nobody listens on now (torchrun's ``--master-port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torchrun(*args: str, nproc: int = 2, timeout: float = 300, check: bool = True):
    """``torchrun --nproc-per-node nproc ARGS`` on this machine (CPU, gloo, one thread per
    rank); the completed process, its status checked unless `check` is False."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--master-port", str(free_port()), *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def torchrun():
    """`run_torchrun`: ``torchrun(*args, nproc=2, timeout=300, check=True)``."""
    return run_torchrun


@pytest.fixture(scope="session", name="free_port")
def free_port_fixture():
    """`free_port`: ``free_port()`` -> a TCP port for torchrun's ``--master-port``."""
    return free_port
