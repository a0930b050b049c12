"""extract_shells (reference backend): geometry, topology, ownership, ordering, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from mc_helpers import (
    assert_closed_oriented_manifold,
    band_grid,
    directed_edges,
    euler_characteristic,
    mesh_stats,
    random_sparse_grid,
    smooth_random_field,
    sphere_sdf,
    torus_sdf,
)

from slang_marching_cubes import SparseGrid, extract_shells, interpolate_vertices

SPHERE = (lambda p: sphere_sdf(p, 0.3), 4 * math.pi * 0.3**2, 4 / 3 * math.pi * 0.3**3, 2)
TORUS = (torus_sdf, 4 * math.pi**2 * 0.25 * 0.1, 2 * math.pi**2 * 0.25 * 0.1**2, 0)

# relative error bounds (area, volume) per resolution; measured errors are about half of these
# (sphere 64: 8.5e-4 / 1.6e-3, 128: 2.1e-4 / 4.1e-4; torus 64: 1.4e-3 / 5.1e-3,
# 128: 3.5e-4 / 1.3e-3), i.e. second-order convergence
TOLERANCES = {
    ("sphere", 64): (2e-3, 3e-3),
    ("sphere", 128): (5e-4, 1e-3),
    ("torus", 64): (3e-3, 1e-2),
    ("torus", 128): (1e-3, 3e-3),
}


@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize("shape_name", ["sphere", "torus"])
def test_area_volume_and_topology_converge(shape_name, n):
    fn, area, volume, chi = SPHERE if shape_name == "sphere" else TORUS
    grid = band_grid(n, fn, 3.0 / n)
    sdf = fn(grid.vertex_positions(torch.float64))
    shells = extract_shells(grid, sdf, None, [0.0])
    a, v = mesh_stats(shells.positions, shells.faces)
    tol_area, tol_volume = TOLERANCES[(shape_name, n)]
    assert abs(a / area - 1) < tol_area
    # the signed volume is positive: normals point outward, toward increasing sdf
    assert abs(v / volume - 1) < tol_volume
    assert_closed_oriented_manifold(shells.faces, shells.positions.shape[0])
    assert euler_characteristic(shells.faces, shells.positions.shape[0]) == chi


def test_several_levels_are_independent_nested_shells():
    grid = band_grid(48, lambda p: sphere_sdf(p, 0.3), 6.0 / 48)
    sdf = sphere_sdf(grid.vertex_positions(torch.float64), 0.3)
    levels = [0.04, 0.0, -0.05]
    shells = extract_shells(grid, sdf, None, levels)
    assert shells.vertex_offsets.tolist()[0] == 0 and shells.vertex_offsets.device.type == "cpu"
    assert shells.face_offsets.shape == (4,) and shells.vertex_offsets.dtype == torch.int64
    for level, value in enumerate(levels):
        pos, faces = shells.shell(level)
        v0 = int(shells.vertex_offsets[level])
        f0, f1 = (int(x) for x in shells.face_offsets[level : level + 2])
        assert int(shells.faces[f0:f1].min()) >= v0 and int(shells.faces[f0:f1].max()) < v0 + len(
            pos
        )
        assert_closed_oriented_manifold(faces, pos.shape[0])
        r = 0.3 + value
        _, vol = mesh_stats(pos, faces)
        assert abs(vol / (4 / 3 * math.pi * r**3) - 1) < 1e-2
        radii = (pos.double() - 0.5).norm(dim=-1)
        assert float((radii - r).abs().max()) < 2e-3
        sl = slice(v0, v0 + len(pos))
        torch.testing.assert_close(shells.sdf[sl], torch.full_like(shells.sdf[sl], value))


def _crossing_edges_of_occupied_voxels(grid, sdf, levels):
    """Brute force: set of (level, a, b) over every sign-changing edge of an occupied voxel."""
    corners = grid.voxel_corners().long()
    out = set()
    pairs = [(lo, lo | bit) for bit in (4, 2, 1) for lo in range(8) if not lo & bit]
    for li, lv in enumerate(levels):
        for lo, hi in pairs:
            a, b = corners[:, lo], corners[:, hi]
            cross = (sdf[a] >= lv) != (sdf[b] >= lv)
            out |= {(li, x, y) for x, y in zip(a[cross].tolist(), b[cross].tolist(), strict=True)}
    return out


def _assert_crack_free(grid: SparseGrid, shells) -> None:
    """Edges are used once per direction at most; an edge used by one face only must lie on a
    cube face between an occupied voxel and an empty one (or the grid's outside)."""
    faces = shells.faces.long()
    d = directed_edges(faces)
    nv = shells.positions.shape[0]
    key = d[:, 0] * nv + d[:, 1]
    assert torch.unique(key).numel() == key.numel(), "a directed edge occurs twice"
    open_edge = ~torch.isin(d[:, 1] * nv + d[:, 0], key)
    if not bool(open_edge.any()):
        return
    face_of = torch.arange(len(faces)).repeat(3)[open_edge]
    vox = grid.voxel_coords()[shells.face_voxels.long()[face_of]]  # [E, 3]
    lat = grid.vertex_coords()
    ends = shells.edges.long()[d[open_edge]]  # [E, 2 mesh vertices, 2 grid ends]
    pts = lat[ends.reshape(-1, 4)].reshape(-1, 4, 3)
    on_empty_face = torch.zeros(len(vox), dtype=torch.bool)
    for axis in range(3):
        for side in (0, 1):
            on = (pts[:, :, axis] == (vox[:, axis] + side)[:, None]).all(1)
            nb = vox.clone()
            nb[:, axis] += 2 * side - 1
            on_empty_face |= on & (grid.find_voxels(nb) < 0)
    assert bool(on_empty_face.all()), "an open edge inside the occupied region (a crack)"


@pytest.mark.parametrize("seed", range(6))
def test_random_fields_on_random_sparse_grids(seed):
    shape = [(9, 7, 8), (12, 5, 10), (16, 16, 16)][seed % 3]
    grid = random_sparse_grid(shape, [0.3, 0.6, 0.9][seed % 3], seed=seed)
    points = grid.vertex_positions(torch.float64)
    sdf = smooth_random_field(points, seed)
    levels = [0.05, 0.0, -0.04]
    attrs = torch.randn(grid.num_vertices, 3, dtype=torch.float64)
    shells = extract_shells(grid, sdf, attrs, levels)
    # exactly one vertex per crossing edge of an occupied voxel and level, and nothing else
    got = [
        (li, a, b)
        for li in range(3)
        for a, b in shells.edges[
            int(shells.vertex_offsets[li]) : int(shells.vertex_offsets[li + 1])
        ].tolist()
    ]
    assert len(got) == len(set(got))
    assert set(got) == _crossing_edges_of_occupied_voxels(grid, sdf, levels)
    assert torch.unique(shells.faces.long()).numel() == shells.positions.shape[0]
    _assert_crack_free(grid, shells)
    # vertices lie on their edges at t, and interpolate the attributes
    a, b = shells.edges.long().T
    pos = grid.vertex_positions(torch.float64)
    expect = pos[a] + shells.t[:, None] * (pos[b] - pos[a])
    torch.testing.assert_close(shells.positions.double(), expect, atol=1e-6, rtol=0)
    torch.testing.assert_close(shells.attributes, torch.lerp(attrs[a], attrs[b], shells.t[:, None]))
    lv = torch.tensor(levels, dtype=torch.float64)
    level_of = torch.repeat_interleave(torch.arange(3), torch.diff(shells.vertex_offsets))
    torch.testing.assert_close(shells.sdf, lv[level_of])
    # orientation: face normals agree with the gradient of the voxel's trilinear interpolant
    p = shells.positions.double()
    f = shells.faces.long()
    normal = torch.linalg.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
    vox = shells.face_voxels.long()
    u = (p[f].mean(1) * torch.tensor(shape) - grid.voxel_coords()[vox]).requires_grad_()
    corner_values = sdf[grid.voxel_corners().long()[vox]]  # [M, 8]
    trilinear = 0
    for c in range(8):
        off = torch.tensor([(c >> 2) & 1, (c >> 1) & 1, c & 1]).bool()
        trilinear = trilinear + corner_values[:, c] * torch.where(off, u, 1 - u).prod(-1)
    (grad,) = torch.autograd.grad(trilinear.sum(), u)
    agree = (normal * grad * torch.tensor(shape)).sum(-1) > 0  # world-space gradient
    area = normal.norm(dim=-1)
    # tiny slivers near saddles may tilt the wrong way; by area, (nearly) all agree
    assert float(area[agree].sum() / area.sum()) > 0.99


def test_closed_surface_inside_random_occupancy_is_watertight():
    """A sphere entirely inside the occupied region is closed even with holes elsewhere."""
    n = 24
    grid = band_grid(n, lambda p: sphere_sdf(p, 0.3), 2.5 / n)
    extra = random_sparse_grid((n, n, n), 0.2, seed=3)
    grid = SparseGrid.from_ids(grid.shape, torch.cat((grid.voxels, extra.voxels)))
    sdf = sphere_sdf(grid.vertex_positions(torch.float64), 0.3)
    shells = extract_shells(grid, sdf, None, [0.0])
    assert_closed_oriented_manifold(shells.faces, shells.positions.shape[0])
    assert euler_characteristic(shells.faces, shells.positions.shape[0]) == 2


def test_gradcheck_attributes_through_extraction():
    grid = random_sparse_grid((5, 4, 6), 0.7, seed=11)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64), 11)
    attrs = torch.randn(grid.num_vertices, 2, dtype=torch.float64, requires_grad=True)
    levels = [0.02, -0.03]
    assert extract_shells(grid, sdf, attrs, levels).attributes.shape[0] > 0
    assert torch.autograd.gradcheck(
        lambda x: extract_shells(grid, sdf, x, levels).attributes, (attrs,)
    )


def test_gradcheck_vertex_sdf():
    """Vertex sdf = (1-t) s_a + t s_b with t held constant: gradcheck with the extraction's
    (edges, t) fixed, and the extraction's backward equals that function's."""
    grid = random_sparse_grid((5, 4, 6), 0.7, seed=12)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64), 12).requires_grad_()
    shells = extract_shells(grid, sdf, None, [0.02, -0.03])
    assert torch.autograd.gradcheck(
        lambda s: interpolate_vertices(s, shells.edges, shells.t), (sdf,)
    )
    w = torch.randn_like(shells.sdf)
    (grad,) = torch.autograd.grad((shells.sdf * w).sum(), sdf)
    a, b = shells.edges.long().T
    expect = (
        torch.zeros_like(sdf).index_add_(0, a, w * (1 - shells.t)).index_add_(0, b, w * shells.t)
    )
    torch.testing.assert_close(grad, expect)


def test_float32_matches_float64_topology():
    grid = random_sparse_grid((10, 10, 10), 0.8, seed=13)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64), 13)
    s64 = extract_shells(grid, sdf, None, [0.0])
    s32 = extract_shells(grid, sdf.float(), None, [0.0])
    assert torch.equal(s64.faces, s32.faces)
    assert s32.sdf.dtype == torch.float32 and s32.positions.dtype == torch.float32


def test_level_exactly_on_grid_values():
    """Corners equal to the level count as outside (s >= l); meshes stay closed."""
    grid = SparseGrid.full((6, 6, 6))
    p = grid.vertex_positions(torch.float64)
    sdf = torch.round((p - 0.5).abs().amax(-1) * 6) / 6 - 2 / 6  # exact values on the lattice
    shells = extract_shells(grid, sdf, None, [0.0])
    assert_closed_oriented_manifold(shells.faces, shells.positions.shape[0])
    assert euler_characteristic(shells.faces, shells.positions.shape[0]) == 2
