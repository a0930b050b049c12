"""SparseGrid: builders, lookups, dilation, pruning, resampling, value transfer, memory."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from mc_helpers import band_grid, random_sparse_grid, sphere_sdf

from slang_marching_cubes import SparseGrid, compilation, estimate_nbytes, reference


def _brute_vertices(occ: torch.Tensor) -> torch.Tensor:
    """Lattice occupancy: a vertex exists iff one of its 8 incident voxels is occupied."""
    ni, nj, nk = occ.shape
    lat = torch.zeros(ni + 1, nj + 1, nk + 1, dtype=torch.bool)
    for di, dj, dk in itertools.product((0, 1), repeat=3):
        lat[di : di + ni, dj : dj + nj, dk : dk + nk] |= occ
    return torch.nonzero(lat.reshape(-1)).reshape(-1)


@pytest.mark.parametrize("shape", [(5, 7, 3), (1, 1, 1), (8, 8, 8), (3, 1, 6)])
def test_vertices_match_brute_force(shape):
    occ = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < 0.3
    grid = SparseGrid.from_dense(occ)
    assert torch.equal(grid.vertices, _brute_vertices(occ))
    assert torch.equal(grid.to_dense(), occ)


def test_vertices_built_in_small_chunks_match():
    occ = torch.rand(9, 6, 5, generator=torch.Generator().manual_seed(2)) < 0.4
    grid = SparseGrid.from_dense(occ)
    chunked = reference.grid_vertices(grid.voxels, grid.voxel_rows, grid.shape, chunk=7)
    assert torch.equal(chunked, grid.vertices)


def test_the_grid_builds_its_vertices_with_its_backend(monkeypatch):
    resolve = compilation.KERNELS.resolve_backend
    asked = []
    monkeypatch.setattr(
        compilation.KERNELS,
        "resolve_backend",
        lambda *args: asked.append(args[0]) or resolve(*args),
    )
    grid = SparseGrid.full((3, 4, 5), backend="reference")
    keep = torch.arange(grid.num_voxels) % 2 == 0
    derived = [grid.prune(keep), grid.dilate(1), grid.resample((6, 8, 10)), grid.to("cpu")]
    assert [g.backend for g in (grid, *derived)] == ["reference"] * 5
    assert grid.prune(keep, backend="auto").backend == "auto"
    assert asked == ["reference"] * 4 + ["auto"]  # `to` moves the vertex list, builds nothing
    with pytest.raises(ValueError, match="backend='slang' needs CUDA tensors, got voxels on cpu"):
        SparseGrid.full((2, 2, 2), backend="slang")
    with pytest.raises(ValueError, match="backend must be 'auto', 'reference' or 'slang'"):
        SparseGrid.from_ids((2, 2, 2), torch.tensor([0]), backend="cuda")


def test_corners_and_positions():
    grid = random_sparse_grid((6, 5, 4), 0.3, seed=3)
    corners = grid.voxel_corners().long()
    assert corners.dtype == torch.long and corners.shape == (grid.num_voxels, 8)
    assert int(corners.min()) >= 0
    vox = grid.voxel_coords()
    vert = grid.vertex_coords()
    for c in range(8):
        off = torch.tensor([(c >> 2) & 1, (c >> 1) & 1, c & 1])
        assert torch.equal(vert[corners[:, c]], vox + off)
    pos = grid.vertex_positions(torch.float64)
    assert torch.allclose(pos, vert.double() / torch.tensor([6.0, 5.0, 4.0]))


def test_neighbors_and_lookup():
    occ = torch.rand(5, 6, 7, generator=torch.Generator().manual_seed(4)) < 0.5
    grid = SparseGrid.from_dense(occ)
    nb = grid.voxel_neighbors()
    vox = grid.voxel_coords()
    offs = [(-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)]
    for n, off in enumerate(offs):
        c = vox + torch.tensor(off)
        inside = ((c >= 0) & (c < torch.tensor(occ.shape))).all(-1)
        expect = torch.zeros(len(c), dtype=torch.bool)
        expect[inside] = occ[tuple(c[inside].T)]
        assert torch.equal(nb[:, n] >= 0, expect)
        assert torch.equal(vox[nb[expect, n]], c[expect])


def test_packed_round_trip_and_numpy_layout():
    occ = torch.rand(4, 5, 7, generator=torch.Generator().manual_seed(5)) < 0.5
    grid = SparseGrid.from_dense(occ)
    bits = grid.to_packed()
    expect = np.packbits(occ.numpy().reshape(-1), bitorder="little")
    assert np.array_equal(bits.numpy(), expect)
    assert torch.equal(SparseGrid.from_packed(bits, occ.shape).voxels, grid.voxels)


def test_from_coords_and_ids_sort_and_dedupe():
    coords = torch.tensor([[1, 2, 3], [0, 0, 0], [1, 2, 3]])
    grid = SparseGrid.from_coords((2, 3, 4), coords)
    assert grid.voxels.tolist() == [0, (1 * 3 + 2) * 4 + 3]
    assert torch.equal(SparseGrid.from_ids((2, 3, 4), grid.voxels.flip(0)).voxels, grid.voxels)


def test_dilate_matches_dense_max_pool():
    occ = torch.rand(9, 8, 10, generator=torch.Generator().manual_seed(6)) < 0.03
    grid = SparseGrid.from_dense(occ)
    for k in (0, 1, 2):
        dense = torch.nn.functional.max_pool3d(
            occ[None, None].float(), 2 * k + 1, stride=1, padding=k
        )[0, 0].bool()
        assert torch.equal(grid.dilate(k).to_dense(), dense)


def test_prune():
    grid = random_sparse_grid((6, 6, 6), 0.5, seed=7)
    keep = torch.rand(grid.num_voxels, generator=torch.Generator().manual_seed(0)) < 0.5
    pruned = grid.prune(keep)
    assert torch.equal(pruned.voxels, grid.voxels[keep])


def _overlap_occupancy(occ: torch.Tensor, new_shape) -> torch.Tensor:
    """Brute force: new voxel occupied iff its box overlaps an occupied old box (exact ints)."""
    out = torch.zeros(new_shape, dtype=torch.bool)
    for idx in torch.nonzero(occ).tolist():
        rng = []
        for a in range(3):
            o, n = occ.shape[a], new_shape[a]
            # new voxel i overlaps old voxel idx iff i*o < (idx+1)*n and (i+1)*o > idx*n
            rng.append(
                [i for i in range(n) if i * o < (idx[a] + 1) * n and (i + 1) * o > idx[a] * n]
            )
        for i, j, k in itertools.product(*rng):
            out[i, j, k] = True
    return out


@pytest.mark.parametrize(
    "old,new", [((4, 5, 3), (8, 10, 6)), ((4, 6, 2), (6, 9, 3)), ((5, 4, 3), (7, 9, 3))]
)
def test_resample_occupancy_is_exact(old, new):
    occ = torch.rand(old, generator=torch.Generator().manual_seed(8)) < 0.3
    grid = SparseGrid.from_dense(occ)
    assert torch.equal(grid.resample(new).to_dense(), _overlap_occupancy(occ, new))


@pytest.mark.parametrize("ratio", [(2, 1), (3, 2), (5, 4)], ids=["2x", "3:2", "5:4"])
def test_resample_transfers_a_linear_field_exactly(ratio):
    num, den = ratio
    old_shape = (4 * den, 2 * den, 6 * den)
    new_shape = tuple(s * num // den for s in old_shape)
    grid = random_sparse_grid(old_shape, 0.15, seed=9)
    fine = grid.resample(new_shape)
    coef = torch.tensor([0.3, -1.7, 2.2], dtype=torch.float64)

    def field(g):
        p = g.vertex_positions(torch.float64)
        return torch.stack((p @ coef + 0.25, 2 * p[:, 0] - p[:, 2]), dim=-1)  # [V, 2]

    out = grid.transfer(field(grid), fine)
    torch.testing.assert_close(out, field(fine), rtol=0, atol=1e-12)


def test_transfer_interpolates_inside_occupied_voxels():
    """Within an occupied voxel the transfer is that voxel's trilinear interpolant."""
    grid = SparseGrid.full((2, 2, 2))
    values = torch.rand(
        grid.num_vertices, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    fine = grid.resample((4, 4, 4))
    out = grid.transfer(values, fine)
    # the fine vertex at the centre of the coarse voxel (0, 0, 0) is fine lattice (1, 1, 1)
    centre = int(fine.find_vertices(torch.tensor([1, 1, 1])))
    corners = grid.voxel_corners()[0].long()
    torch.testing.assert_close(out[centre], values[corners].mean())
    # coarse vertices keep their values
    same = fine.find_vertices(grid.vertex_coords() * 2)
    torch.testing.assert_close(out[same], values)


def test_transfer_after_dilation_extrapolates_linearly():
    grid = random_sparse_grid((6, 6, 6), 0.1, seed=10)
    grown = grid.dilate(2)
    p = grid.vertex_positions(torch.float64)
    out = grid.transfer(p.sum(-1), grown)
    torch.testing.assert_close(
        out, grown.vertex_positions(torch.float64).sum(-1), atol=1e-12, rtol=0
    )


def test_transfer_is_differentiable():
    grid = SparseGrid.full((2, 2, 2))
    values = torch.rand(grid.num_vertices, dtype=torch.float64, requires_grad=True)
    fine = grid.resample((3, 3, 3))
    assert torch.autograd.gradcheck(lambda v: grid.transfer(v, fine), (values,))


def test_memory_estimate_and_2048_budget():
    """The grid's bytes follow `estimate_nbytes`; a 2048^3 grid with 1% of its voxels in a
    surface band (the training's case: a shell of ~13 voxels) stays far under 4 GB."""
    n = 96
    grid = band_grid(n, lambda p: sphere_sdf(p, 0.35), width=6.5 / n)
    assert grid.nbytes == estimate_nbytes(grid.shape, grid.num_voxels, grid.num_vertices)
    ratio = grid.num_vertices / grid.num_voxels  # vertices per voxel of a 13-voxel band
    assert ratio < 1.3
    num_voxels = int(0.01 * 2048**3)
    estimate = estimate_nbytes((2048,) * 3, num_voxels, math.ceil(ratio * num_voxels))
    assert estimate < 2.0e9
    # worst case (isolated voxels, 8 vertices each) is stated in the README: ~6.2 GB
