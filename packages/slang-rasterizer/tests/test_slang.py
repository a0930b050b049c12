"""Slang backend == reference (values and gradients) on large scenes, and what only the Slang
backend does. GPU only (marker ``cuda``). What every backend must do, Slang included, is in
test_backends.py (the ``backend`` fixture).

Hit decisions can differ between the backends on pixel centres within float rounding of an edge
or where two faces of one shell are at equal depth; the comparisons therefore allow a tiny
fraction of differing pixels and report it, and compare everything else tightly.
"""

import math

import pytest
import torch
from raster_helpers import report

import slang_rasterizer as sr
from slang_rasterizer.shapes import icosphere, orbit_cameras, shell_mesh

pytestmark = pytest.mark.cuda

DEV = "cuda"


def perturbed_shells(subdivisions, radii, seed=0, noise=0.01):
    """Nested noisy icospheres (closed, outward-oriented), outermost first."""
    g = torch.Generator().manual_seed(seed)
    shells = []
    for r in radii:
        p, f = icosphere(subdivisions, r)
        p = p * (1 + noise * torch.rand(p.shape[0], 1, generator=g))
        shells.append((p, f))
    return shells


def triangle_soup(count, size, seed=0):
    """Random small triangles in [-1, 1]^3, random orientation (overlapping, intersecting)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(count, 1, 3, generator=g) * 2 - 1
    p = (centers + size * torch.randn(count, 3, 3, generator=g)).reshape(-1, 3)
    return p, torch.arange(3 * count).view(count, 3)


def attributes(mesh, degree=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = mesh.positions.shape[0]
    levels = torch.linspace(0.008, -0.008, mesh.num_shells)
    counts = []
    faces = mesh.faces.cpu().long()
    off = mesh.face_offsets.cpu()
    shell_of_vertex = torch.zeros(n, dtype=torch.long)
    for s in range(mesh.num_shells):
        shell_of_vertex[faces[off[s] : off[s + 1]].flatten()] = s
        counts.append(int(off[s + 1] - off[s]))
    sdf = levels[shell_of_vertex] + 0.004 * torch.randn(n, generator=g)
    sh = 0.3 * torch.randn(n, (degree + 1) ** 2, 3, generator=g)
    return sdf.to(DEV), sh.to(DEV)


def run(backend, cams, mesh, sdf, sh, bg, **kw):
    sdf = sdf.clone().requires_grad_()
    sh = sh.clone().requires_grad_()
    bg = bg.clone().requires_grad_()
    image, alpha = sr.render(cams, mesh, sdf, sh, 200.0, bg, backend=backend, **kw)
    g = torch.Generator(device=DEV).manual_seed(3)
    w1 = torch.randn(image.shape, generator=g, device=DEV)
    w2 = torch.randn(alpha.shape, generator=g, device=DEV)
    ((image * w1).sum() + (alpha * w2).sum()).backward()
    return [image.detach(), alpha.detach(), sdf.grad, sh.grad, bg.grad]


def compare_renders(got, want, label, max_bad=1e-4, grad_rel=1e-3):
    names = ["image", "alpha", "grad sdf", "grad sh", "grad background"]
    for a, b, name in zip(got[:2], want[:2], names[:2], strict=True):
        report(a, b, f"{label} {name}", atol=1e-4, max_bad_fraction=max_bad)
    for a, b, name in zip(got[2:], want[2:], names[2:], strict=True):
        scale = b.abs().max().item()
        rel = report(a, b, f"{label} {name}", atol=1e-3 * scale, max_bad_fraction=10 * max_bad)
        assert rel < grad_rel, f"{label} {name}: relative L2 error {rel}"


def test_explicit_slang_with_float64_raises_and_auto_runs_the_reference():
    mesh = shell_mesh(perturbed_shells(2, [1.0]), device=DEV)
    cams = orbit_cameras(1, 3.0, (16, 16), device=DEV)
    n = mesh.positions.shape[0]
    sdf = torch.zeros(n, dtype=torch.float64, device=DEV)
    sh = torch.zeros(n, 4, 3, dtype=torch.float64, device=DEV)
    bg = torch.ones(3, dtype=torch.float64, device=DEV)
    with pytest.raises(ValueError, match=r"backend='slang' needs float32 sdf and sh, got float64"):
        sr.render(cams, mesh, sdf, sh, 100.0, bg, backend="slang")
    frags = sr.rasterize(cams, mesh, backend="slang")
    with pytest.raises(ValueError, match=r"backend='slang' needs float32 attributes, got float64"):
        sr.interpolate(sdf, mesh.faces, frags, backend="slang")
    image, _ = sr.render(cams, mesh, sdf, sh, 100.0, bg, backend="auto")
    assert image.dtype == torch.float64 and image.device.type == "cuda"


# --- rasterization -------------------------------------------------------------------------


@pytest.mark.parametrize("cull", [True, False])
def test_rasterize_parity_random_soup_and_shells(cull):
    soup = triangle_soup(20000, 0.03, seed=1)
    shells = perturbed_shells(4, [1.0, 0.7]) + [soup]
    mesh = shell_mesh(shells, device=DEV)
    cams = orbit_cameras(3, 3.0, (150, 170), device=DEV)
    ref = sr.rasterize(cams, mesh, cull_backfaces=cull, backend="reference")
    got = sr.rasterize(cams, mesh, cull_backfaces=cull, backend="slang")
    same = got.face_index == ref.face_index
    fraction = 1 - same.float().mean().item()
    print(f"rasterize cull={cull}: differing hits {fraction:.3g}")
    assert fraction < 1e-4
    # Nearly edge-on soup faces have ill-conditioned barycentrics (E / sum E with a tiny sum).
    report(got.bary[same], ref.bary[same], "bary", atol=1e-4, max_bad_fraction=1e-4)


def test_more_than_16_shells_explicit():
    shells = [icosphere(1, 1.0 - 0.04 * i) for i in range(18)]
    mesh = shell_mesh(shells, device=DEV)
    cams = orbit_cameras(1, 3.0, (40, 40), device=DEV)
    ref = sr.rasterize(cams, mesh, backend="reference")
    got = sr.rasterize(cams, mesh, backend="slang")
    assert (got.face_index != ref.face_index).float().mean() < 1e-3


# --- render ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ssaa", [1, 2])
@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_render_parity_mid_size_exact(mode, ssaa):
    mesh = shell_mesh(perturbed_shells(5, [1.0, 0.8, 0.6]), device=DEV)  # 61k faces
    cams = orbit_cameras(2, 3.0, (200, 240), device=DEV)
    sdf, sh = attributes(mesh)
    bg = torch.rand(2, 3, 200, 240, device=DEV)
    want = run("reference", cams, mesh, sdf, sh, bg, mode=mode, ssaa=ssaa)
    got = run("slang", cams, mesh, sdf, sh, bg, mode=mode, ssaa=ssaa)
    compare_renders(got, want, f"mid {mode} ssaa={ssaa}")


def test_render_surface_mode_parity():
    mesh = shell_mesh(perturbed_shells(4, [1.0]), device=DEV)
    cams = orbit_cameras(2, 3.0, (100, 100), device=DEV)
    sdf = torch.full((mesh.positions.shape[0],), -1e8, device=DEV)
    _, sh = attributes(mesh)
    bg = torch.ones(3, device=DEV)
    for mode in ("fused", "explicit"):
        want = run("reference", cams, mesh, sdf, sh, bg, mode=mode, alpha_max=1.0)
        got = run("slang", cams, mesh, sdf, sh, bg, mode=mode, alpha_max=1.0)
        assert all(torch.isfinite(t).all() for t in got)
        compare_renders(got, want, f"surface {mode}")


def crop(cams, x0, y0, size, ssaa):
    """Cameras seeing the size x size window at (x0, y0) of the original images."""
    k = cams.intrinsics.clone()
    k[:, 0, 2] -= x0
    k[:, 1, 2] -= y0
    return sr.Cameras(cams.world_to_camera, k, (size, size))


@pytest.mark.slow
@pytest.mark.parametrize("ssaa", [1, 3])
def test_render_parity_1m_faces(ssaa):
    # ~1M faces: 3 noisy nested icospheres (3 x 327k faces) + 40k random soup faces.
    shells = perturbed_shells(7, [0.9, 0.7, 0.5], noise=0.005) + [triangle_soup(40000, 0.01)]
    mesh = shell_mesh(shells, device=DEV)
    assert mesh.faces.shape[0] > 10**6
    cams = orbit_cameras(4, 2.5, (800, 800), device=DEV)
    sdf, sh = attributes(mesh)
    bg = torch.rand(3, device=DEV)
    fused = run("slang", cams, mesh, sdf, sh, bg, mode="fused", ssaa=ssaa)
    explicit = run("slang", cams, mesh, sdf, sh, bg, mode="explicit", ssaa=ssaa)
    report(fused[0], explicit[0], f"1M ssaa={ssaa} fused vs explicit image", atol=1e-4)
    for a, b, name in zip(fused[2:], explicit[2:], ["sdf", "sh", "bg"], strict=True):
        rel = report(a, b, f"1M ssaa={ssaa} fused vs explicit grad {name}", atol=math.inf)
        assert rel < 1e-3
    # Exact comparison with the reference on windows (a window is a camera with shifted cx, cy).
    for x0, y0 in ((300, 300), (380, 200)):
        window = crop(cams, x0, y0, 64, ssaa)
        bgw = bg
        want = run("reference", window, mesh, sdf, sh, bgw, mode="explicit", ssaa=ssaa)
        got = run("slang", window, mesh, sdf, sh, bgw, mode="fused", ssaa=ssaa)
        compare_renders(got, want, f"1M ssaa={ssaa} window {x0},{y0}", max_bad=2e-3)
        full = fused[0][:, :, y0 : y0 + 64, x0 : x0 + 64]
        report(
            got[0], full, f"1M ssaa={ssaa} window vs full image", atol=1e-4, max_bad_fraction=1e-3
        )


@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_a_batch_beyond_a_tensor_views_4_gib_is_rendered_in_slices(mode, monkeypatch):
    """Slang tensor views address 4 GiB; larger batches are split over cameras (then halved
    while the sort keys overflow). Shrinking the limit splits a small batch the same way: the
    result equals one launch, values and gradients."""
    from slang_rasterizer import _slang

    mesh = shell_mesh(perturbed_shells(3, [1.0, 0.7]), device=DEV)
    cams = orbit_cameras(5, 3.0, (64, 80), device=DEV)
    sdf, sh = attributes(mesh)
    bg = torch.rand(5, 3, 64, 80, device=DEV)
    want = run("slang", cams, mesh, sdf, sh, bg, mode=mode, ssaa=2)
    calls = []
    original = _slang._render_slice
    monkeypatch.setattr(
        _slang, "_render_slice", lambda hi, *a: calls.append(hi.batch_size) or original(hi, *a)
    )
    per_camera = _slang.bytes_per_camera(
        mesh.positions.shape[0], mesh.faces.shape[0], mesh.num_shells, (128, 160), mode
    )
    monkeypatch.setattr(_slang, "_VIEW_BYTES", 2 * per_camera + 1)  # 2 cameras per launch
    got = run("slang", cams, mesh, sdf, sh, bg, mode=mode, ssaa=2)
    assert calls == [2, 2, 1]
    compare_renders(got, want, f"sliced {mode}", max_bad=0.0, grad_rel=1e-5)
    if mode == "fused":  # the keys of 2 cameras overflow, of 1 do not: halved to 1 a launch
        totals = []
        bin_faces = _slang.bin_faces
        monkeypatch.setattr(
            _slang, "bin_faces", lambda *a: totals.append(int((b := bin_faces(*a)).ranges[-1])) or b
        )
        monkeypatch.setattr(_slang, "_VIEW_BYTES", per_camera + 1)  # 1 camera per launch
        run("slang", cams, mesh, sdf, sh, bg, mode=mode, ssaa=2)
        assert len(totals) == 5 and 2 * min(totals) > max(totals)
        monkeypatch.setattr(_slang, "_VIEW_BYTES", 8 * max(totals) + 8)
        monkeypatch.setattr(_slang, "bytes_per_camera", lambda *a: 1)  # 5 cameras first
        calls.clear()
        got = run("slang", cams, mesh, sdf, sh, bg, mode=mode, ssaa=2)
        assert calls == [5, 2, 1, 1, 1, 1, 1]
        compare_renders(got, want, "halved fused", max_bad=0.0, grad_rel=1e-5)


def test_eval_sh_beyond_a_tensor_views_4_gib_is_sliced_over_vertices(monkeypatch):
    from slang_rasterizer import _slang

    g = torch.Generator(device=DEV).manual_seed(0)
    sh = torch.randn(1000, 9, 3, generator=g, device=DEV, requires_grad=True)
    positions = torch.randn(1000, 3, generator=g, device=DEV)
    centers = 4 * torch.randn(3, 3, generator=g, device=DEV)
    weights = torch.randn(3, 1000, 3, generator=g, device=DEV)
    want = _slang.eval_sh(sh, positions, centers)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), sh)
    monkeypatch.setattr(_slang, "_VIEW_BYTES", 12 * 9 * 300 + 1)  # 300 vertices a launch
    launches = []
    apply = _slang._EvalSH.apply
    monkeypatch.setattr(
        _slang._EvalSH, "apply", lambda *a: launches.append(a[0].shape[0]) or apply(*a)
    )
    got = _slang.eval_sh(sh, positions, centers)
    (got_grad,) = torch.autograd.grad((got * weights).sum(), sh)
    assert launches == [300, 300, 300, 100]
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)
