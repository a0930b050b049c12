"""sdf_regularizers: eikonal terms and resolution-independent curvature."""

from __future__ import annotations

import pytest
import torch
from mc_helpers import band_grid, random_sparse_grid, smooth_random_field, sphere_sdf

from slang_marching_cubes import SparseGrid, sdf_regularizers


@pytest.mark.parametrize("shape", [(8, 8, 8), (6, 10, 15)])
def test_plane_distance_has_zero_losses(shape):
    grid = random_sparse_grid(shape, 0.5, seed=1)
    normal = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64)  # unit length
    sdf = grid.vertex_positions(torch.float64) @ normal - 0.2
    reg = sdf_regularizers(grid, sdf)
    for name in ("eikonal_pos", "eikonal_neg", "curvature"):
        assert float(reg[name]) < 1e-20, name


@pytest.mark.parametrize("scale,pos,neg", [(2.0, 1.0, 0.0), (0.5, 0.0, 0.25)])
def test_eikonal_splits_above_and_below_one(scale, pos, neg):
    grid = SparseGrid.full((5, 6, 7))
    sdf = scale * grid.vertex_positions(torch.float64)[:, 1]
    reg = sdf_regularizers(grid, sdf)
    torch.testing.assert_close(float(reg["eikonal_pos"]), pos)
    torch.testing.assert_close(float(reg["eikonal_neg"]), neg)


@pytest.mark.parametrize("n", [32, 64])
def test_sphere_distance_eikonal_near_zero_and_curvature_resolution_independent(n):
    r = 0.3
    grid = band_grid(n, lambda p: sphere_sdf(p, r), 2.0 / n)
    sdf = sphere_sdf(grid.vertex_positions(torch.float64), r)
    reg = sdf_regularizers(grid, sdf)
    # the centre gradient of the trilinear interpolant is 1 - O((h/r)^2) in norm
    assert float(reg["eikonal_pos"]) < 1e-12
    assert float(reg["eikonal_neg"]) < 0.1 * (1 / (n * r)) ** 4
    # |H|_F^2 / 3 = 2 / (3 r^2) for the distance to a sphere; a thin band favours the pairs
    # along the surface a little (a bias set by the band width in voxels, not by n)
    torch.testing.assert_close(float(reg["curvature"]), 2 / (3 * r**2), rtol=0.05, atol=0)


@pytest.mark.parametrize("n", [6, 12])
def test_curvature_of_a_quadratic_is_exact_at_any_resolution(n):
    """s = p^T A p / 2 has Hessian A: the centre gradients differ by exactly A h e_a, so the
    curvature is |A|_F^2 / 3 on a dense cubic grid, whatever n."""
    a = torch.tensor([[2.0, 0.5, -1.0], [0.5, -3.0, 0.25], [-1.0, 0.25, 1.5]], dtype=torch.float64)
    grid = SparseGrid.full((n, n, n))
    p = grid.vertex_positions(torch.float64)
    sdf = 0.5 * ((p @ a) * p).sum(-1)
    reg = sdf_regularizers(grid, sdf)
    torch.testing.assert_close(float(reg["curvature"]), float(a.square().sum()) / 3)


def test_gradcheck():
    grid = random_sparse_grid((4, 5, 3), 0.6, seed=2)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64), 2).requires_grad_()
    for name in ("eikonal_pos", "eikonal_neg", "curvature"):
        assert torch.autograd.gradcheck(
            lambda s, name=name: sdf_regularizers(grid, s)[name], (sdf,)
        )


def test_empty_grid():
    grid = SparseGrid((3, 3, 3), torch.zeros(0, dtype=torch.long))
    sdf = torch.zeros(0, requires_grad=True)
    reg = sdf_regularizers(grid, sdf)
    assert all(float(v.detach()) == 0 for v in reg.values())
    sum(reg.values()).backward()


def test_reference_tables_are_cached_per_grid_and_match_fresh_ones(monkeypatch):
    from slang_marching_cubes import extract_shells, reference

    grid = band_grid(12, sphere_sdf, 0.15)
    sdf = sphere_sdf(grid.vertex_positions())

    def run(g, values):
        shells = extract_shells(g, values, None, [0.02, 0.0], backend="reference")
        return shells.faces, shells.positions, sdf_regularizers(g, values)

    first = run(grid, sdf)
    assert grid._reference_tables[1]["corners"].shape == (grid.num_voxels, 8)
    cached = run(grid, sdf)  # second call: the tables come from the cache
    monkeypatch.setattr(reference, "CACHE_VOXELS", 0)
    uncached = SparseGrid(grid.shape, grid.voxels.clone())
    fresh = run(uncached, sdf)
    assert not hasattr(uncached, "_reference_tables")
    for other in (cached, fresh):
        assert torch.equal(first[0], other[0]) and torch.equal(first[1], other[1])
        for name, value in first[2].items():
            assert torch.equal(value, other[2][name])
    # A pruned grid is a new grid with its own tables (never its parent's).
    monkeypatch.setattr(reference, "CACHE_VOXELS", 1 << 21)
    pruned = grid.prune(torch.arange(grid.num_voxels) % 3 != 0)
    run(pruned, sphere_sdf(pruned.vertex_positions()))
    corners = pruned._reference_tables[1]["corners"]
    assert torch.equal(corners, pruned.voxel_corners().long())
