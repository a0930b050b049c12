"""sdf_regularizers: eikonal terms and the two curvature operators."""

from __future__ import annotations

import itertools

import pytest
import torch
from mc_helpers import band_grid, random_sparse_grid, smooth_random_field, sphere_sdf

from slang_marching_cubes import SparseGrid, reference, sdf_regularizers


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


@pytest.mark.parametrize("curvature", ["gradient", "laplacian"])
def test_gradcheck(curvature):
    grid = random_sparse_grid((4, 5, 3), 0.6, seed=2)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64), 2).requires_grad_()
    for name in ("eikonal_pos", "eikonal_neg", "curvature"):
        assert torch.autograd.gradcheck(
            lambda s, name=name: sdf_regularizers(grid, s, curvature=curvature)[name], (sdf,)
        )


def test_eikonal_terms_match_a_loop_over_voxels():
    """Independently: per voxel, the centre gradient of the trilinear interpolant is the mean
    of the 4 edge differences along each axis times the axis resolution (the original's
    formula); eikonal_pos/neg are the means over voxels of relu(+-(|g| - 1))^2."""
    grid = random_sparse_grid((4, 5, 6), 0.5, seed=4)
    sdf = 3.0 * smooth_random_field(grid.vertex_positions(torch.float64), 4)
    value = {tuple(c): float(sdf[v]) for v, c in enumerate(grid.vertex_coords().tolist())}
    pos, neg = [], []
    for i, j, k in grid.voxel_coords().tolist():
        g = []
        for axis in range(3):
            total = 0.0
            for a, b in itertools.product((0, 1), repeat=2):
                lo = [i, j, k]
                others = [x for x in range(3) if x != axis]
                lo[others[0]] += a
                lo[others[1]] += b
                hi = list(lo)
                hi[axis] += 1
                total += value[tuple(hi)] - value[tuple(lo)]
            g.append(total / 4 * grid.shape[axis])
        norm = sum(x * x for x in g) ** 0.5
        pos.append(max(norm - 1, 0.0) ** 2)
        neg.append(max(1 - norm, 0.0) ** 2)
    reg = sdf_regularizers(grid, sdf)
    assert 0 < sum(pos) and 0 < sum(neg)  # the field has both steep and flat voxels
    torch.testing.assert_close(float(reg["eikonal_pos"]), sum(pos) / len(pos))
    torch.testing.assert_close(float(reg["eikonal_neg"]), sum(neg) / len(neg))


# --- the Laplacian curvature (the original's operator) -------------------------------------


def loop_laplacians(grid: SparseGrid, sdf: torch.Tensor) -> torch.Tensor:
    """An independent, loop-based Laplacian at each voxel's +xyz corner: a lattice point is a
    neighbour when it is a corner of some occupied voxel (looked up in a dense table)."""
    ni, nj, nk = grid.shape
    occupied = grid.to_dense()
    value = {}
    for vid, (i, j, k) in enumerate(grid.vertex_coords().tolist()):
        value[(i, j, k)] = float(sdf[vid])

    def is_vertex(p):
        for d in itertools.product((0, 1), repeat=3):
            v = (p[0] - d[0], p[1] - d[1], p[2] - d[2])
            if 0 <= v[0] < ni and 0 <= v[1] < nj and 0 <= v[2] < nk and bool(occupied[v]):
                return True
        return False

    out = []
    for i, j, k in grid.voxel_coords().tolist():
        c = (i + 1, j + 1, k + 1)
        total = 0.0
        for axis, sign in itertools.product(range(3), (-1, 1)):
            p = list(c)
            p[axis] += sign
            if is_vertex(tuple(p)):
                total += value[tuple(p)] - value[c]
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    "voxels,count",
    [
        ([(0, 0, 0)], 3),
        ([(0, 0, 0), (1, 0, 0)], 4),
        ([(0, 0, 0), (1, 0, 0), (0, 1, 0)], 5),
        ([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], 6),
    ],
)
def test_laplacian_uses_the_neighbours_that_exist(voxels, count):
    """Voxel (0, 0, 0): its +xyz corner c = (1, 1, 1) has the 3 neighbours c - e_a always, and
    c + e_a only when an occupied voxel has it as a corner (here (1,0,0) gives +i, ...)."""
    grid = SparseGrid.from_coords((3, 3, 3), torch.tensor(voxels))
    gen = torch.Generator().manual_seed(count)
    sdf = torch.randn(grid.num_vertices, generator=gen, dtype=torch.float64)
    lattice = grid.vertex_coords()

    def at(i, j, k):
        return sdf[int(grid.find_vertices(torch.tensor([i, j, k])))]

    neighbours = [(0, 1, 1), (1, 0, 1), (1, 1, 0), (2, 1, 1), (1, 2, 1), (1, 1, 2)]
    present = [n for n in neighbours if bool((lattice == torch.tensor(n)).all(-1).any())]
    assert len(present) == count
    expected = sum(at(*n) for n in present) - count * at(1, 1, 1)
    got = reference.corner_laplacians(grid, sdf)
    first = int(grid.find_voxels(torch.tensor([0, 0, 0])))
    torch.testing.assert_close(got[first], expected)
    torch.testing.assert_close(got, loop_laplacians(grid, sdf))
    reg = sdf_regularizers(grid, sdf, curvature="laplacian")
    torch.testing.assert_close(reg["curvature"], got.square().mean())


def test_laplacian_matches_the_loop_on_a_random_sparse_grid():
    grid = random_sparse_grid((5, 6, 4), 0.4, seed=3)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64), 3)
    torch.testing.assert_close(reference.corner_laplacians(grid, sdf), loop_laplacians(grid, sdf))


@pytest.mark.parametrize("shape", [(6, 6, 6), (5, 8, 10)])
def test_laplacian_of_a_quadratic_is_exact_in_grid_units(shape):
    """s = p^T A p / 2: at a corner with all 6 neighbours, L = sum_a h_a^2 A_aa exactly."""
    a = torch.tensor([[2.0, 0.5, -1.0], [0.5, -3.0, 0.25], [-1.0, 0.25, 1.5]], dtype=torch.float64)
    grid = SparseGrid.full(shape)
    p = grid.vertex_positions(torch.float64)
    sdf = 0.5 * ((p @ a) * p).sum(-1)
    laplacian = reference.corner_laplacians(grid, sdf)
    h = 1.0 / torch.tensor(shape, dtype=torch.float64)
    interior = (grid.voxel_coords() < torch.tensor(shape) - 1).all(-1)
    expected = float((h.square() * a.diagonal()).sum())
    torch.testing.assert_close(laplacian[interior], torch.full_like(laplacian[interior], expected))
    torch.testing.assert_close(laplacian, loop_laplacians(grid, sdf))


def test_laplacian_of_a_sphere_distance_is_h2_times_2_over_rho():
    """lap |p - c| = 2 / |p - c|: at corners with all 6 neighbours L = h^2 * 2 / rho + O(h^4).

    At the edge of an occupied band a missing neighbour leaves a one-sided, first-order term
    (about ``-h ds/dx_a``), so in a band a few voxels wide the mean is dominated by those and
    falls as ``h^2`` when the grid is refined (the original's operator, unnormalized).
    """
    r = 0.3
    means = []
    for n in (32, 64):
        grid = band_grid(n, lambda q: sphere_sdf(q, r), 2.0 / n)
        positions = grid.vertex_positions(torch.float64)
        sdf = sphere_sdf(positions, r)
        laplacian = reference.corner_laplacians(grid, sdf)
        full = reference._corner_plus_neighbors(grid)[1].all(-1)
        corner = grid.voxel_corners().long()[:, 7]
        rho = (positions[corner] - 0.5).norm(dim=-1)
        expected = 2.0 / rho / n**2
        torch.testing.assert_close(laplacian[full], expected[full], rtol=0.02, atol=0)
        means.append(float(sdf_regularizers(grid, sdf, curvature="laplacian")["curvature"]))
    assert 0.2 < means[1] / means[0] < 0.3


def test_laplacian_penalizes_checkerboard_noise_that_the_gradient_operator_misses():
    grid = SparseGrid.full((6, 6, 6))
    ijk = grid.vertex_coords()
    noise = 1e-3 * ((ijk.sum(-1) % 2) * 2 - 1).double()  # +-1e-3 alternating
    gradient = sdf_regularizers(grid, noise, curvature="gradient")["curvature"]
    laplacian = sdf_regularizers(grid, noise, curvature="laplacian")["curvature"]
    assert float(gradient) < 1e-20
    assert float(laplacian) > (6 * 2e-3) ** 2 * 0.3


def test_curvature_operator_is_checked():
    grid = SparseGrid.full((2, 2, 2))
    with pytest.raises(ValueError, match="curvature must be 'gradient' or 'laplacian'"):
        sdf_regularizers(grid, torch.zeros(grid.num_vertices), curvature="hessian")


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
    tables = grid._reference_tables[1]
    assert tables["corners"].shape == (grid.num_voxels, 8) and "owned" in tables
    assert tables["corners"].dtype == torch.int32
    cached = run(grid, sdf)  # second call: the tables come from the cache
    assert grid._reference_tables[1] is tables
    # Past CACHE_VOXELS only the ownership tables are rebuilt at every call.
    monkeypatch.setattr(reference, "CACHE_VOXELS", 0)
    uncached = SparseGrid(grid.shape, grid.voxels.clone())
    fresh = run(uncached, sdf)
    assert "corners" in uncached._reference_tables[1]
    assert "owned" not in uncached._reference_tables[1]
    for other in (cached, fresh):
        assert torch.equal(first[0], other[0]) and torch.equal(first[1], other[1])
        for name, value in first[2].items():
            assert torch.equal(value, other[2][name])
    # A pruned grid is a new grid with its own tables (never its parent's).
    monkeypatch.setattr(reference, "CACHE_VOXELS", 1 << 21)
    pruned = grid.prune(torch.arange(grid.num_voxels) % 3 != 0)
    run(pruned, sphere_sdf(pruned.vertex_positions()))
    corners = pruned._reference_tables[1]["corners"]
    assert torch.equal(corners.long(), pruned.voxel_corners().long())


@pytest.mark.cuda
@pytest.mark.parametrize("curvature", ["gradient", "laplacian"])
def test_cuda_regularizers_equal_the_cpu_ones(curvature):
    """The same PyTorch code on both devices: float64 values and gradients agree to rounding."""
    grid = band_grid(48, sphere_sdf, 0.1)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64), 5)
    results = []
    for device in ("cpu", "cuda"):
        values = sdf.to(device).requires_grad_()
        reg = sdf_regularizers(grid.to(device), values, curvature=curvature)
        total = reg["eikonal_pos"] + 2 * reg["eikonal_neg"] + 3 * reg["curvature"]
        (grad,) = torch.autograd.grad(total, values)
        results.append(({k: float(v) for k, v in reg.items()}, grad.cpu()))
    (cpu, cpu_grad), (gpu, gpu_grad) = results
    for name in cpu:
        assert gpu[name] == pytest.approx(cpu[name], rel=1e-9, abs=1e-18), name
    scale = float(cpu_grad.abs().max())
    torch.testing.assert_close(gpu_grad, cpu_grad, rtol=1e-9, atol=1e-9 * scale)
