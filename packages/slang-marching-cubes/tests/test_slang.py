"""Slang backend == reference (values, order, gradients), on a GPU. Marker ``cuda``."""

from __future__ import annotations

import math

import pytest
import torch
from mc_helpers import (
    assert_closed_oriented_manifold,
    band_grid,
    euler_characteristic,
    mesh_stats,
    smooth_random_field,
    sphere_sdf,
)

from slang_marching_cubes import SparseGrid, extract_shells

pytestmark = pytest.mark.cuda

CASES = [
    # (shape, occupancy: fraction of random voxels or "band", levels, seed)
    ((17, 23, 9), 0.5, 3, 0),
    ((40, 33, 61), 0.8, 5, 1),
    ((64, 64, 64), 0.3, 5, 2),
    ((128, 128, 128), "band", 5, 3),
    ((256, 256, 256), "band", 5, 4),
]


def _grid(shape, occupancy, seed) -> SparseGrid:
    if occupancy == "band":
        n = shape[0]
        return band_grid(n, lambda p: sphere_sdf(p, 0.3), 4.0 / n).to("cuda")
    gen = torch.Generator(device="cuda").manual_seed(seed)
    occ = torch.rand(shape, generator=gen, device="cuda") < occupancy
    return SparseGrid.from_dense(occ)


def _field(grid: SparseGrid, occupancy, seed) -> torch.Tensor:
    p = grid.vertex_positions(torch.float64)
    if occupancy == "band":
        base = sphere_sdf(p.cpu(), 0.3).to(p.device)
        return (base + 0.01 * smooth_random_field(p.cpu(), seed).to(p.device)).float()
    return smooth_random_field(p.cpu(), seed).to(p.device).float()


def _levels(n: int) -> torch.Tensor:
    return torch.linspace(0.02, -0.03, n, device="cuda")


def _assert_close(name, got, ref, atol):
    diff = (got.detach().double() - ref.detach().double()).abs()
    if diff.numel():
        worst = int(diff.reshape(diff.shape[0], -1).amax(-1).argmax())
        assert float(diff.max()) <= atol, (
            f"{name}: max |diff| {float(diff.max()):.3g} at row {worst}"
        )


@pytest.mark.parametrize("shape,occupancy,num_levels,seed", CASES)
def test_slang_equals_reference(shape, occupancy, num_levels, seed):
    grid = _grid(shape, occupancy, seed)
    sdf = _field(grid, occupancy, seed).requires_grad_()
    attrs = torch.randn(grid.num_vertices, 12, device="cuda", requires_grad=True)
    levels = _levels(num_levels)
    ref = extract_shells(grid, sdf, attrs, levels, backend="reference")
    got = extract_shells(grid, sdf, attrs, levels, backend="slang")
    assert ref.faces.shape[0] > 0
    assert torch.equal(got.vertex_offsets, ref.vertex_offsets)
    assert torch.equal(got.face_offsets, ref.face_offsets)
    # same order by construction: identical triangles, edges and voxels
    assert torch.equal(got.faces, ref.faces)
    assert torch.equal(got.edges, ref.edges)
    assert torch.equal(got.face_voxels, ref.face_voxels)
    for name in ("positions", "t", "sdf", "attributes"):
        _assert_close(name, getattr(got, name), getattr(ref, name), 1e-5)
    assert got.faces.dtype == torch.int32 and got.positions.dtype == torch.float32
    # gradients with random cotangents, per tensor
    w_sdf, w_attr = torch.randn_like(ref.sdf), torch.randn_like(ref.attributes)
    g_ref = torch.autograd.grad(
        (ref.sdf * w_sdf).sum() + (ref.attributes * w_attr).sum(), (sdf, attrs)
    )
    g_got = torch.autograd.grad(
        (got.sdf * w_sdf).sum() + (got.attributes * w_attr).sum(), (sdf, attrs)
    )
    _assert_close("grad sdf", g_got[0], g_ref[0], 1e-5)
    _assert_close("grad attributes", g_got[1], g_ref[1], 1e-5)


@pytest.mark.parametrize("which", ["sdf", "attributes", "sdf without attributes"])
def test_slang_gradient_of_one_output(which):
    """sdf and attributes share one interpolation launch: the gradient of either one alone
    (the other not requiring grad, unused, or absent) equals the reference's."""
    grid = _grid((24, 20, 28), 0.8, 8)
    sdf = _field(grid, 0.8, 8).requires_grad_(which != "attributes")
    attrs = None
    if which != "sdf without attributes":
        attrs = torch.randn(grid.num_vertices, 5, device="cuda")
        attrs.requires_grad_(which == "attributes")
    grads = {}
    for backend in ("reference", "slang"):
        shells = extract_shells(grid, sdf, attrs, _levels(3), backend=backend)
        out, wrt = (shells.attributes, attrs) if which == "attributes" else (shells.sdf, sdf)
        weights = torch.linspace(-1.0, 1.0, out.numel(), device="cuda").reshape(out.shape)
        grads[backend] = torch.autograd.grad((out * weights).sum(), wrt)[0]
    assert grads["reference"].abs().sum() > 0
    _assert_close("grad", grads["slang"], grads["reference"], 1e-5)


def test_slang_matches_reference_on_cpu_for_a_small_grid():
    grid = _grid((11, 12, 13), 0.6, 5)
    sdf = _field(grid, 0.6, 5)
    got = extract_shells(grid, sdf, None, _levels(3), backend="slang")
    cpu = extract_shells(grid.to("cpu"), sdf.cpu(), None, _levels(3).cpu(), backend="reference")
    assert torch.equal(got.faces.cpu(), cpu.faces)
    _assert_close("positions", got.positions.cpu(), cpu.positions, 1e-6)


def test_slang_sphere_is_closed_and_accurate():
    n = 96
    grid = band_grid(n, lambda p: sphere_sdf(p, 0.3), 3.0 / n).to("cuda")
    sdf = sphere_sdf(grid.vertex_positions(torch.float64).cpu(), 0.3).float().cuda()
    shells = extract_shells(grid, sdf, None, [0.0], backend="slang")
    faces, pos = shells.faces.cpu(), shells.positions.cpu()
    assert_closed_oriented_manifold(faces, pos.shape[0])
    assert euler_characteristic(faces, pos.shape[0]) == 2
    area, volume = mesh_stats(pos, faces)
    assert abs(area / (4 * math.pi * 0.09) - 1) < 2e-3
    assert abs(volume / (4 / 3 * math.pi * 0.027) - 1) < 3e-3


def test_slang_empty_and_no_crossing():
    empty = SparseGrid((4, 4, 4), torch.zeros(0, dtype=torch.long, device="cuda"))
    full = SparseGrid.full((5, 6, 7), device="cuda")
    for grid, value in ((empty, 0.0), (full, 1.0)):
        sdf = torch.full((grid.num_vertices,), value, device="cuda")
        attrs = torch.zeros(grid.num_vertices, 4, device="cuda", requires_grad=True)
        shells = extract_shells(grid, sdf, attrs, [0.5, 0.0], backend="slang")
        assert shells.positions.shape == (0, 3) and shells.faces.shape == (0, 3)
        assert shells.faces.dtype == torch.int32 and shells.attributes.shape == (0, 4)
        assert shells.vertex_offsets.tolist() == [0, 0, 0]
        shells.attributes.sum().backward()
    torch.cuda.synchronize()


def test_slang_non_contiguous_inputs():
    grid = _grid((20, 20, 20), 0.7, 6)
    sdf = _field(grid, 0.7, 6)
    wide = torch.stack((sdf, -sdf), dim=1)  # column 0 is a strided view
    attrs = torch.randn(6, grid.num_vertices, device="cuda").T
    ref = extract_shells(grid, sdf, attrs.contiguous(), [0.0], backend="slang")
    got = extract_shells(grid, wide[:, 0], attrs, [0.0], backend="slang")
    assert torch.equal(ref.faces, got.faces)
    torch.testing.assert_close(ref.attributes, got.attributes)


def test_auto_picks_slang_for_float32_cuda():
    grid = _grid((8, 8, 8), 0.9, 7)
    sdf = _field(grid, 0.9, 7)
    a = extract_shells(grid, sdf, None, [0.0])
    b = extract_shells(grid, sdf, None, [0.0], backend="slang")
    assert torch.equal(a.faces, b.faces)


def test_2048_grid_with_one_percent_band_fits_in_4gb():
    """Build a 2048^3 grid whose occupied voxels (1% of all) form a spherical shell, and measure
    the CUDA memory it holds and needs while being built."""
    n = 2048
    r, half = 0.35, 6.4 / n  # ~13-voxel band: ~1% of the grid
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    coords = torch.arange(n, device="cuda", dtype=torch.float32)
    jj, kk = torch.meshgrid(coords, coords, indexing="ij")
    plane = ((jj + 0.5) / n - 0.5) ** 2 + ((kk + 0.5) / n - 0.5) ** 2
    ids = []
    for i in range(n):
        d = torch.sqrt(plane + ((i + 0.5) / n - 0.5) ** 2) - r
        ids.append(torch.nonzero((d.abs() < half).reshape(-1)).reshape(-1) + i * n * n)
    del jj, kk, plane, d
    ids = torch.cat(ids)
    grid = SparseGrid((n, n, n), ids)
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated() - base
    peak = torch.cuda.max_memory_allocated() - base
    fraction = grid.num_voxels / n**3
    print(
        f"2048^3 band: {grid.num_voxels} voxels ({100 * fraction:.2f}%), {grid.num_vertices} "
        f"vertices, grid.nbytes {grid.nbytes / 1e9:.2f} GB, held {held / 1e9:.2f} GB, "
        f"peak while building {peak / 1e9:.2f} GB"
    )
    assert 0.009 < fraction < 0.012
    assert held < 4e9 and peak < 4e9


@pytest.mark.parametrize(
    "shape,fraction", [((7, 1, 9), 0.5), ((33, 20, 41), 0.2), ((64, 64, 64), 0.02)]
)
def test_slang_grid_builder_equals_reference(shape, fraction):
    from slang_marching_cubes import _slang, reference

    gen = torch.Generator(device="cuda").manual_seed(1)
    occ = torch.rand(shape, generator=gen, device="cuda") < fraction
    grid = SparseGrid.from_dense(occ, backend="slang")  # built by the Slang kernels
    assert torch.equal(grid.vertices, reference.grid_vertices(grid.voxels, grid.voxel_rows, shape))
    assert torch.equal(grid.vertices.cpu(), SparseGrid.from_dense(occ.cpu()).vertices)
    empty = grid.voxels[:0]
    assert _slang.grid_vertices(empty, grid.voxel_rows * 0, grid.shape).numel() == 0


def test_reference_grid_on_cuda_launches_no_slang(monkeypatch):
    from slang_marching_cubes import _slang

    def no_slang(*args, **kwargs):
        raise AssertionError("backend='reference' launched a Slang kernel")

    monkeypatch.setattr(_slang._MODULE, "launch", no_slang)
    occ = torch.rand((9, 8, 7), generator=torch.Generator().manual_seed(2)) < 0.5
    grid = SparseGrid.from_dense(occ.cuda(), backend="reference")
    dilated = grid.dilate(1)
    pruned = dilated.prune(torch.ones(dilated.num_voxels, dtype=torch.bool, device="cuda"))
    assert pruned.backend == "reference" and pruned.device.type == "cuda"
    assert torch.equal(grid.vertices.cpu(), SparseGrid.from_dense(occ).vertices)
    sdf = grid.vertex_positions()[:, 0] - 0.5
    shells = extract_shells(grid, sdf, None, [0.0], backend="reference")
    assert shells.faces.shape[0] > 0
