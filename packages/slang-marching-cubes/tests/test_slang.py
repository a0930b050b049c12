"""Slang backend == reference (values, order, gradients) on large grids, and what only the Slang
backend does, on a GPU (marker ``cuda``). What every backend must do, Slang included, is in
test_backends.py (the ``backend`` fixture)."""

from __future__ import annotations

import pytest
import torch
from mc_helpers import (
    band_grid,
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
    _assert_same_gradients(got, ref, sdf, attrs)


def _assert_same_gradients(got, want, sdf, attrs, atol=1e-5):
    """Gradients to `sdf` and `attrs` of two extractions, with the same random cotangents."""
    w_sdf, w_attr = torch.randn_like(want.sdf), torch.randn_like(want.attributes)
    g_want = torch.autograd.grad(
        (want.sdf * w_sdf).sum() + (want.attributes * w_attr).sum(), (sdf, attrs)
    )
    g_got = torch.autograd.grad(
        (got.sdf * w_sdf).sum() + (got.attributes * w_attr).sum(), (sdf, attrs)
    )
    _assert_close("grad sdf", g_got[0], g_want[0], atol)
    _assert_close("grad attributes", g_got[1], g_want[1], atol)


def test_explicit_slang_with_float64_raises_and_auto_runs_the_reference():
    grid = _grid((8, 8, 8), 0.9, 7)
    sdf = _field(grid, 0.9, 7).double()
    with pytest.raises(ValueError, match=r"backend='slang' needs float32 sdf and attributes"):
        extract_shells(grid, sdf, None, [0.0], backend="slang")
    shells = extract_shells(grid, sdf, None, [0.0], backend="auto")
    assert shells.sdf.dtype == torch.float64 and shells.faces.shape[0] > 0


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


def test_slang_grid_builder_of_no_voxels():
    from slang_marching_cubes import _slang

    voxels = torch.zeros(0, dtype=torch.int64, device="cuda")
    rows = torch.zeros(7 * 8 + 1, dtype=torch.int64, device="cuda")
    assert _slang.grid_vertices(voxels, rows, (7, 8, 9)).numel() == 0


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


def test_attributes_beyond_a_tensor_views_4_gib_are_interpolated_by_torch(monkeypatch):
    """Slang tensor views address 4 GiB; larger value arrays (e.g. degree-1 colours of 90M
    corners) are interpolated by the reference ops. Shrinking the limit takes that path on a
    small grid: same values and gradients, and no interpolation kernel is launched."""
    from slang_marching_cubes import _slang

    grid = _grid((40, 33, 61), 0.8, 1)
    sdf = _field(grid, 0.8, 1).requires_grad_()
    attrs = torch.randn(grid.num_vertices, 12, device="cuda", requires_grad=True)
    want = extract_shells(grid, sdf, attrs, _levels(3), backend="slang")
    launched = []
    launch = _slang._MODULE.launch
    monkeypatch.setattr(
        _slang._MODULE,
        "launch",
        lambda name, *a, **k: launched.append(name) or launch(name, *a, **k),
    )
    monkeypatch.setattr(_slang, "_VIEW_BYTES", 4 * attrs.numel())
    got = extract_shells(grid, sdf, attrs, _levels(3), backend="slang")
    assert launched and not [name for name in launched if name.startswith("mc_interpolate")]
    assert torch.equal(got.faces, want.faces)
    for name in ("sdf", "attributes"):
        _assert_close(name, getattr(got, name), getattr(want, name), 1e-6)
    _assert_same_gradients(got, want, sdf, attrs)
