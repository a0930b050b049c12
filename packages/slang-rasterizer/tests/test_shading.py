"""Interpolation, spherical harmonics and compositing on the reference (values and gradients)."""

import math

import numpy as np
import pytest
import torch

import slang_rasterizer as sr
from slang_rasterizer import reference


def composite_numpy(sdf, colors, hit, k, alpha_max, background):
    """The DESIGN §1 formula, pixel by pixel, in float64 NumPy."""
    b, s, h, w = sdf.shape
    image = np.zeros((b, 3, h, w))
    alpha = np.zeros((b, 1, h, w))
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                c, t, phi_outer = np.zeros(3), 1.0, 1.0
                for si in range(s):
                    if not hit[bi, si, y, x]:
                        continue
                    phi = 1.0 / (1.0 + math.exp(-k * sdf[bi, si, y, x]))
                    a = min(max((phi_outer - phi + 1e-5) / (phi_outer + 1e-5), 0.0), alpha_max)
                    c += t * a * colors[bi, si, y, x]
                    t *= 1 - a
                    phi_outer = phi
                image[bi, :, y, x] = c + t * background
                alpha[bi, 0, y, x] = 1 - t
    return image, alpha


def random_shells(b=2, s=4, h=5, w=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    sdf = (torch.rand(b, s, h, w, generator=g, dtype=dtype) - 0.5) * 0.02
    colors = torch.rand(b, s, h, w, 3, generator=g, dtype=dtype)
    hit = torch.rand(b, s, h, w, generator=g) < 0.7
    return sdf, colors, hit


@pytest.mark.parametrize("alpha_max", [0.99, 1.0])
def test_composite_matches_numpy(alpha_max):
    sdf, colors, hit = random_shells(dtype=torch.float32)
    sdf[0, 0] = -1.0  # first shell deep inside: alpha hits the cap
    bg = torch.tensor([0.2, 0.5, 0.9])
    image, alpha = sr.composite(sdf, colors, hit, 200.0, bg, alpha_max=alpha_max)
    ref_image, ref_alpha = composite_numpy(
        sdf.double().numpy(), colors.double().numpy(), hit.numpy(), 200.0, alpha_max, bg.numpy()
    )
    np.testing.assert_allclose(image.numpy(), ref_image, atol=2e-6)
    np.testing.assert_allclose(alpha.numpy(), ref_alpha, atol=2e-6)
    if alpha_max == 1.0:  # an opaque first hit leaves exactly nothing for what is behind
        opaque = hit[0, 0]
        assert (alpha[0, 0][opaque] == 1).all()
        assert torch.equal(image[0][:, opaque], colors[0, 0][opaque].T)


def test_missed_shell_changes_neither_transmittance_nor_outer_value():
    sdf, colors, hit = random_shells(b=1, s=3, h=1, w=1)
    hit[:] = True
    hit[0, 1] = False
    with_miss = sr.composite(sdf, colors, hit, 300.0)
    keep = [0, 2]
    without = sr.composite(sdf[:, keep], colors[:, keep], hit[:, keep], 300.0)
    assert torch.equal(with_miss[0], without[0]) and torch.equal(with_miss[1], without[1])


def test_composite_gradcheck_float64():
    sdf, colors, hit = random_shells()
    bg = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    for t in (sdf, colors, bg):
        t.requires_grad_()
    for alpha_max in (0.99, 1.0):
        assert torch.autograd.gradcheck(
            lambda s, c, b, am=alpha_max: sr.composite(s, c, hit, 150.0, b, am),
            (sdf, colors, bg),
        )


def test_composite_backward_is_finite_for_opaque_hits():
    sdf = torch.full((1, 2, 2, 2), -1e3, requires_grad=True)  # alpha = 1 everywhere
    colors = torch.rand(1, 2, 2, 2, 3, requires_grad=True)
    hit = torch.ones(1, 2, 2, 2, dtype=torch.bool)
    image, alpha = sr.composite(sdf, colors, hit, 400.0, torch.ones(3), alpha_max=1.0)
    (image.sum() + alpha.sum()).backward()
    assert torch.isfinite(sdf.grad).all() and torch.isfinite(colors.grad).all()
    assert torch.equal(colors.grad[0, 0], torch.ones(2, 2, 3))  # the first hit takes it all
    assert (colors.grad[0, 1] == 0).all()


def fragments_for(b=2, s=3, h=4, w=5, m=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    face_index = torch.randint(-1, m, (b, s, h, w), generator=g, dtype=torch.int32)
    lam = torch.rand(b, s, h, w, 3, generator=g, dtype=torch.float64)
    lam = lam / lam.sum(-1, keepdim=True)
    bary = torch.where((face_index >= 0)[..., None], lam[..., 1:], 0.0)
    return sr.Fragments(face_index, bary)


def test_interpolate_values_and_routing():
    faces = torch.tensor([[0, 1, 2], [2, 3, 4], [1, 4, 5]] * 2 + [[5, 0, 3]], dtype=torch.int32)
    frags = fragments_for()
    attrs = torch.rand(6, 2, dtype=torch.float64)
    out = sr.interpolate(attrs, faces, frags)
    fi = frags.face_index
    for idx in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 2, 3)]:
        f = fi[idx].item()
        if f < 0:
            assert (out[idx] == 0).all()
            continue
        l1, l2 = frags.bary[idx]
        v = attrs[faces[f].long()]
        assert torch.allclose(out[idx], (1 - l1 - l2) * v[0] + l1 * v[1] + l2 * v[2])
    # A missed shell gets no gradient; [N] attributes give [B, S, H, W].
    sdf = torch.rand(6, dtype=torch.float64, requires_grad=True)
    one = sr.interpolate(sdf, faces, sr.Fragments(torch.full_like(fi, -1), frags.bary))
    assert one.shape == fi.shape
    one.sum().backward()
    assert (sdf.grad == 0).all()


def test_interpolate_gradcheck_float64():
    faces = torch.tensor([[0, 1, 2], [2, 3, 4], [1, 4, 5], [5, 0, 3]], dtype=torch.int32)
    frags = fragments_for(m=4)
    shared = torch.rand(6, 3, dtype=torch.float64, requires_grad=True)
    per_camera = torch.rand(2, 6, 3, dtype=torch.float64, requires_grad=True)
    scalar = torch.rand(6, dtype=torch.float64, requires_grad=True)
    for attrs in (shared, per_camera, scalar):
        assert torch.autograd.gradcheck(lambda a: sr.interpolate(a, faces, frags), (attrs,))


def test_sh_basis_is_orthonormal():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    y = reference.sh_basis(d, 16)
    gram = 4 * math.pi * (y.T @ y) / d.shape[0]  # Monte Carlo of the integral over the sphere
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.03)


def test_eval_sh_degree_one_by_hand():
    sh = torch.zeros(1, 4, 3)
    sh[0, 0] = torch.tensor([0.1, 0.2, 0.3])
    sh[0, 1:, 0] = torch.tensor([1.0, 2.0, 3.0])
    positions = torch.tensor([[1.0, 2.0, 2.0]])
    centers = torch.tensor([[0.0, 0.0, -1.0]])  # direction (1, 2, 3) / sqrt(14)
    x, y, z = (torch.tensor([1.0, 2.0, 3.0]) / math.sqrt(14)).tolist()
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    expect_r = c0 * 0.1 + c1 * (-y * 1.0 + z * 2.0 - x * 3.0) + 0.5
    out = sr.eval_sh(sh, positions, centers)
    assert out.shape == (1, 1, 3)
    assert math.isclose(out[0, 0, 0].item(), max(expect_r, 0.0), abs_tol=1e-6)
    assert math.isclose(out[0, 0, 1].item(), c0 * 0.2 + 0.5, abs_tol=1e-6)
    sh[0, 0, 0] = -10.0  # negative colors clamp to 0
    assert sr.eval_sh(sh, positions, centers)[0, 0, 0] == 0


@pytest.mark.parametrize("n_sh", [1, 4, 9, 16])
def test_eval_sh_gradcheck_float64(n_sh):
    g = torch.Generator().manual_seed(n_sh)
    sh = (torch.rand(5, n_sh, 3, generator=g, dtype=torch.float64) - 0.5) * 0.3
    sh.requires_grad_()
    positions = torch.randn(5, 3, generator=g)
    centers = torch.randn(2, 3, generator=g) * 3
    assert torch.autograd.gradcheck(lambda s: sr.eval_sh(s, positions, centers), (sh,))
