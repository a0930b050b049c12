"""render() on the reference: explicit == fused, gradients, SSAA, surface mode, empty meshes."""

import pytest
import torch

import slang_rasterizer as sr
from slang_rasterizer import reference
from slang_rasterizer.shapes import icosphere, orbit_cameras, shell_mesh


def scene(subdivisions=2, size=(24, 32), batch=2, degree=1, seed=0, dtype=torch.float32):
    """Three shells: two nested spheres and an offset one, so some pixels miss a middle shell."""
    shells = [
        icosphere(subdivisions, 1.0),
        icosphere(subdivisions, 0.45, (0.0, 0.5, 0.2)),
        icosphere(subdivisions, 0.6, (0.0, -0.2, 0.0)),
    ]
    mesh = shell_mesh(shells)
    cams = orbit_cameras(batch, 3.5, size, fov_degrees=50.0)
    g = torch.Generator().manual_seed(seed)
    n = mesh.positions.shape[0]
    levels = torch.tensor([0.004, 0.0, -0.004])
    counts = [p.shape[0] for p, _ in shells]
    sdf = torch.repeat_interleave(levels, torch.tensor(counts))
    sdf = (sdf + 0.002 * torch.randn(n, generator=g)).to(dtype)
    sh = (0.3 * torch.randn(n, (degree + 1) ** 2, 3, generator=g)).to(dtype)
    return cams, mesh, sdf, sh


def grads(cams, mesh, sdf, sh, bg, **kw):
    sdf = sdf.clone().requires_grad_()
    sh = sh.clone().requires_grad_()
    bg = bg.clone().requires_grad_()
    image, alpha = sr.render(cams, mesh, sdf, sh, 250.0, bg, backend="reference", **kw)
    g = torch.Generator().manual_seed(5)
    w_img = torch.randn(image.shape, generator=g, dtype=image.dtype)
    w_alpha = torch.randn(alpha.shape, generator=g, dtype=alpha.dtype)
    ((image * w_img).sum() + (alpha * w_alpha).sum()).backward()
    return image.detach(), alpha.detach(), sdf.grad, sh.grad, bg.grad


def assert_close(a, b, rtol, atol, what):
    err = (a - b).abs()
    bound = atol + rtol * b.abs()
    worst = torch.argmax(err - bound).item()
    assert bool((err <= bound).all()), (
        f"{what}: max abs error {err.max().item():.3g} at flat index {worst} "
        f"({a.flatten()[worst].item():.6g} vs {b.flatten()[worst].item():.6g})"
    )


@pytest.mark.parametrize("ssaa", [1, 2])
def test_explicit_equals_fused(ssaa):
    cams, mesh, sdf, sh = scene()
    bg = torch.rand(2, 3, 24, 32)
    ex = grads(cams, mesh, sdf, sh, bg, mode="explicit", ssaa=ssaa)
    fu = grads(cams, mesh, sdf, sh, bg, mode="fused", ssaa=ssaa)
    assert ex[1].min() < 0.5 and ex[1].max() > 0.6  # background and covered pixels
    assert torch.equal(ex[0], fu[0]) and torch.equal(ex[1], fu[1])
    for a, b, name in zip(ex[2:], fu[2:], ["sdf", "sh", "background"], strict=True):
        assert b.abs().max() > 0, name
        assert_close(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item(), what=name)


def test_fused_render_gradcheck_float64():
    cams, mesh, sdf, sh = scene(subdivisions=1, size=(10, 12), batch=1, dtype=torch.float64)
    sdf.requires_grad_()
    sh.requires_grad_()
    bg = torch.rand(3, dtype=torch.float64, requires_grad=True)
    for mode in ("fused", "explicit"):
        assert torch.autograd.gradcheck(
            lambda s, c, b, m=mode: sr.render(cams, mesh, s, c, 250.0, b, mode=m, ssaa=2),
            (sdf, sh, bg),
            atol=1e-6,
            fast_mode=True,
        )
        # Full Jacobian w.r.t. the vertex sdf (36 inputs).
        assert torch.autograd.gradcheck(
            lambda s, m=mode: sr.render(cams, mesh, s, sh.detach(), 250.0, bg.detach(), mode=m),
            (sdf,),
            atol=1e-6,
        )


def test_ssaa_is_the_box_filter_of_the_high_resolution_render():
    cams, mesh, sdf, sh = scene(batch=1)
    bg = torch.tensor([0.1, 0.2, 0.3])
    image, alpha = sr.render(cams, mesh, sdf, sh, 250.0, bg, ssaa=3)
    big, big_alpha = sr.render(cams.scaled(3), mesh, sdf, sh, 250.0, bg)
    pool = torch.nn.functional.avg_pool2d
    assert torch.allclose(image, pool(big, 3), atol=1e-6)
    assert torch.allclose(alpha, pool(big_alpha, 3), atol=1e-6)


def test_surface_mode_is_an_opaque_mesh_render():
    p, f = icosphere(2, 1.0)
    mesh = shell_mesh([(p, f)])
    cams = orbit_cameras(1, 3.0, (20, 20))
    sdf = torch.full((p.shape[0],), -1e8, requires_grad=True)
    sh = torch.zeros(p.shape[0], 1, 3)
    sh[:, 0] = torch.tensor([0.3, 0.0, -0.3]) / 0.28209479177387814  # color (0.8, 0.5, 0.2)
    sh.requires_grad_()
    bg = torch.ones(3)
    image, alpha = sr.render(cams, mesh, sdf, sh, 400.0, bg, alpha_max=1.0)
    covered = alpha[0, 0] == 1
    assert 50 < covered.sum() < 400
    assert ((alpha[0, 0] == 0) | covered).all()
    expected = torch.tensor([0.8, 0.5, 0.2])[:, None]
    assert torch.allclose(image[0][:, covered], expected, atol=1e-6)
    assert (image[0][:, ~covered] == 1).all()
    image.sum().backward()
    assert torch.isfinite(sdf.grad).all() and torch.isfinite(sh.grad).all()


def test_empty_mesh_renders_the_background():
    cams = orbit_cameras(2, 3.0, (6, 7))
    bg = torch.rand(2, 3, 6, 7, requires_grad=True)
    for shells in (0, 2):
        mesh = sr.ShellMesh(
            torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int32), torch.zeros(shells + 1).long()
        )
        for mode in ("fused", "explicit"):
            image, alpha = sr.render(
                cams, mesh, torch.zeros(0), torch.zeros(0, 4, 3), 100.0, bg, mode
            )
            assert torch.equal(image, bg) and (alpha == 0).all()
            image.sum().backward()
            assert (bg.grad == 1).all()
            bg.grad = None


def test_nan_free_with_camera_inside_a_shell():
    cams, mesh, sdf, sh = scene(batch=1)
    inside = sr.Cameras(
        torch.eye(4)[None], cams.intrinsics, cams.image_size
    )  # camera at the origin, inside every sphere
    image, alpha = sr.render(inside, mesh, sdf, sh, 250.0, torch.zeros(3))
    assert torch.isfinite(image).all()
    # Back-face culling: from inside, the spheres around the camera face away and are not hit.
    frags = sr.rasterize(inside, mesh)
    assert not frags.hit[:, 0].any() and not frags.hit[:, 2].any() and frags.hit[:, 1].any()
    frags = sr.rasterize(inside, mesh, cull_backfaces=False)
    assert frags.hit[:, 0].all() and frags.hit[:, 2].all()


def test_fused_backward_rewalk_equals_kept_hits(monkeypatch):
    # Small images keep the forward's hits for the backward; large ones re-run the hit test.
    cams, mesh, sdf, sh = scene()
    bg = torch.rand(3)
    kept = grads(cams, mesh, sdf, sh, bg, mode="fused", ssaa=2)
    monkeypatch.setattr(reference, "_KEEP_HITS", 0)
    rewalked = grads(cams, mesh, sdf, sh, bg, mode="fused", ssaa=2)
    assert kept[2].abs().max() > 0 and kept[3].abs().max() > 0
    for a, b in zip(kept, rewalked, strict=True):
        assert torch.equal(a, b)
