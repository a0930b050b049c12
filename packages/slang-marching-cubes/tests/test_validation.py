"""Bad inputs raise ValueError naming the argument; odd-but-valid inputs work."""

from __future__ import annotations

import math

import pytest
import torch

from slang_marching_cubes import SparseGrid, extract_shells, sdf_regularizers, write_ply


@pytest.fixture
def grid():
    return SparseGrid.full((3, 3, 3))


def _ok(grid):
    return torch.zeros(grid.num_vertices), torch.zeros(grid.num_vertices, 2)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda g, s, a: (g, s.double(), a, [0.0]), "attributes must have the dtype of sdf"),
        (lambda g, s, a: (g, s.int(), a, [0.0]), "sdf must be float32 or float64"),
        (lambda g, s, a: (g, s[:-1], a, [0.0]), r"sdf must be \[64\]"),
        (lambda g, s, a: (g, s[:, None], a, [0.0]), r"sdf must be \[64\]"),
        (lambda g, s, a: (g, s.numpy(), a, [0.0]), "sdf must be a float32/float64"),
        (lambda g, s, a: (g, s.to_sparse(), a, [0.0]), "sdf must be a dense"),
        (lambda g, s, a: (g, s, a[:, 0], [0.0]), r"attributes must be \[64, F\]"),
        (lambda g, s, a: (g, s, a[:-1], [0.0]), r"attributes must be \[64, F\]"),
        (lambda g, s, a: (g, s, a.half(), [0.0]), "attributes must be float32 or float64"),
        (
            lambda g, s, a: (g, s.index_fill(0, torch.tensor([3]), math.nan), a, [0.0]),
            "sdf must be finite",
        ),
        (
            lambda g, s, a: (g, s, a.index_fill(0, torch.tensor([3]), math.inf), [0.0]),
            "attributes must be finite",
        ),
        (lambda g, s, a: (g, s, a, [0.0, 0.1]), "levels must be strictly decreasing"),
        (lambda g, s, a: (g, s, a, [0.1, 0.1]), "levels must be strictly decreasing"),
        (lambda g, s, a: (g, s, a, []), "levels must hold at least one"),
        (lambda g, s, a: (g, s, a, [math.nan]), "levels must be finite"),
        (lambda g, s, a: (g, s, a, torch.zeros(2, 1)), r"levels must be a float \[L\]"),
        (lambda g, s, a: (g, s, a, ["a"]), "levels must be a sequence of floats"),
        (lambda g, s, a: ("grid", s, a, [0.0]), "grid must be a SparseGrid"),
    ],
)
def test_extract_rejects(grid, make, match):
    s, a = _ok(grid)
    with pytest.raises(ValueError, match=match):
        extract_shells(*make(grid, s, a))


def test_extract_rejects_bad_backend_and_slang_on_cpu(grid):
    s, a = _ok(grid)
    with pytest.raises(ValueError, match="backend must be"):
        extract_shells(grid, s, a, [0.0], backend="cuda")
    with pytest.raises(ValueError, match="backend='slang' needs CUDA"):
        extract_shells(grid, s, a, [0.0], backend="slang")


@pytest.mark.cuda
def test_extract_rejects_wrong_device(grid):
    s, a = _ok(grid)
    with pytest.raises(ValueError, match="sdf must be on the grid's device"):
        extract_shells(grid, s.cuda(), a, [0.0])
    with pytest.raises(ValueError, match="attributes must be on the grid's device"):
        extract_shells(grid, s, a.cuda(), [0.0])


def test_levels_as_tensor_and_tuple(grid):
    s = grid.vertex_positions()[:, 0] - 0.5
    a = extract_shells(grid, s, None, torch.tensor([0.1, -0.1]))
    b = extract_shells(grid, s, None, (0.1, -0.1))
    assert torch.equal(a.faces, b.faces) and a.attributes.shape == (a.positions.shape[0], 0)


def test_regularizers_reject(grid):
    with pytest.raises(ValueError, match="sdf must be"):
        sdf_regularizers(grid, torch.zeros(5))
    with pytest.raises(ValueError, match="sdf must be finite"):
        sdf_regularizers(grid, torch.full((64,), math.inf))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: SparseGrid((3, 3), torch.zeros(0, dtype=torch.long)), "shape must be 3 positive"),
        (
            lambda: SparseGrid((3, 0, 3), torch.zeros(0, dtype=torch.long)),
            "shape must be 3 positive",
        ),
        (
            lambda: SparseGrid((3, 3, 3), torch.zeros(2, dtype=torch.int32)),
            "voxels must be an int64",
        ),
        (lambda: SparseGrid((3, 3, 3), torch.tensor([2, 1])), "voxels must be sorted and unique"),
        (lambda: SparseGrid((3, 3, 3), torch.tensor([1, 27])), r"voxels must be ids in \[0, 27\)"),
        (lambda: SparseGrid.from_dense(torch.zeros(3, 3, 3)), "occupancy must be a bool"),
        (
            lambda: SparseGrid.from_dense(torch.zeros(3, 3, dtype=torch.bool)),
            "occupancy must be a bool",
        ),
        (
            lambda: SparseGrid.from_packed(torch.zeros(3, dtype=torch.uint8), (3, 3, 3)),
            r"bits must be a uint8 \[4\]",
        ),
        (
            lambda: SparseGrid.from_packed(
                torch.tensor([0, 0, 0, 255], dtype=torch.uint8), (3, 3, 3)
            ),
            "past the last voxel",
        ),
        (
            lambda: SparseGrid.from_coords((3, 3, 3), torch.tensor([[0, 0, 3]])),
            "coords must lie in",
        ),
        (lambda: SparseGrid.from_coords((3, 3, 3), torch.zeros(2, 3)), "coords must be an integer"),
        (lambda: SparseGrid.from_ids((3, 3, 3), torch.tensor([-1])), "ids must lie in"),
        (
            lambda: SparseGrid.full((2, 2, 2)).prune(torch.ones(7, dtype=torch.bool)),
            r"keep must be a bool \[8\]",
        ),
        (lambda: SparseGrid.full((2, 2, 2)).dilate(-1), "k must be an int >= 0"),
        (lambda: SparseGrid.full((4, 4, 4)).resample((8, 8, 2)), "shape must be >= the current"),
        (
            lambda: SparseGrid.full((2, 2, 2)).transfer(torch.zeros(5), SparseGrid.full((3, 3, 3))),
            r"values must be a \[27, ...\]",
        ),
        (
            lambda: SparseGrid.full((2, 2, 2)).transfer(
                torch.zeros(27, dtype=torch.long), SparseGrid.full((3, 3, 3))
            ),
            "values must be floating point",
        ),
        (
            lambda: SparseGrid.full((2, 2, 2)).transfer(torch.zeros(27), "grid"),
            "target must be a SparseGrid",
        ),
        (
            lambda: SparseGrid((9, 9, 9), torch.tensor([0])).transfer(
                torch.zeros(8), SparseGrid.full((9, 9, 9)), max_radius=2
            ),
            "max_radius",
        ),
    ],
)
def test_grid_rejects(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_write_ply_rejects(tmp_path):
    with pytest.raises(ValueError, match="positions must be a float"):
        write_ply(tmp_path / "x.ply", torch.zeros(3, 2), torch.zeros(1, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="faces must be an integer"):
        write_ply(tmp_path / "x.ply", torch.zeros(3, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="faces must index"):
        write_ply(tmp_path / "x.ply", torch.zeros(3, 3), torch.tensor([[0, 1, 3]]))


def test_backend_rule_is_the_runtimes_under_this_packages_name():
    from slang_marching_cubes import compilation, resolve_backend, slang_available

    assert resolve_backend == compilation.KERNELS.resolve_backend  # tested in slang-kernel-runtime
    assert slang_available == compilation.KERNELS.slang_available
    # the name that its fallback notice and its errors carry
    assert compilation.KERNELS.PACKAGE == "slang_marching_cubes"
