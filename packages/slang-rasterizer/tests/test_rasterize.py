"""Rasterization on the reference: coverage, ownership of shared edges, depth, culling."""

import math

import numpy as np
import pytest
import torch

import slang_rasterizer as sr
from slang_rasterizer import reference
from slang_rasterizer.shapes import icosphere, orbit_cameras, shell_mesh


def pinhole(h, w, f=1.0, cx=0.0, cy=0.0, world_to_camera=None):
    e = torch.eye(4)[None] if world_to_camera is None else world_to_camera[None]
    k = torch.tensor([[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]])
    return sr.Cameras(e, k, (h, w))


def unproject(pixels, z, f=1.0, cx=0.0, cy=0.0):
    """Camera-space points at depth z that project to the given pixel coordinates (u, v)."""
    pixels = torch.as_tensor(pixels, dtype=torch.float64)
    z = torch.as_tensor(z, dtype=torch.float64).expand(pixels.shape[0])
    x = (pixels[:, 0] - cx) / f * z
    y = (pixels[:, 1] - cy) / f * z
    return torch.stack([x, y, z], 1).float()


def single(p, f):
    return sr.ShellMesh(
        torch.as_tensor(p, dtype=torch.float32),
        torch.as_tensor(f, dtype=torch.int32),
        torch.tensor([0, len(f)]),
    )


def coverage_count(cameras, mesh, near=0.01, cull=True):
    """How many faces cover each pixel centre (ignoring depth): int64 [B, H, W]."""
    h, w = cameras.image_size
    points = reference.camera_points(cameras, mesh.positions)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    out = []
    for b in range(cameras.batch_size):
        k = cameras.intrinsics[b]
        setup = reference.setup_faces(points[b], mesh.faces.long(), k, (h, w), near, cull)
        rx, ry = reference._pixel_rays(k, ys.reshape(-1), xs.reshape(-1))
        ids = torch.nonzero(setup["valid"])[:, 0]
        inside, *_ = reference.hit_test(setup["normals"][ids], setup["det"][ids], rx, ry)
        out.append(inside.sum(0).reshape(h, w))
    return torch.stack(out)


def inside_numpy(tri, h, w):
    """Pixel centres strictly inside a 2D triangle (float64 NumPy): bool [H, W]."""
    tri = np.asarray(tri, dtype=np.float64)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    signs = []
    for i in range(3):
        a, b = tri[i], tri[(i + 1) % 3]
        signs.append((b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]))
    signs = np.stack(signs)
    return (signs > 0).all(0) | (signs < 0).all(0)


def test_single_triangle_matches_analytic_coverage_and_barycentrics():
    tri2d = [(2.0, 3.0), (6.2, 15.7), (17.3, 5.1)]  # no pixel centre on an edge
    cams = pinhole(20, 24, f=16.0, cx=12.0, cy=10.0)
    mesh = single(unproject(tri2d, 2.0, 16.0, 12.0, 10.0), [[0, 1, 2]])
    frags = sr.rasterize(cams, mesh, cull_backfaces=False)
    expected = inside_numpy(tri2d, 20, 24)
    hit = frags.hit[0, 0].numpy()
    np.testing.assert_array_equal(hit, expected)
    # Constant depth: perspective-correct barycentrics are the affine screen ones.
    ys, xs = np.nonzero(expected)
    t = np.asarray(tri2d)
    m = np.array([[t[1, 0] - t[0, 0], t[2, 0] - t[0, 0]], [t[1, 1] - t[0, 1], t[2, 1] - t[0, 1]]])
    rhs = np.stack([xs + 0.5 - t[0, 0], ys + 0.5 - t[0, 1]])
    l12 = np.linalg.solve(m, rhs).T
    got = frags.bary[0, 0, ys, xs].numpy()
    np.testing.assert_allclose(got, l12, atol=2e-5)
    assert (frags.bary[0, 0][~frags.hit[0, 0]] == 0).all()


def test_tilted_triangle_barycentrics_are_perspective_correct():
    p = torch.tensor([[-1.0, -0.8, 2.0], [1.2, -0.5, 5.0], [0.1, 1.0, 3.0]])
    cams = pinhole(40, 40, f=20.0, cx=20.0, cy=20.0)
    frags = sr.rasterize(cams, single(p, [[0, 1, 2]]), cull_backfaces=False)
    hit = frags.hit[0, 0]
    assert hit.sum() > 50
    l1, l2 = frags.bary[0, 0][hit].double().unbind(-1)
    l0 = 1 - l1 - l2
    pd = p.double()
    x = l0[:, None] * pd[0] + l1[:, None] * pd[1] + l2[:, None] * pd[2]  # 3D point of the hit
    ys, xs = torch.nonzero(hit, as_tuple=True)
    u = 20.0 * x[:, 0] / x[:, 2] + 20.0
    v = 20.0 * x[:, 1] / x[:, 2] + 20.0
    assert torch.allclose(u, xs.double() + 0.5, atol=1e-3)
    assert torch.allclose(v, ys.double() + 0.5, atol=1e-3)


def test_quad_matches_analytic_coverage():
    x0, x1, y0, y1 = 3.3, 17.8, 2.6, 11.2  # no pixel centre on the border
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    cams = pinhole(16, 22, f=8.0, cx=11.0, cy=8.0)
    mesh = single(unproject(corners, 3.0, 8.0, 11.0, 8.0), [[0, 2, 1], [0, 3, 2]])
    frags = sr.rasterize(cams, mesh, cull_backfaces=False)
    ys, xs = np.mgrid[0:16, 0:22] + 0.5
    expected = (xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)
    np.testing.assert_array_equal(frags.hit[0, 0].numpy(), expected)
    # No pixel centre is covered twice.
    assert (coverage_count(cams, mesh, cull=False)[0].numpy() == expected).all()


def tessellated_plane(n, scale):
    """An (n+1)^2 vertex grid on pixel centres (camera z = scale, f = 1), 2 n^2 triangles."""
    j, i = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    u, v = i.flatten().double() + 2.5, j.flatten().double() + 2.5  # pixel centres
    p = torch.stack([u * scale, v * scale, torch.full_like(u, scale)], 1)
    faces = []
    for r in range(n):
        for c in range(n):
            a, b = r * (n + 1) + c, r * (n + 1) + c + 1
            d, e = a + n + 1, b + n + 1
            faces += [[a, e, b], [a, d, e]] if (r + c) % 2 else [[a, d, b], [b, d, e]]
    return p.float(), torch.tensor(faces)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_tessellated_quad_has_no_holes_and_no_double_hits(scale):
    p, f = tessellated_plane(6, scale)
    mesh = single(p, f)
    cams = pinhole(12, 12)
    count = coverage_count(cams, mesh, cull=False)[0]
    # Pixel centres 2..8 lie in the quad [2.5, 8.5]: inside ones strictly, border ones on edges.
    interior = count[3:8, 3:8]
    assert (interior == 1).all(), interior
    assert count.max() == 1
    # Outer border: the top-left rule owns exactly the top and left border centres.
    assert (count[2, 2:8] == 1).all() and (count[2:8, 2] == 1).all()
    assert (count[8, 3:9] == 0).all() and (count[3:9, 8] == 0).all()
    # Both windings: a flipped mesh owns the same pixels.
    assert torch.equal(coverage_count(cams, single(p, f[:, [0, 2, 1]]), cull=False)[0], count)


def test_fan_around_a_vertex_owns_the_hub_exactly_once():
    # Hub on a pixel centre, rim vertices on pixel centres so spokes pass through centres.
    rim = [(9, 5), (13, 7), (14, 11), (11, 14), (6, 13), (4, 9), (6, 5)]
    pts = [(9.5, 9.5)] + [(x + 0.5, y + 0.5) for x, y in rim]
    p = torch.tensor([[x, y, 1.0] for x, y in pts])
    faces = [[0, 1 + i, 1 + (i + 1) % len(rim)] for i in range(len(rim))]
    cams = pinhole(20, 20)
    for winding in (faces, [[a, c, b] for a, b, c in faces]):
        count = coverage_count(cams, single(p, winding), cull=False)[0]
        assert count[9, 9] == 1
        assert count.max() == 1
        # Every pixel strictly inside the rim polygon is covered exactly once.
        poly = np.array(pts[1:])
        ys, xs = np.mgrid[0:20, 0:20] + 0.5
        inside = np.ones_like(xs, dtype=bool)
        for i in range(len(poly)):
            a, b = poly[i], poly[(i + 1) % len(poly)]
            inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) > 0
        assert inside.sum() > 30
        assert (count.numpy()[inside] == 1).all()


def test_two_overlapping_triangles_nearest_wins_in_both_orders():
    near_tri = unproject([(2, 2), (18, 3), (4, 17)], 2.0, 10.0, 10.0, 10.0)
    far_tri = unproject([(5, 5), (19, 6), (7, 19)], 4.0, 10.0, 10.0, 10.0)
    cams = pinhole(20, 20, f=10.0, cx=10.0, cy=10.0)
    both = inside_numpy([(2, 2), (18, 3), (4, 17)], 20, 20) & inside_numpy(
        [(5, 5), (19, 6), (7, 19)], 20, 20
    )
    assert both.sum() > 10
    for first, second in ((near_tri, far_tri), (far_tri, near_tri)):
        mesh = single(torch.cat([first, second]), [[0, 2, 1], [3, 5, 4]])
        frags = sr.rasterize(cams, mesh, cull_backfaces=False)
        near_id = 0 if first is near_tri else 1
        assert (frags.face_index[0, 0].numpy()[both] == near_id).all()


def test_intersecting_triangles_use_per_pixel_depth():
    # Two big triangles crossing each other along the plane z = 3: the left half of the image
    # sees one, the right half the other (a per-triangle depth would pick one everywhere).
    a = torch.tensor([[-10.0, -10.0, 2.0], [10.0, -10.0, 4.0], [0.0, 10.0, 3.0]])
    b = torch.tensor([[-10.0, -10.0, 4.0], [10.0, -10.0, 2.0], [0.0, 10.0, 3.0]])
    mesh = single(torch.cat([a, b]), [[0, 1, 2], [3, 4, 5]])
    cams = pinhole(8, 16, f=8.0, cx=8.0, cy=4.0)
    fi = sr.rasterize(cams, mesh, cull_backfaces=False).face_index[0, 0]
    assert (fi[:, :8] == 0).all() and (fi[:, 8:] == 1).all()


def test_backface_culling_follows_the_outward_normal():
    p = unproject([(2, 2), (15, 3), (4, 14)], 2.0, 10.0, 10.0, 10.0)
    cams = pinhole(20, 20, f=10.0, cx=10.0, cy=10.0)
    # Normal (v1 - v0) x (v2 - v0) of [0, 2, 1] points toward the camera (-z): front-facing.
    front, back = single(p, [[0, 2, 1]]), single(p, [[0, 1, 2]])
    n = torch.linalg.cross(p[2] - p[0], p[1] - p[0])
    assert n[2] < 0
    assert sr.rasterize(cams, front).hit.sum() > 20
    assert sr.rasterize(cams, back).hit.sum() == 0
    assert sr.rasterize(cams, back, cull_backfaces=False).hit.sum() > 20


def test_near_plane_culls_faces_and_handles_huge_projections():
    cams = pinhole(30, 30, f=15.0, cx=15.0, cy=15.0)
    p = unproject([(3, 3), (27, 4), (5, 26)], 2.0, 15.0, 15.0, 15.0)
    mesh = single(p, [[0, 2, 1]])
    assert sr.rasterize(cams, mesh, near=1.9).hit.sum() > 0
    assert sr.rasterize(cams, mesh, near=2.1).hit.sum() == 0
    behind = single(p * torch.tensor([1.0, 1.0, -1.0]), [[0, 2, 1], [0, 1, 2]])
    assert sr.rasterize(cams, behind, cull_backfaces=False).hit.sum() == 0
    # One vertex at z = 1e-6 projects ~1e7 pixels away; the rest of the face is on screen.
    q = torch.tensor([[-1.0, -1.03, 2.0], [1.0, -1.03, 2.0], [0.0, 10.0, 1e-6]])
    mesh = single(q, [[0, 1, 2]])
    frags = sr.rasterize(cams, mesh, near=1e-7, cull_backfaces=False)
    assert torch.isfinite(frags.bary).all()
    # Expected: the ray of each pixel centre meets the face (float64 ray/triangle test).
    ys, xs = torch.meshgrid(torch.arange(30), torch.arange(30), indexing="ij")
    r = torch.stack([(xs + 0.5 - 15) / 15, (ys + 0.5 - 15) / 15, torch.ones(30, 30)], -1).double()
    qd = q.double()
    e = [torch.einsum("hwk,k->hw", r, torch.linalg.cross(qd[i - 2], qd[i - 1])) for i in range(3)]
    e = torch.stack(e)
    expected = (e > 0).all(0) | (e < 0).all(0)
    assert expected.sum() > 50
    assert torch.equal(frags.hit[0, 0], expected)


def test_triangle_larger_than_the_image_covers_every_pixel():
    p = torch.tensor([[-1e4, -1e4, 5.0], [1e4, -1e4, 5.0], [0.0, 1e4, 5.0]])
    frags = sr.rasterize(pinhole(37, 45, f=30.0, cx=22.5, cy=18.5), single(p, [[0, 2, 1]]))
    assert frags.hit.all()


@pytest.mark.parametrize("cull", [True, False])
def test_icosphere_silhouette_matches_the_projected_disk(cull):
    radius, distance, f, size = 1.0, 4.0, 180.0, 200
    p, faces = icosphere(4, radius, (0.0, 0.0, distance))  # 5120 faces
    mesh = shell_mesh([(p, faces)])
    cams = pinhole(size, size, f=f, cx=size / 2, cy=size / 2)
    frags = sr.rasterize(cams, mesh, cull_backfaces=cull)
    # A sphere seen from distance d on the axis projects to a disk of radius f r / sqrt(d^2-r^2).
    disk = math.pi * (f * radius / math.sqrt(distance**2 - radius**2)) ** 2
    area = frags.hit.sum().item()
    assert abs(area - disk) / disk < 0.01, (area, disk)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    rr = np.hypot(xs - size / 2, ys - size / 2)
    edge = f * radius / math.sqrt(distance**2 - radius**2)
    hit = frags.hit[0, 0].numpy()
    assert hit[rr < edge - 2].all() and not hit[rr > edge + 1].any()
    if cull:  # the front half only: every hit faces the camera
        hits = frags.face_index[frags.hit].long()
        v = p[faces[hits].long()]
        normal = torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        assert ((normal * -v.mean(1)).sum(1) > 0).all()  # toward the camera centre (origin)


def test_nested_shells_and_batches():
    shells = [icosphere(2, r) for r in (1.0, 0.6, 0.3)]
    mesh = shell_mesh(shells)
    cams = orbit_cameras(3, 4.0, (48, 64))
    frags = sr.rasterize(cams, mesh)
    assert frags.face_index.shape == (3, 3, 48, 64) and frags.bary.shape == (3, 3, 48, 64, 2)
    area = frags.hit.sum((2, 3)).float()
    assert (area[:, 0] > area[:, 1]).all() and (area[:, 1] > area[:, 2]).all()
    # The hit face of shell s lies in shell s's face range.
    off = mesh.face_offsets
    for s in range(3):
        ids = frags.face_index[:, s][frags.hit[:, s]]
        assert ((ids >= off[s]) & (ids < off[s + 1])).all()
    # Each camera alone gives the same result.
    for b in range(3):
        one = sr.Cameras(cams.world_to_camera[b : b + 1], cams.intrinsics[b : b + 1], (48, 64))
        assert torch.equal(sr.rasterize(one, mesh).face_index[0], frags.face_index[b])


def brute_force_nearest(cameras, mesh, near=0.01, cull=True):
    """Nearest face per (camera, shell, pixel) from every face at every pixel: int64 [B,S,H,W]."""
    h, w = cameras.image_size
    points = reference.camera_points(cameras, mesh.positions)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    shells = mesh.face_shells()
    out = torch.full((cameras.batch_size, mesh.num_shells, h * w), -1, dtype=torch.long)
    for b in range(cameras.batch_size):
        k = cameras.intrinsics[b]
        setup = reference.setup_faces(points[b], mesh.faces.long(), k, (h, w), near, cull)
        rx, ry = reference._pixel_rays(k, ys.reshape(-1), xs.reshape(-1))
        _, depth, _, _ = reference.hit_test(setup["normals"], setup["det"], rx, ry)
        depth[~setup["valid"]] = math.inf
        for s in range(mesh.num_shells):
            d = torch.where((shells == s)[:, None], depth, math.inf)
            first = d.argmin(0)  # the first (smallest) face id among equal minima
            out[b, s] = torch.where(torch.isfinite(d.min(0).values), first, -1)
    return out.view(cameras.batch_size, mesh.num_shells, h, w)


@pytest.mark.parametrize("pairs, band", [(1 << 20, 1 << 18), (97, 300), (5, 40)])
def test_nearest_hit_does_not_depend_on_chunking(monkeypatch, pairs, band):
    # Duplicated faces tie exactly in depth: the smaller face id must win in every chunking.
    p, f = icosphere(2, 0.5)
    p = p + 0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0))
    mesh = shell_mesh([(p, torch.cat([f, f])), (p * 0.8, f)])
    cams = orbit_cameras(2, 1.6, (24, 30))
    monkeypatch.setattr(reference, "_PAIRS", pairs)
    monkeypatch.setattr(reference, "_BAND", band)
    frags = sr.rasterize(cams, mesh, backend="reference")
    expected = brute_force_nearest(cams, mesh)
    assert (expected >= 0).sum() > 500
    assert torch.equal(frags.face_index.long(), expected)
    assert (frags.face_index[:, 0][frags.hit[:, 0]] < f.shape[0]).all()  # first copy wins
