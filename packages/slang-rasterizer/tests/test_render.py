"""render() on the reference: explicit == fused, gradients, SSAA, surface mode, empty meshes."""

import pytest
import torch
from raster_helpers import scene

import slang_rasterizer as sr
from slang_rasterizer import reference


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


@pytest.mark.slow  # about 24 s on a 2-core CPU: full Jacobians through both modes
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
